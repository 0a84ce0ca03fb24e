# Malformed and forged packets at a ferrite device (sourced by boot-test.sh, after
# data.sh, whose nsx, gid_index, listening, testclient, ibta15_mode and diag_file
# it uses; data.sh's own namespaces are gone by then).
#
# Two devices, ma0 and mb0, on a veth pair between namespaces ma and mb.  Between
# them run two connections:
# - rc-hold (tests/guest/rc-hold.c): QP a on ma0 and QP b on mb0, idle between
#   rounds of checked traffic; it tells the QPN and PSNs of a, and after each case
#   whether a received or completed anything it should not have;
# - ferrite-testclient, run again and again until the cases are over, every byte of
#   every message checked.
# Each case runs rocegen (tests/guest/rocegen.c) in mb: packets to ma0's address,
# from mb0's (the peer of QP a), aimed at QP a and its PSNs.  A case passes when
# the drop counter for it rose by exactly the number of packets sent and no other
# drop counter moved, QP a and b are still connected and clean, a round of traffic
# between them is byte-exact, no QP of ma0 or mb0 is in error, ferrite is loaded and
# dmesg has nothing new of the kinds SPLAT names.  At the end every testclient run
# must have passed.

MF_ROCEGEN=/ferrite/rocegen
MF_N=3 # each kind of packet, this many times
MF_DST=203.0.113.1
MF_DST6=2001:db8:1::1
# The drop counters of ma0 each case looks at.
MF_DROPS="icrc_errors malformed_drops unknown_opcode_drops unknown_qp_drops rx_overflow_drops
stray_responses out_of_sequence duplicate_requests seq_naks_sent"
# Those the testclient's own traffic may move: a retransmission (the guest is
# slow) makes duplicates, packets out of sequence and sequence NAKs; a late packet
# for a QP it just destroyed, between two runs, is for an unknown QPN.  While it
# does either, those counters are checked as "at least".
MF_NOISY_RETRY=" out_of_sequence duplicate_requests seq_naks_sent "
MF_NOISY_RUNS=" unknown_qp_drops "
MF_BESIDE=/tmp/mf.beside
MF_READY="" MF_PID="" MF_BESIDE_PID=""

