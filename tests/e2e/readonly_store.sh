#!/bin/bash
# readonly_store.sh - the read commands (events, streams, state, status, dead-letters)
# open the store for reading only, so they work on a store nobody may write: a file of
# mode 0444 in a directory of mode 0555 (what a read-only mount looks like to SQLite),
# without its -wal and -shm files (issue 10, item 17). They write nothing there.
. "$(dirname "$0")/lib/testlib.sh"
: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
S=$SLUICE

R=$TMP/ro
mkdir -p "$R"
cat >"$R/deploy.lua" <<LUA
return {
  store = "store.db",
  processors = {
    counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" },
  },
}
LUA
$S append counters/a counter/incremented '{"by":2}' --deployment "$R/deploy.lua" >/dev/null
$S append counters/a counter/incremented '{"by":3}' --deployment "$R/deploy.lua" >/dev/null
$S run "$R/deploy.lua" --until-caught-up 2>/dev/null
check "the runner closed the store cleanly (no -wal, no -shm)" test ! -e "$R/store.db-wal" -a ! -e "$R/store.db-shm"

chmod 0444 "$R/store.db"
chmod 0555 "$R"
chmod 0755 "$TMP"
sum=$(sha256sum "$R/store.db")
# As root, permissions do not stop writes: run the commands as nobody.
as_reader() {
	if [ "$(id -u)" = 0 ]; then setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; else "$@"; fi
}
reads() { # NAME JQ WANT COMMAND...
	local name=$1 jqf=$2 want=$3 out; shift 3
	out=$(as_reader "$@" 2>"$TMP/err"); rc=$?
	eq "$name: exit 0 on a read-only store" "$rc" "0"
	eq "$name: no error" "$(cat "$TMP/err")" ""
	eq "$name: its output" "$(printf '%s\n' "$out" | jq -c "$jqf" | tr '\n' ' ')" "$want"
}
reads "events" .offset "1 2 3 " $S events counters/a --store "$R/store.db"
reads "events --deployment" .type '"stream/created" "counter/incremented" "counter/incremented" ' \
	$S events counters/a --deployment "$R/deploy.lua"
reads "streams" .stream '"counters" "counters/a" ' $S streams --store "$R/store.db"
reads "state" .state '{"count":5} ' $S state "$R/deploy.lua" counter counters/a
reads "status" '[.stream,.offset,.lag,.status]' '["counters/a",3,0,"ok"] ' $S status "$R/deploy.lua"
reads "dead-letters" . "" $S dead-letters "$R/deploy.lua"

out=$(as_reader $S append counters/a counter/incremented '{"by":1}' --store "$R/store.db" 2>&1); rc=$?
eq "append to a read-only store exits 1" "$rc" "1"
check "append says why, in one sluice: line" grep -Eq '^sluice: .*(readonly|read-only|permission|unable to open)' <<<"$out"
eq "the store's bytes are unchanged" "$(sha256sum "$R/store.db")" "$sum"
check "no -wal or -shm was left behind" test ! -e "$R/store.db-wal" -a ! -e "$R/store.db-shm"
chmod 0755 "$R"
finish
