#!/bin/bash
# http_browsers.sh - what a web page can make a browser send to the engine on
# 127.0.0.1 is refused unless the deployment allows it: a request carrying an Origin
# (browsers send it with every cross-origin request and every POST; a text/plain POST
# needs no preflight) is 403 unless httpOrigins lists the origin, and without a token a
# Host that is not a loopback name (a page whose name an attacker points at
# 127.0.0.1, DNS rebinding) is 403. A listed origin gets its CORS preflight answered
# and Access-Control-Allow-Origin on every answer. Nothing refused is written.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/httplib.sh"
S=$SLUICE
cat >"$TMP/template.lua" <<EOF2
return { store = "$(test_store "$TMP/store.db")", schemas = { "$SLUICE_SRC/schemas" },
  http = "127.0.0.1:@PORT@",
  processors = { counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" } } }
EOF2
inc='{"type":"counter/incremented","payload":{"by":1}}'
header() { curl -s -o /dev/null -w "%header{$1}" "${@:2}"; }
events() { $S events counters/a --store "$(test_store "$TMP/store.db")" 2>/dev/null | wc -l; }

check "the engine serves" http_start "$TMP/template.lua"
eq "curl (no Origin): 200" "$(code POST /streams/counters%2Fa -d "$inc")" 200
eq "a page's text/plain POST (Origin, no preflight): 403" \
	"$(code POST /streams/counters%2Fa -H 'Origin: http://evil.example' -H 'Content-Type: text/plain' -d "$inc")" 403
eq "saying why and what to do" "$(jq -r .error "$TMP/body")" \
	"a request from a web page of 'http://evil.example' is refused: list the origin in the deployment's httpOrigins to allow it"
eq "nothing of it was written" "$(events)" 2
eq "a page's read (EventSource) is refused too" "$(code GET '/streams/counters%2Fa/events?follow=1' -H 'Origin: http://evil.example')" 403
eq "a preflight of an origin not listed: 403" "$(code OPTIONS /streams/counters%2Fa -H 'Origin: http://evil.example' -H 'Access-Control-Request-Method: POST')" 403
eq "without Access-Control-Allow-Origin" "$(header access-control-allow-origin -X OPTIONS "$URL/streams/counters%2Fa" -H 'Origin: http://evil.example')" ""
eq "DNS rebinding: Host evil.example: 403" "$(code POST /streams/counters%2Fa -H "Host: evil.example:$PORT" -d "$inc")" 403
eq "naming the Host" "$(jq -r .error "$TMP/body")" \
	"Host 'evil.example:$PORT' is not a loopback name: without httpToken only requests to localhost, 127.0.0.1 or [::1] are served"
eq "nor a name that only starts like one" "$(code GET /status -H "Host: localhost.evil.example:$PORT")" 403
eq "Host localhost: 200" "$(code GET /status -H "Host: localhost:$PORT")" 200
eq "Host 127.0.0.1: 200" "$(code GET /status -H "Host: 127.0.0.1:$PORT")" 200
eq "the machine's own name: 200" "$(code GET /status -H "Host: $(hostname):$PORT")" 200
eq "nothing refused was written" "$(events)" 2
check "stop" http_stop

sed 's|http = |httpOrigins = { "http://dash.example:3000" }, http = |' "$TMP/template.lua" >"$TMP/origins.lua"
check "with httpOrigins it serves" http_start "$TMP/origins.lua"
eq "the listed origin's preflight: 204" "$(code OPTIONS /streams/counters%2Fa -H 'Origin: http://dash.example:3000' -H 'Access-Control-Request-Method: POST')" 204
eq "allowing it" "$(header access-control-allow-origin -X OPTIONS "$URL/streams/counters%2Fa" -H 'Origin: http://dash.example:3000')" "http://dash.example:3000"
eq "with the methods" "$(header access-control-allow-methods -X OPTIONS "$URL/streams/counters%2Fa" -H 'Origin: http://dash.example:3000')" "GET, HEAD, POST"
eq "its POST: 200" "$(code POST /streams/counters%2Fa -H 'Origin: http://dash.example:3000' -d "$inc")" 200
eq "its answers carry Access-Control-Allow-Origin" "$(header access-control-allow-origin "$URL/status" -H 'Origin: http://dash.example:3000')" "http://dash.example:3000"
eq "another origin: still 403" "$(code GET /status -H 'Origin: http://dash.example:3001')" 403
check "stop" http_stop

sed 's|http = |httpOrigins = { "dash.example" }, http = |' "$TMP/template.lua" >"$TMP/bad.lua"
check "check refuses an origin without a scheme, naming the field" \
	sh -c "$S check '$TMP/bad.lua' 2>&1 | grep -q '/httpOrigins/0'"
finish
