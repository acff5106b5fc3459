#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs lint and every test in release mode
# (one profile and feature set for build, test and bench, so nothing compiles twice).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dig >/dev/null 2>&1 || need_apt+=(bind9-dnsutils)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# promtool checks /v1/agent/metrics?format=prometheus (tests/metrics.rs).
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# The web UI's test drives headless Chromium over WebDriver (tests/ui/browser.py).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

py=$(tools/py-env.sh)

# The gossip core stays sans-IO: no async runtime, sockets, TLS or HTTP anywhere in its dependency tree.
if cargo tree -p murmur-gossip --features sim -e normal --prefix none | grep -E '^(tokio|quinn|axum|hyper|rustls|mio) '; then
  echo "murmur-gossip depends on an I/O crate (above); the core must stay sans-IO" >&2
  exit 1
fi
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace "$@"
# Consul's own Python client against real agents: the HTTP API is compatible where clients look.
"$py" tests/clients/py_consul.py "${CARGO_TARGET_DIR:-target}/release/murmur"
# The web UI in a real browser against three agents; screenshots land in target/ui-screenshots.
"$py" tests/ui/browser.py "${CARGO_TARGET_DIR:-target}/release/murmur" "${CARGO_TARGET_DIR:-target}/ui-screenshots"
