#!/bin/bash
# ferrite's boot test, run as the guest's first process on the target's own root.
#
# It loads ferrite, makes devices on a veth pair, checks what the kernel shows of
# them (rdma link show, sysfs, GIDs, port state), exercises the error cases, removes
# devices every way there is (rdma link delete, ip link del, rmmod) and reloads.
# In between, data.sh moves data ferrite to ferrite, malformed.sh sends it malformed
# and forged packets, and interop.sh moves data ferrite to rxe.
# Each check writes one result line to /ferrite/out/results; the host numbers them
# into KTAP.  Diagnostics go on "# " lines before the result they explain.
#
# Addresses on the veth pair are documentation prefixes and never leave the guest:
# the guest has no network device but the veth pair it makes.

set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

OUT=/ferrite/out
RES=$OUT/results
mkdir -p "$OUT"
. /ferrite/lib.sh
: > "$RES"
exec >"$OUT/guest.log" 2>&1
set -x

busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
busybox mount -t tmpfs tmpfs /run
busybox mount -t tmpfs tmpfs /tmp
KVER=$(uname -r)
scale_timeouts

finish() {
	dmesg > "$OUT/dmesg.txt"
	cat /proc/sys/kernel/tainted > "$OUT/tainted"
	echo done > "$OUT/done"
	guest_poweroff
}
trap finish EXIT

DIAG=""
diag() { DIAG="$DIAG$*"$'\n'; }
result() { # result NAME STATUS
	if [ -n "$DIAG" ]; then
		printf '%s' "$DIAG" | sed 's/^/# /' >> "$RES"
		DIAG=""
	fi
	if [ "$2" -eq 0 ]; then
		echo "ok - $1" >> "$RES"
	else
		echo "not ok - $1" >> "$RES"
	fi
}
# check NAME FUNCTION...: run a check function, record its result, and how many
# seconds it took in $OUT/timings (the host reports the slowest).
check() {
	local name=$1 t0=$SECONDS rc
	shift
	"$@"
	rc=$?
	echo "$name $((SECONDS - t0))" >> "$OUT/timings"
	result "$name" $rc
}
wait_for() { # wait_for SECONDS COMMAND... (SECONDS times TIMEOUT_SCALE, lib.sh)
	local i
	for ((i = 0; i < $1 * 10 * TIMEOUT_SCALE; i++)); do
		"${@:2}" && return 0
		sleep 0.1
	done
	return 1
}
ibdev_exists() { [ -e "/sys/class/infiniband/$1" ]; }
ibdev_gone() { [ ! -e "/sys/class/infiniband/$1" ]; }
ferrite_loaded() { [ -d /sys/module/ferrite ]; }
ferrite_unloaded() { [ ! -d /sys/module/ferrite ]; }

# --- set-up --------------------------------------------------------------------

t_core_modules() {
	local m
	for m in ib_core ib_uverbs rdma_ucm veth; do
		modprobe "$m" || { diag "modprobe $m failed"; return 1; }
	done
}

t_install_module() {
	# Installed from the signed repository by package_install (package.sh): the
	# module modprobe finds is for this kernel.
	modinfo ferrite | grep -q "^vermagic: *$KVER " ||
		{ diag "ferrite.ko does not install for $KVER: $(modinfo -F vermagic ferrite 2>&1)"; return 1; }
}

t_module_load() {
	modprobe ferrite || { diag "modprobe ferrite failed"; return 1; }
	ferrite_loaded && dmesg | grep -q 'ferrite: loaded'
}

make_veth() {
	ip link add v0 address 02:00:00:00:00:01 type veth \
		peer name v1 address 02:00:00:00:00:02 || return 1
	ip addr add 192.0.2.1/24 dev v0 &&
		ip addr add 192.0.2.2/24 dev v1 &&
		ip addr add 2001:db8::1/64 dev v0 nodad &&
		ip addr add 2001:db8::2/64 dev v1 nodad &&
		ip link set v0 up && ip link set v1 up
}

t_veth() { make_veth; }

