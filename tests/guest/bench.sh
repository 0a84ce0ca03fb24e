#!/bin/bash
# ferrite against the kernel's own soft-RoCE (rxe), run as the guest's first process
# by `scripts/ferrite bench`.
#
# Topology, the same for both devices: one veth pair v0/v1 in the initial network
# namespace (192.0.2.1/24 and 192.0.2.2/24, documentation addresses; the guest has
# no other network), the client's device on v0 and the server's on v1.  Packets
# between two local addresses reach the veth only through policy routing (FACTS.md
# §4): lookups bound to v0 or v1 use a table of their own, the `local` rule moves
# behind them.  rxe and ferrite cannot both own UDP port 4791 in one namespace, so
# they take turns: a round loads one module, adds its two devices, measures, deletes
# the devices and unloads the module.  Rounds alternate ferrite, rxe, ferrite, rxe...
#
# Each round runs ferrite-bench (the project's client, timed with CLOCK_MONOTONIC),
# its memcpy mode, its udp mode (the kernel's UDP path over the same veth with plain
# sockets: the ceiling under both devices), the 64-byte message rate once more while
# the kernel's own syscall tracepoint counts the client's system calls (per WQE, the
# same method for both devices), once more under `strace -f` where the root has strace (for
# comparison only: its ptrace stops slow the client so much that the kernel idles
# between posts and asks for a doorbell every time), and perftest with the same
# parameters as a cross-check (its cycle-counter timing is not trusted under TCG).
#
# Results: one JSON object per line in /ferrite/out/bench.jsonl; logs in
# /ferrite/out/logs/.  /ferrite/bench.conf (from the host) sets ROUNDS, SMOKE,
# PERFTEST_ROUNDS and DEADLINE (guest uptime in seconds after which no new round
# starts).

set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C
OUT=/ferrite/out
LOG=$OUT/logs
J=$OUT/bench.jsonl
mkdir -p "$LOG"
. /ferrite/lib.sh
exec >"$OUT/guest.log" 2>&1
busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
busybox mount -t tmpfs tmpfs /run
busybox mount -t tmpfs tmpfs /tmp
KVER=$(uname -r)
: > "$J"

finish() {
	dmesg > "$OUT/dmesg.txt"
	echo done > "$OUT/done"
	guest_poweroff
}
trap finish EXIT

ROUNDS=5
SMOKE=0
PERFTEST_ROUNDS=1000
DEADLINE=1000000
[ -r /ferrite/bench.conf ] && . /ferrite/bench.conf

BENCH=/ferrite/ferrite-bench
ulimit -l unlimited

# --- helpers -----------------------------------------------------------------------

