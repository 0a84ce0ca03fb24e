# ferrite's driver-update packages, installed as a user installs them (sourced by
# boot-test.sh: check, diag, wait_for, KVER and the result file are its).
#
# /ferrite/repo is the target's signed apt repository (scripts/lib/package.py), with
# the suite of its Debian release; /ferrite/repo-next holds the same packages with a
# newer version, for the upgrade.  The guest has no network: Debian's own sources are
# set aside, and what the packages depend on is in the root already.  Every check
# here is a package_* check; those of ferrite-dkms run where the root has DKMS (see
# below: they run in the root, and package-root.sh sources this file too).

. /ferrite/package.env

APT_LOG=$OUT/apt.log
KEYRING=/etc/apt/keyrings/ferrite.gpg

# apt_get ARGS...: apt-get, non-interactive, its output appended to apt.log; how
# long it took is a diagnostic.
apt_get() {
	local t0 rc
	t0=$(date +%s)
	echo "\$ apt-get $*" >> "$APT_LOG"
	DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0 "$@" >> "$APT_LOG" 2>&1
	rc=$?
	echo "(exit $rc)" >> "$APT_LOG"
	diag "apt-get $*: exit $rc, $(( $(date +%s) - t0 )) s"
	return $rc
}

# apt_tail: the last lines apt wrote, as diagnostics.
apt_tail() {
	local l
	tail -n "${1:-15}" "$APT_LOG" > /tmp/apt.tail
	while read -r l; do diag "  $l"; done < /tmp/apt.tail
}

# pkg_version PKG: the installed version of PKG, or nothing.
pkg_version() {
	dpkg-query -W -f '${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null | sed -n 's/^ii  *//p'
}

# The packages a user installs here: the metapackage picks the prebuilt module of a
# Debian kernel; a kernel ferrite builds itself has no metapackage, so its module
# package is named.
if [ "$PKG_DISTRO" = yes ]; then
	PKG_INSTALL="ferrite"
	PKG_ALL="ferrite ferrite-provider ferrite-modules-$KVER"
else
	PKG_INSTALL="ferrite-modules-$KVER ferrite-provider"
	PKG_ALL="ferrite-provider ferrite-modules-$KVER"
fi

# all_at VERSION: every package of PKG_ALL is installed at VERSION.
all_at() {
	local p v rc=0
	for p in $PKG_ALL; do
		v=$(pkg_version "$p")
		[ "$v" = "$1" ] || { diag "$p: installed '${v:-not installed}', expected $1"; rc=1; }
	done
	return $rc
}

t_package_repository() {
	local l
	# No network here: Debian's own sources would only fail.
	mkdir -p /etc/apt/offline
	mv /etc/apt/sources.list /etc/apt/offline/ 2>/dev/null
	for l in /etc/apt/sources.list.d/*; do
		[ -e "$l" ] && mv "$l" /etc/apt/offline/
	done
	mkdir -p /etc/apt/keyrings
	cp /ferrite/repo/ferrite-archive-keyring.gpg "$KEYRING"
	echo "deb [signed-by=$KEYRING] file:/ferrite/repo $PKG_SUITE main" \
		> /etc/apt/sources.list.d/ferrite.list
	diag "$(cat /etc/apt/sources.list.d/ferrite.list)"
	apt_get update || { apt_tail; return 1; }
	if sed -n '/^\$ apt-get update/,$p' "$APT_LOG" | grep -E '^(W|E):'; then
		diag "apt-get update warned:"; apt_tail 8; return 1
	fi
	l=$(apt-cache policy ferrite-provider | sed -n 's/^ *Candidate: //p')
	diag "ferrite-provider candidate: $l"
	[ "$l" = "$PKG_VERSION" ]
}

# apt refuses the repository when the key it is told to trust did not sign it.
t_package_repository_signature() {
	local d=/tmp/apt-wrongkey out rc
	mkdir -p "$d/lists/partial"
	echo "deb [signed-by=/ferrite/repo-untrusted.gpg] file:/ferrite/repo $PKG_SUITE main" > "$d/sources.list"
	out=$(apt-get -q -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
		-o Dir::State::Lists="$d/lists" update 2>&1)
	rc=$?
	echo "$out" >> "$APT_LOG"
	diag "with another key: exit $rc, $(grep -m1 -E 'not signed|NO_PUBKEY|Missing key' <<<"$out")"
	[ $rc -ne 0 ] && grep -q "is not signed" <<<"$out"
}

t_package_install() {
	local p f
	apt_get install $PKG_INSTALL || { apt_tail; return 1; }
	all_at "$PKG_VERSION" || return 1
	diag "installed: $(dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\n' 'ferrite*' |
		sed -n 's/^ii  *//p' | tr '\n' ';')"
	# The prebuilt module, not DKMS, where the repository has one for this kernel.
	if [ -n "$(pkg_version ferrite-dkms)" ]; then
		diag "ferrite-dkms was installed too"; return 1
	fi
	f=$(modinfo -k "$KVER" -n ferrite 2>&1)
	diag "modprobe finds $f"
	case "$f" in
	*/modules/$KVER/updates/ferrite.ko) ;;
	*) return 1 ;;
	esac
	[ "$(modinfo -F version "$f")" = "$PKG_VERSION" ] ||
		{ diag "module version '$(modinfo -F version "$f")'"; return 1; }
}

