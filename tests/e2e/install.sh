#!/bin/bash
# install.sh - `make install` into a DESTDIR from a build of a copy of the source
# tree; the copy is then renamed, so the installed binary can only find its built-in
# schemas and Lua modules next to itself (../share/sluice). The installed example
# deployment and demo run; the man page renders; the bash completion completes.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
unset SLUICE_HOME
q() { "$@" >/dev/null; } # runs a command without its output

# A copy of the source tree without build directories, built in a directory of its own.
mkdir -p "$TMP/src"
tar -C "$SLUICE_SRC" --exclude=./build --exclude=./build-asan --exclude=./.git -cf - . |
	tar -C "$TMP/src" -xf -
check "make install into DESTDIR" \
	make -s -C "$TMP/src" install BUILD="$TMP/build" DESTDIR="$TMP/root" PREFIX=/usr \
	>"$TMP/install.log" 2>&1 || cat "$TMP/install.log"
mv "$TMP/src" "$TMP/src-gone"
mv "$TMP/build" "$TMP/build-gone"
# And the installed tree moves too: only its own layout holds.
mv "$TMP/root" "$TMP/elsewhere"
R=$TMP/elsewhere/usr
B=$R/bin/sluice
SHARE=$R/share/sluice

for f in bin/sluice share/sluice/schemas/deployment.schema.json \
	share/sluice/schemas/contract.schema.json share/sluice/schemas/core.contract.json \
	share/sluice/lua/sluice/testing.lua share/sluice/processors/example.deploy.lua \
	share/sluice/processors/counter.lua share/man/man1/sluice.1 \
	share/bash-completion/completions/sluice share/doc/sluice/LICENSE; do
	check "installed: $f" test -f "$R/$f"
done
check "the binary is executable" test -x "$B"

# The example deployment, straight from the installed share directory.
D=$SHARE/processors/example.deploy.lua
mkdir -p "$SHARE/processors/data"
check "check the installed example deployment" q "$B" check "$D"
check "a first run sets the anchors" q "$B" run "$D" --until-caught-up
for by in 40 40 40; do
	"$B" append counters/a counter/incremented "{\"by\":$by}" --deployment "$D" >/dev/null
done
"$B" append echo/1 echo/input-received '{"text":"hi"}' --deployment "$D" >/dev/null
check "run --until-caught-up" q "$B" run "$D" --until-caught-up
eq "the counter's state" "$("$B" state "$D" counter counters/a | jq -c .state)" '{"count":120}'
eq "the milestone was emitted" \
	"$("$B" events counters/a --type counter/milestone --deployment "$D" | jq -c .payload)" \
	'{"count":120}'
eq "echo answered" \
	"$("$B" events echo/1 --type echo/output-echoed --deployment "$D" | wc -l)" "1"

# The demo script as installed, with the installed binary.
out=$(sh "$SHARE/processors/demo.sh" "$B" 2>&1); rc=$?
eq "the installed demo runs" "$rc" "0"
check "the demo shows the counter's state" grep -q '"count":120' <<<"$out"

# A processor that requires one of the engine's Lua modules (sluice.NAME) finds it
# in the installed share directory, or under SLUICE_HOME when that is set.
echo 'return { of = function(n) return 2 * n end }' >"$SHARE/lua/sluice/times.lua"
mkdir -p "$TMP/home/lua/sluice" "$TMP/mp/data"
echo 'return { of = function(n) return 3 * n end }' >"$TMP/home/lua/sluice/times.lua"
cp -r "$SHARE/schemas" "$TMP/home/schemas"
cat >"$TMP/mp/times.lua" <<'LUA'
local times = require "sluice.times"
return {
  contract = "counter",
  reduce = {
    ["counter/incremented"] = function(s, e) return { count = s.count + times.of(e.payload.by) } end,
  },
}
LUA
echo 'return { store = "data/m.db", processors = { counter = { script = "times.lua", streams = "c/*" } } }' \
	>"$TMP/mp/deploy.lua"
"$B" append c/1 counter/incremented '{"by":5}' --deployment "$TMP/mp/deploy.lua" >/dev/null
check "run a processor requiring sluice.times" q "$B" run "$TMP/mp/deploy.lua" --until-caught-up
eq "the installed module was used" \
	"$("$B" state "$TMP/mp/deploy.lua" counter c/1 | jq .state.count)" "10"
"$B" reset "$TMP/mp/deploy.lua" counter >/dev/null
check "run with SLUICE_HOME" q env SLUICE_HOME="$TMP/home" "$B" run "$TMP/mp/deploy.lua" --until-caught-up
eq "SLUICE_HOME's module was used" \
	"$("$B" state "$TMP/mp/deploy.lua" counter c/1 | jq .state.count)" "15"

# SLUICE_HOME overrides the installed layout, and an error names where it looked.
SLUICE_HOME=$TMP/nowhere "$B" check "$D" 2>"$TMP/err"; rc=$?
eq "a wrong SLUICE_HOME fails" "$rc" "1"
check "the error names SLUICE_HOME's schemas" grep -q "$TMP/nowhere/schemas/deployment.schema.json" "$TMP/err"
check "SLUICE_HOME pointing at a home works" q env SLUICE_HOME="$SHARE" "$B" check "$D"

# The man page renders, with every command.
man -l "$R/share/man/man1/sluice.1" >"$TMP/man.txt" 2>"$TMP/man.err"
eq "man -l renders the page" "$?" "0"
check "the page has its sections" grep -q "^COMMANDS" "$TMP/man.txt"
for c in append events streams check run state status reset resume dead-letters verify; do
	check "the page documents $c" grep -q "usage: sluice $c" "$TMP/man.txt"
done

# The bash completion sources and completes.
comp() {
	bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		_sluice; printf "%s\n" "${COMPREPLY[@]}"' _ \
		"$R/share/bash-completion/completions/sluice" "$@"
}
check "the completion registers for sluice" \
	bash -c '. "$1" && complete -p sluice | grep -q "_sluice"' _ \
	"$R/share/bash-completion/completions/sluice"
eq "sluice ch<TAB>" "$(comp sluice ch)" "check"
eq "sluice run --until<TAB>" "$(comp sluice run --until)" "--until-caught-up"
eq "sluice events --li<TAB>" "$(comp sluice events --li)" "--limit"
eq "sluice verify --qu<TAB>" "$(comp sluice verify --qu)" "--quick"
eq "sluice run --log-level w<TAB>" "$(comp sluice run --log-level w)" "warn"
eq "sluice check <deployment file>" "$(cd "$SHARE/processors" && comp sluice check exa)" \
	"example.deploy.lua"
eq "no file completion after an option's value" "$(comp sluice events --from '')" ""
finish
