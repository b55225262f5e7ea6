#!/usr/bin/env bash
# The README's first command: from a fresh Debian/Ubuntu (root or sudo) or macOS (Homebrew)
# machine to the agentcron demo.
#   bash deploy/quickstart.sh            # the demo: three users, transcripts, a notice, status
#   bash deploy/quickstart.sh --follow   # then a 10-second schedule and the dashboard, until Ctrl-C
# Idempotent: it installs only redis-server, only when it is missing, and says so. It needs
# Rust (cargo) and installs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root (or sudo) to run: $*" >&2; exit 1; fi
}

if ! command -v cargo >/dev/null; then
  cat >&2 <<'MSG'
cargo is missing. Install Rust (1.88 or newer), then re-run this script:
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh     # rustup, any OS
  brew install rust                                                  # macOS, Homebrew
  sudo apt-get install cargo                                         # Debian/Ubuntu (check: cargo --version ≥ 1.88)
MSG
  exit 1
fi

if command -v redis-server >/dev/null; then
  say "redis-server is installed ($(command -v redis-server))"
elif command -v apt-get >/dev/null; then
  say "Installing redis-server with apt-get (the only package this script installs)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
elif command -v brew >/dev/null; then
  say "Installing redis with Homebrew (the only package this script installs)"
  brew install redis
else
  echo "redis-server is missing and neither apt-get nor brew is available: install Redis 6.2 or newer, then re-run." >&2
  exit 1
fi

say "Building agentcron (release)"
cargo build --release --locked

# Where cargo put it: CARGO_TARGET_DIR, a build.target-dir in a cargo config, or ./target.
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' || true)
target_dir=${target_dir:-${CARGO_TARGET_DIR:-target}}

# The demo uses $REDIS_URL or 127.0.0.1:6379 when it answers (with its own key prefix), else
# it starts a private redis-server for its own duration. Logs go to stderr; RUST_LOG=info shows them.
say "Running the demo"
export RUST_LOG="${RUST_LOG:-warn,apalis_core=error}"
exec "$target_dir/release/agentcron" demo "$@"
