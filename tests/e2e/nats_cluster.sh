#!/bin/bash
# nats_cluster.sh - the JetStream backend on a 3-node cluster (tests/e2e/lib/natslib.sh):
# streams and buckets with 3 replicas; concurrent writers of one stream never share an
# offset (a clustered nats-server 2.9 checks a subject's last sequence only before
# the raft proposal, nats-server issue 4320, so the backend also compares-and-sets the
# stream's last sequence); and a SIGKILL of one node, then of another, leaves the
# store working through the URL list.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/natslib.sh"
S=$SLUICE

if ! nats_have; then
	echo "# skipped: nats-server is not installed (make deps installs it); the JetStream cluster is untested"
	finish
	exit
fi
unset SLUICE_NAMESPACE
nats_cluster_start cl || { failt "a 3-node nats-server cluster started"; finish; exit; }
pass "a 3-node cluster started"

mkdir -p "$TMP/schemas" "$TMP/procs"
cat >"$TMP/schemas/tally.contract.json" <<'EOF'
{ "name": "tally", "version": 1, "consumes": ["t/inc"], "emits": ["t/seen"],
  "events": { "t/inc": {"type": "object"}, "t/seen": {"type": "object"} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
cat >"$TMP/procs/tally.lua" <<'EOF'
return {
  contract = "tally",
  reduce = { ["t/inc"] = function(s) return { n = s.n + 1 } end },
  processEvent = { ["t/inc"] = function(e, ctx) ctx.append("t/seen", {}, { stream = "seen/" .. e.stream:match("[^/]+$") }) end },
}
EOF
D=$TMP/deploy.lua
cat >"$D" <<EOF
return {
  store = "$NATS_URLS", namespace = "cl", replicas = 3, schemas = { "$TMP/schemas" },
  console = "$TMP/console.sock",
  processors = { tally = { script = "$TMP/procs/tally.lua", streams = "in/*", sideEffects = "all" } },
}
EOF

# ---- R3 ---------------------------------------------------------------------------------------
$S append in/a t/inc --deployment "$D" >/dev/null
$S run "$D" --until-caught-up 2>/dev/null
jsz() { nats_monitor "$NATS_MONITOR" '/jsz?accounts=true&streams=true&config=true'; }
for st in cl_events KV_cl_ckpt KV_cl_leases KV_cl_procs; do
	eq "$st has 3 replicas" \
		"$(jsz | jq -r --arg n $st '.account_details[].stream_detail[]? | select(.name == $n) | .config.num_replicas')" "3"
done

# ---- concurrent writers -------------------------------------------------------------------------
# Four writers append 100 keyed events each to one stream (the whole file again after
# a refusal: the keys answer what was written), two more to a stream each, and a
# runner folds and emits meanwhile.
$S run "$D" --log-format text 2>"$TMP/run.err" &
RUNNER=$!
writer() { # W STREAM
	local i
	for i in $(seq 1 100); do printf '{"type":"t/inc","idempotencyKey":"w%s-%s"}\n' "$1" "$i"; done >"$TMP/w$1.jsonl"
	until $S append "$2" --jsonl --batch-size 1 --deployment "$D" <"$TMP/w$1.jsonl" >/dev/null 2>>"$TMP/w$1.err"; do :; done
}
W=()
for w in 1 2 3 4; do writer $w in/a & W+=($!); done
writer 5 in/b & W+=($!)
writer 6 in/c & W+=($!)
wait "${W[@]}"
echo "# $(cat "$TMP"/w?.err 2>/dev/null | wc -l) refused calls, each tried again"
$S events in/a --deployment "$D" >"$TMP/a"
eq "in/a: 402 events with the offsets 1..402, none given twice" \
	"$(jq -s '[.[].offset] == [range(1; 403)]' "$TMP/a")" "true"
eq "in/a: every key once" "$(jq -r 'select(.type == "t/inc") | .idempotencyKey // empty' "$TMP/a" | sort | uniq | wc -l)" "400"
for s in b c; do
	eq "in/$s: offsets 1..101" "$($S events in/$s --deployment "$D" | jq -s '[.[].offset] == [range(1; 102)]')" "true"
done
folded() { [ "$($S state "$D" tally | jq -s 'map(.state.n) | add')" = 601 ]; }
check "the runner folds the 601 events" wait_until 60 folded
eq "one emitted event per folded one" \
	"$(for s in a b c; do $S events seen/$s --deployment "$D" --type t/seen; done | wc -l)" "601"
check "sluice verify finds no problem" sh -c "$S verify '$D' >/dev/null 2>&1"

# ---- chunks over many streams, racing ----------------------------------------------------------
# Four writers append 200 keyed events each, spread over the 8 streams m/1..m/8, in
# chunks of 50 (the whole file again after a refusal). A chunk that loses a race is
# taken back by take-back records; an id the server still holds in a proposal is
# answered as a duplicate of sequence 0 and goes again. Every stream must read back
# with contiguous offsets (no offset given twice, none missing) and every key once.
nats_chunk_race --deployment "$D"

# ---- one node down, then another -----------------------------------------------------------------
append_ok() { $S append in/a t/inc --key "$1" --deployment "$D" >/dev/null 2>&1; }
nats_cluster_kill 1
check "with node 1 killed (the first URL), appends go on" wait_until 30 append_ok after-kill-1
check "and reads" sh -c "$S events in/a --deployment '$D' --from 403 | grep -q after-kill-1"
nats_cluster_restart 1
node_back() { nats_monitor "127.0.0.1:${NATS_MPORT_OF[cl-$1]}" /healthz >/dev/null && nats_cluster_current; }
check "node 1 is back after its restart (every stream's replicas current)" wait_until 60 node_back 1
nats_cluster_kill 2
check "with node 2 killed, appends go on" wait_until 30 append_ok after-kill-2
folded() { [ "$($S state "$D" tally in/a | jq .state.n)" = 403 ]; }
check "the runner folds them" wait_until 60 folded
check "the runner is still running" kill -0 "$RUNNER"
kill -TERM "$RUNNER"
wait "$RUNNER"
rc=$?; eq "sluice run stops cleanly" "$rc" "0"; [ $rc = 0 ] || tail -5 "$TMP/run.err" | sed "s/^/#   /"
finish