# module_sig_verify KO CERT: the signature sign-file appended to KO (PKCS#7, then
# struct module_signature with the signature's length last, then the magic string)
# verifies, over the rest of KO, against CERT.
module_sig_verify() {
	local ko=$1 cert=$2 size len
	[ "$(tail -c 28 "$ko")" = "~Module signature appended~" ] || { diag "$ko: not signed"; return 1; }
	size=$(stat -c %s "$ko")
	set -- $(tail -c 32 "$ko" | head -c 4 | od -An -tu1)
	len=$(( ($1 << 24) | ($2 << 16) | ($3 << 8) | $4 ))
	head -c $((size - 40 - len)) "$ko" > /tmp/mod.data
	tail -c $((len + 40)) "$ko" | head -c "$len" > /tmp/mod.p7s
	openssl cms -verify -binary -inform DER -in /tmp/mod.p7s -content /tmp/mod.data \
		-certfile "$cert" -nointern -noverify -out /dev/null 2>/tmp/mod.verify
}

t_package_module_signature() {
	local ko s
	ko=$(modinfo -k "$KVER" -n ferrite)
	s=$(modinfo -F signer "$ko")
	diag "signer: $s (expected $PKG_SIGNER); sig_hashalgo $(modinfo -F sig_hashalgo "$ko")"
	[ "$s" = "$PKG_SIGNER" ] || return 1
	module_sig_verify "$ko" /ferrite/signing.pem ||
		{ diag "does not verify against the signing certificate: $(cat /tmp/mod.verify)"; return 1; }
	if module_sig_verify "$ko" /ferrite/untrusted.pem; then
		diag "verifies against an unrelated certificate too"; return 1
	fi
}

# pkg_verify PKG...: dpkg --verify finds the packages' files as they were shipped.
# The root's dpkg leaves out /usr/share/doc (but copyright files): those are
# reported missing (dpkg 1.20, bullseye's, reports "??5??????" instead), and nothing
# else may be reported.
pkg_verify() {
	local line f
	dpkg --verify "$@" 2>&1 | while IFS= read -r line; do
		f=${line##* }
		case $line in
		missing*" /usr/share/doc/"* | "??5??????"*" /usr/share/doc/"*)
			[ -e "$f" ] || continue ;;
		esac
		printf '%s\n' "$line"
	done > /tmp/verify.out
	[ ! -s /tmp/verify.out ] || { diag "$(cat /tmp/verify.out)"; return 1; }
}

# The packages' files are theirs alone: the provider sits beside ibverbs-providers'
# without touching them.
t_package_files() {
	local f
	for f in /etc/libibverbs.d/ferrite.driver /usr/lib/x86_64-linux-gnu/libibverbs/libferrite-rdmav*.so; do
		[ "$(dpkg -S "$f" 2>&1 | cut -d: -f1)" = ferrite-provider ] ||
			{ diag "$f: $(dpkg -S "$f" 2>&1)"; return 1; }
	done
	pkg_verify ibverbs-providers ferrite-provider "ferrite-modules-$KVER"
}

# --- upgrade --------------------------------------------------------------------

ferrite_links() { # the ferrite devices, as "NAME NETDEV" lines, sorted
	local d
	for d in /sys/class/infiniband/*; do
		[ -e "$d/ferrite_abi" ] && echo "${d##*/} $(cat "$d/parent")"
	done | sort
}

