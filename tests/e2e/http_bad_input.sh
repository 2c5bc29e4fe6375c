#!/bin/bash
# http_bad_input.sh - the HTTP interface under bad input (issue 12): a body over
# httpMaxBody and an event over 1 MiB (413), a malformed chunked body, a 10 000-deep
# JSON body, invalid UTF-8 and bad escapes in stream names (400), and slow clients that
# never finish their request: the engine keeps serving the others and closes theirs
# after httpTimeout. Nothing of a refused request is written, and the engine stays up.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/httplib.sh"
S=$SLUICE
cat >"$TMP/template.lua" <<EOF
return { store = "$TMP/store.db", schemas = { "$SLUICE_SRC/schemas" },
  http = "127.0.0.1:@PORT@", httpMaxBody = "2MiB", httpTimeout = "1s",
  processors = { counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" } } }
EOF
J='Content-Type: application/x-ndjson'
check "the engine serves" http_start "$TMP/template.lua"
heads() { $S events "$1" --store "$TMP/store.db" 2>/dev/null | wc -l; }

python3 -c 'print("{\"type\":\"t/x\",\"payload\":{\"pad\":\"" + "a" * (3 << 20) + "\"}}")' >"$TMP/huge"
eq "a body over httpMaxBody: 413" "$(code POST /streams/big --data-binary @"$TMP/huge" -H "$J")" 413
eq "as a JSON error, as every error is" "$(jq -r .error "$TMP/body")" "request entity is too large"
python3 -c 'print("{\"type\":\"t/x\",\"payload\":{\"pad\":\"" + "a" * (1536 << 10) + "\"}}")' >"$TMP/large"
eq "one event over 1 MiB: 413" "$(code POST /streams/big --data-binary @"$TMP/large")" 413
eq "as sluice append --jsonl says it" "line 1: $(jq -r .error "$TMP/body")" "$($S append big --jsonl --store "$TMP/cli.db" <"$TMP/large" 2>&1 | sed 's/^sluice: //')"
eq "as an ndjson line, naming the line" "$(code POST /streams/big -H "$J" --data-binary @"$TMP/large"; jq -r .error "$TMP/body" | cut -c1-14)" "413line 1: event:"
python3 -c 'print("{\"type\":\"t/x\"}" + " " * (1100 << 10))' >"$TMP/padded"
eq "one small event padded past 1 MiB with blanks: taken, as the CLI takes it" "$(code POST /streams/padded --data-binary @"$TMP/padded")" 200
python3 -c 'print("{\"type\":\"t/x\",\"payload\":{\"deep\":" + "[" * 10000 + "]" * 10000 + "}}")' >"$TMP/deep"
eq "a 10 000-deep JSON body: 400" "$(code POST /streams/big --data-binary @"$TMP/deep")" 400
eq "as sluice append --jsonl says it" "line 1: $(jq -r .error "$TMP/body")" "$($S append big --jsonl <"$TMP/deep" 2>&1 | sed 's/^sluice: //')"
eq "invalid UTF-8 in a stream name: 400" "$(code POST /streams/big%C3%28 -d '{"type":"t/x"}')" 400
eq "naming the field" "$(jq -r .error "$TMP/body")" "stream: invalid UTF-8 in the stream name"
eq "a bad percent escape: 400" "$(code POST /streams/big%2 -d '{"type":"t/x"}')" 400
eq "an encoded NUL: 400" "$(code GET /streams/big%00/events)" 400
eq "a body that is not JSON: 400" "$(code POST /streams/big -d '{"type":')" 400
eq "an empty body: 400" "$(code POST /streams/big)" 400

# A malformed chunked body, on a raw socket.
python3 - "$PORT" <<'PY' >"$TMP/chunked"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"POST /streams/big HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
          b"zz\r\n{\"type\":\"t/x\"}\r\n0\r\n\r\n")
data = b""
try:
    while True:
        got = s.recv(4096)
        if not got:
            break
        data += got
except socket.timeout:
    pass
print(data.split(b"\r\n")[0].decode())
print(data.split(b"\r\n\r\n", 1)[-1].decode())
PY
eq "a malformed chunked body: 400" "$(head -1 "$TMP/chunked" | cut -c1-12)" "HTTP/1.1 400"
eq "as a JSON error" "$(sed -n 2p "$TMP/chunked" | jq -r .error)" "broken chunked-encoding"
eq "nothing of any of these was written" "$(heads big)" 0
eq "and the engine still appends" "$(code POST /streams/big -d '{"type":"t/x"}')" 200

# Slow clients: 20 connections that never finish their request (half stop inside the
# headers, half inside the body). The others are served meanwhile; theirs are closed.
python3 - "$PORT" <<'PY' >"$TMP/slow"
import http.client, socket, sys, time
port = int(sys.argv[1])
slow = []
for i in range(20):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if i % 2:
        s.sendall(b"POST /streams/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"ty")
    else:
        s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    slow.append(s)
served, worst = 0, 0.0
for k in range(10):
    t = time.time()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("POST", "/streams/fast", body='{"type":"t/x"}')
    r = c.getresponse(); r.read()
    served += r.status == 200
    worst = max(worst, time.time() - t)
    c.close()
print("served", served, worst < 1.0)
closed, deadline = 0, time.time() + 5  # httpTimeout is 1s (the default, 10s)
for s in slow:
    s.settimeout(max(0.1, deadline - time.time()))
    try:
        while s.recv(4096):
            pass
        closed += 1
    except ConnectionResetError:
        closed += 1
    except socket.timeout:
        pass
print("closed", closed)
PY
eq "other clients are served at once while slow ones hang" "$(sed -n 1p "$TMP/slow")" "served 10 True"
eq "every slow client is timed out and closed" "$(sed -n 2p "$TMP/slow")" "closed 20"
eq "nothing of theirs was written" "$(heads slow)" 0
eq "the engine is still healthy" "$(code GET /healthz)" 200
check "and stops cleanly" http_stop
finish
