#!/bin/bash
# runtime_version.sh - raising a contract's `version` rebuilds the processor (DESIGN
# §3, §5, §7 "ctx.db"): its checkpoints and projection tables are discarded, it replays
# from offset 1 re-deriving state and projection (processEventBatch runs during the
# rebuild; processEvent does not), and nothing already emitted is emitted again. The
# projection and the checkpoint always stand at the same offset: after every run,
# after a crash in the middle of a run and after a crash in the middle of a rebuild.
#
# Fixture: tests/fixtures/runtime/tally.lua via tally.deploy.lua (batchSize 7). It
# writes one row per consumed event into proj_tally, logs "batch <stream> <first>-<last>"
# from processEventBatch and "effect <stream>@<offset>" from processEvent, and appends
# one t/seen per event to out/<stream's last segment>. The crash injection is a test
# switch of sluice-testing ($SLUICE_TESTING); the shipped sluice ignores it.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
: "${SLUICE_TESTING:?set SLUICE_TESTING to the sluice-testing binary}"
S=$SLUICE

cp -r "$SLUICE_SRC/tests/fixtures/runtime" "$TMP/fx"
D=$TMP/fx/tally.deploy.lua
C=$TMP/fx/schemas/tally.contract.json
DB=$TMP/fx/tally.db
rc() { "$@" >/dev/null 2>&1; echo $?; }
# SQL, not the CLI: proj_tally is the processor's ctx.db table, which no command reads.
sql() { sqlite3 -readonly "$DB" "$1"; }
jsonl() { local i; for ((i = $2; i <= $3; i++)); do printf '{"stream":"%s","type":"t/inc","payload":{"by":%d}}\n' "$1" $((i % 5 + 1)); done; }
set_version() { sed -i -E "s/\"version\": [0-9]+/\"version\": $1/" "$C"; }
run() { $S run "$D" --until-caught-up --log-format text >/dev/null 2>"$TMP/run.err"; echo $?; }
effects() { grep -c ' effect ' "$TMP/run.err"; }
# crash_run AT N: runs with crash injection; prints the exit status (137 for SIGKILL).
crash_run() {
	{ SLUICE_CRASH_AT=$1 SLUICE_CRASH_BATCH=$2 $SLUICE_TESTING run "$D" --until-caught-up >/dev/null 2>&1; echo $?; } 2>/dev/null
}
emitted() { { for s in out/1 out/2 out/3; do $S events "$s" --deployment "$D" --type t/seen; done; } 2>/dev/null; }

# consistent WHEN: for every instance, the projection's last row is the checkpoint
# offset, the rows are exactly the consumed events up to it, and the state agrees.
consistent() {
	local when=$1 line stream off count sum bad=""
	while read -r line; do
		stream=$(jq -r .stream <<<"$line"); off=$(jq -r .offset <<<"$line")
		count=$(jq -r .state.count <<<"$line"); sum=$(jq -r .state.sum <<<"$line")
		got=$(sql "SELECT coalesce(max(off), 0) || ',' || count(*) || ',' || coalesce(sum(by), 0) || ',' || coalesce(max(count), 0) FROM proj_tally WHERE stream = '$stream'" 2>&1)
		# Offset 1 is stream/created; every later event of m/* is a t/inc.
		want="$off,$((off > 1 ? off - 1 : 0)),$sum,$count"
		[ "$got" = "$want" ] || bad="$bad $stream: projection (max off,rows,sum,count) $got, checkpoint/state $want;"
	done < <($S state "$D" tally 2>/dev/null)
	if [ -z "$bad" ]; then pass "$when: projection and checkpoint stand at the same offset"; else failt "$when: projection and checkpoint stand at the same offset" "$bad"; fi
}

eq "the first run on the empty store exits 0" "$(run)" "0"
{ jsonl m/1 1 30; jsonl m/2 1 12; } | $S append --jsonl --deployment "$D" >/dev/null
eq "the run over 42 events exits 0" "$(run)" "0"
eq "processEvent ran once per event" "$(effects)" "42"
state_v1=$($S state "$D" tally | jq -c '[.stream, .offset, .state]')
eq "state after the first pass" "$(printf '%s' "$state_v1" | tr '\n' ' ')" \
   '["m/1",31,{"count":30,"sum":90}] ["m/2",13,{"count":12,"sum":35}]'
eq "42 t/seen were emitted, all at version 1" "$(emitted | jq -r .metadata.source.version | sort | uniq -c | tr -s ' ')" " 42 1"
consistent "after the first pass"
emitted_v1=$(emitted | jq -c '[.stream, .offset, .idempotencyKey, .payload]')

# ---- version 2: a rebuild --------------------------------------------------------------
# Tamper with the projection: a rebuild must discard the table, not keep it.
# SQL, not the CLI: only SQL can tamper with the projection table proj_tally.
sqlite3 "$DB" "UPDATE proj_tally SET by = -1; INSERT INTO proj_tally VALUES ('m/9', 99, 1, 1)"
set_version 2
eq "the run after raising the version exits 0" "$(run)" "0"
eq "the rebuild replays from offset 1 (first batch of m/1 starts at 2)" \
   "$(grep -c ' batch m/1 2-7$' "$TMP/run.err")" "1"
eq "the rebuild runs processEventBatch for every batch of m/1 (31 offsets, 7 per batch)" \
   "$(grep -c ' batch m/1 ' "$TMP/run.err")" "5"
