# shellcheck shell=bash
# What every scripts/guests/<lang>.sh shares: the toolchain (guest-sdk/toolchain.sh) and the loop
# that builds each example of a language, keeps the result in the cache by a hash of its inputs
# (so an unchanged example is copied, not rebuilt), checks it targets the plugin world and
# copies it to examples/build/<name>-<suffix>.wasm, printing the path.

WAFKA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=guest-sdk/toolchain.sh source-path=SCRIPTDIR/../..
source "$WAFKA_ROOT/guest-sdk/toolchain.sh"

# A hash of the files under the given paths (directories are walked; node_modules, __pycache__,
# target and tests are left out), of the WIT, the toolchain and the calling script.
_wafka_inputs_hash() {
    {
        find "$@" "$WAFKA_ROOT/wit" "$WAFKA_SDKS/toolchain.sh" "$WAFKA_ROOT/scripts/guests/lib.sh" \
            "$0" \( -name node_modules -o -name __pycache__ -o -name target -o -name tests -o -name test \) -prune \
            -o -type f -print
    } | LC_ALL=C sort -u | xargs sha256sum | sed "s|$WAFKA_ROOT/||" | sha256sum | cut -c1-16
}

# wafka_build_examples LANG SUFFIX BUILD [INPUT...]
#
# For each directory examples/LANG/<name>/, unless the cache holds a build of the same inputs
# (the directory, the INPUTs, the WIT and the toolchain), runs `BUILD DIR NAME OUT.wasm`, which
# must write the component to OUT.wasm.
wafka_build_examples() {
    local lang="$1" suffix="$2" build="$3"
    shift 3
    local cache="$WAFKA_CACHE/guests/$lang" out="$WAFKA_ROOT/examples/build" found=0 dir name built
    mkdir -p "$cache" "$out"
    for dir in "$WAFKA_ROOT/examples/$lang"/*/; do
        dir="${dir%/}"
        name="$(basename "$dir")"
        found=1
        built="$cache/$name-$(_wafka_inputs_hash "$dir" "$@").wasm"
        if [[ ! -f "$built" ]]; then
            wafka_log "building $name"
            # Built under its own name (SDK build scripts name their work directories after it).
            mkdir -p "$cache/new"
            rm -f "$cache/new/$name.wasm"
            "$build" "$dir" "$name" "$cache/new/$name.wasm" >&2 || wafka_die "building $dir failed"
            wafka_check_component "$cache/new/$name.wasm"
            mv "$cache/new/$name.wasm" "$built"
        fi
        # Older builds of this example are not needed any more.
        find "$cache" -maxdepth 1 -name "$name-*.wasm" ! -path "$built" -delete
        cp "$built" "$out/$name-$suffix.wasm.tmp"
        mv "$out/$name-$suffix.wasm.tmp" "$out/$name-$suffix.wasm"
        echo "$out/$name-$suffix.wasm"
    done
    [[ "$found" == 1 ]] || wafka_die "no examples in examples/$lang"
}
