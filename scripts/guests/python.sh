#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the Python example plugins (examples/python/<name>/<name>.py) with
# guest-sdk/python/build.sh into examples/build/<name>-py.wasm, printing the paths.
#
# componentize-py and wasm-tools (pins: guest-sdk/python/requirements-build.txt) go into the
# tools venv (guest-sdk/toolchain.sh). A cold build takes 20-60 s per example.
set -euo pipefail
WAFKA_LOG_NAME="guests/python"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build() {
    "$WAFKA_SDKS/python/build.sh" -o "$3" "$1/$2.py"
}
wafka_build_examples python py build "$WAFKA_SDKS/python"
