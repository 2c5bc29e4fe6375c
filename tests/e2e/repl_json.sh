#!/bin/bash
# repl_json.sh - `sluice repl` off a terminal (issue 11): stdin or -e CODE, one JSON
# line per result, the first error printed as `sluice: <message>` with exit 1. Every
# helper runs on a deployment with a per-stream processor (counter) and a mode "all"
# one (total), and its result is checked against the CLI's view of the same store.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
S=$SLUICE
D=$TMP/deploy.lua
mkdir -p "$TMP/schemas"
cat >"$TMP/schemas/total.contract.json" <<'EOF'
{ "name": "total", "version": 1, "consumes": ["counter/incremented"], "emits": [],
  "imports": ["counter"], "events": {},
  "state": {"type": "object", "required": ["sum"], "properties": {"sum": {"type": "integer"}}},
  "initialState": {"sum": 0} }
EOF
cat >"$TMP/total.lua" <<'EOF'
return { contract = "total",
  reduce = { ["counter/incremented"] = function(s, e) return { sum = s.sum + e.payload.by } end } }
EOF
cat >"$TMP/schemas/proj.contract.json" <<'EOF'
{ "name": "proj", "version": 1, "consumes": ["counter/incremented"], "emits": [],
  "imports": ["counter"], "events": {},
  "state": {"type": "object"}, "initialState": {} }
EOF
cat >"$TMP/proj.lua" <<'EOF'
return { contract = "proj",
  prepare = function(ctx) ctx.db:exec("CREATE TABLE IF NOT EXISTS bys(stream TEXT, n INTEGER)") end,
  processEventBatch = function(batch, ctx)
    for _, r in ipairs(batch.reduced) do
      ctx.db:exec("INSERT INTO bys VALUES (?, ?)", { r.event.stream, r.event.payload.by })
    end
  end }
EOF
cat >"$D" <<EOF
return { store = "store.db", schemas = { "schemas", "$SLUICE_SRC/schemas" },
  processors = {
    counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" },
    total = { script = "total.lua", streams = "counters/*", mode = "all" },
    proj = { script = "proj.lua", streams = "counters/*" },
  } }
EOF
$S run "$D" --until-caught-up >/dev/null 2>&1
for by in 2 3; do $S append counters/a counter/incremented "{\"by\":$by}" --deployment "$D" >/dev/null; done
$S append counters/b counter/incremented '{"by":10}' --deployment "$D" >/dev/null
$S run "$D" --until-caught-up >/dev/null 2>&1
r() { $S repl "$D" -e "$1"; }

eq "-e prints one JSON line" "$(r 'state("counter", "counters/a")')" '{"count":5}'
eq "state of a mode all processor takes no stream" "$(r 'state("total")')" '{"sum":15}'
eq "state without a stream in mode each: every instance by stream" \
	"$(r 'state("counter")' | jq -c .)" '{"counters/a":{"count":5},"counters/b":{"count":10}}'
eq "processors(): name, contract, version, streams, mode, status" \
	"$(r 'processors()' | jq -c 'map([.name, .contract, .version, .streams, .mode, .status])')" \
	'[["counter","counter",1,"counters/*","each","ok"],["proj","proj",1,"counters/*","each","ok"],["total","total",1,"counters/*","all","ok"]]'
eq "instances(p): stream, offset, head, lag, status" \
	"$(r 'instances("counter")' | jq -c 'map([.stream, .offset, .head, .lag, .status])')" \
	'[["counters/a",3,3,0,"ok"],["counters/b",2,2,0,"ok"]]'
eq "instances(p, prefix)" "$(r 'instances("counter", "counters/b")' | jq -c 'map(.stream)')" '["counters/b"]'
eq "query(p, sql, params) reads the processor's own table" \
	"$(r 'query("proj", "SELECT stream, n FROM bys WHERE n >= ? ORDER BY n", {3})' | jq -c 'map([.stream, .n])')" \
	'[["counters/a",3],["counters/b",10]]'
out=$(r 'query("proj", "DELETE FROM bys")' 2>&1)
eq "query refuses a write (exit 1)" "$?:$out" "1:sluice: query: query is read-only (only SELECT on the processor's own tables)"
out=$(r 'query("proj", "SELECT * FROM sl_events")' 2>&1)
eq "and the engine's tables" "$out" "sluice: query: table 'sl_events' does not belong to processor 'proj'"
eq "the table is intact" "$(r 'query("proj", "SELECT count(*) AS n FROM bys")')" '[{"n":3}]'
eq "status() is sluice status" "$(r 'status()' | jq -c 'map([.processor, .stream, .offset])')" \
	"$($S status "$D" | jq -cs 'map([.processor, .stream, .offset])')"
eq "streams(prefix) is sluice streams" "$(r 'streams("counters")' | jq -c 'map(.stream)')" \
	"$($S streams counters --deployment "$D" | jq -cs 'map(.stream)')"
eq "events(stream): the stream's events" "$(r 'events("counters/a")' | jq -c 'map(.type)')" \
	'["stream/created","counter/incremented","counter/incremented"]'
eq "events(stream, {from=, limit=})" "$(r 'events("counters/a", {from = 2, limit = 1})' | jq -c 'map(.offset)')" '[2]'
eq "append(...) appends and answers {stream, offset, position}" \
	"$(r 'append("counters/a", "counter/incremented", {by = 1})' | jq -c '[.stream, .offset]')" '["counters/a",4]'
