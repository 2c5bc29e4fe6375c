#!/bin/bash
# work_faults.sh - the poison policy (DESIGN §5, §7 "Failures", "Other results"):
# after 4 failed attempts of the same batch (deployment retry = {attempts = 4}) the
# instance is faulted; its checkpoint row says so across restarts; stream/error-occurred
# is appended once (key processor-ingest-failed:<processor>:<checkpoint>), also across
# further runs; the processor's other instances and other processors are unaffected;
# a restart alone does not clear the fault, a changed script does; `sluice resume
# --skip` dead-letters exactly the poison event and processes the rest of the batch;
# `sluice dead-letters` lists it (processor, stream, offset, type, error, attempts,
# at); `resume` on an instance that is not faulted exits 0 and changes nothing.
#
# Fixture: tests/fixtures/work: `poison` runs a copy of work.lua (a w/cmd {op =
# "poison", poison = true} registers a block item that appends "attempt" to a
# side-channel file, then its hook raises "poison pill <n>"); `census` (census.lua)
# counts the same events without hooks.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
S=$SLUICE
FX=$TMP/fx
cp -r "$SLUICE_SRC/tests/fixtures/work" "$FX"
cp "$FX/work.lua" "$FX/poison.lua"
D=$FX/faults.deploy.lua
cat >"$D" <<EOF
return {
  store = "$(test_store faults.db)", schemas = { "schemas" },
  processors = {
    poison = { script = "poison.lua", streams = "p/*", sideEffects = "all",
               retry = { attempts = 4, backoff = "10ms" } },
    census = { script = "census.lua", streams = "p/*" },
  },
}
EOF
A=$TMP/attempts
cmd() { $S append "$1" w/cmd "$2" --deployment "$D" | jq -r .offset; }
run() { $S run "$D" --until-caught-up >/dev/null 2>"$TMP/run.err"; echo $?; }
lines() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }
st() { $S state "$D" "$1" "$2" | jq -c "$3"; }
status_of() { $S status "$D" | jq -c --arg p "$1" --arg s "$2" 'select(.processor == $p and .stream == $s) | '"$3"; }
errors() { $S events p/1 --deployment "$D" --type stream/error-occurred | jq -c '[.idempotencyKey, .payload.processor, .payload.offset, (.payload.message | test("poison pill 3"))]'; }
results() { $S events "$1" --deployment "$D" --type w/result | jq -r '.payload.n' | tr '\n' ' '; }

cmd p/1 '{"op":"plain","n":1}' >/dev/null
cmd p/2 '{"op":"plain","n":10}' >/dev/null
eq "setup: the first run exits 0" "$(run)" "0"
C0=$(st poison p/1 .offset)
eq "setup: poison on p/1 is caught up" "$(status_of poison p/1 '[.status, .lag]')" '["ok",0]'

# The failing batch of p/1: n=2, the poison n=3, n=4.
cmd p/1 '{"op":"plain","n":2}' >/dev/null
P=$(cmd p/1 "{\"op\":\"poison\",\"n\":3,\"poison\":true,\"file\":\"$A\"}")
N4=$(cmd p/1 '{"op":"plain","n":4}')
cmd p/2 '{"op":"plain","n":11}' >/dev/null

eq "fault: the run exits 1" "$(run)" "1"
eq "fault: the batch was attempted 4 times" "$(lines "$A")" "4"
eq "fault: attempts 1-3 were retried, the 4th faulted" \
   "$(grep -o '(attempt [0-9] of 4[^)]*)' "$TMP/run.err" | tr '\n' ' ')" \
   "(attempt 1 of 4) (attempt 2 of 4) (attempt 3 of 4) (attempt 4 of 4; faulted) "
eq "fault: poison on p/1 is faulted at its checkpoint, with the poison's error" \
   "$(status_of poison p/1 '[.status, .offset, (.lastError | test("poison pill 3"))]')" "[\"faulted\",$C0,true]"
eq "fault: poison's state on p/1 is unchanged" "$(st poison p/1 .state)" '{"count":1,"ns":"1"}'
eq "fault: stream/error-occurred appended once, keyed by the checkpoint, naming the poison's offset" \
   "$(errors)" "[\"processor-ingest-failed:poison:$C0\",\"poison\",$P,true]"
eq "fault: poison's other instance (p/2) is unaffected" "$(st poison p/2 '[.status, .state.ns]')" '["ok","10,11"]'
eq "fault: the other processor is unaffected" \
   "$($S state "$D" census | jq -c '[.stream, .status, .state.ns]' | tr '\n' ' ')" '["p/1","ok","1,2,3,4"] ["p/2","ok","10,11"] '
