#!/bin/bash
# disk_full.sh - a full disk during `sluice run --until-caught-up` (issue 10, item 16):
# the batches fail, their faults cannot be recorded either, and the run must not
# pass that off as success: it exits 1 with `sluice: processor 'c' on c/N faulted
# (...) and the fault could not be recorded: ... (is the disk full?)`, logs each
# unrecorded fault, and what it did commit before the disk filled is intact.
#
# The store lives on a tmpfs of 400 KiB (mounting needs root, as `make test` runs;
# elsewhere the test is skipped, saying so). Each batch writes a 2 KB state, so the
# store fills after a few dozen batches.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
M=$TMP/m
mkdir -p "$TMP/schemas" "$M"
cleanup() { umount "$M" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

cat >"$TMP/schemas/c.contract.json" <<'EOF'
{ "name": "c", "version": 1, "consumes": ["t/inc"], "emits": [],
  "events": { "t/inc": {"type": "object"} },
  "state": {"type": "object", "required": ["n", "pad"],
            "properties": {"n": {"type": "integer"}, "pad": {"type": "string"}}},
  "initialState": {"n": 0, "pad": ""} }
EOF
cat >"$TMP/c.lua" <<'EOF'
return { contract = "c",
  reduce = { ["t/inc"] = function(s) return { n = s.n + 1, pad = string.rep("x", 2000) } end } }
EOF
cat >"$TMP/deploy.lua" <<'EOF'
return { store = "m/store.db", schemas = { "schemas" },
  processors = { c = { script = "c.lua", streams = "c/*", batchSize = 1,
                       retry = { attempts = 1 } } } }
EOF
for i in $(seq 1 300); do echo "{\"stream\":\"c/$((i % 30))\",\"type\":\"t/inc\"}"; done >"$TMP/ev.jsonl"
$S append --store "$TMP/store.db" --jsonl <"$TMP/ev.jsonl" >/dev/null

if ! mount -t tmpfs -o size=400k tmpfs "$M" 2>/dev/null; then
	echo "# skipped: cannot mount a tmpfs here (needs root); the disk-full path is untested"
	echo "1..0"
	exit 0
fi
cp "$TMP/store.db" "$M/store.db"
$S run "$TMP/deploy.lua" --until-caught-up --log-format text >/dev/null 2>"$TMP/run.err"
eq "the run exits 1" "$?" "1"
check "its last line says a fault could not be recorded, naming the processor and stream" \
	grep -Eq "^sluice: processor 'c' on c/[0-9]+ faulted \(.*\) and the fault could not be recorded: .*(is the disk full\?)" "$TMP/run.err"
check "each unrecorded fault is logged" grep -q "cannot record the fault: .*disk is full" "$TMP/run.err"
st=$($S status "$TMP/deploy.lua" 2>"$TMP/status.err")
eq "status still works on the full disk" "$?" "0"
eq "and does not claim ok for an instance whose fault the store could not take" \
	"$(echo "$st" | jq -r 'select(.lastError != null and (.lastError | test("could not record this fault"))) | .status' | sort -u)" "faulted"
# The store the full disk left, moved where there is room: intact and resumable.
mkdir -p "$TMP/after"
cp "$M"/store.db* "$TMP/after/"
umount "$M"
sed 's|m/store.db|after/store.db|' "$TMP/deploy.lua" >"$TMP/after.lua"
done_before=$($S status "$TMP/after.lua" | jq -s 'map(.offset) | add')
check "what committed before the disk filled is there (offsets sum $done_before > 0)" \
	test "$done_before" -gt 0
$S run "$TMP/after.lua" --until-caught-up >/dev/null 2>"$TMP/run2.err"
eq "with room, the same run succeeds" "$?" "0"
eq "and every instance caught up" "$($S status "$TMP/after.lua" | jq -s 'map(.lag) | add')" "0"
eq "every event counted once" "$($S state "$TMP/after.lua" c | jq -s 'map(.state.n) | add')" "300"
finish
