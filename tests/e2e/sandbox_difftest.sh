#!/bin/bash
# sandbox_difftest.sh - the sandbox against stock Lua 5.4 (issue 10): a few thousand
# generated snippets calling the string, table, math and utf8 functions, load and some
# base functions (random patterns and arguments, fixed seed) run in stock lua5.4 and in
# a processor's processEvent hook; every result and error message must be the same.
# tests/fixtures/difftest/gen.lua generates them and says what is left out on purpose.
. "$(dirname "$0")/lib/testlib.sh"

: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
FIX=$SLUICE_SRC/tests/fixtures/difftest
D=$TMP/deploy.lua
cat >"$D" <<DEPLOY
return {
  store = "$TMP/store.db",
  durability = "normal",
  schemas = { "$FIX/schemas" },
  processors = {
    difftest = { script = "$FIX/difftest.lua", streams = "diff/*", batchSize = 1,
                 sideEffects = "all",
                 limits = { memory = "256MiB", wallclock = "60s" }, -- the default instructions
                 retry = { attempts = 1 } },
  },
}
DEPLOY

check "stock lua5.4 runs the generated snippets" lua5.4 "$FIX/gen.lua" gen "$TMP" 20261203 3000
$SLUICE append diff/1 --jsonl --deployment "$D" <"$TMP/events.jsonl" >/dev/null
eq "the snippet events are appended" "$?" "0"
timeout 120 $SLUICE run "$D" --until-caught-up >"$TMP/run.out" 2>"$TMP/run.err"
eq "sluice runs them in the sandbox (run exits 0)" "$?" "0"
$SLUICE events diff/1 --type difftest/results --deployment "$D" >"$TMP/results.jsonl"
if lua5.4 "$FIX/gen.lua" compare "$TMP" "$TMP/results.jsonl" >"$TMP/compare.out"; then
	pass "the sandbox gives stock Lua's results: $(tail -1 "$TMP/compare.out")"
else
	failt "the sandbox differs from stock Lua: $(tail -1 "$TMP/compare.out")"
	sed 's/^/#   /' "$TMP/compare.out" | head -130
	tail -5 "$TMP/run.err" | sed 's/^/#   /'
fi
finish
