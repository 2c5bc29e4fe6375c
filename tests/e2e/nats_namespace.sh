#!/bin/bash
# nats_namespace.sh - namespaces and replicas of the JetStream backend: two
# namespaces on one server share nothing (streams, events, positions, processor
# rows, leases), the CLI names one with --namespace or $SLUICE_NAMESPACE and a
# deployment with `namespace`; `sluice check` refuses bad values naming the file and
# field; `replicas` reaches the server (a single node refuses 3).
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/natslib.sh"
S=$SLUICE

if ! nats_have; then
	echo "# skipped: nats-server is not installed (make deps installs it); the JetStream backend is untested"
	finish
	exit
fi
unset SLUICE_NAMESPACE
nats_start ns || { failt "nats-server started"; finish; exit; }
U=$NATS_URL

# ---- the CLI: --namespace and $SLUICE_NAMESPACE ---------------------------------------------
$S append orders/1 t/a '{"in":"default"}' --store "$U" >/dev/null
$S append orders/1 t/a '{"in":"blue"}' --store "$U" --namespace blue >/dev/null
$S append orders/1 t/b '{"in":"blue"}' --store "$U" --namespace blue >/dev/null
SLUICE_NAMESPACE=green $S append green/only t/a '{"in":"green"}' --store "$U" >/dev/null
eq "the default namespace sees its own streams only" \
	"$($S streams --store "$U" | jq -r .stream | paste -sd,)" "orders,orders/1"
eq "namespace blue sees its own streams only" \
	"$($S streams --store "$U" --namespace blue | jq -c '[.stream, .head]' | paste -sd,)" \
	'["orders",2],["orders/1",3]'
eq "\$SLUICE_NAMESPACE names a namespace (green)" \
	"$(SLUICE_NAMESPACE=green $S streams --store "$U" | jq -r .stream | paste -sd,)" "green,green/only"
eq "--namespace wins over \$SLUICE_NAMESPACE" \
	"$(SLUICE_NAMESPACE=green $S streams --store "$U" --namespace blue | jq -r .stream | paste -sd,)" \
	"orders,orders/1"
eq "the events of one namespace are not in the other" \
	"$($S events orders/1 --store "$U" --namespace blue --from 2 | jq -r .payload.in | paste -sd,)" \
	"blue,blue"
eq "positions are per namespace (each has its own JetStream stream)" \
	"$($S events orders/1 --store "$U" --namespace blue --from 2 --limit 1 | jq .position)" \
	"$($S events orders/1 --store "$U" --from 2 --limit 1 | jq .position)"
eq "a key of one namespace is not a duplicate in another" \
	"$($S append k/1 t/a --key same --store "$U" | jq -c .duplicate),$($S append k/1 t/a --key same --store "$U" --namespace blue | jq -c .duplicate)" \
	"null,null"
eq "verify walks one namespace" \
	"$($S verify --store "$U" --namespace green | jq -c 'select(.ok != null) | .ok')" "true"
refuses "--namespace with a character JetStream names cannot hold" \
	"^sluice: --namespace: must be 1 to 64 of \[A-Za-z0-9_-\], got 'a\.b'$" \
	$S streams --store "$U" --namespace a.b
refuses "an empty --namespace" "^sluice: --namespace: must not be empty" \
	$S streams --store "$U" --namespace ''
refuses "a bad \$SLUICE_NAMESPACE" \
	"^sluice: \\\$SLUICE_NAMESPACE: must be 1 to 64 of \[A-Za-z0-9_-\], got 'x y'$" \
	env SLUICE_NAMESPACE='x y' $S streams --store "$U"
refuses "--namespace on a SQLite store" \
	"^sluice: --namespace: applies only to a nats:// store, and the store is '.*x\.db'$" \
	$S streams --store "$TMP/x.db" --namespace blue
eq "\$SLUICE_NAMESPACE is ignored by a SQLite store" \
	"$(SLUICE_NAMESPACE=blue $S append s/1 t/a --store "$TMP/x.db" | jq .offset)" "2"
refuses "--namespace with --deployment" \
	"^sluice: --namespace and --deployment cannot be used together" \
	$S streams --deployment "$TMP/none.lua" --namespace blue
check "--help of a store command names --namespace and \$SLUICE_NAMESPACE" \
	sh -c "$S streams --help | grep -q -- '--namespace NS .*SLUICE_NAMESPACE'"
check "sluice --help names \$SLUICE_NAMESPACE" sh -c "$S --help | grep -q '^  SLUICE_NAMESPACE'"

# ---- deployments: namespace and replicas ---------------------------------------------------
mkdir -p "$TMP/schemas" "$TMP/procs"
cat >"$TMP/schemas/tally.contract.json" <<'EOF'
{ "name": "tally", "version": 1, "consumes": ["t/inc"], "emits": [],
  "events": { "t/inc": {"type": "object"} },
  "state": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "initialState": {"n": 0} }
