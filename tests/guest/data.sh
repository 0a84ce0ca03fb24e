# ferrite moving data, ferrite to ferrite (sourced by boot-test.sh: check, diag,
# wait_for and the result file are its).
#
# Topology: one device looped back to itself (f0, in the initial namespace), and two
# devices on the ends of a veth pair in two network namespaces, fa and fb, so that
# the traffic crosses the veth between separate UDP sockets.  Each check runs the
# distro's own tools (ibv_*_pingpong, perftest) or ferrite-testclient, which checks
# every payload byte, and passes only on their own success lines.

# nsx NS CMD...: run CMD in network namespace NS ("" is the initial one).
nsx() {
	local ns=$1
	shift
	if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi
}

# gid_index DEV [v6]: the first RoCE v2 GID of port 1 with an IPv4-mapped (or, with
# v6, a global IPv6) address.
gid_index() {
	local d=/sys/class/infiniband/$1/ports/1 i g
	for i in $(seq 0 15); do
		[ "$(cat $d/gid_attrs/types/$i 2>/dev/null)" = "RoCE v2" ] || continue
		g=$(cat $d/gids/$i 2>/dev/null)
		case "${2:-}:$g" in
		:0000:0000:0000:0000:0000:ffff:*) echo "$i"; return 0 ;;
		v6:2001:*) echo "$i"; return 0 ;;
		esac
	done
	return 1
}

# diag_file FILE [MAX]: FILE's lines (at most MAX) as diagnostics, without the
# shell's own trace lines (set -x traces nsx into the files its commands write).
diag_file() {
	local l
	grep -v '^++* ' "$1" 2>/dev/null | head -n "${2:-40}" > /tmp/diag.$$
	while read -r l; do diag "  $l"; done < /tmp/diag.$$
}

# listening NS PORT: something listens on TCP PORT in namespace NS.
listening() { nsx "$1" ss -Hltn "sport = :$2" | grep -q .; }

# counters_diag NAME NS DEV: DEV's counters (ferrite's or rxe's) as one diagnostic
# line, for a failed run: who dropped, retried, NAKed.
counters_diag() {
	local c
	c=$({ nsx "$2" rdma statistic show link "$3/1"; } 2>/dev/null | tr -s ' \n' ' ' | cut -c1-900)
	diag "$1: $3: ${c:-no counters}"
}

# proc_diag NAME: where each running process called NAME waits (its wchan and kernel
# stack), and the TCP sockets of the connection port: for a run that hung.
proc_diag() {
	local p st
	for p in $(pgrep -x "$1"); do
		st=$(tr '\n' ' ' < "/proc/$p/stack" 2>/dev/null | cut -c1-400)
		diag "$1 $p: wchan $(cat "/proc/$p/wchan" 2>/dev/null); stack: ${st:-unknown}"
	done
	diag "tcp: $(ss -Htan 'sport = :18515 or dport = :18515' 2>/dev/null | tr -s ' \n' ' ')"
}

# pair NAME SRV_NS SRV_DEV CLI_NS CLI_DEV SRV_IP CMD [ARGS...]: run CMD as server
# and as client (ibv_*_pingpong style: the client names the server, whose TCP port
# carries the connection info; SRV_IP may be IPv4 also when the GIDs are IPv6) and
# pass when both exit 0 and both print PAIR_OK.  With PAIR_V6 set, IPv6 GIDs.
PAIR_OK='iters in'
pair() {
	local name=$1 sns=$2 sdev=$3 cns=$4 cdev=$5 ip=$6 cmd=$7 sg cg srv rc
	shift 7
	sg=$(gid_index "$sdev" ${PAIR_V6:-}) && cg=$(gid_index "$cdev" ${PAIR_V6:-}) ||
		{ diag "$name: no RoCE v2 GID on $sdev or $cdev"; return 1; }
	# Line-buffered: what a run that times out printed is kept.
	nsx "$sns" timeout 60 stdbuf -oL $cmd -d "$sdev" -g "$sg" "$@" > "/tmp/$name.srv" 2>&1 &
	srv=$!
	wait_for 20 listening "$sns" 18515 || { diag "$name: the server does not listen"; kill $srv; return 1; }
	nsx "$cns" timeout 60 stdbuf -oL $cmd -d "$cdev" -g "$cg" "$@" "$ip" > "/tmp/$name.cli" 2>&1
	rc=$?
	# A client that failed leaves the server waiting: say where, then stop it.
	# $srv is the subshell: the server itself is stopped by name, or it would keep
	# the port until its timeout, for the next check's client to find.
	[ $rc -eq 0 ] || { proc_diag "$cmd"; kill $srv 2>/dev/null; pkill -x "$cmd"; }
	wait $srv || { [ $rc -ne 0 ] || rc=1; }
	if [ $rc -ne 0 ] || ! grep -q "$PAIR_OK" "/tmp/$name.cli" || ! grep -q "$PAIR_OK" "/tmp/$name.srv"; then
		diag "$name: client exit $rc (124: timed out):"; diag_file "/tmp/$name.cli"
		diag "$name: server:"; diag_file "/tmp/$name.srv"
		counters_diag "$name" "$sns" "$sdev"
		counters_diag "$name" "$cns" "$cdev"
		return 1
	fi
	diag "$(grep -h "$PAIR_OK" "/tmp/$name.cli" | head -2)"
}

