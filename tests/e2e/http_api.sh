#!/bin/bash
# http_api.sh - the HTTP interface of `sluice run` (DESIGN §10, issue 12) with curl on
# 127.0.0.1: appends (one event, ndjson, a bad line refused whole naming line and field),
# 409 for an offset conflict and a paused stream, reads (events, follow=1 as server-sent
# events, streams, state, status), 404/405, /metrics parsed by prometheus_client's
# parser, group commit (fewer commits than concurrent requests, from the metrics),
# /healthz 503 once a processor faulted, the bearer token, --http, and `check`/`run`
# refusing a non-loopback address without httpToken.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/httplib.sh"
S=$SLUICE
PY=$(command -v /usr/bin/python3 || command -v python3) # the one with Debian's prometheus_client
mkdir -p "$TMP/schemas"
cat >"$TMP/schemas/boom.contract.json" <<'EOF2'
{ "name": "boom", "version": 1, "consumes": ["t/boom"], "emits": [],
  "events": { "t/boom": {"type": "object"} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF2
cat >"$TMP/boom.lua" <<'EOF2'
return { contract = "boom", reduce = { ["t/boom"] = function(s, e)
  if e.payload.fail then error("boom at " .. e.offset, 0) end
  return { n = s.n + 1 } end } }
EOF2
cat >"$TMP/template.lua" <<EOF2
return { store = "$(test_store "$TMP/store.db")", schemas = { "$SLUICE_SRC/schemas", "$TMP/schemas" },
  http = "127.0.0.1:@PORT@",
  processors = {
    counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" },
    boom = { script = "$TMP/boom.lua", streams = "boom/*", retry = { attempts = 1 } } } }
EOF2
J='Content-Type: application/x-ndjson'
inc() { printf '{"type":"counter/incremented","payload":{"by":%d}}' "$1"; }

# ---- options and check --------------------------------------------------------------------
check "sluice run --help mentions --http" sh -c "$S run --help | grep -q -- '--http ADDR'"
sed 's/127.0.0.1:@PORT@/0.0.0.0:8428/' "$TMP/template.lua" >"$TMP/public.lua"
refuses "check refuses a non-loopback address without httpToken" \
	"/http: '0.0.0.0:8428' is not a loopback address: set httpToken" $S check "$TMP/public.lua"
refuses "and so does run" "is not a loopback address" $S run "$TMP/public.lua"
sed 's/127.0.0.1:@PORT@/127.0.0.1:99999/' "$TMP/template.lua" >"$TMP/badport.lua"
refuses "a bad address names the field" "/http: must be HOST:PORT" $S check "$TMP/badport.lua"
sed 's/127.0.0.1:@PORT@/127.0.0.1:8428/' "$TMP/template.lua" >"$TMP/ok.lua"
check "check accepts a loopback address" sh -c "$S check $TMP/ok.lua >/dev/null"

check "the engine serves HTTP on the deployment's address" http_start "$TMP/template.lua"

# ---- appends ----------------------------------------------------------------------------------
eq "POST one event: 200" "$(code POST /streams/counters%2Fa -d "$(inc 2)")" 200
eq "with the result line of sluice append" "$(jq -c '[.stream,.offset]' "$TMP/body")" '["counters/a",2]'
eq "a raw / in the name is the same stream" "$(code POST /streams/counters/a -d "$(inc 3)")" 200
eq "at the next offset" "$(jq .offset "$TMP/body")" 3
eq "ndjson: 200" "$(code POST /streams/counters%2Fa -H "$J" --data-binary "$(inc 1; echo; inc 1; echo)")" 200
eq "one result line per event" "$(jq -sc 'map(.offset)' "$TMP/body")" '[4,5]'
eq "ndjson with a bad line: 400" "$(code POST /streams/counters%2Fa -H "$J" --data-binary "$(inc 1; echo; echo '{"type":"counter/incremented","payload":[1]}')")" 400
eq "naming the line and the field" "$(jq -r .error "$TMP/body")" "line 2: payload: must be a JSON object, got array"
eq "an unknown field is named" "$(code POST /streams/counters%2Fa -d '{"type":"t/x","colour":1}')" 400
eq "as sluice append names it" "$(jq -r .error "$TMP/body")" "unknown field 'colour'"
eq "a body naming another stream is refused" "$(code POST /streams/counters%2Fa -d '{"stream":"counters/b","type":"t/x"}')" 400
eq "nothing of a refused request was written" "$($S events counters/a --store "$(test_store "$TMP/store.db")" | wc -l)" 5
eq "an offset conflict: 409" "$(code POST /streams/counters%2Fa -d '{"type":"t/x","offset":3}')" 409
check "naming the offset" grep -q '"error": "offset: ' "$TMP/body"
eq "an explicit next offset is taken" "$(code POST /streams/counters%2Fa -d '{"type":"t/x","offset":6}')" 200
eq "an idempotency key" "$(code POST /streams/counters%2Fp -d '{"type":"t/x","idempotencyKey":"k1"}')" 200
eq "again: the stored event, marked duplicate" "$(code POST /streams/counters%2Fp -d '{"type":"t/x","idempotencyKey":"k1"}'; jq -c '[.offset,.duplicate]' "$TMP/body")" '200[2,true]'
code POST /streams/counters%2Fp -d '{"type":"stream/paused","payload":{"reason":"maintenance"}}' >/dev/null
eq "an append to a paused stream: 409" "$(code POST /streams/counters%2Fp -d "$(inc 1)")" 409
eq "saying why" "$(jq -r .error "$TMP/body")" "stream paused: maintenance"
eq "invalid UTF-8 in a stream name: 400" "$(code POST /streams/counters%2F%FF -d "$(inc 1)")" 400
eq "an invalid stream name: 400" "$(code POST /streams/counters%2F..%2Fx -d "$(inc 1)")" 400
check "naming the field" grep -q '"error": "stream: invalid stream name' "$TMP/body"
eq "as sluice append words it" "$(jq -r .error "$TMP/body")" "$($S append counters/../x t/x --store "$TMP/cli.db" 2>&1 | sed 's/^sluice: //')"
eq "an offset conflict in ndjson: 409" "$(code POST /streams/counters%2Fa -H "$J" --data-binary $'{"type":"t/x"}\n{"type":"t/x","offset":2}')" 409
eq "naming the line, and that nothing of the request was written" "$(jq -r .error "$TMP/body")" "line 2: offset: expected 8 (the head of 'counters/a' is 7), got 2 (this request of 2 events was not written)"

# ---- reads ---------------------------------------------------------------------------------------
eq "GET events: JSON lines from offset 1" "$(code GET /streams/counters%2Fa/events; jq -sc 'map(.offset)' "$TMP/body")" '200[1,2,3,4,5,6]'
eq "from, limit" "$(code GET '/streams/counters%2Fa/events?from=4&limit=2'; jq -sc 'map(.offset)' "$TMP/body")" '200[4,5]'
eq "type" "$(code GET '/streams/counters/a/events?type=t/x'; jq -sc 'map(.offset)' "$TMP/body")" '200[6]'
eq "a bad from: 400 naming it" "$(code GET '/streams/counters%2Fa/events?from=x'; jq -r .error "$TMP/body")" "400from: must be a positive integer, got 'x'"
eq "an unknown parameter: 400" "$(code GET '/streams/counters%2Fa/events?frm=1')" 400
eq "from with a sign, as --from takes it" "$(code GET '/streams/counters%2Fa/events?from=%2B4&limit=1'; jq -sc 'map(.offset)' "$TMP/body")" '200[4]'
eq "from past INT64_MAX: 400" "$(code GET '/streams/counters%2Fa/events?from=9223372036854775808')" 400
eq "an append takes no parameter: 400" "$(code POST '/streams/counters%2Fa?offset=1' -d '{"type":"t/x"}'; jq -r .error "$TMP/body")" "400unknown query parameter 'offset'"
eq "and wrote nothing" "$(code GET /streams/counters%2Fa/events; jq -sc 'map(.offset)' "$TMP/body")" '200[1,2,3,4,5,6]'
curl -sN --max-time 60 "$URL/streams/counters%2Fa/events?follow=1&from=6&limit=2" >"$TMP/sse" &
SSE=$!
sse_has() { grep -q "^id: $1\$" "$TMP/sse"; }
check "follow=1: server-sent events of what is there" wait_until 20 sse_has 6
code POST /streams/counters%2Fa -d "$(inc 4)" >/dev/null
check "and of what is appended afterwards" wait_until 20 sse_has 7
wait "$SSE"
eq "the stream ends after limit events" "$?" 0
eq "each event is an id and a data line" "$(grep '^data: ' "$TMP/sse" | sed 's/^data: //' | jq -sc 'map(.offset)')" '[6,7]'
eq "a reconnect with Last-Event-ID goes on after that event, whatever from says" \
	"$(curl -sN --max-time 30 -H 'Last-Event-ID: 6' "$URL/streams/counters%2Fa/events?follow=1&from=1&limit=1" | grep '^id: ')" "id: 7"
eq "a Last-Event-ID that is not an offset: 400" "$(code GET '/streams/counters%2Fa/events?follow=1' -H 'Last-Event-ID: 6x'; jq -r .error "$TMP/body")" "400Last-Event-ID: must be a positive integer, got '6x'"
eq "GET /streams?prefix=counters" "$(code GET '/streams?prefix=counters'; jq -sc 'map(.stream)' "$TMP/body")" '200["counters","counters/a","counters/p"]'
state_count() { code GET '/processors/counter/state?stream=counters%2Fa' >/dev/null; jq .state.count "$TMP/body"; }
count_is() { [ "$(state_count)" = "$1" ]; }
check "GET state: the line of sluice state" wait_until 20 count_is 11
eq "with the same fields" "$(jq -c 'keys' "$TMP/body")" '["offset","processor","state","status","stream"]'
eq "an unknown processor: 404" "$(code GET /processors/nope/state)" 404
eq "GET /status: a JSON array of the status rows" "$(code GET /status; jq -c '[.[] | select(.stream == "counters/a") | .status]' "$TMP/body")" '200["ok"]'
eq "an unknown path: 404" "$(code GET /nothing/here)" 404
eq "a target in absolute form is its path" "$(code GET / --request-target "$URL/streams/counters%2Fa/events?limit=1"; jq -c .offset "$TMP/body")" "2001"
eq "a GET-only path with POST: 405" "$(code POST /status)" 405
eq "Allow names what it takes" "$(curl -s -o /dev/null -w '%header{allow}' -X POST "$URL/status")" "GET, HEAD"
eq "a GET of the append path: 405, Allow: POST" "$(code GET /streams/counters%2Fa; curl -s -o /dev/null -w '%header{allow}' "$URL/streams/counters%2Fa")" "405POST"
eq "pointing to the read" "$(jq -r .error "$TMP/body")" "GET is not allowed here (POST); GET /streams/{stream}/events reads a stream"
# HEAD of a read: its headers, and no body, so that the next request on the connection
# is read as one (a HEAD of follow=1 would stream forever otherwise).
python3 - "$PORT" <<'PY' >"$TMP/head"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"HEAD /streams/counters%2Fa/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
          b"HEAD /streams/counters%2Fa/events?follow=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
          b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
data = b""
while True:
    got = s.recv(65536)
    if not got:
        break
    data += got
parts = data.split(b"\r\n\r\n")
print(" ".join(p.split(b"\r\n")[0].split(b" ")[1].decode() for p in parts[:3]))
print(parts[3].decode().strip())
PY
eq "HEAD of events, of follow=1, then a GET on one connection" "$(head -1 "$TMP/head")" "200 200 200"
eq "the GET's answer follows the HEADs' headers directly" "$(sed -n 2p "$TMP/head")" '{"status": "ok"}'

# ---- group commit: 16 clients at once share commits -----------------------------------------
python3 - "$PORT" <<'PY' >"$TMP/group"
import http.client, sys, threading
port = int(sys.argv[1]); fails = []
def client(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for k in range(25):
        c.request("POST", "/streams/counters%%2Fg%d" % i, body='{"type":"t/x"}')
        r = c.getresponse(); r.read()
        if r.status != 200: fails.append(r.status)
ts = [threading.Thread(target=client, args=(i,)) for i in range(16)]
[t.start() for t in ts]; [t.join() for t in ts]
print(len(fails))
PY
eq "400 concurrent appends all succeed" "$(cat "$TMP/group")" 0

# ---- metrics --------------------------------------------------------------------------------------
curl -s "$URL/metrics" >"$TMP/metrics"
"$PY" - "$TMP/metrics" <<'PY' >"$TMP/parsed"
import sys
from prometheus_client.parser import text_string_to_metric_families
fam = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
def val(name, **labels):
    for f in fam.values():
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None
need = ["sluice_events_processed", "sluice_lag_events", "sluice_batch_duration_seconds",
        "sluice_faults", "sluice_budget_hits", "sluice_appends", "sluice_commit_duration_seconds",
        "sluice_commits", "sluice_batches", "sluice_append_requests"]
print("families", all(n in fam for n in need))
print("histogram", fam["sluice_batch_duration_seconds"].type, fam["sluice_commit_duration_seconds"].type)
print("processed", val("sluice_events_processed_total", processor="counter") >= 7)
ok = val("sluice_append_requests_total", result="ok")
commits = val("sluice_commits_total")
print("grouped", commits < ok, int(ok) >= 400)
print("appends", val("sluice_appends_total", result="new") >= 400, val("sluice_appends_total", result="duplicate"))
PY
eq "/metrics parses as Prometheus text with every family" "$(sed -n 1p "$TMP/parsed")" "families True"
eq "batch and commit durations are histograms" "$(sed -n 2p "$TMP/parsed")" "histogram histogram histogram"
eq "events processed per processor" "$(sed -n 3p "$TMP/parsed")" "processed True"
eq "group commit: fewer commits than append requests" "$(sed -n 4p "$TMP/parsed")" "grouped True True"
eq "appends counted, the duplicate apart" "$(sed -n 5p "$TMP/parsed")" "appends True 1.0"

# ---- health -----------------------------------------------------------------------------------------
eq "/healthz: 200 while nothing is faulted" "$(code GET /healthz)" 200
code POST /streams/boom%2Fx -d '{"type":"t/boom","payload":{"fail":true}}' >/dev/null
healthz_503() { [ "$(code GET /healthz)" = 503 ]; }
check "/healthz: 503 once a processor is faulted" wait_until 30 healthz_503
check "naming it" sh -c "grep -q \"processor 'boom' on boom/x is faulted: .*boom at 2\" $TMP/body || { cat $TMP/body; false; }"
check "the run stops cleanly on SIGTERM" http_stop

# ---- the bearer token, and --http ----------------------------------------------------------------
sed 's/http = /httpToken = "SLUICE_TEST_TOKEN", http = /' "$TMP/template.lua" >"$TMP/token.lua"
unset SLUICE_TEST_TOKEN
sed 's/@PORT@/1/' "$TMP/token.lua" >"$TMP/token1.lua"
refuses "run refuses a token variable that is not set" "httpToken: the environment variable 'SLUICE_TEST_TOKEN' is not set" \
	$S run "$TMP/token1.lua"
export SLUICE_TEST_TOKEN=s3cret-token
healthz_answers() { curl -s -o /dev/null --max-time 2 -H "Authorization: Bearer $SLUICE_TEST_TOKEN" "$URL/healthz"; }
check "with the token set it serves" http_start "$TMP/token.lua"
eq "no Authorization: 401" "$(code GET /status)" 401
eq "a wrong token: 401" "$(code GET /status -H 'Authorization: Bearer s3cret-tokeN')" 401
eq "a prefix of the token: 401" "$(code GET /status -H 'Authorization: Bearer s3cret')" 401
eq "the token: 200" "$(code GET /status -H 'Authorization: Bearer s3cret-token')" 200
http_stop
sed 's/http = "127.0.0.1:@PORT@",//' "$TMP/template.lua" >"$TMP/nohttp.lua"
check "--http serves a deployment without http" http_start "$TMP/nohttp.lua" --http "127.0.0.1:@PORT@"
http_stop
finish
