# natslib.sh - a throwaway JetStream server for the tests of the JetStream store
# backend, sourced after testlib.sh. Each server listens on a free loopback port with
# its store under $TMP; nats_stop_all (run on exit) stops every server started.
#   nats_have            0 when nats-server is installed
#   nats_start NAME      starts server NAME (a fresh store dir unless it exists) and
#                        waits until JetStream answers; sets NATS_URL and NATS_PID
#   nats_stop NAME       stops server NAME (SIGTERM, then waits for it to exit)

NATS_PIDS=()
trap 'nats_stop_all; rm -rf "$TMP"' EXIT

nats_have() { command -v nats-server >/dev/null 2>&1; }

nats_free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# JetStream answers once a read-only store open works (it reads the stream's info).
nats_ready() { "$SLUICE" streams --store "$1" >/dev/null 2>&1; }

nats_start() {
	local name=$1 port tries=0
	while :; do
		port=${NATS_PORT_OF[$name]:-$(nats_free_port)}
		nats-server -js -a 127.0.0.1 -p "$port" -sd "$TMP/nats-$name" >>"$TMP/nats-$name.log" 2>&1 &
		NATS_PID=$!
		NATS_URL="nats://127.0.0.1:$port"
		if wait_until 10 nats_ready "$NATS_URL"; then break; fi
		kill "$NATS_PID" 2>/dev/null; wait "$NATS_PID" 2>/dev/null
		tries=$((tries + 1))
		if [ $tries -ge 3 ]; then echo "# nats-server $name did not start:"; sed 's/^/#   /' "$TMP/nats-$name.log" | tail -20; return 1; fi
	done
	NATS_PORT_OF[$name]=$port
	NATS_PID_OF[$name]=$NATS_PID
	NATS_PIDS+=("$NATS_PID")
}

nats_stop() {
	local pid=${NATS_PID_OF[$1]:-}
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	NATS_PID_OF[$1]=
}

nats_stop_all() {
	local pid
	for pid in "${NATS_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${NATS_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	return 0
}

declare -A NATS_PORT_OF NATS_PID_OF
