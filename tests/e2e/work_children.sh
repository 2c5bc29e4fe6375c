#!/bin/bash
# work_children.sh - no child of ctx.exec outlives `sluice run`, not even as a zombie
# (issue 10, item 9): after two SIGINTs (the second exits at once) and after the
# shutdown deadline of one SIGTERM, the `sleep` a batch's blocking work started is
# gone when run has exited; so is a background item's.
#
# The child writes its pid first (`sh -c 'echo $$ >F; exec sleep 30'`: the pid stays
# the sleep's), so the test knows it started; "gone" means no process with that pid,
# alive or defunct (a zombie left to a PID 1 that does not reap still shows in ps).
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
D=$TMP/deploy.lua
mkdir -p "$TMP/schemas"
RUN=
cleanup() {
	[ -n "$RUN" ] && kill -9 "$RUN" 2>/dev/null
	for f in "$TMP"/*.pid; do [ -s "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT

cat >"$TMP/schemas/spawner.contract.json" <<'EOF'
{ "name": "spawner", "version": 1, "consumes": ["t/go"], "emits": [],
  "events": { "t/go": {"type": "object"} },
  "state": {"type": "object"}, "initialState": {} }
EOF
cat >"$TMP/spawner.lua" <<EOF
local function sleeper(ctx, name)
  return function()
    ctx.exec{ "sh", "-c", "echo \$\$ >$TMP/" .. name .. ".pid; exec sleep 30", timeout = "60s" }
  end
end
return {
  contract = "spawner",
  processEvent = { ["t/go"] = function(event, ctx)
    ctx.background(sleeper(ctx, "bg" .. event.offset))
    ctx.block(sleeper(ctx, "block" .. event.offset))
  end },
}
EOF
cat >"$D" <<'EOF'
return { store = "store.db", schemas = { "schemas" },
  processors = { spawner = { script = "spawner.lua", streams = "s/*" } } }
EOF
started() { [ -s "$TMP/block$1.pid" ] && [ -s "$TMP/bg$1.pid" ]; }
# gone NAME: no process (alive or zombie) has the pid NAME.pid recorded.
gone() { ! ps -o pid= -p "$(cat "$TMP/$1.pid")" >/dev/null; }

$S run "$D" --until-caught-up 2>/dev/null # the side-effect anchor

# ---- two SIGINTs: the second exits at once, killing and reaping the children ---------------
$S run "$D" --log-format text >/dev/null 2>"$TMP/run1.err" &
RUN=$!
off=$($S append s/a t/go | jq -r .offset)
check "both children started" wait_until 20 started "$off"
kill -INT "$RUN"
# Two signals sent back to back may arrive as one: the second goes once the first is in.
check "the first SIGINT waits for the blocked batch" \
	wait_until 20 grep -q "SIGINT: stopping; waiting up to" "$TMP/run1.err"
kill -INT "$RUN"
wait "$RUN"
eq "the second SIGINT exits at once with 130" "$?" "130"
RUN=
check "the blocking work's sleep is gone" gone "block$off"
check "the background work's sleep is gone" gone "bg$off"

# ---- one SIGTERM: after the shutdown deadline the children are killed and reaped -----------
$S run "$D" --shutdown-timeout 300ms --log-format text >/dev/null 2>"$TMP/run2.err" &
RUN=$!
off=$($S append s/a t/go | jq -r .offset)
check "both children of the next event started" wait_until 20 started "$off"
kill -TERM "$RUN"
wait "$RUN"
eq "after the deadline the run exits 0" "$?" "0"
RUN=
check "it said the batch did not settle" grep -q "did not settle in time" "$TMP/run2.err"
check "the blocking work's sleep is gone (not left defunct)" gone "block$off"
check "the background work's sleep is gone" gone "bg$off"
finish