# testclient NAME SRV_NS SRV_DEV CLI_NS CLI_DEV SRV_IP [ARGS...]: ferrite-testclient's
# byte-checking matrix; its own result lines are kept as diagnostics.
testclient() {
	local name=$1 sns=$2 sdev=$3 cns=$4 cdev=$5 ip=$6 srv rc
	shift 6
	[ -x /ferrite/ferrite-testclient ] || { diag "no ferrite-testclient in the guest"; return 1; }
	# A slow kernel (TIMEOUT_SCALE, lib.sh) gives each operation longer too: the
	# debug kernel moves about 1 MB/s, and the largest messages are 8 MiB.
	[ "$TIMEOUT_SCALE" -gt 1 ] && set -- --timeout $((30 * TIMEOUT_SCALE)) "$@"
	# Bounded work (lib.sh): messages up to 1 MiB (1024 packets) unless the check
	# asks otherwise (a later --max-size wins); 8 MiB ones took minutes there.
	[ -n "$BOUNDED" ] && set -- --max-size 1048576 "$@"
	nsx "$sns" timeout 240 /ferrite/ferrite-testclient server --dev "$sdev" "$@" > "/tmp/$name.srv" 2>&1 &
	srv=$!
	wait_for 20 listening "$sns" 18515 || { diag "$name: the server does not listen"; kill $srv; return 1; }
	nsx "$cns" timeout 240 /ferrite/ferrite-testclient client --dev "$cdev" --server "$ip" "$@" > "/tmp/$name.cli" 2>&1
	rc=$?
	[ $rc -eq 0 ] || kill $srv 2>/dev/null
	wait $srv || rc=1
	diag "$name: client: $(tail -1 "/tmp/$name.cli"); server: $(tail -1 "/tmp/$name.srv")"
	# IBTA 1.5: how many ATOMIC_WRITE/FLUSH checks ran, and why any did not.
	grep -h -e '^# no ATOMIC_WRITE' -e '^# no FLUSH' "/tmp/$name.cli" > "/tmp/$name.ibta"
	diag "$name: $(grep -c -e '^ok .*\.atomic_write' -e '^ok .*\.flush_' "/tmp/$name.cli") ATOMIC_WRITE/FLUSH checks passed"
	diag_file "/tmp/$name.ibta" 4
	if [ $rc -ne 0 ]; then
		grep -h '^not ok' "/tmp/$name.cli" "/tmp/$name.srv" > "/tmp/$name.bad"
		diag_file "/tmp/$name.bad" 20
		grep -vh '^ok' "/tmp/$name.cli" | tail -5 > "/tmp/$name.bad"
		diag_file "/tmp/$name.bad"
		counters_diag "$name" "$sns" "$sdev"
		counters_diag "$name" "$cns" "$cdev"
		return 1
	fi
	grep -q '^[1-9][0-9]* passed, 0 failed$' "/tmp/$name.cli"
}

