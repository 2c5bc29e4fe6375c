#!/bin/bash
# runtime_cli.sh - the processor runtime from the command line on the shipped example
# deployment (processors/example.deploy.lua): check, run, state, status, reset
# (DESIGN §4-§7).
#
# The deployment is copied with processors/ and schemas/ into a temporary directory
# (its store path, data/example.db, is relative to it). A first run on the empty store
# sets every processor's side-effect anchor, so the events appended afterwards get
# side effects.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
S=$SLUICE

cp -r "$SLUICE_SRC/processors" "$TMP/processors"
cp -r "$SLUICE_SRC/schemas" "$TMP/schemas"
rm -rf "$TMP/processors/data"            # a store left in the source tree is not ours
mkdir -p "$TMP/processors/data"
D=$TMP/processors/example.deploy.lua
# On another store (nats_store.sh: JetStream) the deployment names it instead.
if [ -n "${SL_TEST_STORE:-}" ]; then
	sed -i "s|store = \"data/example.db\"|store = \"$SL_TEST_STORE\"|" "$D"
	grep -q "store = \"$SL_TEST_STORE\"" "$D" || failt "the example deployment names \$SL_TEST_STORE"
fi

# rc CMD...: prints the exit status of CMD (its output discarded).
rc() { "$@" >/dev/null 2>&1; echo $?; }
# n_lines TEXT: the number of non-empty lines.
n_lines() { printf '%s' "$1" | grep -c . ; }
ev() { $S events "$@" --deployment "$D"; }
app() { $S append "$@" --deployment "$D" >/dev/null; }

# ---- check ----------------------------------------------------------------------
out=$($S check "$D" 2>"$TMP/err"); code=$?
eq "check of the example deployment exits 0" "$code" "0"
eq "check prints nothing on stderr" "$(cat "$TMP/err")" ""
eq "check prints one JSON line saying ok" "$(printf '%s' "$out" | jq -c .ok)" "true"

# ---- state before anything ran --------------------------------------------------
st=$($S state "$D" counter counters/a 2>"$TMP/err")
eq "state of an instance that never ran exits 0" "$?" "0"
eq "it prints processor, stream, offset 0, status new and the initial state" \
   "$(printf '%s' "$st" | jq -c '[.processor, .stream, .offset, .status, .state]')" \
   '["counter","counters/a",0,"new",{"count":0}]'
eq "state of the echo instance before a run has the echo initial state" \
   "$($S state "$D" echo echo/1 | jq -c '[.offset, .status, .state]')" '[0,"new",{"received":0}]'
refuses "state of an unknown processor is an error" "unknown processor 'nosuch'" \
	$S state "$D" nosuch
refuses "reset of an unknown processor is an error" "unknown processor 'nosuch'" \
	$S reset "$D" nosuch
refuses "reset of a stream that does not exist is an error" \
	"^sluice: stream 'counters/nosuch' does not exist \\(processor 'counter' has no instance for it\\)$" \
	$S reset "$D" counter counters/nosuch

# ---- the anchor run, then events -------------------------------------------------
eq "the first run on the empty store exits 0" "$(rc $S run "$D" --until-caught-up)" "0"
for by in 40 40 40; do app counters/a counter/incremented "{\"by\":$by}"; done   # offsets 2..4
app counters/b counter/incremented '{"by":5}'
app echo/1 echo/input-received '{"text":"hello","n":[1,2]}'                        # offset 2
# A bucket of 2 tokens that never refills: the third call (offset 5) overdraws it.
app api/orders circuit-breaker/configured '{"burstCapacity":2,"refillRatePerMinute":0}'
for i in 1 2 3; do app api/orders api/called "{\"call\":$i}"; done                 # offsets 3..5

st=$($S state "$D" counter counters/a)
eq "an instance whose stream exists but that has not run is still new" \
   "$(printf '%s' "$st" | jq -c '[.offset, .status, .state]')" '[0,"new",{"count":0}]'

$S run "$D" --until-caught-up >"$TMP/out" 2>"$TMP/err"; code=$?
eq "run --until-caught-up exits 0" "$code" "0"
eq "run prints nothing on stdout" "$(cat "$TMP/out")" ""

