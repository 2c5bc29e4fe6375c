#!/bin/bash
# work_http.sh - ctx.http{method=, url=, headers=, body=, timeout=} inside block work
# (DESIGN §5, §7 "Other results") against a local HTTP server: it returns {status,
# headers, body} (header names in lower case); the request carries the method,
# headers and body given; a refused connection, a timeout and a scheme other than
# http(s) give nil and a message. Several requests of one batch run concurrently.
#
# Fixture: tests/fixtures/work (work.lua: a w/cmd {op = "http", req} runs
# ctx.http(req) in a block item and appends w/result {ok, err | status, headers, body});
# tests/fixtures/work/http_server.py records each request.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
. "$(dirname "$0")/lib/worklib.sh"
S=$SLUICE
FX=$TMP/fx
cp -r "$SLUICE_SRC/tests/fixtures/work" "$FX"
D=$FX/http.deploy.lua
cat >"$D" <<'EOF'
return {
  store = "http.db", schemas = { "schemas" },
  processors = { work = { script = "work.lua", streams = "h/*", sideEffects = "all",
                          retry = { attempts = 1 } } },
}
EOF

check "the server starts" start_server srv
CLOSED=$(free_port)
req() { $S append "$1" w/cmd "{\"op\":\"http\",\"req\":$2}" --deployment "$D" >/dev/null; }
result() { $S events "$1" --deployment "$D" --type w/result | jq -c "$2"; }
logged() { jq -c --arg p "$1" "select(.path == \$p) | $2" "$SERVER_LOG"; }

req h/post "{\"method\":\"POST\",\"url\":\"http://127.0.0.1:$PORT/status/201\",\"headers\":{\"X-Req\":\"abc\",\"Content-Type\":\"text/plain\"},\"body\":\"payload-1\"}"
req h/get "{\"url\":\"http://127.0.0.1:$PORT/plain?q=1\"}"
req h/put "{\"method\":\"PUT\",\"url\":\"http://127.0.0.1:$PORT/status/404\",\"body\":\"\"}"
req h/refused "{\"url\":\"http://127.0.0.1:$CLOSED/\",\"timeout\":5000}"
req h/timeout "{\"url\":\"http://127.0.0.1:$PORT/slow/5000\",\"timeout\":300}"
req h/scheme "{\"url\":\"ftp://127.0.0.1:$PORT/\"}"

eq "the run exits 0" "$($S run "$D" --until-caught-up >/dev/null 2>"$TMP/run.err"; echo $?)" "0"
eq "POST: status, the server's header (lower-case name), body" \
   "$(result h/post '[.payload.ok, .payload.status, .payload.headers["x-test"], .payload.body]')" \
   '[true,201,"yes","hello POST /status/201"]'
eq "POST: the headers table holds the response's headers" \
   "$(result h/post '.payload.headers | [.["content-type"], .["content-length"]]')" '["text/plain","22"]'
eq "POST: the server got the method, the headers and the body" \
   "$(logged /status/201 '[.method, .headers["x-req"], .headers["content-type"], .body]')" \
   '["POST","abc","text/plain","payload-1"]'
eq "GET is the default method, without a body" \
   "$(result h/get '[.payload.status, .payload.body]'):$(logged '/plain?q=1' '[.method, .body]')" \
   '[200,"hello GET /plain?q=1"]:["GET",""]'
eq "a 404 is a response, not an error" "$(result h/put '[.payload.ok, .payload.status]'):$(logged /status/404 .method)" \
   '[true,404]:"PUT"'
eq "a refused connection gives nil and a message" \
   "$(result h/refused '[.payload.ok, (.payload.err | type == "string" and length > 0), .payload.status]')" '[false,true,null]'
eq "the refusal's message says so" "$(result h/refused '.payload.err | test("connect"; "i")')" "true"
eq "a timeout gives nil and a message" \
   "$(result h/timeout '[.payload.ok, (.payload.err | test("time"; "i"))]')" '[false,true]'
eq "the timed-out request did reach the server" "$(logged /slow/5000 .method)" '"GET"'
eq "a scheme other than http(s) gives nil and a message, and sends nothing" \
   "$(result h/scheme '[.payload.ok, (.payload.err | type == "string" and length > 0)]'):$(requests)" '[false,true]:4'
eq "every instance committed" "$($S status "$D" | jq -r '.status' | sort | uniq -c | tr -s ' ')" " 6 ok"

finish
