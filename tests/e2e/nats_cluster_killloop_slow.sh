#!/bin/bash
# nats_cluster_killloop_slow.sh - the kill loop of issue 14 on a 3-node JetStream
# cluster (R3 streams and buckets): ROUNDS rounds of SIGKILL of a random NATS node and
# of a random one of the two runners of a processor, while two producers append with
# idempotency keys and retry every append that was not acknowledged. Each round
# waits until the processor has folded every event acknowledged before the kills (on
# two nodes), then restarts the node and waits until it is healthy again. Afterwards:
# every acknowledged event is in the log exactly once, offsets are contiguous, every
# state equals a fold of its stream done by jq and a fresh replay, and no emitted
# event is duplicated.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/natslib.sh"
S=$SLUICE
ROUNDS=${SL_KILLLOOP_ROUNDS:-20}

if ! nats_have; then
	echo "# skipped: nats-server is not installed (make deps installs it); the JetStream cluster is untested"
	finish
	exit
fi
unset SLUICE_NAMESPACE
T0=$(date +%s)
nats_cluster_start kl || { failt "a 3-node nats-server cluster started"; finish; exit; }
pass "a 3-node cluster started in $(($(date +%s) - T0)) s"

mkdir -p "$TMP/schemas" "$TMP/procs"
cat >"$TMP/schemas/tally.contract.json" <<'EOF'
{ "name": "tally", "version": 1,
  "consumes": ["t/inc"], "emits": ["t/seen"],
  "events": { "t/inc": {"type": "object"},
              "t/seen": {"type": "object", "required": ["n"],
                         "properties": {"n": {"type": "integer"}}} },
  "state": {"type": "object", "required": ["n", "sum"],
            "properties": {"n": {"type": "integer"}, "sum": {"type": "integer"}}},
  "initialState": {"n": 0, "sum": 0} }
EOF
# The state depends on every event and on their order (sum of offsets times the count
# so far), so a lost, doubled or reordered event shows in it.
cat >"$TMP/procs/tally.lua" <<'EOF'
return {
  contract = "tally",
  reduce = { ["t/inc"] = function(s, e) return { n = s.n + 1, sum = s.sum + e.offset * (s.n + 1) } end },
  processEvent = {
    ["t/inc"] = function(event, ctx)
      ctx.append("t/seen", { n = ctx.state.n }, { stream = "seen/" .. event.stream:match("[^/]+$") })
    end,
  },
}
EOF
D=$TMP/deploy.lua
cat >"$D" <<EOF
return {
  store = "$NATS_URLS", namespace = "killloop", replicas = 3,
  schemas = { "$TMP/schemas" }, lease = "1s", console = "$TMP/console.sock",
  processors = { tally = { script = "$TMP/procs/tally.lua", streams = "in/*", sideEffects = "all" } },
}
EOF
STREAMS="a b c"
for s in $STREAMS; do $S append "in/$s" t/inc --key "first-$s" --deployment "$D" >/dev/null; done
echo "first-a first-b first-c" | tr ' ' '\n' >"$TMP/acked.0"

# ---- R3 really --------------------------------------------------------------------------
# The monitoring port of node 1 lists the streams it holds a replica of, with their
# configuration: with R3 on 3 nodes, every node holds every stream.
jsz() { nats_monitor "$NATS_MONITOR" '/jsz?accounts=true&streams=true&config=true'; }
replicas_of() { jsz | jq -r --arg n "$1" '.account_details[].stream_detail[]? | select(.name == $n) | .config.num_replicas'; }
$S run "$D" --until-caught-up 2>/dev/null # creates the buckets of the rows and the leases
for st in killloop_events KV_killloop_ckpt KV_killloop_leases KV_killloop_procs; do
	eq "$st has 3 replicas" "$(replicas_of $st)" "3"
done

# ---- producers and runners ----------------------------------------------------------------
PIDS=()
STOP=$TMP/stop
producer() { # P: appends keyed events round-robin, each retried until acknowledged
	local p=$1 i=0 s
	while [ ! -e "$STOP" ]; do
		i=$((i + 1))
		s=$(echo $STREAMS | cut -d' ' -f$((i % 3 + 1)))
		until $S append "in/$s" t/inc --key "p$p-$i" --deployment "$D" >/dev/null 2>>"$TMP/producer$p.err"; do
			sleep 0.05 # a backoff before the retry, not a wait for a condition
		done
		echo "p$p-$i" >>"$TMP/acked.$p"
	done
}
producer 1 & PIDS+=($!)
producer 2 & PIDS+=($!)
declare -A RUNNER
start_runner() { # SLOT
	$S run "$D" --log-format text 2>>"$TMP/run$1.err" &
	RUNNER[$1]=$!
}
start_runner 1
start_runner 2
cleanup() {
	local p
	touch "$STOP"
	for p in "${PIDS[@]}" "${RUNNER[@]}"; do kill -9 "$p" 2>/dev/null; done
	nats_stop_all
	rm -rf "$TMP"
}
trap cleanup EXIT

