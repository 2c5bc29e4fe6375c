#!/bin/sh
# gen-completion.sh SLUICE OUT - writes the bash completion of sluice from the --help
# output of the built binary SLUICE: the commands from `sluice --help`, the options of
# each from `sluice COMMAND --help` (an option followed by one capitalised word there,
# "--key K", takes a value). Run by the build (CMakeLists.txt); needs sh, sed and awk.
set -eu
sluice=$1
out=$2
tmp=$out.tmp

help=$("$sluice" --help)
commands=$(printf '%s\n' "$help" | awk '/^commands:/ { on = 1; next }
	on && /^  sluice [a-z]/ { print $2 } on && /^$/ { exit }')

# Every command takes the log options, whether its --help lists them or not.
log_opts="--log-format --log-level"

{
	cat <<'HEAD'
# bash completion for sluice: commands, their options and deployment files.
# Generated from the --help output of sluice by tools/gen-completion.sh.

# The options of command $1 (the words after "opts="), and those that take a value.
_sluice_opts() {
	case $1 in
HEAD
	values=""
	for c in $commands; do
		text=$("$sluice" "$c" --help)
		opts=$({
			printf '%s\n' "$text" | sed -n 's/^ \{1,\}\(--[a-z][a-z-]*\).*/\1/p'
			printf '%s\n' $log_opts
		} | sort -u | tr '\n' ' ' | sed 's/ $//')
		vals=$(printf '%s\n' "$text" |
			sed -n 's/^ \{1,\}\(--[a-z][a-z-]*\) [A-Z][A-Z]*\( .*\)\{0,1\}$/\1/p' | sort -u |
			tr '\n' ' ')
		values="$values $vals"
		deploy=0
		printf '%s\n' "$text" | sed -n 1p | grep -q 'DEPLOYMENT' && deploy=1
		printf '\t%s) _sluice_o="%s%s" _sluice_d=%s ;;\n' "$c" "$opts" "" "$deploy"
	done
	values=$(printf '%s\n' $values --log-format --log-level | sort -u | tr '\n' '|' |
		sed 's/|$//')
	cat <<BODY
	*) _sluice_o="$log_opts" _sluice_d=0 ;;
	esac
}

_sluice() {
	local cur=\${COMP_WORDS[COMP_CWORD]} prev= cmd= i npos=0
	COMPREPLY=()
	[ "\$COMP_CWORD" -gt 0 ] && prev=\${COMP_WORDS[COMP_CWORD - 1]}
	if [ "\$COMP_CWORD" -le 1 ]; then
		COMPREPLY=(\$(compgen -W "$(printf '%s ' $commands)help --help --version" -- "\$cur"))
		return 0
	fi
	cmd=\${COMP_WORDS[1]}
	if [ "\$cmd" = help ]; then
		[ "\$COMP_CWORD" -eq 2 ] && COMPREPLY=(\$(compgen -W "$(printf '%s ' $commands)" -- "\$cur"))
		return 0
	fi
	_sluice_opts "\$cmd"
	case \$prev in
	--log-format) COMPREPLY=(\$(compgen -W "text json" -- "\$cur")); return 0 ;;
	--log-level) COMPREPLY=(\$(compgen -W "debug info warn error" -- "\$cur")); return 0 ;;
	--deployment)
		compopt -o filenames 2>/dev/null
		COMPREPLY=(\$(compgen -f -X '!*.lua' -- "\$cur") \$(compgen -d -- "\$cur"))
		return 0 ;;
	--store)
		compopt -o filenames 2>/dev/null
		COMPREPLY=(\$(compgen -f -- "\$cur"))
		return 0 ;;
	$values) return 0 ;;
	esac
	if [[ \$cur == -* ]]; then
		COMPREPLY=(\$(compgen -W "\$_sluice_o --help" -- "\$cur"))
		return 0
	fi
	# The first positional argument of a deployment command is the deployment file.
	for ((i = 2; i < COMP_CWORD; i++)); do
		case \${COMP_WORDS[i]} in
		-*) ;;
		*) case \${COMP_WORDS[i - 1]} in $values) ;; *) npos=\$((npos + 1)) ;; esac ;;
		esac
	done
	if [ "\$_sluice_d" = 1 ] && [ "\$npos" -eq 0 ]; then
		compopt -o filenames 2>/dev/null
		COMPREPLY=(\$(compgen -f -X '!*.lua' -- "\$cur") \$(compgen -d -- "\$cur"))
	fi
	return 0
}
complete -F _sluice sluice
BODY
} >"$tmp"
mv "$tmp" "$out"
