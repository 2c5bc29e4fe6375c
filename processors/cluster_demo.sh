#!/bin/sh
# cluster_demo.sh SLUICE - `make cluster-demo`: the example deployment on a 3-node NATS
# JetStream cluster on 127.0.0.1 (streams and buckets with 3 replicas) with two
# runners: appends the events of `make demo`, shows what the processors did, kills one
# node and appends again, then stops everything it started and removes its files.
set -eu
sluice=${1:-sluice}
if ! command -v nats-server >/dev/null 2>&1; then
	echo "cluster-demo: nats-server is not installed (make deps installs it)" >&2
	exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
servers="" runners=""
stop() {
	for p in $runners; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $runners; do wait "$p" 2>/dev/null || true; done
	for p in $servers; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $servers; do wait "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap stop EXIT
trap 'exit 1' INT TERM

step() { printf '\n# %s\n' "$*"; }
# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 100 ms until it succeeds.
wait_for() {
	t=$1 what=$2
	shift 2
	end=$(($(date +%s) + t))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$end" ]; then
			echo "cluster-demo: $what did not happen within $t s; the logs:" >&2
			tail -n 5 "$dir"/*.log >&2
			exit 1
		fi
		sleep 0.1
	done
}
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cp -r "$here" "$dir/processors"
cp -r "$here/../schemas" "$dir/schemas"
mkdir -p "$dir/processors/data"

step "a 3-node JetStream cluster on 127.0.0.1"
for n in 1 2 3; do
	eval "port$n=$(free_port) route$n=$(free_port) http$n=$(free_port)"
done
urls="nats://127.0.0.1:$port1,nats://127.0.0.1:$port2,nats://127.0.0.1:$port3"
for n in 1 2 3; do
	eval "port=\$port$n route=\$route$n http=\$http$n"
	routes=""
	for m in 1 2 3; do
		[ "$m" = "$n" ] && continue
		eval "r=\$route$m"
		routes="$routes${routes:+, }\"nats-route://127.0.0.1:$r\""
	done
	cat >"$dir/node$n.conf" <<EOF
server_name: "node$n"
listen: "127.0.0.1:$port"
http: "127.0.0.1:$http"
jetstream { store_dir: "$dir/node$n" }
cluster { name: "demo", listen: "127.0.0.1:$route", routes: [$routes] }
EOF
	nats-server -c "$dir/node$n.conf" >"$dir/node$n.log" 2>&1 &
	servers="$servers $!"
	eval "pid$n=$!"
	echo "node$n: client $port, cluster $route, monitoring $http"
done
wait_for 60 "a JetStream leader" "$sluice" streams --store "$urls" --namespace demo

# The example deployment on the cluster. webhook's projection table (ctx.db) is in
# processors/demo.projections.db, the projection database of this machine's runners.
D="$dir/processors/cluster.deploy.lua"
cat >"$D" <<EOF
return {
  store = "$urls", namespace = "demo", replicas = 3,
  schemas = { "../schemas" }, lease = "1s", console = "data/console.sock",
  processors = {
    counter = { script = "counter.lua", streams = "counters/*" },
    echo = { script = "echo.lua", streams = "echo/*" },
    circuit_breaker = { script = "circuit_breaker.lua", streams = "api/*" },
    webhook = { script = "webhook.lua", streams = "webhooks/*" },
  },
}
EOF
step "sluice check: the deployment (store = the 3 URLs, namespace demo, replicas 3)"
"$sluice" check "$D"

step "a first run sets each processor's side-effect anchor"
"$sluice" run "$D" --until-caught-up

step "two runners: they split each processor's 16 partitions between them"
for r in 1 2; do
	"$sluice" run "$D" --log-format text 2>"$dir/runner$r.log" &
	runners="$runners $!"
done
# Each runner says which partitions it runs once the two have split them.
split() { [ "$(cat "$dir"/runner?.log | grep -c "of processor '$1' (8 of 16; 2 runners)")" -ge 2 ]; }
for p in counter echo circuit_breaker webhook; do wait_for 30 "the runners splitting $p" split "$p"; done
for r in 1 2; do
	echo "runner$r:"
	grep -h "(8 of 16; 2 runners)" "$dir/runner$r.log" | sed 's/^[^ ]* [^ ]* /  /'
done

step "appending events: counters, an echo request, and a burst on a rate-limited API stream"
for by in 40 40 40; do
	"$sluice" append counters/a counter/incremented "{\"by\":$by}" --deployment "$D"
done
"$sluice" append counters/b counter/incremented '{"by":5}' --deployment "$D"
"$sluice" append echo/1 echo/input-received '{"text":"hello"}' --deployment "$D"
"$sluice" append api/orders circuit-breaker/configured \
	'{"burstCapacity":2,"refillRatePerMinute":60}' --deployment "$D"
for i in 1 2 3; do
	"$sluice" append api/orders api/called "{\"call\":$i}" --deployment "$D"
done

caught_up() {
	[ "$("$sluice" status "$D" | jq -s 'length > 0 and all(.lag == 0)')" = true ] &&
		"$sluice" events api/orders --type stream/paused --deployment "$D" | grep -q .
}
wait_for 30 "the runners catching up" caught_up

step "the breaker paused api/orders: the store now refuses its events"
"$sluice" append api/orders api/called '{"call":4}' --deployment "$D" || true

step "the state of every instance"
for p in counter echo circuit_breaker; do "$sluice" state "$D" "$p"; done

step "what the processors emitted"
"$sluice" events counters/a --type counter/milestone --deployment "$D"
"$sluice" events echo/1 --type echo/output-echoed --deployment "$D"
"$sluice" events api/orders --type stream/paused --deployment "$D"

step "sluice status (partition, and runner: the process running it)"
"$sluice" status "$D"

step "3 replicas of the event log and of each bucket (node1's monitoring port)"
python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' \
	"http://127.0.0.1:$http1/jsz?accounts=true&streams=true&config=true" |
	jq -r '.account_details[].stream_detail[]? | "\(.name): \(.config.num_replicas) replicas, leader \(.cluster.leader)"'

step "SIGKILL of node1: the other two go on"
kill -9 "$pid1"
wait "$pid1" 2>/dev/null || true
"$sluice" append counters/b counter/incremented '{"by":95}' --deployment "$D"
counted() { "$sluice" state "$D" counter counters/b | jq -e '.state.count == 100'; }
wait_for 30 "the runners folding it" counted
"$sluice" state "$D" counter counters/b
"$sluice" events counters/b --type counter/milestone --deployment "$D"

step "stopping the runners and the cluster"
