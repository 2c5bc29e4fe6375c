#!/bin/bash
# nats_store.sh - the JetStream store backend (DESIGN §11, issue 14) through the real
# CLI: the store suites of the SQLite backend run again against nats://, each on a
# fresh server, then what is particular to JetStream: position = stream sequence,
# the subject mapping, compare-and-set under concurrent writers, idempotency keys as
# message ids, durability across a server restart, and the processor side (rows in
# key-value buckets) through the CLI.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/natslib.sh"
S=$SLUICE
E2E=$(dirname "$0")

if ! nats_have; then
	echo "# skipped: nats-server is not installed (make deps installs it); the JetStream backend is untested"
	finish
	exit
fi

# ---- the store suites and the processor suites, against JetStream -----------------------
# The store suites: append_cli, bad_input, append_stream, options_cli, help_cli.
# The anchor (runtime_anchor), faults and dead letters (poison), and the live engine's
# batches under leases, standbys, takeover and the fence (lease_runners), hot reload
# (live_reload), the HTTP interface and its group commits (http_api), the batch model
# with its ctx.db projection (batch_hook), the runtime CLI with the shipped webhook
# (runtime_cli), faults of blocking and background work (work_faults) and ctx.db's
# tables, views and parameters (db_tables), each deployment's store replaced by the
# server's URL (test_store in testlib.sh); ctx.db's tables are then in the projection
# database beside the deployment (nats_projections.sh tests it on its own).
for suite in append_cli bad_input append_stream options_cli help_cli \
		runtime_anchor poison lease_runners live_reload http_api \
		batch_hook runtime_cli work_faults db_tables; do
	nats_start "$suite" || { failt "$suite: nats-server started"; continue; }
	out=$(SL_TEST_STORE=$NATS_URL bash "$E2E/$suite.sh" 2>&1); rc=$?
	# A suite that wrote nothing to the server ran on something else.
	if [ -z "$(find "$TMP/nats-$suite" -path '*/streams/*_events' -maxdepth 5 2>/dev/null)" ]; then
		failt "$suite.sh ran on JetStream" "no stream of events on its server"
	elif [ $rc -eq 0 ]; then
		pass "$suite.sh passes on JetStream ($(tail -1 <<<"$out"))"
	else
		failt "$suite.sh passes on JetStream" "$(grep -A2 '^not ok' <<<"$out" | head -30)"
	fi
	nats_stop "$suite"
done

# ---- particular to JetStream ----------------------------------------------------------
# The C unit tests of the backend (store-wide reads, head, data version, reads from an
# offset, leases, commits and the rows) on a fresh server of their own.
if nats_start unit; then
	out=$("$SLUICE_BUILD/test_store_nats" "$NATS_URL" 2>&1); rc=$?
	if [ $rc -eq 0 ]; then
		pass "test_store_nats passes ($(grep -c '^ok' <<<"$out") checks)"
	else
		failt "test_store_nats passes" "$(grep -A1 '^not ok\|^# ' <<<"$out" | head -30)"
	fi
	nats_stop unit
else
	failt "nats-server for test_store_nats started"
fi

nats_start main || { failt "nats-server started"; finish; exit; }
export SLUICE_STORE=$NATS_URL

# position is the JetStream stream sequence: on a fresh server 1, 2, 3, ... in append order.
$S append p/1 t >/dev/null
$S append p/2 t >/dev/null
printf '%s\n' '{"stream":"p/1","type":"t"}' '{"stream":"p/3","type":"t"}' | $S append --jsonl >/dev/null
all_positions() { $S streams | jq -r .stream | while read -r s; do $S events "$s"; done | jq -s -r 'map(.position) | sort | map(tostring) | join(" ")'; }
# (p, p/1 and its announcement on p, the event; p/2, its announcement, the event; the
# batch: an event on p/1, then p/3, its announcement and its event)
eq "positions are the stream sequences 1..N, every one an event" "$(all_positions)" "1 2 3 4 5 6 7 8 9 10 11"
eq "an append reports the sequence JetStream gave it" "$($S append p/2 t | jq .position)" "12"

