/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * ferrite_compat.h - the one interface between ferrite's Rust code and the C
 * compat layer.
 *
 * Everything here has the same shape on every kernel tree: fixed-width types,
 * opaque handles, no kernel structure.  bindgen turns this file into Rust
 * declarations when the Rust object is built (once, for all targets); the C
 * side implements the "ferrite_k_*" services for each tree and calls the
 * "ferrite_rs_*" entry points that Rust exports.
 *
 * Errors are negative errno values, as in the kernel.
 */
#ifndef FERRITE_COMPAT_H
#define FERRITE_COMPAT_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
/* bindgen's view: no libc headers, which a bare-metal target does not have. */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef __SIZE_TYPE__ size_t;
#endif

/* Bumped whenever anything below changes shape. */
#define FERRITE_COMPAT_ABI 5

/* ---- kernel services for Rust (implemented in C: ferrite_kernel.c) ---- */

/* Log levels, as the kernel's printk levels. */
#define FERRITE_LOG_ERR 3
#define FERRITE_LOG_WARNING 4
#define FERRITE_LOG_INFO 6
#define FERRITE_LOG_DEBUG 7

/* Memory: sleeping allocation (GFP_KERNEL); NULL when out of memory. */
void *ferrite_k_alloc(size_t size, size_t align);
void ferrite_k_free(void *ptr);

/* Print `len` bytes of UTF-8 at `level`, prefixed with the module name. */
void ferrite_k_log(int level, const u8 *msg, size_t len);

/*
 * A bug in ferrite's Rust code: print, then BUG().  It never returns, but is
 * not declared noreturn: the Rust caller follows the call with ud2 itself, so
 * that objtool, which knows nothing of this function, sees the path end.
 */
void ferrite_k_bug(const u8 *msg, size_t len);

/*
 * Locks, as opaque handles.  Each kind of lock is its own lockdep class, so
 * that lockdep checks the order between kinds (a QP's lock, then the device's
 * MR table) instead of seeing one lock taken twice.
 *
 * A mutex sleeps.  A spin lock is taken with bottom halves off, because the
 * receive softirq runs QPs too: it guards what the data path touches (a QP's
 * engine, the MR table), and nothing that sleeps may run under it.
 */
#define FERRITE_LOCK_QP 0
#define FERRITE_LOCK_MRS 1
#define FERRITE_LOCK_REGISTRY 2
#define FERRITE_LOCK_CLASSES 3
struct ferrite_k_mutex;
struct ferrite_k_mutex *ferrite_k_mutex_new(u32 lock_class);
void ferrite_k_mutex_free(struct ferrite_k_mutex *m);
void ferrite_k_mutex_lock(struct ferrite_k_mutex *m);
void ferrite_k_mutex_unlock(struct ferrite_k_mutex *m);
struct ferrite_k_spin;
struct ferrite_k_spin *ferrite_k_spin_new(u32 lock_class);
void ferrite_k_spin_free(struct ferrite_k_spin *s);
void ferrite_k_spin_lock(struct ferrite_k_spin *s);
void ferrite_k_spin_unlock(struct ferrite_k_spin *s);

/* Monotonic time (ktime_get_ns) and the kernel's crc32_le (for the ICRC). */
u64 ferrite_k_now_ns(void);
u32 ferrite_k_crc32_le(u32 seed, const u8 *data, size_t len);

/* ---- the data path: services for the engine (implemented in C: qp.c, net.c) ---- */

/*
 * `qp` below is the C side's QP cookie, handed to Rust at creation; `mr` is the
 * cookie of a memory region, handed to Rust at registration.
 */

/* A packet buffer of `len` bytes (transport headers to ICRC) with room for IP and
 * UDP in front; *data points at its first byte.  NULL when memory is short.
 */
void *ferrite_k_tx_alloc(void *qp, u32 len, u8 **data);
void ferrite_k_tx_free(void *skb);

/* Where a QP's packets go (resolved by Rust from the QP's address vector). */
struct ferrite_path {
	u8 sip[16];		/* IPv4: the last four bytes (IPv4-mapped GID) */
	u8 dip[16];
	u32 flow_label;
	u16 sport;		/* UDP source port */
	u8 v6;
	u8 traffic_class;
	u8 hop_limit;
	u8 pad[3];
};

/* Route and send a filled buffer (consumed, also on error).  The C side adds UDP
 * and IP and calls ferrite_rs_icrc_fill() on the finished datagram.
 */
