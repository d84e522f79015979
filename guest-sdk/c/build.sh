#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds a wafka plugin written in C into a WebAssembly component.
#
#   guest-sdk/c/build.sh -o OUT.wasm SOURCE.c... [-- COMPILER_ARGS...]
#   guest-sdk/c/build.sh --install      (only install the tools)
#
# It generates the C bindings of the `plugin` world from wit/ (the `wit-bindgen c` generator, in
# guest-sdk/tools), compiles them with the SDK (include/wafka.h, src/wafka.c) and the plugin's
# SOURCEs into a wasm32-wasi reactor module, and turns that into a component with `wasm-tools
# component new` and the WASI preview1 reactor adapter. The tools are installed on first use
# (see guest-sdk/toolchain.sh; the compiler is `zig cc` unless WAFKA_CC names another); generated
# files and objects go to ${WAFKA_CACHE:-~/.cache/wafka}/guest-c/<OUT's name>, never into the
# source tree. CFLAGS (default -Os) and COMPILER_ARGS are passed to the compiler.
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WAFKA_LOG_NAME="guest-sdk/c"
# shellcheck source=../toolchain.sh
source "$sdk/../toolchain.sh"

need_tools() {
    wafka_need_cc
    wafka_need_guest_tools
    wafka_need_wasm_tools
    wafka_need_adapter
}

wafka_build_args "$@"
need_tools

name="$(basename "$OUT" .wasm)"
build="$WAFKA_CACHE/guest-c/$name"
mkdir -p "$build"

# The bindings: plugin.h, plugin.c (the canonical ABI glue, cabi_realloc, the exports'
# post-return functions) and plugin_component_type.o (the world, as a custom section that
# `component new` reads).
wafka_c_bindings "$build/bindings"

# shellcheck disable=SC2206 # CFLAGS is a list of flags
cflags=(${CFLAGS:--Os})
"${CC_CMD[@]}" -mexec-model=reactor -std=c11 -Wall -Wextra "${cflags[@]}" \
    -I "$sdk/include" -I "$build/bindings" \
    "$sdk/src/wafka.c" "$build/bindings/plugin.c" "$build/bindings/plugin_component_type.o" \
    "${INPUTS[@]}" "${EXTRA[@]}" \
    -Wl,--strip-all -o "$build/core.wasm"

"$WASM_TOOLS" component new "$build/core.wasm" \
    --adapt "wasi_snapshot_preview1=$WASI_ADAPTER" -o "$build/$name.wasm"

mkdir -p "$(dirname "$OUT")"
cp "$build/$name.wasm" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
