#!/usr/bin/env bash
# kill_durability_slow.sh - SIGKILLs `sluice append --jsonl` at random points, again
# and again on one store, and checks after every kill that the store resumes exactly.
#
# Every round appends the same 100 000 events (4 streams, lines interleaved) in
# chunks of 1000 and is killed at a random moment: some while the input is being
# validated (a short random delay, shorter than the time to the first commit, which
# a first uninterrupted round measures), most during the chunk commits (once the
# output holds at least K lines, K random in [0, 100000), plus a few milliseconds).
# Polling the output only chooses when to kill; no check depends on timing. After
# each kill:
#   - the store opens and reads (`sluice events`, `sluice streams`);
#   - every stream's offsets go on from its old head without a gap, offset 1 is
#     stream/created, and `sluice streams` reports the last offset as the head;
#   - the round's user events are a prefix of the input, in input order, and their
#     number is a multiple of the chunk size (no chunk was written in part);
#   - every complete line of the round's output {"stream","offset","position"} (a
#     kill can cut the last one) is the stored event of the same input line.
# At the end every stream is checked from offset 1 and one more round must finish.
#
# Usage: SLUICE=build/sluice bash tests/e2e/kill_durability_slow.sh
# Environment: ROUNDS (kills; default 24, fewer only to debug), SEED (replays the
# random choices, though not the timing).
set -euo pipefail
export LC_ALL=C

: "${SLUICE:?set SLUICE to the sluice binary, e.g. SLUICE=build/sluice}"
EVENTS=100000
BATCH=1000
STREAMS=(s0 s1 s2 s3)
ROUNDS=${ROUNDS:-24}
SEED=${SEED:-$((($$ + $(date +%s)) % 32768))}
RANDOM=$SEED

for tool in jq awk; do
	command -v "$tool" >/dev/null || { echo "not ok 1 - $tool is required"; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-kill.XXXXXX")
pid=
cleanup() {
	if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
db=$tmp/store.db

tests=0
ok() {
	tests=$((tests + 1))
	echo "ok $tests - $*"
}
bail() {
	tests=$((tests + 1))
	echo "not ok $tests - $*"
	echo "# failed with SEED=$SEED (set it to replay the same kill points)"
	exit 1
}

# ---- helpers ------------------------------------------------------------------------

now_ms() {
	local t=${EPOCHREALTIME/./}
	echo $((t / 1000))
}

# Milliseconds as an argument for sleep.
secs() {
	printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000))
}

# Whether process $1 runs (a zombie does not: it has exited but is not reaped yet).
running() {
	local _a _b state
	read -r _a _b state _ <"/proc/$1/stat" 2>/dev/null && [[ $state != Z ]]
}

lines() {
	wc -l <"$1"
}

# Prints the heads of the test's streams as "s0=12 s1=9 ...", 0 for a missing stream.
heads_now() {
	local got s h out=
	got=$("$SLUICE" streams --store "$db" | jq -r '"\(.stream)=\(.head)"') || return 1
	for s in "${STREAMS[@]}"; do
		h=$(sed -n "s/^$s=//p" <<<"$got")
		out+="$s=${h:-0} "
	done
	echo "${out% }"
}

head_of() { # head_of STREAM HEADS
	local kv
	for kv in $2; do
		if [[ ${kv%%=*} == "$1" ]]; then
			echo "${kv#*=}"
			return
		fi
	done
	echo 0
}

# ---- the checks ---------------------------------------------------------------------