int ferrite_k_tx_send(void *qp, void *skb, const struct ferrite_path *path);

/* Memory regions: references, copies at a byte offset from the region's first
 * byte (the range was checked by Rust), and 8-byte atomics on aligned bytes:
 * compare-and-swap (a compare, b swap), fetch-and-add (a), and IBTA 1.5's
 * ATOMIC WRITE, a release store of a (returns 0).
 */
void ferrite_k_mr_get(void *mr);
void ferrite_k_mr_put(void *mr);
void ferrite_k_mr_copy(void *mr, u64 offset, u8 *buf, u32 len, u8 to_mr);
#define FERRITE_ATOMIC_CMP_SWAP 0
#define FERRITE_ATOMIC_FETCH_ADD 1
#define FERRITE_ATOMIC_WRITE 2
u64 ferrite_k_mr_atomic(void *mr, u64 offset, u32 op, u64 a, u64 b);
/* FLUSH: make what was placed in `len` bytes at `offset` globally visible. */
void ferrite_k_mr_flush(void *mr, u64 offset, u64 len);

/* Post a completion (FERRITE_CQE_LEN bytes, abi/src/cq.rs Cqe) to the QP's send
 * or receive CQ.
 */
#define FERRITE_CQE_LEN 64
void ferrite_k_cq_post(void *qp, u8 recv, const u8 *cqe, u8 solicited);

/* An asynchronous QP event. */
#define FERRITE_QP_EVENT_FATAL 1
#define FERRITE_QP_EVENT_COMM_EST 2
#define FERRITE_QP_EVENT_SQ_DRAINED 3
#define FERRITE_QP_EVENT_ACCESS_ERR 4
#define FERRITE_QP_EVENT_REQ_ERR 5
void ferrite_k_qp_event(void *qp, u32 event);

/* Run the QP again at `deadline_ns` (ferrite_k_now_ns time); 0 cancels. */
void ferrite_k_qp_timer(void *qp, u64 deadline_ns);

/*
 * The oldest packet queued for the QP, or NULL: its datagram (from the IP
 * header) is `*ip`, `*len` bytes, until ferrite_k_rx_free(returned).
 */
void *ferrite_k_qp_rx_next(void *qp, const u8 **ip, u32 *len);
void ferrite_k_rx_free(void *skb);

/* ---- data handed between C and Rust ---- */

/* ARPHRD_ETHER, the only link type ferrite binds to. */
#define FERRITE_ARPHRD_ETHER 1

/* What Rust needs to know of a net_device when a device is made. */
struct ferrite_netdev_info {
	u64 key;		/* identity of the net_device while it exists */
	u32 ifindex;
	u32 mtu;
	u16 type;		/* ARPHRD_* */
	u8 addr_len;
	u8 pad;
	u8 addr[32];		/* hardware address, addr_len bytes used */
};

/* The live state of a net_device, read for each query_port. */
struct ferrite_netdev_state {
	u32 mtu;
	u8 running;		/* netif_running() */
	u8 carrier;		/* netif_carrier_ok() */
	u8 pad[2];
};

/* Device attributes; the C side copies them into struct ib_device_attr. */
struct ferrite_dev_attr {
	u64 fw_ver;
	u64 node_guid;		/* big-endian byte order, as the wire has it */
	u64 sys_image_guid;	/* big-endian byte order */
	u64 max_mr_size;
	u64 page_size_cap;
	u32 vendor_id;
	u32 vendor_part_id;
	u32 hw_ver;
	u32 max_qp;
	u32 max_qp_wr;
	u32 max_send_sge;
	u32 max_recv_sge;
	u32 max_sge_rd;
	u32 max_cq;
	u32 max_cqe;
	u32 max_mr;
	u32 max_pd;
	u32 max_qp_rd_atom;
	u32 max_qp_init_rd_atom;
	u32 max_res_rd_atom;
	u32 max_srq;
	u32 max_srq_wr;
	u32 max_srq_sge;
	u32 max_ah;
	u32 max_mcast_grp;
	u32 max_mcast_qp_attach;
	u32 max_total_mcast_qp_attach;
	u32 max_fast_reg_page_list_len;
	u16 max_pkeys;
	u8 local_ca_ack_delay;
	u8 pad;
	u32 cap_flags;		/* FERRITE_DEV_CAP_* */
	u32 reserved;
};

