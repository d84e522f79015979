#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the Go example plugins (examples/go/<name>, one module each, in the workspace
# examples/go/go.work) with guest-sdk/go/build.sh into examples/build/<name>-go.wasm, printing
# the paths. Tools: see guest-sdk/toolchain.sh.
set -euo pipefail
WAFKA_LOG_NAME="guests/go"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export GOWORK="$WAFKA_ROOT/examples/go/go.work"
build() {
    "$WAFKA_SDKS/go/build.sh" -o "$3" "$1"
}
wafka_build_examples go go build "$WAFKA_SDKS/go" "$WAFKA_ROOT/examples/go/go.work" "$WAFKA_SDKS/tools"