uptime_s() { cut -d. -f1 /proc/uptime; }
jstr() { # a JSON string of $1
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\t'/ }
	s=${s//$'\n'/ }
	printf '"%s"' "$s"
}
emit() { printf '%s\n' "$1" >> "$J"; }
note() { echo "bench: $*"; }
error() { # error DEVICE ROUND TEST MESSAGE
	emit "{\"kind\":\"error\",\"device\":$(jstr "$1"),\"round\":$2,\"test\":$(jstr "$3"),\"error\":$(jstr "$4")}"
	note "error: $1 round $2 $3: $4"
}
wait_for() { # wait_for SECONDS COMMAND...
	local i
	for ((i = 0; i < $1 * 10; i++)); do
		"${@:2}" && return 0
		sleep 0.1
	done
	return 1
}
listening() { ss -Hltn "sport = :$1" | grep -q .; }
ibdev_gone() { [ ! -e "/sys/class/infiniband/$1" ]; }
# gid_index DEV: the first RoCE v2 GID of port 1 with an IPv4-mapped address.
gid_index() {
	local d=/sys/class/infiniband/$1/ports/1 i g
	for i in $(seq 0 15); do
		[ "$(cat "$d/gid_attrs/types/$i" 2>/dev/null)" = "RoCE v2" ] || continue
		g=$(cat "$d/gids/$i" 2>/dev/null)
		case "$g" in
		0000:0000:0000:0000:0000:ffff:*) echo "$i"; return 0 ;;
		esac
	done
	return 1
}
# stop_server PID: a server whose client is done gets a grace period, then a kill.
stop_server() {
	local i
	for ((i = 0; i < 50; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# --- set-up ------------------------------------------------------------------------

set -x
for m in veth ib_core ib_uverbs rdma_ucm; do
	modprobe "$m" || note "modprobe $m failed"
done
# ferrite as the ferrite-modules and ferrite-provider packages lay it out, without apt
# (apt and depmod cost minutes under TCG; the boot test covers the packages): its
# dependencies by modprobe, the module by insmod (dev_up), the provider copied.
for m in $(modinfo -F depends /ferrite/ferrite.ko | tr , ' '); do
	modprobe "$m" || note "modprobe $m failed"
done
if ! modinfo -F vermagic /ferrite/ferrite.ko | grep -q "^$KVER " ||
	! cp /ferrite/libferrite-rdmav*.so /usr/lib/x86_64-linux-gnu/libibverbs/ ||
	! echo "driver ferrite" > /etc/libibverbs.d/ferrite.driver; then
	error setup 0 install "ferrite does not install for $KVER: $(modinfo -F vermagic /ferrite/ferrite.ko 2>&1)"
	exit 1
fi
ip link set lo up
ip link add v0 address 02:00:00:00:00:01 type veth peer name v1 address 02:00:00:00:00:02
ip addr add 192.0.2.1/24 dev v0
ip addr add 192.0.2.2/24 dev v1
ip link set v0 up
ip link set v1 up
for f in all default v0 v1; do
	sysctl -qw "net.ipv4.conf.$f.accept_local=1" "net.ipv4.conf.$f.rp_filter=0"
done
ip rule add pref 100 oif v0 lookup 100
ip rule add pref 101 oif v1 lookup 101
ip rule add pref 1000 lookup local
ip rule del pref 0 lookup local
ip route add 192.0.2.0/24 dev v0 src 192.0.2.1 table 100
ip route add 192.0.2.0/24 dev v1 src 192.0.2.2 table 101
set +x

STRACE=$(command -v strace || true)
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
emit "{\"kind\":\"meta\",\"kernel\":$(jstr "$KVER"),\"os\":$(jstr "$(. /etc/os-release; echo "$PRETTY_NAME")"),\
\"cpus\":$(nproc),\"cpu_model\":$(jstr "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"),\
\"mem_kB\":$(awk '/^MemTotal/ {print $2}' /proc/meminfo),\
\"clocksource\":$(jstr "$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)"),\
\"netdev_mtu\":$(cat /sys/class/net/v0/mtu),\"rdma_core\":$(jstr "$(ver rdma-core)"),\
\"perftest\":$(jstr "$(ver perftest)"),\"strace\":$(jstr "${STRACE:+$(ver strace)}"),\
\"rounds\":$ROUNDS,\"smoke\":$SMOKE,\"perftest_rounds\":$PERFTEST_ROUNDS}"

# --- what a round runs -------------------------------------------------------------

if [ "$SMOKE" = 1 ]; then
	CLIENT_ARGS=(--sizes 2,64,4096,65536 --bytes 2M --min-iters 16 --max-iters 2048
		--rate-iters 4000 --lat-iters 300 --warmup 30)
	LAT_ARGS=(--lat-sizes 2,4096)
	PERF_SIZES="2 65536"
	PERF_LAT_ITERS=300
	RATE_ITERS=2000
	MEMCPY_SECONDS=0.5
	UDP_ARGS=(--seconds 0.5)
	UDP_LAT_ARGS=(--lat-iters 300 --warmup 30)
else
	CLIENT_ARGS=(--bytes 4M --min-iters 16 --max-iters 2048 --rate-iters 10000
		--lat-iters 500 --warmup 50)
	LAT_ARGS=(--lat-sizes 2,64,1024,4096,16384)
	PERF_SIZES="2 64 4096 65536 1048576"
	# perftest's latency is tick-bound under TCG (see round()): a few hundred samples.
	PERF_LAT_ITERS=500
	RATE_ITERS=5000
	MEMCPY_SECONDS=1
	UDP_ARGS=(--seconds 1)
	UDP_LAT_ARGS=(--lat-iters 500 --warmup 50)
fi
# What the client runs with (CLIENT_ARGS), which perftest gets too.
TX_DEPTH=128
CQ_MOD=32
BYTES=$((4 << 20))
MIN_ITERS=16
MAX_ITERS=2048
if [ "$SMOKE" = 1 ]; then BYTES=$((2 << 20)); MAX_ITERS=2048; fi
iters_for() { # the client's iterations for size $1
	local n=$((BYTES / $1))
	[ $n -lt $MIN_ITERS ] && n=$MIN_ITERS
	[ $n -gt $MAX_ITERS ] && n=$MAX_ITERS
	echo $n
}

PORT=18600
# The udp mode's datagrams: the flood to UDP_PORT, the ping-pong to UDP_PORT + 1.
UDP_PORT=18500
UDP_ENDS=(--src 192.0.2.1 --src-dev v0 --dst 192.0.2.2 --dst-dev v1 --port "$UDP_PORT")
DEVICE= ROUND= D0= D1= G0= G1=

dev_up() { # dev_up ferrite|rxe
	local mod type
	case $1 in
	ferrite) mod=ferrite type=ferrite D0=f0 D1=f1 ;;
	rxe) mod=rdma_rxe type=rxe D0=r0 D1=r1 ;;
	esac
	if [ "$mod" = ferrite ]; then
		insmod /ferrite/ferrite.ko
	else
		modprobe "$mod"
	fi || { error "$1" "$ROUND" up "loading $mod: $(dmesg | tail -2)"; return 1; }
	rdma link add "$D0" type "$type" netdev v0 &&
		rdma link add "$D1" type "$type" netdev v1 ||
		{ error "$1" "$ROUND" up "rdma link add: $(dmesg | tail -2)"; return 1; }
	wait_for 10 gid_index "$D0" >/dev/null && wait_for 10 gid_index "$D1" >/dev/null ||
		{ error "$1" "$ROUND" up "no RoCE v2 IPv4 GID on $D0 or $D1"; return 1; }
	G0=$(gid_index "$D0")
	G1=$(gid_index "$D1")
}