/* What the device offers beyond the basic verbs.  The C side sets the tree's
 * ib_device_attr bit for each only where the tree's headers know it.
 */
#define FERRITE_DEV_CAP_ATOMIC_WRITE (1 << 0)	/* IB_DEVICE_ATOMIC_WRITE */
#define FERRITE_DEV_CAP_FLUSH_GLOBAL (1 << 1)	/* IB_DEVICE_FLUSH_GLOBAL */

/* IB port states and physical states, as in ib_verbs.h. */
#define FERRITE_PORT_DOWN 1
#define FERRITE_PORT_ACTIVE 4
#define FERRITE_PHYS_DISABLED 3
#define FERRITE_PHYS_LINK_UP 5

/* Port attributes; the C side copies them into struct ib_port_attr. */
struct ferrite_port_attr {
	u32 gid_tbl_len;
	u32 max_msg_sz;
	u16 pkey_tbl_len;
	u8 state;		/* FERRITE_PORT_* */
	u8 phys_state;		/* FERRITE_PHYS_* */
	u8 max_mtu;		/* enum ib_mtu: 1 = 256 ... 5 = 4096 */
	u8 active_mtu;
	u8 pad[2];
};

/* ---- Rust entry points (implemented in Rust: kmod/src/ffi.rs) ---- */

/* Module-wide set-up and tear-down. */
int ferrite_rs_init(void);
void ferrite_rs_exit(void);

/* Make the Rust half of a device bound to a net_device; *out gets a handle. */
int ferrite_rs_dev_create(const struct ferrite_netdev_info *ndev, void **out);
/* Free it.  Every PD of the device must be gone. */
void ferrite_rs_dev_destroy(void *dev);

void ferrite_rs_dev_query(const void *dev, struct ferrite_dev_attr *out);
void ferrite_rs_port_query(const void *dev,
			   const struct ferrite_netdev_state *st,
			   struct ferrite_port_attr *out);

int ferrite_rs_pd_alloc(const void *dev);
void ferrite_rs_pd_free(const void *dev);

/* ---- user verbs (the provider's side of the ABI is in abi/, in Rust) ---- */

/* The device's uverbs_abi_ver; Rust asserts it is abi::UVERBS_ABI_VERSION. */
#define FERRITE_UVERBS_ABI_VERSION 1

/* Driver part of the alloc_ucontext response (RESP_LEN bytes). */
#define FERRITE_UCONTEXT_RESP_LEN 16
void ferrite_rs_ucontext_resp(u8 *out);

/* Memory regions: check before pinning; register the pinned region. */
int ferrite_rs_mr_check(const void *dev, u64 length, u32 access);
int ferrite_rs_mr_register(const void *dev, u64 start, u64 length, u64 iova,
			   u32 access, u64 pd, void *mr, u32 *key);
int ferrite_rs_mr_deregister(const void *dev, u32 key);
u32 ferrite_rs_mr_count(const void *dev);

/* CQ ring geometry for a depth: slots and bytes to allocate and map. */
int ferrite_rs_cq_geometry(const void *dev, u32 depth, u32 *slots,
			   u64 *bytes);
/* Driver part of the create_cq response: FERRITE_CREATE_CQ_RESP_LEN bytes. */
#define FERRITE_CREATE_CQ_RESP_LEN 24
void ferrite_rs_cq_resp(u64 mmap_offset, u64 mmap_len, u32 slots, u8 *out);

/* Append a completion to a CQ ring; the caller holds the CQ's lock.  *armed holds
 * the CQ's IB_CQ_SOLICITED / IB_CQ_NEXT_COMP request; returns 1 when the
 * completion handler is to be called (and disarms), 0 when not, -ENOSPC when the
 * ring is full.
 */
int ferrite_rs_cq_push(void *ring, u32 slots, const u8 *cqe, u8 solicited,
		       u8 *armed);

/* ---- queue pairs ---- */

#define FERRITE_QPT_RC 2	/* enum ib_qp_type */
#define FERRITE_QPT_UC 3

/* What create_qp asks for; Rust rounds the caps up to what the QP really has. */
struct ferrite_qp_init {
	u32 qp_type;		/* FERRITE_QPT_* */
	u32 max_send_wr;
	u32 max_recv_wr;
	u32 max_send_sge;
	u32 max_recv_sge;
	u32 max_inline_data;
	u64 sq_bytes;		/* out: ring sizes to allocate and map */
	u64 rq_bytes;
	u8 sq_sig_all;
	u8 pad[7];
};

