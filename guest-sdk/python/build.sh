#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds a wafka plugin written in Python into a WebAssembly component.
#
#   guest-sdk/python/build.sh -o OUT.wasm PLUGIN.py [-- BUILD_PY_ARGS...]
#   guest-sdk/python/build.sh --install      (only install the tools)
#
# Installs the toolchain on first use (componentize-py and wasm-tools from PyPI, pinned by
# requirements-build.txt, into the venv ${WAFKA_CACHE:-~/.cache/wafka}/tools/venv; see
# guest-sdk/toolchain.sh), then runs build.py (which says what it does) with that venv's
# Python. BUILD_PY_ARGS go to build.py, e.g. `-- -p lib` for the plugin's other modules.
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WAFKA_LOG_NAME="guest-sdk/python"
# shellcheck source=../toolchain.sh
source "$sdk/../toolchain.sh"

need_tools() {
    wafka_pip_requirements "$sdk/requirements-build.txt"
}

wafka_build_args "$@"
[[ ${#INPUTS[@]} -eq 1 ]] || wafka_usage
need_tools
exec "$WAFKA_VENV/bin/python" "$sdk/build.py" --quiet "${INPUTS[0]}" -o "$OUT" "${EXTRA[@]}"
