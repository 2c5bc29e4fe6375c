#!/usr/bin/env bash
# live_reload.sh - hot reload of a running `sluice run` (DESIGN §8): a new matching
# stream is picked up live; an edited script takes over between batches with the
# instances' states carried over (written in place, and through a temporary file renamed
# over the script); an invalid edit (a syntax error, a contract whose state schema the
# stored states break) keeps the running version, logs `reload: <file>...` and shows
# `reloadError` in `sluice status` until a valid version loads; a raised contract
# `version` rebuilds the processor in place from offset 1 with the new script, without
# running side effects again; SIGHUP re-reads the deployment: an added processor
# starts, a removed one stops and keeps its data; an invalid deployment file and a
# deleted script are reload errors that keep the running version; a fixed script
# gives a faulted instance another chance.
#
# Fixture, written into $TMP: deploy.lua (lease 1s) with processor "tally" over
# counters/* (sideEffects = "all": only the side-effects mark keeps a rebuild from
# running processEvent again). tally's reduce adds BY to state.n (BY is what the test
# edits); its processEvent logs "effect <stream>@<offset>" and appends one t/seen to
# seen/<last segment> keyed by the offset and the state, so processEvent running again
# after a rebuild (which recomputes other states) would append again. extra.lua counts
# t/inc events: the processor SIGHUP adds and removes.
#
# Reading while a script is broken: `sluice status` reads rows only, so it works on
# deploy.lua itself while tally.lua has a syntax error (that is when reloadError
# matters); `sluice state` decodes states with the script's processor, so it fails
# then, and the test reads states through reader.lua: the same store and processor
# names, the live contracts, frozen copies of the scripts (state reads rows by
# processor name). Appends and events go to the store ($SLUICE_STORE, the same file).
#
# When is an edit in force? The test cannot see the swap itself, so it probes: it
# appends one event, waits until tally processed it, and reads how much state.n grew.
# Before the swap that is the old BY, after it the new BY, and nothing else: a delta of
# exactly the new BY also shows that the state carried over. Nothing sleeps to
# synchronise: every wait is wait_until with a deadline.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE
D=$TMP/deploy.lua
SCRIPT=$TMP/procs/tally.lua
CONTRACT=$TMP/schemas/tally.contract.json
mkdir -p "$TMP/schemas" "$TMP/procs"

