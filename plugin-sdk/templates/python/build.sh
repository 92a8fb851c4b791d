#!/bin/sh
# Type-checks app.py with mypy {{mypy_version}}, then builds {{wasm_file}} from it with
# componentize-py {{componentize_py_version}} (set COMPONENTIZE_PY and MYPY to use tools that are
# not on PATH). A type error (a misspelt field, a wrong argument to the SDK) fails the build.
set -eu
cd "$(dirname "$0")"
tool="${COMPONENTIZE_PY:-componentize-py}"
checker="${MYPY:-mypy}"
for needed in "$tool" "$checker"; do
    if ! command -v "$needed" >/dev/null 2>&1; then
        echo "$needed not found: python3 -m venv .venv && .venv/bin/pip install componentize-py=={{componentize_py_version}} mypy=={{mypy_version}}, then COMPONENTIZE_PY=.venv/bin/componentize-py MYPY=.venv/bin/mypy ./build.sh" >&2
        exit 1
    fi
done
# The WIT's Python bindings, typed, for the check (the build generates its own).
rm -rf .typecheck
"$tool" -d wit -w adapter bindings .typecheck >/dev/null
MYPYPATH=.typecheck "$checker" --python-version 3.11 --check-untyped-defs --cache-dir .typecheck/.mypy_cache app.py
"$tool" -d wit -w adapter componentize app -p . -o {{wasm_file}}
echo "built {{wasm_file}}"