t_package_upgrade() {
	local before after v n_loaded n_unloaded
	ip link show v0 >/dev/null 2>&1 || make_veth || return 1
	modprobe ferrite && rdma link add f0 type ferrite netdev v0 &&
		rdma link add f1 type ferrite netdev v1 || { diag "no devices before the upgrade"; return 1; }
	before=$(ferrite_links)
	v=$(cat /sys/module/ferrite/version)
	diag "before: module $v, devices: $(echo $before)"
	[ "$v" = "$PKG_VERSION" ] || return 1
	n_unloaded=$(dmesg | grep -c 'ferrite: unloaded')
	n_loaded=$(dmesg | grep -c 'ferrite: loaded')
	echo "deb [signed-by=$KEYRING] file:/ferrite/repo-next $PKG_SUITE main" \
		> /etc/apt/sources.list.d/ferrite-next.list
	apt_get update && apt_get upgrade || { apt_tail; return 1; }
	all_at "$PKG_NEXT_VERSION" || { apt_tail; return 1; }
	v=$(cat /sys/module/ferrite/version 2>/dev/null)
	after=$(ferrite_links)
	diag "after: module ${v:-not loaded}, devices: $(echo $after)"
	[ "$v" = "$PKG_NEXT_VERSION" ] || return 1
	[ "$after" = "$before" ] || { diag "the devices did not all come back"; return 1; }
	# They went away (the old module unloaded) and came back with the new one.
	[ "$(dmesg | grep -c 'ferrite: unloaded')" -gt "$n_unloaded" ] &&
		[ "$(dmesg | grep -c 'ferrite: loaded')" -gt "$n_loaded" ] ||
		{ diag "the module was not reloaded"; return 1; }
	wait_for 10 port_state_is f0 "4: ACTIVE" && wait_for 10 port_state_is f1 "4: ACTIVE"
}

# The new module and provider move data.
t_package_upgrade_data() {
	devinfo_has f0 'vendor_part_id:[[:space:]]+65026' || { diag "the provider does not serve f0"; return 1; }
	pair pkg_up "" f0 "" f0 127.0.0.1 ibv_rc_pingpong -n 20
}

# --- ferrite-dkms ---------------------------------------------------------------
#
# DKMS compiles ferrite.ko from its sources; under TCG that takes longer than the
# whole boot test (the probes alone take ten minutes).  So DKMS runs where the
# project's own builds run: natively, in the target's root, which is also the
# guest's root.  scripts/lib/package.py runs tests/guest/package-root.sh there, in a
# throwaway overlay, with these same functions: apt-get installs ferrite and then
# ferrite-dkms from the same signed repository, DKMS builds and signs, and the checks
# below look at the result.  The guest adds those results to its own (they are named
# package_dkms_*, and a diagnostic line says where they ran), then loads the module
# DKMS built and puts it through the device checks.

have_dkms() { [ -f /ferrite/dkms/results ]; }

DKMS_TREE=/var/lib/dkms/ferrite/$PKG_UPSTREAM

# dkms_module: the module DKMS installed for KVER, if any.
dkms_module() { ls /lib/modules/"$KVER"/updates/dkms/ferrite.ko* 2>/dev/null | head -1; }

# ko_plain KO OUT: KO, decompressed as DKMS may have compressed it, at OUT.
ko_plain() {
	case "$1" in
	*.xz) xz -dc "$1" > "$2" ;;
	*.zst) zstd -qdc "$1" > "$2" ;;
	*.gz) gzip -dc "$1" > "$2" ;;
	*) cp "$1" "$2" ;;
	esac
}

# prebuilt_intact: the prebuilt package's files are in place and unchanged (DKMS
# moves a module of the same name out of its way when it installs its own).
prebuilt_intact() {
	pkg_verify "ferrite-modules-$KVER" || return 1
	[ ! -e /var/lib/dkms/ferrite/original_module ] || { diag "DKMS archived a module"; return 1; }
}

# Installed where the kernel has its prebuilt package, DKMS builds nothing for it.
t_package_dkms_install() {
	local st
	apt_get install ferrite-dkms || { apt_tail 30; return 1; }
	st=$(dkms status ferrite 2>&1)
	diag "dkms status: $st"
	! grep -q "$KVER.*installed" <<<"$st" || { diag "DKMS installed a module for $KVER"; return 1; }
	[ -z "$(dkms_module)" ] || return 1
	prebuilt_intact || return 1
	case "$(modinfo -k "$KVER" -n ferrite)" in
	*/updates/ferrite.ko) ;;
	*) diag "modprobe finds $(modinfo -k "$KVER" -n ferrite)"; return 1 ;;
	esac
}

