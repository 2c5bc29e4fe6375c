#!/bin/bash
# http_reload.sh - HTTP appends are checked against the contracts the running
# deployment has now: after a hot reload of an edited contract, a POST is judged by the
# new contract (as `sluice append --deployment` judges it), not by the one the engine
# started with; an edit that does not load (a reload error) leaves the contracts in
# force as they were; a fixed edit takes over again. A changed HTTP setting is a
# warning: it applies at the next start.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/httplib.sh"
S=$SLUICE
mkdir -p "$TMP/schemas"
cp "$SLUICE_SRC"/schemas/*.json "$TMP/schemas/"
C=$TMP/schemas/counter.contract.json
cat >"$TMP/template.lua" <<EOF2
return { store = "$(test_store "$TMP/store.db")", schemas = { "$TMP/schemas" },
  http = "127.0.0.1:@PORT@",
  processors = { counter = { script = "$SLUICE_SRC/processors/counter.lua", streams = "counters/*" } } }
EOF2
by() { printf '{"type":"counter/incremented","payload":{"by":%s}}' "$1"; }
took_over() { [ "$(grep -c 'reload: contract changed' "$TMP/run.log")" -ge "$1" ]; }
reload_error() { code GET /status >/dev/null; jq -e '.[0].reloadError != null' "$TMP/body" >/dev/null; }
no_reload_error() { code GET /status >/dev/null; jq -e '.[0].reloadError == null' "$TMP/body" >/dev/null; }

check "the engine serves" http_start "$TMP/template.lua"
eq "by 200 under the contract it started with: 200" "$(code POST /streams/counters%2Fa -d "$(by 200)")" 200
sed -i 's/"minimum": 1}/"minimum": 1, "maximum": 100}/' "$C"
check "the edited contract takes over" wait_until 30 took_over 1
eq "by 200 now: 400" "$(code POST /streams/counters%2Fa -d "$(by 200)")" 400
eq "as sluice append --deployment says it" "$(jq -r .error "$TMP/body")" \
	"$($S append counters/a counter/incremented '{"by":200}' --deployment "$TMP/deploy.lua" 2>&1 | sed 's/^sluice: //')"
eq "by 20: 200" "$(code POST /streams/counters%2Fa -d "$(by 20)")" 200
cp "$C" "$TMP/good.json"
printf '{"name": "counter", ' >"$C"
check "a contract that does not parse is a reload error" wait_until 30 reload_error
eq "the contract in force stays: by 200 still 400" "$(code POST /streams/counters%2Fa -d "$(by 200)")" 400
eq "and by 20 still 200" "$(code POST /streams/counters%2Fa -d "$(by 20)")" 200
sed 's/, "maximum": 100}/}/' "$TMP/good.json" >"$C"
check "a fixed contract loads" wait_until 30 no_reload_error
check "and takes over" wait_until 30 took_over 2
eq "by 200 again: 200" "$(code POST /streams/counters%2Fa -d "$(by 200)")" 200
eq "no instance faulted on what HTTP let in" "$(code GET /healthz)" 200
sed -i 's/http = /httpMaxBody = "1KiB", http = /' "$TMP/deploy.lua"
warned() { grep -q 'the HTTP settings changed (http, httpToken, httpMaxBody, httpTimeout, httpOrigins); they apply at the next start' "$TMP/run.log"; }
check "a changed httpMaxBody: a warning that it applies at the next start" wait_until 30 warned
python3 -c 'print("{\"type\":\"t/pad\",\"payload\":{\"pad\":\"" + "a" * 4096 + "\"}}")' >"$TMP/4k"
eq "and the running engine keeps its cap" "$(code POST /streams/other --data-binary @"$TMP/4k")" 200
check "sluice run stops cleanly" http_stop
finish
