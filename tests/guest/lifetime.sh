# Object lifetimes under traffic (sourced by boot-test.sh, after data.sh, whose nsx,
# gid_index, counter and diag_file it uses).
#
# Each check starts a perftest RDMA WRITE stream (ib_write_bw: 128 WRs in flight)
# between two ferrite devices in two namespaces, waits until packets flow, and then
# removes something under it: the processes (kill -9), the RDMA link, the netdev, or
# the whole module.  It asserts that the removal returns, that what was removed is
# gone, that both processes end on their own, and that the devices left behind are
# clean.  On the debug kernel, KASAN, lockdep and kmemleak watch every one of them.

LT_SRV=/tmp/lt.srv
LT_CLI=/tmp/lt.cli

# lt_setup: namespaces la and lb, a veth pair v30/v31 between them, devices la0/lb0;
# and a second pair, v32/v33, for perftest's TCP connection, so that it outlives the
# netdev a check deletes (perftest exchanges its results over it at the end).
lt_setup() {
	ip netns add la && ip netns add lb || return 1
	ip link add v30 type veth peer name v31 || return 1
	ip link add v32 type veth peer name v33 || return 1
	ip link set v30 netns la && ip link set v31 netns lb || return 1
	ip link set v32 netns la && ip link set v33 netns lb || return 1
	ip -n la addr add 198.18.0.1/24 dev v30 && ip -n lb addr add 198.18.0.2/24 dev v31 || return 1
	ip -n la addr add 198.19.0.1/24 dev v32 && ip -n lb addr add 198.19.0.2/24 dev v33 || return 1
	ip -n la link set lo up && ip -n lb link set lo up &&
		ip -n la link set v30 up && ip -n lb link set v31 up &&
		ip -n la link set v32 up && ip -n lb link set v33 up || return 1
	ip netns exec la rdma link add la0 type ferrite netdev v30 &&
		ip netns exec lb rdma link add lb0 type ferrite netdev v31 || return 1
	wait_for 10 gid_index la0 >/dev/null && wait_for 10 gid_index lb0 >/dev/null
}

lt_cleanup() {
	ip netns del la 2>/dev/null
	ip netns del lb 2>/dev/null
	wait_for 10 ibdev_gone la0
	wait_for 10 ibdev_gone lb0
}

proc_gone() { ! kill -0 "$1" 2>/dev/null; }

# lt_stream: ib_write_bw for up to 20 s, server on la0, client on lb0; sets LT_SP and
# LT_CP and returns once the client's device has sent packets for a while.
lt_stream() {
	local sg cg before
	sg=$(gid_index la0) && cg=$(gid_index lb0) || { diag "no RoCE v2 GIDs"; return 1; }
	ip netns exec la timeout $((60 * TIMEOUT_SCALE)) ib_write_bw -F -d la0 -x "$sg" -s 65536 -D 20 > $LT_SRV 2>&1 &
	LT_SP=$!
	wait_for 20 listening la 18515 || { diag "ib_write_bw server does not listen"; kill $LT_SP; return 1; }
	before=$(counter lb0 sent_pkts)
	ip netns exec lb timeout $((60 * TIMEOUT_SCALE)) ib_write_bw -F -d lb0 -x "$cg" -s 65536 -D 20 198.19.0.1 > $LT_CLI 2>&1 &
	LT_CP=$!
	# Traffic flows: the client's device has sent a few hundred packets since.
	wait_for 30 lt_flowing "$before" || {
		diag "no traffic: client:"; diag_file $LT_CLI; diag "server:"; diag_file $LT_SRV
		kill -9 $LT_SP $LT_CP 2>/dev/null
		return 1
	}
}
lt_flowing() { [ $(( $(counter lb0 sent_pkts 2>/dev/null || echo 0) - $1 )) -gt 500 ]; }

