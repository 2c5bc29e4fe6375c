#!/bin/sh
# gen_jsonl.sh N STREAMS - writes N lines of `sluice append --jsonl` input on stdout:
# counter/incremented events spread round-robin over STREAMS streams counters/s0..,
# each with a short note in its payload (about 110 bytes a line). bench_append's input.
n=${1:?usage: gen_jsonl.sh N STREAMS}
streams=${2:-100}
exec awk -v n="$n" -v s="$streams" 'BEGIN {
	for (k = 0; k < n; k++)
		printf "{\"stream\":\"counters/s%d\",\"type\":\"counter/incremented\",\"payload\":{\"by\":%d,\"note\":\"event %d of the bench\"}}\n", k % s, 1 + k % 7, k
}'
