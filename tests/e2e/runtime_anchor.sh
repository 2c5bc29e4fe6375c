#!/bin/bash
# runtime_anchor.sh - the side-effect anchor (DESIGN §5): a processor first run over a
# store that already holds events reduces all of them without side effects, then gets
# side effects for every event appended later, new streams included; with
# sideEffects = "all" it gets them for every event. The anchor is stored once: neither
# a later run nor reset --with-effects moves it.
#
# Fixture: tests/fixtures/runtime (mirror.lua answers each event it gets side effects
# for with one t/seen on out/<stream's last segment>); anchor.deploy.lua runs it as
# `mirror` (default) and `mirror_all` (sideEffects = "all").
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
S=$SLUICE

cp -r "$SLUICE_SRC/tests/fixtures/runtime" "$TMP/fx"
D=$TMP/fx/anchor.deploy.lua
sed -i "s|^  store = .*|  store = \"$(test_store anchor.db)\",|" "$D"
rc() { "$@" >/dev/null 2>&1; echo $?; }

# jsonl STREAM FIRST LAST: t/inc lines with by = offset-ish values.
jsonl() { local i; for ((i = $2; i <= $3; i++)); do printf '{"stream":"%s","type":"t/inc","payload":{"by":%d}}\n' "$1" $((i % 7 + 1)); done; }
# sources PROCESSOR: the "stream@offset" of every t/seen it emitted, sorted.
sources() {
	{ $S events out/1 --deployment "$D"; $S events out/2 --deployment "$D"; $S events out/3 --deployment "$D"; } 2>/dev/null |
		jq -r --arg p "$1" 'select(.type == "t/seen" and .metadata.source.processor == $p) | "\(.metadata.source.stream)@\(.metadata.source.offset)"' |
		sort -t@ -k1,1 -k2,2n | tr '\n' ' '
}
# seq_of STREAM FIRST LAST: "STREAM@FIRST ... STREAM@LAST "
seq_of() { local i; for ((i = $2; i <= $3; i++)); do printf '%s@%d ' "$1" "$i"; done; }
all_keys() {
	{ $S events out/1 --deployment "$D"; $S events out/2 --deployment "$D"; $S events out/3 --deployment "$D"; } 2>/dev/null |
		jq -r 'select(.type == "t/seen") | .idempotencyKey'
}

# 100 events before the processors ever ran: m/1 offsets 2..61, m/2 offsets 2..41.
{ jsonl m/1 1 60; jsonl m/2 1 40; } | $S append --jsonl --deployment "$D" >/dev/null
eq "100 events are in the store" "$($S events m/1 --deployment "$D" --type t/inc | wc -l),$($S events m/2 --deployment "$D" --type t/inc | wc -l)" "60,40"

eq "the first run exits 0" "$(rc $S run "$D" --until-caught-up)" "0"
eq "mirror reduced all 100 events" \
   "$($S state "$D" mirror | jq -c '[.stream, .offset, .state.count]' | tr '\n' ' ')" \
   '["m/1",61,60] ["m/2",41,40] '
eq "mirror emitted nothing for the events below its anchor" "$(sources mirror)" ""
eq "mirror_all (sideEffects = all) reduced them too" \
   "$($S state "$D" mirror_all | jq -c '[.stream, .offset, .state.count]' | tr '\n' ' ')" \
   '["m/1",61,60] ["m/2",41,40] '
eq "mirror_all emitted one event per event" "$(sources mirror_all)" "$(seq_of m/1 2 61)$(seq_of m/2 2 41)"

eq "a second run exits 0" "$(rc $S run "$D" --until-caught-up)" "0"
eq "a second run emits nothing for the old events" "$(sources mirror)" ""

# Events appended after the anchor, on an old stream and on a new one.
{ jsonl m/1 61 65; jsonl m/3 1 3; } | $S append --jsonl --deployment "$D" >/dev/null
eq "the run after new events exits 0" "$(rc $S run "$D" --until-caught-up)" "0"
eq "mirror emitted exactly for every later event, new stream included" \
   "$(sources mirror)" "$(seq_of m/1 62 66)$(seq_of m/3 2 4)"
eq "mirror_all emitted for all 108 events" \
   "$(sources mirror_all)" "$(seq_of m/1 2 66)$(seq_of m/2 2 41)$(seq_of m/3 2 4)"
eq "the states count every event" \
   "$($S state "$D" mirror | jq -c '[.stream, .offset, .state.count]' | tr '\n' ' ')" \
   '["m/1",66,65] ["m/2",41,40] ["m/3",4,3] '
eq "t/seen carries the state after the event" \
   "$($S events out/3 --deployment "$D" | jq -c 'select(.metadata.source.processor == "mirror") | .payload' | jq -s -c 'map([.offset, .count])')" \
   '[[2,1],[3,2],[4,3]]'
eq "every emitted key is unique" "$(all_keys | sort | uniq -d | wc -l)" "0"
eq "the keys are <processor>@<stream>:<offset>#1" \
   "$(all_keys | grep -c '^mirror@m/3:[234]#1$')" "3"

# The anchor does not move: a reset that forgets the side effects replays with side
# effects only above the anchor, i.e. exactly the later events again (which their keys
# deduplicate), never the first 100.
total_before=$(all_keys | wc -l)
eq "reset --with-effects of mirror exits 0" "$(rc $S reset "$D" mirror --with-effects)" "0"
eq "the replay exits 0" "$(rc $S run "$D" --until-caught-up)" "0"
eq "after the replay mirror still emitted only for the later events" \
   "$(sources mirror)" "$(seq_of m/1 62 66)$(seq_of m/3 2 4)"
eq "nothing was appended by the replay" "$(all_keys | wc -l)" "$total_before"
eq "the replayed state is the same" \
   "$($S state "$D" mirror | jq -c '[.stream, .offset, .state.count]' | tr '\n' ' ')" \
   '["m/1",66,65] ["m/2",41,40] ["m/3",4,3] '

finish
