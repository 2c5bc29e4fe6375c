#!/bin/bash
# testing_switches.sh - the test switches exist only in the SL_TESTING build (STYLE
# "Test switches are compiled in only for tests"): the shipped sluice ignores
# SLUICE_CRASH_AT/SLUICE_CRASH_BATCH (a run with them set completes normally) and
# SLUICE_BUDGETS=off (a processor over its instruction budget is still stopped), while
# sluice-testing ($SLUICE_TESTING) honours both, so the checks would see a difference.
#
# Fixtures: tests/fixtures/runtime/tally.deploy.lua (batchSize 7) for the crash
# injection; for the budget, a processor "spin" (written here) whose reduce runs a
# bounded loop of some 3e6 instructions per event under a budget of 1e6.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
: "${SLUICE_TESTING:?set SLUICE_TESTING to the sluice-testing binary}"
S=$SLUICE

# ---- crash injection -------------------------------------------------------------------
# tally DIR: a fresh copy of the tally fixture, anchored, with 20 events on m/1.
tally() {
	cp -r "$SLUICE_SRC/tests/fixtures/runtime" "$1"
	$S run "$1/tally.deploy.lua" --until-caught-up >/dev/null 2>&1
	for ((i = 1; i <= 20; i++)); do printf '{"type":"t/inc","payload":{"by":1}}\n'; done |
		$S append m/1 --jsonl --deployment "$1/tally.deploy.lua" >/dev/null
}
offset() { $S state "$1/tally.deploy.lua" tally m/1 | jq -c '[.offset, .state.count]'; }
crash_run() {
	{ SLUICE_CRASH_AT=after-commit SLUICE_CRASH_BATCH=1 "$1" run "$2/tally.deploy.lua" \
		--until-caught-up >/dev/null 2>&1; echo $?; } 2>/dev/null
}

tally "$TMP/prod"
eq "sluice with SLUICE_CRASH_AT set runs to the end (exit 0)" "$(crash_run "$S" "$TMP/prod")" "0"
eq "and processed every event" "$(offset "$TMP/prod")" "[21,20]"
tally "$TMP/testing"
eq "sluice-testing with the same setting dies of SIGKILL" "$(crash_run "$SLUICE_TESTING" "$TMP/testing")" "137"
eq "after its first batch (7 events)" "$(offset "$TMP/testing")" "[7,6]"

# ---- SLUICE_BUDGETS=off ------------------------------------------------------------------
mkdir -p "$TMP/spin/schemas"
cat >"$TMP/spin/deploy.lua" <<'LUA'
return {
  store = "spin.db",
  schemas = { "schemas" },
  processors = {
    spin = { script = "spin.lua", streams = "s/*",
             limits = { instructions = 1e6, memory = "16MiB", wallclock = "60s" },
             retry = { attempts = 1, backoff = "1ms" } },
  },
}
LUA
cat >"$TMP/spin/spin.lua" <<'LUA'
return {
  contract = "spin",
  reduce = {
    ["s/go"] = function(state, event)
      local x = 0
      for i = 1, 1000000 do x = x + i end
      return { n = state.n + 1 }
    end,
  },
}
LUA
cat >"$TMP/spin/schemas/spin.contract.json" <<'JSON'
{
  "name": "spin",
  "version": 1,
  "consumes": ["s/go"],
  "emits": [],
  "events": {"s/go": {"type": "object"}},
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0}
}
JSON
cp -r "$TMP/spin" "$TMP/spin-testing"
for d in spin spin-testing; do $S append s/1 s/go '{}' --deployment "$TMP/$d/deploy.lua" >/dev/null; done
SLUICE_BUDGETS=off $S run "$TMP/spin/deploy.lua" --until-caught-up >/dev/null 2>"$TMP/spin.err"
eq "sluice with SLUICE_BUDGETS=off still stops a batch over budget (exit 1, faulted)" "$?" "1"
eq "its error is the instruction budget" \
   "$($S status "$TMP/spin/deploy.lua" | jq -r .lastError)" "processor 'spin' exceeded its instruction budget"
SLUICE_BUDGETS=off $SLUICE_TESTING run "$TMP/spin-testing/deploy.lua" --until-caught-up >/dev/null 2>&1
eq "sluice-testing with SLUICE_BUDGETS=off runs the same batch to the end" \
   "$?:$($S state "$TMP/spin-testing/deploy.lua" spin s/1 | jq -c .state.n)" "0:1"
finish
