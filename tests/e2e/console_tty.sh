#!/bin/bash
# console_tty.sh - `sluice console` at a terminal, typed as a person types it (issue 11):
# a runner runs the example deployment; a tmux session runs the console attached to it;
# the test types with send-keys (each line once the prompt is back) and reads the screen
# with capture-pane. It checks the banner, Tab completion of a helper and of a stream
# name inside a helper call (answered by the runner), a multi-line function on
# `console>> `, Ctrl-C of `while true do end` (stopped by the runner at once, not at its
# budget, which would print the budget error instead) followed by a working prompt, tail() following
# an append until Ctrl-C, the history file, and Ctrl-D leaving the runner running.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
S=$SLUICE
command -v tmux >/dev/null || { echo "1..0 # skipped: tmux is not installed"; exit 0; }
cp -r "$SLUICE_SRC/processors" "$TMP/processors"
cp -r "$SLUICE_SRC/schemas" "$TMP/schemas"
mkdir -p "$TMP/processors/data" "$TMP/home"
D=$TMP/processors/example.deploy.lua
SOCK=$TMP/tmux.sock
T="tmux -S $SOCK"
RUN=
cleanup() { $T kill-server 2>/dev/null; [ -n "$RUN" ] && kill -9 "$RUN" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

$S run "$D" --until-caught-up >/dev/null 2>&1
for _ in 1 2 3; do $S append counters/a counter/incremented '{"by":5}' --deployment "$D" >/dev/null; done
$S run "$D" >/dev/null 2>"$TMP/run.err" &
RUN=$!
wait_until 20 bash -c "$S console '$D' -e 'state(\"counter\", \"counters/a\").count' 2>/dev/null | grep -qx 15"

$T new-session -d -s con -x 150 -y 40 "cd $TMP && HOME=$TMP/home $S console $D; echo CONSOLE-EXITED; sleep 30"
screen() { $T capture-pane -t con -p; }
shows() { screen | grep -qF -- "$1"; }
last_is() { [ "$(screen | grep -v '^$' | tail -1)" = "$1" ]; }
last_prompt() { last_is "console>"; }
type_line() { wait_until 10 last_prompt && $T send-keys -t con -l "$1" && $T send-keys -t con Enter; }

check "the console starts with its banner" wait_until 20 shows "attached to the runner of"
check "and waits at 'console> '" wait_until 10 last_prompt

# ---- completion ----------------------------------------------------------------------------
$T send-keys -t con -l 'proc'
$T send-keys -t con Tab
check "Tab completes a helper name (proc -> processors()" wait_until 10 shows "console> processors("
$T send-keys -t con C-u
$T send-keys -t con -l 'events("counters/'
$T send-keys -t con Tab
check "Tab completes a stream name inside a helper call's string" \
	wait_until 10 shows 'console> events("counters/a'
$T send-keys -t con C-u

# ---- results, multi-line input, errors --------------------------------------------------------
type_line 'state("counter", "counters/a")'
check "a bare expression prints its value, pretty" wait_until 10 shows "{ count = 15 }"
type_line 'function twice(x)'
check "an incomplete chunk continues on 'console>> '" wait_until 10 last_is "console>>"
$T send-keys -t con -l '  return x * 2'
$T send-keys -t con Enter
wait_until 10 bash -c "[ \$($T capture-pane -t con -p | grep -cx 'console>>') -ge 1 ]"
wait_until 10 last_is "console>>"
$T send-keys -t con -l 'end'
$T send-keys -t con Enter
type_line 'twice(21)'
check "the multi-line function works" wait_until 10 bash -c "$T capture-pane -t con -p | grep -qx '42'"
type_line 'nosuch()'
check "an error prints and the session goes on" \
	wait_until 10 shows "error: console:1: attempt to call a nil value (global 'nosuch')"

# ---- Ctrl-C ---------------------------------------------------------------------------------
type_line 'while true do end'
looping() { screen | grep -v '^$' | tail -1 | grep -q 'while true do end'; }
check "the endless loop runs" wait_until 10 looping
$T send-keys -t con C-c
check "Ctrl-C stops it in the runner" wait_until 10 shows "error: interrupted"
type_line '6 * 7'
check "and the prompt works again" wait_until 10 bash -c "[ \$($T capture-pane -t con -p | grep -cx '42') -ge 2 ]"

# ---- tail -------------------------------------------------------------------------------------
type_line 'tail("counters/*")'
following() { screen | grep -v '^$' | tail -1 | grep -q 'tail("counters/\*")'; }
check "tail waits for events" wait_until 10 following
$S append counters/b counter/incremented '{"by":7}' --deployment "$D" >/dev/null
check "and shows the one appended" wait_until 10 shows 'payload = { by = 7 },'
$T send-keys -t con C-c
check "Ctrl-C ends tail" wait_until 10 last_prompt

# ---- history and Ctrl-D -------------------------------------------------------------------------
$T send-keys -t con C-d
check "Ctrl-D leaves" wait_until 10 shows "CONSOLE-EXITED"
check "the history is in ~/.sluice_history" grep -q 'twice(21)' "$TMP/home/.sluice_history"
check "the runner is still running" kill -0 "$RUN"
finish
