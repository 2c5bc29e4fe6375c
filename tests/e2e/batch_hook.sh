#!/bin/bash
# batch_hook.sh - processEventBatch as the README documents it (issue 10, item 11):
# the README's example (a ctx.db projection row per order, then ctx.fanOut) runs and
# rebuilds; an error inside processEventBatch names the instance and the batch's
# range; with --strict an override that appends in a batch with an entry whose
# sideEffects is false is warned about once per batch, and appends made by
# processEvent through ctx.fanOut are not.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
mkdir -p "$TMP/schemas"
cat >"$TMP/schemas/orders.contract.json" <<'EOF'
{ "name": "orders", "version": 1, "consumes": ["order/added"], "emits": ["order/seen"],
  "events": { "order/added": {"type": "object", "required": ["amount"],
                              "properties": {"amount": {"type": "integer"}}},
              "order/seen": {"type": "object"} },
  "state": {"type": "object", "required": ["total"], "properties": {"total": {"type": "integer"}}},
  "initialState": {"total": 0} }
EOF
# The README's example, with the reduce and processEvent it needs.
cat >"$TMP/orders.lua" <<'EOF'
return {
  contract = "orders",
  reduce = { ["order/added"] = function(s, e) return { total = s.total + e.payload.amount } end },
  processEvent = { ["order/added"] = function(event, ctx)
    ctx.append("order/seen", {}, { stream = "seen/" .. event.stream:match("[^/]+$") })
  end },
  processEventBatch = function(batch, ctx)
    for _, r in ipairs(batch.reduced) do     -- a projection row per order, rebuilt too
      ctx.db:exec("INSERT OR REPLACE INTO orders(id, total) VALUES (?, ?)",
                  { r.event.stream, r.state.total })
    end
    ctx.fanOut()                             -- processEvent for the entries with side effects
  end,
  prepare = function(ctx)
    ctx.db:exec("CREATE TABLE IF NOT EXISTS orders(id TEXT PRIMARY KEY, total INTEGER)")
  end,
}
EOF
# An override that appends itself, ignoring sideEffects.
sed -e 's|    ctx.fanOut()                             -- processEvent.*|    ctx.append("order/seen", {}, { stream = "direct/x" })|' "$TMP/orders.lua" >"$TMP/direct.lua"
# One whose processEventBatch fails.
cat >"$TMP/failing.lua" <<'EOF'
return {
  contract = "orders",
  reduce = { ["order/added"] = function(s, e) return { total = s.total + e.payload.amount } end },
  processEventBatch = function(batch, ctx) error("no projection today", 0) end,
}
EOF
# Each deployment has a store of its own: a file, or (nats_store.sh) a namespace of the
# server, whose ctx.db tables are then in <namespace>.projections.db beside it.
where() {
	if [ -n "${SL_TEST_STORE:-}" ]; then
		printf 'store = "%s", namespace = "%s"' "$SL_TEST_STORE" "$1"
	else
		printf 'store = "%s.db"' "$1"
	fi
}
tables() { if [ -n "${SL_TEST_STORE:-}" ]; then echo "$TMP/$1.projections.db"; else echo "$TMP/$1.db"; fi; }
deployment() {
	cat >"$TMP/$1.deploy.lua" <<EOF
return { $(where "$1"), schemas = { "schemas" },
  processors = { p = { script = "$1.lua", streams = "orders/*", retry = { attempts = 1 } } } }
EOF
}
for d in orders direct failing; do deployment $d; done
add() { $S append "$2" order/added "{\"amount\":$3}" --deployment "$TMP/$1.deploy.lua" >/dev/null; }

# ---- the README's example --------------------------------------------------------------
add orders orders/7 5
$S run "$TMP/orders.deploy.lua" --until-caught-up --strict 2>"$TMP/orders.err" >/dev/null
eq "the example runs (--strict)" "$?" "0"
add orders orders/7 7
$S run "$TMP/orders.deploy.lua" --until-caught-up --strict 2>>"$TMP/orders.err" >/dev/null
eq "and runs again" "$?" "0"
eq "its projection row has the state's total" \
	"$(sqlite3 "$(tables orders)" "SELECT id, total FROM orders" 2>/dev/null)" "orders/7|12"
eq "ctx.fanOut ran processEvent for the event after the anchor only" \
	"$($S events seen/7 --type order/seen --deployment "$TMP/orders.deploy.lua" | wc -l)" "1"
check "no strict warning for appends made through ctx.fanOut" \
	bash -c "! grep -q 'strict: processEventBatch appended' '$TMP/orders.err'"

# ---- an override appending for an entry without side effects -----------------------------
add direct orders/1 1
add direct orders/1 2
$S run "$TMP/direct.deploy.lua" --until-caught-up --strict --log-format text 2>"$TMP/direct.err" >/dev/null
eq "the override's batch commits (a warning, not a failure)" "$?" "0"
check "--strict warns, naming the first entry without side effects" \
	grep -q "warn p orders/1: strict: processEventBatch appended 'order/seen' in a batch whose reduced\[1\] has sideEffects = false" "$TMP/direct.err"
eq "once per batch" "$(grep -c 'strict: processEventBatch appended' "$TMP/direct.err")" "1"
add direct orders/1 3
$S run "$TMP/direct.deploy.lua" --until-caught-up --log-format text 2>"$TMP/direct2.err" >/dev/null
check "without --strict, no warning" bash -c "! grep -q 'strict:' '$TMP/direct2.err'"

# ---- an error inside processEventBatch ------------------------------------------------------
add failing orders/9 1
add failing orders/9 2
$S run "$TMP/failing.deploy.lua" --until-caught-up --log-format text 2>"$TMP/failing.err" >/dev/null
eq "the run ends faulted (exit 1)" "$?" "1"
check "the error names the instance and the batch's range" \
	grep -q "processor 'p' failed in processEventBatch on orders/9@2..3: no projection today" "$TMP/failing.err"
eq "status shows it as lastError" \
	"$($S status "$TMP/failing.deploy.lua" | jq -r 'select(.stream == "orders/9") | .lastError')" \
	"processor 'p' failed in processEventBatch on orders/9@2..3: no projection today"
finish