t_link_add() {
	rdma link add f0 type ferrite netdev v0 || { diag "rdma link add f0 failed"; return 1; }
	rdma link add f1 type ferrite netdev v1 || { diag "rdma link add f1 failed"; return 1; }
	ibdev_exists f0 && ibdev_exists f1
}

# --- what the kernel shows -------------------------------------------------------

t_rdma_link_show() {
	local out
	out=$(rdma link show)
	diag "$out"
	grep -Eq '^link f0/1 state ACTIVE physical_state LINK_UP netdev v0 *$' <<<"$out" &&
		grep -Eq '^link f1/1 state ACTIVE physical_state LINK_UP netdev v1 *$' <<<"$out"
}

t_sysfs() {
	local d=/sys/class/infiniband/f0
	[ "$(cat $d/node_type)" = "1: CA" ] || { diag "node_type $(cat $d/node_type)"; return 1; }
	[ "$(cat $d/ports/1/link_layer)" = "Ethernet" ] || { diag "link_layer $(cat $d/ports/1/link_layer)"; return 1; }
	[ "$(cat $d/node_desc)" = "ferrite" ] || { diag "node_desc $(cat $d/node_desc)"; return 1; }
	[ "$(cat $d/parent)" = "v0" ] || { diag "parent '$(cat $d/parent)'"; return 1; }
	[ "$(cat $d/fw_ver)" = "0.1.0" ] || { diag "fw_ver '$(cat $d/fw_ver)'"; return 1; }
	[ "$(cat $d/ferrite_abi)" = "1" ] || { diag "ferrite_abi '$(cat $d/ferrite_abi)'"; return 1; }
}

# The device is offered to userspace: a uverbs node with ferrite's ABI version.
t_uverbs_node() {
	local u
	for u in /sys/class/infiniband_verbs/uverbs*; do
		[ "$(cat "$u/ibdev" 2>/dev/null)" = f0 ] || continue
		diag "$(basename "$u"): abi_version $(cat "$u/abi_version")"
		[ "$(cat "$u/abi_version")" = 1 ] && [ -c "/dev/infiniband/$(basename "$u")" ]
		return
	done
	diag "no uverbs node for f0"
	return 1
}

guid_of_mac() { # modified EUI-64, formatted as sysfs prints node_guid
	local IFS=: m
	read -ra m <<<"$1"
	printf '%02x%s:%s%s:%s%s:%s%s\n' $((0x${m[0]} ^ 2)) "${m[1]}" "${m[2]}" ff fe "${m[3]}" "${m[4]}" "${m[5]}"
}

t_node_guid() {
	local want got
	want=$(guid_of_mac "$(cat /sys/class/net/v0/address)")
	got=$(cat /sys/class/infiniband/f0/node_guid)
	diag "node_guid $got, expected $want"
	[ "$got" = "$want" ] && [ "$want" = "0000:00ff:fe00:0001" ]
}

