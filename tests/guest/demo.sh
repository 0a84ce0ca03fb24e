#!/bin/bash
# ferrite's demo, run as the guest's first process: install the driver-update
# packages from the target's signed apt repository, put a ferrite device and, beside
# it, the kernel's own soft-RoCE (rxe) device on the two ends of a veth pair, show
# what the kernel and the distro's own libibverbs report of both, and move data
# between them with the distro's ibv_rc_pingpong, each side once the server.  rxe
# (up to Linux 7.0) works only in the initial network namespace, so ferrite's end of
# the pair is in namespace "f".
# Output: /ferrite/out/demo.txt.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
OUT=/ferrite/out
mkdir -p "$OUT"
exec >"$OUT/demo.txt" 2>&1
busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
busybox mount -t tmpfs tmpfs /run
. /ferrite/lib.sh
trap guest_poweroff EXIT
KVER=$(uname -r)

show() { echo "\$ $*"; "$@"; echo; }

echo "== ferrite demo on $(. /etc/os-release; echo "$PRETTY_NAME"), kernel $KVER"
# The driver-update packages, from the target's signed apt repository, as a user
# installs them (the guest has no network, so Debian's own sources are set aside).
. /ferrite/package.env
mkdir -p /etc/apt/offline /etc/apt/keyrings
mv /etc/apt/sources.list /etc/apt/offline/ 2>/dev/null
cp /ferrite/repo/ferrite-archive-keyring.gpg /etc/apt/keyrings/ferrite.gpg
echo "deb [signed-by=/etc/apt/keyrings/ferrite.gpg] file:/ferrite/repo $PKG_SUITE main" \
	> /etc/apt/sources.list.d/ferrite.list
show cat /etc/apt/sources.list.d/ferrite.list
show apt-get -q update
if [ "$PKG_DISTRO" = yes ]; then
	show env DEBIAN_FRONTEND=noninteractive apt-get -q -y install ferrite
else
	show env DEBIAN_FRONTEND=noninteractive apt-get -q -y install "ferrite-modules-$KVER" ferrite-provider
fi
show modinfo -F signer ferrite
modprobe veth
ip link set lo up
ip netns add f
ip link add v0 address 02:00:00:00:00:01 type veth peer name v1 address 02:00:00:00:00:02
ip link set v0 netns f
ip -n f addr add 192.0.2.1/24 dev v0
ip addr add 192.0.2.2/24 dev v1
ip -n f link set v0 up
ip -n f link set lo up
ip link set v1 up
show ip netns exec f rdma link add f0 type ferrite netdev v0
show rdma link add r1 type rxe netdev v1
sleep 1
show rdma link show
show rdma dev show
show ls /sys/class/infiniband
for d in f0 r1; do
	echo "$d: node_guid $(cat /sys/class/infiniband/$d/node_guid)," \
		"port 1 $(cat /sys/class/infiniband/$d/ports/1/state)," \
		"GID[1] $(cat /sys/class/infiniband/$d/ports/1/gids/1)" \
		"($(cat /sys/class/infiniband/$d/ports/1/gid_attrs/types/1))"
done
echo
show ibv_devices
show ibv_devinfo -d f0
show ibv_devinfo -d r1
ulimit -l unlimited
echo "== ibv_rc_pingpong: rxe (r1) serves, ferrite (f0) is the client"
timeout 60 ibv_rc_pingpong -d r1 -g 1 -n 1000 > /tmp/srv.txt 2>&1 &
sleep 1
show ip netns exec f timeout 60 ibv_rc_pingpong -d f0 -g 1 -n 1000 192.0.2.2
wait
echo "(server side)"; cat /tmp/srv.txt; echo
echo "== ibv_rc_pingpong: ferrite (f0) serves, rxe (r1) is the client"
ip netns exec f timeout 60 ibv_rc_pingpong -d f0 -g 1 -n 1000 > /tmp/srv.txt 2>&1 &
sleep 1
show timeout 60 ibv_rc_pingpong -d r1 -g 1 -n 1000 192.0.2.1
wait
echo "(server side)"; cat /tmp/srv.txt; echo
show rdma statistic show link f0/1
show lsmod
show ip netns exec f rdma link delete f0
show rdma link delete r1
show rmmod ferrite
echo "\$ dmesg | grep -E 'ferrite|rxe|r1'"
dmesg -t | grep -E 'ferrite|rxe|infiniband'
echo
show cat /proc/sys/kernel/tainted
