/* SPDX-License-Identifier: GPL-2.0 */
/*
 * uverbs.h - ferrite's userspace-facing objects and verbs (uverbs.c).
 */
#ifndef FERRITE_UVERBS_H
#define FERRITE_UVERBS_H

#include <linux/etherdevice.h>
#include <linux/skbuff.h>
#include <linux/spinlock.h>
#include <linux/timer.h>
#include <linux/workqueue.h>
#include <rdma/ib_verbs.h>

struct ferrite_ucontext {
	struct ib_ucontext ibuc;
};

struct ferrite_cq {
	struct ib_cq ibcq;
	struct rdma_user_mmap_entry *mentry;	/* publishes ->ring */
	void *ring;				/* abi/src/cq.rs layout */
	u32 slots;
	spinlock_t lock;			/* guards notify */
	u8 notify;				/* armed IB_CQ_* flags */
};

struct ferrite_mr {
	struct ib_mr ibmr;
	struct ib_umem *umem;
	struct page **pages;		/* the pinned pages, in order */
	u32 npages;
	u32 page_offset;		/* of the first byte in pages[0] */
	atomic_t users;			/* data-path references (qp.c) */
};

/* A queue pair: the work item and timer that run it, its rings, its packets. */
struct ferrite_qp {
	struct ib_qp ibqp;
	void *rs;				/* Rust QP handle */
	struct ferrite_dev *fdev;
	struct work_struct work;
	struct timer_list timer;
	u64 deadline;				/* armed timer, ktime ns; 0 none */
	struct sk_buff_head rxq;		/* packets for the work item */
	struct rdma_user_mmap_entry *sq_entry, *rq_entry;
	void *sq_ring, *rq_ring;
	struct ib_qp_cap cap;
	enum ib_sig_type sq_sig_type;
	u8 dmac[ETH_ALEN];
	bool dying;				/* destroy has begun */
};

static inline struct ferrite_cq *to_fcq(struct ib_cq *ibcq)
{
	return container_of(ibcq, struct ferrite_cq, ibcq);
}

static inline struct ferrite_mr *to_fmr(struct ib_mr *ibmr)
{
	return container_of(ibmr, struct ferrite_mr, ibmr);
}

static inline struct ferrite_qp *to_fqp(struct ib_qp *ibqp)
{
	return container_of(ibqp, struct ferrite_qp, ibqp);
}

struct rdma_user_mmap_entry *
ferrite_ring_publish(struct ib_ucontext *uctx, size_t bytes, void **buf,
		     u64 *offset);

/* qp.c */
#ifdef HAVE_CORE_ALLOCATED_QP
int ferrite_create_qp(struct ib_qp *ibqp, struct ib_qp_init_attr *init,
		      struct ib_udata *udata);
#else
struct ib_qp *ferrite_create_qp(struct ib_pd *pd,
				struct ib_qp_init_attr *init,
				struct ib_udata *udata);
#endif
int ferrite_destroy_qp(struct ib_qp *ibqp, struct ib_udata *udata);
int ferrite_modify_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		      struct ib_udata *udata);
int ferrite_query_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		     struct ib_qp_init_attr *init);
int ferrite_post_send(struct ib_qp *ibqp, const struct ib_send_wr *wr,
		      const struct ib_send_wr **bad_wr);
int ferrite_post_recv(struct ib_qp *ibqp, const struct ib_recv_wr *wr,
		      const struct ib_recv_wr **bad_wr);
void ferrite_qp_rx(struct ferrite_dev *fdev, struct sk_buff *skb, bool now);
int ferrite_mr_pages(struct ferrite_mr *mr, u64 start);

int ferrite_alloc_ucontext(struct ib_ucontext *uctx, struct ib_udata *udata);
void ferrite_dealloc_ucontext(struct ib_ucontext *uctx);
void ferrite_disassociate_ucontext(struct ib_ucontext *uctx);
int ferrite_mmap(struct ib_ucontext *uctx, struct vm_area_struct *vma);
void ferrite_mmap_free(struct rdma_user_mmap_entry *e);
#ifdef HAVE_CREATE_CQ_ATTRS
int ferrite_create_cq(struct ib_cq *ibcq, const struct ib_cq_init_attr *attr,
		      struct uverbs_attr_bundle *attrs);
#else
int ferrite_create_cq(struct ib_cq *ibcq, const struct ib_cq_init_attr *attr,
		      struct ib_udata *udata);
#endif
int ferrite_destroy_cq(struct ib_cq *ibcq, struct ib_udata *udata);
int ferrite_poll_cq(struct ib_cq *ibcq, int num_entries, struct ib_wc *wc);
int ferrite_req_notify_cq(struct ib_cq *ibcq, enum ib_cq_notify_flags flags);
#ifdef HAVE_REG_USER_MR_DMAH
struct ib_mr *ferrite_reg_user_mr(struct ib_pd *pd, u64 start, u64 length,
				  u64 iova, int access, struct ib_dmah *dmah,
				  struct ib_udata *udata);
#else
struct ib_mr *ferrite_reg_user_mr(struct ib_pd *pd, u64 start, u64 length,
				  u64 iova, int access, struct ib_udata *udata);
#endif
int ferrite_dereg_mr(struct ib_mr *ibmr, struct ib_udata *udata);
void ferrite_set_uverbs_cmds(struct ib_device *ibdev);
void ferrite_uverbs_report_leaks(void);

#endif /* FERRITE_UVERBS_H */
