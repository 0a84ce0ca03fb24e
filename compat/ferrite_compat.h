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
#define FERRITE_COMPAT_ABI 2

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

/* Sleeping mutexes, as opaque handles. */
struct ferrite_k_mutex;
struct ferrite_k_mutex *ferrite_k_mutex_new(void);
void ferrite_k_mutex_free(struct ferrite_k_mutex *m);
void ferrite_k_mutex_lock(struct ferrite_k_mutex *m);
void ferrite_k_mutex_unlock(struct ferrite_k_mutex *m);

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
};

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
			   u32 access, u32 *key);
int ferrite_rs_mr_deregister(const void *dev, u32 key);
u32 ferrite_rs_mr_count(const void *dev);

/* CQ ring geometry for a depth: slots and bytes to allocate and map. */
int ferrite_rs_cq_geometry(const void *dev, u32 depth, u32 *slots,
			   u64 *bytes);
/* Driver part of the create_cq response: FERRITE_CREATE_CQ_RESP_LEN bytes. */
#define FERRITE_CREATE_CQ_RESP_LEN 24
void ferrite_rs_cq_resp(u64 mmap_offset, u64 mmap_len, u32 slots, u8 *out);

#endif /* FERRITE_COMPAT_H */
