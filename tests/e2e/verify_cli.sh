#!/bin/bash
# verify_cli.sh - sluice verify on a clean store and on stores damaged on purpose
# (an event row deleted, heads, checkpoints, types and positions changed with the
# sqlite3 CLI, bytes of the file overwritten); a read across a hole fails; a store
# opened for writing after an unclean shutdown is checked once, and refused if bad.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"' EXIT

# verify_says NAME STORE PROBLEM [JQ-FILTER]: verify exits 1, prints a problem line of
# that kind (matching the filter), a summary with ok false and one "sluice: " line.
verify_says() {
	local name=$1 db=$2 kind=$3 filter=${4:-true} out rc
	out=$($S verify --store "$db" 2>"$TMP/verr"); rc=$?
	eq "$name: exit 1" "$rc" "1"
	check "$name: a $kind line" has_line "select(.problem == \"$kind\") | $filter" <<<"$out"
	eq "$name: summary" "$(tail -1 <<<"$out" | jq -c '{ok, check}')" '{"ok":false,"check":"full"}'
	check "$name: one sluice: line on stderr" grep -q '^sluice: verify: [0-9]* problems\? found$' "$TMP/verr"
	printf '%s\n' "$out" >"$TMP/last"
}

# A store with a few streams.
mk() { # mk DB
	rm -f "$1" "$1-wal" "$1-shm"
	for i in 1 2 3 4; do $S append a/1 t/x "{\"i\":$i}" --store "$1" >/dev/null; done
	$S append b/2 t/y --store "$1" >/dev/null
}
sq() { sqlite3 "$@"; }
# has_line FILTER [FILE]: some JSON line (of FILE, else stdin) passes the jq filter.
has_line() { jq -s -e "map($1) | length > 0" ${2:+"$2"} >/dev/null; }
q() { "$@" >/dev/null; }

mk "$TMP/ok.db"
out=$($S verify --store "$TMP/ok.db"); rc=$?
eq "a clean store verifies" "$rc" "0"
eq "one summary line" "$(jq -c . <<<"$out")" \
	'{"ok":true,"problems":0,"check":"full","streams":4,"events":11,"checkpoints":0}'
eq "--quick on a clean store" "$($S verify --quick --store "$TMP/ok.db" | jq -c '{ok, check}')" \
	'{"ok":true,"check":"quick"}'
eq "SLUICE_STORE selects the store" "$(SLUICE_STORE=$TMP/ok.db $S verify | jq .ok)" "true"
check "verify --help" grep -q '^usage: sluice verify' <<<"$($S verify --help)"
refuses "a missing store" "cannot open store" $S verify --store "$TMP/none.db"
check "verify did not create it" test ! -e "$TMP/none.db"
refuses "DEPLOYMENT and --deployment" "not both" $S verify a.lua --deployment b.lua

# An event row deleted.
mk "$TMP/hole.db"
sq "$TMP/hole.db" "DELETE FROM sl_events WHERE stream = 'a/1' AND \"offset\" = 3"
verify_says "a deleted event" "$TMP/hole.db" missing-offsets \
	'select(.stream == "a/1" and .offset == 3 and .to == 3)'
eq "it is the only problem" "$(jq -s 'length' "$TMP/last")" "2"
refuses "events across the hole fails, naming it" "stream 'a/1' has no event at offset 3" \
	sh -c "$S events a/1 --store '$TMP/hole.db' >/dev/null; r=\$?; exit \$r"
$S events a/1 --store "$TMP/hole.db" >"$TMP/out" 2>/dev/null
eq "... after the events before it" "$(jq -s 'map(.offset)' -c "$TMP/out")" "[1,2]"
refuses "a type filter does not hide the hole" "no event at offset 3" \
	$S events a/1 --type t/none --store "$TMP/hole.db"
refuses "nor does --from" "no event at offset 3" $S events a/1 --from 3 --store "$TMP/hole.db"
eq "reading before the hole works" "$($S events a/1 --limit 2 --store "$TMP/hole.db" | wc -l)" "2"

