#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the C example plugins (examples/c/<name>/*.c) into WebAssembly components and copies
# each one to examples/build/<name>-c.wasm, printing the paths.
#
# The toolchain (Debian clang-19 + wasi-libc, wit-bindgen-cli from crates.io, wasm-tools from
# PyPI, the WASI reactor adapter from crates.io) is installed on first use into
# ${WAFKA_CACHE:-$HOME/.cache/wafka}/tools (clang through apt-get); see guest-sdk/c/toolchain.sh.
# Called by scripts/build-guests from the repository root.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/examples/build"
WAFKA_LOG_NAME="guests/c.sh"
# shellcheck source=../../guest-sdk/c/toolchain.sh
source "$root/guest-sdk/c/toolchain.sh"

"$root/guest-sdk/c/build.sh" --install
wafka_need_wasm_tools

header="0061736d0d000100" # "\0asm", version 0x0d, layer 1: a component, not a core module
mkdir -p "$out"
for dir in "$root"/examples/c/*/; do
    name="$(basename "$dir")"
    sources=("$dir"*.c)
    [[ -f "${sources[0]}" ]] || continue
    artifact="$out/$name-c.wasm"
    "$root/guest-sdk/c/build.sh" -o "$artifact" "${sources[@]}"
    got="$(head -c 8 "$artifact" | od -An -tx1 | tr -d ' \n')"
    [[ "$got" == "$header" ]] || wafka_die "$artifact is not a component (header $got, want $header)"
    world="$("$WASM_TOOLS" component wit "$artifact")"
    for line in "export init: func" "export handle: func" "import wafka:producer/producer@0.1.0;"; do
        grep -qF "$line" <<<"$world" || wafka_die "$artifact lacks \`$line\`"
    done
    echo "$artifact"
done
