# Shared by the guest scripts (sourced as /ferrite/lib.sh).  They run as the guest's
# PID 1, which must never exit: the kernel panics when init dies.

# guest_poweroff: flush the results, mark the run finished for the host, and power the
# guest off.  reboot(2) from busybox's "poweroff -f" is synchronous; sysrq-o (queued
# work) is only the fallback.  If both fail, wait: the host stops QEMU.
guest_poweroff() {
	: > /ferrite/out/finished
	sync
	busybox poweroff -f
	echo o > /proc/sysrq-trigger
	while :; do
		busybox sleep 3600
	done
}

# A slow kernel (the debug target's: KASAN under TCG) asks for longer timeouts with
# ferrite_timeout_scale=N on its command line.  TIMEOUT_SCALE is N (1 elsewhere), and
# scale_timeouts puts a `timeout` first in PATH that multiplies its duration by N,
# so that every `timeout SECS CMD`, also under `ip netns exec`, gets the longer one.
# It reads /proc/cmdline: call it once /proc is mounted.
# On such a kernel the checks also keep their work bounded (BOUNDED=1): the same
# checks, on the same code paths, with fewer and smaller messages (data.sh).
TIMEOUT_SCALE=1
BOUNDED=""
scale_timeouts() {
	[ -r /proc/cmdline ] || { echo "scale_timeouts: /proc is not mounted" >&2; return 1; }
	TIMEOUT_SCALE=$(sed -n 's/.*ferrite_timeout_scale=\([0-9][0-9]*\).*/\1/p' /proc/cmdline)
	TIMEOUT_SCALE=${TIMEOUT_SCALE:-1}
	[ "$TIMEOUT_SCALE" -gt 1 ] || return 0
	BOUNDED=1
	mkdir -p /tmp/ferrite-bin
	cat > /tmp/ferrite-bin/timeout <<EOS
#!/bin/sh
case "\$1" in
[0-9]*) t=\$1; shift; exec /usr/bin/timeout \$((\${t%s} * $TIMEOUT_SCALE)) "\$@" ;;
esac
exec /usr/bin/timeout "\$@"
EOS
	chmod +x /tmp/ferrite-bin/timeout
	export PATH=/tmp/ferrite-bin:$PATH
}
