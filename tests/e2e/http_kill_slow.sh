#!/bin/bash
# http_kill_slow.sh - appends over HTTP survive a SIGKILL of the engine (issue 12): 16
# concurrent keep-alive clients append 500 events each with idempotency keys to 4
# shared streams; the engine is SIGKILLed once a quarter of them are acknowledged and
# started again; each client retries what was not acknowledged (same key) until it is.
# Then every event is present exactly once, at the offset its acknowledgement named,
# and every stream's offsets run 1, 2, 3, ... (sluice verify agrees).
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
cat >"$TMP/template.lua" <<EOF
return { store = "$TMP/store.db", durability = "full", schemas = { "$SLUICE_SRC/schemas" },
  http = "127.0.0.1:@PORT@",
  processors = { counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" } } }
EOF
python3 - "$S" "$TMP" <<'PY' >"$TMP/result"
import http.client, json, os, signal, socket, subprocess, sys, threading, time
sluice, tmp = sys.argv[1], sys.argv[2]
CLIENTS, EACH, STREAMS = 16, 500, 4
state = {"port": None, "proc": None}
lock = threading.Lock()
acked = {}  # key -> (stream, offset)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def healthy(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/healthz"); r = c.getresponse(); r.read(); return True
    except OSError:
        return False

def start():
    for _ in range(5):
        port = free_port()
        tpl = open(os.path.join(tmp, "template.lua")).read().replace("@PORT@", str(port))
        open(os.path.join(tmp, "deploy.lua"), "w").write(tpl)
        log = open(os.path.join(tmp, "run.log"), "a")
        p = subprocess.Popen([sluice, "run", os.path.join(tmp, "deploy.lua"), "--log-format", "json"],
                             stderr=log, stdout=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and p.poll() is None and not healthy(port):
            time.sleep(0.05)
        if p.poll() is None and healthy(port):
            state["port"], state["proc"] = port, p
            return
        p.kill(); p.wait()
    raise SystemExit("cannot start the engine")

def client(i):
    stream = "load/s%d" % (i % STREAMS)
    conn, port = None, None
    for k in range(EACH):
        key = "c%d-%d" % (i, k)
        body = json.dumps({"type": "load/appended", "payload": {"client": i, "k": k},
                           "idempotencyKey": key})
        deadline = time.time() + 300
        while True:
            if time.time() > deadline:
                raise SystemExit("client %d gave up on %s" % (i, key))
            try:
                if conn is None or port != state["port"]:
                    port = state["port"]
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", "/streams/" + stream.replace("/", "%2F"), body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse(); data = r.read()
                if r.status != 200:
                    raise SystemExit("status %d: %s" % (r.status, data))
                res = json.loads(data)
                with lock:
                    acked[key] = (res["stream"], res["offset"])
                break
            except (OSError, http.client.HTTPException):
                conn = None
                time.sleep(0.05)

start()
threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
[t.start() for t in threads]
while True:
    with lock:
        n = len(acked)
    if n >= CLIENTS * EACH // 4:
        break
    time.sleep(0.01)
state["proc"].send_signal(signal.SIGKILL); state["proc"].wait()
print("killed after", n)
start()
[t.join() for t in threads]
print("acked", len(acked))
# Every stream read back over HTTP.
c = http.client.HTTPConnection("127.0.0.1", state["port"], timeout=60)
seen, contiguous = {}, True
for s in range(STREAMS):
    c.request("GET", "/streams/load%%2Fs%d/events" % s); r = c.getresponse()
    evs = [json.loads(l) for l in r.read().splitlines() if l]
    contiguous &= [e["offset"] for e in evs] == list(range(1, len(evs) + 1))
    for e in evs:
        if e["type"] == "load/appended":
            seen.setdefault(e["idempotencyKey"], []).append((e["stream"], e["offset"]))
once = all(len(v) == 1 for v in seen.values())
print("exactly once", once and set(seen) == set(acked))
print("at the acknowledged offsets", all(seen[k][0] == v for k, v in acked.items()))
print("contiguous", contiguous)
state["proc"].send_signal(signal.SIGTERM)
print("clean stop", state["proc"].wait(timeout=60))
PY
sed 's/^/# /' "$TMP/result"
check "the engine was killed mid-run" grep -q "^killed after" "$TMP/result"
eq "every append was acknowledged in the end" "$(sed -n 's/^acked //p' "$TMP/result")" 8000
eq "every acknowledged event is stored exactly once" "$(sed -n 's/^exactly once //p' "$TMP/result")" True
eq "at the offset its acknowledgement named" "$(sed -n 's/^at the acknowledged offsets //p' "$TMP/result")" True
eq "offsets are contiguous in every stream" "$(sed -n 's/^contiguous //p' "$TMP/result")" True
eq "the restarted engine stops cleanly" "$(sed -n 's/^clean stop //p' "$TMP/result")" 0
check "sluice verify finds no problem" sh -c "$S verify --store $TMP/store.db >/dev/null"
finish
