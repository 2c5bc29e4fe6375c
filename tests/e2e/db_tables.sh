#!/bin/bash
# db_tables.sh - ctx.db tables, views and parameters (issue 10, item 6): a table name
# another processor owns is refused naming that processor; CREATE INDEX and CREATE
# VIEW on the processor's own tables work, and a view is its own (reset drops it with
# the tables); a nil among the parameters binds SQL NULL, also when the batch waits on
# blocking work and its ctx.db writes are replayed. On a nats:// store (nats_store.sh
# runs it there) the tables are in the projection database beside the deployment.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
D=$TMP/deploy.lua
STORE=$(test_store store.db)
case $STORE in
nats://*) DB=$TMP/sluice.projections.db ;;
*) DB=$TMP/store.db ;;
esac
mkdir -p "$TMP/schemas"
for name in alpha beta; do
	cat >"$TMP/schemas/$name.contract.json" <<EOF
{ "name": "$name", "version": 1, "consumes": ["t/row"], "emits": [],
  "events": { "t/row": {"type": "object"} },
  "state": {"type": "object"}, "initialState": {} }
EOF
done
cat >"$TMP/alpha.lua" <<'EOF'
return {
  contract = "alpha",
  prepare = function(ctx)
    ctx.db:exec("CREATE TABLE IF NOT EXISTS orders(id INTEGER, note TEXT, qty INTEGER)")
    ctx.db:exec("CREATE INDEX IF NOT EXISTS orders_by_note ON orders(note)")
    ctx.db:exec("CREATE VIEW IF NOT EXISTS big_orders AS SELECT id FROM orders WHERE qty > 1")
  end,
  processEventBatch = function(batch, ctx)
    for _, r in ipairs(batch.reduced) do
      ctx.db:exec("INSERT INTO orders VALUES (?, ?, ?)", { r.event.offset, nil, r.event.offset })
      ctx.db:exec("INSERT INTO orders VALUES (:id, :note, :qty)", { id = -r.event.offset, qty = 0 })
    end
    -- a wait: the writes above are replayed when the batch commits
    ctx.block(function() ctx.sleep(1) end)
  end,
}
EOF
cat >"$TMP/beta.lua" <<'EOF'
return {
  contract = "beta",
  processEventBatch = function(batch, ctx)
    ctx.db:exec("CREATE TABLE IF NOT EXISTS orders(x)")
  end,
}
EOF
cat >"$D" <<EOF
return { store = "$STORE", schemas = { "schemas" },
  processors = {
    alpha = { script = "alpha.lua", streams = "r/*", sideEffects = "all" },
    beta = { script = "beta.lua", streams = "r/*", retry = { attempts = 1 } },
  } }
EOF
# alpha alone first (so its tables exist), then both.
sed '/beta = /d' "$D" >"$TMP/alpha_only.lua"
$S append r/1 t/row >/dev/null
$S append r/1 t/row >/dev/null
$S run "$TMP/alpha_only.lua" --until-caught-up >/dev/null 2>"$TMP/err"
eq "alpha's run succeeds" "$?" "0"
$S run "$D" --until-caught-up >/dev/null 2>"$TMP/err"
eq "with beta, the run ends with beta faulted (exit 1)" "$?" "1"
eq "beta's CREATE of alpha's table is refused naming its owner" \
	"$($S status "$D" | jq -r 'select(.processor == "beta") | .lastError' | grep -o "ctx.db: table 'orders' belongs to processor 'alpha'.*")" \
	"ctx.db: table 'orders' belongs to processor 'alpha' (each processor's tables are its own: choose another name)"
eq "alpha ran: nil and absent parameters bound SQL NULL (replayed after the wait)" \
	"$(sqlite3 "$DB" "SELECT id, coalesce(note, 'NULL'), qty FROM orders ORDER BY id" | tr '\n' ' ')" \
	"-3|NULL|0 -2|NULL|0 2|NULL|2 3|NULL|3 "
eq "its index exists" "$(sqlite3 "$DB" "SELECT count(*) FROM sqlite_schema WHERE name = 'orders_by_note'")" "1"
eq "its view works" "$(sqlite3 "$DB" "SELECT id FROM big_orders ORDER BY id" | tr '\n' ' ')" "2 3 "
eq "the view is alpha's" "$(sqlite3 "$DB" "SELECT processor FROM sl_tables WHERE name = 'big_orders'")" "alpha"
$S reset "$D" alpha
eq "reset drops alpha's tables and its view" \
	"$(sqlite3 "$DB" "SELECT count(*) FROM sqlite_schema WHERE name IN ('orders', 'big_orders', 'orders_by_note')")" "0"
eq "and forgets them" "$(sqlite3 "$DB" "SELECT count(*) FROM sl_tables WHERE processor = 'alpha'")" "0"
finish
