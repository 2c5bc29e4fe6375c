#!/bin/bash
# nats_wake.sh - a live `sluice run` on a JetStream store is woken by every append of
# another process (a subscription to the namespace's event subjects), not by its slow
# poll: the run here is sluice-testing with SLUICE_POLL_MS=600000, so the poll never
# fires during the test, and each event appended by another process must be folded
# well under a second after its append returned.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/natslib.sh"
S=$SLUICE
: "${SLUICE_TESTING:?set SLUICE_TESTING to the sluice-testing binary}"

if ! nats_have; then
	echo "# skipped: nats-server is not installed (make deps installs it); the JetStream wake is untested"
	finish
	exit
fi
nats_start main || { failt "nats-server started"; finish; exit; }

mkdir -p "$TMP/schemas" "$TMP/procs"
cat >"$TMP/schemas/count.contract.json" <<'EOF'
{ "name": "count", "version": 1, "consumes": ["t/inc"],
  "events": { "t/inc": {"type": "object"} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
cat >"$TMP/procs/count.lua" <<'EOF'
return { contract = "count", reduce = { ["t/inc"] = function(s) return { n = s.n + 1 } end } }
EOF
D=$TMP/deploy.lua
cat >"$D" <<EOF
return {
  store = "$NATS_URL", schemas = { "$TMP/schemas" },
  processors = { count = { script = "$TMP/procs/count.lua", streams = "w/*" } },
}
EOF

count() { $S state "$D" count w/1 | jq .state.n; }
count_is() { [ "$(count)" = "$1" ]; }
ms() { echo $(($(date +%s%N) / 1000000)); }

$S append w/1 t/inc --deployment "$D" >/dev/null
SLUICE_POLL_MS=600000 "$SLUICE_TESTING" run "$D" --log-format text 2>"$TMP/run.err" &
RUN=$!
check "the live run catches up on the first event" wait_until 20 count_is 1

worst=0
for i in 2 3 4 5 6 7 8 9 10 11; do
	$S append w/1 t/inc --deployment "$D" >/dev/null
	t0=$(ms)
	wait_until 10 count_is "$i" || { worst=99999; break; }
	t=$(($(ms) - t0))
	[ "$t" -gt "$worst" ] && worst=$t
done
eq "each of 10 appends by another process was folded" "$(count)" "11"
echo "# slowest: ${worst} ms from the append's return to its state being read back"
check "each within 500 ms (the slow poll was set to 10 minutes)" test "$worst" -lt 500

# A stream that did not exist when the run started gets its instance live too.
$S append w/2 t/inc --deployment "$D" >/dev/null
t0=$(ms)
wait_until 10 sh -c "[ \"\$($S state '$D' count w/2 | jq .state.n)\" = 1 ]"
t=$(($(ms) - t0))
check "a new stream's first event is folded within 500 ms ($t ms)" test "$t" -lt 500

kill -TERM "$RUN"
wait "$RUN"
eq "the run stops cleanly on SIGTERM" "$?" "0"
finish