# gid_index DEV GID: index of GID in DEV's port 1 table, if present.
gid_index() {
	local f
	f=$(grep -lx "$2" /sys/class/infiniband/"$1"/ports/1/gids/* 2>/dev/null | head -1)
	[ -n "$f" ] && basename "$f"
}
gid_present() { gid_index "$1" "$2" >/dev/null; }
gid_absent() { ! gid_present "$1" "$2"; }

V4GID=0000:0000:0000:0000:0000:ffff:c000:0201
V6GID=2001:0db8:0000:0000:0000:0000:0000:0001

t_gids() {
	local i t n
	for g in $V4GID $V6GID; do
		wait_for 10 gid_present f0 $g || { diag "GID $g missing on f0"; return 1; }
		i=$(gid_index f0 $g)
		t=$(cat /sys/class/infiniband/f0/ports/1/gid_attrs/types/"$i")
		n=$(cat /sys/class/infiniband/f0/ports/1/gid_attrs/ndevs/"$i")
		diag "f0 GID[$i] $g type '$t' ndev '$n'"
		[ "$t" = "RoCE v2" ] && [ "$n" = "v0" ] || return 1
	done
	# Only RoCE v2 GIDs: the port does not claim RoCE v1.
	! grep -qx "IB/RoCE v1" /sys/class/infiniband/f0/ports/1/gid_attrs/types/* 2>/dev/null
}

t_gids_follow_addresses() {
	ip addr del 192.0.2.1/24 dev v0 || return 1
	wait_for 10 gid_absent f0 $V4GID || { diag "IPv4 GID stayed after ip addr del"; return 1; }
	ip addr add 192.0.2.1/24 dev v0 || return 1
	wait_for 10 gid_present f0 $V4GID || { diag "IPv4 GID did not come back"; return 1; }
	ip addr add 2001:db8::99/64 dev v0 nodad || return 1
	wait_for 10 gid_present f0 2001:0db8:0000:0000:0000:0000:0000:0099 ||
		{ diag "new IPv6 GID did not appear"; return 1; }
}

port_state_is() { [ "$(cat /sys/class/infiniband/"$1"/ports/1/state)" = "$2" ]; }

t_port_state_follows_carrier() {
	ip link set v1 down || return 1
	wait_for 10 port_state_is f0 "1: DOWN" || { diag "f0 state $(cat /sys/class/infiniband/f0/ports/1/state) with peer down"; return 1; }
	[ "$(cat /sys/class/infiniband/f0/ports/1/phys_state)" = "3: Disabled" ] ||
		{ diag "phys_state $(cat /sys/class/infiniband/f0/ports/1/phys_state)"; return 1; }
	rdma link show f0/1 | grep -q 'state DOWN' || { diag "$(rdma link show f0/1)"; return 1; }
	ip link set v1 up || return 1
	wait_for 10 port_state_is f0 "4: ACTIVE" || { diag "f0 did not come back ACTIVE"; return 1; }
	wait_for 10 port_state_is f1 "4: ACTIVE"
}

# --- the provider: the target's own libibverbs loads ferrite's --------------------------

t_provider_install() {
	# Installed by the package (install_module); rxe joins on the peer netdev.
	local so
	so=$(ls /usr/lib/x86_64-linux-gnu/libibverbs/libferrite-rdmav*.so 2>/dev/null)
	diag "provider: ${so:-none}; driver file: $(cat /etc/libibverbs.d/ferrite.driver 2>&1)"
	[ -n "$so" ] && grep -qx "driver ferrite" /etc/libibverbs.d/ferrite.driver
}

t_provider_ibv_devices() {
	local out guid
	out=$(ibv_devices 2>&1)
	diag "$out"
	guid=$(tr -d : < /sys/class/infiniband/f0/node_guid)
	grep -Eq "^[[:space:]]+f0[[:space:]]+$guid$" <<<"$out"
}

devinfo_has() { # devinfo_has DEV REGEX
	ibv_devinfo -d "$1" -v 2>&1 | grep -Eq "$2"
}

t_provider_ibv_devinfo() {
	local out
	out=$(ibv_devinfo -d f0 -v 2>&1) || { diag "$out"; return 1; }
	diag "$(grep -E 'transport|vendor_id|vendor_part_id|fw_ver|max_pd:|max_cqe:|state:|active_mtu|link_layer|GID\[ *1\]' <<<"$out")"
	# The provider writes fw_ver from the kernel's packed value; sysfs must agree.
	grep -Eq "fw_ver:[[:space:]]+$(cat /sys/class/infiniband/f0/fw_ver)\$" <<<"$out" &&
		grep -Eq 'vendor_part_id:[[:space:]]+65026' <<<"$out" &&
		grep -Eq 'max_pd:[[:space:]]+4096' <<<"$out" &&
		grep -Eq 'state:[[:space:]]+PORT_ACTIVE' <<<"$out" &&
		grep -Eq 'link_layer:[[:space:]]+Ethernet' <<<"$out" &&
		grep -Eq 'active_mtu:[[:space:]]+1024 \(3\)' <<<"$out"
}

t_provider_mtu_follows_netdev() {
	ip link set v0 mtu 9000 && ip link set v1 mtu 9000 || return 1
	devinfo_has f0 'active_mtu:[[:space:]]+4096 \(5\)' || { diag "MTU 9000: $(ibv_devinfo -d f0 | grep active_mtu)"; return 1; }
	ip link set v0 mtu 2200 || return 1
	devinfo_has f0 'active_mtu:[[:space:]]+2048 \(4\)' || { diag "MTU 2200: $(ibv_devinfo -d f0 | grep active_mtu)"; return 1; }
	ip link set v0 mtu 1500 && ip link set v1 mtu 1500 || return 1
	devinfo_has f0 'active_mtu:[[:space:]]+1024 \(3\)'
}

t_provider_survives_rename() {
	rdma dev set f0 name fz || return 1
	local ok=0
	devinfo_has fz 'vendor_part_id:[[:space:]]+65026' || ok=1
	rdma dev set fz name f0 || return 1
	return $ok
}

# run_ctl ARGS...: run verbs-ctl; its own result lines become subtests of this target.
run_ctl() {
	local out rc
	out=$("$@")
	rc=$?
	printf '%s\n' "$out" >> "$RES"
	return $rc
}

t_provider_verbs_ctl() {
	run_ctl /ferrite/verbs-ctl f0
}

t_provider_dlopen_local() {
	# libibverbs loaded with dlopen(RTLD_LOCAL), as bindings, MPI and UCX load it: the
	# provider must find libibverbs through its own NEEDED entry.
	local out rc
	out=$(/ferrite/dlopen-local f0 2>&1)
	rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^ibv_alloc_pd: ok$' <<<"$out"; then
		diag "dlopen-local f0: exit $rc"
		while read -r line; do diag "$line"; done <<<"$out"
		return 1
	fi
}

t_provider_memlock() {
	# Without CAP_IPC_LOCK, pinning stops at RLIMIT_MEMLOCK.
	run_ctl bash -c 'ulimit -l 1024 && exec setpriv --bounding-set -ipc_lock /ferrite/verbs-ctl f0 memlock'
}

res_zero() { # res_zero DEV: nothing of DEV's in rdma resource show
	local line
	line=$(rdma res show | grep -E "^[0-9]+: $1: ")
	[ -n "$line" ] && ! grep -Eq '(pd|cq|qp|mr|ctx) [1-9]' <<<"$line"
}

t_provider_resources_released() {
	wait_for 10 res_zero f0 || { diag "$(rdma res show)"; return 1; }
}

t_provider_kill9() {
	local pid out
	/ferrite/verbs-ctl f0 hold > /tmp/hold.out 2>&1 &
	pid=$!
	wait_for 20 grep -q held /tmp/hold.out || { diag "holder: $(cat /tmp/hold.out)"; kill -9 $pid; return 1; }
	out=$(rdma res show | grep -E "^[0-9]+: f0: ")
	diag "while held: $out"
	grep -Eq 'pd [1-9]' <<<"$out" && grep -Eq 'mr [1-9]' <<<"$out" && grep -Eq 'cq [1-9]' <<<"$out" || return 1
	kill -9 $pid
	wait $pid 2>/dev/null
	wait_for 20 res_zero f0 || { diag "after kill -9: $(rdma res show | grep f0)"; return 1; }
}

exited() { [ ! -e "/proc/$1" ] || grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"; }

# removed_while_open HOW: remove a ferrite device (HOW: link, netdev or module) while
# verbs-ctl holds a PD, MR and CQ on it.  The removal must finish without waiting for
# the process, which sees the removal (verbs-ctl orphan checks what it sees) and
# tears down without a crash; nothing may be left behind.
removed_while_open() {
	local pid rpid rc=0
	if ! { ip link add v6 type veth peer name v7 && ip link set v6 up && ip link set v7 up &&
		rdma link add f6 type ferrite netdev v6; }; then
		diag "setup failed"; ip link del v6 2>/dev/null; return 1
	fi
	rm -f /tmp/go && mkfifo /tmp/go
	/ferrite/verbs-ctl f6 orphan < /tmp/go > /tmp/orphan.out 2>&1 &
	pid=$!
	exec 7> /tmp/go
	if ! wait_for 20 grep -q held /tmp/orphan.out; then
		diag "holder: $(cat /tmp/orphan.out)"
		kill -9 $pid; exec 7>&-; ip link del v6; return 1
	fi
	case $1 in
	link) rdma link delete f6 & ;;
	netdev) ip link del v6 & ;;
	module) rmmod ferrite & ;;
	esac
	rpid=$!
	if ! wait_for 60 exited $rpid; then
		diag "the removal waits for the process holding the device"
		rc=1
	fi
	wait_for 20 ibdev_gone f6 || { diag "f6 still there"; rc=1; }
	exited $pid && { diag "the holder died"; rc=1; }
	echo go >&7
	exec 7>&-
	wait $pid || { diag "verbs-ctl orphan failed"; rc=1; }
	wait $rpid || { diag "the removal failed"; rc=1; }
	while read -r line; do diag "${line#\# }"; done < /tmp/orphan.out
	ip link del v6 2>/dev/null
	return $rc
}

t_link_delete_while_open() { removed_while_open link; }
t_netdev_delete_while_open() { removed_while_open netdev; }
t_unload_while_open() {
	removed_while_open module && ferrite_unloaded && modprobe ferrite && ferrite_loaded
}

# --- error cases -------------------------------------------------------------------

# rejected IBDEV NETDEV: "rdma link add" must fail and leave no device behind.
rejected() {
	local out
	if out=$(rdma link add "$1" type ferrite netdev "$2" 2>&1); then
		diag "device $1 on $2 was accepted"; return 1
	fi
	diag "rdma: $out"
	ibdev_gone "$1"
}

t_duplicate_netdev() {
	rejected f2 v0 && dmesg | grep -q 'ferrite: v0 already carries a ferrite device'
}

t_missing_netdev() {
	rejected f3 nosuch0
}

t_non_ethernet() {
	rejected f4 lo && dmesg | grep -q 'ferrite: lo is not an Ethernet device'
}

t_name_taken() {
	ip link add v2 type veth peer name v3 || return 1
	if rdma link add f0 type ferrite netdev v2 2>/dev/null; then
		diag "a second f0 was accepted"; return 1
	fi
	# The failed attempt left nothing behind: v2 can still take a device.
	rdma link add f5 type ferrite netdev v2 && ibdev_exists f5 &&
		rdma link delete f5 && wait_for 10 ibdev_gone f5 && ip link del v2
}

# --- removal -------------------------------------------------------------------------

t_link_delete() {
	rdma link delete f1 || return 1
	wait_for 10 ibdev_gone f1 && ibdev_exists f0
}

t_netdev_delete() {
	rdma link add f1 type ferrite netdev v1 || return 1
	ip link del v0 || return 1   # takes its peer v1 along
	wait_for 20 ibdev_gone f0 || { diag "f0 survived its netdev"; return 1; }
	wait_for 20 ibdev_gone f1 || { diag "f1 survived its netdev"; return 1; }
	! ip link show v1 >/dev/null 2>&1
}

t_unload_with_devices() {
	make_veth || return 1
	rdma link add f0 type ferrite netdev v0 && rdma link add f1 type ferrite netdev v1 || return 1
	rmmod ferrite || { diag "rmmod failed with devices present"; return 1; }
	ferrite_unloaded && ibdev_gone f0 && ibdev_gone f1
}

t_autoload() {
	# "rdma link add ... type ferrite" loads the module through its alias.
	rdma link add f0 type ferrite netdev v0 || return 1
	ferrite_loaded && ibdev_exists f0
}

t_reload() {
	rmmod ferrite && ferrite_unloaded && ibdev_gone f0 || { diag "unload failed"; return 1; }
	modprobe ferrite && ferrite_loaded || { diag "reload failed"; return 1; }
	rmmod ferrite && ferrite_unloaded
}

t_no_leaks() {
	local n
	n=$(dmesg | grep -c 'ferrite: unloaded')
	diag "unloads seen: $n"
	[ "$n" -ge 3 ] || return 1
	if dmesg | grep -E 'ferrite: .*(leak|left at exit|destroyed with)'; then
		return 1
	fi
}

SPLAT='WARNING:|BUG:|Oops|general protection|Call Trace|objtool|lockdep is turned off|DEBUG_LOCKS_WARN_ON|possible (recursive|circular) locking|inconsistent lock state|bad unlock balance|suspicious RCU|rcu.*(stall|detected)|unregister_netdevice: waiting|suspected memory leak|UBSAN|KASAN|KFENCE|refcount_t|blocked for more than|soft lockup'

t_dmesg_clean() {
	local bad
	bad=$(dmesg | grep -E "$SPLAT")
	[ -z "$bad" ] || { diag "$bad"; return 1; }
}

t_taint() {
	local t
	t=$(cat /proc/sys/kernel/tainted)
	diag "tainted=$t"
	# Only O (out-of-tree, 4096) and E (unsigned, 8192) are expected.
	[ $((t & ~(4096 | 8192))) -eq 0 ]
}

. /ferrite/debug.sh
kmemleak_start
check core_modules t_core_modules
if sig_enforced; then
	check module_sig_unsigned_refused t_sig_unsigned_refused
	check module_sig_wrong_key_refused t_sig_wrong_key_refused
	check module_sig_signer t_sig_signer
fi
# The driver-update packages, from the target's signed apt repository (package.sh).
. /ferrite/package.sh
check package_repository t_package_repository
check package_repository_signature_checked t_package_repository_signature
check package_install t_package_install
check install_module t_install_module
check package_module_signature t_package_module_signature
check package_files_owned t_package_files
check module_load t_module_load
check veth_pair t_veth
check link_add t_link_add
check rdma_link_show t_rdma_link_show
check sysfs_device t_sysfs
check uverbs_node t_uverbs_node
check node_guid t_node_guid
check roce_v2_gids t_gids
check gids_follow_addresses t_gids_follow_addresses
check port_state_follows_carrier t_port_state_follows_carrier
check provider_install t_provider_install
check provider_ibv_devices t_provider_ibv_devices
check provider_ibv_devinfo t_provider_ibv_devinfo
check provider_mtu_follows_netdev t_provider_mtu_follows_netdev
check provider_survives_rename t_provider_survives_rename
check provider_verbs_ctl t_provider_verbs_ctl
check provider_dlopen_local t_provider_dlopen_local
check provider_memlock t_provider_memlock
check provider_resources_released t_provider_resources_released
check provider_kill9_releases_everything t_provider_kill9
check provider_link_delete_while_open t_link_delete_while_open
check provider_netdev_delete_while_open t_netdev_delete_while_open
# Moving data: ferrite to ferrite, then ferrite and rxe (one script per area);
# between them, malformed and forged packets at a device carrying connections.
. /ferrite/data.sh
. /ferrite/malformed.sh
. /ferrite/interop.sh
# Removing things under traffic: processes, links, netdevs, the module.
. /ferrite/lifetime.sh
check duplicate_netdev_rejected t_duplicate_netdev
check missing_netdev_rejected t_missing_netdev
check non_ethernet_rejected t_non_ethernet
check name_taken_rejected t_name_taken
check link_delete t_link_delete
check netdev_delete_removes_device t_netdev_delete
check provider_unload_while_open t_unload_while_open
check unload_with_devices t_unload_with_devices
check autoload_on_link_add t_autoload
check reload_unload t_reload
# Upgrade in place to newer packages; ferrite-dkms where the root has DKMS (built in
# the root: package.sh says why); then purge.
check package_upgrade t_package_upgrade
check package_upgrade_data t_package_upgrade_data
if have_dkms; then
	package_dkms_root_results
	check package_dkms_module t_package_dkms_module
fi
check package_purge t_package_purge
check package_rxe_after_purge t_package_rxe_after_purge
check no_leaks t_no_leaks
kmemleak_on && check kmemleak_clean t_kmemleak_clean
check dmesg_clean t_dmesg_clean
check taint t_taint
