#!/bin/bash
# shutdown_valgrind.sh - `sluice run` with HTTP and a live reloader stops on SIGTERM
# without touching freed memory, and with nothing left unfreed when no client is
# connected. libuv is not instrumented, so AddressSanitizer cannot see a handle freed
# before the loop finished closing it; valgrind can. Also with clients still connected
# (an event stream, a keep-alive connection, a request half sent): no invalid access,
# and what h2o's open connections point at is kept reachable until the process ends,
# not lost.
. "$(dirname "$0")/lib/testlib.sh"
if [ -n "${SL_ASAN_PRELOAD:-}" ]; then
	echo "1..0 # skipped: valgrind cannot run a sanitized binary (the release run checks this)"
	exit 0
fi
command -v valgrind >/dev/null || { echo "1..0 # skipped: valgrind is not installed"; exit 0; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
healthz() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/healthz"; }
VG=""
start() { # start LEAKKINDS: sluice run under valgrind; sets PORT, VG
	PORT=$(free_port)
	cat >"$TMP/deploy.lua" <<LUA
return { store = "$TMP/store.db", schemas = { "$SLUICE_SRC/schemas" },
  http = "127.0.0.1:$PORT", httpTimeout = "20s",
  processors = { counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" } } }
LUA
	valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds="$1" \
		--log-file="$TMP/vg.log" "$SLUICE" run "$TMP/deploy.lua" 2>>"$TMP/run.log" &
	VG=$!
	wait_until 120 healthz
}
stop() { kill -TERM "$VG"; wait "$VG"; }
state_is() { curl -s "http://127.0.0.1:$PORT/processors/counter/state?stream=counters%2Fa" | jq -e ".state.count == $1" >/dev/null; }
inc='{"type":"counter/incremented","payload":{"by":2}}'

check "run serves under valgrind" start definite
eq "an append over HTTP" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/streams/counters%2Fa" -d "$inc")" 200
check "is processed" wait_until 60 state_is 2
stop
eq "SIGTERM: exit 0, valgrind found nothing" "$?" 0
check "no invalid access, no leak reported" sh -c "! grep -E 'Invalid|uninitialised|definitely lost' $TMP/vg.log || { cat $TMP/vg.log; false; }"

check "again, to stop with clients connected" start definite
curl -sN --max-time 120 "http://127.0.0.1:$PORT/streams/counters%2Fa/events?follow=1" >"$TMP/sse" &
SSE=$!
has_event() { grep -q '^id: 2$' "$TMP/sse"; }
check "an event stream is following" wait_until 60 has_event
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'POST /streams/counters%%2Fa HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{' >&3
exec 4<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >&4
read -r line <&4
eq "a keep-alive connection was answered" "${line%$'\r'}" "HTTP/1.1 200 OK"
stop
eq "SIGTERM: exit 0, no invalid access" "$?" 0
check "valgrind's log is clean: what the open connections use is kept, not lost" sh -c "! grep -E 'Invalid|uninitialised|definitely lost' $TMP/vg.log || { cat $TMP/vg.log; false; }"
wait "$SSE"
exec 3>&- 4>&-
eq "the event stream ended with the engine" "$(grep -c '^id: ' "$TMP/sse")" 2
finish
