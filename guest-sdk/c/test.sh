#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Compiles a C plugin's unit test for the build machine and runs it, against the fake host.
#
#   guest-sdk/c/test.sh SOURCE.c... [-- COMPILER_ARGS...]
#
# SOURCEs are the plugin's files and its test (which has main() and includes
# <wafka_testing.h>). They are compiled natively with the SDK (src/wafka.c), the generated
# bindings (plugin.c, as in a component) and the fake host (testing/fake_host.c, which takes
# the place of the host's imports), into ${WAFKA_CACHE:-~/.cache/wafka}/guest-c-test/<name of
# the first SOURCE>, never into the source tree; the program then runs, and the script fails
# when it does.
#
# The compiler is `zig cc` for the build machine (from the toolchain the wasm build uses, see
# guest-sdk/toolchain.sh) unless WAFKA_TEST_CC names another, e.g. WAFKA_TEST_CC=cc (the
# system's, which has -fsanitize=address). CFLAGS (default -g) and COMPILER_ARGS are passed to
# it.
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WAFKA_LOG_NAME="guest-sdk/c/test.sh"
# shellcheck source=../toolchain.sh
source "$sdk/../toolchain.sh"

inputs=()
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --)
        shift
        extra=("$@")
        break
        ;;
    -*) wafka_usage ;;
    *)
        inputs+=("$1")
        shift
        ;;
    esac
done
[[ ${#inputs[@]} -gt 0 ]] || wafka_usage
for f in "${inputs[@]}"; do
    [[ -f "$f" ]] || wafka_die "no file $f"
done

if [[ -n "${WAFKA_TEST_CC:-}" ]]; then
    # shellcheck disable=SC2206 # a command with arguments, split on spaces on purpose
    cc=($WAFKA_TEST_CC)
else
    wafka_need_zig
    cc=("$ZIG" cc)
fi

name="$(basename "${inputs[0]}" .c)"
build="$WAFKA_CACHE/guest-c-test/$name"
mkdir -p "$build"
wafka_c_bindings "$build/bindings"

# shellcheck disable=SC2206 # CFLAGS is a list of flags
cflags=(${CFLAGS:--g})
# The bindings are written for wasm: natively their import and export attributes mean nothing
# (warnings, hence -w), and the fake defines the imports.
"${cc[@]}" -std=c11 -w "${cflags[@]}" "${extra[@]}" -c "$build/bindings/plugin.c" -o "$build/plugin.o"
"${cc[@]}" -std=c11 -Wall -Wextra "${cflags[@]}" \
    -I "$sdk/include" -I "$build/bindings" \
    "$sdk/src/wafka.c" "$sdk/testing/fake_host.c" "$build/plugin.o" \
    "${inputs[@]}" "${extra[@]}" \
    -o "$build/test"
status=0
"$build/test" || status=$?
[[ $status -eq 0 ]] || wafka_die "$name failed (exit status $status)"
wafka_log "$name passed"
