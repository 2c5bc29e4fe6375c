#!/usr/bin/env bash
# lease_killloop_slow.sh - the kill loop of DESIGN §8: 30 cycles of SIGKILL of the
# active runner (every fifth cycle of both runners) while another process appends
# events with idempotency keys; each cycle waits for a new runner to take over. At
# the end every state equals the number of events in its stream, each consumed event
# emitted exactly one event (default keys), and a replay from offset 1 gives the
# same states.
. "$(dirname "$0")/lib/testlib.sh"
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
cat >"$D" <<EOF
return {
  store = "$TMP/store.db", durability = "normal", schemas = { "$TMP/schemas" },
  lease = "1s",
  processors = { tally = { script = "$TMP/procs/tally.lua", streams = "in/*", sideEffects = "all" } },
}
EOF

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT

# wait_until SECONDS COMMAND...: polls the command until it succeeds or time is up.
wait_until() {
	local deadline=$(($(date +%s) + $1)); shift
	until "$@"; do
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}
inc() { $S append "in/$1" t/inc --deployment "$D" >/dev/null; }
runner() { $S status "$D" | jq -r 'select(.stream == "in/a") | .runner // "null"'; }
count() { $S state "$D" tally "in/$1" | jq .state.n; }
seen() { $S events "seen/$1" --deployment "$D" --type t/seen | wc -l; }
count_is() { [ "$(count "$1")" = "$2" ]; }
runner_is() { runner | grep -q "^$1@"; }
start() { $S run "$D" --log-format text 2>"$TMP/run$1.err" & PIDS+=($!); eval "R$1=$!"; }


APPENDER_STOP=$TMP/stop
# The appender: events round-robin over three streams, each with a key of its own,
# retried with the same key until acknowledged.
(
	i=0
	while [ ! -e "$APPENDER_STOP" ]; do
		i=$((i + 1))
		s=$(printf 'a\nb\nc' | sed -n "$((i % 3 + 1))p")
		until $S append "in/$s" t/inc --key "k$i" --deployment "$D" >/dev/null 2>&1; do
			sleep 0.01
		done
	done
) &
APPENDER=$!
PIDS+=($APPENDER)

start 1
start 2
check "a runner takes the processor" wait_until 30 test "$(runner)" != null
takeovers=0
for cycle in $(seq 1 30); do
	old=$(runner); old=${old%%@*}
	if [ $((cycle % 5)) -eq 0 ]; then
		for p in $(jobs -p); do [ "$p" != "$APPENDER" ] && kill -9 "$p" 2>/dev/null; done
		start "k${cycle}x"
		start "k${cycle}y"
	else
		kill -9 "$old"
		start "k$cycle"
	fi
	if wait_until 30 sh -c "r=\$($S status '$D' | jq -r 'select(.stream == \"in/a\") | .runner // \"null\"'); [ \"\$r\" != null ] && [ \"\${r%%@*}\" != '$old' ]"; then
		takeovers=$((takeovers + 1))
	fi
done
eq "a new runner took over in each of the 30 cycles" "$takeovers" "30"
touch "$APPENDER_STOP"
wait "$APPENDER"
total() { $S events "in/$1" --deployment "$D" --type t/inc | wc -l; }
settled() { for s in a b c; do count_is "$s" "$(total $s)" || return 1; done; }
check "the runner catches up with every appended event" wait_until 60 settled
echo "# appended $(($(total a) + $(total b) + $(total c))) events during the kill loop"
for s in a b c; do
	eq "in/$s: the state counts each event once" "$(count $s)" "$(total $s)"
	eq "in/$s: one emitted event per consumed event" "$(seen $s)" "$(total $s)"
done
for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
wait
$S reset "$D" tally >/dev/null
$S run "$D" --until-caught-up 2>/dev/null
for s in a b c; do
	eq "in/$s: a replay from offset 1 gives the same state" "$(count $s)" "$(total $s)"
done
finish
