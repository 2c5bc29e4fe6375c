# natslib.sh - a throwaway JetStream server for the tests of the JetStream store
# backend, sourced after testlib.sh. Each server listens on a free loopback port with
# its store under $TMP; nats_stop_all (run on exit) stops every server started.
#   nats_have            0 when nats-server is installed
#   nats_start NAME      starts server NAME (a fresh store dir unless it exists) and
#                        waits until JetStream answers; sets NATS_URL and NATS_PID
#   nats_stop NAME       stops server NAME (SIGTERM, then waits for it to exit)
# A 3-node cluster (nodes NAME-1, NAME-2, NAME-3, each with a config file of its own
# naming the other two as routes; client, cluster and monitoring ports on 127.0.0.1):
#   nats_cluster_start NAME   starts the three nodes and waits until JetStream has a
#                             leader (a sluice command works against the URL list);
#                             sets NATS_URLS (comma-separated) and NATS_MONITOR (the
#                             monitoring address of node 1, HOST:PORT)
#   nats_cluster_kill NODE    SIGKILL of node NODE (1..3) of the last cluster started
#   nats_cluster_restart NODE starts node NODE again on its ports and its store
#   nats_cluster_url NODE     the client URL of node NODE
#   nats_monitor ADDR PATH    GET of PATH on a monitoring address (e.g. /jsz, /healthz)
#   nats_cluster_current      every stream has a leader that sees all its replicas current
#   nats_chunk_race ARGS...   four writers racing with chunks over m/1..m/8 (the store
#                        named by ARGS, e.g. --deployment D), then the checks

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
		kill "$NATS_PID" 2>/dev/null; wait "$NATS_PID" 2>/dev/null; NATS_PID=
		tries=$((tries + 1))
		if [ $tries -ge 3 ]; then echo "# nats-server $name did not start:"; sed 's/^/#   /' "$TMP/nats-$name.log" | tail -20; return 1; fi
	done
	NATS_PORT_OF[$name]=$port
	NATS_PID_OF[$name]=$NATS_PID
}

nats_stop() {
	local pid=${NATS_PID_OF[$1]:-}
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	NATS_PID_OF[$1]=
}

# Stops the servers still running (those stopped or killed were waited for already,
# and their pids may belong to someone else by now).
nats_stop_all() {
	local pid
	for pid in "${NATS_PID_OF[@]}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done
	for pid in "${NATS_PID_OF[@]}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null; done
	return 0
}

declare -A NATS_PORT_OF NATS_PID_OF

# The cluster's state: its name, and per node its ports.
NATS_CLUSTER=
declare -A NATS_CPORT_OF NATS_MPORT_OF

nats_cluster_url() { printf 'nats://127.0.0.1:%s' "${NATS_PORT_OF[$NATS_CLUSTER-$1]}"; }

# Writes the config file of node N of cluster NAME (its ports must be picked).
nats_cluster_conf() {
	local name=$1 n=$2 node=$1-$2 i routes=
	for i in 1 2 3; do
		[ "$i" = "$n" ] && continue
		routes="$routes${routes:+, }\"nats-route://127.0.0.1:${NATS_CPORT_OF[$name-$i]}\""
	done
	cat >"$TMP/nats-$node.conf" <<EOF
server_name: "$node"
listen: "127.0.0.1:${NATS_PORT_OF[$node]}"
http: "127.0.0.1:${NATS_MPORT_OF[$node]}"
jetstream { store_dir: "$TMP/nats-$node" }
cluster {
  name: "$name"
  listen: "127.0.0.1:${NATS_CPORT_OF[$node]}"
  routes: [$routes]
}
EOF
}

# Starts node N of the current cluster from its config file (no wait).
nats_cluster_node() {
	local node=$NATS_CLUSTER-$1
	nats-server -c "$TMP/nats-$node.conf" >>"$TMP/nats-$node.log" 2>&1 &
	NATS_PID_OF[$node]=$!
}

# The cluster answers once a read of the store works against the URL list, which
# needs a JetStream meta leader.
nats_cluster_ready() { "$SLUICE" streams --store "$NATS_URLS" >/dev/null 2>&1; }

# Whether every node's monitoring port answers (each bound its ports).
nats_cluster_up() {
	local i
	for i in 1 2 3; do
		nats_monitor "127.0.0.1:${NATS_MPORT_OF[$NATS_CLUSTER-$i]}" /varz >/dev/null || return 1
	done
}

