# Developer shortcuts. `just check` is what CI runs (bash .ci/run).

check:
    bash .ci/run

test:
    cargo nextest run

lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

sim:
    cargo run -- sim --port 8787

redis:
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
