#!/bin/bash
# poison.sh - poison events and dead letters (issue 10, items 4 and 5):
#   - `sluice append --deployment` checks payloads of the types the deployment's
#     contracts define: a bad event is refused with the consumer's schema error
#     (field, contract, file) and nothing is written, for one event and for --jsonl;
#     --no-validate appends it; a type no contract defines passes.
#   - dead letters are a skip list: after `resume --skip` the event is skipped again
#     after a reset and after a contract version bump (not re-faulted), and listed
#     once; `dead-letters --processor`, `dead-letters clear` (then a reset faults on
#     it again), and `resume --skip-all` (every event of the batch that fails alone).
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
D=$TMP/deploy.lua
mkdir -p "$TMP/schemas"
contract() {
	cat >"$TMP/schemas/picky.contract.json" <<EOF
{ "name": "picky", "version": $1, "consumes": ["order/placed"], "emits": [],
  "events": { "order/placed": {"type": "object", "required": ["qty"],
                               "properties": {"qty": {"type": "integer"}, "boom": {}}} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
}
contract 1
cat >"$TMP/picky.lua" <<'EOF'
return { contract = "picky", reduce = { ["order/placed"] = function(s, e)
  if e.payload.boom then error("poison at " .. e.offset, 0) end
  return { n = s.n + e.payload.qty } end } }
EOF
cat >"$D" <<EOF
return { store = "$(test_store store.db)", schemas = { "schemas" },
  processors = { picky = { script = "picky.lua", streams = "o/*", retry = { attempts = 1 } } } }
EOF
count() { $S events --deployment "$D" "$1" 2>/dev/null | wc -l; }

# ---- append --deployment validates ----------------------------------------------------------
out=$($S append o/1 order/placed '{"qty":"two"}' --deployment "$D" 2>&1)
eq "a bad payload is refused (exit 1)" "$?" "1"
eq "with the consumer's schema error, naming the field and the contract" "$out" \
	"sluice: payload: /qty: type: expected integer, got string (as contract 'picky' defines 'order/placed', $TMP/schemas/picky.contract.json)"
eq "nothing was written (the stream does not exist)" "$(count o/1)" "0"
printf '%s\n' '{"stream":"o/1","type":"order/placed","payload":{"qty":1}}' \
	'{"stream":"o/1","type":"order/placed","payload":{}}' |
	$S append --jsonl --deployment "$D" >/dev/null 2>"$TMP/err"
eq "a --jsonl input with a bad line is refused" "$?" "1"
check "naming the line and the missing field" grep -q "^sluice: line 2: payload: /: required: missing property 'qty' (as contract 'picky'" "$TMP/err"
eq "and nothing of it was written" "$(count o/1)" "0"
$S append o/1 order/placed '{"qty":"two"}' --deployment "$D" --no-validate >/dev/null
eq "--no-validate appends it" "$(count o/1)" "2"
$S append o/1 other/type '{"anything":true}' --deployment "$D" >/dev/null
eq "a type no contract defines passes" "$(count o/1)" "3"
$S append o/1 order/placed '{"qty":"two"}' --store "$(test_store "$TMP/store.db")" >/dev/null
eq "--store does not validate (no contracts)" "$(count o/1)" "4"

# ---- dead letters are a skip list -------------------------------------------------------------
for p in '{"qty":1}' '{"qty":2,"boom":true}' '{"qty":3}'; do
	$S append o/2 order/placed "$p" --deployment "$D" >/dev/null
done
sed -i 's|o/\*|o/2|' "$D" # from here, o/1 (its strings) is not picky's
$S run "$D" --until-caught-up >/dev/null 2>&1
eq "the poison event faults the instance" "$($S status "$D" | jq -r 'select(.stream == "o/2") | .status')" "faulted"
$S resume "$D" picky o/2 --skip >/dev/null
eq "resume --skip dead-letters it and processes the rest (1 + 3)" \
	"$($S state "$D" picky o/2 | jq -c '[.status, .state.n]')" '["ok",4]'
$S reset "$D" picky o/2
$S run "$D" --until-caught-up >/dev/null 2>&1
eq "after a reset the run skips the dead letter again: not faulted" "$?" "0"
eq "and the state is the same" "$($S state "$D" picky o/2 | jq -c '[.status, .state.n]')" '["ok",4]'
contract 2
$S run "$D" --until-caught-up >/dev/null 2>&1
eq "after a contract version bump (a rebuild) it is skipped too" "$?:$($S state "$D" picky o/2 | jq -c .state.n)" "0:4"
eq "dead-letters lists it once" "$($S dead-letters "$D" | jq -c '[.processor, .stream, .offset]')" '["picky","o/2",3]'
eq "--processor picky lists it" "$($S dead-letters "$D" --processor picky | wc -l)" "1"
refuses "--processor of an unknown processor is an error" "unknown processor 'nosuch'" \
	$S dead-letters "$D" --processor nosuch
eq "dead-letters clear prints how many it forgot" "$($S dead-letters "$D" clear)" '{"cleared":1}'
eq "none left" "$($S dead-letters "$D" | wc -l)" "0"
$S reset "$D" picky o/2
$S run "$D" --until-caught-up >/dev/null 2>&1
eq "cleared, a reset processes the poison event again: faulted" "$?:$($S status "$D" | jq -r 'select(.stream == "o/2") | .status')" "1:faulted"

# ---- resume --skip-all -------------------------------------------------------------------------
sed -i 's|"o/2"|"o/3"|' "$D"
for p in '{"qty":1}' '{"qty":2,"boom":true}' '{"qty":3}' '{"qty":4,"boom":true}' '{"qty":5}'; do
	$S append o/3 order/placed "$p" --deployment "$D" --no-validate >/dev/null
done
$S run "$D" --until-caught-up >/dev/null 2>&1
$S resume "$D" picky o/3 --skip >/dev/null 2>&1
eq "resume --skip stops at the batch's second poison event (exit 1)" "$?" "1"
$S run "$D" --until-caught-up >/dev/null 2>&1
eq "so the next run faults on it" "$($S status "$D" | jq -r 'select(.stream == "o/3") | .status')" "faulted"
$S reset "$D" picky o/3
$S dead-letters clear "$D" >/dev/null
$S run "$D" --until-caught-up >/dev/null 2>&1
$S resume "$D" picky o/3 --skip-all >/dev/null
eq "resume --skip-all dead-letters every event of the batch that fails alone" \
	"$($S dead-letters "$D" --processor picky | jq -r '"\(.stream)@\(.offset)"' | sort | tr '\n' ' ')" "o/3@3 o/3@5 "
eq "and processes the others (1 + 3 + 5)" "$($S state "$D" picky o/3 | jq -c '[.status, .state.n]')" '["ok",9]'
finish
