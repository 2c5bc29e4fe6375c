#!/bin/bash
# nats_outage.sh - a live `sluice run` on a JetStream store outlives an outage of its
# server: the server is stopped for 20 s, longer than a client that gives up
# reconnecting lasts (5 tries 2 s apart, libnats' way), started again on the same port
# and directory, and an event appended then is folded by the same runner, which never
# exited.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/natslib.sh"
S=$SLUICE

if ! nats_have; then
	echo "# skipped: nats-server is not installed (make deps installs it); server outages are untested"
	finish
	exit
fi
nats_start main || { failt "nats-server started"; finish; exit; }

D=$TMP/d.lua
cat >"$D" <<LUA
return { store = "$NATS_URL", console = "$TMP/console.sock", processors = {
  counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" } } }
LUA
count() { $S state "$D" counter counters/a 2>/dev/null | jq .state.count; }
folded() { [ "$(count)" = "$1" ]; }
$S append counters/a counter/incremented '{"by":1}' --deployment "$D" >/dev/null
$S run "$D" 2>"$TMP/run.err" &
RUN=$!
check "the runner folds the first event" wait_until 30 folded 1

nats_stop main
T0=$(date +%s)
noticed() { grep -q '"level":"warn"' "$TMP/run.err"; }
check "the runner notices the server is gone" wait_until 60 noticed
outage_for() { [ $(($(date +%s) - T0)) -ge "$1" ]; } # (the outage itself, not a wait for the runner)
wait_until 60 outage_for 20
check "and is still running 20 s into the outage" kill -0 $RUN
nats_start main || failt "nats-server started again"
$S append counters/a counter/incremented '{"by":2}' --deployment "$D" >/dev/null
check "an event appended after the restart is folded by the same runner" wait_until 30 folded 3
check "which never exited" kill -0 $RUN
check "its log says nothing of a closed connection" sh -c "! grep -q 'Connection Closed' '$TMP/run.err'"
kill -TERM $RUN
wait $RUN
eq "sluice run stops cleanly" "$?" "0"
finish
