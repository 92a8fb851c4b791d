#!/bin/sh
# Builds {{wasm_file}} from app.py with componentize-py {{componentize_py_version}} (set
# COMPONENTIZE_PY to use a componentize-py that is not on PATH).
set -eu
cd "$(dirname "$0")"
tool="${COMPONENTIZE_PY:-componentize-py}"
if ! command -v "$tool" >/dev/null 2>&1; then
    echo "componentize-py not found: python3 -m venv .venv && .venv/bin/pip install componentize-py=={{componentize_py_version}}, then COMPONENTIZE_PY=.venv/bin/componentize-py ./build.sh" >&2
    exit 1
fi
"$tool" -d wit -w adapter componentize app -p . -o {{wasm_file}}
echo "built {{wasm_file}}"
