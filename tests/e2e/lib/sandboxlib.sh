# sandboxlib.sh - the hostile-processor harness of tests/e2e/sandbox_*.sh, sourced
# after testlib.sh.
#
# `hostile CASE PATTERN` runs tests/fixtures/hostile/cases/CASE.lua as processor
# "hostile" beside tests/fixtures/hostile/control.lua ("control") on the same stream
# h/1, in a deployment and store of their own under $TMP/CASE, with small limits and
# one attempt per batch, so the hostile one is faulted by its first failure. Three
# h/go events {n = 1, 2, 3, path = $TMP/CASE/pwned} are appended, then
# `sluice run --until-caught-up` runs under a timeout. It checks that:
#   - the engine neither crashed nor hung: run exits 1 (a faulted instance) within
#     MAX_MS, killed by no signal;
#   - the control processor is correct: status ok, lag 0, state {sum 6, count 3};
#   - the hostile one is faulted and its lastError matches PATTERN (grep -E);
#   - nothing of the failed batch was committed: its offset is still EXPECT_OFFSET
#     (0), no h/out event was appended, and exactly one stream/error-occurred records
#     the fault;
#   - nothing outside the store was touched: no $TMP/CASE/pwned, nothing in the
#     case's directory but the deployment and the store's files, and the engine's
#     tables are intact, as the CLI reads them (7 events: h's two, h/1's four and the
#     fault; 2 instances that ran).
# Settings (variables, reset after each call): LIMITS (a Lua table), BATCH (events
# per batch), RUNFLAGS (extra run options), EXPECT_OFFSET, MAX_MS.
#
# `refused_at_load CASE PATTERN` checks that `sluice check` exits 1 naming the script
# and PATTERN, and that `run` exits 1 without processing anything.

: "${SLUICE_SRC:?set SLUICE_SRC to the source tree}"
S=$SLUICE
FIX=$SLUICE_SRC/tests/fixtures/hostile
# The wall clock is generous so that on a loaded machine (or under the sanitizers) a
# runaway meant to hit the instruction budget still hits it first; cases about the
# wall clock set their own LIMITS.
DEFAULT_LIMITS='{ instructions = 1e7, memory = "16MiB", wallclock = "5s" }'

# write_deploy DIR CASE: the deployment of one case.
write_deploy() {
	cat >"$1/deploy.lua" <<EOF
return {
  store = "$1/store.db",
  durability = "normal",
  schemas = { "$FIX/schemas" },
  processors = {
    control = { script = "$FIX/control.lua", streams = "h/*" },
    hostile = { script = "$FIX/cases/$2.lua", streams = "h/*", batchSize = ${BATCH:-1000},
                sideEffects = "all",
                limits = ${LIMITS:-$DEFAULT_LIMITS},
                retry = { attempts = 1, backoff = "1ms" } },
  },
}
EOF
}

# setup_case CASE: a fresh directory, deployment and store with the three events.
setup_case() {
	local dir=$TMP/$1 i
	mkdir -p "$dir"
	write_deploy "$dir" "$1"
	for i in 1 2 3; do
		printf '{"type":"h/go","payload":{"n":%d,"path":"%s/pwned"}}\n' "$i" "$dir"
	done | $S append h/1 --jsonl --deployment "$dir/deploy.lua" >/dev/null
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# only_store_files DIR: nothing but the deployment and the store's files.
only_store_files() {
	local f
	for f in "$1"/* "$1"/.[!.]*; do
		[ -e "$f" ] || continue
		case ${f##*/} in
		deploy.lua | store.db | store.db-wal | store.db-shm | store.db-journal | store.db-faults | run.out | run.err) ;;
		*) echo "unexpected file: $f"; return 1 ;;
		esac
	done
	return 0
}

hostile() {
	local case=$1 pat=$2 dir=$TMP/$1 D=$TMP/$1/deploy.lua t0 ms rc st
	setup_case "$case"
	t0=$(now_ms)
	timeout 120 $S run "$D" --until-caught-up ${RUNFLAGS:-} >"$dir/run.out" 2>"$dir/run.err"
	rc=$?
	ms=$(($(now_ms) - t0))
	if [ $rc -eq 124 ]; then
		failt "$case: run hung (killed after 120 s)"
	elif [ $rc -gt 128 ]; then
		failt "$case: run crashed (signal $((rc - 128)))" "$(tail -3 "$dir/run.err")"
	else
		eq "$case: run exits 1 (an instance is faulted), neither crashing nor hanging" "$rc" "1"
	fi
	if [ "$ms" -lt "${MAX_MS:-20000}" ]; then pass "$case: run took $ms ms"
	else failt "$case: run took $ms ms (limit ${MAX_MS:-20000})"; fi
	st=$($S status "$D" 2>/dev/null)
	eq "$case: the control processor is ok and caught up" \
		"$(printf '%s\n' "$st" | jq -r 'select(.processor == "control") | "\(.status) \(.lag)"')" "ok 0"
	eq "$case: the control processor's state is right" \
		"$($S state "$D" control h/1 | jq -c .state)" '{"count":3,"sum":6}'
	eq "$case: the hostile processor is faulted" \
		"$(printf '%s\n' "$st" | jq -r 'select(.processor == "hostile") | .status')" "faulted"
	local err
	err=$(printf '%s\n' "$st" | jq -r 'select(.processor == "hostile") | .lastError')
	if printf '%s' "$err" | grep -Eq -- "$pat"; then pass "$case: its error is clear: $err"
	else failt "$case: its error '$err' does not match '$pat'"; fi
	eq "$case: nothing of the failed batch was committed (offset ${EXPECT_OFFSET:-0})" \
		"$($S state "$D" hostile h/1 | jq -c .offset)" "${EXPECT_OFFSET:-0}"
	eq "$case: no event of the failed batch was appended" \
		"$($S events h/1 --type h/out --deployment "$D" | wc -l)" "0"
	eq "$case: one stream/error-occurred records the fault" \
		"$($S events h/1 --type stream/error-occurred --deployment "$D" | jq -r .payload.processor)" "hostile"
	if [ -e "$dir/pwned" ]; then failt "$case: a file outside the store was written"
	else pass "$case: no file outside the store was written"; fi
	check "$case: the case's directory holds only the deployment and the store" only_store_files "$dir"
	eq "$case: the engine's tables are intact (every event of every stream; instances that ran)" \
		"$(for s in $($S streams --deployment "$D" | jq -r .stream); do $S events "$s" --deployment "$D"; done | wc -l) $(printf '%s\n' "$st" | jq -s 'map(select(.status != "new")) | length')" \
		"7 2"
	LIMITS= BATCH= RUNFLAGS= EXPECT_OFFSET= MAX_MS=
}

refused_at_load() {
	local case=$1 pat=$2 dir=$TMP/$1 D=$TMP/$1/deploy.lua rc err
	setup_case "$case"
	err=$(timeout 120 $S check "$D" 2>&1 >/dev/null)
	rc=$?
	eq "$case: check exits 1" "$rc" "1"
	if printf '%s' "$err" | grep -q "cases/$case.lua" && printf '%s' "$err" | grep -Eq -- "$pat"; then
		pass "$case: check names the script and says why: $err"
	else
		failt "$case: check's error '$err' does not match '$pat'"
	fi
	timeout 120 $S run "$D" --until-caught-up >/dev/null 2>&1
	# SQL, not the CLI: state and status cannot load a deployment whose script is refused.
	eq "$case: run exits 1 before processing anything" \
		"$?:$(sqlite3 "$dir/store.db" "SELECT count(*) FROM sl_checkpoints")" "1:0"
	LIMITS=
}