# Every package, ferrite-dkms too, upgrades to the newer version.
t_package_dkms_upgrade() {
	echo "deb [signed-by=$KEYRING] file:/ferrite/repo-next $PKG_SUITE main" \
		> /etc/apt/sources.list.d/ferrite-next.list
	apt_get update && apt_get upgrade || { apt_tail 30; return 1; }
	PKG_ALL="$PKG_ALL ferrite-dkms" all_at "$PKG_NEXT_VERSION" && prebuilt_intact
}

# Without the prebuilt package, DKMS builds the kernel's module, from the headers
# alone, and signs it with its own key.
t_package_dkms_takes_over() {
	local f s log mok=/var/lib/dkms/mok.pub
	apt_get remove "ferrite-modules-$KVER" || { apt_tail 30; return 1; }
	[ -n "$(pkg_version ferrite)" ] || { diag "removing the prebuilt module removed ferrite"; return 1; }
	diag "dkms status: $(dkms status ferrite 2>&1)"
	f=$(modinfo -k "$KVER" -n ferrite)
	s=$(modinfo -F signer "$f")
	diag "modprobe finds $f, signer '$s'"
	[ -n "$f" ] && [ "$f" = "$(dkms_module)" ] || return 1
	# No Rust toolchain anywhere, and no Rust source shipped.
	if command -v rustc || command -v cargo; then
		diag "a Rust toolchain is installed"; return 1
	fi
	if find /usr/src/ferrite-"$PKG_UPSTREAM" -name '*.rs' | grep -q .; then
		diag "ferrite-dkms ships Rust sources"; return 1
	fi
	# The probes ran (compat/run-probes.sh, DKMS's PRE_BUILD) and objtool ran over
	# the Rust object, per object or on the linked module (what the build decided is
	# kept in DKMS's log directory: dkms-post-build.sh).
	log=$DKMS_TREE/$KVER/x86_64/log
	[ -f "$log/config.h" ] || { diag "no compat/config.h in $log: the probes did not run"; return 1; }
	diag "the probes: $(grep -c '^#define' "$log/config.h") yes, $(grep -c 'is not set' "$log/config.h") no"
	grep -q objtool "$log/rust-object.cmd" || { diag "objtool did not run over the Rust object"; return 1; }
	[ -e "$mok" ] || { diag "DKMS made no signing key"; return 1; }
	openssl x509 -inform DER -in "$mok" -out "$OUT/dkms/mok.pem" || return 1
	diag "DKMS key: $(openssl x509 -in "$OUT/dkms/mok.pem" -noout -subject)"
	ko_plain "$f" "$OUT/dkms/ferrite.ko" || return 1
	module_sig_verify "$OUT/dkms/ferrite.ko" "$OUT/dkms/mok.pem" ||
		{ diag "does not verify against $mok"; return 1; }
}

# With both installed, modprobe loads the prebuilt module, and DKMS's stays.
t_package_dkms_prebuilt_wins() {
	local f
	apt_get install "ferrite-modules-$KVER" || { apt_tail 30; return 1; }
	f=$(modinfo -k "$KVER" -n ferrite)
	diag "modprobe finds $f; DKMS's is $(dkms_module)"
	[ -n "$(dkms_module)" ] && prebuilt_intact || return 1
	case "$f" in
	*/updates/ferrite.ko) ;;
	*) return 1 ;;
	esac
}

# A kernel outside the release's series is refused, and nothing is built for it.
t_package_dkms_build_exclusive() {
	local out rc k=5.4.0-99-amd64
	out=$(dkms build -m ferrite -v "$PKG_UPSTREAM" -k "$k" 2>&1)
	rc=$?
	diag "dkms build -k $k: exit $rc: $(grep -m1 BUILD_EXCLUSIVE <<<"$out")"
	[ $rc -ne 0 ] && grep -q BUILD_EXCLUSIVE <<<"$out" || return 1
	! dkms status ferrite | grep -q "$k"
}

# In the guest: the results of the checks above, from the root.
package_dkms_root_results() {
	echo "# the package_dkms_* checks that follow ran in the target's root, natively: $(head -1 /ferrite/dkms/where)" >> "$RES"
	cat /ferrite/dkms/results >> "$RES"
}

