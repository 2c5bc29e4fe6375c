#!/bin/bash
# log_cli.sh - the engine's log on stderr (DESIGN §8 "Progress and logs"):
# --log-format json lines parse with jq and carry time, level, msg, processor, stream
# and offset (absent fields omitted); ctx.log.* of a processor and the engine's own
# records (a failed batch) go there; text lines are "<time> <level> <processor>
# <stream>: <message>"; json is the default off a terminal; --log-level hides the
# levels below it; every command takes both options; a bad value is one "sluice: "
# error line and exit 1. Errors of the CLI itself keep their "sluice: " form.
#
# Fixture (written here): processor "talker" logs "debug <text>", "said <text>
# <offset>" (info, its arguments joined by spaces), "warn <text>" and "error <text>"
# from processEvent for each t/say on talk/*, and raises for t/boom; one attempt per
# batch.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE

mkdir -p "$TMP/dep/schemas"
D=$TMP/dep/deploy.lua
cat >"$D" <<'LUA'
return {
  store = "talk.db",
  schemas = { "schemas" },
  processors = {
    talker = { script = "talker.lua", streams = "talk/*",
               retry = { attempts = 1, backoff = "1ms" } },
  },
}
LUA
cat >"$TMP/dep/talker.lua" <<'LUA'
return {
  contract = "talker",
  reduce = {
    ["t/say"] = function(state, event) return { n = state.n + 1 } end,
    ["t/boom"] = function(state, event) return state end,
  },
  processEvent = {
    ["t/say"] = function(event, ctx)
      ctx.log.debug("debug " .. event.payload.text)
      ctx.log.info("said", event.payload.text, event.offset)
      ctx.log.warn("warn " .. event.payload.text)
      ctx.log.error("error " .. event.payload.text)
    end,
    ["t/boom"] = function(event, ctx) error("boom at " .. event.offset, 0) end,
    ["t/tbl"] = function(event, ctx)
      ctx.log.info("tbl", { a = 1, b = { true, "x" } }, "two\nlines")
    end,
  },
}
LUA
cat >"$TMP/dep/schemas/talker.contract.json" <<'JSON'
{
  "name": "talker",
  "version": 1,
  "consumes": ["t/say", "t/boom", "t/tbl"],
  "emits": [],
  "events": {
    "t/say": {"type": "object", "required": ["text"],
              "properties": {"text": {"type": "string"}}},
    "t/boom": {"type": "object"},
    "t/tbl": {"type": "object"}
  },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0}
}
JSON
say() { $S append "$1" t/say "$(jq -cn --arg t "$2" '{text: $t}')" --deployment "$D" >/dev/null; }
# run ARGS...: sluice run --until-caught-up ARGS; stderr to $TMP/err; prints the status.
run() { $S run "$D" --until-caught-up "$@" >/dev/null 2>"$TMP/err"; echo $?; }
# The levels of the records ctx.log wrote (the engine's own debug records carry no stream).
levels() { jq -r 'select(.stream) | .level' "$TMP/err" | tr '\n' ' '; }

eq "the anchor run on the empty store exits 0" "$(run)" "0"

# ---- json ---------------------------------------------------------------------------
say talk/1 'hi "there"
next'
eq "a run with --log-format json exits 0" "$(run --log-format json)" "0"
eq "every stderr line is one JSON object (jq parses each)" \
   "$(jq -c 'type' "$TMP/err" | sort -u),$(jq -c . "$TMP/err" | wc -l)" "\"object\",$(wc -l <"$TMP/err")"
rec=$(jq -c 'select(.level == "info")' "$TMP/err")
eq "ctx.log.info is one record with msg, processor, stream and offset" \
   "$(jq -c '[.msg, .processor, .stream, .offset]' <<<"$rec")" \
   '["said hi \"there\"\nnext 2","talker","talk/1",2]'
eq "the record's fields are time, level, msg, processor, stream, offset" \
   "$(jq -c 'keys_unsorted' <<<"$rec")" '["time","level","msg","processor","stream","offset"]'
