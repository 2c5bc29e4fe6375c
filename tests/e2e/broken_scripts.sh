#!/bin/bash
# broken_scripts.sh - one broken script does not take the deployment's read commands
# down (issue 10, item 8): with a syntax error in one processor's script, `status`,
# `dead-letters` and `reset` work without loading scripts, and `state` warns and
# prints that processor's stored states as stored while the other processor's states
# are as always; `run` reports at start the instances faulted before it, and a live
# run stopped by SIGTERM exits 0 even when an instance is faulted (until-caught-up
# still exits 1 then).
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
D=$TMP/deploy.lua
mkdir -p "$TMP/schemas"
RUN=
cleanup() { [ -n "$RUN" ] && kill -9 "$RUN" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

for name in good fragile; do
	cat >"$TMP/schemas/$name.contract.json" <<EOF
{ "name": "$name", "version": 1, "consumes": ["t/inc"], "emits": [],
  "events": { "t/inc": {"type": "object"} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
	cat >"$TMP/$name.lua" <<EOF
return { contract = "$name", reduce = { ["t/inc"] = function(s, e)
  if e.payload.boom then error("boom") end
  return { n = s.n + 1 } end } }
EOF
done
cat >"$D" <<'EOF'
return { store = "store.db", schemas = { "schemas" }, lease = "1s",
  processors = { good = { script = "good.lua", streams = "c/*", retry = { attempts = 1 } },
                 fragile = { script = "fragile.lua", streams = "c/*", retry = { attempts = 1 } } } }
EOF
for _ in 1 2; do $S append c/a t/inc >/dev/null; done
$S append c/bad t/inc '{"boom":true}' >/dev/null
$S run "$D" --until-caught-up 2>/dev/null
eq "until caught up with a faulted instance: exit 1" "$?" "1"

# ---- a live run reports earlier faults and exits 0 on SIGTERM ------------------------------
$S run "$D" --log-format text >/dev/null 2>"$TMP/run.err" &
RUN=$!
logged() { grep -q "$1" "$TMP/run.err"; }
check "at start, the run warns about c/bad faulted before it (for each processor)" \
	wait_until 20 logged "fragile c/bad: faulted before this run (checkpoint at offset 0)"
check "good's too" wait_until 20 logged "good c/bad: faulted before this run (checkpoint at offset 0)"
runner_set() { [ "$($S status "$D" | jq -r 'select(.stream == "c/a") | .runner' | sort -u)" != null ]; }
check "the run holds its leases" wait_until 20 runner_set
kill -TERM "$RUN"
wait "$RUN"
eq "SIGTERM stops a live run with exit 0 although c/bad is faulted" "$?" "0"
RUN=

# ---- fragile's script breaks ---------------------------------------------------------------
printf 'return {\n  contract = "fragile",\n  reduce = { ["t/inc"] = function(s) return { n = s.n + } end },\n}\n' \
	>"$TMP/fragile.lua"
out=$($S status "$D" 2>"$TMP/err")
eq "status works with fragile.lua broken (exit 0)" "$?" "0"
eq "and lists both processors' instances" "$(echo "$out" | jq -r '.processor' | sort | uniq -c | awk '{print $1 $2}' | tr '\n' ' ')" \
	"2fragile 2good "
out=$($S state "$D" good c/a 2>"$TMP/err")
eq "state of the good processor works" "$?:$(echo "$out" | jq -c .state)" '0:{"n":2}'
out=$($S state "$D" fragile c/a 2>"$TMP/err")
eq "state of the broken one exits 0" "$?" "0"
eq "and prints its stored state" "$(echo "$out" | jq -c '[.offset, .status, .state]')" '[3,"ok",{"n":2}]'
check "with a warning naming the script" grep -q "^sluice: warning: .*fragile.lua.*stored states are shown as stored" "$TMP/err"
out=$($S state "$D" fragile 2>/dev/null)
eq "every instance of it: c/bad faulted without a state (null)" \
	"$(echo "$out" | jq -c 'select(.stream == "c/bad") | [.status, .state]')" '["faulted",null]'
$S dead-letters "$D" >/dev/null 2>"$TMP/err"
eq "dead-letters works" "$?" "0"
$S reset "$D" fragile c/a 2>"$TMP/err"
eq "reset of the broken processor works" "$?" "0"
eq "and reset it" "$($S status "$D" | jq -c 'select(.processor == "fragile" and .stream == "c/a") | [.offset, .status]')" '[0,"new"]'
eq "good's instance is untouched" "$($S status "$D" | jq -c 'select(.processor == "good" and .stream == "c/a") | .offset')" '3'
$S check "$D" >/dev/null 2>"$TMP/err"
eq "check still refuses the deployment" "$?" "1"
$S run "$D" --until-caught-up >/dev/null 2>"$TMP/err"
eq "and so does run" "$?" "1"
finish
