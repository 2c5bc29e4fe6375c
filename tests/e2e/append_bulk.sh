#!/bin/bash
# append_bulk.sh - `append --jsonl` over a large input: whole-input validation with
# the validated events in a temporary file (sl_spool), which is unlinked at once and
# never left behind; a SIGKILL leaves a prefix of whole chunks; memory does not grow
# with the input. Nothing here is timed: the kills are placed by the output's length.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
N=200000
D=$TMP/d
mkdir -p "$D"
db=$D/store.db

# N lines over 4 streams, each with an idempotency key: line k is event k.
gen() { awk -v n="$1" 'BEGIN { for (k = 1; k <= n; k++)
	printf "{\"stream\":\"bulk/s%d\",\"type\":\"t/e\",\"idempotencyKey\":\"k%d\",\"payload\":{\"k\":%d,\"pad\":\"the quick brown fox jumps over the lazy dog\"}}\n", k % 4, k, k }'; }
gen $N >"$TMP/good.jsonl"
{ head -n $((N - 1)) "$TMP/good.jsonl"; echo '{"stream":"bulk/s0","type":"t/e","payload":[1]}'; } >"$TMP/bad_last.jsonl"

# Files in D other than the store's own (the spool must never show up there).
others() { ls -A "$D" | grep -Ev '^store\.db(-wal|-shm)?$' | tr '\n' ' '; }
# User events stored (the bulk/sN streams without their stream/created).
stored() { $S events "$1" --store "$db" --from 2 | wc -l; }
verified() { $S verify --store "$db" >/dev/null; }
user_events() {
	local t=0 i
	for i in 0 1 2 3; do t=$((t + $(stored bulk/s$i))); done
	echo $t
}

# ---- a bad last line writes nothing -----------------------------------------------------
refuses "a bad line at the very end of $N lines is reported with its number" \
	"^sluice: line $N: payload: must be a JSON object, got array$" \
	$S append --jsonl --store "$db" <"$TMP/bad_last.jsonl"
check "... and the store was not even created" test ! -e "$db"
eq "... and no temporary file is left" "$(others)" ""

# ---- the spool: in the store's directory, unlinked from the start ---------------------------
mkfifo "$TMP/feed"
$S append --jsonl --store "$db" <"$TMP/feed" >"$TMP/fifo.out" 2>"$TMP/fifo.err" &
pid=$!
exec 3>"$TMP/feed"
head -n 1000 "$TMP/good.jsonl" >&3
spool_fd() { ls -l /proc/$pid/fd 2>/dev/null | grep -F "$D/" | grep -q '(deleted)'; }
check "while validating, the temporary file is open in the store's directory, deleted" \
	wait_until 10 spool_fd
eq "... and it is not in the directory" "$(others)" ""
echo '{"type":"t/e"}' >&3 # no stream: a bad line
exec 3>&-
wait $pid
eq "a bad line fed through a pipe: exit 1" "$?" "1"
eq "... it names the line" "$(cat "$TMP/fifo.err")" \
	"sluice: line 1001: stream: required (no STREAM argument was given)"
check "... nothing was written" test ! -e "$db"
eq "... and no temporary file is left" "$(others)" ""

# ---- a good input, in chunks -------------------------------------------------------------------
$S append --jsonl --store "$db" --batch-size 7000 <"$TMP/good.jsonl" >"$TMP/good.out"
eq "all $N events are appended" "$(user_events)" "$N"
eq "one result line per event" "$(wc -l <"$TMP/good.out")" "$N"
eq "the last result is the last line's event (offset, by key)" \
	"$(tail -n 1 "$TMP/good.out" | jq -c '[.stream, .offset]')" \
	"$($S events bulk/s0 --store "$db" --from $((N / 4 + 1)) | jq -c '[.stream, .offset]')"
eq "the payload was stored compacted, as given" \
	"$($S events bulk/s1 --store "$db" --from 2 --limit 1 | jq -c .payload)" \
	'{"k":1,"pad":"the quick brown fox jumps over the lazy dog"}'
eq "no temporary file is left after a success" "$(others)" ""
check "sluice verify passes" verified

# ---- SIGKILL: during the validation, then during the commits ----------------------------------
rm -f "$db" "$db-wal" "$db-shm"
mkfifo "$TMP/feed2"
$S append --jsonl --store "$db" <"$TMP/feed2" >/dev/null 2>&1 &
pid=$!
exec 3>"$TMP/feed2"
head -n 50000 "$TMP/good.jsonl" >&3
check "killed while validating (the spool is open)" wait_until 10 spool_fd
kill -KILL $pid
wait $pid 2>/dev/null
exec 3>&-
check "... nothing was written" test ! -e "$db"
eq "... and no temporary file is left" "$(others)" ""

B=1000
$S append --jsonl --store "$db" --batch-size $B <"$TMP/good.jsonl" >"$TMP/kill.out" 2>/dev/null &
pid=$!
printed() { [ "$(wc -l <"$TMP/kill.out")" -ge 20000 ]; }
check "the killed append printed at least 20 000 result lines" wait_until 60 printed
kill -KILL $pid
wait $pid 2>/dev/null
lines=$(wc -l <"$TMP/kill.out")
got=$(user_events)
check "after the kill, sluice verify passes" verified
eq "... the store holds whole chunks of $B" "$((got % B))" "0"
check "... at least every chunk whose results were printed ($lines lines, $got stored)" \
	test "$got" -ge "$((lines / B * B))" -a "$got" -lt "$N"
eq "... and exactly the first $got lines of the input (the last stored is line $got)" \
	"$(for i in 0 1 2 3; do $S events bulk/s$i --store "$db" --from 2 | jq -r .idempotencyKey | tail -n 1; done | tr -d k | sort -n | tail -n 1)" \
	"$got"
eq "... no temporary file is left" "$(others)" ""
$S append --jsonl --store "$db" <"$TMP/good.jsonl" >"$TMP/again.out"
eq "running the input again completes it (the keys skip what is there)" "$(user_events)" "$N"
eq "... its result lines say which were there already" \
	"$(grep -c '"duplicate":true' "$TMP/again.out")" "$got"

# ---- memory does not grow with the input -----------------------------------------------------
# Unbounded, 200 000 lines took 24 MB more than 100 000 (about 240 bytes per event);
# spooled, the two differ by about 1 MB (SQLite's page cache is full at 100 000 in
# both). Not under the sanitizers, whose allocator keeps freed memory in quarantine.
rss() {
	rm -f "$db" "$db-wal" "$db-shm"
	/usr/bin/time -f %M -o "$TMP/rss" $S append --jsonl --store "$db" <"$1" >/dev/null
	cat "$TMP/rss"
}
if [ -n "${ASAN_OPTIONS:-}" ] || ! [ -x /usr/bin/time ]; then
	pass "# skip the peak RSS check (sanitizers, or no /usr/bin/time)"
else
	head -n $((N / 2)) "$TMP/good.jsonl" >"$TMP/small.jsonl"
	small=$(rss "$TMP/small.jsonl")
	big=$(rss "$TMP/good.jsonl")
	check "peak RSS at $N lines ($big KiB) is within 12 MiB of $((N / 2)) lines' ($small KiB)" \
		test "$big" -lt "$((small + 12288))"
	check "... and under 64 MiB" test "$big" -lt 65536
fi

finish
