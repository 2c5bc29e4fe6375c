#!/bin/bash
# check_fixtures.sh - `sluice check` on broken deployments, contracts and scripts
# (DESIGN §3, §4, §6, §7 "CLI details"): each exits 1, prints nothing on stdout and
# lists every error on stderr, one line each, as `sluice: <file>: <field>: <message>`
# (a syntax error names its line instead: `sluice: <file>:<line>: <message>`).
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
		printf '%s\n' "$line" | grep -Eq "^sluice: $Fre/[^:]+(: [^ ]+: |:[0-9]+: ).+" || bad="$bad [$line]"
	done <<<"$err"
	if [ -z "$bad" ]; then pass "$name: every line is 'sluice: <file>: <field>: <message>'"
	else failt "$name: every line is 'sluice: <file>: <field>: <message>'" "not in that form:$bad"; fi
	eq "$name: no error is listed twice" "$(printf '%s\n' "$err" | sort | uniq -d)" ""
	for pat in "$@"; do
		if printf '%s\n' "$err" | grep -Eq "^sluice: $Fre/$pat"; then pass "$name: lists /$pat/"
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
broken syntax "syntax\.lua:5: .*unexpected symbol"
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
broken short_lease "short_lease\.deploy\.lua: /lease: must be at least 100ms, got 50ms"
broken bad_lease "bad_lease\.deploy\.lua: /lease: "

# run refuses a deployment that does not load, before it touches the store.
$S run "$F/two_broken.deploy.lua" --until-caught-up >"$TMP/out" 2>"$TMP/err"; code=$?
eq "run of a broken deployment exits 1" "$code" "1"
eq "run of a broken deployment prints nothing on stdout" "$(cat "$TMP/out")" ""
check "run lists the script errors too" grep -q "unknown_field\.lua: .*reduse" "$TMP/err"
check "run of a broken deployment does not create its store" test ! -e "$F/check.db"

finish
