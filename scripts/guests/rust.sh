#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the Rust example plugins (the members of the workspace examples/rust) for wasm32-wasip2
# into examples/build/<name>.wasm, printing the paths.
#
# Builds go to ${WAFKA_CACHE:-$HOME/.cache/wafka}/guest-target, outside the checkout, so a
# rebuild is incremental. Extra arguments are passed to `cargo build` (e.g. --offline).
set -euo pipefail
WAFKA_LOG_NAME="guests/rust"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

workspace="$WAFKA_ROOT/examples/rust"
out="$WAFKA_ROOT/examples/build"
target=wasm32-wasip2
export CARGO_TARGET_DIR="$WAFKA_CACHE/guest-target"

cd "$workspace"
# The target's standard library, for the toolchain that builds in this directory.
wafka_need_rust_target

cargo build --release --locked --target "$target" "$@" >&2

# The members' package names, from their manifests (the first `name =` is the package's).
mkdir -p "$out"
for manifest in "$workspace"/*/Cargo.toml; do
    name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n1)"
    artifact="$CARGO_TARGET_DIR/$target/release/${name//-/_}.wasm"
    [[ -f "$artifact" ]] || wafka_die "$artifact was not built"
    cp "$artifact" "$out/$name.wasm.tmp"
    wafka_check_component "$out/$name.wasm.tmp"
    mv "$out/$name.wasm.tmp" "$out/$name.wasm"
    echo "$out/$name.wasm"
done