nats_cluster_start() {
	local name=$1 i tries=0
	NATS_CLUSTER=$name
	while :; do
		for i in 1 2 3; do
			NATS_PORT_OF[$name-$i]=$(nats_free_port)
			NATS_CPORT_OF[$name-$i]=$(nats_free_port)
			NATS_MPORT_OF[$name-$i]=$(nats_free_port)
		done
		for i in 1 2 3; do nats_cluster_conf "$name" "$i"; done
		for i in 1 2 3; do nats_cluster_node "$i"; done
		NATS_URLS="$(nats_cluster_url 1),$(nats_cluster_url 2),$(nats_cluster_url 3)"
		NATS_MONITOR="127.0.0.1:${NATS_MPORT_OF[$name-1]}"
		if wait_until 30 nats_cluster_up && wait_until 60 nats_cluster_ready; then return 0; fi
		for i in 1 2 3; do nats_cluster_kill "$i"; done
		tries=$((tries + 1))
		if [ $tries -ge 3 ]; then
			echo "# the nats-server cluster $name did not start:"
			for i in 1 2 3; do sed "s/^/#   $name-$i: /" "$TMP/nats-$name-$i.log" | tail -10; done
			return 1
		fi
	done
}

nats_cluster_kill() {
	local node=$NATS_CLUSTER-$1 pid
	pid=${NATS_PID_OF[$node]:-}
	[ -n "$pid" ] || return 0
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	NATS_PID_OF[$node]=
	return 0
}

nats_cluster_restart() {
	nats_cluster_kill "$1"
	nats_cluster_node "$1"
}

# nats_monitor HOST:PORT PATH: prints what a node's monitoring port answers (its
# JSON); fails when it does not answer 200 within 2 s (/healthz: the node and its
# JetStream are current).
nats_monitor() {
	python3 -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen("http://" + sys.argv[1] + sys.argv[2], timeout=2).read().decode())' "$1" "$2" 2>/dev/null
}

# nats_cluster_current: whether every stream of the cluster (the event log and the
# buckets of every namespace) has a leader that sees each of its replicas current,
# asked of each node that runs: a node restarted after a kill has caught up then, and
# killing another one leaves every stream a quorum.
nats_cluster_current() {
	local i pid out n g total streams=0 good=0
	for i in 1 2 3; do
		pid=${NATS_PID_OF[$NATS_CLUSTER-$i]:-}
		[ -n "$pid" ] || return 1
		out=$(nats_monitor "127.0.0.1:${NATS_MPORT_OF[$NATS_CLUSTER-$i]}" '/jsz?accounts=true&streams=true') || return 1
		read -r n g < <(jq -r --arg me "$NATS_CLUSTER-$i" '[.account_details[]?.stream_detail[]?
			| select(.cluster.leader == $me)] | "\(length) \(map(select(all(.cluster.replicas[]?; .current))) | length)"' <<<"$out")
		streams=$((streams + n)); good=$((good + g))
		total=$(jq '[.account_details[]?.stream_detail[]?] | length' <<<"$out")
	done
	[ "$streams" -gt 0 ] && [ "$streams" = "$good" ] && [ "$streams" = "$total" ]
}

# Four writers append 200 keyed events each, spread over the 8 streams m/1..m/8, in
# chunks of 50 (the whole file again after a refusal). A chunk that loses a race is
# taken back by take-back records; on a cluster, an id the server still holds in a
# proposal is answered as a duplicate of sequence 0 and goes again. Every stream must
# read back with contiguous offsets (no offset given twice, none missing), every key
# once, and verify find nothing wrong.
nats_chunk_race() {
	local w k bad= pids=()
	for w in 1 2 3 4; do
		for k in $(seq 1 200); do
			printf '{"stream":"m/%s","type":"t","idempotencyKey":"mw%s-%s"}\n' $(((k * 7 + w) % 8 + 1)) "$w" "$k"
		done >"$TMP/m$w.jsonl"
		(until "$SLUICE" append --jsonl --batch-size 50 "$@" <"$TMP/m$w.jsonl" >/dev/null 2>>"$TMP/m$w.err"; do :; done) &
		pids+=($!)
	done
	wait "${pids[@]}"
	echo "# $(cat "$TMP"/m?.err 2>/dev/null | wc -l) refused chunks, $(cat "$TMP"/m?.err 2>/dev/null | grep -c 'could not be taken back') of them partly written"
	for k in 1 2 3 4 5 6 7 8; do
		"$SLUICE" events m/$k "$@" >"$TMP/m.$k" 2>"$TMP/m.$k.err" &&
			[ "$(jq -s '[.[].offset] == [range(1; length + 1)]' "$TMP/m.$k")" = true ] || bad="$bad m/$k"
	done
	eq "m/1..m/8 read back with contiguous offsets" "${bad:-none}" "none"
	[ -z "$bad" ] || cat "$TMP"/m.?.err | sed 's/^/#   /' | head -5
	eq "each of the 800 keys is stored once" \
		"$(cat "$TMP"/m.? | jq -r '.idempotencyKey // empty' | grep '^mw' | sort | uniq -c | awk '$1 == 1' | wc -l)" "800"
	"$SLUICE" verify "$@" >"$TMP/mverify.out" 2>&1
	eq "verify finds no problem after the race" "$(jq -c 'select(.ok != null) | [.ok, .problems]' "$TMP/mverify.out")" "[true,0]"
	grep -q '"ok":true' "$TMP/mverify.out" || head -5 "$TMP/mverify.out" | sed 's/^/#   /'
}
