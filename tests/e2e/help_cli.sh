#!/bin/bash
# help_cli.sh - --help on every command, --version, and deployment-selected stores.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE

for c in append events streams; do
	out=$($S $c --help); rc=$?
	check "sluice $c --help exits 0" test $rc -eq 0
	check "sluice $c --help shows its usage" grep -q "^usage: sluice $c" <<<"$out"
	check "sluice help $c matches" test "$($S help $c)" = "$out"
done
check "sluice --help lists the commands" grep -q "sluice events STREAM" <<<"$($S --help)"
check "sluice --version" grep -Eq '^sluice [0-9]+\.[0-9]+\.[0-9]+$' <<<"$($S --version)"
$S >/dev/null 2>&1; eq "sluice without a command exits 1" "$?" "1"

# Options may appear anywhere after the command.
eq "options before positionals" "$($S append --key k s/1 t '{}' | jq .offset)" "2"
eq "--opt=value form" "$($S events --from=2 s/1 | jq .offset)" "2"

# --deployment: the store is relative to the deployment file.
mkdir -p "$TMP/dep/data"
cat >"$TMP/dep/deploy.lua" <<'LUA'
return { store = "data/app.db", durability = "normal" }
LUA
check "append through --deployment" $S append d/1 t '{}' --deployment "$TMP/dep/deploy.lua" >/dev/null
check "the store lands beside the deployment" test -f "$TMP/dep/data/app.db"
eq "events through --deployment" "$($S events d/1 --deployment "$TMP/dep/deploy.lua" | wc -l)" "2"
echo 'return { durability = "fast" }' >"$TMP/dep/bad.lua"
refuses "a bad durability is named" "/durability: enum" $S streams --deployment "$TMP/dep/bad.lua"
echo 'return {' >"$TMP/dep/syntax.lua"
refuses "a deployment syntax error names the file" "syntax.lua" $S streams --deployment "$TMP/dep/syntax.lua"
echo 'return { store = os.getenv("HOME") }' >"$TMP/dep/env.lua"
refuses "a deployment runs without libraries" "os" $S streams --deployment "$TMP/dep/env.lua"
SLUICE_STORE="$TMP/env.db" $S append e/1 t >/dev/null
check "\$SLUICE_STORE selects the store" test -f "$TMP/env.db"
finish
