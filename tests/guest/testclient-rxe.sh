#!/bin/bash
# ferrite-testclient between two rxe devices, run as the guest's first process: the
# reference run that shows the test client itself is right before it judges ferrite.
#
# rxe0 sits on v0 and rxe1 on v1, the two ends of one veth pair in the initial network
# namespace (rxe works only there before 7.1).  Packets between two local addresses
# reach the wire only through policy routing: lookups bound to v0 or v1 use a table of
# their own, and the `local` rule moves behind them (FACTS.md §4).
#
# Each run's server and client output goes to /ferrite/out/<run>.server and
# <run>.client; /ferrite/out/summary has one line per run.  The runs are listed in
# /ferrite/runs ("name server-dev client-dev server-addr [options]"), or the defaults
# below.  Addresses are documentation prefixes and never leave the guest.

set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C
OUT=/ferrite/out
mkdir -p "$OUT"
. /ferrite/lib.sh
exec >"$OUT/guest.log" 2>&1
busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
busybox mount -t tmpfs tmpfs /run
busybox mount -t tmpfs tmpfs /tmp

finish() {
	dmesg > "$OUT/dmesg.txt"
	echo done > "$OUT/done"
	guest_poweroff
}
trap finish EXIT

set -x
for m in veth ib_uverbs rdma_rxe; do
	modprobe "$m" || echo "modprobe $m failed"
done
ip link add v0 address 02:00:00:00:00:01 type veth peer name v1 address 02:00:00:00:00:02
ip addr add 192.0.2.1/24 dev v0
ip addr add 192.0.2.2/24 dev v1
ip addr add 2001:db8::1/64 dev v0 nodad
ip addr add 2001:db8::2/64 dev v1 nodad
ip link set lo up
ip link set v0 up
ip link set v1 up
for f in all default v0 v1; do
	sysctl -qw "net.ipv4.conf.$f.accept_local=1" "net.ipv4.conf.$f.rp_filter=0"
done
for v in "" -6; do
	ip $v rule add pref 100 oif v0 lookup 100
	ip $v rule add pref 101 oif v1 lookup 101
	ip $v rule add pref 1000 lookup local
	ip $v rule del pref 0 lookup local
done
ip route add 192.0.2.0/24 dev v0 src 192.0.2.1 table 100
ip route add 192.0.2.0/24 dev v1 src 192.0.2.2 table 101
ip -6 route add 2001:db8::/64 dev v0 table 100
ip -6 route add 2001:db8::/64 dev v1 table 101
rdma link add rxe0 type rxe netdev v0
rdma link add rxe1 type rxe netdev v1
# The GID table fills in asynchronously.
set +x
for i in $(seq 50); do
	grep -qs ffff:c000:0202 /sys/class/infiniband/rxe1/ports/1/gids/* &&
		grep -qs 2001:0db8 /sys/class/infiniband/rxe1/ports/1/gids/* && break
	sleep 0.1
done
set -x
ibv_devinfo -d rxe0 | grep -E 'state|mtu|hca_id'
ulimit -l unlimited
set +x

TC=/ferrite/ferrite-testclient
port=18515
# run NAME SERVER_DEV CLIENT_DEV SERVER_ADDR [OPTIONS...]: one server, one client.
run() {
	local name=$1 sdev=$2 cdev=$3 addr=$4
	shift 4
	port=$((port + 1))
	local t0=$SECONDS
	timeout 600 "$TC" server --dev "$sdev" --port "$port" "$@" > "$OUT/$name.server" 2>&1 &
	local spid=$!
	timeout 600 "$TC" client --dev "$cdev" --port "$port" --server "$addr" "$@" \
		> "$OUT/$name.client" 2>&1
	local crc=$?
	# A server whose client never came (or died) is stopped after a grace period.
	local i
	for ((i = 0; i < 200; i++)); do
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.1
	done
	kill "$spid" 2>/dev/null
	wait "$spid"
	local src=$?
	echo "$name: client exit $crc ($(tail -n 1 "$OUT/$name.client")), server exit $src" \
		"($(tail -n 1 "$OUT/$name.server")), $((SECONDS - t0)) s;" \
		"$(grep -h '^# .* tests in ' "$OUT/$name.client" | sed 's/^# //')" >> "$OUT/summary"
}

# Debian's 5.10 rxe never gets an atomic ACK onto the wire: rxe_send() fails with
# EMSGSIZE on every retry, most likely because send_atomic_ack() keeps its packet info
# in skb->cb, where IP reads it as IPCB's frag_max_size and ip_fragment() refuses the
# DF packet.  Probe once; where the responder cannot answer atomics, the runs leave
# them out and the summary says so.
: > "$OUT/summary"
extra=()
run atomic-probe rxe1 rxe0 192.0.2.2 --quick --only fetch_add.case1 --timeout 5
if ! grep -q '^1 passed, 0 failed' "$OUT/atomic-probe.client"; then
	extra=(--no-atomics)
	echo "atomic-probe: this kernel's rxe does not answer atomics (rxe1 send_err" \
		"$(cat /sys/class/infiniband/rxe1/ports/1/hw_counters/send_err 2>/dev/null)," \
		"dmesg: $(dmesg | grep -m1 -o 'rdma_rxe: Failed sending ack')); the runs below" \
		"use --no-atomics" >> "$OUT/summary"
fi
if [ -s /ferrite/runs ]; then
	runs=$(cat /ferrite/runs)
else
	runs="rc rxe1 rxe0 192.0.2.2
rc-reverse rxe0 rxe1 192.0.2.1
uc rxe1 rxe0 192.0.2.2 --qp uc
rc-events-psnwrap rxe1 rxe0 192.0.2.2 --quick --events --psn 0xfffff0
uc-events rxe1 rxe0 192.0.2.2 --quick --events --qp uc
rc-ipv6 rxe1 rxe0 2001:db8::2 --quick --ipv6
rc-mtu256 rxe1 rxe0 192.0.2.2 --quick --mtu 256"
fi
while read -r line; do
	[ -n "$line" ] || continue
	# shellcheck disable=SC2086
	run $line "${extra[@]}"
done <<< "$runs"
# Last, a 4096-byte path MTU: the netdevs need MTU 9000 for rxe to offer it.
if [ ! -s /ferrite/runs ]; then
	ip link set v0 mtu 9000
	ip link set v1 mtu 9000
	sleep 1
	run rc-mtu4096 rxe1 rxe0 192.0.2.2 --quick --mtu 4096 "${extra[@]}"
fi
cat "$OUT/summary"