# perftest_pair NAME SRV_NS SRV_DEV CLI_NS CLI_DEV SRV_IP TOOL SIZE ITERS: one run of
# perftest's TOOL (ib_*_bw, ib_*_lat), server and client, SIZE bytes (the atomics
# take no size: theirs is 8), ITERS iterations.  It passes when both exit 0 and the
# client printed its result row, the line after the "#bytes" header that starts with
# SIZE and ITERS.  Under TCG perftest's cycle-counter figures are not to be trusted:
# they are shown, never checked.
perftest_pair() {
	local name=$1 sns=$2 sdev=$3 cns=$4 cdev=$5 ip=$6 tool=$7 size=$8 iters=$9 sg cg srv rc row t0
	local args=(-F -n "$iters")
	case $tool in
	ib_atomic_*) ;;
	*) args+=(-s "$size") ;;
	esac
	sg=$(gid_index "$sdev") && cg=$(gid_index "$cdev") ||
		{ diag "$name: no RoCE v2 GID on $sdev or $cdev"; return 1; }
	t0=$(date +%s)
	nsx "$sns" timeout 60 stdbuf -oL "$tool" -d "$sdev" -x "$sg" "${args[@]}" > "/tmp/$name.srv" 2>&1 &
	srv=$!
	wait_for 20 listening "$sns" 18515 || { diag "$name: $tool does not listen"; kill $srv; return 1; }
	nsx "$cns" timeout 60 stdbuf -oL "$tool" -d "$cdev" -x "$cg" "${args[@]}" "$ip" > "/tmp/$name.cli" 2>&1
	rc=$?
	[ $rc -eq 0 ] || kill $srv 2>/dev/null
	wait $srv || { [ $rc -ne 0 ] || rc=1; }
	row=$(awk -v s="$size" -v n="$iters" '/^ *#bytes/ { hdr = 1; next }
		hdr && $1 == s && $2 == n { $1 = $1; print; exit }' "/tmp/$name.cli")
	if [ $rc -ne 0 ] || [ -z "$row" ]; then
		diag "$name: $tool, server $sdev, client $cdev: exit $rc (124: timed out), no result row for $size bytes x $iters, $(($(date +%s) - t0)) s"
		diag "$name: client:"; diag_file "/tmp/$name.cli"
		diag "$name: server:"; diag_file "/tmp/$name.srv"
		counters_diag "$name" "$sns" "$sdev"
		counters_diag "$name" "$cns" "$cdev"
		return 1
	fi
	diag "$name: $tool, server $sdev, client $cdev, $(($(date +%s) - t0)) s: $row"
}

# Iterations of the perftest runs: few, the guest is emulated; fewer still on a
# slow kernel (BOUNDED, lib.sh).
PERFTEST_BW_ITERS=200
PERFTEST_LAT_ITERS=100
[ -n "$BOUNDED" ] && PERFTEST_BW_ITERS=50 PERFTEST_LAT_ITERS=50

# errors_pair NAME SRV_NS SRV_DEV CLI_NS CLI_DEV SRV_IP [ARGS...]: one run of
# ferrite-testclient's error cases (tests/client/src/errors.rs), the responder on
# SRV_DEV, the requester on CLI_DEV; their outputs stay in /tmp/NAME.srv and
# /tmp/NAME.cli for errors_case.  Not a check of its own: each case is one.
errors_pair() {
	local name=$1 sns=$2 sdev=$3 cns=$4 cdev=$5 ip=$6 srv rc t0
	shift 6
	rm -f "/tmp/$name.srv" "/tmp/$name.cli"
	[ -x /ferrite/ferrite-testclient ] || { diag "no ferrite-testclient in the guest"; return 1; }
	t0=$(date +%s)
	nsx "$sns" timeout 180 /ferrite/ferrite-testclient errors --dev "$sdev" "$@" > "/tmp/$name.srv" 2>&1 &
	srv=$!
	wait_for 20 listening "$sns" 18515 || { diag "$name: the server does not listen"; kill $srv; return 1; }
	nsx "$cns" timeout 180 /ferrite/ferrite-testclient errors --dev "$cdev" --server "$ip" "$@" \
		> "/tmp/$name.cli" 2>&1
	rc=$?
	[ $rc -eq 0 ] || kill $srv 2>/dev/null
	wait $srv || rc=1
	diag "$name: errors, server $sdev, client $cdev, $(($(date +%s) - t0)) s: client: $(tail -1 "/tmp/$name.cli"); server: $(tail -1 "/tmp/$name.srv")"
	return $rc
}

# errors_case NAME CASE: CASE of the errors_pair run NAME passed on both sides; both
# sides' diagnostics of it (completions, QP state, async events) are shown.
errors_case() {
	local name=$1 c=$2 cli=/tmp/$1.cli srv=/tmp/$1.srv
	[ -e "$cli" ] && [ -e "$srv" ] || { diag "$name: no errors run"; return 1; }
	grep -h -e "^# $c: " -e "^not ok [0-9]* - $c " "$cli" "$srv" | sed 's/^# //' > "/tmp/$name.$c"
	diag_file "/tmp/$name.$c" 12
	if ! grep -q "^ok [0-9]* - $c\$" "$cli"; then
		grep -q "^not ok [0-9]* - $c " "$cli" || diag "$c did not run; the client's last line: $(tail -1 "$cli")"
		return 1
	fi
	grep -q "^ok [0-9]* - $c\$" "$srv" || { diag "$c: no verdict of the server's"; return 1; }
}
ERRORS_CASES="rem_access_bad_rkey rem_access_out_of_bounds loc_prot_bad_lkey rnr_retry_exc retry_exc_peer_gone wr_flush"

