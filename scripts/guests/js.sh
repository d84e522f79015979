#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the JavaScript example plugins (examples/js/<name>/<name>.js) with guest-sdk/js/build.sh
# into examples/build/<name>-js.wasm, printing the paths. Tools: see guest-sdk/toolchain.sh.
set -euo pipefail
WAFKA_LOG_NAME="guests/js"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

wafka_need_js
build() {
    "$WAFKA_SDKS/js/build.sh" -o "$3" "$1/$2.js"
}
wafka_build_examples js js build "$WAFKA_SDKS/js"
