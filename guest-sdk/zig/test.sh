#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs the `test` blocks of a Zig plugin natively, against the fake host (`wafka.testing`).
#
#   guest-sdk/zig/test.sh ROOT.zig [-- ZIG_TEST_ARGS...]
#
# ROOT.zig is the plugin's root file (the one build.sh builds), with its tests. The script
# generates the C bindings of the world as build.sh does, translates their header for the
# build machine, and runs `zig test` on the plugin with the SDK (wafka.zig), the bindings
# (plugin.c, compiled natively) and the C SDK's fake host (guest-sdk/c/testing/fake_host.c,
# which takes the place of the host's imports). Everything generated goes to
# ${WAFKA_CACHE:-~/.cache/wafka}/guest-zig-test/<ROOT's name>, never into the source tree.
# ZIG_TEST_ARGS go to `zig test` (e.g. --test-filter NAME).
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WAFKA_LOG_NAME="guest-sdk/zig/test.sh"
# shellcheck source=../toolchain.sh
source "$sdk/../toolchain.sh"

[[ $# -ge 1 && "$1" != -* ]] || wafka_usage
[[ -f "$1" ]] || wafka_die "no file $1"
root_file="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift
extra=()
if [[ $# -gt 0 ]]; then
    [[ "$1" == "--" ]] || wafka_usage
    shift
    extra=("$@")
fi
wafka_need_zig

name="$(basename "$root_file" .zig)"
build="$WAFKA_CACHE/guest-zig-test/$name"
mkdir -p "$build"
export ZIG_LOCAL_CACHE_DIR="$build/zig-cache"

wafka_c_bindings "$build/bindings"
"$ZIG" translate-c -lc "$build/bindings/plugin.h" >"$build/bindings/plugin.zig.tmp"
mv "$build/bindings/plugin.zig.tmp" "$build/bindings/plugin.zig"

# Modules as in build.sh: root (the plugin) -> wafka (the SDK) -> wafka_bindings (+ plugin.c,
# whose wasm import and export attributes mean nothing natively: -w; and the fake host).
"$ZIG" test -lc "${extra[@]}" \
    --dep wafka -Mroot="$root_file" \
    --dep wafka_bindings -Mwafka="$sdk/wafka.zig" \
    -I "$build/bindings" -I "$sdk/../c/include" \
    -cflags -std=c11 -w -- "$build/bindings/plugin.c" \
    -cflags -std=c11 -Wall -Wextra -- "$sdk/../c/testing/fake_host.c" \
    -Mwafka_bindings="$build/bindings/plugin.zig" \
    --cache-dir "$build/zig-cache"