# ibta15_mode: the client's --ibta15 for an RC run here.  ferrite serves IBTA 1.5's
# ATOMIC_WRITE and FLUSH where its tree knows the capability bits (Linux 6.2 on),
# and so does rxe; rdma-core has ibv_wr_atomic_write from 44 and ibv_wr_flush from
# 45.  Where both hold, the client must run what its libibverbs can post
# ("require"); elsewhere it runs what both sides advertise, and on a ferrite device
# with the verb but not the kernel it checks the refusal ("auto").
ibta15_mode() {
	local k r
	k=$(uname -r | awk -F. '{ print $1 * 100 + $2 }')
	r=$(dpkg-query -W -f '${Version}' libibverbs1 2>/dev/null | cut -d. -f1)
	if [ "$k" -ge 602 ] && [ "${r:-0}" -ge 44 ] 2>/dev/null; then
		echo require
	else
		echo auto
	fi
}

counter() { # counter DEV NAME: one value of rdma statistic
	rdma statistic show link "$1/1" | tr ' ' '\n' | grep -A1 -x "$2" | tail -1
}

t_data_setup() {
	ulimit -l unlimited
	ip link set lo up || return 1
	ip netns add fa && ip netns add fb || return 1
	ip link add v10 type veth peer name v11 || return 1
	ip link set v10 netns fa && ip link set v11 netns fb || return 1
	ip -n fa addr add 203.0.113.1/24 dev v10 && ip -n fb addr add 203.0.113.2/24 dev v11 &&
		ip -n fa addr add 2001:db8:1::1/64 dev v10 nodad &&
		ip -n fb addr add 2001:db8:1::2/64 dev v11 nodad || return 1
	ip -n fa link set lo up && ip -n fb link set lo up &&
		ip -n fa link set v10 up && ip -n fb link set v11 up || return 1
	ip netns exec fa rdma link add fa0 type ferrite netdev v10 &&
		ip netns exec fb rdma link add fb0 type ferrite netdev v11 || return 1
	wait_for 10 gid_index fb0 v6 >/dev/null && wait_for 10 gid_index fa0 v6 >/dev/null
}

t_data_rc_pingpong_loopback() {
	# One device, both ends: the packets never leave the host.
	pair pp_lo "" f0 "" f0 127.0.0.1 ibv_rc_pingpong -n 50
}
t_data_rc_pingpong() { pair pp_rc fa fa0 fb fb0 203.0.113.1 ibv_rc_pingpong -n 100; }
t_data_rc_pingpong_events() { pair pp_rc_e fa fa0 fb fb0 203.0.113.1 ibv_rc_pingpong -n 100 -e; }
t_data_rc_pingpong_large() { pair pp_rc_l fa fa0 fb fb0 203.0.113.1 ibv_rc_pingpong -n 20 -s 65536; }
t_data_uc_pingpong() { pair pp_uc fa fa0 fb fb0 203.0.113.1 ibv_uc_pingpong -n 100; }
t_data_uc_pingpong_events() { pair pp_uc_e fa fa0 fb fb0 203.0.113.1 ibv_uc_pingpong -n 100 -e; }
t_data_rc_pingpong_ipv6() {
	PAIR_V6=v6 pair pp_rc6 fa fa0 fb fb0 203.0.113.1 ibv_rc_pingpong -n 50
}

t_data_testclient_rc() { testclient tc_rc fa fa0 fb fb0 203.0.113.1 --qp rc --quick --ibta15 "$(ibta15_mode)"; }
# UC has no flow control: a message of thousands of packets can overrun a receiver
# that TCG schedules late, and a lost UC message is lost by design.  UC runs stop
# at 1 MiB (1024 packets); RC covers the large sizes.
t_data_testclient_uc() { testclient tc_uc fa fa0 fb fb0 203.0.113.1 --qp uc --quick --max-size 1048576; }
t_data_testclient_rc_ipv6() {
	testclient tc_rc6 fa fa0 fb fb0 2001:db8:1::1 --qp rc --quick --ipv6 --ibta15 "$(ibta15_mode)"
}

