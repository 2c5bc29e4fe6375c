#!/bin/sh
# demo.sh SLUICE - runs the example deployment (processors/example.deploy.lua) on a
# fresh embedded SQLite store and shows what the processors did.
set -eu
sluice=${1:-sluice}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# A private copy, so the demo's store never lands in the source tree.
cp -r "$here" "$dir/processors"
cp -r "$here/../schemas" "$dir/schemas"
D="$dir/processors/example.deploy.lua"
mkdir -p "$dir/processors/data"

step() { printf '\n# %s\n' "$*"; }

step "sluice check: the deployment, its contracts and scripts are valid"
"$sluice" check "$D"

step "a first run on the empty store sets each processor's side-effect anchor"
"$sluice" run "$D" --until-caught-up

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

step "sluice run --until-caught-up"
"$sluice" run "$D" --until-caught-up

step "the breaker paused api/orders: the store now refuses its events"
"$sluice" append api/orders api/called '{"call":4}' --deployment "$D" || true

step "the state of every instance"
for p in counter echo circuit_breaker; do "$sluice" state "$D" "$p"; done

step "what the processors emitted"
"$sluice" events counters/a --type counter/milestone --deployment "$D"
"$sluice" events echo/1 --type echo/output-echoed --deployment "$D"
"$sluice" events api/orders --type stream/paused --deployment "$D"

step "sluice status"
"$sluice" status "$D"
