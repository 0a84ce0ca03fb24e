// SPDX-License-Identifier: GPL-2.0
/*
 * uverbs.c - the verbs userspace reaches through ib_uverbs: user contexts,
 * mmap of rings, completion queues and memory regions (QPs are in qp.c).
 *
 * Rust decides (limits, keys, ring geometry, response layouts); this file
 * owns the kernel objects: vmalloc'd rings published through the core's
 * rdma_user_mmap_entry API, and pinned user memory (ib_umem).
 */
#include <linux/atomic.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/wait_bit.h>
#include <rdma/ib_umem.h>
#include <rdma/ib_verbs.h>
#include <rdma/uverbs_ioctl.h>

#include "ferrite.h"
#include "uverbs.h"

/* Live rings and MRs, for the leak report at module unload. */
static atomic_t ferrite_live_rings = ATOMIC_INIT(0);
static atomic_t ferrite_live_mrs = ATOMIC_INIT(0);

void ferrite_uverbs_report_leaks(void)
{
	int rings = atomic_read(&ferrite_live_rings);
	int mrs = atomic_read(&ferrite_live_mrs);

	if (rings || mrs)
		pr_err("ferrite: %d rings and %d MRs leaked at unload\n",
		       rings, mrs);
}

/* A ring shared with userspace: lives until its last mmap reference. */
struct ferrite_mmap_entry {
	struct rdma_user_mmap_entry rdma;
	void *buf;
};

static struct ferrite_mmap_entry *
to_fentry(struct rdma_user_mmap_entry *e)
{
	return container_of(e, struct ferrite_mmap_entry, rdma);
}

int ferrite_alloc_ucontext(struct ib_ucontext *uctx, struct ib_udata *udata)
{
	u8 resp[FERRITE_UCONTEXT_RESP_LEN];

	/* A provider that cannot take ferrite's response speaks another ABI. */
	if (udata->outlen < sizeof(resp)) {
		pr_err("ferrite: user context response needs %zu bytes, provider offers %zu\n",
		       sizeof(resp), udata->outlen);
		return -EINVAL;
	}
	ferrite_rs_ucontext_resp(resp);
	return ib_copy_to_udata(udata, resp, sizeof(resp));
}

void ferrite_dealloc_ucontext(struct ib_ucontext *uctx)
{
}

/*
 * Having this op lets the core remove a device that processes still hold open
 * (rdma link delete, netdev removal, rmmod) instead of waiting for them to close
 * it.  The core itself destroys every object with RDMA_REMOVE_DRIVER_REMOVE,
 * zaps the processes' mappings of ferrite's rings and sends them
 * IB_EVENT_DEVICE_FATAL; ferrite keeps no other per-context hardware state,
 * so there is nothing more to undo here.
 */
void ferrite_disassociate_ucontext(struct ib_ucontext *uctx)
{
}

int ferrite_mmap(struct ib_ucontext *uctx, struct vm_area_struct *vma)
{
	struct rdma_user_mmap_entry *e;
	int err;

	/* NULL unless MAP_SHARED with exactly the published length. */
	e = rdma_user_mmap_entry_get(uctx, vma);
	if (!e)
		return -EINVAL;
	err = remap_vmalloc_range(vma, to_fentry(e)->buf, 0);
	rdma_user_mmap_entry_put(e);
	return err;
}

void ferrite_mmap_free(struct rdma_user_mmap_entry *e)
{
	struct ferrite_mmap_entry *fe = to_fentry(e);

	/* Pages still mapped by a process stay alive through their own refs. */
	vfree(fe->buf);
	kfree(fe);
	atomic_dec(&ferrite_live_rings);
}

/* Allocate a zeroed ring of `bytes` and publish it; *offset is for mmap(). */
struct rdma_user_mmap_entry *
ferrite_ring_publish(struct ib_ucontext *uctx, size_t bytes, void **buf,
		     u64 *offset)
{
	struct ferrite_mmap_entry *fe;
	int err;

	fe = kzalloc(sizeof(*fe), GFP_KERNEL);
	if (!fe)
		return ERR_PTR(-ENOMEM);
	fe->buf = vmalloc_user(bytes);
	if (!fe->buf) {
		kfree(fe);
		return ERR_PTR(-ENOMEM);
	}
	err = rdma_user_mmap_entry_insert(uctx, &fe->rdma, bytes);
	if (err) {
		vfree(fe->buf);
		kfree(fe);
		return ERR_PTR(err);
	}
	atomic_inc(&ferrite_live_rings);
	*buf = fe->buf;
	*offset = rdma_user_mmap_get_offset(&fe->rdma);
	return &fe->rdma;
}