eq "fault: the other processor is caught up" "$($S status "$D" | jq -c 'select(.processor == "census") | .lag' | tr '\n' ' ')" "0 0 "

eq "restart: the second run exits 1" "$(run)" "1"
eq "restart: the faulted instance got nothing (no attempt)" "$(lines "$A")" "4"
eq "restart: still faulted" "$(status_of poison p/1 .status)" '"faulted"'
eq "restart: still exactly one stream/error-occurred" "$(errors | wc -l)" "1"
eq "restart: sluice state reports the fault too" "$(st poison p/1 .status)" '"faulted"'

printf '\n-- changed: a comment\n' >>"$FX/poison.lua"
eq "changed script: the run exits 1 (the poison is still there)" "$(run)" "1"
eq "changed script: the fault was cleared and the batch attempted 4 more times" "$(lines "$A")" "8"
eq "changed script: faulted again" "$(status_of poison p/1 .status)" '"faulted"'
eq "changed script: still exactly one stream/error-occurred (same checkpoint, same key)" "$(errors | wc -l)" "1"

# resume on instances that are not faulted: exit 0, no output, nothing changes.
before=$($S state "$D" poison p/2; $S state "$D" census; $S dead-letters "$D")
out=$($S resume "$D" poison p/2 --skip 2>&1); rc=$?
eq "resume (not faulted): poison p/2 --skip exits 0 and prints nothing" "$rc:$out" "0:"
out=$($S resume "$D" census 2>&1); rc=$?
eq "resume (not faulted): census exits 0 and prints nothing" "$rc:$out" "0:"
eq "resume (not faulted): nothing changed" "$($S state "$D" poison p/2; $S state "$D" census; $S dead-letters "$D")" "$before"
eq "resume (not faulted): poison p/1 is still faulted" "$(status_of poison p/1 .status)" '"faulted"'

out=$($S resume "$D" poison p/1 --skip 2>"$TMP/resume.err"); rc=$?
eq "resume --skip: exits 0" "$rc" "0"
eq "resume --skip: reports exactly the poison event as dead-lettered" \
   "$(printf '%s\n' "$out" | jq -c .)" "{\"processor\":\"poison\",\"stream\":\"p/1\",\"offset\":$P,\"deadLettered\":true}"
eq "resume --skip: the rest of the batch was processed (n=2, n=4), not the poison" \
   "$(st poison p/1 '[.status, .state]')" '["ok",{"count":3,"ns":"1,2,4"}]'
eq "resume --skip: the rest's side effects committed once each" "$(results p/1)" "1 2 4 "
eq "resume --skip: the checkpoint moved past the whole batch" \
   "$(status_of poison p/1 "[.status, .offset >= $N4]")" '["ok",true]'
dl=$($S dead-letters "$D")
eq "dead-letters: one line" "$(printf '%s\n' "$dl" | grep -c .)" "1"
eq "dead-letters: processor, stream, offset, type" \
   "$(printf '%s\n' "$dl" | jq -c '[.processor, .stream, .offset, .type]')" "[\"poison\",\"p/1\",$P,\"w/cmd\"]"
eq "dead-letters: error, attempts, at" \
   "$(printf '%s\n' "$dl" | jq -c '[(.error | test("poison pill 3")), (.attempts | type == "number" and . >= 4),
      (.at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"))]')" '[true,true,true]'
eq "dead-letters: exactly the fields of §7" "$(printf '%s\n' "$dl" | jq -c 'keys')" \
   '["at","attempts","error","offset","processor","stream","type"]'

eq "after resume: a run exits 0" "$(run)" "0"
eq "after resume: nothing was delivered again" "$(st poison p/1 .state.ns | tr -d '"'):$(results p/1)" "1,2,4:1 2 4 "
before=$($S state "$D" poison; $S dead-letters "$D"; $S events p/1 --deployment "$D")
out=$($S resume "$D" poison p/1 --skip 2>&1); rc=$?
eq "resume again (no longer faulted): exits 0 and prints nothing" "$rc:$out" "0:"
out=$($S resume "$D" poison 2>&1); rc=$?
eq "resume without STREAM (none faulted): exits 0 and prints nothing" "$rc:$out" "0:"
eq "resume again: nothing changed (state, dead letters, events)" \
   "$($S state "$D" poison; $S dead-letters "$D"; $S events p/1 --deployment "$D")" "$before"
eq "after everything: still one stream/error-occurred" "$(errors | wc -l)" "1"

finish