acked() { cat "$TMP"/acked.* | wc -l; }
folded() { # the events the processor has folded, over every stream
	$S state "$D" tally 2>/dev/null | jq -s 'map(.state.n) | add // 0'
}
folded_at_least() { [ "$(folded)" -ge "$1" ]; }
# A restarted node is back once it answers /healthz and every stream's leader sees
# all replicas current (it caught up): only then may another node be killed.
node_back() { nats_monitor "127.0.0.1:${NATS_MPORT_OF[kl-$1]}" /healthz >/dev/null && nats_cluster_current; }
check "a runner folds the first events" wait_until 60 folded_at_least 3

progressed=0 healthy=0 exited=0
for round in $(seq 1 "$ROUNDS"); do
	node=$((RANDOM % 3 + 1))
	slot=$((RANDOM % 2 + 1))
	want=$(acked)
	nats_cluster_kill "$node"
	kill -9 "${RUNNER[$slot]}" 2>/dev/null
	wait "${RUNNER[$slot]}" 2>/dev/null
	start_runner "$slot"
	# One node down: the other two keep a quorum of every stream and bucket.
	if wait_until 60 folded_at_least "$want"; then
		progressed=$((progressed + 1))
	else
		echo "# round $round: node $node and runner $slot killed; folded $(folded) of $want acknowledged"
	fi
	nats_cluster_restart "$node"
	if wait_until 60 node_back "$node"; then
		healthy=$((healthy + 1))
	else
		echo "# round $round: node $node did not catch up after its restart"
	fi
	# A runner that stopped by itself (not one of our kills) is a failure.
	other=$((3 - slot))
	if ! kill -0 "${RUNNER[$other]}" 2>/dev/null; then
		exited=$((exited + 1))
		echo "# round $round: runner $other exited by itself:"; tail -5 "$TMP/run$other.err" | sed 's/^/#   /'
		start_runner "$other"
	fi
	echo "# round $round: killed node $node and runner $slot; $(acked) events acknowledged, $(($(date +%s) - T0)) s"
done
eq "the processor folded every acknowledged event with one node down, in each of $ROUNDS rounds" \
	"$progressed" "$ROUNDS"
eq "the killed node caught up after its restart, in each of $ROUNDS rounds" "$healthy" "$ROUNDS"
eq "no runner exited by itself" "$exited" "0"

touch "$STOP"
wait "${PIDS[@]}"
sort "$TMP"/acked.* >"$TMP/acked"
eq "every acknowledged key was acknowledged once" "$(uniq -d "$TMP/acked" | wc -l)" "0"
total=$(wc -l <"$TMP/acked")
echo "# $total events acknowledged during $ROUNDS rounds"

# ---- afterwards -----------------------------------------------------------------------------
for s in $STREAMS; do $S events "in/$s" --deployment "$D" >"$TMP/in.$s"; done
cat "$TMP"/in.? | jq -r 'select(.type == "t/inc") | .idempotencyKey' | sort >"$TMP/stored"
eq "no key is stored twice" "$(uniq -d "$TMP/stored" | head -5 | paste -sd,)" ""
eq "every acknowledged event is stored" "$(comm -23 "$TMP/acked" "$TMP/stored" | head -5 | paste -sd,)" ""
eq "nothing is stored that no producer sent" \
	"$(comm -13 "$TMP/acked" "$TMP/stored" | grep -Ev '^p[12]-[0-9]+$' | head -5 | paste -sd,)" ""
for s in $STREAMS; do
	eq "in/$s: offsets run 1, 2, 3, ... without a hole" \
		"$(jq -s '[.[].offset] == [range(1; length + 1)]' "$TMP/in.$s")" "true"
done
check "sluice verify finds no problem" sh -c "$S verify '$D' >'$TMP/verify' 2>&1"
# The fold the processor must have made, by jq from the log.
fold() { jq -s -c '[.[] | select(.type == "t/inc")] | reduce .[] as $e ({n: 0, sum: 0};
	{n: (.n + 1), sum: (.sum + $e.offset * (.n + 1))})' "$TMP/in.$1"; }
settled() { for s in $STREAMS; do [ "$($S state "$D" tally "in/$s" | jq -c .state)" = "$(fold $s)" ] || return 1; done; }
check "the runners catch up with every event" wait_until 60 settled
for s in $STREAMS; do
	eq "in/$s: the state equals a fold of the stream" "$($S state "$D" tally "in/$s" | jq -c .state)" "$(fold $s)"
	$S events "seen/$s" --deployment "$D" --type t/seen >"$TMP/seen.$s"
	eq "in/$s: one emitted event per consumed event" \
		"$(wc -l <"$TMP/seen.$s")" "$(jq -s '[.[] | select(.type == "t/inc")] | length' "$TMP/in.$s")"
	eq "in/$s: no emitted event is duplicated" \
		"$(jq -r .idempotencyKey "$TMP/seen.$s" | sort | uniq -d | wc -l)" "0"
done
for slot in 1 2; do kill -TERM "${RUNNER[$slot]}" 2>/dev/null; done
for slot in 1 2; do wait "${RUNNER[$slot]}" 2>/dev/null; done
$S reset "$D" tally >/dev/null
$S run "$D" --until-caught-up 2>/dev/null
for s in $STREAMS; do
	eq "in/$s: a fresh replay gives the same state" "$($S state "$D" tally "in/$s" | jq -c .state)" "$(fold $s)"
done
echo "# took $(($(date +%s) - T0)) s"
finish
