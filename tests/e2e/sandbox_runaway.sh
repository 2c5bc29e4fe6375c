#!/bin/bash
# sandbox_runaway.sh - hostile processors that run away with CPU or memory, each beside
# a well-behaved control processor on the same stream (DESIGN §7 "Sandbox", issue 5):
# the engine neither crashes nor hangs, the control's state is right, the hostile one
# is faulted with exactly "processor 'hostile' exceeded its <kind> budget" (or another
# clear message), and nothing of its failed batch is committed (lib/sandboxlib.sh).
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/sandboxlib.sh"

INSTR="^processor 'hostile' exceeded its instruction budget$"
MEM="^processor 'hostile' exceeded its memory budget$"
WALL="^processor 'hostile' exceeded its wallclock budget$"
# Runaways in long C calls take ~0.5 s to use up 1e7 steps: on a loaded machine (or
# under the sanitizers) the 500 ms wall clock may stop them first.
CPU="^processor 'hostile' exceeded its (instruction|wallclock) budget$"

hostile loop_reduce "$INSTR"
hostile loop_pcall "$INSTR"
# Memory runaways get time and instructions enough to reach the memory budget.
MEMLIMITS='{ instructions = 1e9, memory = "16MiB", wallclock = "10s" }'
LIMITS=$MEMLIMITS hostile recursion "$MEM|stack overflow"
LIMITS=$MEMLIMITS hostile string_bomb "$MEM"
LIMITS=$MEMLIMITS hostile table_bomb "$MEM"
LIMITS=$MEMLIMITS hostile bomb_pcall "$MEM"
hostile pattern "$CPU"
hostile pattern_pcall "$CPU"
hostile close_loop "$INSTR"
hostile xpcall_loop "$INSTR"
hostile xpcall_budget "$INSTR"
hostile sort_loop "$INSTR"
hostile table_move "$CPU"
hostile gc_loop "__gc metamethods are not allowed"
hostile array_meta "attempt to index a boolean value"
LIMITS='{ instructions = 1e12, memory = "16MiB", wallclock = "500ms" }'
hostile wallclock_loop "$WALL"
LIMITS='{ instructions = 1e12, memory = "16MiB", wallclock = "500ms" }'
hostile pattern_wallclock "$WALL"
hostile append_then_loop "$INSTR"
# SQL, not the CLI: whether the processor's ctx.db table exists only SQL can say.
eq "append_then_loop: its ctx.db table was not committed either" \
	"$(sqlite3 "$TMP/append_then_loop/store.db" "SELECT count(*) FROM sqlite_master WHERE name = 'seen'")" "0"
hostile block_loop "$INSTR"
hostile block_loop_later "$INSTR"
hostile cjson_dag "too large"

# Background work that runs away fails on its own: the batch commits.
setup_case background_loop
D=$TMP/background_loop/deploy.lua
timeout 120 $S run "$D" --until-caught-up >/dev/null 2>"$TMP/background_loop/run.err"
eq "background_loop: run exits 0 (background work never holds the batch)" "$?" "0"
eq "background_loop: its three failures are counted" \
	"$($S status "$D" | jq -r 'select(.processor == "hostile") | "\(.status) \(.offset) \(.backgroundFailures)"')" "ok 4 3"
check "background_loop: each failure is logged with the budget's message" \
	grep -q "exceeded its instruction budget" "$TMP/background_loop/run.err"
eq "background_loop: the control processor's state is right" \
	"$($S state "$D" control h/1 | jq -c .state)" '{"count":3,"sum":6}'

finish
