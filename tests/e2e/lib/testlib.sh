# testlib.sh - helpers for the end-to-end tests, sourced by tests/e2e/*.sh.
# Each check prints a TAP line; `finish` prints the totals and sets the exit status.
set -uo pipefail

: "${SLUICE:?set SLUICE to the sluice binary}"
T_PASS=0
T_FAIL=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# SL_TEST_STORE runs a suite against another store (tests/e2e/nats_store.sh: JetStream).
export SLUICE_STORE="${SL_TEST_STORE:-$TMP/store.db}"
# test_store DEFAULT: the store a suite's deployment names: $SL_TEST_STORE when set,
# else DEFAULT.
test_store() { printf '%s' "${SL_TEST_STORE:-$1}"; }

pass() { T_PASS=$((T_PASS + 1)); echo "ok $((T_PASS + T_FAIL)) - $1"; }
failt() { T_FAIL=$((T_FAIL + 1)); echo "not ok $((T_PASS + T_FAIL)) - $1"; [ $# -gt 1 ] && echo "#   $2"; return 0; }

# check NAME COMMAND... : passes when the command succeeds.
check() {
	local name=$1; shift
	if "$@"; then pass "$name"; else failt "$name" "command failed: $*"; fi
}

# eq NAME GOT WANT
eq() {
	if [ "$2" = "$3" ]; then pass "$1"; else failt "$1" "got '$2', want '$3'"; fi
}

# refuses NAME PATTERN COMMAND... : the command must exit 1, print nothing on stdout
# and exactly one stderr line starting "sluice: " that matches PATTERN (grep -E).
refuses() {
	local name=$1 pat=$2 out err rc; shift 2
	out=$("$@" 2>"$TMP/err"); rc=$?
	err=$(cat "$TMP/err")
	if [ $rc -ne 1 ]; then failt "$name" "exit $rc, want 1 (stderr: $err)"; return; fi
	if [ -n "$out" ]; then failt "$name" "unexpected stdout: $out"; return; fi
	if [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || ! printf '%s' "$err" | grep -q '^sluice: '; then
		failt "$name" "stderr is not one 'sluice: ' line: $err"; return
	fi
	if ! printf '%s' "$err" | grep -Eq -- "$pat"; then failt "$name" "stderr '$err' does not match '$pat'"; return; fi
	pass "$name"
}

# wait_until SECONDS COMMAND...: polls the command (every 50 ms) until it succeeds;
# fails once SECONDS have passed. The way to wait for a running engine: never a bare sleep.
wait_until() {
	local deadline=$(($(date +%s) + $1)); shift
	until "$@"; do
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

finish() {
	echo "1..$((T_PASS + T_FAIL))"
	echo "$T_PASS passed, $T_FAIL failed"
	[ "$T_FAIL" -eq 0 ]
}
