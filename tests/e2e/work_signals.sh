#!/bin/bash
# work_signals.sh - shutting `sluice run` down while a batch waits for blocking work
# (DESIGN §5 "shutdown", README "run"): SIGTERM (or SIGINT) stops new batches and lets
# the batch in flight settle: the process exits 0, and nothing is lost or duplicated
# once a second run has caught up (emitted events, state, projection, side effects).
# A second signal exits at once (non-zero) without waiting for the work; the store is
# intact afterwards and the batch is delivered again.
#
# Fixture: tests/fixtures/work (work.lua: a w/cmd {op = "sig", n, ms, file} registers a
# block item that appends "started <n>" to file, sleeps ms (2 s here), appends "finished <n>";
# the hook appends w/result {n} and a work_rows row). The test sends a signal once
# "started <n>" is in the file, i.e. while the batch is known to be in flight.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
. "$(dirname "$0")/lib/worklib.sh"
S=$SLUICE
FX=$TMP/fx
cp -r "$SLUICE_SRC/tests/fixtures/work" "$FX"

# deployment NAME: $FX/NAME.deploy.lua over g/*, one event per batch.
deployment() {
	cat >"$FX/$1.deploy.lua" <<EOF
return {
  store = "$1.db", schemas = { "schemas" },
  processors = { work = { script = "work.lua", streams = "g/*", sideEffects = "all", batchSize = 1 } },
}
EOF
	echo "$FX/$1.deploy.lua"
}
sig_cmd() { $S append g/1 w/cmd "{\"op\":\"sig\",\"n\":$2,\"ms\":$3,\"file\":\"$4\"}" --deployment "$1" >/dev/null; }
# start D: `sluice run D` in the background (RUN_PID), stderr to $TMP/bg.err.
start() {
	$S run "$1" >/dev/null 2>"$TMP/bg.err" &
	RUN_PID=$!
	KILL_PIDS+=("$RUN_PID")
}
# stopped: waits for the background run (in this shell: not in $(...)) and sets RC.
stopped() { wait "$RUN_PID"; RC=$?; }
has_line() { grep -qx "$2" "$1" 2>/dev/null; }
file() { if [ -f "$1" ]; then tr '\n' ' ' <"$1"; fi; }
inst() { $S state "$1" work g/1 | jq -c '[.offset, .status, .state.ns]'; }
results() { $S events g/1 --deployment "$1" --type w/result | jq -r '.payload.n' | tr '\n' ' '; }
# SQL, not the CLI: work_rows is the processor's ctx.db table, which no command reads.
rows() { sqlite3 -readonly "$1" "SELECT off FROM work_rows ORDER BY off" | tr '\n' ' '; }

# ---- one signal: the batch in flight settles ------------------------------------------------
for signal in TERM INT; do
	D=$(deployment one-$signal)
	F=$TMP/one-$signal.lines
	for n in 1 2 3; do sig_cmd "$D" $n 2000 "$F"; done
	start "$D"
	check "SIG$signal: the first batch's block item started" wait_for 30 has_line "$F" "started 1"
	kill -$signal "$RUN_PID"
	stopped
	eq "SIG$signal: sluice run exits 0" "$RC" "0"
	eq "SIG$signal: the block item finished; no batch started after the signal" "$(file "$F")" "started 1 finished 1 "
	eq "SIG$signal: the batch in flight committed before the exit" "$(inst "$D")" '[2,"ok","1"]'
	eq "SIG$signal: its emitted event and ctx.db row committed" "$(results "$D"):$(rows "$FX/one-$signal.db")" "1 :2 "
	eq "SIG$signal: the shutdown reported no unsettled batch" "$(grep -c 'did not settle' "$TMP/bg.err")" "0"
	eq "SIG$signal: the second run exits 0" "$($S run "$D" --until-caught-up >/dev/null 2>&1; echo $?)" "0"
	eq "SIG$signal: after the second run, every event was processed once" "$(inst "$D" | jq -c '.[2]')" '"1,2,3"'
	eq "SIG$signal: one emitted event per command, none duplicated" "$(results "$D")" "1 2 3 "
	eq "SIG$signal: one ctx.db row per command" "$(rows "$FX/one-$signal.db")" "2 3 4 "
	eq "SIG$signal: each block item ran once (nothing was delivered again)" "$(file "$F")" \
	   "started 1 finished 1 started 2 finished 2 started 3 finished 3 "
