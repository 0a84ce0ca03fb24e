# Checks that only a kernel with them can run: module signature enforcement and
# kmemleak (the `debug` target).  Sourced by boot-test.sh; every function here is a
# check of its own, and boot-test.sh calls them only where the kernel has the feature.
# On a distro kernel none of them is reported: nothing is counted as passed there.

sig_enforced() { [ "$(cat /sys/module/module/parameters/sig_enforce 2>/dev/null)" = Y ]; }
kmemleak_on() { [ -w /sys/kernel/debug/kmemleak ]; }

mount_debugfs() {
	[ -d /sys/kernel/debug/tracing ] || [ -e /sys/kernel/debug/kmemleak ] ||
		mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	return 0
}

# insmod must fail with EKEYREJECTED and the kernel's own message for REASON.
refused_load() { # refused_load KO REASON
	local out
	if out=$(insmod "$1" 2>&1); then
		diag "$1 loaded, but it should have been refused"
		rmmod ferrite
		return 1
	fi
	diag "insmod: $out"
	grep -q "Key was rejected by service" <<<"$out" ||
		{ diag "insmod did not fail with EKEYREJECTED"; return 1; }
	dmesg | grep -q "Loading of $2 is rejected" ||
		{ diag "no 'Loading of $2 is rejected' in dmesg"; return 1; }
	ferrite_unloaded
}

t_sig_unsigned_refused() { refused_load /ferrite/ferrite-unsigned.ko "unsigned module"; }
t_sig_wrong_key_refused() { refused_load /ferrite/ferrite-wrongkey.ko "module with unavailable key"; }

# The module that is installed names the test key as its signer; that it loads under
# enforcement (module_load, next) is the proof that its signature verifies.
t_sig_signer() {
	local s
	s=$(modinfo -F signer /ferrite/ferrite.ko)
	diag "signer: $s; sig_hashalgo: $(modinfo -F sig_hashalgo /ferrite/ferrite.ko)"
	[ "$s" = "ferrite test module signing key" ]
}

# Forget what boot left (early allocations kmemleak cannot follow), so that the
# final scan reports only what the run leaked.
kmemleak_start() {
	mount_debugfs
	kmemleak_on && echo clear > /sys/kernel/debug/kmemleak
	return 0
}

# A forced scan at the end.  kmemleak reports an object only once it has been
# unreferenced for 5 s, so wait past that; scan twice, as its documentation advises.
t_kmemleak_clean() {
	local leaks
	sleep 6
	echo scan > /sys/kernel/debug/kmemleak
	sleep 1
	echo scan > /sys/kernel/debug/kmemleak
	leaks=$(cat /sys/kernel/debug/kmemleak)
	cp /sys/kernel/debug/kmemleak "$OUT/kmemleak.txt"
	[ -z "$leaks" ] && return 0
	diag "$(grep -c '^unreferenced object' <<<"$leaks") suspected leaks (out/kmemleak.txt); first:"
	diag "$(head -40 <<<"$leaks")"
	return 1
}
