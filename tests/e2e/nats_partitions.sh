#!/bin/bash
# nats_partitions.sh - partitioned runners on the JetStream backend (issue 14): two
# `sluice run` of one deployment split the instances of 1 000 streams by stream hash
# over 16 partitions, each partition owned through its lease; `status` shows the
# partition and the runner of each instance; after a SIGKILL of one runner the other
# takes every partition within lease + 1 s and folds the dead runner's streams, each
# event once (the states equal a fresh fold, and each consumed event emitted one event).
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/natslib.sh"
S=$SLUICE

# The setting is checked by `sluice check`, naming the file, the field and the value.
printf 'return { store = "x.db", partitions = 0, processors = {} }\n' >"$TMP/p0.lua"
refuses "check refuses partitions = 0" "^sluice: .*/p0.lua: /partitions: minimum: 0 is less than 1$" $S check "$TMP/p0.lua"
printf 'return { store = "x.db", partitions = 2.5, processors = {} }\n' >"$TMP/p1.lua"
refuses "check refuses a partitions that is no integer" "/p1.lua: /partitions: type: expected integer, got number" $S check "$TMP/p1.lua"
printf 'return { store = "x.db", partitions = 1025, processors = {} }\n' >"$TMP/p2.lua"
refuses "check refuses partitions above 1024" "/p2.lua: /partitions: maximum: 1025 is greater than 1024" $S check "$TMP/p2.lua"

if ! nats_have; then
	echo "# skipped: nats-server is not installed (make deps installs it); partitioned runners are untested"
	finish
	exit
fi
nats_start main || { failt "nats-server started"; finish; exit; }
export SLUICE_STORE=$NATS_URL