# The subject mapping is injective: '.' inside a segment is not a level of the subject.
$S append a.b t '{"s":"a.b"}' >/dev/null
$S append a/b t '{"s":"a/b"}' >/dev/null
$S append v1.2/x.y t '{"s":"v1.2/x.y"}' >/dev/null
eq "a.b and a/b are two streams" "$($S streams a | jq -r .stream | tr '\n' ' ')" "a a/b "
eq "a.b lists itself only" "$($S streams a.b | jq -r .stream | tr '\n' ' ')" "a.b "
eq "events of a.b are its own" "$($S events a.b --from 2 | jq -r .payload.s)" "a.b"
eq "events of a/b are its own" "$($S events a/b --from 2 | jq -r .payload.s)" "a/b"
eq "names with dots decode back" "$($S streams v1.2 | jq -r .stream | tr '\n' ' ')" "v1.2 v1.2/x.y "

# The compare-and-set offset is refused with the very message of the SQLite backend.
cas_err() { $S append cas/1 t --store "$1" >/dev/null; $S append cas/1 t --offset 9 --store "$1" 2>&1 >/dev/null; }
eq "an offset conflict says what SQLite says" "$(cas_err "$NATS_URL")" "$(cas_err "$TMP/cas.db")"
eq "... which is the one of DESIGN §7" "$(cas_err "$NATS_URL")" "sluice: offset: expected 4 (the head of 'cas/1' is 3), got 9"

# A keyed append repeated is acknowledged once, with the first event.
a=$($S append k/1 t '{"n":1}' --key once)
b=$($S append k/1 t '{"n":2}' --key once)
eq "the repeat has the first one's offset and position" "$(jq -c '[.offset,.position]' <<<"$b")" "$(jq -c '[.offset,.position]' <<<"$a")"
eq "the repeat says duplicate" "$(jq .duplicate <<<"$b")" "true"
eq "one event was stored" "$($S events k/1 --type t | jq -c .payload)" '{"n":1}'
eq "the same key on another stream is another event" "$($S append k/2 t --key once | jq .duplicate)" "null"
eq "a key within one --jsonl batch counts once" \
	"$(printf '%s\n' '{"type":"t","idempotencyKey":"j"}' '{"type":"t","idempotencyKey":"j"}' | $S append k/3 --jsonl | jq -r '[.offset,.duplicate] | map(tostring) | join(",")' | tr '\n' ' ')" \
	"2,null 2,true "

# Writers racing on one stream: compare-and-set refuses the losers, which retry with
# their key, so every event lands once and the offsets stay contiguous.
producer() { # P N
	local i tries
	for i in $(seq "$2"); do
		tries=0
		until $S append race/1 t "{\"p\":$1,\"i\":$i}" --key "p$1-$i" >/dev/null 2>>"$TMP/race.err"; do
			tries=$((tries + 1)); [ $tries -ge 50 ] && { echo "gave up" >>"$TMP/race.err"; break; }
		done
	done
}
for p in 1 2 3 4; do producer $p 25 & done
wait_producers() { local j; for j in $(jobs -p); do [ "$j" = "$NATS_PID" ] || wait "$j"; done; }
wait_producers
eq "the racing writers' offsets are 1..101 without gaps" "$($S events race/1 | jq -s -c 'map(.offset) == [range(1;102)]')" "true"
eq "every racing event landed exactly once" "$($S events race/1 --type t | jq -s -c 'map("\(.payload.p)-\(.payload.i)") | unique | length')" "100"
check "no writer gave up" test "$(grep -c 'gave up' "$TMP/race.err")" = 0
if grep -q 'appended to by another writer' "$TMP/race.err"; then
	pass "a lost race is refused: $(grep -m1 'appended to by another writer' "$TMP/race.err")"
else
	pass "# the writers never raced this time (nothing to check)"
fi