# In the guest: the module DKMS built passes the device checks.
t_package_dkms_module() {
	# package-root.sh left the module DKMS built and its key in its out/dkms/.
	local ko=/ferrite/dkms/dkms/ferrite.ko s
	[ -f "$ko" ] || { diag "DKMS built no module in the root"; return 1; }
	rdma link delete f0 2>/dev/null; rdma link delete f1 2>/dev/null
	if ferrite_loaded; then rmmod ferrite || return 1; fi
	s=$(modinfo -F signer "$ko")
	diag "$(modinfo -F vermagic "$ko"), signer '$s'"
	modinfo -F vermagic "$ko" | grep -q "^$KVER " || return 1
	module_sig_verify "$ko" /ferrite/dkms/dkms/mok.pem || { diag "does not verify against DKMS's key"; return 1; }
	insmod "$ko" && ferrite_loaded || { diag "insmod failed"; return 1; }
	[ -z "$(cat /sys/module/ferrite/version 2>/dev/null)" ] || { diag "the loaded module is not DKMS's"; return 1; }
	rdma link add f0 type ferrite netdev v0 && rdma link add f1 type ferrite netdev v1 ||
		{ diag "DKMS's module makes no devices"; return 1; }
	wait_for 10 port_state_is f0 "4: ACTIVE" || return 1
	devinfo_has f0 'vendor_part_id:[[:space:]]+65026' || return 1
	pair pkg_dkms "" f0 "" f0 127.0.0.1 ibv_rc_pingpong -n 20 || return 1
	rdma link delete f0 && rdma link delete f1 && rmmod ferrite
}

# --- purge -----------------------------------------------------------------------

t_package_purge() {
	local p pkgs f st rc=0
	pkgs=$(dpkg-query -W -f '${Package} ${db:Status-Abbrev}\n' 'ferrite*' | awk '$2 != "un" {print $1}')
	diag "purging: $(echo $pkgs)"
	for p in $pkgs; do dpkg -L "$p"; done | while read -r f; do
		[ -f "$f" ] && echo "$f"
	done > /tmp/ferrite-files
	apt_get purge $pkgs || { apt_tail; return 1; }
	for p in $pkgs; do
		# Purged: dpkg forgets the package, or knows it as not installed ("un").
		st=$(dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null)
		case "$st" in
		"" | un*) ;;
		*) diag "$p: still '$st'"; rc=1 ;;
		esac
	done
	while read -r f; do
		[ -e "$f" ] && { diag "left behind: $f"; rc=1; }
	done < /tmp/ferrite-files
	for f in /var/lib/dkms/ferrite /usr/src/ferrite-"$PKG_UPSTREAM" /run/ferrite \
		/lib/modules/$KVER/updates/ferrite.ko /lib/modules/$KVER/updates/dkms/ferrite.ko*; do
		[ -e "$f" ] && { diag "left behind: $f"; rc=1; }
	done
	# A clean depmod: the indices no longer know ferrite.
	if grep -q ferrite "/lib/modules/$KVER/modules.dep" "/lib/modules/$KVER/modules.alias"; then
		diag "modules.dep or modules.alias still name ferrite"; rc=1
	fi
	modinfo -k "$KVER" ferrite > /dev/null 2>&1 && { diag "modinfo still finds ferrite"; rc=1; }
	ferrite_unloaded || { diag "ferrite is still loaded"; rc=1; }
	diag "$(wc -l < /tmp/ferrite-files) files gone"
	return $rc
}

# The in-box soft-RoCE still works, with the distro's own provider.
t_package_rxe_after_purge() {
	local rc=0
	ip link show v0 >/dev/null 2>&1 || make_veth || return 1
	rdma link add r0 type rxe netdev v0 || { diag "rdma link add r0 type rxe failed"; return 1; }
	ibv_devices | grep -Eq '^[[:space:]]+r0[[:space:]]' || { diag "$(ibv_devices)"; rc=1; }
	devinfo_has r0 'state:[[:space:]]+PORT_ACTIVE' || { diag "$(ibv_devinfo -d r0 2>&1 | head -5)"; rc=1; }
	if rdma link add fz type ferrite netdev v1 2>/dev/null; then
		diag "a ferrite device could still be made"; rc=1
	fi
	rdma link delete r0 && rmmod rdma_rxe || rc=1
	return $rc
}
