#!/bin/bash
# check_fixtures.sh - `sluice check` on broken deployments, contracts and scripts
# (DESIGN §3, §4, §6, §7 "CLI details"): each exits 1, prints nothing on stdout and
# lists every error on stderr, one line each, as `sluice: <file>: <field>: <message>`
# (for a syntax error the field is its line: `sluice: <file>: line <N>: <message>`),
# in the same order on every run.
#
# Fixtures: tests/fixtures/check/*.deploy.lua, their scripts and schemas/.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
S=$SLUICE

cp -r "$SLUICE_SRC/tests/fixtures/check" "$TMP/fx"
F=$TMP/fx
Fre=$(printf '%s' "$F" | sed 's/[][\.*^$/]/\\&/g')

# broken NAME PATTERN...: `sluice check $F/NAME.deploy.lua` exits 1 with an empty
# stdout; every stderr line has the documented form, no line is repeated, and each
# PATTERN (grep -E, after "sluice: $F/") matches a line.
broken() {
	local name=$1 out code err line pat bad=""; shift
	out=$($S check "$F/$name.deploy.lua" 2>"$TMP/err"); code=$?
	err=$(cat "$TMP/err")
	eq "$name: check exits 1" "$code" "1"
	eq "$name: nothing on stdout" "$out" ""
	while IFS= read -r line; do
		printf '%s\n' "$line" | grep -Eq "^sluice: $Fre/[^:]+: ([^ ]+|line [0-9]+): .+" || bad="$bad [$line]"
	done <<<"$err"
	if [ -z "$bad" ]; then pass "$name: every line is 'sluice: <file>: <field>: <message>'"
	else failt "$name: every line is 'sluice: <file>: <field>: <message>'" "not in that form:$bad"; fi
	eq "$name: no error is listed twice" "$(printf '%s\n' "$err" | sort | uniq -d)" ""
	for _ in 1 2 3; do
		$S check "$F/$name.deploy.lua" 2>"$TMP/err2" >/dev/null
		if ! cmp -s "$TMP/err" "$TMP/err2"; then
			failt "$name: the same order on every run" "$(diff "$TMP/err" "$TMP/err2")"; break
		fi
	done
	for pat in "$@"; do
		# A here-string, not a pipe: with pipefail, grep -q leaving at the first match
		# can kill printf with SIGPIPE and fail the pipeline although it matched.
		if grep -Eq "^sluice: $Fre/$pat" <<<"$err"; then pass "$name: lists /$pat/"
		else failt "$name: lists /$pat/" "stderr was: $err"; fi
	done
}
# lacks NAME PATTERN WHY: no stderr line of the last `broken NAME` matches PATTERN.
lacks() {
	if grep -Eq "$2" "$TMP/err"; then failt "$1: $3" "unexpected line: $(grep -E "$2" "$TMP/err")"; else pass "$1: $3"; fi
}

# The control: the same fixtures' valid deployment passes.
out=$($S check "$F/good.deploy.lua" 2>"$TMP/err"); code=$?
eq "good: check exits 0" "$code" "0"
eq "good: nothing on stderr" "$(cat "$TMP/err")" ""
eq "good: one ok line" "$(printf '%s' "$out" | jq -c .ok)" "true"

# Contracts.
broken typo_consumes \
	"schemas/ck_typo\.contract\.json: consumes: .*'ck/incremnted'.*did you mean 'ck/incremented'"
broken star_emits "schemas/ck_star\.contract\.json: emits: .*'\*'"
broken bad_initial "schemas/ck_initial\.contract\.json: initialState: .*count"
broken format "schemas/ck_format\.contract\.json: [^ ]+: .*unsupported keyword 'format'"
lacks format "unknown event type 'ck/signed-up'" \
	"an event whose schema is refused is not also reported as an unknown type"
broken multi_contract \
	"schemas/ck_multi\.contract\.json: consumes: .*'ck/incremnted'.*did you mean 'ck/incremented'" \
	"schemas/ck_multi\.contract\.json: emits: .*'\*'" \
	"schemas/ck_multi\.contract\.json: emits: .*'ck/milestne'.*did you mean 'ck/milestone'" \
	"schemas/ck_multi\.contract\.json: initialState: .*count"

# Scripts.
broken reduce_key "reduce_key\.lua: reduce: .*'ck/incremnted'.*did you mean 'ck/incremented'"
broken unknown_field "unknown_field\.lua: .*reduse.*did you mean 'reduce'"
broken syntax "syntax\.lua: line 5: unexpected symbol near '}'"
lacks syntax "syntax\.lua:[0-9]" "the line is a field, not Lua's file:line position"
broken multi_script \
	"multi_script\.lua: reduce: .*'ck/incremnted'.*did you mean 'ck/incremented'" \
	"multi_script\.lua: processEvent: .*'ck/milestone'.*not consumed" \
	"multi_script\.lua: processEventBatch: .*function" \
	"multi_script\.lua: .*prepar.*did you mean 'prepare'"

