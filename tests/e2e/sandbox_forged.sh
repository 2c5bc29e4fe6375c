#!/bin/bash
# sandbox_forged.sh - the engine's own decisions come from its C-side copy of each
# event, never from a table a hook can write (issue 10, item 2): a reduce that
# rewrites the event it was given (type, stream, offset) does not change which
# processEvent handler runs, the source its appends name, nor ctx.stream in mode
# "all"; a processEventBatch override that rewrites batch.reduced (sideEffects, the
# events' types) before ctx.fanOut() does not make processEvent run for events the
# engine decided have no side effects (below the side-effect anchor).
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
mkdir -p "$TMP/schemas"
cat >"$TMP/schemas/forger.contract.json" <<'EOF'
{ "name": "forger", "version": 1, "consumes": ["t/real", "forged/type"],
  "emits": ["t/seen", "t/forged"],
  "events": { "t/real": {"type": "object"}, "forged/type": {"type": "object"},
              "t/seen": {"type": "object"}, "t/forged": {"type": "object"} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
# Both handlers append; only the real type's may run. The appended payload records
# what the engine told the hook (ctx.stream) beside the event table's own fields.
handlers='
  processEvent = {
    ["t/real"] = function(event, ctx)
      ctx.append("t/seen", { stream = ctx.stream or "", offset = event.offset },
                 { stream = "out/seen" })
    end,
    ["forged/type"] = function(event, ctx)
      ctx.append("t/forged", {}, { stream = "out/forged" })
    end,
  },'
forge='function(s, e) e.type = "forged/type"; e.stream = "x/forged"; e.offset = 999;
    return { n = s.n + 1 } end'
cat >"$TMP/each.lua" <<EOF
return { contract = "forger", reduce = { ["t/real"] = $forge }, $handlers }
EOF
cat >"$TMP/all.lua" <<EOF
return { contract = "forger", reduce = { ["t/real"] = $forge }, $handlers }
EOF
cat >"$TMP/batch.lua" <<EOF
return {
  contract = "forger",
  reduce = { ["t/real"] = function(s) return { n = s.n + 1 } end },
  processEventBatch = function(batch, ctx)
    for _, r in ipairs(batch.reduced) do
      r.sideEffects = true
      r.event.type = "forged/type"
    end
    ctx.fanOut()
  end,
  $handlers
}
EOF
deployment() {
	cat >"$TMP/$1.deploy.lua" <<EOF
return { store = "$1.db", schemas = { "schemas" },
  processors = { p = { script = "$1.lua", streams = "in/*" $2 } } }
EOF
}
deployment each ""
deployment all ', mode = "all"'
deployment batch ""

for d in each all; do
	# The first run stores the anchor; events appended after it have side effects.
	$S run "$TMP/$d.deploy.lua" --until-caught-up >/dev/null 2>&1
	for i in 1 2 3; do $S append --store "$TMP/$d.db" in/a t/real >/dev/null; done
	$S run "$TMP/$d.deploy.lua" --until-caught-up 2>"$TMP/$d.err" >/dev/null
	eq "$d: the run succeeds" "$?" "0"
	eq "$d: the real type's handler ran once per event" \
		"$($S events --store "$TMP/$d.db" out/seen --type t/seen | wc -l)" "3"
	eq "$d: the forged type's handler never ran" \
		"$($S events --store "$TMP/$d.db" out/forged 2>/dev/null | grep -c t/forged)" "0"
	eq "$d: the appends name the real source stream and offsets" \
		"$($S events --store "$TMP/$d.db" out/seen --type t/seen |
			jq -r '.metadata.source | "\(.stream)@\(.offset)"' | tr '\n' ' ')" \
		"in/a@2 in/a@3 in/a@4 "
	stream=in/a
	[ "$d" = all ] && stream=
	eq "$d: the state counts every event" \
		"$($S state "$TMP/$d.deploy.lua" p $stream | jq .state.n)" "3"
done
eq "all: ctx.stream is the event's real stream" \
	"$($S events --store "$TMP/all.db" out/seen --type t/seen | jq -r .payload.stream | sort -u)" \
	"in/a"

# Events before the anchor have no side effects, whatever the override writes.
for i in 1 2; do $S append --store "$TMP/batch.db" in/b t/real >/dev/null; done
$S run "$TMP/batch.deploy.lua" --until-caught-up >/dev/null 2>"$TMP/batch.err"
eq "batch: the first run succeeds" "$?" "0"
eq "batch: no processEvent ran for the events before the anchor" \
	"$($S events --store "$TMP/batch.db" out/seen 2>/dev/null | grep -c t/seen)" "0"
$S append --store "$TMP/batch.db" in/b t/real >/dev/null
$S run "$TMP/batch.deploy.lua" --until-caught-up >/dev/null 2>>"$TMP/batch.err"
eq "batch: after the anchor, the real type's handler runs once" \
	"$($S events --store "$TMP/batch.db" out/seen --type t/seen | wc -l)" "1"
eq "batch: the forged type's handler never ran" \
	"$($S events --store "$TMP/batch.db" out/forged 2>/dev/null | grep -c t/forged)" "0"
finish
