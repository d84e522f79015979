#!/usr/bin/env bash
# Builds the Python example plugins (examples/python/<name>/<name>.py) into WebAssembly
# components and copies each one to examples/build/<name>-py.wasm, printing the paths.
#
# The toolchain (componentize-py and wasm-tools, versions pinned in
# guest-sdk/python/requirements-build.txt) is installed with pip into a venv at
# ${WAFKA_CACHE:-$HOME/.cache/wafka}/venv-py on first use and whenever that file changes.
# Built components are kept in the cache by a hash of their inputs, so an unchanged example is
# copied instead of rebuilt (a cold build takes 20-50 s per example).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${WAFKA_CACHE:-$HOME/.cache/wafka}"
sdk="$root/guest-sdk/python"
venv="$cache/venv-py"
out="$root/examples/build"
header="0061736d0d000100" # "\0asm", version 0x0d, layer 1: a component, not a core module

log() { printf 'guests/python: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# --- the toolchain ---------------------------------------------------------------------------
requirements="$sdk/requirements-build.txt"
stamp="$venv/.wafka-requirements" # the requirements of the last complete install
if ! cmp -s "$requirements" "$stamp" || [[ ! -x "$venv/bin/componentize-py" ]]; then
    python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 || die "$python is not installed"
    log "installing the toolchain into $venv (pip)"
    rm -f "$stamp"
    [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv" >&2 ||
        die "could not create a venv (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --disable-pip-version-check --quiet -r "$requirements" >&2 ||
        die "pip install failed"
    cp "$requirements" "$stamp"
fi

# --- the examples ----------------------------------------------------------------------------
# A hash of everything a component is built from: the SDK, the WIT, the pinned toolchain and
# the example's own files.
inputs_hash() {
    {
        find "$sdk" -path "$sdk/tests" -prune -o -type f \( -name '*.py' -o -name '*.txt' \) -print
        find "$root/wit" -type f
        echo "$root/scripts/guests/python.sh"
        find "$1" -type f -name '*.py'
    } | grep -v __pycache__ | LC_ALL=C sort | xargs sha256sum | sed "s|$root/||" |
        sha256sum | cut -c1-16
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
    world="$("$venv/bin/wasm-tools" component wit "$wasm")" || reject "wasm-tools component wit $wasm failed"
    for line in "export init: func" "export handle: func" "import wafka:producer/producer@0.1.0;"; do
        grep -qF "$line" <<<"$world" || reject "$wasm lacks \`$line\`"
    done
}

mkdir -p "$out" "$cache/guests/py"
names=()
fresh=() # the components built now, to check
pids=()
for dir in "$root"/examples/python/*/; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    src="$dir/$name.py"
    [[ -f "$src" ]] || die "$dir has no $name.py"
    built="$cache/guests/py/$name-$(inputs_hash "$dir").wasm"
    names+=("$name:$built")
    if [[ ! -f "$built" ]]; then
        fresh+=("$built")
        # Each build is one process, mostly single-threaded: build the examples side by side.
        log "building $name"
        "$venv/bin/python" "$sdk/build.py" --quiet "$src" -o "$built" >&2 &
        pids+=($!)
    fi
done
[[ ${#names[@]} -gt 0 ]] || die "no examples in $root/examples/python"
failed=0
for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done
[[ "$failed" == 0 ]] || die "a build failed"

for built in "${fresh[@]}"; do
    check_component "$built"
done
for entry in "${names[@]}"; do
    name="${entry%%:*}"
    built="${entry#*:}"
    # Older builds of this example are not needed any more.
    find "$cache/guests/py" -maxdepth 1 -name "$name-*.wasm" ! -path "$built" -delete
    cp "$built" "$out/$name-py.wasm.tmp"
    mv "$out/$name-py.wasm.tmp" "$out/$name-py.wasm"
    echo "$out/$name-py.wasm"
done
