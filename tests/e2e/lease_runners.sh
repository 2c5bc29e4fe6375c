#!/usr/bin/env bash
# lease_runners.sh - one active runner per processor (DESIGN §8): two `sluice run` of
# one deployment, a standby that says so, takeover after SIGKILL and after a clean
# stop, a runner frozen past its lease whose batches the fence refuses, `status`
# naming the runner, `reset`/`resume` refused while a runner holds the processor.
# Every count is checked exactly: each consumed event is folded once and emits one
# event (processEvent appends with the default key), so a double application or a
# lost event shows.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/leaselib.sh"

inc a; inc b; inc c
start 1
start 2
# The two started together: one leads, the other says it is a standby.
check "a second runner says it is a standby" \
	wait_until 20 grep -q "standby: processor 'tally' is run by " "$TMP/run1.err" "$TMP/run2.err"
for i in $(seq 1 20); do inc a; inc b; inc c; done
check "every event is folded (21 per stream)" wait_until 30 count_is c 21
eq "in/a folded exactly once each" "$(count a),$(count b),$(count c)" "21,21,21"
eq "one emitted event per consumed event" "$(seen a),$(seen b),$(seen c)" "21,21,21"
rate_a() { $S status "$D" | jq -r 'select(.stream == "in/a") | .rate'; }
check "status shows a rate above 0 for a stream that just processed events" \
	wait_until 10 sh -c "[ \"\$($S status '$D' | jq 'select(.stream == \"in/a\") | .rate > 0')\" = true ]"
# No row of 0 is written when an instance goes idle: its last record ends when its
# last busy second leaves the 10 s window. Another instance keeps the window (and so
# the runner's heartbeat) going meanwhile, so staleness cannot be what makes it 0.
a_idle_while_busy_runs() {
	[ "$($S status "$D" | jq -rs '[(.[] | select(.stream == "in/a") | .rate == 0),
		(.[] | select(.stream == "in/busy") | .rate > 0)] | map(tostring) | join(" ")')" = "true true" ]
}
(while :; do inc busy; sleep 0.3; done) &
BUSY=$!
check "an idle instance's rate falls to 0 while another keeps its runner recording" \
	wait_until 25 a_idle_while_busy_runs
kill "$BUSY"
wait "$BUSY" 2>/dev/null
LEADER=$(runner); LEADER=${LEADER%%@*}
check "status names the runner (a pid of ours)" test "$LEADER" = "$R1" -o "$LEADER" = "$R2"
if [ "$LEADER" = "$R1" ]; then STANDBY=$R2; N=2; else STANDBY=$R1; N=1; fi
check "the standby logged who runs it" grep -q "is run by $LEADER@" "$TMP/run$N.err"
# A stream that did not exist when the runner started gets its instance live.
inc new
check "a new matching stream is picked up by the running engine" wait_until 20 count_is new 1
$S append other/x t/inc --deployment "$D" >/dev/null
check "a stream outside the pattern gets no instance" \
	test -z "$($S status "$D" | jq -r 'select(.stream == "other/x") | .stream')"

# While a runner holds the processor, reset and resume refuse, naming it.
refuses "reset refuses while a runner holds the processor" \
	"processor 'tally' is running \\($LEADER@[^)]*\\); use the console or stop it" \
	$S reset "$D" tally
refuses "resume refuses too" "processor 'tally' is running \\($LEADER@" $S resume "$D" tally in/a
eq "the refused reset changed nothing" "$(count a)" "21"

# SIGKILL of the leader: the standby takes over once the lease expires.
kill -9 "$LEADER"
inc a
check "after SIGKILL the standby takes over and folds the new event" wait_until 30 count_is a 22
check "status names the standby as runner" wait_until 10 runner_is "$STANDBY"
eq "nothing doubled after the takeover" "$(seen a)" "22"

# A clean stop releases the lease: a new standby takes over at once.
start 3
check "a third runner stands by" wait_until 20 grep -q "standby: processor 'tally' is run by $STANDBY@" "$TMP/run3.err"
kill -TERM "$STANDBY"
wait "$STANDBY" 2>/dev/null
eq "the runner stopped by SIGTERM exits 0" "$?" "0"
inc b
check "after SIGTERM the third runner takes over" wait_until 20 count_is b 22
check "status names it" wait_until 10 runner_is "$R3"

# A runner frozen past its lease commits nothing once it wakes: the fence refuses.
start 4
check "a fourth runner stands by" wait_until 20 grep -q "standby: processor 'tally' is run by $R3@" "$TMP/run4.err"
kill -STOP "$R3"
inc c
check "while the leader is frozen the standby takes over" wait_until 30 count_is c 22
for i in 1 2 3; do inc c; done
check "and folds what comes next" wait_until 20 count_is c 25
kill -CONT "$R3"
check "the woken runner finds it lost the lease" \
	wait_until 20 grep -Eq "lost the lease|nothing was committed" "$TMP/run3.err"
inc c
check "the new leader goes on" wait_until 20 count_is c 26
eq "no event of in/c was applied twice" "$(seen c)" "26"
check "the woken runner is a standby now" \
	wait_until 20 grep -q "standby: processor 'tally' is run by $R4@" "$TMP/run3.err"

# Replay: a fresh run of the same script from offset 1 gives the same states.
kill -TERM "$R3" "$R4"
wait "$R3" "$R4" 2>/dev/null
check "with no runner left, status shows runner null" wait_until 10 test "$(runner)" = null
eq "and rate 0" "$(rate_a)" "0"
$S reset "$D" tally >/dev/null
check "reset works once nobody runs the processor" test $? -eq 0
$S run "$D" --until-caught-up 2>/dev/null
eq "a replay from offset 1 gives the same counts" "$(count a),$(count b),$(count c),$(count new)" "22,22,26,1"
eq "the replay emitted nothing new (keys)" "$(seen a),$(seen b),$(seen c)" "22,22,26"
finish
