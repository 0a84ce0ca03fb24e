/* SPDX-License-Identifier: GPL-2.0 */
/*
 * uverbs.h - ferrite's userspace-facing objects and verbs (uverbs.c).
 */
#ifndef FERRITE_UVERBS_H
#define FERRITE_UVERBS_H

#include <linux/spinlock.h>
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
};

static inline struct ferrite_cq *to_fcq(struct ib_cq *ibcq)
{
	return container_of(ibcq, struct ferrite_cq, ibcq);
}

static inline struct ferrite_mr *to_fmr(struct ib_mr *ibmr)
{
	return container_of(ibmr, struct ferrite_mr, ibmr);
}

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