t_mf_setup() {
	local ga gb line
	ip netns add ma && ip netns add mb || return 1
	ip link add v40 type veth peer name v41 || return 1
	ip link set v40 netns ma && ip link set v41 netns mb || return 1
	ip -n ma addr add $MF_DST/24 dev v40 && ip -n mb addr add 203.0.113.2/24 dev v41 &&
		ip -n ma addr add $MF_DST6/64 dev v40 nodad &&
		ip -n mb addr add 2001:db8:1::2/64 dev v41 nodad || return 1
	ip -n ma link set lo up && ip -n mb link set lo up &&
		ip -n ma link set v40 up && ip -n mb link set v41 up || return 1
	ip netns exec ma rdma link add ma0 type ferrite netdev v40 &&
		ip netns exec mb rdma link add mb0 type ferrite netdev v41 || return 1
	wait_for 10 gid_index ma0 v6 >/dev/null && wait_for 10 gid_index mb0 v6 >/dev/null || return 1
	ga=$(gid_index ma0) && gb=$(gid_index mb0) || { diag "no IPv4 RoCE v2 GIDs"; return 1; }
	# The held connection: its answers come back on MF_IN, commands go to MF_OUT.
	coproc MFH { exec ip netns exec ma /ferrite/rc-hold ma0 "$ga" mb0 "$gb" 2>/tmp/mf.hold.err; }
	MF_PID=$MFH_PID
	# Copies that outlive the coproc's variables; the originals closed, so that
	# closing MF_OUT is rc-hold's end of input.
	exec {MF_IN}<&"${MFH[0]}" {MF_OUT}>&"${MFH[1]}"
	eval "exec ${MFH[0]}<&- ${MFH[1]}>&-"
	read -t $((30 * TIMEOUT_SCALE)) -r line <&$MF_IN
	diag "rc-hold: $line"
	set -- $line
	[ "${1:-}:${2:-}" = qp:a ] && [ $# -eq 7 ] || { diag_file /tmp/mf.hold.err; return 1; }
	MF_RKEY=$6 MF_VA=$7
	read -t $((30 * TIMEOUT_SCALE)) -r line <&$MF_IN
	[ "$line" = ready ] && mf_round || return 1
	# The connection beside: testclient runs until the cases are over.
	rm -f /tmp/mf.stop $MF_BESIDE /tmp/mf_tc*
	mf_beside_loop &
	MF_BESIDE_PID=$!
	# It is moving data before the first case.
	wait_for 60 mf_beside_flowing || { diag "testclient: no traffic"; diag_file /tmp/mf_tc1.cli; return 1; }
	MF_READY=1
}

# mf_beside_loop: ferrite-testclient's RC matrix over ma0 and mb0, again and again
# until /tmp/mf.stop exists; a "start K" and a "pass K" or "fail K" line each.
mf_beside_loop() {
	local k=0
	exec {MF_IN}<&- {MF_OUT}>&-
	while [ ! -e /tmp/mf.stop ]; do
		k=$((k + 1))
		echo "start $k" >> $MF_BESIDE
		if testclient mf_tc$k ma ma0 mb mb0 $MF_DST --qp rc --quick --max-size 1048576 \
			--ibta15 "$(ibta15_mode)" > /dev/null 2>&1; then
			echo "pass $k" >> $MF_BESIDE
		else
			echo "fail $k" >> $MF_BESIDE
		fi
	done
}
mf_beside_flowing() {
	local n
	n=$(grep -c '^ok ' /tmp/mf_tc1.cli 2>/dev/null)
	[ "${n:-0}" -ge 2 ]
}
mf_beside_events() { cat $MF_BESIDE 2>/dev/null | wc -l; }
# mf_retransmits FILE: retransmissions of ma0 and mb0 in a snapshot.
mf_retransmits() { echo $(( $(mf_get "$1" retransmits) + $(mf_get "$1" retransmits mb0) )); }

# mf_ask CMD: send CMD to rc-hold; its answer in MF_REPLY; 0 if it says ok.
mf_ask() {
	MF_REPLY=""
	[ -n "$MF_PID" ] && kill -0 "$MF_PID" 2>/dev/null || { diag "rc-hold is not running"; return 1; }
	echo "$1" >&$MF_OUT
	read -t $((60 * TIMEOUT_SCALE)) -r MF_REPLY <&$MF_IN
	case "$MF_REPLY" in
	"$1 ok"*|"$1 "[0-9]*" ok") return 0 ;;
	esac
	diag "rc-hold $1: ${MF_REPLY:-no answer}"
	return 1
}

# mf_state: QP a and b are in RTS and nothing reached them since the last round;
# sets MF_QPN, MF_EPSN (a's expected PSN) and MF_SQPSN (a's next PSN to send).
mf_state() {
	mf_ask state || return 1
	set -- $MF_REPLY
	MF_QPN=$4 MF_EPSN=$5 MF_SQPSN=$6
}
mf_round() { mf_ask round; }

# mf_snap FILE: the counters of ma0 and mb0, as "DEV NAME VALUE" lines; a case
# takes few of these (each rdma call is slow in the guest).
mf_snap() {
	{ rdma statistic show link ma0/1; rdma statistic show link mb0/1; } |
		awk '{ for (i = 1; i <= NF; i++) t[n++] = $i }
		     END { for (i = 0; i + 1 < n; i += 2) {
				if (t[i] == "link") { d = t[i + 1]; sub("/.*", "", d) }
				else print d, t[i], t[i + 1] } }' > "$1"
}
# mf_get FILE NAME [DEV]: one counter of DEV (ma0) in a snapshot.
mf_get() { awk -v n="$2" -v d="${3:-ma0}" '$1 == d && $2 == n { print $3 }' "$1"; }

