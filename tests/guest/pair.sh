#!/bin/bash
# One end of the two-guest pair test (scripts/lib/pair.py), run as the guest's first
# process.
#
# Two guests, the oldest target and the newest, each with one virtio NIC; QEMU joins
# the two NICs with a socket netdev on the host's 127.0.0.1, so the RoCE traffic
# crosses a virtual NIC between two separate kernels (nothing else is on that link).
# Two phases, both in this one boot: first ferrite on the old guest and rxe on the
# new one, then the other way round (ferrite and rxe cannot both own UDP port 4791
# in one namespace, so a guest unloads one before it loads the other).  Each phase
# runs ibv_rc_pingpong and ferrite-testclient (--qp rc --quick, every byte checked)
# twice, each guest once the server.
#
# The guests coordinate over their link only: each step starts with a barrier (the
# two exchange the step's name over TCP, the old guest listening), and a client
# retries its connection until the peer's server listens.  Every wait is bounded.
# Each guest writes its own view of every check to /ferrite/out/results (`ok - NAME`,
# diagnostics on "# " lines before it); the host passes a check when both passed it.
#
# /ferrite/pair.env (from the host) sets ROLE (old or new), ME and PEER (target
# names), PEER_KVER, MAC (this guest's NIC), and the addresses of each phase, from a
# documentation prefix: IP1/PEER_IP1, IP2/PEER_IP2.  The ferrite module, its
# provider and ferrite-testclient come from /ferrite: the module is loaded with
# insmod and the provider copied where the ferrite-provider package puts it (no apt,
# no depmod: both are slow under TCG; the boot test covers the packages).

set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

OUT=/ferrite/out
RES=$OUT/results
mkdir -p "$OUT"
. /ferrite/lib.sh
. /ferrite/pair.env
: > "$RES"
exec >"$OUT/guest.log" 2>&1
set -x

busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
busybox mount -t tmpfs tmpfs /run
busybox mount -t tmpfs tmpfs /tmp
KVER=$(uname -r)
ulimit -l unlimited

finish() {
	dmesg > "$OUT/dmesg.txt"
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
check() { # check NAME FUNCTION...: run it, record its result and its seconds
	local name=$1 t0=$SECONDS rc
	shift
	"$@"
	rc=$?
	echo "$name $((SECONDS - t0))" >> "$OUT/timings"
	result "$name" $rc
}
retry() { # retry SECONDS COMMAND...: until COMMAND succeeds, at most SECONDS
	local end=$((SECONDS + $1))
	shift
	while :; do
		"$@" && return 0
		[ $SECONDS -lt $end ] || return 1
		sleep 0.5
	done
}
diag_file() { # diag_file FILE [MAX]: FILE's lines (at most MAX) as diagnostics
	local l
	head -n "${2:-30}" "$1" > /tmp/diag.$$ 2>/dev/null
	while read -r l; do diag "  $l"; done < /tmp/diag.$$
}
ibdev_gone() { [ ! -e "/sys/class/infiniband/$1" ]; }
port_active() { [ "$(cat "/sys/class/infiniband/$1/ports/1/state" 2>/dev/null)" = "4: ACTIVE" ]; }

# gid_index DEV: the first RoCE v2 GID of port 1 with an IPv4-mapped address.
gid_index() {
	local d=/sys/class/infiniband/$1/ports/1 i
	for i in $(seq 0 15); do
		[ "$(cat "$d/gid_attrs/types/$i" 2>/dev/null)" = "RoCE v2" ] || continue
		case "$(cat "$d/gids/$i" 2>/dev/null)" in
		0000:0000:0000:0000:0000:ffff:*) echo "$i"; return 0 ;;
		esac
	done
	return 1
}

# --- coordination over the link -------------------------------------------------