eq "processEvent does not run during the rebuild" "$(effects)" "0"
eq "the rebuilt state is the same" "$($S state "$D" tally | jq -c '[.stream, .offset, .state]')" "$state_v1"
eq "nothing was emitted again" "$(emitted | jq -c '[.stream, .offset, .idempotencyKey, .payload]')" "$emitted_v1"
eq "the tampered projection rows were rebuilt from the events" "$(sql "SELECT count(*) FROM proj_tally WHERE by < 1")" "0"
eq "the stray projection row is gone" "$(sql "SELECT count(*) FROM proj_tally WHERE stream = 'm/9'")" "0"
consistent "after the rebuild"

# New events after the rebuild get side effects, emitted at version 2.
{ jsonl m/1 31 35; jsonl m/3 1 3; } | $S append --jsonl --deployment "$D" >/dev/null
eq "the run over new events exits 0" "$(run)" "0"
eq "processEvent ran for the 8 new events only" "$(effects)" "8"
eq "the new t/seen are at version 2" \
   "$(emitted | jq -r '"\(.metadata.source.version)"' | sort | uniq -c | tr -s ' ' | tr '\n' ';')" " 42 1; 8 2;"
consistent "after new events"

# ---- a crash in the middle of a run -------------------------------------------------------
jsonl m/1 36 60 | $S append --jsonl --deployment "$D" >/dev/null
eq "the run killed inside its second commit dies of SIGKILL" "$(crash_run in-commit 2)" "137"
consistent "after a crash inside a commit"
eq "the run killed after its first commit dies of SIGKILL" "$(crash_run after-commit 1)" "137"
consistent "after a crash after a commit"
eq "the run after the crashes exits 0" "$(run)" "0"
consistent "after the crashes were recovered"
eq "every event was answered exactly once" \
   "$(emitted | jq -r '"\(.metadata.source.stream)@\(.metadata.source.offset)"' | sort | uniq -d | wc -l),$(emitted | wc -l)" "0,75"

# ---- a crash in the middle of a rebuild ----------------------------------------------------
state_v2=$($S state "$D" tally | jq -c '[.stream, .offset, .state]')
emitted_v2=$(emitted | jq -c '[.stream, .offset, .idempotencyKey, .payload]')
set_version 3
eq "the rebuild killed after its third commit dies of SIGKILL" "$(crash_run after-commit 3)" "137"
consistent "after a crash in the middle of a rebuild"
eq "the run after the interrupted rebuild exits 0" "$(run)" "0"
eq "it runs no side effect" "$(effects)" "0"
eq "the state is rebuilt to the same value" "$($S state "$D" tally | jq -c '[.stream, .offset, .state]')" "$state_v2"
eq "nothing was emitted again" "$(emitted | jq -c '[.stream, .offset, .idempotencyKey, .payload]')" "$emitted_v2"
consistent "after the interrupted rebuild completed"

# ---- reset of one instance: the side-effects mark -----------------------------------------
# m/3's events are above the anchor: only the mark keeps processEvent from running again.
eq "reset of the m/3 instance exits 0" "$(rc $S reset "$D" tally m/3)" "0"
eq "reset of one instance keeps the projection table" \
   "$(sql "SELECT count(*) FROM proj_tally WHERE stream = 'm/3'")" "3"
eq "the replay of m/3 exits 0" "$(run)" "0"
eq "the replay of m/3 re-derives the state" "$($S state "$D" tally | jq -c '[.stream, .offset, .state]')" "$state_v2"
eq "the replay of m/3 runs no side effect (the mark is kept)" "$(effects)" "0"
eq "the replay of m/3 did run processEventBatch" "$(grep -c ' batch m/3 2-4$' "$TMP/run.err")" "1"
consistent "after reset of one instance"
eq "reset --with-effects of the m/3 instance exits 0" "$(rc $S reset "$D" tally m/3 --with-effects)" "0"
eq "the replay after reset --with-effects exits 0" "$(run)" "0"
eq "reset --with-effects runs m/3's side effects again" \
   "$(grep ' effect ' "$TMP/run.err" | sed 's/.* effect //' | tr '\n' ' ')" "m/3@2 m/3@3 m/3@4 "
eq "their appends hit their keys: nothing new is emitted" \
   "$(emitted | jq -c '[.stream, .offset, .idempotencyKey, .payload]')" "$emitted_v2"
eq "the state is the same" "$($S state "$D" tally | jq -c '[.stream, .offset, .state]')" "$state_v2"
consistent "after reset --with-effects of one instance"

# ---- reset of the processor: its tables are dropped, and rebuilt by the replay -------------
eq "reset of the processor exits 0" "$(rc $S reset "$D" tally)" "0"
eq "reset drops the processor's projection table" \
   "$(sql "SELECT count(*) FROM sqlite_schema WHERE name = 'proj_tally'")" "0"
eq "reset puts every instance back at offset 0" \
   "$($S state "$D" tally | jq -r .offset | sort -u)" "0"
eq "the replay after reset exits 0" "$(run)" "0"
eq "the replay runs no side effect" "$(effects)" "0"
eq "the replay re-derives the state" "$($S state "$D" tally | jq -c '[.stream, .offset, .state]')" "$state_v2"
eq "the replay emits nothing" "$(emitted | jq -c '[.stream, .offset, .idempotencyKey, .payload]')" "$emitted_v2"
consistent "after reset and replay"

finish
