# bash completion for dhcpleasectl(8); works with or without the bash-completion package.
# dhcpleasectl [-jl] [-s socket] [-w maxwait] interface
# dhcpleasectl [-s socket] -m [interface] | [-j] -p | log verbose|brief | reload
# dhcpleasectl [-j] [-s socket] [-w maxwait] release interface

_dhcpleasectl_ifaces() {
	local d
	for d in /sys/class/net/*; do
		[ -e "$d" ] && [ "${d##*/}" != lo ] && printf '%s\n' "${d##*/}"
	done
}

_dhcpleasectl() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local i word words=()
	COMPREPLY=()
	case $prev in
	-s)
		# the default socket on an empty word, file names once something is typed
		if [ -z "$cur" ]; then
			COMPREPLY=(/run/dhcpleased/dhcpleased.sock)
			return
		fi
		compopt -o filenames 2>/dev/null
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return
		;;
	-w)
		mapfile -t COMPREPLY < <(compgen -W '5 10 30 60' -- "$cur")
		return
		;;
	log)
		mapfile -t COMPREPLY < <(compgen -W 'verbose brief' -- "$cur")
		return
		;;
	release)
		mapfile -t COMPREPLY < <(compgen -W "$(_dhcpleasectl_ifaces)" -- "$cur")
		return
		;;
	esac
	# the words before the cursor, option arguments left out
	for ((i = 1; i < COMP_CWORD; i++)); do
		word=${COMP_WORDS[i]}
		case $word in
		-s | -w) ((i++)) ;;
		-*) words+=("$word") ;;
		*) return ;; # the interface or command is already there
		esac
	done
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '-j -l -m -p -s -w' -- "$cur")
		return
	fi
	case " ${words[*]} " in
	*" -p "*) return ;;
	*" -m "* | *" -l "* | *" -j "* | *" -jl "* | *" -lj "*)
		mapfile -t COMPREPLY < <(compgen -W "$(_dhcpleasectl_ifaces)" -- "$cur")
		;;
	*)
		mapfile -t COMPREPLY < <(compgen -W "log reload release $(_dhcpleasectl_ifaces)" -- "$cur")
		;;
	esac
}
complete -F _dhcpleasectl dhcpleasectl