# barrier NAME [SECONDS]: wait until the peer reaches the step NAME too.  The old
# guest listens, the new one connects; each barrier has a port of its own, so that
# a guest that gave up on one cannot meet its peer at the wrong step.
cat > /tmp/barrier.pl <<'EOF'
# barrier.pl listen|connect PEER PORT TAG SECONDS
use strict;
use IO::Socket::INET;
use IO::Select;
my ($mode, $peer, $port, $tag, $secs) = @ARGV;
my $end = time + $secs;
my $s;
if ($mode eq "listen") {
	my $l = IO::Socket::INET->new(LocalPort => $port, Listen => 1, ReuseAddr => 1,
		Proto => "tcp") or die "listen on $port: $!\n";
	IO::Select->new($l)->can_read($secs) or die "no peer within $secs s\n";
	$s = $l->accept or die "accept: $!\n";
} else {
	until ($s = IO::Socket::INET->new(PeerAddr => $peer, PeerPort => $port,
			Proto => "tcp", Timeout => 2)) {
		die "cannot reach $peer:$port within $secs s\n" if time >= $end;
		select(undef, undef, undef, 0.5);
	}
}
$s->autoflush(1);
print $s "$tag\n";
my $left = $end - time;
IO::Select->new($s)->can_read($left > 10 ? $left : 10) or die "no answer from the peer\n";
my $got = <$s>;
defined $got or die "the peer closed the connection\n";
chomp $got;
die "the peer is at '$got', this guest at '$tag'\n" if $got ne $tag;
EOF
BARRIER_PORT=18600
BARRIERS_FAILED=""
PEER_LOST=""
barrier() {
	local mode=connect out secs=${2:-180}
	[ "$ROLE" = old ] && mode=listen
	# Once the peer missed a barrier, the later ones wait less: the run still ends
	# (and reports what it has) well within the host's timeout.
	[ -n "$PEER_LOST" ] && secs=30
	BARRIER_PORT=$((BARRIER_PORT + 1))
	if ! out=$(perl /tmp/barrier.pl $mode "$PEER_IP" $BARRIER_PORT "$1" "$secs" 2>&1); then
		echo "barrier $1: $out"
		BARRIERS_FAILED="$BARRIERS_FAILED $1 ($out);"
		PEER_LOST=yes
		return 1
	fi
}
# barrier_diag: the barriers that failed since the last call, as a diagnostic.
barrier_diag() {
	[ -z "$BARRIERS_FAILED" ] && return 0
	diag "did not meet $PEER at:$BARRIERS_FAILED"
	BARRIERS_FAILED=""
	return 1
}

# --- the devices ----------------------------------------------------------------

STACK= DEV=
# dev_up ferrite|rxe: the soft-RoCE device on the NIC, port active, IPv4 GID.
dev_up() {
	STACK=$1
	case $1 in
	ferrite)
		DEV=f0
		insmod /ferrite/ferrite.ko || { diag "insmod ferrite.ko failed: $(dmesg | tail -3)"; return 1; }
		rdma link add f0 type ferrite netdev "$NIC" || { diag "rdma link add f0 failed"; return 1; }
		;;
	rxe)
		DEV=r0
		modprobe rdma_rxe || { diag "modprobe rdma_rxe failed"; return 1; }
		rdma link add r0 type rxe netdev "$NIC" || { diag "rdma link add r0 failed: $(dmesg | tail -3)"; return 1; }
		;;
	esac
	retry 20 port_active $DEV || { diag "$DEV: port $(cat /sys/class/infiniband/$DEV/ports/1/state)"; return 1; }
	retry 20 gid_index $DEV > /dev/null || { diag "$DEV: no RoCE v2 IPv4 GID"; return 1; }
	local info
	info=$(ibv_devinfo -d $DEV -v 2>&1)
	diag "$ME: $STACK device $DEV on $NIC, GID[$(gid_index $DEV)] $(cat /sys/class/infiniband/$DEV/ports/1/gids/$(gid_index $DEV)), $(grep -Eo 'active_mtu:.*' <<<"$info" | head -1)"
	# ferrite's device is served by ferrite's provider, rxe's by rxe's.
	if [ "$STACK" = ferrite ]; then
		grep -Eq 'vendor_part_id:[[:space:]]+65026' <<<"$info" || { diag "f0 is not served by ferrite's provider: $(head -5 <<<"$info")"; return 1; }
	else
		! grep -Eq 'vendor_part_id:[[:space:]]+65026' <<<"$info" || { diag "r0 is served by ferrite's provider"; return 1; }
	fi
}

# dev_down: the device gone, its module unloaded (whatever of them dev_up made).
dev_down() {
	local mod=rdma_rxe
	[ "$STACK" = ferrite ] && mod=ferrite
	[ -n "$DEV" ] || return 0
	if [ -e "/sys/class/infiniband/$DEV" ]; then
		timeout 60 rdma link delete $DEV || { diag "rdma link delete $DEV failed"; return 1; }
		retry 10 ibdev_gone $DEV || { diag "$DEV still there"; return 1; }
	fi
	if [ -d "/sys/module/$mod" ]; then
		timeout 60 rmmod $mod || { diag "rmmod $mod failed"; return 1; }
	fi
}

# --- checks ---------------------------------------------------------------------