static int ferrite_create_user_cq(struct ib_cq *ibcq,
				  const struct ib_cq_init_attr *attr,
				  struct ib_udata *udata)
{
	struct ferrite_dev *fdev = to_fdev(ibcq->device);
	struct ferrite_cq *cq = to_fcq(ibcq);
	struct ferrite_ucontext *uctx;
	u8 resp[FERRITE_CREATE_CQ_RESP_LEN];
	u64 bytes, offset;
	u32 slots;
	int err;

	/* Only userspace CQs: in-kernel consumers are not offered the device. */
	if (!udata)
		return -EOPNOTSUPP;
	if (attr->flags)
		return -EOPNOTSUPP;
	if (attr->comp_vector >= ibcq->device->num_comp_vectors)
		return -EINVAL;
	err = ferrite_rs_cq_geometry(fdev->rs, attr->cqe, &slots, &bytes);
	if (err)
		return err;
	if (udata->outlen < sizeof(resp))
		return -EINVAL;

	uctx = rdma_udata_to_drv_context(udata, struct ferrite_ucontext, ibuc);
	cq->mentry = ferrite_ring_publish(&uctx->ibuc, bytes, &cq->ring,
					  &offset);
	if (IS_ERR(cq->mentry)) {
		err = PTR_ERR(cq->mentry);
		cq->mentry = NULL;
		return err;
	}
	cq->slots = slots;
	spin_lock_init(&cq->lock);
	ibcq->cqe = slots;

	ferrite_rs_cq_resp(offset, bytes, slots, resp);
	err = ib_copy_to_udata(udata, resp, sizeof(resp));
	if (err) {
		rdma_user_mmap_entry_remove(cq->mentry);
		cq->mentry = NULL;
	}
	return err;
}

#ifdef HAVE_CREATE_CQ_ATTRS
int ferrite_create_cq(struct ib_cq *ibcq, const struct ib_cq_init_attr *attr,
		      struct uverbs_attr_bundle *attrs)
{
	return ferrite_create_user_cq(ibcq, attr,
				      attrs ? &attrs->driver_udata : NULL);
}
#else
int ferrite_create_cq(struct ib_cq *ibcq, const struct ib_cq_init_attr *attr,
		      struct ib_udata *udata)
{
	return ferrite_create_user_cq(ibcq, attr, udata);
}
#endif

int ferrite_destroy_cq(struct ib_cq *ibcq, struct ib_udata *udata)
{
	struct ferrite_cq *cq = to_fcq(ibcq);

	if (cq->mentry)
		rdma_user_mmap_entry_remove(cq->mentry);
	cq->mentry = NULL;
	cq->ring = NULL;
	return 0;
}

int ferrite_poll_cq(struct ib_cq *ibcq, int num_entries, struct ib_wc *wc)
{
	/* User CQs are polled from the shared ring, never through here. */
	return 0;
}

int ferrite_req_notify_cq(struct ib_cq *ibcq, enum ib_cq_notify_flags flags)
{
	struct ferrite_cq *cq = to_fcq(ibcq);
	unsigned long irqflags;

	spin_lock_irqsave(&cq->lock, irqflags);
	cq->notify |= flags & IB_CQ_SOLICITED_MASK;
	spin_unlock_irqrestore(&cq->lock, irqflags);
	return 0;
}

static struct ib_mr *ferrite_reg_mr(struct ib_pd *pd, u64 start, u64 length,
				    u64 iova, int access,
				    struct ib_udata *udata)
{
	struct ferrite_dev *fdev = to_fdev(pd->device);
	struct ferrite_mr *mr;
	struct ib_umem *umem;
	u32 key;
	int err;

	err = ferrite_rs_mr_check(fdev->rs, length, access);
	if (err)
		return ERR_PTR(err);
	mr = kzalloc(sizeof(*mr), GFP_KERNEL);
	if (!mr)
		return ERR_PTR(-ENOMEM);
	/* Pins the pages; honours RLIMIT_MEMLOCK. */
#ifdef HAVE_IB_UMEM_GET_VA
	umem = ib_umem_get_va(pd->device, start, length, access);
#else
	umem = ib_umem_get(pd->device, start, length, access);
#endif
	if (IS_ERR(umem)) {
		kfree(mr);
		return ERR_CAST(umem);
	}
	mr->umem = umem;
	err = ferrite_mr_pages(mr, start);
	if (err) {
		ib_umem_release(umem);
		kfree(mr);
		return ERR_PTR(err);
	}
	err = ferrite_rs_mr_register(fdev->rs, start, length, iova, access,
				     (u64)(uintptr_t)pd, mr, &key);
	if (err) {
		kvfree(mr->pages);
		ib_umem_release(umem);
		kfree(mr);
		return ERR_PTR(err);
	}
	atomic_inc(&ferrite_live_mrs);
	mr->ibmr.lkey = key;
	mr->ibmr.rkey = key;
	mr->ibmr.length = length;
	mr->ibmr.iova = iova;
	return &mr->ibmr;
}

