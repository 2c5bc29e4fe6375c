# leaselib.sh - the fixture of the lease tests (lease_runners.sh,
# lease_killloop_slow.sh), sourced after testlib.sh: a deployment with lease 1s and
# one processor "tally" over in/* that counts t/inc events per stream and emits one
# t/seen per consumed event to seen/<stream> (default keys), so a double application
# or a lost event shows in both numbers; and the helpers the tests share.
S=$SLUICE
D=$TMP/deploy.lua
mkdir -p "$TMP/schemas" "$TMP/procs"
cat >"$TMP/schemas/tally.contract.json" <<'EOF'
{ "name": "tally", "version": 1,
  "consumes": ["t/inc"], "emits": ["t/seen"],
  "events": { "t/inc": {"type": "object"},
              "t/seen": {"type": "object", "required": ["n"],
                         "properties": {"n": {"type": "integer"}}} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
cat >"$TMP/procs/tally.lua" <<'EOF'
return {
  contract = "tally",
  reduce = { ["t/inc"] = function(s) return { n = s.n + 1 } end },
  processEvent = {
    ["t/inc"] = function(event, ctx)
      ctx.append("t/seen", { n = ctx.state.n }, { stream = "seen/" .. event.stream:match("[^/]+$") })
    end,
  },
}
EOF
# partitions = 1: these tests are about the one lease of a processor (its standbys,
# takeover and fence), which is what a JetStream store does with one partition; on
# SQLite there is always one lease per processor (nats_partitions.sh tests several).
cat >"$D" <<EOF
return {
  store = "$(test_store "$TMP/store.db")", durability = "normal", schemas = { "$TMP/schemas" },
  lease = "1s", partitions = 1,
  processors = { tally = { script = "$TMP/procs/tally.lua", streams = "in/*", sideEffects = "all" } },
}
EOF

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT

inc() { $S append "in/$1" t/inc --deployment "$D" >/dev/null; }
runner() { $S status "$D" | jq -r 'select(.stream == "in/a") | .runner // "null"'; }
count() { $S state "$D" tally "in/$1" | jq .state.n; }
seen() { $S events "seen/$1" --deployment "$D" --type t/seen | wc -l; }
count_is() { [ "$(count "$1")" = "$2" ]; }
runner_is() { runner | grep -q "^$1@"; }
start() { $S run "$D" --log-format text 2>"$TMP/run$1.err" & PIDS+=($!); eval "R$1=$!"; }
