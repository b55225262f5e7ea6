#!/usr/bin/env bash
# Creates the conformance virtualenv (idempotent): target/conformance-venv with the official
# anthropic SDK at the version whose requests are recorded in tests/golden/anthropic-requests.json.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${CONFORMANCE_VENV:-$root/target/conformance-venv}"
want="anthropic==2.14.0"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import anthropic, sys; sys.exit(anthropic.__version__ != "2.14.0")' 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q "$want"
"$venv/bin/python" -c 'import anthropic; print("conformance venv ready: anthropic", anthropic.__version__)'