dev_down() { # dev_down ferrite|rxe
	local mod=ferrite
	[ "$1" = rxe ] && mod=rdma_rxe
	timeout 60 rdma link delete "$D0"
	timeout 60 rdma link delete "$D1"
	wait_for 10 ibdev_gone "$D0" && wait_for 10 ibdev_gone "$D1" ||
		error "$1" "$ROUND" down "$D0 or $D1 still there after rdma link delete"
	timeout 60 rmmod "$mod" || error "$1" "$ROUND" down "rmmod $mod failed"
}

# bench_pair NAME [WRAPPER...] -- CLIENT-ARGS...: ferrite-bench server on D1 (with
# the options in SERVER_ARGS), client on D0 (optionally under WRAPPER); the client's
# JSON goes to the results.
SERVER_ARGS=()
bench_pair() {
	local name=$1 wrap=() spid rc
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do wrap+=("$1"); shift; done
	shift
	PORT=$((PORT + 1))
	timeout 1200 "$BENCH" server --dev "$D1" --port "$PORT" "${SERVER_ARGS[@]}" \
		> "$LOG/$name.server" 2>&1 &
	spid=$!
	wait_for 20 listening "$PORT" || { error "$DEVICE" "$ROUND" "$name" "the server does not listen"; kill $spid; return 1; }
	timeout 1200 "${wrap[@]}" "$BENCH" client --dev "$D0" --server 192.0.2.2 --port "$PORT" \
		--tag device="$DEVICE" --tag round="$ROUND" "$@" >> "$J" 2> "$LOG/$name.client"
	rc=$?
	stop_server $spid
	[ $rc -eq 0 ] || error "$DEVICE" "$ROUND" "$name" "client exit $rc: $(grep -v '^ferrite-bench: [a-z]*\.[a-z]*\.[0-9]*\(\.pl[0-9]*\)*$' "$LOG/$name.client" | tail -3)"
	return $rc
}

