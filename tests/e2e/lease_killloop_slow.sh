#!/usr/bin/env bash
# lease_killloop_slow.sh - the kill loop of DESIGN §8: 30 cycles of SIGKILL of the
# active runner (every fifth cycle of both runners) while another process appends
# events with idempotency keys; each cycle waits for a new runner to take over. At
# the end every state equals the number of events in its stream, each consumed event
# emitted exactly one event (default keys), and a replay from offset 1 gives the
# same states.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/leaselib.sh"


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
