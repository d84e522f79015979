#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the JavaScript example plugins (examples/js/<name>/<name>.js) with
# guest-sdk/js/build.mjs into examples/build/<name>-js.wasm, printing the paths.
#
# The toolchain (jco, componentize-qjs, rolldown: pinned by guest-sdk/js/toolchain/package.json
# and its package-lock.json) is installed with npm into ${WAFKA_CACHE:-~/.cache/wafka}/js on
# first use and whenever the lock file changes.
set -euo pipefail
WAFKA_LOG_NAME="guests/js"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v node >/dev/null 2>&1 || wafka_die "node is not installed (Node.js 18 or later)"
command -v npm >/dev/null 2>&1 || wafka_die "npm is not installed"

toolchain="$WAFKA_CACHE/js"
lock="$WAFKA_SDKS/js/toolchain/package-lock.json"
stamp="$toolchain/.wafka-installed-lock" # the lock file of the last complete install
if ! cmp -s "$lock" "$stamp" || [[ ! -f "$toolchain/node_modules/@bytecodealliance/jco/dist/jco.js" ]]; then
    wafka_log "installing the toolchain into $toolchain (npm install from the lock file)"
    mkdir -p "$toolchain"
    rm -f "$stamp"
    cp "$WAFKA_SDKS/js/toolchain/package.json" "$lock" "$toolchain/"
    # Not `npm ci`: the registry here lacks some other platforms' optional native bindings,
    # which `npm ci` wants listed in the lock; `npm install` takes the locked versions anyway.
    (cd "$toolchain" && npm install --no-audit --no-fund --loglevel=error >&2) ||
        wafka_die "npm install failed"
    cp "$lock" "$stamp"
fi
export WAFKA_JS_TOOLCHAIN="$toolchain"

build() {
    node "$WAFKA_SDKS/js/build.mjs" "$1/$2.js" -o "$3"
}
wafka_build_examples js js build "$WAFKA_SDKS/js"