# Deployments.
broken two_broken \
	"reduce_key\.lua: reduce: .*'ck/incremnted'" \
	"unknown_field\.lua: .*reduse"
lacks two_broken "good\.lua" "the good processor beside them is not reported"
broken wrong_type "wrong_type\.deploy\.lua: /processors/p/streams: .*string"
broken multi_deploy \
	"multi_deploy\.deploy\.lua: /processors/p/streams: .*string" \
	"multi_deploy\.deploy\.lua: /processors/q/batchSize: .*integer" \
	"multi_deploy\.deploy\.lua: /processors/q/mode: " \
	"multi_deploy\.deploy\.lua: /durability: " \
	"multi_deploy\.deploy\.lua: [^ ]*: .*consle"
broken short_lease "short_lease\.deploy\.lua: /lease: must be a duration between 100ms and 24 hours, got '50ms'"
broken bad_lease "bad_lease\.deploy\.lua: /lease: "

# Keys that are not names once aborted check and run with a Lua PANIC (exit 134).
broken numeric_key "numeric_key\.deploy\.lua: /processors: field names must be strings, got number key 1"
broken list_entry "list_entry\.deploy\.lua: /processors: field names must be strings, got number key 2"
for name in numeric_key list_entry; do
	$S run "$F/$name.deploy.lua" --until-caught-up >/dev/null 2>"$TMP/err"; code=$?
	eq "$name: run exits 1" "$code" "1"
	check "$name: run names the file and field" grep -q "^sluice: .*$name\.deploy\.lua: /processors: field names" "$TMP/err"
done

# Every error of nested objects, with a "did you mean" at every depth.
broken nested_typos \
	"nested_typos\.deploy\.lua: /processors/p/limits: unknown field 'instructons' \(did you mean 'instructions'\?\)" \
	"nested_typos\.deploy\.lua: /processors/p/limits: unknown field 'memroy' \(did you mean 'memory'\?\)" \
	"nested_typos\.deploy\.lua: /processors/p/limits/wallclock: " \
	"nested_typos\.deploy\.lua: /processors/p/retry: unknown field 'attemps' \(did you mean 'attempts'\?\)" \
	"nested_typos\.deploy\.lua: /processors/p/retry: unknown field 'backof' \(did you mean 'backoff'\?\)" \
	"nested_typos\.deploy\.lua: /processors/q: unknown field 'batchsize' \(did you mean 'batchSize'\?\)" \
	"nested_typos\.deploy\.lua: /processors/q: unknown field 'mod' \(did you mean 'mode'\?\)" \
	"nested_typos\.deploy\.lua: /: unknown field 'consle' \(did you mean 'console'\?\)"
eq "nested_typos: eight errors" "$(wc -l <"$TMP/err")" "8"
eq "nested_typos: sorted" "$(sort "$TMP/err")" "$(cat "$TMP/err")"

# Numeric settings are range-checked (the schema and the C side).
broken ranges \
	"ranges\.deploy\.lua: /processors/p/retry/attempts: maximum: 4294967296 is greater than 1000" \
	"ranges\.deploy\.lua: /processors/p/batchSize: maximum: " \
	"ranges\.deploy\.lua: /processors/p/limits/instructions: minimum: " \
	"ranges\.deploy\.lua: /processors/p/limits/memory: minimum: "
broken big_amounts \
	"big_amounts\.deploy\.lua: /shutdownTimeout: must be a duration of at most 24 hours, got '9+s'" \
	"big_amounts\.deploy\.lua: /processors/p/retry/backoff: must be a duration of at most 24 hours, got '1441m'" \
	"big_amounts\.deploy\.lua: /processors/p/limits/wallclock: must be a duration of at most 24 hours .*got '86400001ms'" \
	"big_amounts\.deploy\.lua: /processors/p/limits/memory: must be a size of at most 1024GiB .*got '1025GiB'"

# 0 disables the memory and wall-clock budgets.
out=$($S check "$F/zero_budgets.deploy.lua" 2>"$TMP/err"); code=$?
eq "zero_budgets: check exits 0" "$code" "0"
eq "zero_budgets: nothing on stderr" "$(cat "$TMP/err")" ""

# run refuses a deployment that does not load, before it touches the store.
$S run "$F/two_broken.deploy.lua" --until-caught-up >"$TMP/out" 2>"$TMP/err"; code=$?
eq "run of a broken deployment exits 1" "$code" "1"
eq "run of a broken deployment prints nothing on stdout" "$(cat "$TMP/out")" ""
check "run lists the script errors too" grep -q "unknown_field\.lua: .*reduse" "$TMP/err"
check "run of a broken deployment does not create its store" test ! -e "$F/check.db"

finish
