# bash completion for dhcpleased(8); works with or without the bash-completion package.
# dhcpleased [-dnv] [-f file] [-s socket] [interface ...]

_dhcpleased_ifaces() {
	local d
	for d in /sys/class/net/*; do
		[ -e "$d" ] && [ "${d##*/}" != lo ] && printf '%s\n' "${d##*/}"
	done
}

_dhcpleased() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	COMPREPLY=()
	case $prev in
	-f | -s)
		# the default path on an empty word, file names once something is typed
		if [ -z "$cur" ]; then
			COMPREPLY=(/etc/dhcpleased.conf)
			[ "$prev" = -s ] && COMPREPLY=(/run/dhcpleased/dhcpleased.sock)
			return
		fi
		compopt -o filenames 2>/dev/null
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '-d -n -v -f -s' -- "$cur")
		return
	fi
	mapfile -t COMPREPLY < <(compgen -W "$(_dhcpleased_ifaces)" -- "$cur")
}
complete -F _dhcpleased dhcpleased