# lt_ended [killed]: both perftest processes end within 40 s: by themselves (not
# stopped by their timeout, exit 124), or, with "killed", by the kill -9.
lt_ended() {
	local rs rc
	if ! wait_for 40 proc_gone "$LT_SP" || ! wait_for 40 proc_gone "$LT_CP"; then
		diag "perftest did not end after the removal"
		kill -9 "$LT_SP" "$LT_CP" 2>/dev/null
		return 1
	fi
	wait "$LT_SP" 2>/dev/null
	rs=$?
	wait "$LT_CP" 2>/dev/null
	rc=$?
	diag "perftest exit: server $rs, client $rc"
	if [ "${1:-}" != killed ] && { [ $rs -eq 124 ] || [ $rc -eq 124 ]; }; then
		diag "perftest hung until its timeout stopped it"
		diag "server:"; diag_file $LT_SRV 6; diag "client:"; diag_file $LT_CLI 6
		return 1
	fi
	return 0
}

t_lt_kill9() {
	lt_setup && lt_stream || { lt_cleanup; return 1; }
	kill -9 "$LT_SP" "$LT_CP"
	# ip netns exec forwards nothing: kill its child, ib_write_bw, too.
	pkill -9 -x ib_write_bw
	lt_ended killed || { lt_cleanup; return 1; }
	local ok=0
	wait_for 20 res_zero la0 && wait_for 20 res_zero lb0 ||
		{ diag "left behind: $(rdma res show | grep -E 'la0|lb0')"; ok=1; }
	# The devices still work: a ping-pong across them.
	[ $ok -eq 0 ] && { pair lt_pp la la0 lb lb0 198.18.0.1 ibv_rc_pingpong -n 50 || ok=1; }
	lt_cleanup
	return $ok
}

t_lt_link_delete() {
	lt_setup && lt_stream || { lt_cleanup; return 1; }
	local ok=0
	timeout 60 ip netns exec la rdma link delete la0 || { diag "rdma link delete la0 failed or hung"; ok=1; }
	wait_for 10 ibdev_gone la0 || { diag "la0 still there"; ok=1; }
	lt_ended || ok=1
	# The peer's QP is gone with its process: nothing of it is left on lb0.
	wait_for 20 res_zero lb0 || { diag "left on lb0: $(rdma res show | grep lb0)"; ok=1; }
	lt_cleanup
	return $ok
}

t_lt_netdev_delete() {
	lt_setup && lt_stream || { lt_cleanup; return 1; }
	local ok=0
	# Deleting one end of a veth deletes both: both devices go.
	timeout 60 ip -n la link del v30 || { diag "ip link del v30 failed or hung"; ok=1; }
	wait_for 10 ibdev_gone la0 && wait_for 10 ibdev_gone lb0 || { diag "$(rdma link show)"; ok=1; }
	lt_ended || ok=1
	lt_cleanup
	return $ok
}

t_lt_unload() {
	lt_setup && lt_stream || { lt_cleanup; return 1; }
	local ok=0
	timeout 60 rmmod ferrite || { diag "rmmod ferrite failed or hung"; ok=1; }
	ferrite_unloaded || { diag "ferrite still loaded"; ok=1; }
	ibdev_gone la0 && ibdev_gone lb0 && ibdev_gone f0 || { diag "$(rdma link show)"; ok=1; }
	lt_ended || ok=1
	lt_cleanup
	# What the later checks expect: ferrite loaded, with f0 and f1 on v0 and v1.
	modprobe ferrite && rdma link add f0 type ferrite netdev v0 &&
		rdma link add f1 type ferrite netdev v1 || { diag "cannot restore f0/f1"; ok=1; }
	return $ok
}

check lifetime_kill9_under_traffic t_lt_kill9
check lifetime_link_delete_under_traffic t_lt_link_delete
check lifetime_netdev_delete_under_traffic t_lt_netdev_delete
check lifetime_unload_under_traffic t_lt_unload