# ---- counter ----------------------------------------------------------------------
m=$(ev counters/a --type counter/milestone)
eq "the counter milestone is emitted exactly once" "$(n_lines "$m")" "1"
eq "the milestone carries the count" "$(printf '%s' "$m" | jq -c .payload)" '{"count":120}'
eq "metadata.source is {processor, version, stream, offset}" \
   "$(printf '%s' "$m" | jq -c '.metadata.source | [.processor, .version, .stream, .offset, (keys | length)]')" \
   '["counter",1,"counters/a",4,4]'
eq "the milestone key is counter@counters/a:<offset>#1" \
   "$(printf '%s' "$m" | jq -r .idempotencyKey)" "counter@counters/a:4#1"
eq "the milestone goes to the source stream, after the increments" \
   "$(printf '%s' "$m" | jq -c '[.stream, .offset]')" '["counters/a",5]'
eq "counters/b (below 100) emitted nothing" "$(ev counters/b --type counter/milestone | wc -l)" "0"
eq "the state of counters/a is 120 at offset 5 (the milestone itself advances it)" \
   "$($S state "$D" counter counters/a | jq -c '[.offset, .status, .state]')" '[5,"ok",{"count":120}]'
eq "state without STREAM prints every instance of the processor" \
   "$($S state "$D" counter | jq -c '[.stream, .state.count]' | tr '\n' ' ')" \
   '["counters/a",120] ["counters/b",5] '

# ---- echo -------------------------------------------------------------------------
e=$(ev echo/1 --type echo/output-echoed)
eq "echo answers once" "$(n_lines "$e")" "1"
eq "echo output is keyed echo:<offset>" "$(printf '%s' "$e" | jq -r .idempotencyKey)" "echo:2"
eq "echo output carries the input payload as seen" "$(printf '%s' "$e" | jq -c -S .payload)" \
   '{"seen":{"n":[1,2],"text":"hello"}}'
eq "echo output has metadata.source" "$(printf '%s' "$e" | jq -c '.metadata.source')" \
   '{"offset":2,"processor":"echo","stream":"echo/1","version":1}'
eq "echo state counts one input" "$($S state "$D" echo echo/1 | jq -c .state)" '{"received":1}'

# ---- circuit breaker ----------------------------------------------------------------
p=$(ev api/orders --type stream/paused)
eq "the breaker pauses the stream once" "$(n_lines "$p")" "1"
eq "the pause is keyed stream-paused:<offset of the overdrawing event>" \
   "$(printf '%s' "$p" | jq -r .idempotencyKey)" "stream-paused:5"
eq "the stream is paused" "$($S streams api/orders --deployment "$D" | jq -c '[.stream, .paused]')" \
   '["api/orders",true]'
refuses "a paused stream refuses a further call" "stream paused: circuit breaker" \
	$S append api/orders api/called '{"call":4}' --deployment "$D"
eq "the breaker state is paused with the bucket overdrawn" \
   "$($S state "$D" circuit_breaker api/orders | jq -c '[.status, .state.paused, .state.configured]')" \
   '["ok",true,true]'

# ---- status -------------------------------------------------------------------------
$S status "$D" >"$TMP/status" 2>"$TMP/err"; code=$?
eq "status exits 0" "$code" "0"
eq "status prints one line per instance (counters/a, counters/b, echo/1, api/orders)" \
   "$(jq -r '.processor + " " + .stream' "$TMP/status" | sort | tr '\n' ,)" \
   "circuit_breaker api/orders,counter counters/a,counter counters/b,echo echo/1,"
# JetStream adds the partition that owns each instance (DESIGN §11).
case "${SL_TEST_STORE:-}" in
nats://*) fields='["backgroundFailures","head","lag","lastError","offset","partition","processor","rate","reloadError","runner","status","stream"]' ;;
*) fields='["backgroundFailures","head","lag","lastError","offset","processor","rate","reloadError","runner","status","stream"]' ;;
esac
eq "every status line carries the documented fields" \
   "$(jq -c 'keys' "$TMP/status" | sort -u)" "$fields"
eq "the counters/a line: caught up, ok" \
   "$(jq -c 'select(.processor == "counter" and .stream == "counters/a") | [.offset, .head, .lag, .status, .lastError, .backgroundFailures]' "$TMP/status")" \
   '[5,5,0,"ok",null,0]'
eq "the api/orders line: the breaker read its own pause" \
   "$(jq -c 'select(.processor == "circuit_breaker") | [.stream, .offset, .head, .lag, .status]' "$TMP/status")" \
   '["api/orders",6,6,0,"ok"]'
