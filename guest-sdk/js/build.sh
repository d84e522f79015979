#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds a wafka plugin written in JavaScript into a WebAssembly component.
#
#   guest-sdk/js/build.sh -o OUT.wasm PLUGIN.js
#   guest-sdk/js/build.sh --install      (only install the tools)
#
# Installs the toolchain on first use (jco, componentize-qjs and rolldown with npm, pinned by
# toolchain/package-lock.json, into ${WAFKA_CACHE:-~/.cache/wafka}/js; see
# guest-sdk/toolchain.sh), then runs build.mjs (which says what it does). Needs Node.js 18+.
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WAFKA_LOG_NAME="guest-sdk/js"
# shellcheck source=../toolchain.sh
source "$sdk/../toolchain.sh"

need_tools() {
    wafka_need_js
}

wafka_build_args "$@"
[[ ${#INPUTS[@]} -eq 1 && ${#EXTRA[@]} -eq 0 ]] || wafka_usage
need_tools
exec node "$sdk/build.mjs" "${INPUTS[0]}" -o "$OUT"
