#!/usr/bin/env bash
# console.sh - `sluice console` attached to a running `sluice run` (DESIGN §9, issue 11):
# the socket (mode 0600, a stale one replaced, gone after SIGTERM); status() shows the
# runner; a busy loop ends with the budget error while events appended meanwhile are
# processed; three consoles at once, each with its own globals; a client killed in the
# middle of an evaluation (and one that hangs up right after sending it) leaves the
# engine running; reset and resume are carried out by the runner while the CLI's are
# refused; reload() reloads at once; errors exit 1 with one `sluice: ` line.
#
# Fixture in $TMP: deploy.lua (lease 1s) with tally over counters/* (sideEffects =
# "all": processEvent logs "effect <stream>@<offset>", so running the side effects
# again after `reset(..., {withEffects=true})` shows in the log)
# and gate over gate/* (its blocking work fails until the file $TMP/open exists: the
# instance faults; after the file appears, the console's resume lets it through).
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
D=$TMP/deploy.lua
SOCK=$TMP/store.db.sock
mkdir -p "$TMP/schemas" "$TMP/procs"
RUN=
cleanup() { [ -n "$RUN" ] && kill -9 "$RUN" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

cat >"$TMP/schemas/tally.contract.json" <<'EOF'
{ "name": "tally", "version": 1, "consumes": ["t/inc"], "emits": [],
  "events": { "t/inc": {"type": "object"} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
cat >"$TMP/procs/tally.lua" <<'EOF'
return {
  contract = "tally",
  reduce = { ["t/inc"] = function(s) return { n = s.n + 1 } end },
  processEvent = {
    ["t/inc"] = function(event, ctx)
      ctx.log.info("effect " .. event.stream .. "@" .. event.offset)
    end,
  },
}
EOF
cat >"$TMP/schemas/gate.contract.json" <<'EOF'
{ "name": "gate", "version": 1, "consumes": ["g/in"], "emits": [],
  "events": { "g/in": {"type": "object"} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
cat >"$TMP/procs/gate.lua" <<EOF
return {
  contract = "gate",
  reduce = { ["g/in"] = function(s) return { n = s.n + 1 } end },
  processEvent = {
    ["g/in"] = function(event, ctx)
      if event.payload.bad then error("a bad event") end
      ctx.block(function()
        local r = ctx.exec({ "test", "-f", "$TMP/open" })
        if not r or r.code ~= 0 then error("the gate is closed") end
      end)
    end,
  },
}
EOF
cat >"$D" <<'EOF'
return {
  store = "store.db", durability = "normal", schemas = { "schemas" }, lease = "1s",
  processors = {
    tally = { script = "procs/tally.lua", streams = "counters/*", sideEffects = "all" },
    gate = { script = "procs/gate.lua", streams = "gate/*", retry = { attempts = 1, backoff = "10ms" } },
  },
}
EOF

inc() { $S append "counters/$1" t/inc | jq -r .offset; }
n_of() { $S state "$D" tally "counters/$1" | jq -r .state.n; }
n_is() { [ "$(n_of "$1")" = "$2" ]; }
effects() { grep -c " effect counters/$1@" "$TMP/run.err"; }
effects_are() { [ "$(effects "$1")" -eq "$2" ]; }
alive() { kill -0 "$RUN" 2>/dev/null; }
C() { $S console "$D" "$@"; }

for _ in 1 2 3; do inc a >/dev/null; done
# A stale socket where the console goes: a listener that exited without removing it.
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$SOCK"
check "a stale socket file is there before the run" test -S "$SOCK"
$S run "$D" --log-format text >/dev/null 2>"$TMP/run.err" &
RUN=$!
check "the runner answers on its console (the stale socket was replaced)" \
	wait_until 20 bash -c "$S console '$D' -e 'true' >/dev/null 2>&1"
eq "the socket is mode 0600" "$(stat -c %a "$SOCK")" 600
check "tally catches up" wait_until 20 n_is a 3

# ---- status() shows the runner ----------------------------------------------------------------
out=$(C -e 'status()')
eq "status() is one JSON line" "$(printf '%s\n' "$out" | wc -l)" 1
eq "status() names this runner as the runner of tally" \
	"$(printf '%s' "$out" | jq -r '[.[] | select(.processor == "tally")][0].runner | test("^'"$RUN"'@")')" true
eq "and the same socket is found from the socket path itself" \
	"$($S console "$SOCK" -e 'state("tally", "counters/a").n')" 3
eq "state() in the console" "$(C -e 'state("tally", "counters/a")' | jq -c .)" '{"n":3}'

# ---- a busy loop: the budget error, while appends go on --------------------------------------
C -e 'while true do end' >"$TMP/busy.out" 2>"$TMP/busy.err" &
BUSY=$!
for _ in 1 2 3 4 5; do inc b >/dev/null; done
wait $BUSY
eq "the busy loop exits 1" "$?" 1
check "with the console's budget error" grep -q "^sluice: evaluation stopped: it ran past the console's budget of 1000 ms" "$TMP/busy.err"
check "the events appended meanwhile are processed" wait_until 20 n_is b 5
check "the runner is still running" alive
out=$(printf 'x = 41\nwhile true do end\n' | C 2>&1)
eq "the session's first error ends a non-terminal console with the budget error" "$out" \
	"sluice: evaluation stopped: it ran past the console's budget of 1000 ms"
eq "a runaway string.rep is stopped by a budget too" \
	"$(C -e 'string.rep("x", 1e9, ",")' 2>&1 | head -c 28)" "sluice: evaluation stopped: "
eq "and so is a runaway allocation" \
	"$(C -e 't = {} for i = 1, 1e10 do t[i] = {i} end' 2>&1 | head -c 20)" "sluice: evaluation s"

out=$(C -e 'query("tally", "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r")' 2>&1)
eq "a query that never ends is stopped by the budget" "$out" \
	"sluice: evaluation stopped: it ran past the console's budget of 1000 ms"

# ---- consoles take turns: one that sends five loops at once does not hold ingest up for five
python3 - "$SOCK" "$TMP" >"$TMP/turns.out" <<'EOF' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile()
s.sendall(b'{"hello":true}\n')
f.readline()
s.sendall(b'{"eval":"while true do end"}\n' * 5)
f.readline()
open(sys.argv[2] + "/started", "w").close()
for _ in range(4):
    f.readline()
print("processed" if os.path.exists(sys.argv[2] + "/processed") else "not yet")
EOF
TURNS=$!
wait_until 30 test -f "$TMP/started"
inc d >/dev/null
wait_until 30 n_is d 1 && touch "$TMP/processed"
wait "$TURNS"
eq "an event appended after the first of five loops is processed before the fifth ends" \
	"$(cat "$TMP/turns.out")" processed

# ---- three consoles at once -------------------------------------------------------------------
for i in 1 2 3; do mkfifo "$TMP/in$i"; done
for i in 1 2 3; do C <"$TMP/in$i" >"$TMP/out$i" 2>&1 & eval "PID$i=\$!"; done
exec 4>"$TMP/in1" 5>"$TMP/in2" 6>"$TMP/in3"
echo 'x = 1' >&4; echo 'x = 2' >&5; echo 'x = 3' >&6
echo 'x * 10' >&4; echo 'x * 10' >&5; echo 'x * 10' >&6
echo 'state("tally", "counters/a").n' >&6
exec 4>&- 5>&- 6>&-
wait "$PID1" "$PID2" "$PID3"
eq "console 1 has its own globals" "$(cat "$TMP/out1")" 10
eq "console 2 too" "$(cat "$TMP/out2")" 20
eq "console 3 too, and reads the state" "$(tr '\n' ' ' <"$TMP/out3")" "30 3 "

# ---- a client that goes away in the middle of an evaluation -----------------------------------
python3 - "$SOCK" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"hello":true}\n')
s.makefile().readline()
s.sendall(b'{"eval":"local t = os and 1 or 0; while true do end"}\n')
s.close()  # hung up: the runner evaluates and then finds nobody to answer
EOF
C -e 'while true do end' >/dev/null 2>&1 &
KID=$!
kill -9 "$KID"
wait "$KID" 2>/dev/null
inc a >/dev/null
check "after the clients went away mid-evaluation the engine runs on" wait_until 20 n_is a 4
check "the runner is alive" alive
eq "and a new console works" "$(C -e '1 + 1')" 2

# ---- errors -------------------------------------------------------------------------------------
refuses "an error exits 1 with its message" "sluice: console:1: attempt to call a nil value \(global 'nosuch'\)" C -e 'nosuch()'
refuses "a helper's error" "unknown processor 'nope'" C -e 'state("nope")'
refuses "io is not in the console's sandbox" "'io' is not available" C -e 'io.write("x")'
refuses "console without a runner" "cannot connect to '$TMP/none.sock'" $S console "$TMP/none.sock"
eq "print() output reaches the client" "$(C -e 'print("hello", 42)')" "$(printf 'hello\t42')"

# ---- reset and resume by the runner --------------------------------------------------------------
check "before the reset counters/a had its side effects 4 times" wait_until 20 effects_are a 4
refuses "the CLI's reset is refused while the runner runs" "is running .*use the console" $S reset "$D" tally counters/a
eq "the console's reset with its effects is done by the runner" \
	"$(C -e 'reset("tally", "counters/a", {withEffects = true})')" true
check "the runner replays counters/a with its side effects: 4 more" wait_until 20 effects_are a 8
check "and the state is the same" wait_until 20 n_is a 4

$S append gate/x g/in >/dev/null
gate_status() { $S status "$D" | jq -r 'select(.processor == "gate") | .status'; }
gate_faulted() { [ "$(gate_status)" = faulted ]; }
check "gate faults while its gate is closed" wait_until 20 gate_faulted
refuses "the CLI's resume is refused while the runner runs" "is running .*use the console" $S resume "$D" gate gate/x
touch "$TMP/open"
eq "the console's resume clears the fault" "$(C -e 'resume("gate", "gate/x")' | jq -c .)" '{"resumed":1}'
check "and the runner processes the event" wait_until 20 bash -c "$S state '$D' gate gate/x | jq -e '.state.n == 1 and .status == \"ok\"' >/dev/null"

# resume with skip, by the runner: a batch of a bad event and a good one faults; the
# runner runs it again one event at a time, dead-letters the bad one, processes the other.
$S append gate/y g/in '{"bad":true}' >/dev/null
$S append gate/y g/in '{}' >/dev/null
y_faulted() { [ "$($S status "$D" | jq -r 'select(.stream == "gate/y") | .status')" = faulted ]; }
check "a batch with a bad event faults gate/y" wait_until 20 y_faulted
eq "the console's resume with skip" "$(C -e 'resume("gate", "gate/y", {skip = true})' | jq -c .)" '{"resumed":1}'
check "the runner dead-letters the bad event and processes the good one" \
	wait_until 20 bash -c "$S state '$D' gate gate/y | jq -e '.state.n == 1 and .status == \"ok\" and .offset == 4' >/dev/null"
eq "the dead letter is gate/y@2" "$($S dead-letters "$D" | jq -r '"\(.processor) \(.stream)@\(.offset) \(.error)"')" \
	"gate gate/y@2 processor 'gate' failed at gate/y@2 (g/in): $TMP/procs/gate.lua:6: a bad event"

# ---- reload() -------------------------------------------------------------------------------------
sed -i 's/{ n = s.n + 1 }/{ n = s.n + 100 }/' "$TMP/procs/tally.lua"
eq "reload() loads the deployment at once" "$(C -e 'reload()')" true
inc c >/dev/null
check "the new version runs" wait_until 20 n_is c 100

# ---- SIGTERM: the socket goes ----------------------------------------------------------------
kill -TERM "$RUN"
wait "$RUN"
eq "the runner exits 0 on SIGTERM" "$?" 0
RUN=
check "the socket is gone" test ! -e "$SOCK"
finish
