#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the Zig example plugins (examples/zig/<name>/<name>.zig, the root file of each) into
# WebAssembly components and copies each one to examples/build/<name>-zig.wasm, printing the
# paths.
#
# The toolchain (zig from PyPI's ziglang and wasm-tools from PyPI, in a venv; wit-bindgen-cli
# and the WASI reactor adapter from crates.io) is installed on first use into
# ${WAFKA_CACHE:-$HOME/.cache/wafka}/tools; see guest-sdk/c/toolchain.sh and
# guest-sdk/zig/build.sh. Called by scripts/build-guests from the repository root.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/examples/build"
WAFKA_LOG_NAME="guests/zig.sh"
# shellcheck source=../../guest-sdk/c/toolchain.sh
source "$root/guest-sdk/c/toolchain.sh"

"$root/guest-sdk/zig/build.sh" --install
wafka_need_wasm_tools

header="0061736d0d000100" # "\0asm", version 0x0d, layer 1: a component, not a core module
mkdir -p "$out"
for dir in "$root"/examples/zig/*/; do
    name="$(basename "$dir")"
    main="$dir$name.zig"
    [[ -f "$main" ]] || continue
    artifact="$out/$name-zig.wasm"
    "$root/guest-sdk/zig/build.sh" -o "$artifact" "$main"
    got="$(head -c 8 "$artifact" | od -An -tx1 | tr -d ' \n')"
    [[ "$got" == "$header" ]] || wafka_die "$artifact is not a component (header $got, want $header)"
    world="$("$WASM_TOOLS" component wit "$artifact")"
    for line in "export init: func" "export handle: func" "import wafka:producer/producer@0.1.0;"; do
        grep -qF "$line" <<<"$world" || wafka_die "$artifact lacks \`$line\`"
    done
    echo "$artifact"
done
