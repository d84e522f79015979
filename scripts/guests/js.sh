#!/usr/bin/env bash
# Builds the JavaScript example plugins (examples/js/<name>/<name>.js) into WebAssembly
# components and copies each one to examples/build/<name>-js.wasm, printing the paths.
#
# The toolchain (jco, componentize-qjs, rolldown: versions pinned by
# guest-sdk/js/toolchain/package.json and its package-lock.json) is installed with npm into
# ${WAFKA_CACHE:-$HOME/.cache/wafka}/js on first use and whenever the lock file changes. Built
# components are kept there too, by a hash of their inputs, so an unchanged example is copied
# instead of rebuilt.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${WAFKA_CACHE:-$HOME/.cache/wafka}"
sdk="$root/guest-sdk/js"
toolchain="$cache/js"
out="$root/examples/build"
header="0061736d0d000100" # "\0asm", version 0x0d, layer 1: a component, not a core module

log() { printf 'guests/js: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

command -v node >/dev/null 2>&1 || die "node is not installed (Node.js 18 or later)"
command -v npm >/dev/null 2>&1 || die "npm is not installed"

# --- the toolchain ---------------------------------------------------------------------------
lock="$sdk/toolchain/package-lock.json"
stamp="$toolchain/.wafka-installed-lock" # the lock file of the last complete install
if ! cmp -s "$lock" "$stamp" || [[ ! -f "$toolchain/node_modules/@bytecodealliance/jco/dist/jco.js" ]]; then
    log "installing the toolchain into $toolchain (npm install from the lock file)"
    mkdir -p "$toolchain"
    rm -f "$stamp"
    cp "$sdk/toolchain/package.json" "$lock" "$toolchain/"
    # Not `npm ci`: the registry here lacks some other platforms' optional native bindings,
    # which `npm ci` wants listed in the lock; `npm install` takes the locked versions anyway.
    (cd "$toolchain" && npm install --no-audit --no-fund --loglevel=error >&2) ||
        die "npm install failed"
    cp "$lock" "$stamp"
fi
export WAFKA_JS_TOOLCHAIN="$toolchain"
jco="$toolchain/node_modules/@bytecodealliance/jco/dist/jco.js"

# --- the examples ----------------------------------------------------------------------------
# A hash of everything a component is built from: the SDK, the WIT, the pinned toolchain and
# the example's own files.
inputs_hash() {
    {
        find "$sdk" -path "$sdk/toolchain/node_modules" -prune -o -path "$sdk/test" -prune -o \
            -type f \( -name '*.js' -o -name '*.mjs' -o -name '*.json' \) -print
        find "$root/wit" -type f
        echo "$root/scripts/guests/js.sh"
        find "$1" -type f \( -name '*.js' -o -name '*.mjs' -o -name '*.json' \)
    } | LC_ALL=C sort | xargs sha256sum | sed "s|$root/||" | sha256sum | cut -c1-16
}

check_component() {
    local wasm="$1" got world line
    # A component that fails a check is removed, so a later run does not reuse it.
    reject() {
        rm -f "$wasm"
        die "$@"
    }
    got="$(head -c 8 "$wasm" | od -An -tx1 | tr -d ' \n')"
    [[ "$got" == "$header" ]] || reject "$wasm is not a component (header $got, want $header)"
    world="$(node "$jco" wit "$wasm" 2>/dev/null)" || reject "jco wit $wasm failed"
    for line in "export init: func" "export handle: func" "import wafka:producer/producer@0.1.0;"; do
        grep -qF "$line" <<<"$world" || reject "$wasm lacks \`$line\`"
    done
}

mkdir -p "$out" "$cache/guests/js"
found=0
for dir in "$root"/examples/js/*/; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    src="$dir/$name.js"
    [[ -f "$src" ]] || die "$dir has no $name.js"
    found=1
    built="$cache/guests/js/$name-$(inputs_hash "$dir").wasm"
    if [[ ! -f "$built" ]]; then
        log "building $name"
        node "$sdk/build.mjs" "$src" -o "$built" >&2
        check_component "$built"
    fi
    # Older builds of this example are not needed any more.
    find "$cache/guests/js" -maxdepth 1 -name "$name-*.wasm" ! -path "$built" -delete
    cp "$built" "$out/$name-js.wasm.tmp"
    mv "$out/$name-js.wasm.tmp" "$out/$name-js.wasm"
    echo "$out/$name-js.wasm"
done
[[ "$found" == 1 ]] || die "no examples in $root/examples/js"