eq "the event is in the store" "$($S events counters/a --deployment "$D" --from 4 | jq -c .payload)" '{"by":1}'
eq "several statements, one result each (stdin)" \
	"$(printf 'local a = 2\nfunction sq(x)\n  return x * x\nend\nreturn sq(3), "x"\n1 + 1\n' | $S repl "$D" | tr '\n' ' ')" \
	'9 "x" 2 '
eq "reset(p, stream)" "$(r 'reset("counter", "counters/b")')" 'true'
eq "it reset the instance" "$($S status "$D" | jq -c 'select(.processor == "counter" and .stream == "counters/b") | .offset')" '0'
eq "resume(p) of nothing faulted" "$(r 'resume("counter")')" 'true'
eq "deadLetters() is an array" "$(r 'deadLetters()')" '[]'
eq "check()" "$(r 'check()')" 'true'
check "help() lists every helper" bash -c "$S repl '$D' -e 'help()' | jq -r . | grep -q 'deadLetters()'"

# ---- dryRun, stateAt, lineage ------------------------------------------------------------------
rows() {
	sqlite3 "$TMP/store.db" "SELECT count(*), max(position) FROM sl_events;
		SELECT processor, stream, \"offset\", state, effects_mark FROM sl_checkpoints ORDER BY 1, 2;"
}
before=$(rows)
dry=$(r 'dryRun("counter", "counters/c", "counter/incremented", {by = 150})')
eq "dryRun shows the previous and the new state" "$(jq -c '[.previousState, .state]' <<<"$dry")" '[{"count":0},{"count":150}]'
eq "and the would-be milestone" "$(jq -c '.emits | map([.type, .stream, .payload.count])' <<<"$dry")" '[["counter/milestone","counters/c",150]]'
eq "and commits nothing: events and checkpoints as they were" "$(rows)" "$before"
eq "dryRun of a type the processor does not consume: the state stays" \
	"$(r 'dryRun("counter", "counters/a", "other/type", {})' | jq -c '[.previousState, .state, .emits]')" '[{"count":5},{"count":5},[]]'
# stateAt against a fresh run over the first k offsets of counters/a (created, 2, 3, 1).
for by in 100 1; do $S append counters/a counter/incremented "{\"by\":$by}" --deployment "$D" >/dev/null; done
$S run "$D" --until-caught-up >/dev/null 2>&1
sed 's|store = "store.db"|store = "fresh.db"|' "$D" >"$TMP/fresh.lua"
for k in 2 3 5; do
	rm -f "$TMP"/fresh.db*
	$S run "$TMP/fresh.lua" --until-caught-up >/dev/null 2>&1
	$S events counters/a --deployment "$D" --limit "$k" | jq -c 'select(.type == "counter/incremented") | {stream, type, payload}' |
		$S append --jsonl --deployment "$TMP/fresh.lua" >/dev/null
	$S run "$TMP/fresh.lua" --until-caught-up >/dev/null 2>&1
	eq "stateAt(counter, counters/a, $k) equals a fresh run over its first $k offsets" \
		"$(r "stateAt(\"counter\", \"counters/a\", $k)")" "$($S state "$TMP/fresh.lua" counter counters/a | jq -c .state)"
done
eq "stateAt of a mode all processor takes a position" "$(r 'stateAt("total", 4)')" '{"sum":2}'
milestone=$($S events counters/a --deployment "$D" --type counter/milestone | jq -c '[.offset, .metadata.source.offset]')
m_off=$(jq '.[0]' <<<"$milestone")
src_off=$(jq '.[1]' <<<"$milestone")
eq "lineage of the emitted milestone names its source" \
	"$(r "lineage(\"counters/a\", $m_off)" | jq -c '.causes | map([.stream, .offset])')" "[[\"counters/a\",$src_off]]"
eq "and the source's effects include it" \
	"$(r "lineage(\"counters/a\", $src_off)" | jq -c '.effects | map([.type, .offset])')" "[[\"counter/milestone\",$m_off]]"
check "tail follows appends until stopped" bash -c "timeout 2 $S repl '$D' -e 'tail(\"counters/*\", {from = 1})' | grep -q counter/milestone"

# ---- errors ----------------------------------------------------------------------------------
out=$($S repl "$D" -e 'state("nosuch")' 2>&1)
eq "an error exits 1" "$?" "1"
eq "printing 'sluice: <message>'" "$out" "sluice: unknown processor 'nosuch' (not in $D)"
out=$(printf '1\nerror("stop here")\n2\n' | $S repl "$D" 2>&1)
eq "on stdin the first error stops (exit 1)" "$?" "1"
eq "after the results before it" "$out" '1
sluice: stdin:1: stop here'
out=$(printf 'function broken(\n' | $S repl "$D" 2>&1)
eq "an unfinished chunk at the end is an error" "$?" "1"
out=$($S repl -e 'streams()' --store "$TMP/store.db" 2>&1)
check "without a deployment the store helpers still work (SLUICE_STORE)" \
	bash -c "SLUICE_STORE='$TMP/store.db' $S repl -e 'streams()' | jq -e 'length > 0' >/dev/null"
out=$(SLUICE_STORE="$TMP/store.db" $S repl -e 'status()' 2>&1)
eq "and a deployment helper says it needs one" "$?:$out" "1:sluice: status: no deployment (start \`sluice repl DEPLOYMENT\`)"
finish