# Checks the events a round added. Input: the new events as TSV (stream, offset,
# position, type, payload.i), stream by stream in offset order. Variables: heads and
# heads2, "s0=12 s1=9 ..." before and after the round; p0, the store's head position
# before it; bs, the chunk size; expected, a file to which it writes the round's user
# events in input order as "stream offset position" (what the output must say).
# Prints "<user events committed> <highest position>"; on a failure, the reason on
# stderr and exit status 1.
# shellcheck disable=SC2016 # awk code, not shell expansions
check_awk='
function fail(msg) { print msg > "/dev/stderr"; failed = 1; exit 1 }
BEGIN {
	FS = "\t"
	nh = split(heads, kv, " ")
	for (k = 1; k <= nh; k++) { split(kv[k], p, "="); head[p[1]] = p[2] + 0; order[k] = p[1] }
	split(heads2, kv, " ")
	for (k in kv) { split(kv[k], p, "="); head2[p[1]] = p[2] + 0 }
	maxpos = p0
}
{
	s = $1; off = $2 + 0; pos = $3 + 0; type = $4
	if (!(s in head)) fail("event of unexpected stream " s " at position " pos)
	want = (s == prev ? last : head[s]) + 1
	if (off != want) fail("stream " s ": offset " off " where " want " was due: the offsets are not contiguous")
	prev = s; last = off; end[s] = off
	if (pos <= p0) fail("stream " s " offset " off ": position " pos " is not after the previous store head " p0)
	if (pos in seen) fail("position " pos " appears twice")
	seen[pos] = 1
	if (pos > maxpos) maxpos = pos
	if (type == "stream/created") { if (off != 1) fail("stream " s ": stream/created at offset " off); next }
	if (type != "t/e") fail("stream " s " offset " off ": unexpected type " type)
	if (off == 1) fail("stream " s ": offset 1 is " type ", not stream/created")
	ustream[pos] = s; uoff[pos] = off; ui[pos] = $5 + 0; n++
}
END {
	if (failed) exit 1
	for (k = 1; k <= nh; k++) {
		s = order[k]; h = (s in end) ? end[s] : head[s]
		if (head2[s] != h) fail("stream " s ": sluice streams says head " head2[s] ", but its events end at offset " h)
	}
	if (n % bs) fail(n " user events were committed, not a multiple of the chunk size " bs ": a chunk was written in part")
	j = 0
	for (pos = p0 + 1; pos <= maxpos; pos++) {
		if (!(pos in ui)) continue
		if (ui[pos] != j || ustream[pos] != order[j % nh + 1])
			fail("the committed events are not the start of the input in order: " ustream[pos] " offset " uoff[pos] " holds i=" ui[pos] ", expected input line " j + 1)
		print ustream[pos] "\t" uoff[pos] "\t" pos > expected
		j++
	}
	print n + 0, maxpos
}'

# check_round NAME HEADS P0 OUT: checks the store after a round that started with
# HEADS and store head position P0 and wrote OUT; sets committed, acked, new_heads,
# new_p0.
check_round() {
	local name=$1 heads=$2 p0=$3 out=$4 s from got err=$tmp/check.err
	local ev=$tmp/events.tsv expected=$tmp/expected.tsv acks=$tmp/acked.tsv
	: >"$ev"
	for s in "${STREAMS[@]}"; do
		from=$(($(head_of "$s" "$heads") + 1))
		"$SLUICE" events "$s" --from "$from" --store "$db" 2>"$err" |
			jq -r '[.stream, .offset, .position, .type, (.payload.i // -1)] | @tsv' >>"$ev" ||
			bail "$name: sluice events $s failed after the kill: $(cat "$err")"
	done
	new_heads=$(heads_now) || bail "$name: sluice streams failed after the kill"
	: >"$expected"
	got=$(awk -v heads="$heads" -v heads2="$new_heads" -v p0="$p0" -v bs="$BATCH" \
		-v expected="$expected" "$check_awk" <"$ev" 2>"$err") ||
		bail "$name: $(cat "$err")"
	read -r committed new_p0 <<<"$got"
	# Only complete lines: a kill can cut the last line of the output.
	head -n "$(lines "$out")" "$out" |
		jq -r '[.stream, .offset, .position] | @tsv' >"$acks" 2>"$err" ||
		bail "$name: a complete output line is not JSON: $(cat "$err")"
	acked=$(lines "$acks")
	((acked <= committed)) ||
		bail "$name: $acked events were acknowledged but only $committed are in the store"
	cmp -s "$acks" <(head -n "$acked" "$expected") ||
		bail "$name: an acknowledged event is not in the store as printed:$(echo;
			diff <(head -n "$acked" "$expected") "$acks" | head -5)"
}

# ---- the rounds ---------------------------------------------------------------------

# start_append OUT: starts the append in the background; sets pid and started (ms).
start_append() {
	"$SLUICE" append --jsonl --batch-size "$BATCH" --store "$db" \
		<"$tmp/in.jsonl" >"$1" 2>"$tmp/append.err" &
	pid=$!
	started=$(now_ms)
}

# finish_append NAME: reaps the append and sets status (0 finished, 137 killed).
finish_append() {
	status=0
	wait "$pid" 2>/dev/null || status=$?
	pid=
	[[ $status == 0 || $status == 137 ]] ||
		bail "$1: sluice append exited with $status: $(cat "$tmp/append.err")"
}

awk -v n="$EVENTS" -v names="${STREAMS[*]}" 'BEGIN {
	k = split(names, s, " ")
	for (i = 0; i < n; i++)
		printf "{\"stream\":\"%s\",\"type\":\"t/e\",\"payload\":{\"i\":%d}}\n", s[i % k + 1], i
}' >"$tmp/in.jsonl"
echo "# $EVENTS events, chunks of $BATCH, $ROUNDS kills, SEED=$SEED, store $db"

