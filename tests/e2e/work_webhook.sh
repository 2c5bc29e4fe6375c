#!/bin/bash
# work_webhook.sh - the webhook example (processors/webhook.lua) across a crash: its
# request is sent by background work, which never holds the checkpoint; if the
# engine dies while the request is in flight, prepare re-issues it on the next start,
# and the fixed idempotency key of webhook/delivered records the delivery once. A
# request whose delivery finished is not sent again on restart.
#
# The local server (tests/fixtures/work/http_server.py --hold-first 3) logs every
# request as it arrives and holds the first one 3 s before answering; `sluice run`
# (without --until-caught-up) is killed with SIGKILL once the server has logged it.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
. "$(dirname "$0")/lib/worklib.sh"
S=$SLUICE
D=$TMP/webhook.deploy.lua
cat >"$D" <<EOF
return {
  store = "webhook.db",
  processors = { webhook = { script = "$SLUICE_SRC/processors/webhook.lua", streams = "hooks/*",
                             sideEffects = "all" } },
}
EOF
request() {
	$S append hooks/a webhook/requested "{\"url\":\"http://127.0.0.1:$PORT$1\",\"body\":\"{\\\"n\\\":$2}\"}" \
		--deployment "$D" | jq -r .offset
}
delivered() { $S events hooks/a --deployment "$D" --type webhook/delivered | jq -c '.payload | [.requestOffset, .status]' | tr '\n' ' '; }
state() { $S state "$D" webhook hooks/a | jq -c .state.requests; }
# SQL, not the CLI: webhook_requests is the processor's ctx.db table, which no command reads.
projection() { sqlite3 -readonly "$TMP/webhook.db" "SELECT req_offset || ':' || status FROM webhook_requests ORDER BY req_offset" | tr '\n' ' '; }
sent() { jq -c --arg p "$1" 'select(.path == $p) | [.method, .body, .headers["content-type"]]' "$SERVER_LOG" | tr '\n' ' '; }
has_requests() { [ "$(requests)" -ge "$1" ]; }
until_caught_up() { $S run "$D" --until-caught-up >/dev/null 2>>"$TMP/run.err"; echo $?; }

check "the server starts" start_server srv --hold-first 3
R1=$(request /hook/1 1)

# ---- killed while the first request is in flight ---------------------------------------------
$S run "$D" >/dev/null 2>"$TMP/bg.err" &
RUN_PID=$!
KILL_PIDS+=("$RUN_PID")
check "the first request reached the server (and is held there)" wait_for 30 has_requests 1
kill -KILL "$RUN_PID"
{ wait "$RUN_PID"; } 2>/dev/null
eq "sluice run died of SIGKILL" "$?" "137"
eq "crash: the request's batch committed: state and projection say started" \
   "$(state):$(projection)" "{\"$R1\":\"started\"}:$R1:started "
eq "crash: no delivery was recorded" "$(delivered)" ""

# ---- the restart sends it again, and records one delivery -------------------------------------
eq "restart: the run exits 0" "$(until_caught_up)" "0"
eq "restart: the request was sent again (2 requests in all, identical)" \
   "$(requests):$(sent /hook/1)" '2:["POST","{\"n\":1}","application/json"] ["POST","{\"n\":1}","application/json"] '
eq "restart: exactly one webhook/delivered, for the request, status 200" "$(delivered)" "[$R1,200] "
eq "restart: state and projection say delivered" "$(state):$(projection)" "{\"$R1\":\"delivered\"}:$R1:delivered "

# ---- a finished delivery is not sent again ----------------------------------------------------
eq "again: the run exits 0" "$(until_caught_up)" "0"
eq "again: nothing was sent" "$(requests)" "2"
R2=$(request /hook/2 2)
eq "new request: the run exits 0" "$(until_caught_up)" "0"
eq "new request: it was sent once" "$(requests):$(sent /hook/2)" '3:["POST","{\"n\":2}","application/json"] '
eq "new request: one delivery each" "$(delivered)" "[$R1,200] [$R2,200] "
eq "restart after it: the run exits 0" "$(until_caught_up)" "0"
eq "restart after it: nothing was sent again" "$(requests)" "3"
eq "restart after it: still one delivery each; both delivered" "$(delivered):$(state)" \
   "[$R1,200] [$R2,200] :{\"$R1\":\"delivered\",\"$R2\":\"delivered\"}"
eq "no instance is faulted or has background failures" \
   "$($S status "$D" | jq -c '[.status, .backgroundFailures, .lag]')" '["ok",0,0]'

finish
