# worklib.sh - helpers for the tests of blocking and background work, sourced after
# testlib.sh: processes to kill on exit, bounded polling, the local HTTP server
# (tests/fixtures/work/http_server.py, run with python3).

# PIDs of processes this test started; each is killed (by its PID) on exit.
KILL_PIDS=()
work_cleanup() {
	local pid
	for pid in "${KILL_PIDS[@]}"; do
		kill -9 "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	rm -rf "$TMP"
}
trap work_cleanup EXIT

# wait_for SECONDS COMMAND...: runs COMMAND every 50 ms until it succeeds; returns 1
# if it did not within SECONDS. (Polling for a condition, never a fixed sleep.)
wait_for() {
	local limit=$1 start=$SECONDS
	shift
	until "$@"; do
		[ $((SECONDS - start)) -ge "$limit" ] && return 1
		sleep 0.05
	done
}

# start_server NAME [--hold-first SECONDS]: starts the HTTP server; sets SERVER_PID,
# PORT and SERVER_LOG ($TMP/NAME.log, one JSON line per request). Returns 1 if it
# did not come up within 20 s.
start_server() {
	local name=$1
	shift
	SERVER_LOG=$TMP/$name.log
	: >"$SERVER_LOG"
	python3 "$SLUICE_SRC/tests/fixtures/work/http_server.py" "$TMP/$name.port" "$SERVER_LOG" "$@" \
		2>"$TMP/$name.err" &
	SERVER_PID=$!
	KILL_PIDS+=("$SERVER_PID")
	wait_for 20 test -s "$TMP/$name.port" || return 1
	PORT=$(cat "$TMP/$name.port")
}

# requests: the number of requests the server logged.
requests() { grep -c . "$SERVER_LOG"; }

# free_port: a port on 127.0.0.1 that nothing listens on (bound, then released).
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
