# httplib.sh - a `sluice run` serving HTTP on 127.0.0.1 for the tests, sourced after
# testlib.sh. The port is picked free by python3 and written into the deployment
# (the deployment cannot ask for port 0); a start that loses the port to another
# process (address already in use) is retried with another one.
#
#   http_start DEPLOY_TEMPLATE [ARGS...]  writes $TMP/deploy.lua from the template with
#                                          @PORT@ replaced (in ARGS too), runs it; sets
#                                          PORT, URL, RUNNER
#   http_stop                              SIGTERM, and waits for the runner to exit
#   http_kill                              SIGKILL, and waits
RUNNER=
PORT=
URL=

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

healthz_answers() { curl -s -o /dev/null --max-time 2 "$URL/healthz"; }

http_start() {
	local template=$1 try a args; shift
	for try in 1 2 3 4 5; do
		PORT=$(free_port)
		URL="http://127.0.0.1:$PORT"
		sed "s/@PORT@/$PORT/g" "$template" >"$TMP/deploy.lua"
		args=()
		for a in "$@"; do args+=("${a//@PORT@/$PORT}"); done
		"$SLUICE" run "$TMP/deploy.lua" --log-format json "${args[@]}" 2>>"$TMP/run.log" &
		RUNNER=$!
		if wait_until 30 healthz_answers; then
			return 0
		fi
		wait "$RUNNER" 2>/dev/null
		RUNNER=
		grep -q "address already in use" "$TMP/run.log" || return 1
	done
	return 1
}

http_stop() {
	[ -n "$RUNNER" ] || return 0
	kill -TERM "$RUNNER" 2>/dev/null
	wait "$RUNNER"
	local rc=$?
	RUNNER=
	return $rc
}

http_kill() {
	[ -n "$RUNNER" ] || return 0
	kill -KILL "$RUNNER" 2>/dev/null
	wait "$RUNNER" 2>/dev/null
	RUNNER=
}

http_cleanup() { http_kill; rm -rf "$TMP"; }
trap http_cleanup EXIT

# code METHOD PATH [CURL ARGS...]: prints the status; the body goes to $TMP/body.
code() {
	local m=$1 p=$2; shift 2
	curl -s -o "$TMP/body" -w '%{http_code}' -X "$m" "$URL$p" "$@"
}