check "time is UTC with milliseconds" \
	grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$' <<<"$(jq -r .time <<<"$rec")"
eq "the default level is info: debug is hidden, info, warn and error are shown" \
   "$(levels)" "info warn error "
say talk/1 "plain"
eq "without --log-format, stderr off a terminal is json" "$(run),$(levels)" "0,info warn error "

# ---- levels -------------------------------------------------------------------------
say talk/1 "x"
eq "--log-level warn hides the info record" "$(run --log-format json --log-level warn),$(levels)" \
   "0,warn error "
say talk/1 "y"
eq "--log-level=debug shows ctx.log.debug" "$(run --log-format=json --log-level=debug),$(levels)" \
   "0,debug info warn error "
say talk/1 "z"
eq "--log-level error hides warn too" "$(run --log-level error),$(levels)" "0,error "

# ---- text ---------------------------------------------------------------------------
say talk/2 "t"
eq "a run with --log-format text exits 0" "$(run --log-format text)" "0"
check "a text line is '<time> info <processor> <stream>: <message>'" \
	grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z info talker talk/2: said t 2$' "$TMP/err"
eq "text: one line per record" "$(wc -l <"$TMP/err")" "3"

# ---- a record of the engine: the failed batch ---------------------------------------
$S append talk/3 t/boom '{}' --deployment "$D" >/dev/null
eq "a run whose batch fails (one attempt) exits 1" "$(run --log-format json)" "1"
eq "the failure is an error record naming processor, stream and offset" \
   "$(grep '^{' "$TMP/err" | jq -c 'select(.level == "error") | [.processor, .stream, .offset, (.msg | test("boom at 2.*\\(attempt 1 of 1; faulted\\)"))]')" \
   '["talker","talk/3",2,true]'
check "the run's own exit error keeps the 'sluice: ' form" \
	grep -q "^sluice: processor 'talker' on talk/3 is faulted" "$TMP/err"

# ---- values: a table is logged as its JSON, and a record stays one line ------------------
$S append talk/4 t/tbl '{}' --deployment "$D" >/dev/null
# (talk/3 is still faulted: the runs exit 1 and end with the 'sluice: ' line.)
eq "a run logging a table runs (exit 1: talk/3 is faulted)" "$(run --log-format json)" "1"
eq "json: the table is its JSON, the newline stays inside msg" \
   "$(grep '^{' "$TMP/err" | jq -r 'select(.stream == "talk/4") | .msg')" 'tbl {"a":1,"b":[true,"x"]} two
lines'
$S append talk/4 t/tbl '{}' --deployment "$D" >/dev/null
eq "a text run logging it runs" "$(run --log-format text)" "1"
check "text: one line, the table as JSON, the newline escaped" \
	grep -Eq 'info talker talk/4: tbl \{"a":1,"b":\[true,"x"\]\} two\\nlines$' "$TMP/err"

# ---- the options on every command, and bad values -----------------------------------
eq "another command takes --log-format and --log-level" \
   "$($S streams talk/1 --deployment "$D" --log-format json --log-level warn | jq -r .stream)" "talk/1"
refuses "a bad --log-format is refused" "^sluice: --log-format: expected text or json, got 'xml'$" \
	$S run "$D" --until-caught-up --log-format xml
refuses "a bad --log-level is refused" "^sluice: --log-level: expected debug, info, warn or error, got 'loud'$" \
	$S run "$D" --log-level loud
refuses "a bad --log-level is refused by every command" "^sluice: --log-level: " \
	$S streams --log-level=verbose
refuses "--log-format needs a value" "^sluice: run: option '--log-format' needs a value$" \
	$S run "$D" --log-format
help=$($S run --help)
check "run --help documents --log-format" grep -q -- "--log-format F" <<<"$help"
check "run --help documents --log-level" grep -q -- "--log-level L" <<<"$help"
check "sluice --help says every command takes them" grep -q -- "--log-level debug|info|warn|error" <<<"$($S --help)"
finish