#ifdef HAVE_REG_USER_MR_DMAH
struct ib_mr *ferrite_reg_user_mr(struct ib_pd *pd, u64 start, u64 length,
				  u64 iova, int access, struct ib_dmah *dmah,
				  struct ib_udata *udata)
{
	if (dmah)
		return ERR_PTR(-EOPNOTSUPP);
	return ferrite_reg_mr(pd, start, length, iova, access, udata);
}
#else
struct ib_mr *ferrite_reg_user_mr(struct ib_pd *pd, u64 start, u64 length,
				  u64 iova, int access, struct ib_udata *udata)
{
	return ferrite_reg_mr(pd, start, length, iova, access, udata);
}
#endif

int ferrite_dereg_mr(struct ib_mr *ibmr, struct ib_udata *udata)
{
	struct ferrite_dev *fdev = to_fdev(ibmr->device);
	struct ferrite_mr *mr = to_fmr(ibmr);
	int err;

	err = ferrite_rs_mr_deregister(fdev->rs, ibmr->lkey);
	if (err)
		pr_err("ferrite: deregistering MR with unknown key %#x\n",
		       ibmr->lkey);
	/* The key is gone; wait for the data path to let go of the pages. */
	wait_var_event(&mr->users, !atomic_read(&mr->users));
	kvfree(mr->pages);
	ib_umem_release(mr->umem);
	kfree(mr);
	atomic_dec(&ferrite_live_mrs);
	return 0;
}

/* The uverbs commands ferrite serves, where the tree wants them listed. */
void ferrite_set_uverbs_cmds(struct ib_device *ibdev)
{
#ifdef HAVE_UVERBS_EX_CMD_MASK
	ibdev->uverbs_cmd_mask =
		BIT_ULL(IB_USER_VERBS_CMD_GET_CONTEXT) |
		BIT_ULL(IB_USER_VERBS_CMD_QUERY_DEVICE) |
		BIT_ULL(IB_USER_VERBS_CMD_QUERY_PORT) |
		BIT_ULL(IB_USER_VERBS_CMD_ALLOC_PD) |
		BIT_ULL(IB_USER_VERBS_CMD_DEALLOC_PD) |
		BIT_ULL(IB_USER_VERBS_CMD_REG_MR) |
		BIT_ULL(IB_USER_VERBS_CMD_DEREG_MR) |
		BIT_ULL(IB_USER_VERBS_CMD_CREATE_COMP_CHANNEL) |
		BIT_ULL(IB_USER_VERBS_CMD_CREATE_CQ) |
		BIT_ULL(IB_USER_VERBS_CMD_DESTROY_CQ) |
		BIT_ULL(IB_USER_VERBS_CMD_CREATE_QP) |
		BIT_ULL(IB_USER_VERBS_CMD_MODIFY_QP) |
		BIT_ULL(IB_USER_VERBS_CMD_QUERY_QP) |
		BIT_ULL(IB_USER_VERBS_CMD_DESTROY_QP) |
		BIT_ULL(IB_USER_VERBS_CMD_POST_SEND);
	ibdev->uverbs_ex_cmd_mask =
		BIT_ULL(IB_USER_VERBS_EX_CMD_QUERY_DEVICE) |
		BIT_ULL(IB_USER_VERBS_EX_CMD_CREATE_CQ) |
		BIT_ULL(IB_USER_VERBS_EX_CMD_CREATE_QP) |
		BIT_ULL(IB_USER_VERBS_EX_CMD_MODIFY_QP);
#endif
	/* Not in the core's default set on any tree: the doorbell (a post_send
	 * with no work requests) and req_notify_cq.
	 */
	ibdev->uverbs_cmd_mask |= BIT_ULL(IB_USER_VERBS_CMD_REQ_NOTIFY_CQ) |
				  BIT_ULL(IB_USER_VERBS_CMD_POST_SEND);
}