done

# ---- a second signal: exit at once ----------------------------------------------------------
D=$(deployment two)
F=$TMP/two.lines
sig_cmd "$D" 1 5000 "$F"
start "$D"
check "second signal: the batch's block item started" wait_for 30 has_line "$F" "started 1"
kill -TERM "$RUN_PID"
kill -INT "$RUN_PID"
stopped
eq "second signal: sluice run exits non-zero (128 + signal)" "$([ "$RC" = 130 ] || [ "$RC" = 143 ] && echo yes || echo "exit $RC")" "yes"
# The item's 5 s sleep was not awaited: had the process waited, "finished 1" would be in
# the file; now that the process is gone it can never be written.
eq "second signal: it did not wait for the block item" "$(file "$F")" "started 1 "
eq "second signal: it said why" "$(grep -c 'second signal' "$TMP/bg.err")" "1"
# SQL, not the CLI: only SQLite can check its file's integrity.
eq "second signal: the store is intact" "$(sqlite3 "$FX/two.db" 'PRAGMA integrity_check')" "ok"
eq "second signal: the batch did not commit (the checkpoint is at stream/created)" "$(inst "$D"):$(results "$D"):$(rows "$FX/two.db")" '[1,"ok",""]::'
sig_cmd "$D" 2 10 "$F"
eq "second signal: the next run exits 0" "$($S run "$D" --until-caught-up >/dev/null 2>&1; echo $?)" "0"
eq "second signal: the batch was delivered again, then the next one" "$(file "$F")" \
   "started 1 started 1 finished 1 started 2 finished 2 "
eq "second signal: state, emitted events and rows are exactly once" \
   "$(inst "$D" | jq -c '.[2]'):$(results "$D"):$(rows "$FX/two.db")" '"1,2":1 2 :2 3 '

# ---- the shutdown deadline ----------------------------------------------------------------------
# --shutdown-timeout (and the deployment's shutdownTimeout) bound how long one signal
# waits: the block item sleeps 60 s, the deadline is 300 ms. Had the deadline not been
# honoured, the run would still be waiting when wait_for gives up.
for how in option deployment; do
	D=$(deployment dl-$how)
	F=$TMP/dl-$how.lines
	sig_cmd "$D" 1 60000 "$F"
	if [ $how = option ]; then
		$S run "$D" --shutdown-timeout 300ms >/dev/null 2>"$TMP/bg.err" &
	else
		sed -i 's/store = /shutdownTimeout = "300ms", store = /' "$D"
		$S run "$D" >/dev/null 2>"$TMP/bg.err" &
	fi
	RUN_PID=$!
	KILL_PIDS+=("$RUN_PID")
	check "deadline ($how): the block item started" wait_for 30 has_line "$F" "started 1"
	kill -TERM "$RUN_PID"
	check "deadline ($how): the run ends without waiting for the 60 s item" \
	      wait_for 20 sh -c "! kill -0 $RUN_PID 2>/dev/null"
	stopped
	eq "deadline ($how): it exits 0" "$RC" "0"
	eq "deadline ($how): it reported the unsettled batch" "$(grep -c 'did not settle in time' "$TMP/bg.err")" "1"
	eq "deadline ($how): the batch did not commit" "$(inst "$D"):$(results "$D")" '[1,"ok",""]:'
done
refuses "a bad --shutdown-timeout is refused" "shutdown-timeout: must be a duration" $S run "$D" --shutdown-timeout soon

finish
