#!/bin/bash
# options_cli.sh - numeric options, empty paths and long arguments (issue 10, items 14
# and 17): integers are exactly an optional sign and digits, within a range named in
# the message; --store '' is refused; an echoed value is cut to 64 bytes plus "...";
# sizes computed from --batch-size never wrap.
. "$(dirname "$0")/lib/testlib.sh"
S=$SLUICE

$S append s/1 t '{"n":1}' >/dev/null
printf '%s\n' '{"type":"t"}' '{"type":"t"}' >"$TMP/two.jsonl"

# --batch-size: 2^62 and 2^61 once wrapped the chunk's allocation (a heap overflow).
for n in 4611686018427387904 2305843009213693952 100001 0 -1; do
	refuses "--batch-size $n is out of range" \
		"^sluice: --batch-size: must be between 1 and 100000, got '$n'\$" \
		$S append s/1 --jsonl --batch-size "$n" <"$TMP/two.jsonl"
done
refuses "--batch-size with a space" "^sluice: --batch-size: must be between 1 and 100000, got ' 5'" \
	$S append s/1 --jsonl --batch-size ' 5' <"$TMP/two.jsonl"
eq "nothing was appended by the refused batches" "$($S events s/1 | wc -l)" "2"
check "--batch-size 100000 is accepted" $S append s/1 --jsonl --batch-size 100000 <"$TMP/two.jsonl"

# Integers in options: a leading or trailing space, a fraction, hex, an overflow.
for v in ' 5' '5 ' '5.0' '0x5' '' '+' '99999999999999999999' '1e3'; do
	refuses "--from '$v' is refused" "^sluice: --from: must be a positive integer, got '" \
		$S events s/1 --from "$v"
done
eq "--from +2 is a sign and digits" "$($S events s/1 --from +2 | jq -c .offset | head -1)" "2"
refuses "--limit ' 1'" "^sluice: --limit: must be a positive integer" $S events s/1 --limit ' 1'
refuses "--offset '3 '" "^sluice: --offset: must be a positive integer" $S append s/1 t --offset '3 '

# Empty paths.
refuses "--store '' is refused" "^sluice: --store: must not be empty" $S events s/1 --store ''
refuses "--store= is refused" "^sluice: --store: must not be empty" $S streams --store=
refuses "--deployment '' is refused" "^sluice: --deployment: must not be empty" $S streams --deployment ''
check "no ./sluice.db was created" test ! -e sluice.db

# Long arguments are echoed cut short.
long=$(head -c 131000 /dev/zero | tr '\0' 'x')
x64=$(head -c 64 /dev/zero | tr '\0' 'x')
refuses "a 131 KB --from is echoed cut to 64 bytes" "^sluice: --from: must be a positive integer, got '$x64\.\.\.'\$" \
	$S events s/1 --from "$long"
refuses "a 131 KB stream name is echoed cut" "^sluice: stream: invalid stream name '$x64\.\.\.'" \
	$S events "$long/"
refuses "a 131 KB unknown option is echoed cut" "^sluice: events: unknown option '--x{62}\.\.\.' " \
	$S events s/1 "--$long"
refuses "a 131 KB command is echoed cut" "^sluice: unknown command '$x64\.\.\.'" $S "$long"
refuses "a 131 KB log level is echoed cut" "^sluice: --log-level: .*got '$x64\.\.\.'\$" \
	$S streams --log-level "$long"
for cmd in "$S events s/1 --from $long" "$S $long"; do
	n=$($cmd 2>&1 | wc -c)
	check "the message is short ($n bytes)" test "$n" -lt 300
done
# A multi-byte character is never cut in half.
e64=$(printf 'é%.0s' $(seq 40))
$S events s/1 --from "$e64" 2>"$TMP/err"
check "the cut keeps UTF-8 whole" iconv -f UTF-8 -t UTF-8 "$TMP/err" -o /dev/null
finish
