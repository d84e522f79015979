#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds a wafka plugin written in Go into a WebAssembly component.
#
#   guest-sdk/go/build.sh -o OUT.wasm PACKAGE_DIR [-- GO_BUILD_ARGS...]
#   guest-sdk/go/build.sh --install      (only install the tools)
#
# PACKAGE_DIR is the plugin's main package (its module requires this SDK, usually through a
# `replace` directive: nothing is downloaded, GOPROXY=off). The script builds it with Go for
# wasip1 as a c-shared reactor, embeds the `plugin-lifecycle` world of wit/ with `wasm-tools
# component embed`, and turns it into a component with `wasm-tools component new` and the WASI
# preview1 reactor adapter (which takes its memory from the SDK's cabi_realloc_adapter, see
# adapter_wasm.go). The tools are installed on first use (Go and wasm-tools from PyPI; see
# guest-sdk/toolchain.sh). GOWORK is respected as set (a workspace, or `off`).
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WAFKA_LOG_NAME="guest-sdk/go"
# shellcheck source=../toolchain.sh
source "$sdk/../toolchain.sh"

need_tools() {
    wafka_need_go
    wafka_need_wasm_tools
    wafka_need_adapter
}

wafka_build_args "$@"
[[ ${#INPUTS[@]} -eq 1 ]] || wafka_usage
need_tools

tmp="$(mktemp -d "${TMPDIR:-/tmp}/wafka-go.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "${INPUTS[0]}" && GOOS=wasip1 GOARCH=wasm "$GO" build -trimpath -buildmode=c-shared \
    -o "$tmp/core.wasm" "${EXTRA[@]}" .)
"$WASM_TOOLS" component embed "$sdk/../../wit" --world plugin-lifecycle "$tmp/core.wasm" \
    -o "$tmp/embedded.wasm"
"$WASM_TOOLS" component new "$tmp/embedded.wasm" \
    --adapt "wasi_snapshot_preview1=$WASI_ADAPTER" -o "$tmp/component.wasm"
mkdir -p "$(dirname "$OUT")"
mv "$tmp/component.wasm" "$OUT"
