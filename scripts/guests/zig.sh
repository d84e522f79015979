#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the Zig example plugins (examples/zig/<name>/<name>.zig, the root file of each) with
# guest-sdk/zig/build.sh into examples/build/<name>-zig.wasm, printing the paths. Tools: see
# guest-sdk/toolchain.sh.
set -euo pipefail
WAFKA_LOG_NAME="guests/zig"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build() {
    "$WAFKA_ROOT/guest-sdk/zig/build.sh" -o "$3" "$1/$2.zig"
}
wafka_build_examples zig zig build "$WAFKA_ROOT/guest-sdk/zig" "$WAFKA_ROOT/guest-sdk/tools"
