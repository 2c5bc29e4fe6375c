#!/bin/bash
# runtime_crash_slow.sh - exactly-once state, checkpoint, appends and projection across
# crashes (DESIGN §5): `sluice run` is SIGKILLed at each injection point
# (SLUICE_CRASH_AT=after-reduce|in-commit|after-commit) of several batches
# (SLUICE_CRASH_BATCH=N), then run again to completion without injection. After the
# crash the store must hold exactly what the committed batches wrote; after the
# recovery everything must equal a reference store that ran the same events without a
# crash, and the state must equal the one computed here from the input. The injection
# is a test switch of sluice-testing ($SLUICE_TESTING); the shipped sluice ignores it.
#
# Fixture: tests/fixtures/runtime/tally.deploy.lua (tally.lua, batchSize 7): it
# answers every t/inc with one t/seen {offset, count} on out/<stream's last segment>
# and projects it into proj_tally. Input: m/1 50 events, m/2 23, m/3 6, i.e. offsets
# up to 51, 24 and 7: 8 + 4 + 1 = 13 batches.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
: "${SLUICE_TESTING:?set SLUICE_TESTING to the sluice-testing binary}"
S=$SLUICE
BATCHES=13
declare -A NEVENTS=([m/1]=50 [m/2]=23 [m/3]=6)

input() {
	local s i
	for s in m/1 m/2 m/3; do
		for ((i = 1; i <= NEVENTS[$s]; i++)); do
			printf '{"stream":"%s","type":"t/inc","payload":{"by":%d}}\n' "$s" $(((i * 7) % 11 + 1))
		done
	done
}
input >"$TMP/input.jsonl"

# The expected final state, computed from the input: [stream, offset, {count, sum}].
expected_state=$(jq -s -c 'group_by(.stream)[] | [.[0].stream, (length + 1), {count: length, sum: (map(.payload.by) | add)}]' "$TMP/input.jsonl")

# setup DIR: a fresh copy of the fixture, its anchor run on the empty store, the input.
setup() {
	rm -rf "$1"
	cp -r "$SLUICE_SRC/tests/fixtures/runtime" "$1"
	$S run "$1/tally.deploy.lua" --until-caught-up >/dev/null 2>&1 || return 1
	$S append --jsonl --deployment "$1/tally.deploy.lua" <"$TMP/input.jsonl" >/dev/null
}
states() { $S state "$1/tally.deploy.lua" tally | jq -c '[.stream, .offset, .state]'; }
emitted() {
	local s
	for s in out/1 out/2 out/3; do $S events "$s" --deployment "$1/tally.deploy.lua" 2>/dev/null; done |
		jq -c 'select(.type == "t/seen") | [.stream, .offset, .payload, .idempotencyKey, .metadata]'
}
# SQL, not the CLI: proj_tally is the processor's ctx.db table, which no command reads.
projection() { sqlite3 -readonly "$1/tally.db" "SELECT stream, off, by, count FROM proj_tally ORDER BY stream, off"; }
crash_run() {
	{ SLUICE_CRASH_AT=$2 SLUICE_CRASH_BATCH=$3 $SLUICE_TESTING run "$1/tally.deploy.lua" --until-caught-up >/dev/null 2>&1; echo $?; } 2>/dev/null
}

# committed_ok DIR WHAT: what the crashed run left is exactly what its committed
# batches wrote: for every instance, the emitted t/seen are exactly one per t/inc up
# to the checkpoint, each with the running count; the projection has the same rows.
committed_ok() {
	local dir=$1 what=$2 want got_e got_p
	want=$(states "$dir" | jq -r '.[0] as $s | .[1] as $o | range(2; $o + 1) | "\($s) \(.) \(. - 1)"' | sort)
	got_e=$(emitted "$dir" | jq -r '"\(.[4].source.stream) \(.[4].source.offset) \(.[2].count)"' | sort)
	got_p=$(projection "$dir" | awk -F'|' '{ print $1, $2, $4 }' | sort)
	eq "$what: the emitted events are exactly those of the committed batches" "$got_e" "$want"
	eq "$what: the projection rows are exactly those of the committed batches" "$got_p" "$want"
}

# ---- the reference: the same events, no crash ---------------------------------------------
REF=$TMP/ref
setup "$REF"
eq "reference: the run exits 0" "$($S run "$REF/tally.deploy.lua" --until-caught-up >/dev/null 2>&1; echo $?)" "0"
ref_states=$(states "$REF")
ref_emitted=$(emitted "$REF")
ref_projection=$(projection "$REF")
eq "reference: the state is the one computed from the input" "$ref_states" "$expected_state"
eq "reference: one t/seen per t/inc" "$(printf '%s\n' "$ref_emitted" | wc -l)" "79"
eq "reference: the emitted keys are unique" "$(printf '%s\n' "$ref_emitted" | jq -r '.[3]' | sort | uniq -d | wc -l)" "0"
committed_ok "$REF" "reference"

# ---- crashes --------------------------------------------------------------------------------
# recover DIR WHAT: runs to completion and compares with the reference.
recover() {
	local dir=$1 what=$2
	eq "$what: the recovery run exits 0" "$($S run "$dir/tally.deploy.lua" --until-caught-up >/dev/null 2>&1; echo $?)" "0"
	eq "$what: the state equals the reference and the input's" "$(states "$dir")" "$expected_state"
	eq "$what: the emitted events equal the reference's (none lost or duplicated)" "$(emitted "$dir")" "$ref_emitted"
	eq "$what: the projection equals the reference's" "$(projection "$dir")" "$ref_projection"
}

for at in after-reduce in-commit after-commit; do
	for n in 1 2 4 8 $BATCHES; do
		dir=$TMP/c-$at-$n
		setup "$dir"
		eq "$at #$n: the run dies of SIGKILL" "$(crash_run "$dir" $at $n)" "137"
		committed_ok "$dir" "$at #$n: after the crash"
		recover "$dir" "$at #$n"
		rm -rf "$dir"
	done
done

# Several crashes in a row before a recovery.
dir=$TMP/c-multi
setup "$dir"
eq "multi: killed inside commit #3" "$(crash_run "$dir" in-commit 3)" "137"
eq "multi: then after reduce #2" "$(crash_run "$dir" after-reduce 2)" "137"
eq "multi: then after commit #4" "$(crash_run "$dir" after-commit 4)" "137"
committed_ok "$dir" "multi: after three crashes"
recover "$dir" "multi"

finish
