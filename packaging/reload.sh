# Shared by the maintainer scripts of ferrite-modules-* and ferrite-dkms
# (scripts/lib/package.py puts this text into each of them).
#
# An upgrade replaces the module of the running kernel while it may be loaded: the
# old package's prerm unloads it, noting the ferrite devices there were (name and
# netdev), and the new package's postinst loads the new module and makes those
# devices again.  Unloading removes every ferrite device; processes that hold one
# see IBV_EVENT_DEVICE_FATAL, as with "rdma link delete".

FERRITE_RUN=/run/ferrite

# ferrite_unload KVER: if KVER is the running kernel and ferrite is loaded, note its
# devices and unload it.
ferrite_unload() {
	[ "$(uname -r)" = "$1" ] && [ -d /sys/module/ferrite ] || return 0
	mkdir -p "$FERRITE_RUN"
	: > "$FERRITE_RUN/links"
	for d in /sys/class/infiniband/*; do
		[ -e "$d/ferrite_abi" ] || continue
		echo "${d##*/} $(cat "$d/parent")" >> "$FERRITE_RUN/links"
	done
	if rmmod ferrite; then
		: > "$FERRITE_RUN/reload"
	else
		echo "ferrite: could not unload ferrite; the new module loads at the next boot" >&2
	fi
}

# ferrite_reload: after ferrite_unload, load the module now installed and make the
# noted devices again.
ferrite_reload() {
	[ -e "$FERRITE_RUN/reload" ] || return 0
	rm -f "$FERRITE_RUN/reload"
	if ! modprobe ferrite; then
		echo "ferrite: could not load the new ferrite module" >&2
		return 0
	fi
	while read -r dev netdev; do
		rdma link add "$dev" type ferrite netdev "$netdev" ||
			echo "ferrite: could not make $dev on $netdev again" >&2
	done < "$FERRITE_RUN/links"
	rm -rf "$FERRITE_RUN"
}
