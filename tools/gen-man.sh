#!/bin/sh
# gen-man.sh SLUICE OUT - writes the man page sluice.1 from the --help output of the
# built binary SLUICE: `sluice --help` gives the synopsis and the description, and
# `sluice COMMAND --help` one section per command, so the page never drifts from
# what the commands say. Run by the build (CMakeLists.txt); needs sh, sed and awk.
set -eu
sluice=$1
out=$2
tmp=$out.tmp

# Escapes text for roff in no-fill mode: backslashes, then a leading . or '.
roff() { sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }

version=$("$sluice" --version | sed 's/^sluice //')
help=$("$sluice" --help)
# The command names: the lines "  sluice NAME ..." of the command list.
commands=$(printf '%s\n' "$help" | awk '/^commands:/ { on = 1; next }
	on && /^  sluice [a-z]/ { print $2 } on && /^$/ { exit }')

{
	printf '.TH SLUICE 1 "" "sluice %s" "User Commands"\n' "$version"
	printf '.SH NAME\nsluice \\- a stream processor engine whose processors are Lua scripts\n'
	printf '.SH SYNOPSIS\n.nf\n'
	printf '%s\n' "$help" | awk '/^commands:/ { on = 1; next } on && /^$/ { exit } on' |
		sed 's/^ *//' | roff
	printf '.fi\n.SH DESCRIPTION\n'
	# The paragraph between the usage line and the command list.
	printf '%s\n' "$help" | awk 'NR > 2 && /^commands:/ { exit } NR > 2' | roff
	printf '.PP\n.nf\n'
	# What follows the command list: --version, help, the options of every command
	# and the environment.
	printf '%s\n' "$help" | awk '/^commands:/ { on = 1; next } on && /^$/ { rest = 1 } rest' |
		sed '1d' | roff
	printf '.fi\n.SH COMMANDS\n'
	for c in $commands; do
		printf '.SS %s\n.nf\n' "$c"
		"$sluice" "$c" --help | roff
		printf '.fi\n'
	done
	printf '.SH "EXIT STATUS"\n0 on success, 1 on an error (one line on standard error starting\n'
	printf '\\(lqsluice: \\(rq).\n'
	printf '.SH "SEE ALSO"\nREADME.md, installed in share/doc/sluice/ beside share/sluice/.\n'
} >"$tmp"
mv "$tmp" "$out"
