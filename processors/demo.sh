#!/bin/sh
# demo.sh SLUICE - appends a small example history to a fresh store and prints it.
set -eu
sluice=${1:-sluice}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export SLUICE_STORE="$dir/demo.db"

echo "# appending to counters/a and counters/b"
"$sluice" append counters/a counter/incremented '{"by": 1}'
"$sluice" append counters/a counter/incremented '{"by": 41}' --key demo-41
"$sluice" append counters/a counter/incremented '{"by": 41}' --key demo-41
printf '%s\n' \
  '{"type":"counter/incremented","payload":{"by":5}}' \
  '{"type":"counter/reset"}' \
  '{"type":"counter/incremented","payload":{"by":2}}' |
  "$sluice" append counters/b --jsonl
"$sluice" append counters/b stream/paused '{"reason":"maintenance"}'
echo "# appending to a paused stream is refused:"
"$sluice" append counters/b counter/incremented '{"by":1}' || true

echo "# the history of counters/a"
"$sluice" events counters/a
echo "# the streams (counters is their parent, created on the way)"
"$sluice" streams
echo "# the children announced on counters"
"$sluice" events counters --type stream/child-stream-created