NIC=
nic_of_mac() {
	local n
	for n in /sys/class/net/*; do
		[ "$(cat "$n/address")" = "$MAC" ] && { NIC=$(basename "$n"); return 0; }
	done
	return 1
}

t_guest_setup() {
	local m
	for m in ib_core ib_uverbs rdma_ucm virtio_net $(modinfo -F depends /ferrite/ferrite.ko | tr , ' '); do
		modprobe "$m" || { diag "modprobe $m failed"; return 1; }
	done
	retry 10 nic_of_mac || { diag "no NIC with MAC $MAC: $(ip -br link)"; return 1; }
	ip link set lo up && ip addr add "$IP1/24" dev "$NIC" && ip link set "$NIC" up || return 1
	# The provider where the ferrite-provider package installs it.
	cp /ferrite/libferrite-rdmav*.so /usr/lib/x86_64-linux-gnu/libibverbs/ &&
		echo "driver ferrite" > /etc/libibverbs.d/ferrite.driver || return 1
	diag "$ME ($ROLE): $KVER, rdma-core $(dpkg-query -W -f '${Version}' rdma-core), NIC $NIC" \
		"($(basename "$(readlink -f /sys/class/net/$NIC/device/driver)"), MTU $(cat /sys/class/net/$NIC/mtu)), $IP1"
}

# ping_peer IP: three echo replies in a row.
ping_peer() {
	busybox ping -c 3 -W 2 "$1" > /tmp/ping.out 2>&1 && grep -q ' 0% packet loss' /tmp/ping.out
}

t_link_up() {
	# The peer boots at its own pace: wait for it (bounded), then demand no loss.
	if ! retry 420 busybox ping -c 1 -W 1 "$PEER_IP1" > /dev/null; then
		diag "no echo reply from $PEER ($PEER_IP1) within 420 s"
		diag "$(ip -s link show "$NIC" | tr -s ' ')"
		return 1
	fi
	ping_peer "$PEER_IP1" || { diag_file /tmp/ping.out; return 1; }
	diag "$(tail -1 /tmp/ping.out)"
}

# t_devices PHASE: this guest's stack of PHASE (1 or 2) on the NIC, with that
# phase's addresses (the host tells the senders on the wire apart by them).
t_devices() {
	local want
	if [ "$1" = 2 ]; then
		dev_down || return 1
		ip addr flush dev "$NIC" && ip addr add "$IP2/24" dev "$NIC" || return 1
		PEER_IP=$PEER_IP2
	fi
	case "$ROLE:$1" in
	old:1 | new:2) want=ferrite ;;
	*) want=rxe ;;
	esac
	dev_up $want || return 1
	# The peer makes its device at the same time: wait for its address to answer.
	retry 120 busybox ping -c 1 -W 1 "$PEER_IP" > /dev/null ||
		{ diag "no echo reply from $PEER ($PEER_IP) within 120 s"; return 1; }
}

# pp_run NAME SERVER PORT: one ibv_rc_pingpong run, SERVER (old or new) the server.
pp_run() {
	local name=$1 srv=$2 port=$3 g out=/tmp/$1.out rc role end
	barrier "$name" || return 1
	g=$(gid_index $DEV) || { diag "$name: no RoCE v2 IPv4 GID on $DEV"; return 1; }
	if [ "$ROLE" = "$srv" ]; then
		role=server
		timeout 120 ibv_rc_pingpong -d $DEV -g "$g" -p "$port" -n 100 > "$out" 2>&1
		rc=$?
	else
		role=client
		end=$((SECONDS + 60))
		while :; do
			timeout 120 ibv_rc_pingpong -d $DEV -g "$g" -p "$port" -n 100 "$PEER_IP" > "$out" 2>&1
			rc=$?
			# Only "the server does not listen yet" is worth another try.
			grep -q "Couldn't connect" "$out" && [ $SECONDS -lt $end ] || break
			sleep 1
		done
	fi
	if [ $rc -ne 0 ] || ! grep -q 'iters in' "$out"; then
		diag "$name: $ME's $STACK ($DEV) as the $role, exit $rc:"
		diag_file "$out"
		return 1
	fi
	diag "$name: $ME's $STACK as the $role: $(grep 'iters in' "$out" | head -1)"
}

t_pingpong() { # t_pingpong PHASE
	local rc=0
	pp_run "pp$1-old-server" old $((18520 + $1 * 10)) || rc=1
	pp_run "pp$1-new-server" new $((18521 + $1 * 10)) || rc=1
	barrier_diag || rc=1
	return $rc
}

# tc_run NAME SERVER PORT: one ferrite-testclient run (RC, --quick), SERVER the
# server; the client runs the matrix, each side checks the bytes it is given.
tc_run() {
	local name=$1 srv=$2 port=$3 out=/tmp/$1.out rc role extra=() peer_stack
	barrier "$name" || return 1
	if [ "$ROLE" = "$srv" ]; then
		role=server
		timeout 300 /ferrite/ferrite-testclient server --dev $DEV --port "$port" > "$out" 2>&1
		rc=$?
	else
		role=client
		peer_stack=rxe
		[ "$STACK" = rxe ] && peer_stack=ferrite
		# rxe of Linux 5.10 never sends its atomic acknowledgement (interop.sh): with
		# it as the responder, the atomics are left out, and only then.
		case "$peer_stack:$PEER_KVER" in
		rxe:5.10.*)
			extra=(--no-atomics)
			diag "$name: atomics left out: rxe of $PEER_KVER does not answer them"
			;;
		esac
		timeout 300 /ferrite/ferrite-testclient client --dev $DEV --server "$PEER_IP" \
			--port "$port" --qp rc --quick "${extra[@]}" > "$out" 2>&1
		rc=$?
	fi
	grep '^# no ' "$out" | head -4 > /tmp/$name.notes
	diag "$name: $ME's $STACK as the $role: exit $rc, $(tail -1 "$out")"
	diag_file /tmp/$name.notes 4
	if [ $rc -ne 0 ] || ! grep -q '^[1-9][0-9]* passed, 0 failed$' "$out"; then
		grep -h '^not ok' "$out" > /tmp/$name.bad
		diag_file /tmp/$name.bad 15
		grep -v '^ok' "$out" | tail -6 > /tmp/$name.bad
		diag_file /tmp/$name.bad
		return 1
	fi
}

t_testclient() { # t_testclient PHASE
	local rc=0
	tc_run "tc$1-old-server" old $((18540 + $1 * 10)) || rc=1
	tc_run "tc$1-new-server" new $((18541 + $1 * 10)) || rc=1
	barrier_diag || rc=1
	return $rc
}

counter() { # counter DEV NAME: one value of rdma statistic
	rdma statistic show link "$1/1" | tr ' ' '\n' | grep -A1 -x "$2" | tail -1
}

# nonzero DEV NAME...: the counters of NAME... that are not 0 (a missing one too).
nonzero() {
	local dev=$1 n v
	shift
	for n in "$@"; do
		v=$(counter "$dev" "$n")
		[ "$v" = 0 ] || echo "$n=${v:-missing}"
	done
}

# t_counters: what this guest's device counted in the phase.  Both stacks sent and
# received and no QP ran out of retries; ferrite found no bad ICRC and nothing
# malformed in rxe's packets; rxe failed to send nothing, but on Linux 5.10, whose
# rxe now and then loses its own READ responses and ACKs in its send path ("Failed
# sending RDMA reply" in dmesg, counted in send_err; the boot test's interop runs
# show it too, most likely the skb->cb bug testclient-rxe.sh describes for its
# atomic ACKs); the requester recovers them, which the testclient check shows.
t_counters() {
	local bad
	diag "$ME's $STACK: $(rdma statistic show link $DEV/1 | tr -s ' \n' ' ')"
	[ "$(counter $DEV sent_pkts)" -gt 0 ] 2>/dev/null && [ "$(counter $DEV rcvd_pkts)" -gt 0 ] 2>/dev/null ||
		{ diag "$DEV sent or received nothing"; return 1; }
	if [ "$STACK" = ferrite ]; then
		bad=$(nonzero f0 icrc_errors malformed_drops retry_exceeded rnr_retry_exceeded)
	else
		bad=$(nonzero r0 retry_exceeded_err retry_rnr_exceeded_err)
		case $KVER in
		5.10.*)
			diag "rxe of $KVER: send_err $(counter r0 send_err): $(dmesg | grep -c 'rdma_rxe: Failed sending') send failures in dmesg, not counted against it"
			;;
		*) bad="$bad $(nonzero r0 send_err)" ;;
		esac
	fi
	bad=$(echo $bad)
	[ -z "$bad" ] || { diag "$DEV: $bad"; return 1; }
}

t_teardown() {
	dev_down || return 1
	if dmesg | grep -E 'ferrite: .*(leak|left at exit|destroyed with)'; then
		diag "$(dmesg | grep -E 'ferrite: .*(leak|left at exit|destroyed with)' | head -3)"
		return 1
	fi
}

SPLAT='WARNING:|BUG:|Oops|general protection|Call Trace|objtool|lockdep|possible (recursive|circular) locking|suspicious RCU|rcu.*(stall|detected)|unregister_netdevice: waiting|suspected memory leak|UBSAN|KASAN|KFENCE|refcount_t|blocked for more than|soft lockup'
t_dmesg_clean() {
	local bad
	bad=$(dmesg | grep -E "$SPLAT")
	[ -z "$bad" ] || { diag "$bad"; return 1; }
}

# --- the run --------------------------------------------------------------------

PEER_IP=$PEER_IP1
check pair_guest_setup t_guest_setup
check pair_link_up t_link_up
barrier link 420
for phase in 1 2; do
	if [ $phase = 1 ]; then name=ferrite_old_rxe_new; else name=rxe_old_ferrite_new; fi
	barrier "devices$phase"
	check pair_devices_$name t_devices $phase
	check pair_rc_pingpong_$name t_pingpong $phase
	check pair_testclient_$name t_testclient $phase
	check pair_counters_$name t_counters
done
check pair_teardown t_teardown
barrier done
check pair_dmesg_clean t_dmesg_clean
