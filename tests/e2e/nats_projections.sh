#!/bin/bash
# nats_projections.sh - ctx.db on a nats:// store (issue 14): projection tables live in
# the deployment's projection database (a SQLite file beside it), committed only after
# the batch's checkpoint compare-and-set succeeded. Shown here: rows and checkpoints
# agree after runs; a batch whose checkpoint cannot be written leaves no rows; a runner
# SIGKILLed between the checkpoint and the local commit (sluice-testing's
# SLUICE_CRASH_AT=projection-window) has its rows written on the next load from the
# checkpoint's statement log, exactly once and bit for bit (a double, text with a NUL
# byte); query() in the REPL reads the file; reset drops the tables there; and a
# database that is not where a row says its rows are gets a warning, not a replay.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/natslib.sh"
S=$SLUICE
T=$SLUICE_TESTING

if ! nats_have; then
	echo "# skipped: nats-server is not installed (make deps installs it); ctx.db on JetStream is untested"
	finish
	exit
fi
trap 'nats_stop_all; rm -rf "$TMP"' EXIT
nats_start main || { failt "nats-server started"; finish; exit; }
export SLUICE_STORE=$NATS_URL

mkdir -p "$TMP/schemas"
cat >"$TMP/schemas/ledger.contract.json" <<'EOF'
{ "name": "ledger", "version": 1, "consumes": ["l/entry"], "emits": [],
  "events": { "l/entry": {"type": "object", "properties": {
      "amount": {"type": "number"}, "note": {"type": "string"}, "pad": {"type": "integer"}}} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
# Plain INSERTs (no key): a batch whose rows were written twice shows as extra rows.
# pad makes the state too large for a JetStream message, so its checkpoint cannot be
# written.
cat >"$TMP/ledger.lua" <<'EOF'
return {
  contract = "ledger",
  prepare = function(ctx)
    ctx.db:exec("CREATE TABLE IF NOT EXISTS entries(stream TEXT, off INTEGER, amount REAL, note TEXT)")
  end,
  reduce = { ["l/entry"] = function(s, e)
    local n = { n = s.n + 1 }
    if e.payload.pad then n.pad = string.rep("x", e.payload.pad) end
    return n
  end },
  -- processEventBatch runs on rebuilds too: the place for projection rows
  processEventBatch = function(batch, ctx)
    for _, r in ipairs(batch.reduced) do
      local e = r.event
      ctx.db:exec("INSERT INTO entries VALUES (?, ?, ?, ?)",
        { e.stream, e.offset, e.payload.amount, (e.payload.note or "") .. "\0end" })
    end
  end,
}
EOF
D=$TMP/deploy.lua
PJ=$TMP/sluice.projections.db
cat >"$D" <<EOF
return { store = "$NATS_URL", schemas = { "schemas" },
  processors = { ledger = { script = "ledger.lua", streams = "l/*", retry = { attempts = 1 } } } }
EOF
rows() { sqlite3 "$PJ" "SELECT count(*) FROM entries WHERE stream = '$1'"; }
folded() { $S state "$D" ledger "$1" | jq -r '"\(.offset) \(.state.n)"'; }

# ---- rows and checkpoints agree --------------------------------------------------------
for i in 1 2 3; do $S append l/a l/entry "{\"amount\": 0.1, \"note\": \"a$i\"}" >/dev/null; done
$S append l/b l/entry '{"amount": 2.5}' >/dev/null
$S run "$D" --until-caught-up >/dev/null 2>"$TMP/err1"
eq "a run with ctx.db on JetStream succeeds" "$?" "0"
check "... and the projection database is beside the deployment" test -f "$PJ"
eq "every event has its row, once" "$(rows l/a) $(rows l/b)" "3 1"
eq "the checkpoints are where the rows are (offset 1 is stream/created)" "$(folded l/a), $(folded l/b)" "4 3, 2 1"
eq "the mark of each instance is its checkpoint offset" \
	"$(sqlite3 "$PJ" "SELECT offset FROM sl_proj_marks ORDER BY offset" | tr '\n' ' ')" "2 4 "
eq "the table belongs to the processor (sl_tables)" \
	"$(sqlite3 "$PJ" "SELECT processor FROM sl_tables WHERE name = 'entries'")" "ledger"

# ---- a batch whose checkpoint cannot be written leaves no rows -------------------------
$S append l/c l/entry '{"amount": 1}' >/dev/null
$S run "$D" --until-caught-up >/dev/null 2>&1
$S append l/c l/entry '{"amount": 1, "pad": 1200000}' >/dev/null
$S run "$D" --until-caught-up >/dev/null 2>"$TMP/err2"
eq "the batch whose checkpoint is too large faults" \
	"$($S status "$D" | jq -r 'select(.stream == "l/c") | .status')" "faulted"
eq "... and its row was rolled back with it" "$(rows l/c)" "1"
eq "... and its checkpoint did not move" "$(folded l/c)" "2 1"
$S resume "$D" ledger l/c --skip >/dev/null
$S run "$D" --until-caught-up >/dev/null 2>&1
eq "resume --skip dead-letters it, still without its row" \
	"$($S dead-letters "$D" | jq -r .offset) $(rows l/c)" "3 1"

# ---- the window between the checkpoint and the local commit ----------------------------
$S append l/a l/entry '{"amount": 0.30000000000000004, "note": "w"}' >/dev/null
SLUICE_CRASH_AT=projection-window $T run "$D" --until-caught-up >/dev/null 2>"$TMP/err3"
eq "sluice-testing is killed in the window (SIGKILL)" "$?" "137"
eq "the checkpoint of that batch is written" "$(folded l/a)" "5 4"
eq "... its row is not (yet)" "$(rows l/a)" "3"
$S run "$D" --until-caught-up >/dev/null 2>"$TMP/err4"
eq "the next run succeeds" "$?" "0"
check "... and says it wrote the missing rows from the checkpoint's log" \
	grep -q "written now from the checkpoint's log" "$TMP/err4"
eq "the row of the batch is there once" "$(rows l/a)" "4"
eq "the double went through exactly" \
	"$(sqlite3 "$PJ" "SELECT amount = 0.30000000000000004 FROM entries WHERE off = 5")" "1"
eq "text with a NUL byte went through exactly" \
	"$(sqlite3 "$PJ" "SELECT hex(note) FROM entries WHERE off = 5")" \
	"$(printf 'w\0end' | od -An -tx1 | tr -d ' \n' | tr a-f A-F)"
eq "the mark moved to the checkpoint" \
	"$(sqlite3 "$PJ" "SELECT max(offset) FROM sl_proj_marks")" "5"
$S run "$D" --until-caught-up >/dev/null 2>"$TMP/err5"
check "a run after that replays nothing" bash -c "! grep -q 'written now' '$TMP/err5'"
eq "... and adds no row" "$(rows l/a)" "4"

# ---- query() reads the projection database ---------------------------------------------
eq "query() in the REPL reads the rows" \
	"$($S repl "$D" -e 'query("ledger", "SELECT count(*) AS n FROM entries WHERE stream = ?", {"l/a"})' | jq -c '.[0].n')" "4"

# ---- a projection database that does not hold the rows a checkpoint says --------------
mv "$PJ" "$TMP/moved.db"
rm -f "$PJ-wal" "$PJ-shm"
$S append l/a l/entry '{"amount": 1}' >/dev/null
$S run "$D" --until-caught-up >/dev/null 2>"$TMP/err6"
check "a runner whose database lacks the rows warns, naming the file" \
	grep -q "the projection rows of this instance up to offset 5 are not in '$PJ'" "$TMP/err6"
eq "... and replays no log onto rows it does not have" "$(rows l/a)" "1"
mv "$TMP/moved.db" "$PJ"
rm -f "$TMP/moved.db-wal" "$TMP/moved.db-shm"

# ---- reset of the processor drops its tables there -------------------------------------
$S reset "$D" ledger >/dev/null
eq "reset drops the processor's tables in the projection database" \
	"$(sqlite3 "$PJ" "SELECT count(*) FROM sqlite_schema WHERE name = 'entries'")" "0"
eq "... forgets them and its marks" \
	"$(sqlite3 "$PJ" "SELECT (SELECT count(*) FROM sl_tables) + (SELECT count(*) FROM sl_proj_marks)")" "0"
$S run "$D" --until-caught-up >/dev/null 2>&1
eq "the rebuild writes every row once" "$(rows l/a) $(folded l/a)" "5 6 5"

# ---- the setting -----------------------------------------------------------------------
cat >"$TMP/sq.lua" <<EOF
return { store = "x.db", projections = "p.db", processors = {} }
EOF
refuses "projections on a SQLite store is refused" "/projections: applies only to a nats:// store" \
	$S check "$TMP/sq.lua"
sed -e "s|schemas = |projections = \"elsewhere/p.db\", schemas = |" "$D" >"$TMP/d2.lua"
mkdir -p "$TMP/elsewhere"
$S reset "$TMP/d2.lua" ledger >/dev/null
$S run "$TMP/d2.lua" --until-caught-up >/dev/null 2>&1
eq "projections names the file, relative to the deployment" \
	"$(sqlite3 "$TMP/elsewhere/p.db" "SELECT count(*) FROM entries")" "7"
finish
