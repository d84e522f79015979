#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds a wafka plugin written in Zig into a WebAssembly component.
#
#   guest-sdk/zig/build.sh -o OUT.wasm ROOT.zig [-- ZIG_ARGS...]
#   guest-sdk/zig/build.sh --install      (only install the tools)
#
# ROOT.zig is the plugin's root file; it imports the SDK as `@import("wafka")`. The script
# generates the C bindings of the `plugin` world from wit/ (the `wit-bindgen c` generator), translates
# their header to Zig (`zig translate-c`, the module `wafka_bindings` that wafka.zig wraps),
# builds a wasm32-wasi reactor with `zig build-exe` (plugin.c compiled by zig's C compiler,
# libc from zig), and turns it into a component with `wasm-tools component new` and the WASI
# preview1 reactor adapter. The tools are installed on first use (see
# guest-sdk/toolchain.sh); everything generated goes to
# ${WAFKA_CACHE:-~/.cache/wafka}/guest-zig/<OUT's name>, never into the source tree.
# ZIG_OPTIMIZE (default ReleaseSmall) is the optimization mode; ZIG_ARGS go to build-exe.
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WAFKA_LOG_NAME="guest-sdk/zig"
# shellcheck source=../toolchain.sh
source "$sdk/../toolchain.sh"

need_tools() {
    wafka_need_zig
    wafka_need_guest_tools
    wafka_need_wasm_tools
    wafka_need_adapter
}

wafka_build_args "$@"
[[ ${#INPUTS[@]} -eq 1 ]] || wafka_usage
root_file="$(cd "$(dirname "${INPUTS[0]}")" && pwd)/$(basename "${INPUTS[0]}")"
need_tools

name="$(basename "$OUT" .wasm)"
build="$WAFKA_CACHE/guest-zig/$name"
mkdir -p "$build"
# Zig's per-project cache goes to the build directory, not next to the sources.
export ZIG_LOCAL_CACHE_DIR="$build/zig-cache"
cd "$build"

# The C bindings (plugin.h, plugin.c: the canonical ABI glue and cabi_realloc;
# plugin_component_type.o: the world, for `component new`), and plugin.h as Zig.
wafka_c_bindings "$build/bindings"
"$ZIG" translate-c -target wasm32-wasi -lc "$build/bindings/plugin.h" >"$build/bindings/plugin.zig.tmp"
mv "$build/bindings/plugin.zig.tmp" "$build/bindings/plugin.zig"

# Modules: root (the plugin) -> wafka (the SDK) -> wafka_bindings (+ plugin.c).
"$ZIG" build-exe -target wasm32-wasi -mexec-model=reactor -fno-entry -lc \
    -O "${ZIG_OPTIMIZE:-ReleaseSmall}" -fstrip \
    "${EXTRA[@]}" \
    --dep wafka -Mroot="$root_file" \
    --dep wafka_bindings -Mwafka="$sdk/wafka.zig" \
    -I "$build/bindings" "$build/bindings/plugin.c" "$build/bindings/plugin_component_type.o" \
    -Mwafka_bindings="$build/bindings/plugin.zig" \
    --name core -femit-bin="$build/core.wasm"

"$WASM_TOOLS" component new "$build/core.wasm" \
    --adapt "wasi_snapshot_preview1=$WASI_ADAPTER" -o "$build/$name.wasm"

cd - >/dev/null
mkdir -p "$(dirname "$OUT")"
cp "$build/$name.wasm" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
