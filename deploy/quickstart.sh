#!/usr/bin/env bash
# The README's first command: from a fresh Debian/Ubuntu (root or sudo) or macOS (Homebrew)
# machine to the agentcron demo. Idempotent: it installs only what is missing and says so.
#   bash deploy/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root (or sudo) to run: $*" >&2; exit 1; fi
}

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust from your package manager or rustup, then re-run." >&2
  exit 1
fi

if ! command -v redis-server >/dev/null; then
  if command -v apt-get >/dev/null; then
    say "Installing redis-server with apt-get"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
  elif command -v brew >/dev/null; then
    say "Installing redis with Homebrew"
    brew install redis
  else
    echo "redis-server is missing and neither apt-get nor brew is available." >&2
    exit 1
  fi
else
  say "redis-server is installed"
fi

say "Building agentcron (release)"
cargo build --release --locked

say "Checking jobs.toml"
./target/release/agentcron config check >/dev/null

say "Running the demo"
set +e
./target/release/agentcron demo "$@"
code=$?
set -e
if [ "$code" -eq 2 ]; then
  say "The demo is not yet available in this build (see README.md, Status); the build and configuration check succeeded."
  exit 0
fi
exit "$code"
