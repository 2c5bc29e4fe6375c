#!/usr/bin/env bash
# live_progress.sh - the catch-up progress line of `sluice run` (DESIGN §8): shown on a
# terminal (a pseudo-terminal made by script(1)), redrawn in place and erased once
# caught up; never off a terminal unless --progress, and then without escape codes.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
D=$TMP/deploy.lua
cat >"$D" <<EOF
return { store = "$TMP/store.db", durability = "normal", schemas = { "$SLUICE_SRC/schemas" },
  processors = { counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" } } }
EOF
# 20 000 streams of one event each: a catch-up of 40 000 events in 20 000 batches,
# long enough for several refreshes.
python3 -c '
for i in range(20000):
    print("{\"stream\":\"counters/s%d\",\"type\":\"counter/incremented\",\"payload\":{\"by\":1}}" % i)' |
	$S append --jsonl --batch-size 10000 --deployment "$D" >/dev/null

# progress_checks FILE: what the terminal received (python3 reads the raw bytes).
progress_checks() {
	python3 - "$1" <<'PY'
import re, sys
raw = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
lines = re.findall(r"counter  [0-9 ]+ / 40 000 events  [0-9.]+[kM]? ev/s", raw)
erase = "\x1b[1A\r\x1b[J"
last = raw.rfind("ev/s")
print("shown" if lines else "not shown")
print("redrawn" if raw.count(erase) >= 1 else "not redrawn")
print("erased" if last >= 0 and erase in raw[last:] else "not erased")
PY
}
# (sluice-testing with SLUICE_PROGRESS_MS=0 draws at every update: the catch-up may be
# over within the tenth of a second before the first drawing.)
SLUICE_PROGRESS_MS=0 script -qfc "$SLUICE_TESTING run $D --until-caught-up" "$TMP/tty" >/dev/null
eq "on a terminal the progress line is shown, redrawn in place and erased at the end" \
	"$(progress_checks "$TMP/tty" | tr '\n' ' ')" "shown redrawn erased "
eq "the run caught up" "$($S state "$D" counter counters/s19999 | jq .state.count)" "1"

$S reset "$D" counter >/dev/null
$S run "$D" --until-caught-up 2>"$TMP/off.err"
eq "off a terminal there is no progress line" "$(grep -c 'ev/s' "$TMP/off.err")" "0"

$S reset "$D" counter >/dev/null
SLUICE_PROGRESS_MS=0 $SLUICE_TESTING run "$D" --until-caught-up --progress 2>"$TMP/on.err"
check "--progress shows it off a terminal too" \
	grep -Eq "^counter  [0-9 ]+ / 40 000 events  [0-9.]+[kM]? ev/s" "$TMP/on.err"
eq "without escape sequences" "$(grep -c $'\033' "$TMP/on.err")" "0"
finish
