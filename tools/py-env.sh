#!/usr/bin/env bash
# Makes the Python environment the client tests use: a venv under target/ with py-consul and selenium pinned, so a
# stock Debian (no pip; PEP 668 refuses system-wide installs) works as well as a developer's machine.
# Prints the venv's python. Installs python3-venv with apt when the interpreter cannot make a venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${CARGO_TARGET_DIR:-target}/py-venv
py=${PYTHON:-python3}
if [ ! -x "$venv/bin/pip" ]; then
  mkdir -p "$(dirname "$venv")"
  rm -rf "$venv"
  if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    "$py" -m venv "$venv"
  fi
fi
"$venv/bin/python" -c 'import consul, selenium' 2>/dev/null ||
  "$venv/bin/python" -m pip install -q --disable-pip-version-check py-consul==1.8.0 selenium==4.51.0 >&2
echo "$venv/bin/python"