# count_syscalls FILE TEST WQES: the system calls strace saw between the client's
# start and stop marks.
count_syscalls() {
	awk -v dev="$DEVICE" -v round="$ROUND" -v test="$2" -v wqes="$3" '
		/ferrite-bench:start/ { on = 1; next }
		/ferrite-bench:stop/ { on = 0; next }
		on && /^[0-9]+ +[a-z_0-9]+\(/ { split($2, a, "("); n[a[1]]++; total++ }
		END {
			by = ""
			for (k in n) by = by (by == "" ? "" : ",") "\"" k "\":" n[k]
			printf "{\"kind\":\"syscalls\",\"method\":\"strace\",\"device\":\"%s\",\"round\":%d,\"test\":\"%s\",\"wqes\":%d,\"syscalls\":%d,\"per_wqe\":%.6f,\"by_name\":{%s}}\n",
				dev, round, test, wqes, total, (wqes > 0 ? total / wqes : 0), by
		}' "$1" >> "$J"
}

# The kernel's raw_syscalls:sys_enter tracepoint (tracefs), which counts system
# calls without stopping the process that makes them.
TRACEFS=/sys/kernel/tracing
mountpoint -q $TRACEFS || mount -t tracefs nodev $TRACEFS 2>/dev/null
SYS_ENTER=$TRACEFS/events/raw_syscalls/sys_enter
[ -e $SYS_ENTER/enable ] || SYS_ENTER=""

# trace_syscalls on|off: record every task's system calls in the trace buffer.
trace_syscalls() {
	if [ "$1" = on ]; then
		echo 0 > $TRACEFS/tracing_on
		echo 16384 > $TRACEFS/buffer_size_kb
		: > $TRACEFS/trace
		echo 1 > $SYS_ENTER/enable
		echo 1 > $TRACEFS/tracing_on
	else
		echo 0 > $TRACEFS/tracing_on
		echo 0 > $SYS_ENTER/enable
	fi
}

# count_traced TEST WQES: the system calls in the trace buffer that the client's
# measured thread made between its marks, the write(-1, ...) calls of --marks
# (syscall 1 with fd -1; the stop mark itself not counted).  Lost events, or marks
# not found, make an error instead of a figure.
count_traced() {
	local lost
	# "# entries-in-buffer/entries-written: IN/WRITTEN   #P:2": fewer in the buffer
	# than written were overwritten.
	lost=$(awk '/^# entries-in-buffer/ { split($3, a, "/"); print a[2] - a[1]; exit }' $TRACEFS/trace)
	if [ "${lost:-x}" != 0 ]; then
		error "$DEVICE" "$ROUND" syscalls "trace buffer: ${lost:-unknown} events lost"
		return 1
	fi
	awk -v dev="$DEVICE" -v round="$ROUND" -v test="$1" -v wqes="$2" '
		# "  comm-PID  [cpu] flags  time: sys_enter: NR nr (args)"
		/ sys_enter: NR / {
			split($1, c, "-"); pid = c[length(c)]
			nr = $0; sub(/.* sys_enter: NR /, "", nr); args = nr
			sub(/ .*/, "", nr); sub(/^[0-9]+ \(/, "", args)
			mark = nr == 1 && args ~ /^ffffffffffffffff,/
			if (state == 0) { if (mark) { state = 1; who = pid }; next }
			if (state == 1 && pid == who) {
				if (mark) { state = 2; next }
				n[nr]++; total++
			}
		}
		END {
			if (state != 2) { print "marks not found"; exit 1 }
			by = ""
			for (k in n) by = by (by == "" ? "" : ",") "\"" k "\":" n[k]
			printf "{\"kind\":\"syscalls\",\"method\":\"tracepoint\",\"device\":\"%s\",\"round\":%d,\"test\":\"%s\",\"wqes\":%d,\"syscalls\":%d,\"per_wqe\":%.6f,\"by_nr\":{%s}}\n",
				dev, round, test, wqes, total, (wqes > 0 ? total / wqes : 0), by
		}' $TRACEFS/trace > /tmp/traced.json
	local rc=$?
	if [ $rc -ne 0 ]; then
		error "$DEVICE" "$ROUND" syscalls "trace: $(cat /tmp/traced.json)"
		return 1
	fi
	cat /tmp/traced.json >> "$J"
}

# perf_pair NAME TOOL ARGS...: one perftest server/client pair with the client's
# parameters; its result line becomes a "perftest" object.
perf_pair() {
	local name=$1 tool=$2 spid rc lf
	shift 2
	lf=$LOG/$DEVICE.$ROUND.$name
	PORT=$((PORT + 1))
	timeout 300 "$tool" -d "$D1" -x "$G1" -p "$PORT" -F "$@" > "$lf.server" 2>&1 &
	spid=$!
	wait_for 20 listening "$PORT" || { error "$DEVICE" "$ROUND" "$name" "$tool does not listen"; kill $spid; return 1; }
	timeout 300 "$tool" -d "$D0" -x "$G0" -p "$PORT" -F "$@" 192.0.2.2 > "$lf.client" 2>&1
	rc=$?
	[ $rc -eq 0 ] || kill $spid 2>/dev/null
	stop_server $spid
	if [ $rc -ne 0 ]; then
		error "$DEVICE" "$ROUND" "$name" "$tool exit $rc: $(grep -v '^ *$' "$lf.client" | tail -2)"
		return 1
	fi
	# The line after the "#bytes" header holds the figures.
	# perftest prints "-nan" or "inf" where it cannot compute a figure: null.
	awk -v dev="$DEVICE" -v round="$ROUND" -v tool="$tool" -v name="$name" '
		function n(x) { return x ~ /^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/ ? x : "null" }
		/^ *#bytes/ { hdr = 1; next }
		hdr && /^ *[0-9]+ +[0-9]+ +[0-9.]+/ {
			if (tool ~ /_lat$/)
				printf "{\"kind\":\"perftest\",\"device\":\"%s\",\"round\":%d,\"tool\":\"%s\",\"test\":\"%s\",\"size\":%d,\"iters\":%d,\"t_min_us\":%s,\"t_max_us\":%s,\"t_typical_us\":%s,\"t_avg_us\":%s,\"t_stdev_us\":%s,\"p99_us\":%s,\"p999_us\":%s}\n",
					dev, round, tool, name, $1, $2, n($3), n($4), n($5), n($6), n($7), n($8), n($9)
			else
				printf "{\"kind\":\"perftest\",\"device\":\"%s\",\"round\":%d,\"tool\":\"%s\",\"test\":\"%s\",\"size\":%d,\"iters\":%d,\"bw_peak_MiBps\":%s,\"bw_avg_MiBps\":%s,\"msg_rate_Mpps\":%s}\n",
					dev, round, tool, name, $1, $2, n($3), n($4), n($5)
			exit
		}' "$lf.client" >> "$J"
}

round() { # round ferrite|rxe N
	DEVICE=$1 ROUND=$2
	local t0 tag=$1.$2 rc
	t0=$(uptime_s)
	note "round $ROUND: $DEVICE (uptime $t0 s)"
	if ! dev_up "$DEVICE"; then
		dev_down "$DEVICE"
		return 1
	fi
	local before
	before=$(rdma statistic show link "$D0/1" 2>/dev/null | tr -s ' ')
	bench_pair "$tag" -- --tests bw,rate "${CLIENT_ARGS[@]}"
	# Latency on one vCPU, both ends yielding while they wait.  Single-threaded TCG
	# runs the vCPUs in turns, and a wake-up on the other vCPU (a worker, or a
	# spinning peer) waits there for its next timer tick: with two vCPUs online
	# every ping-pong took about 1/HZ (4 ms) on both devices, whatever they did.
	# perftest's latency, below, still spins and shows that.
	echo 0 > /sys/devices/system/cpu/cpu1/online ||
		error "$DEVICE" "$ROUND" lat "cannot take CPU 1 offline"
	SERVER_ARGS=(--cpu 0)
	bench_pair "$tag.lat" -- --tests lat --cpu 0 --yield "${CLIENT_ARGS[@]}" "${LAT_ARGS[@]}"
	SERVER_ARGS=()
	# The same ping-pong with UDP sockets over the same veth, the same way.
	timeout 300 "$BENCH" udp --tests pingpong "${UDP_ENDS[@]}" --cpu 0 --yield "${UDP_LAT_ARGS[@]}" \
		--tag device="$DEVICE" --tag round="$ROUND" >> "$J" 2>> "$LOG/$tag.udp" ||
		error "$DEVICE" "$ROUND" udp.pingpong "exit $?: $(tail -1 "$LOG/$tag.udp")"
	echo 1 > /sys/devices/system/cpu/cpu1/online ||
		error "$DEVICE" "$ROUND" lat "cannot bring CPU 1 back"
	"$BENCH" memcpy --seconds "$MEMCPY_SECONDS" --tag device="$DEVICE" --tag round="$ROUND" >> "$J" \
		2>> "$LOG/$tag.memcpy" || error "$DEVICE" "$ROUND" memcpy "exit $?"
	# The kernel's UDP path over the same veth: packets per second at the sizes of a
	# 64-byte WRITE and of a full 1024-byte packet, while the round's devices idle.
	timeout 300 "$BENCH" udp --tests flood "${UDP_ENDS[@]}" "${UDP_ARGS[@]}" \
		--tag device="$DEVICE" --tag round="$ROUND" >> "$J" 2>> "$LOG/$tag.udp" ||
		error "$DEVICE" "$ROUND" udp.flood "exit $?: $(tail -1 "$LOG/$tag.udp")"
	# System calls per WQE at saturation: the 64-byte WRITE message rate, one WR per
	# ibv_post_send, counted by the syscall tracepoint; only the measured loop counts.
	if [ -n "$SYS_ENTER" ]; then
		trace_syscalls on
		bench_pair "$tag.traced" -- \
			--tests rate --rate-ops write --post-lists 1 --rate-iters "$RATE_ITERS" --marks \
			--tag traced=1
		rc=$?
		trace_syscalls off
		[ $rc -eq 0 ] && count_traced "rate.write.64.pl1" "$RATE_ITERS"
		: > $TRACEFS/trace
	else
		error "$DEVICE" "$ROUND" syscalls "no raw_syscalls:sys_enter tracepoint in $TRACEFS"
	fi
	# The same under strace, for comparison.
	if [ -n "$STRACE" ]; then
		bench_pair "$tag.strace" "$STRACE" -f -qq -o "/tmp/strace.$tag" -- \
			--tests rate --rate-ops write --post-lists 1 --rate-iters "$RATE_ITERS" --marks \
			--tag strace=1 &&
			count_syscalls "/tmp/strace.$tag" "rate.write.64.pl1.strace" "$RATE_ITERS"
		rm -f "/tmp/strace.$tag"
	fi
	if [ "$ROUND" -le "$PERFTEST_ROUNDS" ]; then
		local s op n
		for op in write read send; do
			for s in $PERF_SIZES; do
				n=$(iters_for "$s")
				perf_pair "pt.bw.$op.$s" "ib_${op}_bw" -s "$s" -n "$n" -t "$TX_DEPTH" -Q "$CQ_MOD"
			done
		done
		for op in write send read; do
			for s in 2 4096; do
				perf_pair "pt.lat.$op.$s" "ib_${op}_lat" -s "$s" -n "$PERF_LAT_ITERS"
			done
		done
	fi
	# The device's own view, for the log: doorbells against WQEs posted.
	{ echo "before: $before"; echo "after: $(rdma statistic show link "$D0/1" 2>/dev/null | tr -s ' ')"; } \
		> "$LOG/$tag.stat"
	dev_down "$DEVICE"
	emit "{\"kind\":\"round\",\"device\":\"$DEVICE\",\"round\":$ROUND,\"seconds\":$(($(uptime_s) - t0))}"
}

# --- the rounds --------------------------------------------------------------------

last=0
for ((r = 1; r <= ROUNDS; r++)); do
	for d in ferrite rxe; do
		now=$(uptime_s)
		# Start a round only if one as long as the last still fits.
		if [ $((now + last)) -gt "$DEADLINE" ]; then
			error "$d" "$r" deadline "no time left for round $r at uptime $now s (deadline $DEADLINE s, last round $last s)"
			break 2
		fi
		round "$d" "$r"
		last=$(($(uptime_s) - now))
	done
done
emit "{\"kind\":\"end\",\"uptime_s\":$(uptime_s)}"
note "done at uptime $(uptime_s) s"