eq "no instance is faulted" "$(jq -r .status "$TMP/status" | sort -u | tr '\n' ' ')" "ok "

# A new event shows up as lag.
app counters/b counter/incremented '{"by":1}'
eq "a new event is lag 1 in status" \
   "$($S status "$D" | jq -c 'select(.stream == "counters/b") | [.offset, .head, .lag]')" '[2,3,1]'
eq "the run catches up" "$(rc $S run "$D" --until-caught-up)" "0"

# ---- reset ----------------------------------------------------------------------------
head_a() { $S streams counters/a --deployment "$D" | jq -r 'select(.stream == "counters/a") | .head'; }
head_before=$(head_a)
eq "reset of one instance exits 0" "$(rc $S reset "$D" counter counters/a)" "0"
eq "after reset the instance is back at offset 0 with the initial state" \
   "$($S state "$D" counter counters/a | jq -c '[.offset, .state]')" '[0,{"count":0}]'
eq "reset of counters/a leaves counters/b alone" \
   "$($S state "$D" counter counters/b | jq -c '[.offset, .state]')" '[3,{"count":6}]'
eq "the replay run exits 0" "$(rc $S run "$D" --until-caught-up)" "0"
eq "the replay re-derives the same state" \
   "$($S state "$D" counter counters/a | jq -c '[.offset, .status, .state]')" '[5,"ok",{"count":120}]'
eq "the replay does not emit the milestone again" \
   "$(ev counters/a --type counter/milestone | wc -l)" "1"
eq "nothing was appended to counters/a" "$(head_a)" "$head_before"

eq "reset --with-effects exits 0" "$(rc $S reset "$D" counter counters/a --with-effects)" "0"
eq "the run after reset --with-effects exits 0" "$(rc $S run "$D" --until-caught-up)" "0"
eq "reset --with-effects re-derives the same state" \
   "$($S state "$D" counter counters/a | jq -c '[.offset, .status, .state]')" '[5,"ok",{"count":120}]'
m2=$(ev counters/a --type counter/milestone)
eq "the re-run milestone hits its idempotency key: still exactly one milestone" "$(n_lines "$m2")" "1"
eq "the stored milestone is the original one" "$m2" "$m"
eq "nothing was appended to counters/a" "$(head_a)" "$head_before"

# Reset of every instance of the processor.
eq "reset of every instance exits 0" "$(rc $S reset "$D" counter)" "0"
eq "every counter instance is back at offset 0" \
   "$($S state "$D" counter | jq -c '[.stream, .offset]' | tr '\n' ' ')" '["counters/a",0] ["counters/b",0] '
eq "the replay of every instance exits 0" "$(rc $S run "$D" --until-caught-up)" "0"
eq "every counter state is re-derived" \
   "$($S state "$D" counter | jq -c '[.stream, .offset, .state.count]' | tr '\n' ' ')" \
   '["counters/a",5,120] ["counters/b",3,6] '
eq "still exactly one milestone" "$(ev counters/a --type counter/milestone | wc -l)" "1"
eq "reset of a processor leaves other processors alone" \
   "$($S state "$D" echo echo/1 | jq -c '[.offset, .state]')" '[3,{"received":1}]'

# ---- a burst of more than one event over the bucket ------------------------------------
# Several events past the bucket in one batch: the breaker pauses the stream once, and
# neither faults nor stops the run.
app api/burst circuit-breaker/configured '{"burstCapacity":2,"refillRatePerMinute":0}'
for i in 1 2 3 4 5; do app api/burst api/called "{\"call\":$i}"; done             # offsets 3..7
$S run "$D" --until-caught-up >/dev/null 2>"$TMP/err"; code=$?
eq "a burst of 3 calls over the bucket: run exits 0" "$code" "0"
eq "the burst pauses api/burst with the first overdrawing event's key" \
   "$(ev api/burst --type stream/paused | jq -r .idempotencyKey | head -1)" "stream-paused:5"
eq "the breaker on api/burst is not faulted" \
   "$($S state "$D" circuit_breaker api/burst | jq -r .status)" "ok"
eq "no stream/error-occurred on api/burst" "$(ev api/burst --type stream/error-occurred | wc -l)" "0"

finish
