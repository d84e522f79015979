#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds a wafka plugin written in Rust into a WebAssembly component.
#
#   guest-sdk/rust/build.sh -o OUT.wasm CRATE_DIR [-- CARGO_ARGS...]
#   guest-sdk/rust/build.sh --install      (only install the wasm32-wasip2 target)
#
# CRATE_DIR is a `cdylib` crate depending on wafka-guest (this SDK). The script adds the
# wasm32-wasip2 target with rustup on first use and runs `cargo build --release --target
# wasm32-wasip2` in CRATE_DIR: that target makes a component directly. CARGO_TARGET_DIR is
# respected (default: CRATE_DIR/target); the component is copied to OUT.
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WAFKA_LOG_NAME="guest-sdk/rust"
# shellcheck source=../toolchain.sh
source "$sdk/../toolchain.sh"

need_tools() {
    wafka_need_rust_target
}

wafka_build_args "$@"
[[ ${#INPUTS[@]} -eq 1 ]] || wafka_usage
need_tools

crate="$(cd "${INPUTS[0]}" && pwd)"
[[ -f "$crate/Cargo.toml" ]] || wafka_die "$crate has no Cargo.toml"
target_dir="${CARGO_TARGET_DIR:-$crate/target}"
# The library's name: the package's (its first `name = ...` line), with - as _.
name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$crate/Cargo.toml" | head -n1)"
[[ -n "$name" ]] || wafka_die "$crate/Cargo.toml names no package"
name="${name//-/_}"
cargo build --release --target wasm32-wasip2 --manifest-path "$crate/Cargo.toml" \
    --target-dir "$target_dir" "${EXTRA[@]}" >&2
artifact="$target_dir/wasm32-wasip2/release/$name.wasm"
[[ -f "$artifact" ]] || wafka_die "$artifact was not built (is the crate a cdylib?)"
mkdir -p "$(dirname "$OUT")"
cp "$artifact" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