$S verify >"$TMP/verify.out" 2>&1
got=$(jq -c '[.ok,.problems,.check]' "$TMP/verify.out")
eq "verify finds nothing wrong after the race" "$got" '[true,0,"full"]'
[ "$got" = '[true,0,"full"]' ] || sed 's/^/#   /' "$TMP/verify.out" "$TMP/race.err"

# Chunks over many streams racing (see natslib.sh).
nats_chunk_race

# Bad input and refused batches publish nothing (the batch is planned first). (The
# race above may have deleted messages, so the sequence is compared with an append to
# an existing stream just before, not with a count of the events.)
$S append door/1 stream/paused '{"reason":"closed"}' >/dev/null
last=$($S append p/1 t | jq .position)
before=$($S streams | jq -c .)
printf '%s\n' '{"stream":"new/1","type":"t"}' '{"stream":"cas/1","type":"t","offset":99}' >"$TMP/bad.jsonl"
refuses "a batch with a conflict on its second line is refused" "line 2: offset: expected" $S append --jsonl <"$TMP/bad.jsonl"
printf '%s\n' '{"stream":"new/2","type":"t"}' '{"stream":"door/1","type":"t"}' >"$TMP/door.jsonl"
refuses "a batch with a paused stream on its second line is refused" "line 2: stream paused: closed" $S append --jsonl <"$TMP/door.jsonl"
eq "... and neither created a stream nor wrote an event" "$($S streams | jq -c .)" "$before"
eq "no sequence was used: the next append gets the next one" "$($S append p/1 t | jq .position)" "$((last + 1))"

# Durable across a restart of the server (same store directory and port).
want=$($S events race/1 | jq -c .)
nats_stop main
nats_start main || failt "nats-server restarted"
eq "every event is still there after a restart" "$($S events race/1 | jq -c .)" "$want"

# The processor side works on JetStream: run, state, status, reset, dead-letters.
cat >"$TMP/d.lua" <<LUA
return { store = "$NATS_URL", processors = {
  counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" } } }
LUA
$S append counters/a counter/incremented '{"by":1}' >/dev/null
$S append counters/a counter/incremented '{"by":2}' >/dev/null
$S append counters/b counter/incremented '{"by":5}' >/dev/null
eq "run --until-caught-up exits 0" "$($S run "$TMP/d.lua" --until-caught-up >/dev/null 2>&1; echo $?)" "0"
eq "state prints what the run folded" "$($S state "$TMP/d.lua" counter | jq -c '[.stream,.offset,.state.count]' | tr '\n' ' ')" '["counters/a",3,3] ["counters/b",2,5] '
eq "status shows every instance caught up" "$($S status "$TMP/d.lua" | jq -c '[.stream,.lag,.status,.runner]' | tr '\n' ' ')" '["counters/a",0,"ok",null] ["counters/b",0,"ok",null] '
eq "a second run has nothing to do" "$($S run "$TMP/d.lua" --until-caught-up >/dev/null 2>&1; $S state "$TMP/d.lua" counter counters/a | jq .state.count)" "3"
eq "reset of one instance" "$($S reset "$TMP/d.lua" counter counters/a >/dev/null; $S state "$TMP/d.lua" counter counters/a | jq -c '[.offset,.state.count]')" "[0,0]"
eq "and the next run folds it again, once" "$($S run "$TMP/d.lua" --until-caught-up >/dev/null 2>&1; $S state "$TMP/d.lua" counter counters/a | jq .state.count)" "3"
eq "dead-letters lists none" "$($S dead-letters "$TMP/d.lua" | wc -l)" "0"
check "check works" test "$($S check "$TMP/d.lua" | jq .ok)" = true

# Connecting.
nats_stop main
refuses "a store whose server is down is refused" "^sluice: cannot open store 'nats://127.0.0.1:[0-9]+': cannot connect: " $S events race/1
refuses "a URL list must be nats:// URLs" "expected nats://HOST:PORT" $S events race/1 --store "nats://127.0.0.1:1,http://x"
finish