# mf_delta COUNTER[+COUNTER...] FILE: how much ma0's COUNTERs (summed) rose from
# /tmp/mf.before to the snapshot FILE.
mf_delta() {
	local c d=0
	for c in ${1//+/ }; do
		d=$((d + $(mf_get "$2" "$c") - $(mf_get /tmp/mf.before "$c")))
	done
	echo $d
}

# mf_reached N EXPECT...: every EXPECT, COUNTER[+COUNTER...]=WANT ("n" for N), has
# risen by WANT since /tmp/mf.before.
mf_reached() {
	local n=$1 e w
	shift
	mf_snap /tmp/mf.now
	for e in "$@"; do
		w=${e#*=}
		[ "$w" = n ] && w=$n
		[ "$(mf_delta "${e%%=*}" /tmp/mf.now)" -ge "$w" ] || return 1
	done
}

# mf_softnet_drops: packets the kernel dropped before any socket saw them (its
# backlog queues were full), on every CPU.
mf_softnet_drops() {
	local n=0 h
	for h in $(awk '{ print $2 }' /proc/net/softnet_stat); do
		n=$((n + 16#$h))
	done
	echo $n
}

bad_qps() { rdma res show qp 2>/dev/null | grep -E 'link m[ab]0/1 .*state (ERR|SQE)'; }

# mf_case "ROCEGEN ARGS" EXPECT...: run rocegen ARGS at QP a (ARGS may add -6 -d
# ADDR, or -n); each EXPECT, COUNTER[+COUNTER...]=WANT, says the COUNTERs of ma0
# (summed) rise by WANT ("n": the number of packets sent), and every other of
# MF_DROPS by nothing.
mf_case() {
	local args=$1 out sent c cs d w e how splat events rt lost noisy="" named=" " rc=0
	shift
	[ -n "$MF_READY" ] || { diag "no set-up"; return 1; }
	mf_state || return 1
	mf_snap /tmp/mf.before
	splat=$(dmesg | grep -cE "$SPLAT")
	events=$(mf_beside_events)
	rt=$(mf_retransmits /tmp/mf.before)
	lost=$(mf_softnet_drops)
	out=$(ip netns exec mb $MF_ROCEGEN -d $MF_DST -S 203.0.113.9 -q "$MF_QPN" -p "$MF_EPSN" \
		-P "$MF_SQPSN" -r "$MF_RKEY" -v "$MF_VA" -n $MF_N $args 2>&1)
	sent=${out#sent }
	if ! [ "$sent" -gt 0 ] 2>/dev/null; then
		diag "rocegen $args: $out"
		return 1
	fi
	wait_for 20 mf_reached "$sent" "$@" || { diag "the drops were not all counted in 20 s"; rc=1; }
	# Whatever else is still on its way shows as a counter moving too.
	sleep 0.5
	mf_snap /tmp/mf.after
	# A change of testclient run also moves the PSN counters (seen with two guests on
	# the machine: duplicates and packets out of sequence without a retransmission
	# counted on either device, while the runs changed).
	[ "$(mf_beside_events)" = "$events" ] || noisy="$MF_NOISY_RUNS$MF_NOISY_RETRY"
	[ "$(mf_retransmits /tmp/mf.after)" = "$rt" ] || noisy="$noisy$MF_NOISY_RETRY"
	lost=$(( $(mf_softnet_drops) - lost ))
	[ "$lost" = 0 ] || diag "the kernel dropped $lost packets before ferrite saw them"
	for e in "$@"; do
		cs=${e%%=*} w=${e#*=} how=exact
		named="$named$cs "
		[ "$w" = n ] && w=$sent
		d=$(mf_delta "$cs" /tmp/mf.after)
		for c in ${cs//+/ }; do
			[ "${noisy/ $c /}" = "$noisy" ] || how=least
		done
		if [ $how = exact ]; then
			[ "$d" -le "$w" ] && [ "$d" -ge $((w - lost)) ] || { diag "$cs rose by $d, not $w"; rc=1; }
		else
			[ "$d" -ge $((w - lost)) ] || { diag "$cs rose by $d, less than $w"; rc=1; }
		fi
	done
	named=${named//+/ }
	for c in $MF_DROPS; do
		[ "${named/ $c /}" = "$named" ] || continue
		d=$(mf_delta "$c" /tmp/mf.after)
		[ "$d" = 0 ] || [ "${noisy/ $c /}" != "$noisy" ] || { diag "$c rose by $d, not 0"; rc=1; }
	done
	diag "rocegen $args: sent $sent; ma0 QP $MF_QPN; counted $(for c in $named; do
		printf '%s +%s ' "$c" "$(mf_delta "$c" /tmp/mf.after)"
		done)${noisy:+(at least, for $(echo $noisy): the testclient changed QPs or retransmitted meanwhile)}"
	# QP a took none of it, and the connection still works, byte for byte.
	mf_state || rc=1
	mf_round || rc=1
	ferrite_loaded || { diag "ferrite is not loaded"; rc=1; }
	[ "$(dmesg | grep -cE "$SPLAT")" = "$splat" ] || { diag "$(dmesg | grep -E "$SPLAT" | tail -5)"; rc=1; }
	out=$(bad_qps)
	[ -z "$out" ] || { diag "QPs in error: $out"; rc=1; }
	return $rc
}

# Headers cut short: UDP payloads of 1 to 15 bytes; a RETH, a READ's RETH and an
# AtomicETH missing bytes (with a correct ICRC).
t_mf_short() { mf_case short malformed_drops=n; }
t_mf_reth_cut() { mf_case reth_cut malformed_drops=n; }
# Opcodes ferrite does not know (reserved RC codes, RD, CNP, 0xc0, 0xff): dropped
# before anything after the BTH is read.
t_mf_opcode() { mf_case opcode unknown_opcode_drops=n; }
# Valid packets for QPNs no QP has (0, 1, 2, 16, 0xfffff0, 0xffffff), half of them
# with TOS and TTL the ICRC does not cover: not ICRC errors.
t_mf_qpn() { mf_case qpn unknown_qp_drops=n; }
# To QP a at the PSN it expects, the ICRC not matching: a flipped bit in the ICRC,
# the payload, the IP identification; an ICRC made for another QPN.
t_mf_icrc() { mf_case icrc icrc_errors=n; }
# PadCnt larger than the bytes after the headers; pad on an ACK and a READ request,
# which carry no payload (ferrite took those before this test).
t_mf_pad() { mf_case pad malformed_drops=n; }
# Payload on an ACK and a READ request; a UDP length shorter than the IP payload
# (the kernel trims the datagram to it).
t_mf_length() { mf_case length malformed_drops=n; }
# BTH transport version 1; an IPv4 header with options.
t_mf_header() { mf_case header malformed_drops=n; }
# Valid and at QP a's PSN, but not from its peer: from another address, UC to an
# RC QP, another P_Key.
t_mf_foreign() { mf_case foreign malformed_drops=n; }
# Requests ahead of the PSN QP a expects (1, 2, 1000, 2^22 and 2^23-1 ahead, and an
# RDMA WRITE with a's real key): out of sequence, one sequence NAK (which b, having
# sent nothing there, drops), nothing executed.
t_mf_psn_ahead() { mf_case psn_ahead out_of_sequence=n seq_naks_sent=1; }
# Requests behind it (1, 1000 and 2^23 behind; a WRITE with the real key, a READ and
# a FETCH_ADD with nothing to replay): duplicates, re-ACKed, nothing executed.
t_mf_psn_behind() { mf_case psn_behind duplicate_requests=n; }
# Responses (ACKs, a READ response, an atomic ACK) for PSNs QP a never sent.
t_mf_response() { mf_case response stray_responses=n; }
# 6000 requests ahead of the PSN, as fast as rocegen sends them: QP a sees each one
# (out of sequence) unless its receive queue (4096) is full, which drops and counts
# it.  Nothing is lost uncounted; the connections go on.
t_mf_flood() { mf_case "-n 6000 flood" out_of_sequence+rx_overflow_drops=n seq_naks_sent=1; }
# Over IPv6: valid packets for QPNs no QP has, and ICRCs not matching.
t_mf_ipv6_qpn() { mf_case "-6 -d $MF_DST6 qpn" unknown_qp_drops=n; }
t_mf_ipv6_icrc() { mf_case "-6 -d $MF_DST6 icrc" icrc_errors=n; }

t_mf_beside_connection() {
	# The testclient runs beside the cases ended, every one of them passed; rc-hold
	# exits 0 (every answer was ok).
	local rc=0 runs k
	[ -n "$MF_READY" ] || return 1
	mf_beside_stop || rc=1
	runs=$(grep -c '^start' $MF_BESIDE)
	diag "testclient: $runs runs beside the cases: $(tr '\n' ' ' < $MF_BESIDE)"
	[ "$runs" -ge 1 ] && [ "$(grep -c '^pass' $MF_BESIDE)" = "$runs" ] || {
		rc=1
		for k in $(sed -n 's/^fail //p' $MF_BESIDE); do
			diag "run $k:"; grep -h '^not ok' /tmp/mf_tc$k.cli /tmp/mf_tc$k.srv > /tmp/mf.bad
			diag_file /tmp/mf.bad 10; diag_file /tmp/mf_tc$k.cli 5
		done
	}
	for k in $(seq 1 "$runs"); do
		diag "run $k: $(tail -1 /tmp/mf_tc$k.cli 2>/dev/null)"
	done
	mf_state && mf_round || rc=1
	exec {MF_OUT}>&-
	wait_for 30 exited "$MF_PID" || { diag "rc-hold does not end"; kill "$MF_PID"; rc=1; }
	wait "$MF_PID" || { diag "rc-hold failed"; diag_file /tmp/mf.hold.err; rc=1; }
	exec {MF_IN}<&-
	MF_READY="" MF_PID=""
	return $rc
}

# mf_beside_stop: the testclient loop ends after the run under way.
mf_beside_stop() {
	touch /tmp/mf.stop
	[ -n "$MF_BESIDE_PID" ] || return 0
	local rc=0
	wait_for 300 exited "$MF_BESIDE_PID" ||
		{ diag "the testclient loop does not end"; kill "$MF_BESIDE_PID"; rc=1; }
	wait "$MF_BESIDE_PID" 2>/dev/null
	MF_BESIDE_PID=""
	return $rc
}

t_mf_teardown() {
	# After a failed set-up or check, whatever still runs goes first.
	mf_beside_stop
	[ -z "$MF_PID" ] || ! kill -0 "$MF_PID" 2>/dev/null || { kill "$MF_PID"; wait "$MF_PID"; }
	ip netns exec ma rdma link delete ma0 && ip netns exec mb rdma link delete mb0 || return 1
	ip netns del ma && ip netns del mb || return 1
	wait_for 10 ibdev_gone ma0 && wait_for 10 ibdev_gone mb0
}

check data_malformed_setup t_mf_setup
check data_malformed_short t_mf_short
check data_malformed_reth_cut t_mf_reth_cut
check data_malformed_opcode t_mf_opcode
check data_malformed_qpn t_mf_qpn
check data_malformed_icrc t_mf_icrc
check data_malformed_pad t_mf_pad
check data_malformed_length t_mf_length
check data_malformed_header t_mf_header
check data_malformed_foreign t_mf_foreign
check data_malformed_psn_ahead t_mf_psn_ahead
check data_malformed_psn_behind t_mf_psn_behind
check data_malformed_response t_mf_response
check data_malformed_flood t_mf_flood
check data_malformed_ipv6_qpn t_mf_ipv6_qpn
check data_malformed_ipv6_icrc t_mf_ipv6_icrc
check data_malformed_beside_connection t_mf_beside_connection
check data_malformed_teardown t_mf_teardown
