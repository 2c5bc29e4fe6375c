#!/bin/bash
# bad_input.sh - every bad input is refused with a message naming the field, exit 1,
# and nothing is written (DESIGN §2, §7).
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE

$S append s/1 t '{"n":1}' >/dev/null
snapshot() { { $S streams; $S events s/1; } | jq -c 'del(.createdAt)'; }
before=$(snapshot)
nothing_new() { eq "$1: nothing written" "$(snapshot)" "$before"; }

big=$(head -c 1100000 /dev/zero | tr '\0' 'x')
t129=$(head -c 129 /dev/zero | tr '\0' 't')
t128=$(head -c 128 /dev/zero | tr '\0' 't')

bad() { # NAME PATTERN ARGS...
	local name=$1 pat=$2; shift 2
	refuses "$name" "$pat" $S append "$@"
	nothing_new "$name"
}
bad "invalid stream name (empty segment)" "^sluice: stream: invalid stream name 's//1'" s//1 t '{}'
bad "invalid stream name (leading dot)" "^sluice: stream: invalid stream name" s/.hidden t '{}'
bad "invalid stream name (..)" "^sluice: stream: invalid stream name" s/../x t '{}'
bad "invalid stream name (trailing slash)" "^sluice: stream: invalid stream name" s/1/ t '{}'
bad "invalid stream name (space)" "^sluice: stream: invalid stream name" "s/a b" t '{}'
bad "stream name over 255 bytes" "^sluice: stream: invalid stream name" "$(head -c 256 /dev/zero | tr '\0' 'a')" t '{}'
bad "empty type" "^sluice: type: must be a non-empty string" s/1 "" '{}'
bad "129-byte type" "^sluice: type: longer than 128 bytes" s/1 "$t129" '{}'
bad "payload that is an array" "^sluice: payload: must be a JSON object, got array" s/1 t '[1,2]'
bad "payload that is a string" "^sluice: payload: must be a JSON object, got string" s/1 t '"x"'
bad "payload that is a number" "^sluice: payload: must be a JSON object, got (number|integer)" s/1 t '42'
bad "payload that is null" "^sluice: payload: must be a JSON object, got null" s/1 t 'null'
bad "malformed payload" "^sluice: payload: malformed JSON" s/1 t '{"a":'
bad "payload with a duplicate key" "^sluice: payload: .*duplicate key" s/1 t '{"a":1,"a":2}'
bad "metadata that is not an object" "^sluice: metadata: must be a JSON object, got array" s/1 t '{}' --metadata '[]'
bad "blank idempotency key" "^sluice: idempotencyKey: must be a non-blank" s/1 t '{}' --key '   '
bad "empty idempotency key" "^sluice: idempotencyKey: must be a non-blank" s/1 t '{}' --key ''
bad "wrong --offset" "^sluice: offset: expected 3" s/1 t '{}' --offset 7
bad "non-numeric --offset" "^sluice: --offset: must be a positive integer" s/1 t '{}' --offset x
bad "stream/created is the store's own" "^sluice: type: 'stream/created' is written by the store only" s/1 stream/created '{"path":"s/1"}'
bad "stream/child-stream-created is the store's own" "^sluice: type: " s/1 stream/child-stream-created '{"childPath":"s/1/x"}'
bad "stream/metadata-updated without metadata" "^sluice: payload: /: required: missing property 'metadata'" s/1 stream/metadata-updated '{}'
bad "stream/error-occurred without message" "^sluice: payload: /: required: missing property 'message'" s/1 stream/error-occurred '{}'
bad "stream/paused with a non-string reason" "^sluice: payload: /reason: type: expected string" s/1 stream/paused '{"reason":1}'
bad "stream/error-occurred with an error lacking message" "^sluice: payload: /error: required" s/1 stream/error-occurred '{"message":"m","error":{}}'
bad "unknown option" "unknown option '--colour'" s/1 t '{}' --colour
check "a 128-byte type is fine" $S append s/1 "$t128" '{}' >/dev/null
before=$(snapshot)

# --jsonl: every line is validated first; one bad line anywhere writes nothing.
seq 50 | jq -c '{type:"t", payload:{i:.}}' >"$TMP/good.jsonl"
jsonl_bad() { # NAME PATTERN LINE_NO BAD_LINE
	{ head -n $(($3 - 1)) "$TMP/good.jsonl"; printf '%s\n' "$4"; tail -n +$3 "$TMP/good.jsonl"; } >"$TMP/in.jsonl"
	refuses "jsonl: $1 on line $3" "^sluice: line $3: $2" $S append s/1 --jsonl <"$TMP/in.jsonl"
	nothing_new "jsonl: $1"
}
jsonl_bad "event over 1 MiB" "event: .*over the 1048576-byte limit" 5 "{\"type\":\"t\",\"payload\":{\"x\":\"$big\"}}"
jsonl_bad "unknown envelope field" "unknown field 'colour'" 1 '{"type":"t","colour":"red"}'
jsonl_bad "createdAt given" "createdAt: is set by the store" 25 '{"type":"t","createdAt":"2026-11-25T12:00:00.123Z"}'
jsonl_bad "position given" "position: is set by the store" 50 '{"type":"t","position":3}'
jsonl_bad "payload array" "payload: must be a JSON object, got array" 51 '{"type":"t","payload":[]}'
jsonl_bad "malformed line" "malformed JSON" 7 '{"type":"t",'
jsonl_bad "missing type" "type: required" 3 '{"payload":{}}'
jsonl_bad "blank key" "idempotencyKey: must be a non-blank" 9 '{"type":"t","idempotencyKey":""}'
jsonl_bad "non-integer offset" "offset: must be a positive integer" 9 '{"type":"t","offset":1.5}'
jsonl_bad "invalid stream" "stream: invalid stream name" 4 '{"type":"t","stream":"a//b"}'
jsonl_bad "not an object" "must be a JSON object, got array" 2 '[1]'
printf '%s\n' '{"type":"t"}' >"$TMP/nostream.jsonl"
refuses "jsonl: a line without stream and no STREAM" "^sluice: line 1: stream: required" $S append --jsonl <"$TMP/nostream.jsonl"
{ cat "$TMP/good.jsonl"; echo '{"type":"t","offset":2}'; } >"$TMP/cas.jsonl"
refuses "jsonl: a wrong offset in the only chunk" "^sluice: line 51: offset: expected" $S append s/1 --jsonl <"$TMP/cas.jsonl"
nothing_new "jsonl: a wrong offset rolls back its chunk"
{ echo '{"type":"t","idempotencyKey":"dup"}'; echo '{"type":"t","idempotencyKey":"dup"}'; } >"$TMP/dup.jsonl"
eq "jsonl: a key repeated in one chunk gives the first event twice" "$($S append s/2 --jsonl <"$TMP/dup.jsonl" | jq -r .offset | tr '\n' ' ')" "2 2 "

# CLI usage errors.
refuses "unknown command" "unknown command 'apend'" $S apend s/1 t
refuses "--store with --deployment" "cannot be used together" $S streams --store "$TMP/x.db" --deployment "$TMP/d.lua"
refuses "events on a missing store" "cannot open store" $S events s/1 --store "$TMP/none.db"
check "no store file was created by a read" test ! -e "$TMP/none.db"
refuses "events --from 0" "from: must be a positive integer" $S events s/1 --from 0
refuses "missing arguments" "missing arguments" $S append s/1
finish
