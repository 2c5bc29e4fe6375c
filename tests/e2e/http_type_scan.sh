#!/bin/bash
# http_type_scan.sh - a GET of events with a type filter that no event of a long
# stream matches (1.2 million events) answers 200 with no lines, and the engine keeps
# serving. The reader reads on over pieces that hold no match in a loop: it used to
# recurse once per 512 events, and overflowed the stack (here the runner's stack is
# 1 MiB so that a stream of this size is enough to show it; 8 MiB took 4 million).
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/httplib.sh"
REAL=$SLUICE
python3 -c "import sys; sys.stdout.write('{\"type\":\"t/x\"}\n' * 1200000)" |
	$REAL append long/a --jsonl --store "$TMP/store.db" >/dev/null
cat >"$TMP/small-stack" <<EOF2
#!/bin/sh
ulimit -s 1024
exec "$REAL" "\$@"
EOF2
chmod +x "$TMP/small-stack"
cat >"$TMP/template.lua" <<EOF2
return { store = "$TMP/store.db", http = "127.0.0.1:@PORT@", processors = {} }
EOF2
SLUICE=$TMP/small-stack
check "the engine serves" http_start "$TMP/template.lua"
eq "a type no event has: 200" "$(code GET '/streams/long%2Fa/events?type=t/none')" 200
eq "and no lines" "$(wc -c <"$TMP/body")" 0
eq "the engine still answers" "$(code GET /healthz)" 200
eq "a type every event has, from the end: the last event" \
	"$(code GET '/streams/long%2Fa/events?type=t/x&from=1200001'; jq -r .offset "$TMP/body")" "2001200001"
check "sluice run stops cleanly" http_stop
finish
