#!/bin/bash
# append_cli.sh - the store from the command line: offsets, positions, idempotency,
# the pause door, ancestors, metadata and compare-and-set (DESIGN §2, §7).
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE

# Offsets and positions.
$S append orders/1 order/placed '{"sku":"a"}' >/dev/null
$S append orders/2 order/placed '{"sku":"b"}' >/dev/null
$S append orders/1 order/paid >/dev/null
eq "orders/1 offsets are 1..3" "$($S events orders/1 | jq -r .offset | tr '\n' ' ')" "1 2 3 "
eq "offset 1 is stream/created with the path" "$($S events orders/1 --limit 1 | jq -c '[.type,.payload]')" '["stream/created",{"path":"orders/1"}]'
eq "user events start at offset 2" "$($S events orders/1 --from 2 | jq -r .type | tr '\n' ' ')" "order/placed order/paid "
eq "omitted payload is {}" "$($S events orders/1 --from 3 | jq -c .payload)" "{}"
pos=$( { $S events orders; $S events orders/1; $S events orders/2; } | jq -s -r 'sort_by(.position) | map(.position) | .[]')
eq "positions are unique across streams" "$(printf '%s\n' "$pos" | sort -n | uniq | wc -l)" "$(printf '%s\n' "$pos" | wc -l)"
p1=$($S events orders/1 --from 2 --limit 1 | jq .position)
p2=$($S events orders/2 --from 2 --limit 1 | jq .position)
p3=$($S events orders/1 --from 3 | jq .position)
check "positions increase in append order across streams" test "$p1" -lt "$p2" -a "$p2" -lt "$p3"
out=$($S append orders/2 order/paid)
eq "append prints stream, offset, position" "$(echo "$out" | jq -c 'keys')" '["offset","position","stream"]'
eq "append reports the new offset" "$(echo "$out" | jq .offset)" "3"
eq "createdAt is RFC 3339 UTC with milliseconds" \
   "$($S events orders/2 --from 3 | jq -r .createdAt | grep -Ec '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$')" "1"
# (jq reads numbers as doubles, so this one is checked on the raw line)
$S append big/n t '{"n":9007199254740993,"m":-9223372036854775808,"f":1.5e300}' >/dev/null
check "integers keep 64-bit precision" grep -q '"payload":{"n":9007199254740993,"m":-9223372036854775808,"f":1.5e300}' <<<"$($S events big/n --from 2)"
$S append ws/1 t '{ "a" : [ 1 , 2 ] ,
  "b" : "x y" }' >/dev/null
eq "payload whitespace is compacted (strings kept)" "$($S events ws/1 --from 2 | jq -c .payload)" '{"a":[1,2],"b":"x y"}'
eq "events prints exactly one line per event" "$($S events ws/1 | wc -l)" "2"

# Idempotency.
a=$($S append pay/1 payment/taken '{"amount":10}' --key k1)
b=$($S append pay/1 payment/taken '{"amount":99}' --key k1)
eq "a repeated key returns the original offset and position" "$(jq -c '[.stream, .offset, .position]' <<<"$b")" "$(jq -c '[.stream, .offset, .position]' <<<"$a")"
eq "the first append's line has no duplicate field" "$(jq -c .duplicate <<<"$a")" "null"
eq "the repeat's line says duplicate: true" "$(jq -c .duplicate <<<"$b")" "true"
eq "so does a key hit through --jsonl" \
	"$(echo '{"type":"payment/taken","payload":{"amount":5},"idempotencyKey":"k1"}' | $S append pay/1 --jsonl | jq -c .duplicate)" "true"
eq "the first payload wins" "$($S events pay/1 --type payment/taken | jq -c .payload)" '{"amount":10}'
eq "the key is stored" "$($S events pay/1 --type payment/taken | jq -r .idempotencyKey)" "k1"
eq "a key hit with the same --offset is fine" "$($S append pay/1 payment/taken '{}' --key k1 --offset 2 | jq .offset)" "2"
refuses "a key hit with another --offset is refused" "offset.*k1" $S append pay/1 payment/taken '{}' --key k1 --offset 3
refuses "an invalid event is refused even if its key was used" "payload" $S append pay/1 payment/taken '[1]' --key k1