t_data_counters() {
	# The traffic above is in the counters; the doorbell is rung far less than once
	# per WQE; nothing was malformed or failed its ICRC.
	local d sent=0 rcvd=0 db=0 wqes=0 icrc=0 bad=0
	for d in fa0 fb0; do
		sent=$((sent + $(counter $d sent_pkts))); rcvd=$((rcvd + $(counter $d rcvd_pkts)))
		db=$((db + $(counter $d doorbells))); wqes=$((wqes + $(counter $d wqes_posted)))
		icrc=$((icrc + $(counter $d icrc_errors))); bad=$((bad + $(counter $d malformed_drops)))
		rdma statistic show link $d/1 | tr -s ' ' > /tmp/stat.$d
		diag_file /tmp/stat.$d
	done
	diag "fa0+fb0: sent $sent rcvd $rcvd doorbells $db wqes $wqes icrc_errors $icrc malformed $bad"
	[ "$sent" -gt 0 ] && [ "$rcvd" -gt 0 ] && [ "$wqes" -gt 0 ] &&
		[ "$db" -le "$wqes" ] && [ "$icrc" = 0 ] && [ "$bad" = 0 ]
}

t_data_testclient_lossy() {
	# 5 % loss, 1 % duplication and reordering on both ends of the veth: every
	# transfer still completes with the exact bytes, and the losses were seen.
	local before after d
	modprobe sch_netem || { diag "no sch_netem"; return 1; }
	before=$(( $(counter fa0 retransmits) + $(counter fb0 retransmits) ))
	for d in "fa v10" "fb v11"; do
		set -- $d
		ip netns exec $1 tc qdisc add dev $2 root netem delay 1ms reorder 90% 50% loss 5% duplicate 1% ||
			{ diag "tc netem on $2 failed"; return 1; }
	done
	testclient tc_lossy fa fa0 fb fb0 203.0.113.1 --qp rc --quick --max-size 1048576 --ibta15 "$(ibta15_mode)"
	local rc=$?
	ip netns exec fa tc qdisc del dev v10 root
	ip netns exec fb tc qdisc del dev v11 root
	after=$(( $(counter fa0 retransmits) + $(counter fb0 retransmits) ))
	diag "retransmits during the lossy run: $((after - before))"
	[ $rc -eq 0 ] && [ $((after - before)) -gt 0 ]
}

t_data_perftest() { perftest_pair "dpt_$1" fa fa0 fb fb0 203.0.113.1 "$@"; }

t_data_teardown() {
	ip netns exec fa rdma link delete fa0 && ip netns exec fb rdma link delete fb0 || return 1
	ip netns del fa && ip netns del fb || return 1
	wait_for 10 ibdev_gone fa0 && wait_for 10 ibdev_gone fb0 &&
		wait_for 10 res_zero f0
}

check data_setup t_data_setup
check data_rc_pingpong_loopback t_data_rc_pingpong_loopback
check data_rc_pingpong t_data_rc_pingpong
check data_rc_pingpong_events t_data_rc_pingpong_events
check data_rc_pingpong_64KiB t_data_rc_pingpong_large
check data_uc_pingpong t_data_uc_pingpong
check data_uc_pingpong_events t_data_uc_pingpong_events
check data_rc_pingpong_ipv6 t_data_rc_pingpong_ipv6
check data_testclient_rc t_data_testclient_rc
check data_testclient_uc t_data_testclient_uc
check data_testclient_rc_ipv6 t_data_testclient_rc_ipv6
check data_counters t_data_counters
check data_testclient_lossy t_data_testclient_lossy
# perftest's own tools, each to its result line.
check data_perftest_ib_send_bw t_data_perftest ib_send_bw 65536 $PERFTEST_BW_ITERS
check data_perftest_ib_write_bw t_data_perftest ib_write_bw 65536 $PERFTEST_BW_ITERS
check data_perftest_ib_read_bw t_data_perftest ib_read_bw 65536 $PERFTEST_BW_ITERS
check data_perftest_ib_atomic_bw t_data_perftest ib_atomic_bw 8 $PERFTEST_BW_ITERS
check data_perftest_ib_send_lat t_data_perftest ib_send_lat 2 $PERFTEST_LAT_ITERS
check data_perftest_ib_write_lat t_data_perftest ib_write_lat 2 $PERFTEST_LAT_ITERS
check data_perftest_ib_read_lat t_data_perftest ib_read_lat 2 $PERFTEST_LAT_ITERS
check data_perftest_ib_atomic_lat t_data_perftest ib_atomic_lat 8 $PERFTEST_LAT_ITERS
# Error completions on both sides, fresh QPs per case (ferrite-testclient errors).
errors_pair derr fa fa0 fb fb0 203.0.113.1
for c in $ERRORS_CASES; do
	check "data_errors_$c" errors_case derr "$c"
done
check data_teardown t_data_teardown
