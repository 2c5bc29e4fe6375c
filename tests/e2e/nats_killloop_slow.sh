#!/bin/bash
# nats_killloop_slow.sh - the kill loop of lease_killloop_slow.sh on the JetStream
# backend: 30 SIGKILLs of the active runner (every fifth of both) while keyed appends
# go on, on a server of its own; afterwards every state counts each event once and
# each consumed event emitted exactly one event (the checkpoint's compare-and-set and
# the emitted events' message ids across the crashes between them).
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/natslib.sh"
E2E=$(dirname "$0")

if ! nats_have; then
	echo "# skipped: nats-server is not installed (make deps installs it); the JetStream backend is untested"
	finish
	exit
fi
if nats_start killloop; then
	out=$(SL_TEST_STORE=$NATS_URL bash "$E2E/lease_killloop_slow.sh" 2>/dev/null); rc=$?
	if [ $rc -eq 0 ]; then
		pass "lease_killloop_slow.sh passes on JetStream ($(tail -1 <<<"$out"); $(grep '^# appended' <<<"$out" | sed 's/^# //'))"
	else
		failt "lease_killloop_slow.sh passes on JetStream" "$(grep -A2 '^not ok' <<<"$out" | head -30)"
	fi
	nats_stop killloop
else
	failt "nats-server started"
fi
finish