# The store exists before the first kill, so every check can open it.
p0=$("$SLUICE" append setup t/setup --store "$db" | jq -r .position) ||
	bail "cannot create the store"
heads=$(heads_now) || bail "sluice streams failed on the new store"
declare -A total=()
for s in "${STREAMS[@]}"; do total[$s]=0; done

# record NAME: checks the round just run and carries its results forward.
record() {
	check_round "$1" "$heads" "$p0" "$tmp/out"
	heads=$new_heads
	p0=$new_p0
	for s in "${STREAMS[@]}"; do
		total[$s]=$((total[$s] + committed / ${#STREAMS[@]}))
	done
}

# Round 0, not killed: measures the time to the first commit.
start_append "$tmp/out"
while [[ ! -s $tmp/out ]] && running "$pid"; do sleep 0.005; done
first_ms=$(($(now_ms) - started))
finish_append "round 0"
total_ms=$(($(now_ms) - started))
record "round 0"
((committed == EVENTS && acked == EVENTS)) ||
	bail "round 0 (not killed): $committed events stored, $acked acknowledged, expected $EVENTS"
ok "round 0, not killed: $EVENTS events in ${total_ms} ms, the first chunk committed after ~${first_ms} ms"

before_first=0 during=0 finished=0 kills=0 round=0
# Goes on past ROUNDS (up to twice as many) until both phases have been hit.
while ((kills < ROUNDS || ((before_first == 0 || during == 0) && round < 2 * ROUNDS))); do
	round=$((round + 1))
	start_append "$tmp/out"
	early=0
	if ((round % 4 == 1 || (round > ROUNDS && before_first == 0))); then
		early=1
		delay=$((RANDOM % (first_ms > 1 ? first_ms : 1)))
		how="after a delay of $delay ms"
		sleep "$(secs "$delay")"
	else
		k=$(((RANDOM * 32768 + RANDOM) % EVENTS))
		how="once the output had $k lines"
		while (($(lines "$tmp/out") < k)) && running "$pid"; do sleep 0.005; done
		sleep "$(secs $((RANDOM % 8)))"
	fi
	kill -KILL "$pid" 2>/dev/null || true
	finish_append "round $round"
	record "round $round"
	if ((status == 0)); then
		finished=$((finished + 1))
		((committed == EVENTS && acked == EVENTS)) ||
			bail "round $round exited 0 with $committed events stored and $acked acknowledged"
		ok "round $round finished before its kill ($how): $committed events, all acknowledged"
		continue
	fi
	kills=$((kills + 1))
	# An early kill that came too late: aim the next ones earlier.
	if ((early && committed > 0)); then first_ms=$((first_ms / 2)); fi
	if ((committed == 0)); then
		before_first=$((before_first + 1))
		phase="before the first commit"
	elif ((committed < EVENTS)); then
		during=$((during + 1))
		phase="during the commits"
	else
		phase="after the last commit"
	fi
	ok "round $round killed $how, $phase: $((committed / BATCH)) whole chunks stored, $acked events acknowledged, all stored"
done
echo "# $kills kills: $before_first before the first commit, $during during the commits;" \
	"$finished rounds finished before their kill"
((kills >= ROUNDS)) || bail "only $kills of $round rounds were killed; $ROUNDS kills are needed"
((before_first > 0 && during > 0)) ||
	bail "the kills never landed $( ((before_first == 0)) && echo "before the first commit" || echo "during the commits")"

# Every stream in full: offsets 1..head, no gap, and the user events the rounds counted.
for s in "${STREAMS[@]}"; do
	h=$(head_of "$s" "$heads")
	got=$("$SLUICE" events "$s" --store "$db" | jq -r '[.offset, .type] | @tsv' |
		awk -F '\t' 'NR != $1 { print "offset " $1 " at line " NR; exit 1 }
			$2 == "t/e" { n++ } END { print NR, n + 0 }') ||
		bail "stream $s: $got"
	[[ $got == "$h ${total[$s]}" ]] ||
		bail "stream $s: read back (events, user events) = ($got), expected ($h ${total[$s]})"
done
ok "every stream reads back from offset 1 to its head without a gap, with the events the rounds stored"

start_append "$tmp/out"
finish_append "the last round"
record "the last round"
((committed == EVENTS && acked == EVENTS)) ||
	bail "the last round (not killed): $committed events stored, $acked acknowledged"
ok "after the kills, a last round appends all $EVENTS events"
echo "1..$tests"
