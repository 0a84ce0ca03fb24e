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
