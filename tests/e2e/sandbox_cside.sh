#!/bin/bash
# sandbox_cside.sh - runaways inside C library calls (issue 10): each case loops in a
# library function's C code, with no VM instruction and no allocation inside one
# call, in a processor with a 1 s wall clock (and instructions enough for hours) beside
# a well-behaved control processor (lib/sandboxlib.sh). Each must fail its batch with
# exactly "processor 'hostile' exceeded its wallclock budget", and `sluice run
# --until-caught-up` must end within MAX_MS: the wall clock, up to 1 s over it, and a
# generous second for starting the engine (one attempt per batch). Before issue 10
# these ran for minutes.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/sandboxlib.sh"

WALL="^processor 'hostile' exceeded its wallclock budget$"
CSIDE_LIMITS='{ instructions = 1e15, memory = "128MiB", wallclock = "1s" }'

for c in sort_repeat sort_once format utf8_len utf8_offset codes_iter byte_range unpack \
	unpack_z tonumber rawequal next_sparse upper; do
	LIMITS=$CSIDE_LIMITS MAX_MS=${CSIDE_MAX_MS:-3500} hostile "cside_$c" "$WALL"
done

finish