# Compare-and-set.
eq "--offset with the next offset appends" "$($S append cas/1 t '{}' --offset 2 | jq .offset)" "2"
refuses "--offset that is not the next one is refused" "^sluice: offset: expected 3" $S append cas/1 t '{}' --offset 5
refuses "--offset 0 is refused" "offset" $S append cas/1 t '{}' --offset 0

# The pause door.
$S append door/1 stream/paused '{"reason":"maintenance"}' >/dev/null
refuses "a paused stream refuses appends" "^sluice: stream paused: maintenance$" $S append door/1 t '{}'
check "stream/error-occurred passes the door" $S append door/1 stream/error-occurred '{"message":"boom"}' >/dev/null
eq "streams shows the pause" "$($S streams door/1 | jq -c '[.paused]')" "[true]"
check "stream/resumed passes the door" $S append door/1 stream/resumed >/dev/null
check "after stream/resumed appends work" $S append door/1 t '{}' >/dev/null
$S append door/2 t '{}' --key once >/dev/null
$S append door/2 stream/paused >/dev/null
eq "an idempotency hit is answered before the pause door" "$($S append door/2 t '{}' --key once | jq .offset)" "2"
refuses "a pause without a reason says so" "^sluice: stream paused: no reason given$" $S append door/2 t '{}'
check "a child of a paused stream can be created" $S append door/2/child t '{}' >/dev/null
printf '%s\n' '{"type":"stream/paused"}' '{"type":"t"}' >"$TMP/pp.jsonl"
refuses "stream/paused then an event in one batch rejects the batch" "line 2: stream paused" $S append door/3 --jsonl <"$TMP/pp.jsonl"
eq "... and writes nothing" "$($S events door/3 | wc -l)" "0"

# Ancestors.
seq 1000 | jq -c '{type:"t/e", payload:{i:.}}' >"$TMP/abc.jsonl"
check "1000 appends to a/b/c (one transaction each)" $S append a/b/c --jsonl --batch-size 1 <"$TMP/abc.jsonl" >/dev/null
for i in 1 2 3; do $S append a/b/c t/e '{}' >/dev/null; done
eq "a/b announces a/b/c exactly once" "$($S events a/b --type stream/child-stream-created | jq -r .payload.childPath | tr '\n' ' ')" "a/b/c "
eq "a announces a/b and a/b/c once each" "$($S events a --type stream/child-stream-created | jq -r .payload.childPath | tr '\n' ' ')" "a/b a/b/c "
eq "announcements carry keys" "$($S events a --type stream/child-stream-created | jq -r .idempotencyKey | tr '\n' ' ')" "child-stream-created:a/b child-stream-created:a/b/c "
eq "a/b/c has 1003 user events after stream/created" "$($S events a/b/c | tail -1 | jq .offset)" "1004"

# Streams and prefixes.
$S append orders2 t >/dev/null
eq "streams PREFIX lists the prefix and below, not siblings" "$($S streams orders | jq -r .stream | tr '\n' ' ')" "orders orders/1 orders/2 "
eq "a stream without metadata has metadata {}" "$($S streams orders/1 | jq -c .metadata)" "{}"
$S append orders/1 stream/metadata-updated '{"metadata":{"owner":"ann"}}' >/dev/null
$S append orders/1 stream/metadata-updated '{"metadata":{"tier":2}}' >/dev/null
eq "stream/metadata-updated replaces the metadata" "$($S streams orders/1 | jq -c .metadata)" '{"tier":2}'
eq "streams lines carry stream, head, paused, metadata" "$($S streams orders/1 | jq -c 'keys')" '["head","metadata","paused","stream"]'
eq "events --type filters" "$($S events orders/1 --type order/paid | jq -r .offset)" "3"
eq "events --from and --limit" "$($S events a/b/c --from 10 --limit 3 | jq -r .offset | tr '\n' ' ')" "10 11 12 "
eq "events of a stream that does not exist prints nothing" "$($S events nothing/here | wc -l)" "0"
eq "metadata is stored" "$($S append m/1 t '{}' --metadata '{"by":"cli"}' >/dev/null; $S events m/1 --from 2 | jq -c .metadata)" '{"by":"cli"}'
finish
