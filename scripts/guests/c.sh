#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the C example plugins (examples/c/<name>/*.c, but not their unit tests *_test.c) with
# guest-sdk/c/build.sh into examples/build/<name>-c.wasm, printing the paths. Tools: see
# guest-sdk/toolchain.sh.
set -euo pipefail
WAFKA_LOG_NAME="guests/c"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build() {
    local sources=() f
    for f in "$1"/*.c; do
        [[ "$f" == *_test.c ]] || sources+=("$f")
    done
    "$WAFKA_ROOT/guest-sdk/c/build.sh" -o "$3" "${sources[@]}"
}
wafka_build_examples c c build "$WAFKA_ROOT/guest-sdk/c" "$WAFKA_ROOT/guest-sdk/tools"
