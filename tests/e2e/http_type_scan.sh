#!/bin/bash
# http_type_scan.sh - a GET of events with a type filter that no event of a long
# stream matches (1.2 million events) answers 200 with no lines, and the engine keeps
# serving. The reader reads on over pieces that hold no match in a loop: it used to
# recurse once per 512 events, and overflowed the stack (here the runner's stack is
# 1 MiB so that a stream of this size is enough to show it; 8 MiB took 4 million).
# And such a scan gives the loop back every 8 192 events: others are served meanwhile.
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
# A long scan gives way: while four of them run, /metrics is answered and counts them
# open. A scan that held the loop to its end would be answered first, and the gauge
# would read 0 whenever /metrics got its turn.
for i in 1 2 3 4; do
	curl -s -o "$TMP/scan$i" -w '%{http_code}' "$URL/streams/long%2Fa/events?type=t/none" >"$TMP/scan$i.code" &
	eval "SCAN$i=\$!"
done
reads_open() { curl -s "$URL/metrics" | grep -Eq '^sluice_http_event_reads [1-9]'; }
check "while scans run, /metrics answers and counts them" wait_until 30 reads_open
wait "$SCAN1" "$SCAN2" "$SCAN3" "$SCAN4"
eq "each scan: 200, no lines" "$(cat "$TMP"/scan?.code; cat "$TMP"/scan? | wc -c)" "2002002002000"
eq "and none is open after" "$(curl -s "$URL/metrics" | grep '^sluice_http_event_reads ')" "sluice_http_event_reads 0"
check "sluice run stops cleanly" http_stop
finish