EOF
cat >"$TMP/procs/tally.lua" <<'EOF'
return { contract = "tally", reduce = { ["t/inc"] = function(s) return { n = s.n + 1 } end } }
EOF
deployment() { # FILE NAMESPACE-LINE
	cat >"$1" <<EOF
return {
  store = "$U", $2 schemas = { "$TMP/schemas" }, lease = "1s",
  processors = { tally = { script = "$TMP/procs/tally.lua", streams = "in/*" } },
}
EOF
}
deployment "$TMP/red.lua" 'namespace = "red", replicas = 1,'
deployment "$TMP/blue.lua" 'namespace = "blue",'
eq "sluice check takes namespace and replicas" "$($S check "$TMP/red.lua" | jq -c .ok)" "true"
for i in 1 2 3; do $S append in/a t/inc --deployment "$TMP/red.lua" >/dev/null; done
$S append in/a t/inc --deployment "$TMP/blue.lua" >/dev/null
eq "an append --deployment goes to the deployment's namespace" \
	"$($S streams in/a --store "$U" --namespace red | jq .head),$($S streams in/a --store "$U" --namespace blue | jq .head)" \
	"4,2"
$S run "$TMP/red.lua" --until-caught-up 2>/dev/null
eq "a run folds its namespace's events" "$($S state "$TMP/red.lua" tally in/a | jq -c '[.offset, .state.n]')" "[4,3]"
eq "the other namespace's rows are untouched" \
	"$($S state "$TMP/blue.lua" tally in/a | jq -c '[.offset, .status, .state.n]')" '[0,"new",0]'
$S run "$TMP/blue.lua" --log-format text 2>"$TMP/blue.err" &
BLUE=$!
$S run "$TMP/red.lua" --log-format text 2>"$TMP/red.err" &
RED=$!
runner_of() { $S status "$1" | jq -r 'select(.stream == "in/a") | .runner // "null"'; }
both_run() { [ "$(runner_of "$TMP/red.lua")" != null ] && [ "$(runner_of "$TMP/blue.lua")" != null ]; }
check "each namespace has its own lease: a runner of each holds tally at once" wait_until 20 both_run
eq "and they are different runners" \
	"$([ "$(runner_of "$TMP/red.lua")" != "$(runner_of "$TMP/blue.lua")" ] && echo yes)" "yes"
blue_caught_up() { [ "$($S state "$TMP/blue.lua" tally in/a | jq .state.n)" = 1 ]; }
check "the runner of blue folds blue's event only" wait_until 20 blue_caught_up
# A running engine keeps its namespace: a reload that changes it is refused.
sed -i 's/namespace = "blue",/namespace = "green",/' "$TMP/blue.lua"
kill -HUP "$BLUE"
refused_reload() { grep -q '/namespace: cannot change while sluice run is running (it uses blue; restart it to use green)' "$TMP/blue.err"; }
check "a hot reload refuses a changed namespace" wait_until 20 refused_reload
sed -i 's/namespace = "green",/namespace = "blue",/' "$TMP/blue.lua"
kill -TERM "$BLUE" "$RED"
wait "$BLUE" "$RED" 2>/dev/null
check "the repl of a deployment opens its namespace" \
	sh -c "$S repl '$TMP/blue.lua' -e 'return #events(\"in/a\")' | grep -qx 2"
check "the repl without a deployment takes \$SLUICE_NAMESPACE" \
	sh -c "SLUICE_STORE='$U' SLUICE_NAMESPACE=red $S repl -e 'return #events(\"in/a\")' | grep -qx 4"

deployment "$TMP/r3.lua" 'namespace = "r3", replicas = 3,'
refuses "replicas reach the server: a single node refuses 3" \
	"cannot create the event stream: replicas > 1 not supported in non-clustered mode" \
	$S append in/a t/inc --deployment "$TMP/r3.lua"
cat >"$TMP/bad.lua" <<EOF
return { store = "$U", namespace = "a.b", replicas = 0 }
EOF
# check lists every error, one line each, naming the file and the field.
eq "check: a namespace JetStream cannot hold, replicas out of range" \
	"$($S check "$TMP/bad.lua" 2>&1; echo "exit $?")" \
	"sluice: $TMP/bad.lua: /namespace: pattern: \"a.b\" does not match '^[A-Za-z0-9_-]{1,64}\$'
sluice: $TMP/bad.lua: /replicas: minimum: 0 is less than 1
exit 1"
cat >"$TMP/bad.lua" <<EOF
return { store = "x.db", namespace = "blue", replicas = 3 }
EOF
eq "check: namespace and replicas on a SQLite store" \
	"$($S check "$TMP/bad.lua" 2>&1; echo "exit $?")" \
	"sluice: $TMP/bad.lua: /namespace: applies only to a nats:// store, and store is '$TMP/x.db'
sluice: $TMP/bad.lua: /replicas: applies only to a nats:// store, and store is '$TMP/x.db'
exit 1"
nats_stop ns
finish
