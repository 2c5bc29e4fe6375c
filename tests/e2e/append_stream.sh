#!/bin/bash
# append_stream.sh - `sluice append --jsonl --stream` for a feed that goes on (issue 12,
# item 4): each line is committed as it arrives (at most --linger, 10 ms, after it) while
# the input stays open, its result line printed then; a full --batch-size chunk commits
# at once; a bad line commits the lines before it and exits 1 naming it; the end of the
# input commits the rest. Without --stream the whole input is still validated first.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
export SLUICE_STORE=$(test_store "$TMP/store.db")
FEED=$TMP/feed
mkfifo "$FEED"
APP=
cleanup() { exec 3>&- 2>/dev/null; [ -n "$APP" ] && kill "$APP" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
count() { $S events "$1" 2>/dev/null | grep -c "\"type\":\"$2\""; }
count_is() { [ "$(count "$1" "$2")" = "$3" ]; }
lines_out() { [ "$(wc -l <"$TMP/out")" = "$1" ]; }

$S append --jsonl --stream live/a <"$FEED" >"$TMP/out" 2>"$TMP/err" &
APP=$!
exec 3>"$FEED"
echo '{"type":"t/tick","payload":{"n":1}}' >&3
check "the first line is committed while the input stays open" wait_until 10 count_is live/a t/tick 1
check "and its result line is printed then" wait_until 10 lines_out 1
eq "the result names the event" "$(jq -c '[.stream, .offset]' "$TMP/out")" '["live/a",2]'
echo '{"type":"t/tick","payload":{"n":2}}' >&3
echo '{"stream":"live/b","type":"t/tick"}' >&3
# (On a failure: what events says and what the command printed, on one line.)
diag() { printf 'events: %s | out: %s | err: %s' "$($S events live/a 2>&1 | tr '\n' ' ')" \
	"$(tr '\n' ' ' <"$TMP/out")" "$(tr '\n' ' ' <"$TMP/err")"; }
if wait_until 10 count_is live/a t/tick 2; then pass "later lines too"; else failt "later lines too" "$(diag)"; fi
check "a line may name its own stream" wait_until 10 count_is live/b t/tick 1
echo '{"type":"t/tick","payload":[1]}' >&3
exec 3>&-
wait "$APP"
eq "a bad line ends it with exit 1" "$?" "1"
APP=
check "naming the line and the field" grep -q "^sluice: line 4: payload: must be a JSON object, got array" "$TMP/err"
if [ "$(count live/a t/tick)" = 2 ]; then pass "the lines before it are committed, the bad one is not"
else failt "the lines before it are committed, the bad one is not" "$(diag)"; fi

# ---- a line waits for its chunk while more input is read ---------------------------------
# Line 1 is read on its own (the writer waits until the pipe holds nothing unread), line
# 2 by a later read into the same input buffer; with a long --linger both go in one
# chunk, and each must keep its own payload.
FEED2=$TMP/feed2
mkfifo "$FEED2"
$S append --jsonl --stream --linger 10s p/a <"$FEED2" >"$TMP/out3" 2>&1 &
APP=$!
python3 - "$FEED2" <<'PY'
import fcntl, os, struct, sys, termios, time
fd = os.open(sys.argv[1], os.O_WRONLY)
unread = lambda: struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
os.write(fd, b'{"type":"t/p","payload":{"n":1,"s":"the first line"}}\n')
deadline = time.time() + 10
while unread() and time.time() < deadline:
    time.sleep(0.01)
os.write(fd, b'{"type":"t/p","payload":{"n":2},"metadata":{"m":"two"}}\n')
os.close(fd)
PY
wait "$APP"
eq "two lines read apart, committed together: exit 0" "$?" "0"
APP=
eq "... each with its own payload and metadata" \
	"$($S events p/a | jq -c 'select(.type == "t/p") | [.payload, .metadata]' | tr '\n' ' ')" \
	'[{"n":1,"s":"the first line"},null] [{"n":2},{"m":"two"}] '

# ---- chunks and the end of the input ---------------------------------------------------------
seq 1 2500 | sed 's/.*/{"type":"t\/many"}/' | $S append --jsonl --stream many/a >"$TMP/out2"
eq "2 500 lines with the default batch size: all committed, one result each" \
	"$(count many/a t/many),$(wc -l <"$TMP/out2")" "2500,2500"
printf '%s\n' '{"type":"t/c"}' '{"type":"t/c"}' '{"type":"t/c"}' | $S append --jsonl --stream c/a --batch-size 2 >/dev/null
eq "a cut chunk and the rest" "$(count c/a t/c)" "3"
printf '{"type":"t/last"}' | $S append --jsonl --stream c/b >/dev/null
eq "a last line without a newline" "$(count c/b t/last)" "1"
refuses "--linger needs --stream" "--linger needs --jsonl --stream" $S append --jsonl --linger 5ms c/b
refuses "--stream needs --jsonl" "--stream and --linger need --jsonl" $S append c/b t/x --stream
refuses "a bad --linger" "--linger: bad duration" $S append --jsonl --stream --linger soon c/b
finish