NSTREAMS=1000
mkdir -p "$TMP/schemas" "$TMP/procs"
cat >"$TMP/schemas/tally.contract.json" <<'EOF'
{ "name": "tally", "version": 1,
  "consumes": ["t/inc"], "emits": ["t/seen"],
  "events": { "t/inc": {"type": "object"},
              "t/seen": {"type": "object", "required": ["n"],
                         "properties": {"n": {"type": "integer"}}} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
# Each consumed event is folded into n and emits one t/seen to seen/<name> (default
# keys): a double application shows in both.
cat >"$TMP/procs/tally.lua" <<'EOF'
return {
  contract = "tally",
  reduce = { ["t/inc"] = function(s) return { n = s.n + 1 } end },
  processEvent = {
    ["t/inc"] = function(event, ctx)
      ctx.append("t/seen", { n = ctx.state.n }, { stream = "seen-" .. event.stream:match("[^/]+$") })
    end,
  },
}
EOF
D=$TMP/deploy.lua
cat >"$D" <<EOF
return {
  store = "$NATS_URL", schemas = { "$TMP/schemas" }, lease = "1s",
  processors = { tally = { script = "$TMP/procs/tally.lua", streams = "in/*", sideEffects = "all" } },
}
EOF
LEASE_MS=1000

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; nats_stop_all; rm -rf "$TMP"; }
trap cleanup EXIT
start() { $S run "$D" --log-format text 2>"$TMP/run$1.err" & PIDS+=($!); eval "R$1=$!"; }

# ROUND: one t/inc to every stream in/s1..in/s$NSTREAMS (one keyed batch).
inc_all() {
	seq "$NSTREAMS" | awk -v r="$1" '{printf "{\"stream\":\"in/s%d\",\"type\":\"t/inc\",\"idempotencyKey\":\"r%s\"}\n", $1, r}' |
		$S append --jsonl >/dev/null
}
# The states of every instance as "stream n" lines, sorted.
states() { $S state "$D" tally | jq -r '"\(.stream) \(.state.n)"' | sort; }
# All instances (NSTREAMS) have n = $1.
all_are() { [ "$(states | awk -v n="$1" '$2 == n' | wc -l)" = "$NSTREAMS" ]; }
# The last "running partitions" line of runner $1 says "(K of 16; R runners)".
last_parts() { grep -o "running partitions .* of processor 'tally' ([0-9]* of [0-9]*; [0-9]* runners\?)" "$TMP/run$1.err" | tail -1 | grep -o '([^)]*)'; }
parts_are() { [ "$(last_parts "$1")" = "$2" ]; }

inc_all 1
inc_all 2
start 1
start 2

# ---- two runners split the instances --------------------------------------------------
split() { parts_are 1 "(8 of 16; 2 runners)" && parts_are 2 "(8 of 16; 2 runners)"; }
if wait_until 60 split; then
	pass "both runners take partitions: 8 of 16 each, seeing 2 runners"
else
	failt "both runners take partitions: 8 of 16 each, seeing 2 runners" \
		"$(tail -n 5 "$TMP/run1.err" "$TMP/run2.err" | tr '\n' '|')"
fi
check "every instance folds both events" wait_until 120 all_are 2
inc_all 3
check "... and a third one appended while both run" wait_until 120 all_are 3
$S status "$D" >"$TMP/status.json"
eq "status lists every instance" "$(jq -r 'select(.processor == "tally") | .stream' "$TMP/status.json" | wc -l)" "$NSTREAMS"
eq "every instance has a partition (0..15)" \
	"$(jq -s '[.[] | select(.processor == "tally") | .partition | select(type == "number" and . >= 0 and . < 16)] | length' "$TMP/status.json")" "$NSTREAMS"
eq "the partition of a stream is the FNV-1a 64 hash of its name mod 16 (the engine's offset basis)" \
	"$(jq -r 'select(.stream == "in/s1" or .stream == "in/s500" or .stream == "in/s1000") | "\(.stream) \(.partition)"' "$TMP/status.json" | sort | tr '\n' ' ')" \
	"$(python3 -c '
def fnv(s):
    h = 1469598103934665603
    for c in s.encode():
        h = ((h ^ c) * 1099511628211) % 2**64
    return h
print(" ".join("%s %d" % (s, fnv(s) % 16) for s in sorted(["in/s1", "in/s500", "in/s1000"])) + " ")')"
owners() { jq -r 'select(.processor == "tally") | .runner // "null"' "$TMP/status.json" | sed 's/@.*//' | sort | uniq -c | awk '{print $2}' | tr '\n' ' '; }
eq "both runners run instances (status names them)" "$(owners)" "$(printf '%s\n' "$R1" "$R2" | sort | tr '\n' ' ')"
eq "one runner per partition" \
	"$(jq -s -r '[.[] | select(.processor == "tally")] | group_by(.partition) | map(map(.runner) | unique | length) | unique | map(tostring) | join(" ")' "$TMP/status.json")" "1"
eq "each runner runs 8 partitions" \
	"$(jq -s -r '[.[] | select(.processor == "tally")] | group_by(.runner) | map(map(.partition) | unique | length) | map(tostring) | join(" ")' "$TMP/status.json")" "8 8"
refuses "reset refuses while runners hold partitions of the processor" \
	"processor 'tally' is running \\([0-9]+@[^)]*\\); use the console or stop it" $S reset "$D" tally
eq "the refused reset changed nothing" "$($S state "$D" tally in/s7 | jq .state.n)" "3"

# ---- SIGKILL of one runner: the other takes its partitions -----------------------------
DEAD=$(jq -r 'select(.processor == "tally" and .runner != null) | .runner' "$TMP/status.json" | sed 's/@.*//' | sort -u | head -1)
if [ "$DEAD" = "$R1" ]; then LIVE=$R2; N=2; else LIVE=$R1; N=1; fi
jq -r --arg d "$DEAD@" 'select(.processor == "tally" and (.runner // "" | startswith($d))) | .stream' "$TMP/status.json" >"$TMP/dead.streams"
killed_ms=$(date +%s%3N)
kill -9 "$DEAD"
check "after SIGKILL the other runner runs all 16 partitions" wait_until 20 parts_are "$N" "(16 of 16; 1 runner)"
# The time of the log line that says so, against the time of the kill.
line=$(grep "running partitions .*'tally' (16 of 16; 1 runner)" "$TMP/run$N.err" | tail -1)
took_ms=-1
[ -n "$line" ] && took_ms=$(( $(date -d "${line%% *}" +%s%3N) - killed_ms ))
check "it took them within lease + 1 s (${took_ms} ms after the kill; lease $LEASE_MS ms)" \
	test "$took_ms" -ge 0 -a "$took_ms" -le $((LEASE_MS + 1000))
# New events on the dead runner's streams are folded by the survivor, each once.
head -n 50 "$TMP/dead.streams" | awk '{printf "{\"stream\":\"%s\",\"type\":\"t/inc\",\"idempotencyKey\":\"r4\"}\n", $1}' | $S append --jsonl >/dev/null
dead4() { [ "$(states | grep -F -f <(head -n 50 "$TMP/dead.streams" | sed 's/$/ /') | awk '$2 == 4' | wc -l)" = 50 ]; }
check "the survivor folds new events of the dead runner's streams" wait_until 60 dead4
states >"$TMP/final"
want() { seq "$NSTREAMS" | awk '{print "in/s" $1}' | sort | while read -r s; do
	if grep -qxF "$s" <(head -n 50 "$TMP/dead.streams"); then echo "$s 4"; else echo "$s 3"; fi; done; }
eq "every state equals a fresh fold (3 events, 4 on the 50 streams that got one more)" "$(md5sum <"$TMP/final")" "$(want | md5sum)"
seen_ok() { local s n; for s in $(head -n 10 "$TMP/dead.streams"); do
	n=$($S events "seen-${s#in/}" --type t/seen | jq -s -c 'map(.payload.n)'); [ "$n" = "[1,2,3,4]" ] || { echo "# $s: $n"; return 1; }; done; }
check "each consumed event emitted one event, none twice (dead runner's streams)" seen_ok
$S status "$D" >"$TMP/status2.json"
eq "status names the survivor as the runner of every instance" \
	"$(jq -r 'select(.processor == "tally") | .runner // "null"' "$TMP/status2.json" | sed 's/@.*//' | sort -u | tr '\n' ' ')" "$LIVE "

# ---- a runner that joins gets partitions; a clean stop hands them back at once ----------
start 3
check "a third runner joins and gets 8 partitions" wait_until 30 parts_are 3 "(8 of 16; 2 runners)"
check "... which the survivor gave up" wait_until 30 parts_are "$N" "(8 of 16; 2 runners)"
kill -TERM "$R3"
wait "$R3" 2>/dev/null
eq "the joined runner stopped by SIGTERM exits 0" "$?" "0"
check "after its clean stop the survivor runs all 16 again" wait_until 10 parts_are "$N" "(16 of 16; 1 runner)"
inc_all 5
check "and folds every stream" wait_until 120 sh -c "[ \"\$($S state '$D' tally | jq -s '[.[] | select(.state.n >= 4)] | length')\" = $NSTREAMS ]"
# (A batch refused by the fence says "nothing was committed"; a runner started in the
# same directory as another has no console of its own.)
no_failures() {
	! grep -hE ' (error|warn) ' "$TMP"/run*.err |
		grep -v "nothing was committed\|console: 'sluice.sock' belongs to another runner"
}
check "no runner faulted an instance or failed a batch" no_failures
finish
