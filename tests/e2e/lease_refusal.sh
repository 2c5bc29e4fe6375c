#!/usr/bin/env bash
# lease_refusal.sh - `reset` and `resume` never race a runner (DESIGN §8): while a
# live lease holds a processor both exit 1 with `sluice: processor 'counter' is
# running (<owner>); use the console or stop it` and write nothing; `status` names the
# lease's owner as `runner` (null once the lease expired or was released) and carries
# `rate` and `reloadError` after the older fields; once the lease expired or was
# released, reset and resume work again. Another processor's lease is its own.
#
# The lease is held without a runner: sluice.core has no lease calls, and a real
# `sluice run` would process events and move the rows this test checks stay put. So
# the test writes the lease row itself with sqlite3, as a runner's lease keeper would
# (sl_leases: processor, owner, epoch, expires_at in ms since the Unix epoch).
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
D=$TMP/deploy.lua
DB=$TMP/store.db
OWNER="4242@testhost-9f3a"
mkdir -p "$TMP/schemas" "$TMP/procs"
cat >"$TMP/schemas/counter.contract.json" <<'EOF'
{ "name": "counter", "version": 1,
  "consumes": ["c/inc"], "emits": [],
  "events": { "c/inc": {"type": "object", "properties": {"boom": {"type": "boolean"}}} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
cat >"$TMP/procs/counter.lua" <<'EOF'
return {
  contract = "counter",
  reduce = { ["c/inc"] = function(s) return { n = s.n + 1 } end },
  processEvent = {
    ["c/inc"] = function(event) if event.payload.boom then error("boom") end end,
  },
}
EOF
cat >"$D" <<EOF
return {
  store = "$DB", durability = "normal", schemas = { "$TMP/schemas" },
  processors = {
    counter = { script = "$TMP/procs/counter.lua", streams = "c/*", sideEffects = "all",
                retry = { attempts = 1, backoff = "10ms" } },
    other = { script = "$TMP/procs/counter.lua", streams = "c/*" },
  },
}
EOF

now_ms() { date +%s%3N; }
# lease OWNER EXPIRES_AT: writes counter's lease row, as a lease keeper taking it would.
lease() {
	sqlite3 -cmd ".timeout 10000" "$DB" \
		"INSERT INTO sl_leases(processor, owner, epoch, expires_at) VALUES ('counter', '$1', 1, $2)
		 ON CONFLICT(processor) DO UPDATE SET owner = excluded.owner, epoch = epoch + 1,
		 expires_at = excluded.expires_at"
}
# release: gives it up, as a runner stopping cleanly does (owner '', epoch kept).
release() { sqlite3 -cmd ".timeout 10000" "$DB" "UPDATE sl_leases SET owner = '', expires_at = 0 WHERE processor = 'counter'"; }
# rows: every row reset and resume could write, in a fixed order.
rows() {
	sqlite3 -cmd ".timeout 10000" "$DB" \
		"SELECT * FROM sl_checkpoints ORDER BY processor, stream;
		 SELECT name, version, anchor, script_hash, contract_hash FROM sl_processors ORDER BY name;
		 SELECT processor, stream, \"offset\" FROM sl_dead_letters ORDER BY id;
		 SELECT count(*), max(position) FROM sl_events;"
}
status_of() { $S status "$D" | jq -c --arg p "$1" --arg s "$2" "select(.processor == \$p and .stream == \$s) | $3"; }
runner_null() { [ "$(status_of counter c/a .runner)" = null ]; }
MSG="^sluice: processor 'counter' is running \\($OWNER\\); use the console or stop it\$"

# A run with a healthy instance (c/a) and a faulted one (c/bad).
$S run "$D" --until-caught-up 2>/dev/null                     # sets the side-effect anchors
for _ in 1 2 3; do $S append c/a c/inc --deployment "$D" >/dev/null; done
$S append c/bad c/inc '{"boom":true}' --deployment "$D" >/dev/null
$S run "$D" --until-caught-up 2>/dev/null
eq "the run ends with c/bad faulted (exit 1)" "$?" "1"
eq "c/a folded its events" "$(status_of counter c/a '[.offset, .status]')" '[4,"ok"]'
eq "c/bad is faulted" "$(status_of counter c/bad .status)" '"faulted"'
eq "nobody runs counter now" "$(status_of counter c/a .runner)" null
$S append c/b c/inc --deployment "$D" >/dev/null               # an instance no run saw yet

# ---- a live lease: every reset and resume of counter is refused -----------------------
lease "$OWNER" $(($(now_ms) + 600000))
BEFORE=$(rows)
STATE=$($S state "$D" counter c/a)
refuses "reset is refused while a runner holds the processor" "$MSG" $S reset "$D" counter
eq "with exactly the documented message" "$(cat "$TMP/err")" \
   "sluice: processor 'counter' is running ($OWNER); use the console or stop it"
refuses "reset of one instance is refused" "$MSG" $S reset "$D" counter c/a
refuses "reset --with-effects is refused" "$MSG" $S reset "$D" counter --with-effects
refuses "resume is refused" "$MSG" $S resume "$D" counter
refuses "resume of the faulted instance is refused" "$MSG" $S resume "$D" counter c/bad
refuses "resume --skip is refused" "$MSG" $S resume "$D" counter c/bad --skip
eq "nothing was written: checkpoints, processors, dead letters, events" "$(rows)" "$BEFORE"
eq "the state is the same" "$($S state "$D" counter c/a)" "$STATE"
eq "c/bad is still faulted" "$(status_of counter c/bad .status)" '"faulted"'

# status names the owner on every line of counter, and only there.
eq "status shows runner = the lease's owner on every counter line" \
   "$($S status "$D" | jq -r 'select(.processor == "counter") | .runner' | sort -u)" "$OWNER"
eq "another processor's lines show runner null" \
   "$($S status "$D" | jq -c 'select(.processor == "other") | .runner' | sort -u)" null
eq "the new fields come after the older ones, in this order" \
   "$($S status "$D" | jq -c 'keys_unsorted' | sort -u)" \
   '["processor","stream","offset","head","lag","status","lastError","backgroundFailures","runner","rate","reloadError"]'
# (the run that just ended recorded its last rates: a number, fading to 0 after 3 s)
eq "rate is a number" "$(status_of counter c/a '.rate | type == "number" and . >= 0')" true
eq "rate is 0 for an instance no runner recorded one for" "$(status_of counter c/b .rate)" 0
eq "reloadError is null without a failed reload" "$(status_of counter c/a .reloadError)" null
# A failed hot reload's error, as a runner records it, shows on that processor's lines.
sqlite3 -cmd ".timeout 10000" "$DB" \
	"INSERT INTO sl_reload_errors(processor, message) VALUES ('counter', 'reload: procs/counter.lua:3: boom')"
eq "reloadError shows the stored reload error" \
   "$(status_of counter c/a .reloadError)" '"reload: procs/counter.lua:3: boom"'
eq "and only for its processor" "$(status_of other c/a .reloadError)" null
sqlite3 -cmd ".timeout 10000" "$DB" "DELETE FROM sl_reload_errors"

# The lease is per processor: the other one is not held.
$S reset "$D" other c/a >/dev/null 2>"$TMP/err"
eq "reset of another processor works meanwhile" "$?" "0"
eq "and leaves counter's rows alone" "$(rows | grep '^counter|')" "$(printf '%s\n' "$BEFORE" | grep '^counter|')"

# ---- the lease expires: resume and reset work -----------------------------------------
lease "$OWNER" $(($(now_ms) + 1000))
refuses "a lease about to expire still refuses" "$MSG" $S resume "$D" counter c/bad
check "once it expired, status shows runner null" wait_until 10 runner_null
$S resume "$D" counter c/bad >/dev/null 2>"$TMP/err"
eq "resume works once the lease expired" "$?" "0"
eq "and clears the fault" "$(status_of counter c/bad .status)" '"new"'
$S reset "$D" counter c/a >/dev/null 2>"$TMP/err"
eq "reset works once the lease expired" "$?" "0"
eq "and discards the state" "$($S state "$D" counter c/a | jq -c '[.offset, .status, .state]')" \
   '[0,"new",{"n":0}]'

# ---- taken again, then released: refused, then reset works ----------------------------
lease "$OWNER" $(($(now_ms) + 600000))
refuses "a new lease refuses reset again" "$MSG" $S reset "$D" counter
release
eq "a released lease shows runner null" "$(status_of counter c/a .runner)" null
$S reset "$D" counter >/dev/null 2>"$TMP/err"
eq "reset works once the lease was released" "$?" "0"

finish
