#!/bin/bash
# sandbox_reduce.sh - reduce is deterministic (issue 5): no clock, no random numbers,
# no ctx, no memory figures while it runs; with `sluice run --strict` a hook that
# changes the tables it was given, or a reduce that gives another state when the
# batch is reduced again, fails the batch naming why. Each hostile processor runs
# beside a control processor on the same stream (lib/sandboxlib.sh).
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/sandboxlib.sh"

hostile os_time "'os' is not available to processors"
hostile random "cases/random.lua:6: math.random is not available in reduce"
hostile gc_count "collectgarbage\('count'\) is not available in reduce"
BATCH=1 EXPECT_OFFSET=2
hostile ctx_in_reduce "ctx.append is not available in reduce"

RUNFLAGS=--strict
hostile mutates_state "strict: reduce changed a table it was given: state.n was changed"
RUNFLAGS=--strict
hostile mutates_event "strict: processEvent changed a table it was given: event.payload.n was changed"
RUNFLAGS=--strict
hostile nondeterministic "strict: reduce is not deterministic: .*state.n differs"

# Without --strict the same scripts run (their writes are undefined behaviour).
for c in mutates_state nondeterministic; do
	mkdir -p "$TMP/lax" && rm -rf "$TMP/lax/$c"
	TMP=$TMP/lax setup_case "$c"
	timeout 60 $S run "$TMP/lax/$c/deploy.lua" --until-caught-up >/dev/null 2>&1
	eq "$c: without --strict the batch commits" "$?" "0"
done

# The shipped processors pass strict mode.
cp -r "$SLUICE_SRC/processors" "$TMP/shipped"
cp -r "$SLUICE_SRC/schemas" "$TMP/schemas"
rm -rf "$TMP/shipped/data" && mkdir -p "$TMP/shipped/data"
SD=$TMP/shipped/example.deploy.lua
$S run "$SD" --until-caught-up --strict >/dev/null 2>&1
for by in 60 60; do $S append counters/a counter/incremented "{\"by\":$by}" --deployment "$SD" >/dev/null; done
$S append echo/1 echo/input-received '{"text":"hi"}' --deployment "$SD" >/dev/null
$S run "$SD" --until-caught-up --strict >/dev/null 2>"$TMP/shipped.err"
eq "the example deployment runs with --strict" "$?" "0"
eq "and its counter is right" "$($S state "$SD" counter counters/a | jq -c .state)" '{"count":120}'

finish
