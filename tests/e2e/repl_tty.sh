#!/bin/bash
# repl_tty.sh - `sluice repl` at a terminal, typed as a person types it (issue 11): a
# tmux session runs the REPL on the example deployment; the test types with send-keys
# (each line once the prompt is back, as a person waits for it) and reads the screen
# with capture-pane. It checks the Tab completion of a helper and of a stream name
# inside a helper call, a multi-line function, the pretty-printed result, an error
# that leaves the session going, Ctrl-C of `while true do end` followed by a working
# prompt, Ctrl-C at the prompt, the history file, and Ctrl-D leaving.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
S=$SLUICE
command -v tmux >/dev/null || { echo "1..0 # skipped: tmux is not installed"; exit 0; }
cp -r "$SLUICE_SRC/processors" "$TMP/processors"
mkdir -p "$TMP/processors/data" "$TMP/home"
D=$TMP/processors/example.deploy.lua
SOCK=$TMP/tmux.sock
T="tmux -S $SOCK"
cleanup() { $T kill-server 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

$S run "$D" --until-caught-up >/dev/null 2>&1
for _ in 1 2 3; do $S append counters/a counter/incremented '{"by":5}' --deployment "$D" >/dev/null; done
$S run "$D" --until-caught-up >/dev/null 2>&1

$T new-session -d -s repl -x 150 -y 40 "cd $TMP && HOME=$TMP/home $S repl $D; echo REPL-EXITED; sleep 30"
screen() { $T capture-pane -t repl -p; }
shows() { screen | grep -qF -- "$1"; }
# last_prompt: the screen's last non-empty line is the prompt "sluice> " (nothing typed).
last_prompt() { [ "$(screen | grep -v '^$' | tail -1)" = "sluice>" ]; }
type_line() { wait_until 10 last_prompt && $T send-keys -t repl -l "$1" && $T send-keys -t repl Enter; }

check "the REPL starts with its banner and prompt" wait_until 20 shows "help() lists the helpers"
check "and waits at 'sluice> '" wait_until 10 last_prompt

# ---- completion ----------------------------------------------------------------------------
$T send-keys -t repl -l 'proc'
$T send-keys -t repl Tab
check "Tab completes a helper name (proc -> processors()" wait_until 10 shows "sluice> processors("
$T send-keys -t repl C-u
$T send-keys -t repl -l 'events("counters/'
$T send-keys -t repl Tab
check "Tab completes a stream name inside a helper call's string" \
	wait_until 10 shows 'sluice> events("counters/a'
$T send-keys -t repl C-u
$T send-keys -t repl -l 'state("cou'
$T send-keys -t repl Tab
check "and a processor name as a helper's first argument" wait_until 10 shows 'sluice> state("counter'
$T send-keys -t repl C-u

# ---- results, multi-line input, errors --------------------------------------------------------
type_line 'state("counter", "counters/a")'
check "a bare expression prints its value, pretty" wait_until 10 shows "{ count = 15 }"
type_line 'function twice(x)'
check "an incomplete chunk continues on 'sluice>> '" wait_until 10 shows "sluice>>"
wait_until 10 bash -c "$T capture-pane -t repl -p | grep -v '^\$' | tail -1 | grep -qx 'sluice>>'"
$T send-keys -t repl -l '  return x * 2'
$T send-keys -t repl Enter
wait_until 10 bash -c "$T capture-pane -t repl -p | grep -v '^\$' | tail -1 | grep -qx 'sluice>>'"
$T send-keys -t repl -l 'end'
$T send-keys -t repl Enter
type_line 'twice(21)'
check "the multi-line function works" wait_until 10 bash -c "$T capture-pane -t repl -p | grep -qx '42'"
type_line 'nosuch()'
check "an error prints and the session goes on" \
	wait_until 10 shows "error: stdin:1: attempt to call a nil value (global 'nosuch')"

# ---- Ctrl-C ---------------------------------------------------------------------------------
type_line 'while true do end'
sleep_free_wait() { screen | grep -v '^$' | tail -1 | grep -q 'while true do end'; }
check "the endless loop runs" wait_until 10 sleep_free_wait
$T send-keys -t repl C-c
check "Ctrl-C stops it" wait_until 10 shows "error: interrupted"
type_line '6 * 7'
check "and the prompt works again" wait_until 10 bash -c "[ \$($T capture-pane -t repl -p | grep -cx '42') -ge 2 ]"
wait_until 10 last_prompt
$T send-keys -t repl -l 'half typed'
$T send-keys -t repl C-c
type_line '1 + 2'
check "Ctrl-C at the prompt discards the line" wait_until 10 bash -c "$T capture-pane -t repl -p | grep -qx '3'"

# ---- history and Ctrl-D -------------------------------------------------------------------------
wait_until 10 last_prompt
$T send-keys -t repl C-d
check "Ctrl-D leaves" wait_until 10 shows "REPL-EXITED"
check "the history is in ~/.sluice_history" grep -q 'twice(21)' "$TMP/home/.sluice_history"
check "with the multi-line function's lines" grep -q 'return\\040x\\040\*\\0402\|return x \* 2' "$TMP/home/.sluice_history"
finish
