#!/usr/bin/env bash
# live_reload_block.sh - a script edited while a batch waits on ctx.block work swaps
# only after that batch settled (DESIGN §8): the waiting batch commits wholly with the
# old version (its reduce, its state), nothing runs the same events on the new version
# meanwhile, and the next event is reduced by the new version from the committed
# state. A second processor in the same run keeps processing while the batch waits.
#
# The gate: version A's processEvent runs `cat` on a FIFO inside ctx.block and logs
# "waiting" first; the batch cannot settle until the test opens the FIFO for writing
# and closes it. Version B reduces with +10 and does not block. Nothing sleeps to
# synchronise: every wait is wait_until on the log or the store.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
D=$TMP/deploy.lua
SCRIPT=$TMP/gate.lua
FIFO=$TMP/gate.fifo
mkdir -p "$TMP/schemas"
mkfifo "$FIFO"

RUN=
cleanup() {
	[ -n "$RUN" ] && kill -9 "$RUN" 2>/dev/null
	# A gate still closed would keep a cat waiting: open it.
	[ -p "$FIFO" ] && timeout 1 sh -c ": >'$FIFO'" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

cat >"$TMP/schemas/gate.contract.json" <<'EOF'
{ "name": "gate", "version": 1, "consumes": ["g/go"], "emits": [],
  "events": { "g/go": {"type": "object"} },
  "state": {"type": "object", "required": ["n", "by"],
            "properties": {"n": {"type": "integer"}, "by": {"type": "string"}}},
  "initialState": {"n": 0, "by": ""} }
EOF
cat >"$TMP/schemas/other.contract.json" <<'EOF'
{ "name": "other", "version": 1, "consumes": ["g/go"], "emits": [],
  "events": { "g/go": {"type": "object"} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
cat >"$TMP/other.lua" <<'EOF'
return { contract = "other", reduce = { ["g/go"] = function(s) return { n = s.n + 1 } end } }
EOF
cat >"$SCRIPT" <<EOF
return {
  contract = "gate",
  reduce = { ["g/go"] = function(s) return { n = s.n + 1, by = "A" } end },
  processEvent = {
    ["g/go"] = function(event, ctx)
      ctx.log.info("waiting at " .. event.offset)
      ctx.block(function()
        local r, err = ctx.exec{ "cat", "$FIFO", timeout = "60s" }
        assert(r, err)
      end)
    end,
  },
}
EOF
cat >"$D" <<'EOF'
return {
  store = "store.db", durability = "normal", schemas = { "schemas" }, lease = "1s",
  processors = {
    gate = { script = "gate.lua", streams = "g/*" },
    other = { script = "other.lua", streams = "o/*" },
  },
}
EOF
alive() { kill -0 "$RUN" 2>/dev/null; }
state_of() { $S state "$D" "$1" "$2" | jq -c "$3"; }
is() { [ "$(state_of "$1" "$2" "$3")" = "$4" ]; }
logged() { grep -q "$1" "$TMP/run.err"; }

$S append --store "$TMP/store.db" o/1 g/go >/dev/null # the store exists before the run starts
$S run "$D" --log-format text >/dev/null 2>"$TMP/run.err" &
RUN=$!
check "the run starts the processors" wait_until 20 is other o/1 .state.n 1

$S append --store "$TMP/store.db" g/a g/go >/dev/null
check "version A's batch waits on its blocking work" wait_until 20 logged "waiting at 2"

cat >"$SCRIPT" <<'EOF'
return {
  contract = "gate",
  reduce = { ["g/go"] = function(s) return { n = s.n + 10, by = "B" } end },
}
EOF
check "the edit is loaded (and waits for the batch)" \
	wait_until 20 logged "gate: reload: script changed"
$S append --store "$TMP/store.db" o/1 g/go >/dev/null
check "the other processor goes on meanwhile" wait_until 20 is other o/1 .state.n 2
eq "the waiting batch has committed nothing yet" "$(state_of gate g/a .offset)" "0"
eq "and nothing ran its events on the new version" "$(grep -c 'waiting at' "$TMP/run.err")" "1"

: >"$FIFO" # opens the gate: cat reads EOF and exits
check "the batch settles and commits with version A (n = 1, by A)" \
	wait_until 20 is gate g/a '.state | [.n, .by]' '[1,"A"]'
$S append --store "$TMP/store.db" g/a g/go >/dev/null
check "the next event is reduced by version B from the committed state (n = 11, by B)" \
	wait_until 20 is gate g/a '.state | [.n, .by]' '[11,"B"]'
eq "version A's processEvent ran once, for its own batch" \
	"$(grep -c 'waiting at' "$TMP/run.err")" "1"
check "the run is still alive" alive

kill -TERM "$RUN"
wait "$RUN"
eq "SIGTERM stops the run with exit 0" "$?" "0"
RUN=
finish