RUN=
cleanup() { [ -n "$RUN" ] && kill -9 "$RUN" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

# contract VERSION [STATE_N_SCHEMA_EXTRA [TOP_EXTRA]]: tally's contract.
contract() {
	cat <<EOF
{ "name": "tally", "version": $1, ${3:-}
  "consumes": ["t/inc"], "emits": ["t/seen"],
  "events": { "t/inc": {"type": "object"},
              "t/seen": {"type": "object", "required": ["n"],
                         "properties": {"n": {"type": "integer"}}} },
  "state": {"type": "object", "required": ["n"],
            "properties": {"n": {"type": "integer"${2:-}}}},
  "initialState": {"n": 0} }
EOF
}
# script BY: tally's script.
script() {
	cat <<EOF
return {
  contract = "tally",
  reduce = { ["t/inc"] = function(s) return { n = s.n + $1 } end },
  processEvent = {
    ["t/inc"] = function(event, ctx)
      ctx.log.info("effect " .. event.stream .. "@" .. event.offset)
      ctx.append("t/seen", { n = ctx.state.n }, {
        stream = "seen/" .. event.stream:match("[^/]+$"),
        idempotencyKey = "seen:" .. event.stream .. ":" .. event.offset .. ":" .. ctx.state.n,
      })
    end,
  },
}
EOF
}
cat >"$TMP/schemas/extra.contract.json" <<'EOF'
{ "name": "extra", "version": 1, "consumes": ["t/inc"], "emits": [],
  "events": { "t/inc": {"type": "object"} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
cat >"$TMP/procs/extra.lua" <<'EOF'
return { contract = "extra", reduce = { ["t/inc"] = function(s) return { n = s.n + 1 } end } }
EOF
# deployment [EXTRA]: the deployment file, with processor extra when EXTRA is given.
deployment() {
	local extra=
	[ -n "${1:-}" ] && extra='extra = { script = "procs/extra.lua", streams = "counters/*" },'
	cat <<EOF
return {
  store = "$(test_store store.db)", durability = "normal", schemas = { "schemas" }, lease = "1s",
  processors = {
    tally = { script = "procs/tally.lua", streams = "counters/*", sideEffects = "all" },
    $extra
  },
}
EOF
}
contract 1 >"$CONTRACT"
script 1 >"$SCRIPT"
deployment >"$D"
script 1 >"$TMP/procs/reader_tally.lua"
R=$TMP/reader.lua
deployment extra | sed 's|procs/tally.lua|procs/reader_tally.lua|' >"$R"

inc() { $S append "counters/$1" t/inc | jq -r .offset; }
n_of() { $S state "$R" tally "counters/$1" | jq -r .state.n; }
off_of() { $S state "$R" "$1" "counters/$2" | jq -r .offset; }
off_at_least() { [ "$(off_of tally "$1")" -ge "$2" ] 2>/dev/null; }
n_is() { [ "$(n_of "$1")" = "$2" ]; }
incs() { $S events "counters/$1" --type t/inc | wc -l; }
seen() { $S events "seen/$1" --type t/seen 2>/dev/null | wc -l; }
effects() { grep -c ' effect ' "$TMP/run.err"; }
# tally_lines DEPLOYMENT JQ: JQ (a boolean on one status line) holds for every line
# of tally in `sluice status DEPLOYMENT`.
tally_lines() { [ "$($S status "$1" | jq -s "map(select(.processor == \"tally\")) | length > 0 and all($2)")" = true ]; }
reload_error() { $S status "$D" | jq -r 'select(.processor == "tally") | .reloadError' | head -1; }
alive() { kill -0 "$RUN" 2>/dev/null; }

# probe STREAM: appends one t/inc, waits until tally processed it and prints by how
# much state.n grew ("timeout" if it was not processed in time).
probe() {
	local before off
	before=$(n_of "$1")
	off=$(inc "$1")
	wait_until 20 off_at_least "$1" "$off" || { echo timeout; return; }
	echo $(($(n_of "$1") - before))
}
# switch_to STREAM OLD NEW: probes until an event is reduced with +NEW; every probe
# before must have given +OLD. Prints the deltas seen; fails on anything else.
switch_to() {
	local deadline=$(($(date +%s) + 20)) d seq=
	while :; do
		d=$(probe "$1")
		seq="$seq $d"
		[ "$d" = "$3" ] && { echo "$seq"; return 0; }
		[ "$d" != "$2" ] || [ "$(date +%s)" -ge "$deadline" ] && { echo "$seq"; return 1; }
	done
}
# still_running WHEN: the runner must be alive to go on; if it died, the rest cannot run.
still_running() {
	alive && return 0
	failt "the runner is still running $1" "it exited; its stderr ends with: $(tail -5 "$TMP/run.err")"
	finish
	exit
}

# ---- a running engine ------------------------------------------------------------------
for _ in 1 2 3; do inc a >/dev/null; done
$S run "$D" --log-format text >/dev/null 2>"$TMP/run.err" &
RUN=$!
check "the running engine catches up (counters/a: n = 3)" wait_until 20 n_is a 3
still_running "after catching up"

inc new >/dev/null
check "a new matching stream is picked up live" wait_until 20 n_is new 1
eq "its processEvent ran once" "$(seen new)" "1"

# ---- a script edit, written in place -------------------------------------------------------
script 10 >"$SCRIPT"
deltas=$(switch_to a 1 10)
check "after the edit, events are reduced by the new script from the carried-over state (deltas:$deltas)" \
	test "${deltas##* }" = 10
eq "the next event too" "$(probe a)" "10"
eq "the other instance's state carried over (not recomputed)" "$(n_of new)" "1"
eq "counters/a: n counts +1 for every event but the last two, which gave +10 each" \
	"$(n_of a)" "$(($(incs a) - 2 + 2 * 10))"
still_running "after a valid edit"

# ---- an invalid edit: a syntax error ---------------------------------------------------------
printf 'return {\n  contract = "tally",\n  reduce = { ["t/inc"] = function(s) return { n = s.n + } end },\n}\n' >"$SCRIPT"
check "the run logs 'reload: <file>: line <N>: <message>' (DESIGN §7)" \
	wait_until 20 grep -Eq "reload: .*procs/tally\\.lua: line 3: unexpected symbol near '}'" "$TMP/run.err"
check "and not Lua's file:line position" bash -c "! grep -q 'tally\\.lua:3:' '$TMP/run.err'"
check "status shows reloadError naming the script on every line of tally" \
	wait_until 20 tally_lines "$D" '.reloadError | type == "string" and test("tally\\.lua")'
eq "the old version keeps running: the next event is reduced with +10" "$(probe a)" "10"
eq "reloadError is still there" "$(reload_error | grep -c 'tally\.lua')" "1"
still_running "after an invalid edit"

script 100 >"$SCRIPT"
check "a valid edit clears reloadError" wait_until 20 tally_lines "$D" '.reloadError == null'
deltas=$(switch_to a 10 100)
check "and its script takes over (deltas:$deltas)" test "${deltas##* }" = 100

# ---- an edit through a temporary file renamed over the script ---------------------------------
script 1000 >"$SCRIPT.tmp"
mv "$SCRIPT.tmp" "$SCRIPT"
deltas=$(switch_to a 100 1000)
check "an edit renamed over the script is picked up (deltas:$deltas)" test "${deltas##* }" = 1000
still_running "after a rename over the script"

# ---- a contract whose state schema the stored states break -------------------------------------
contract 1 ', "maximum": 5' >"$CONTRACT"
check "a state schema that stored states break is refused: reloadError says why" \
	wait_until 20 tally_lines "$D" '.reloadError | type == "string" and test("state schema")'
eq "the running version stays" "$(probe a)" "1000"
contract 1 '' '"description": "tally, unchanged",' >"$CONTRACT"
check "a compatible contract clears reloadError" wait_until 20 tally_lines "$D" '.reloadError == null'
eq "and events are still reduced with +1000" "$(probe a)" "1000"

# ---- a raised contract version: a rebuild in place ---------------------------------------------
seen_a=$(seen a)
seen_new=$(seen new)
effects_before=$(effects)
eq "until now, one t/seen per event of counters/a" "$seen_a" "$(incs a)"
contract 2 >"$CONTRACT.tmp"
mv "$CONTRACT.tmp" "$CONTRACT"
N=$(incs a)
check "the raised version rebuilds counters/a from offset 1 with the new script (n = $N x 1000)" \
	wait_until 30 n_is a $((N * 1000))
check "and counters/new" wait_until 20 n_is new 1000
eq "the rebuild emitted nothing again" "$(seen a),$(seen new)" "$seen_a,$seen_new"
eq "the rebuild ran no processEvent" "$(effects)" "$effects_before"
eq "after the rebuild a new event is reduced with +1000" "$(probe a)" "1000"
eq "and gets its side effect: one t/seen more" "$(seen a)" "$((seen_a + 1))"
check "status shows no reloadError" tally_lines "$D" '.reloadError == null'
still_running "after the rebuild"

# ---- SIGHUP: a processor added to the deployment starts -----------------------------------------
deployment extra >"$D"
kill -HUP "$RUN"
N=$(incs a)
x_n() { $S state "$R" extra "counters/$1" | jq -r .state.n; }
x_is() { [ "$(x_n "$1")" = "$2" ]; }
check "after SIGHUP the added processor runs: its state appears" wait_until 20 x_is a "$N"
check "for every matching stream" wait_until 20 x_is new 1
still_running "after SIGHUP"
eq "tally goes on" "$(probe a)" "1000"
check "extra processes new events too" wait_until 20 x_is a $((N + 1))

# ---- SIGHUP: a processor removed from the deployment stops, keeping its data ---------------------
deployment >"$D"
kill -HUP "$RUN"
x_stopped() { [ "$($S status "$R" | jq -r 'select(.processor == "extra") | .runner' | sort -u)" = null ]; }
check "after SIGHUP the removed processor stops (its lease goes)" wait_until 20 x_stopped
x_off=$(off_of extra a)
x_state=$(x_n a)
eq "tally goes on" "$(probe a)" "1000"
eq "and on" "$(probe a)" "1000"
eq "the removed processor did not process the events appended since: its offset stays" \
	"$(off_of extra a)" "$x_off"
eq "its state is kept" "$(x_n a)" "$x_state"
still_running "after removing a processor"

# ---- an invalid deployment file: every processor keeps running and shows why ----------------
cp "$D" "$TMP/deploy.good"
sed 's|lease = "1s",|lease = "1s", batchSize = 3,|' "$TMP/deploy.good" >"$D"
check "an unknown field in the deployment file is refused: reloadError names the file" \
	wait_until 20 tally_lines "$TMP/deploy.good" '.reloadError | type == "string" and test("deploy\\.lua")'
check "and the log says reload: naming the file" \
	wait_until 20 grep -Eq "reload: .*deploy\\.lua" "$TMP/run.err"
eq "tally keeps running its version" "$(probe a)" "1000"
mv "$TMP/deploy.good" "$D"
check "the deployment fixed, reloadError goes" wait_until 20 tally_lines "$D" '.reloadError == null'

# ---- a script that disappears, and comes back ----------------------------------------------
mv "$SCRIPT" "$TMP/tally.away"
check "a deleted script is an error of the reload; the running version stays" \
	wait_until 20 tally_lines "$D" '.reloadError | type == "string" and test("tally\\.lua")'
eq "events are still reduced with +1000" "$(probe a)" "1000"
script 7 >"$SCRIPT"
check "a script written again clears reloadError" wait_until 20 tally_lines "$D" '.reloadError == null'
deltas=$(switch_to a 1000 7)
check "and takes over (deltas:$deltas)" test "${deltas##* }" = 7
still_running "after the script came back"

# ---- a fix for a faulted instance: the new version gives it another chance ---------------------
cat >"$SCRIPT" <<'EOF2'
return {
  contract = "tally",
  reduce = { ["t/inc"] = function(s, e)
    if e.stream == "counters/bad" then error("boom on " .. e.stream) end
    return { n = s.n + 8 }
  end },
}
EOF2
deltas=$(switch_to a 7 8)
check "a version that fails on counters/bad only takes over (deltas:$deltas)" test "${deltas##* }" = 8
inc bad >/dev/null
bad_status() { $S status "$D" | jq -r 'select(.processor == "tally" and .stream == "counters/bad") | .status'; }
bad_is() { [ "$(bad_status)" = "$1" ]; }
check "a script that fails on counters/bad faults that instance" wait_until 30 bad_is faulted
eq "the others go on" "$(probe a)" "8"
script 7 >"$SCRIPT"
check "the fixed script clears the fault: counters/bad is processed (n = 7)" wait_until 20 n_is bad 7
check "and its status is ok" wait_until 20 bad_is ok
eq "counters/a goes on with the fixed script" "$(probe a)" "7"
still_running "after fixing a faulted instance"

# ---- the end ----------------------------------------------------------------------------------
kill -TERM "$RUN"
wait "$RUN"
eq "SIGTERM stops the run with exit 0" "$?" "0"
RUN=
finish
