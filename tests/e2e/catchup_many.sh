#!/bin/bash
# catchup_many.sh - a catch-up over many small instances (mode each), which the pump
# reads many neighbouring instances at a time (one walk of the store's events in
# stream order), folds exactly as instance-by-instance reads would: every state equals
# a fold of its stream's events done here with jq, across streams between the
# instances that the pattern does not match, instances bigger than a batch,
# checkpoints in the middle of a stream, and a store with a hole in one stream (the
# run stops with the damage named, as when instances are read one at a time).
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
S=$SLUICE
STORE=$(test_store "$TMP/many.db")

D=$TMP/many.deploy.lua
cat >"$D" <<EOF
return {
  store = "$STORE",
  durability = "normal",
  schemas = { "$SLUICE_SRC/schemas" },
  processors = {
    counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "c/*",
                batchSize = 4 },
  },
}
EOF

# gen FIRST LAST ROUND: for stream c/I (I in FIRST..LAST), 1 + (I*ROUND) % 6 increments
# by I; every 7th also c/I/x (not matched by c/*, sorted between c/I and its
# neighbours) with 3 events; every 11th also c/Ia, a matched neighbour.
gen() {
	jq -nc --argjson a "$1" --argjson b "$2" --argjson r "$3" '
		range($a; $b + 1) as $i
		| ( (range(1 + ($i * $r) % 6) | {stream: "c/\($i)", type: "counter/incremented", payload: {by: $i}}),
		    (if $i % 7 == 0 then range(3) | {stream: "c/\($i)/x", type: "counter/incremented", payload: {by: 1}} else empty end),
		    (if $i % 11 == 0 then {stream: "c/\($i)a", type: "counter/incremented", payload: {by: 2}} else empty end) )'
}

# expected: {stream: count} folded from every event of the c/* streams.
expected() {
	$S streams c | jq -r .stream | grep -E '^c/[^/]+$' | while read -r s; do
		$S events "$s" --store "$STORE"
	done | jq -s -c 'map(select(.type == "counter/incremented")) | group_by(.stream)
		| map({key: .[0].stream, value: (map(.payload.by) | add)}) | from_entries'
}
states() { $S state "$D" counter | jq -s -c 'map({key: .stream, value: .state.count}) | from_entries'; }
# same_states WHAT GOT WANT: passes when the two {stream: count} objects are equal,
# else names the streams that differ.
same_states() {
	local diff
	diff=$(jq -n -c --argjson g "$2" --argjson w "$3" \
		'[($g + $w) | keys[] as $k | select($g[$k] != $w[$k]) | {($k): [$g[$k], $w[$k]]}] | add')
	if [ "$diff" = "null" ]; then pass "$1"; else failt "$1" "streams with [got, want]: ${diff:0:600}"; fi
}
near() { sed -n 's/.*caught up ([0-9]* events, \([0-9]*\) of them read with neighbouring instances).*/\1/p' "$1" | tail -1; }

export SLUICE_STORE=$STORE
gen 1 400 1 | $S append --jsonl >/dev/null || failt "the events were appended"

$S run "$D" --until-caught-up --log-level debug 2>"$TMP/run1.log"
eq "the first catch-up exits 0" "$?" "0"
check "most of its events were read with neighbouring instances (the path under test)" \
	test "$(near "$TMP/run1.log")" -gt 500
same_states "every state equals a fold of its stream" "$(states)" "$(expected)"
eq "the instances of streams the pattern does not match were not made" \
	"$($S state "$D" counter | jq -r .stream | grep -c '/x$')" "0"

# More events on some streams: the second catch-up starts from checkpoints in the
# middle of streams, so a read walks the events before its neighbours' checkpoints.
gen 1 400 5 | jq -c 'select((.stream | ltrimstr("c/") | split("/")[0] | rtrimstr("a") | tonumber) % 3 == 0)' |
	$S append --jsonl >/dev/null || failt "more events were appended"
$S run "$D" --until-caught-up --log-level debug 2>"$TMP/run2.log"
eq "the second catch-up exits 0" "$?" "0"
same_states "every state still equals a fold of its stream" "$(states)" "$(expected)"

# A hole in one stream (a damaged store, SQLite only): the run stops with the damage
# named, as with reads one instance at a time, and nothing folded past the hole.
if [[ "$STORE" != nats://* ]]; then
	gen 401 460 2 | $S append --jsonl >/dev/null
	sqlite3 "$STORE" "DELETE FROM sl_events WHERE stream = 'c/430' AND \"offset\" = 2"
	$S run "$D" --until-caught-up 2>"$TMP/run3.log"
	eq "a run over a store with a hole exits 1" "$?" "1"
	check "it names the stream and the missing offset" \
		grep -q "stream 'c/430' has no event at offset 2 (the store is damaged" "$TMP/run3.log"
	eq "the instance with the hole folded nothing past it" \
		"$($S state "$D" counter c/430 | jq -c '[.offset, .state.count]')" "[0,0]"
	eq "no instance folded more than its events" \
		"$(jq -n -c --argjson g "$(states)" --argjson w "$(expected)" '[$g | del(.["c/430"]) | keys[] | select($g[.] > $w[.])]')" "[]"
fi

finish