# A processor never reads across a hole: the run stops with exit 1, naming it.
mkdir -p "$TMP/hd/data"
cat >"$TMP/hd/deploy.lua" <<LUA
return { store = "data/h.db",
  processors = { counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" } } }
LUA
for i in 1 2 3; do
	$S append counters/a counter/incremented '{"by":1}' --deployment "$TMP/hd/deploy.lua" >/dev/null
done
sq "$TMP/hd/data/h.db" "DELETE FROM sl_events WHERE stream = 'counters/a' AND \"offset\" = 3"
refuses "run --until-caught-up stops at the hole" "stream 'counters/a' has no event at offset 3" \
	$S run "$TMP/hd/deploy.lua" --until-caught-up --log-level error
eq "nothing past it was processed" \
	"$($S state "$TMP/hd/deploy.lua" counter counters/a | jq -c '{offset, state}')" \
	'{"offset":0,"state":{"count":0}}'

# A head changed.
mk "$TMP/head.db"
sq "$TMP/head.db" "UPDATE sl_streams SET head = 9 WHERE stream = 'b/2'"
verify_says "a changed head" "$TMP/head.db" head-mismatch \
	'select(.stream == "b/2" and .head == 9 and .offset == 2)'
check "--quick finds it too" sh -c "$S verify --quick --store '$TMP/head.db' 2>/dev/null | grep -q head-mismatch"

# Types and positions.
mk "$TMP/types.db"
sq "$TMP/types.db" "UPDATE sl_events SET type = 'stream/created' WHERE stream = 'a/1' AND \"offset\" = 2;
	UPDATE sl_events SET type = 't/x' WHERE stream = 'b/2' AND \"offset\" = 1"
verify_says "a second stream/created" "$TMP/types.db" extra-created \
	'select(.stream == "a/1" and .offset == 2)'
check "a first event that is not stream/created" \
	has_line 'select(.problem == "bad-first-event" and .stream == "b/2")' "$TMP/last"
mk "$TMP/pos.db"
sq "$TMP/pos.db" "UPDATE sl_events SET position = 1000 WHERE stream = 'a/1' AND \"offset\" = 3"
verify_says "positions out of offset order" "$TMP/pos.db" position-order \
	'select(.stream == "a/1" and .offset == 4)'
mk "$TMP/dup.db"
p=$(sq "$TMP/dup.db" "SELECT position FROM sl_events WHERE stream = 'a/1' AND \"offset\" = 2")
sq "$TMP/dup.db" "DROP INDEX sl_events_position;
	UPDATE sl_events SET position = $p WHERE stream = 'b/2' AND \"offset\" = 2"
verify_says "a position held twice" "$TMP/dup.db" duplicate-position ".position == $p"

# A checkpoint above its stream's head (a deployment's store, named positionally).
mkdir -p "$TMP/dep/data"
cat >"$TMP/dep/deploy.lua" <<LUA
return { store = "data/d.db",
  processors = { counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" } } }
LUA
D=$TMP/dep/deploy.lua
$S append counters/a counter/incremented '{"by":2}' --deployment "$D" >/dev/null
$S run "$D" --until-caught-up 2>/dev/null
eq "verify DEPLOYMENT" "$($S verify "$D" | jq -c '{ok, checkpoints}')" '{"ok":true,"checkpoints":1}'
sq "$TMP/dep/data/d.db" "UPDATE sl_checkpoints SET \"offset\" = 7"
verify_says "a checkpoint ahead of its head" "$TMP/dep/data/d.db" checkpoint-ahead \
	'select(.processor == "counter" and .stream == "counters/a" and .offset == 7 and .head == 2)'

# Bytes of the file overwritten.
rm -f "$TMP/big.db"*
seq 1 3000 | sed 's|.*|{"stream":"s/&","type":"t/x","payload":{"pad":"'"$(printf 'x%.0s' $(seq 60))"'"}}|' |
	$S append --jsonl --store "$TMP/big.db" >/dev/null
check "(the WAL went into the file at close)" test ! -s "$TMP/big.db-wal"
eq "the big store verifies" "$($S verify --store "$TMP/big.db" | jq .ok)" "true"
printf 'garbage%.0s' $(seq 1 500) | dd of="$TMP/big.db" bs=4096 seek=100 conv=notrunc 2>/dev/null
verify_says "overwritten bytes" "$TMP/big.db" integrity
check "--quick names them too" \
	sh -c "$S verify --quick --store '$TMP/big.db' 2>/dev/null | grep -q '\"integrity\"'"
$S verify --progress --store "$TMP/ok.db" 2>"$TMP/progress" >/dev/null
check "--progress shows progress on stderr" grep -q "verify .*events" "$TMP/progress"

# Unclean shutdown: a runner killed with SIGKILL leaves its open record behind.
start_and_kill() {
	$S run "$D" --log-format json 2>>"$TMP/run.err" & local pid=$!
	PIDS+=($pid)
	wait_until 20 sh -c "[ \"\$(sqlite3 '$TMP/dep/data/d.db' 'SELECT count(*) FROM sl_opens')\" -ge 1 ]"
	kill -9 "$pid"; wait "$pid" 2>/dev/null
}
sq "$TMP/dep/data/d.db" "UPDATE sl_checkpoints SET \"offset\" = 2"
start_and_kill
check "the killed runner left its records" \
	test "$(sq "$TMP/dep/data/d.db" "SELECT count(*) FROM sl_opens")" -ge 1
check "an intact store opens after it (checked once)" \
	q $S append counters/a counter/incremented '{"by":1}' --deployment "$D"
eq "the records are gone after that check" "$(sq "$TMP/dep/data/d.db" "SELECT count(*) FROM sl_opens")" "0"
start_and_kill
sq "$TMP/dep/data/d.db" "UPDATE sl_streams SET head = 1 WHERE stream = 'counters/a'"
refuses "a damaged store is refused after an unclean shutdown" \
	"was not closed cleanly .* fails its quick check: stream 'counters/a' records head 1 .*run 'sluice verify --store" \
	$S append counters/a counter/incremented '{"by":1}' --deployment "$D"
refuses "by every writer" "was not closed cleanly" $S run "$D" --until-caught-up
check "verify still runs (it only reads)" sh -c "$S verify '$D' 2>/dev/null | grep -q head-mismatch"
sq "$TMP/dep/data/d.db" "UPDATE sl_streams SET head = 3 WHERE stream = 'counters/a'"
check "once repaired, it opens again" \
	q $S append counters/a counter/incremented '{"by":1}' --deployment "$D"
check "and verifies" q $S verify "$D"
finish