/* Check and round the caps of `init`, and size the rings. */
int ferrite_rs_qp_geometry(const void *dev, struct ferrite_qp_init *init);

/* Make the Rust QP on zeroed rings of the sizes geometry gave.  `qp` is the
 * C cookie passed back to every ferrite_k_* call for this QP.
 */
int ferrite_rs_qp_create(const void *dev, const struct ferrite_qp_init *init,
			 u32 qpn, u64 pd, void *sq, void *rq, u8 port_mtu,
			 void *qp, void **out);
void ferrite_rs_qp_destroy(void *rsqp);

/* Driver part of the create_qp response: FERRITE_CREATE_QP_RESP_LEN bytes. */
#define FERRITE_CREATE_QP_RESP_LEN 64
void ferrite_rs_qp_resp(const void *rsqp, u64 sq_offset, u64 sq_len,
			u64 rq_offset, u64 rq_len, u8 *out);

/* The attributes of ib_qp_attr that ferrite uses, GIDs already resolved. */
struct ferrite_qp_attr {
	u32 qkey;
	u32 rq_psn;
	u32 sq_psn;
	u32 dest_qp_num;
	u32 access_flags;
	u32 flow_label;
	u16 pkey_index;
	u8 state;
	u8 cur_state;
	u8 path_mtu;
	u8 path_mig_state;
	u8 port_num;
	u8 timeout;
	u8 retry_cnt;
	u8 rnr_retry;
	u8 min_rnr_timer;
	u8 max_rd_atomic;
	u8 max_dest_rd_atomic;
	u8 sq_draining;
	u8 en_sqd_async_notify;
	u8 sgid_index;
	u8 hop_limit;
	u8 traffic_class;
	u8 pad[6];
	u8 sgid[16];
	u8 dgid[16];
};

u8 ferrite_rs_qp_state(const void *rsqp);
/* 0, 1 when the QP must be run, or a negative errno (nothing changed). */
int ferrite_rs_qp_modify(void *rsqp, const struct ferrite_qp_attr *attr,
			 u32 mask);
void ferrite_rs_qp_query(const void *rsqp, struct ferrite_qp_attr *out);

/* A doorbell from the provider. */
void ferrite_rs_qp_doorbell(void *rsqp);
/*
 * One round under the QP's lock: up to `rx_budget` queued packets, taken with
 * ferrite_k_qp_rx_next, then up to `tx_budget` packets of the QP's own work.
 * 1 when its own work is left over.
 */
int ferrite_rs_qp_round(void *rsqp, u32 rx_budget, u32 tx_budget);
/*
 * 1 when a packet the receive softirq just queued for the QP is to wait for
 * its work item, 0 when the softirq is to run the round at once; `kind` is
 * what ferrite_rs_rx_classify() returned for it.  Taken without the QP's lock:
 * it is what the QP's last round decided.
 */
int ferrite_rs_qp_rx_defer(const void *rsqp, int kind);

/* ---- packets ---- */

/* A datagram arrived for `dev` (from its IP header): checks it (lengths, opcode,
 * ICRC) and gives its destination QPN.  0 for a request, 1 for a response, or
 * a negative errno: drop it (counted).
 */
int ferrite_rs_rx_classify(const void *dev, const u8 *ip, u32 len, u32 *qpn);
/* A classified datagram that the receive path could not queue, and why: Rust
 * counts it (softirq context, like ferrite_rs_rx_classify).
 */
#define FERRITE_RX_DROP_NO_QP 1		/* no QP with that QPN, or a dying one */
#define FERRITE_RX_DROP_QUEUE_FULL 2	/* the QP's receive queue is full */
void ferrite_rs_rx_dropped(const void *dev, u32 why);
/* Fill the ICRC of a finished outgoing datagram (from its IP header). */
void ferrite_rs_icrc_fill(u8 *ip, u32 len);

/* Device counters: how many, each one's name (a static NUL-terminated string),
 * and their values.
 */
u32 ferrite_rs_counter_count(void);
const u8 *ferrite_rs_counter_name(u32 i);
void ferrite_rs_counters(const void *dev, u64 *out, u32 n);

#endif /* FERRITE_COMPAT_H */
