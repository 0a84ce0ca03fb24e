// SPDX-License-Identifier: GPL-2.0
/*
 * qp.c - queue pairs: the kernel objects around ferrite's Rust protocol engine.
 *
 * A round of a QP hands the packets the receive path queued to Rust, then lets
 * Rust run the QP (send what is owed, complete WQEs).  Rounds run where the
 * work arrives: in the receive softirq for a packet off the wire, in the
 * caller's context for a doorbell, and in the QP's work item for what a
 * round's budgets left, for a timer Rust asked for, and for packets looped back
 * from this host.  Everything here only carries: packets, memory, completions
 * and time; every decision is Rust's.
 *
 * Lifetime: the receive softirq finds a QP by QPN in fdev->qps under RCU, so
 * destroy removes it there, waits for RCU readers, then stops the timer and the
 * work item before Rust's half is freed.
 */
#include <linux/highmem.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/wait_bit.h>
#include <rdma/ib_umem.h>
#include <rdma/ib_verbs.h>
#include <rdma/uverbs_ioctl.h>

#include "ferrite.h"
#include "uverbs.h"

/* Packets handed to Rust, and packets Rust may send, per round. */
#define FERRITE_RX_BUDGET 64
#define FERRITE_TX_BUDGET 64
/* Packets queued for one QP's next round, at most. */
#define FERRITE_RXQ_MAX 4096

#ifdef HAVE_KMAP_LOCAL_PAGE
#define ferrite_kmap(page) kmap_local_page(page)
#define ferrite_kunmap(addr) kunmap_local(addr)
#else
#define ferrite_kmap(page) kmap_atomic(page)
#define ferrite_kunmap(addr) kunmap_atomic(addr)
#endif

#ifdef HAVE_TIMER_DELETE
#define ferrite_timer_delete(t) timer_delete(t)
#define ferrite_timer_delete_sync(t) timer_delete_sync(t)
#else
#define ferrite_timer_delete(t) del_timer(t)
#define ferrite_timer_delete_sync(t) del_timer_sync(t)
#endif

#ifdef HAVE_TIMER_CONTAINER_OF
#define ferrite_timer_qp(t) timer_container_of((struct ferrite_qp *)NULL, t, timer)
#else
#define ferrite_timer_qp(t) from_timer((struct ferrite_qp *)NULL, t, timer)
#endif

/* ---- memory regions: the pages the data path reads and writes ---- */

/* List the pinned pages of mr->umem, whose first byte is at user address start. */
int ferrite_mr_pages(struct ferrite_mr *mr, u64 start)
{
	struct sg_page_iter iter;
	u32 n = 0;

	mr->npages = ib_umem_num_pages(mr->umem);
	mr->page_offset = start & ~PAGE_MASK;
	mr->pages = kvmalloc_array(mr->npages, sizeof(*mr->pages), GFP_KERNEL);
	if (!mr->pages)
		return -ENOMEM;
#ifdef HAVE_UMEM_SGT_APPEND
	for_each_sgtable_page(&mr->umem->sgt_append.sgt, &iter, 0) {
#else
	for_each_sg_page(mr->umem->sg_head.sgl, &iter, mr->umem->nmap, 0) {
#endif
		if (n == mr->npages)
			break;
		mr->pages[n++] = sg_page_iter_page(&iter);
	}
	if (n != mr->npages) {
		kvfree(mr->pages);
		mr->pages = NULL;
		return -EFAULT;
	}
	atomic_set(&mr->users, 0);
	return 0;
}

void ferrite_k_mr_get(void *cookie)
{
	struct ferrite_mr *mr = cookie;

	atomic_inc(&mr->users);
}

void ferrite_k_mr_put(void *cookie)
{
	struct ferrite_mr *mr = cookie;

	if (atomic_dec_and_test(&mr->users))
		wake_up_var(&mr->users);
}

void ferrite_k_mr_copy(void *cookie, u64 offset, u8 *buf, u32 len, u8 to_mr)
{
	struct ferrite_mr *mr = cookie;
	u64 pos = offset + mr->page_offset;

	while (len) {
		u64 idx = pos >> PAGE_SHIFT;
		u32 off = pos & ~PAGE_MASK;
		u32 n = min_t(u32, len, PAGE_SIZE - off);
		u8 *va;

		/* Rust checked the range against the region: this is a bug. */
		if (WARN_ON_ONCE(idx >= mr->npages))
			return;
		va = ferrite_kmap(mr->pages[idx]);
		if (to_mr)
			memcpy(va + off, buf, n);
		else
			memcpy(buf, va + off, n);
		ferrite_kunmap(va);
		buf += n;
		pos += n;
		len -= n;
	}
}

u64 ferrite_k_mr_atomic(void *cookie, u64 offset, u32 op, u64 a, u64 b)
{
	struct ferrite_mr *mr = cookie;
	u64 pos = offset + mr->page_offset;
	u64 idx = pos >> PAGE_SHIFT;
	u64 orig, *p;
	u8 *va;

	/* 8 aligned bytes never cross a page. */
	if (WARN_ON_ONCE(idx >= mr->npages || (pos & 7)))
		return 0;
	va = ferrite_kmap(mr->pages[idx]);
	p = (u64 *)(va + (pos & ~PAGE_MASK));
	switch (op) {
	case FERRITE_ATOMIC_CMP_SWAP:
		orig = cmpxchg64(p, a, b);
		break;
	case FERRITE_ATOMIC_FETCH_ADD:
		orig = atomic64_fetch_add(a, (atomic64_t *)p);
		break;
	case FERRITE_ATOMIC_WRITE:
		/* One store of all 8 bytes, after every earlier one. */
		smp_store_release(p, a);
		orig = 0;
		break;
	default:
		WARN_ON_ONCE(1);
		orig = 0;
		break;
	}
	ferrite_kunmap(va);
	return orig;
}

/*
 * FLUSH to global visibility.  No region is persistent memory, so there is
 * nothing to write back.
 */
void ferrite_k_mr_flush(void *cookie, u64 offset, u64 len)
{
	/*
	 * The data path placed every earlier byte with memcpy() into pages the
	 * CPUs keep coherent: order those stores before the response that says
	 * they are visible.
	 */
	wmb();
}

/* ---- completions, events, time ---- */

void ferrite_k_cq_post(void *cookie, u8 recv, const u8 *cqe, u8 solicited)
{
	struct ferrite_qp *qp = cookie;
	struct ib_cq *ibcq = recv ? qp->ibqp.recv_cq : qp->ibqp.send_cq;
	struct ferrite_cq *cq = to_fcq(ibcq);
	unsigned long flags;
	int rc = -ENODEV;

	spin_lock_irqsave(&cq->lock, flags);
	if (cq->ring)
		rc = ferrite_rs_cq_push(cq->ring, cq->slots, cqe, solicited,
					&cq->notify);
	spin_unlock_irqrestore(&cq->lock, flags);

	if (rc == 1 && ibcq->comp_handler) {
		ibcq->comp_handler(ibcq, ibcq->cq_context);
	} else if (rc == -ENOSPC && ibcq->event_handler) {
		struct ib_event ev = {
			.device = ibcq->device,
			.element.cq = ibcq,
			.event = IB_EVENT_CQ_ERR,
		};

		pr_warn_ratelimited("ferrite: CQ overrun: a completion was lost\n");
		ibcq->event_handler(&ev, ibcq->cq_context);
	}
}

void ferrite_k_qp_event(void *cookie, u32 event)
{
	struct ferrite_qp *qp = cookie;
	struct ib_event ev = {
		.device = qp->ibqp.device,
		.element.qp = &qp->ibqp,
	};

	switch (event) {
	case FERRITE_QP_EVENT_FATAL:
		ev.event = IB_EVENT_QP_FATAL;
		break;
	case FERRITE_QP_EVENT_COMM_EST:
		ev.event = IB_EVENT_COMM_EST;
		break;
	case FERRITE_QP_EVENT_SQ_DRAINED:
		ev.event = IB_EVENT_SQ_DRAINED;
		break;
	case FERRITE_QP_EVENT_ACCESS_ERR:
		ev.event = IB_EVENT_QP_ACCESS_ERR;
		break;
	case FERRITE_QP_EVENT_REQ_ERR:
		ev.event = IB_EVENT_QP_REQ_ERR;
		break;
	default:
		return;
	}
	if (qp->ibqp.event_handler)
		qp->ibqp.event_handler(&ev, qp->ibqp.qp_context);
}

void ferrite_k_qp_timer(void *cookie, u64 deadline)
{
	struct ferrite_qp *qp = cookie;
	u64 now, delay;

	if (READ_ONCE(qp->dying) || deadline == qp->deadline)
		return;
	qp->deadline = deadline;
	if (!deadline) {
		ferrite_timer_delete(&qp->timer);
		return;
	}
	now = ktime_get_ns();
	delay = deadline > now ? deadline - now : 0;
	mod_timer(&qp->timer, jiffies + nsecs_to_jiffies(delay) + 1);
}

static void ferrite_qp_timer_fn(struct timer_list *t)
{
	struct ferrite_qp *qp = ferrite_timer_qp(t);

	qp->deadline = 0;
	if (!READ_ONCE(qp->dying))
		queue_work(ferrite_wq, &qp->work);
}

/* ---- running a QP ---- */

void *ferrite_k_qp_rx_next(void *cookie, const u8 **ip, u32 *len)
{
	struct ferrite_qp *qp = cookie;
	struct sk_buff *skb = skb_dequeue(&qp->rxq);

	if (!skb)
		return NULL;
	*ip = skb_network_header(skb);
	*len = skb_tail_pointer(skb) - skb_network_header(skb);
	return skb;
}

void ferrite_k_rx_free(void *skb)
{
	consume_skb(skb);
}

/*
 * One round: Rust takes the packets queued for the QP and then runs the QP, all
 * under its QP lock, which keeps the packets in order.  That lock is a spin
 * lock taken with bottom halves off, so a round may run in process context or
 * in the receive softirq.  Returns true when more is owed than the budgets
 * allowed, and the work item must run again.
 */
static bool ferrite_qp_round(struct ferrite_qp *qp)
{
	int more = ferrite_rs_qp_round(qp->rs, FERRITE_RX_BUDGET,
				       FERRITE_TX_BUDGET);

	return (more || !skb_queue_empty(&qp->rxq)) && !READ_ONCE(qp->dying);
}

static void ferrite_qp_work(struct work_struct *work)
{
	struct ferrite_qp *qp = container_of(work, struct ferrite_qp, work);

	if (ferrite_qp_round(qp))
		queue_work(ferrite_wq, &qp->work);
}

/*
 * A checked packet for a QP, under rcu_read_lock(): queue it, then run a round
 * of the QP at once when @now (the receive softirq) and Rust does not want it
 * deferred, or else in its work item.  A packet looped back from this host
 * comes from a round of the sending QP, which holds that QP's lock and may be
 * the receiver itself: it waits for the work item.  destroy_qp's
 * synchronize_rcu() waits for a round run here.
 */
void ferrite_qp_rx(struct ferrite_dev *fdev, struct sk_buff *skb, bool now)
{
	u8 *ip = skb_network_header(skb);
	struct ferrite_qp *qp;
	int kind;
	u32 qpn;

	kind = ferrite_rs_rx_classify(fdev->rs, ip, skb_tail_pointer(skb) - ip,
				      &qpn);
	if (kind < 0)
		goto drop;
	qp = xa_load(&fdev->qps, qpn);
	if (!qp || READ_ONCE(qp->dying)) {
		ferrite_rs_rx_dropped(fdev->rs, FERRITE_RX_DROP_NO_QP);
		goto drop;
	}
	if (skb_queue_len(&qp->rxq) >= FERRITE_RXQ_MAX) {
		ferrite_rs_rx_dropped(fdev->rs, FERRITE_RX_DROP_QUEUE_FULL);
		goto drop;
	}
	/* The input route may be RCU-only (noref): never keep it past here. */
	skb_dst_drop(skb);
	skb_orphan(skb);
	skb_queue_tail(&qp->rxq, skb);
	if (!now || ferrite_rs_qp_rx_defer(qp->rs, kind) ||
	    ferrite_qp_round(qp))
		queue_work(ferrite_wq, &qp->work);
	return;
drop:
	kfree_skb(skb);
}

/* ---- the QP verbs ---- */

static u8 ferrite_port_mtu(struct ferrite_dev *fdev)
{
	struct ib_port_attr attr;

	if (ib_query_port(&fdev->ibdev, 1, &attr))
		return IB_MTU_1024;
	return attr.active_mtu;
}

static int ferrite_qp_setup(struct ferrite_qp *qp, struct ib_pd *pd,
			    struct ib_qp_init_attr *init,
			    struct ib_udata *udata)
{
	struct ferrite_dev *fdev = to_fdev(pd->device);
	struct ferrite_qp_init fi = {};
	struct ferrite_ucontext *uctx;
	u8 resp[FERRITE_CREATE_QP_RESP_LEN];
	u64 sq_off, rq_off;
	u32 qpn;
	int err;

	/* Userspace RC and UC QPs; in-kernel consumers are not offered the device. */
	if (!udata)
		return -EOPNOTSUPP;
	if (init->qp_type != IB_QPT_RC && init->qp_type != IB_QPT_UC)
		return -EOPNOTSUPP;
	if (init->srq || init->create_flags || init->rwq_ind_tbl)
		return -EOPNOTSUPP;
	if (udata->outlen < sizeof(resp))
		return -EINVAL;

	fi.qp_type = init->qp_type == IB_QPT_RC ? FERRITE_QPT_RC :
						   FERRITE_QPT_UC;
	fi.max_send_wr = init->cap.max_send_wr;
	fi.max_recv_wr = init->cap.max_recv_wr;
	fi.max_send_sge = init->cap.max_send_sge;
	fi.max_recv_sge = init->cap.max_recv_sge;
	fi.max_inline_data = init->cap.max_inline_data;
	fi.sq_sig_all = init->sq_sig_type == IB_SIGNAL_ALL_WR;
	err = ferrite_rs_qp_geometry(fdev->rs, &fi);
	if (err)
		return err;

	qp->fdev = fdev;
	INIT_WORK(&qp->work, ferrite_qp_work);
	timer_setup(&qp->timer, ferrite_qp_timer_fn, 0);
	skb_queue_head_init(&qp->rxq);

	uctx = rdma_udata_to_drv_context(udata, struct ferrite_ucontext, ibuc);
	qp->sq_entry = ferrite_ring_publish(&uctx->ibuc, fi.sq_bytes,
					    &qp->sq_ring, &sq_off);
	if (IS_ERR(qp->sq_entry)) {
		err = PTR_ERR(qp->sq_entry);
		qp->sq_entry = NULL;
		return err;
	}
	qp->rq_entry = ferrite_ring_publish(&uctx->ibuc, fi.rq_bytes,
					    &qp->rq_ring, &rq_off);
	if (IS_ERR(qp->rq_entry)) {
		err = PTR_ERR(qp->rq_entry);
		qp->rq_entry = NULL;
		goto err_sq;
	}
	err = xa_alloc_cyclic(&fdev->qps, &qpn, NULL, XA_LIMIT(17, 0xffffff),
			      &fdev->next_qpn, GFP_KERNEL);
	if (err < 0)
		goto err_rq;
	err = ferrite_rs_qp_create(fdev->rs, &fi, qpn, (u64)(uintptr_t)pd,
				   qp->sq_ring, qp->rq_ring,
				   ferrite_port_mtu(fdev), qp, &qp->rs);
	if (err)
		goto err_qpn;
	qp->ibqp.qp_num = qpn;
	qp->sq_sig_type = init->sq_sig_type;
	init->cap.max_send_wr = fi.max_send_wr;
	init->cap.max_recv_wr = fi.max_recv_wr;
	init->cap.max_send_sge = fi.max_send_sge;
	init->cap.max_recv_sge = fi.max_recv_sge;
	init->cap.max_inline_data = fi.max_inline_data;
	qp->cap = init->cap;

	ferrite_rs_qp_resp(qp->rs, sq_off, fi.sq_bytes, rq_off, fi.rq_bytes,
			   resp);
	err = ib_copy_to_udata(udata, resp, sizeof(resp));
	if (err)
		goto err_rs;
	/* Visible to the receive path only now that it is whole. */
	xa_store(&fdev->qps, qpn, qp, GFP_KERNEL);
	return 0;

err_rs:
	ferrite_rs_qp_destroy(qp->rs);
	qp->rs = NULL;
err_qpn:
	xa_erase(&fdev->qps, qpn);
err_rq:
	rdma_user_mmap_entry_remove(qp->rq_entry);
err_sq:
	rdma_user_mmap_entry_remove(qp->sq_entry);
	return err;
}

#ifdef HAVE_CORE_ALLOCATED_QP
int ferrite_create_qp(struct ib_qp *ibqp, struct ib_qp_init_attr *init,
		      struct ib_udata *udata)
{
	return ferrite_qp_setup(to_fqp(ibqp), ibqp->pd, init, udata);
}
#else
struct ib_qp *ferrite_create_qp(struct ib_pd *pd,
				struct ib_qp_init_attr *init,
				struct ib_udata *udata)
{
	struct ferrite_qp *qp = kzalloc(sizeof(*qp), GFP_KERNEL);
	int err;

	if (!qp)
		return ERR_PTR(-ENOMEM);
	err = ferrite_qp_setup(qp, pd, init, udata);
	if (err) {
		kfree(qp);
		return ERR_PTR(err);
	}
	return &qp->ibqp;
}
#endif

int ferrite_destroy_qp(struct ib_qp *ibqp, struct ib_udata *udata)
{
	struct ferrite_qp *qp = to_fqp(ibqp);

	WRITE_ONCE(qp->dying, true);
	xa_erase(&qp->fdev->qps, ibqp->qp_num);
	/* No receive path can see the QP after this. */
	synchronize_rcu();
	cancel_work_sync(&qp->work);
	ferrite_timer_delete_sync(&qp->timer);
	cancel_work_sync(&qp->work);
	skb_queue_purge(&qp->rxq);
	ferrite_rs_qp_destroy(qp->rs);
	qp->rs = NULL;
	rdma_user_mmap_entry_remove(qp->rq_entry);
	rdma_user_mmap_entry_remove(qp->sq_entry);
#ifndef HAVE_CORE_ALLOCATED_QP
	kfree(qp);
#endif
	return 0;
}

int ferrite_modify_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		      struct ib_udata *udata)
{
	struct ferrite_qp *qp = to_fqp(ibqp);
	struct ferrite_qp_attr fa = {};
	enum ib_qp_state cur, new;
	int ret;

	cur = (mask & IB_QP_CUR_STATE) ? attr->cur_qp_state :
					 ferrite_rs_qp_state(qp->rs);
	new = (mask & IB_QP_STATE) ? attr->qp_state : cur;
	if (!ib_modify_qp_is_ok(cur, new, ibqp->qp_type, mask))
		return -EINVAL;

	if (mask & IB_QP_AV) {
		const struct ib_global_route *grh;
		const struct ib_gid_attr *sgid;

		if (!(rdma_ah_get_ah_flags(&attr->ah_attr) & IB_AH_GRH))
			return -EINVAL;
		grh = rdma_ah_read_grh(&attr->ah_attr);
		sgid = grh->sgid_attr;
		if (!sgid || sgid->gid_type != IB_GID_TYPE_ROCE_UDP_ENCAP)
			return -EINVAL;
		memcpy(fa.sgid, sgid->gid.raw, sizeof(fa.sgid));
		memcpy(fa.dgid, grh->dgid.raw, sizeof(fa.dgid));
		fa.flow_label = grh->flow_label;
		fa.sgid_index = grh->sgid_index;
		fa.hop_limit = grh->hop_limit;
		fa.traffic_class = grh->traffic_class;
		memcpy(qp->dmac, attr->ah_attr.roce.dmac, ETH_ALEN);
	}
	fa.state = attr->qp_state;
	fa.cur_state = cur;
	fa.qkey = attr->qkey;
	fa.rq_psn = attr->rq_psn;
	fa.sq_psn = attr->sq_psn;
	fa.dest_qp_num = attr->dest_qp_num;
	fa.access_flags = attr->qp_access_flags;
	fa.pkey_index = attr->pkey_index;
	fa.path_mtu = attr->path_mtu;
	fa.path_mig_state = attr->path_mig_state;
	fa.port_num = attr->port_num;
	fa.timeout = attr->timeout;
	fa.retry_cnt = attr->retry_cnt;
	fa.rnr_retry = attr->rnr_retry;
	fa.min_rnr_timer = attr->min_rnr_timer;
	fa.max_rd_atomic = attr->max_rd_atomic;
	fa.max_dest_rd_atomic = attr->max_dest_rd_atomic;
	fa.en_sqd_async_notify = attr->en_sqd_async_notify;

	ret = ferrite_rs_qp_modify(qp->rs, &fa, mask);
	if (ret < 0)
		return ret;
	if (ret > 0)
		queue_work(ferrite_wq, &qp->work);
	return 0;
}

int ferrite_query_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		     struct ib_qp_init_attr *init)
{
	struct ferrite_qp *qp = to_fqp(ibqp);
	struct ferrite_qp_attr fa;
	union ib_gid dgid;

	ferrite_rs_qp_query(qp->rs, &fa);
	memset(attr, 0, sizeof(*attr));
	attr->qp_state = fa.state;
	attr->cur_qp_state = fa.cur_state;
	attr->path_mtu = fa.path_mtu;
	attr->path_mig_state = fa.path_mig_state;
	attr->qkey = fa.qkey;
	attr->rq_psn = fa.rq_psn;
	attr->sq_psn = fa.sq_psn;
	attr->dest_qp_num = fa.dest_qp_num;
	attr->qp_access_flags = fa.access_flags;
	attr->pkey_index = fa.pkey_index;
	attr->port_num = fa.port_num;
	attr->timeout = fa.timeout;
	attr->retry_cnt = fa.retry_cnt;
	attr->rnr_retry = fa.rnr_retry;
	attr->min_rnr_timer = fa.min_rnr_timer;
	attr->max_rd_atomic = fa.max_rd_atomic;
	attr->max_dest_rd_atomic = fa.max_dest_rd_atomic;
	attr->sq_draining = fa.sq_draining;
	attr->en_sqd_async_notify = fa.en_sqd_async_notify;
	attr->cap = qp->cap;
	attr->ah_attr.type = RDMA_AH_ATTR_TYPE_ROCE;
	memcpy(dgid.raw, fa.dgid, sizeof(dgid.raw));
	rdma_ah_set_grh(&attr->ah_attr, &dgid, fa.flow_label, fa.sgid_index,
			fa.hop_limit, fa.traffic_class);
	rdma_ah_set_port_num(&attr->ah_attr, 1);
	memcpy(attr->ah_attr.roce.dmac, qp->dmac, ETH_ALEN);

	memset(init, 0, sizeof(*init));
	init->qp_type = ibqp->qp_type;
	init->send_cq = ibqp->send_cq;
	init->recv_cq = ibqp->recv_cq;
	init->cap = qp->cap;
	init->sq_sig_type = qp->sq_sig_type;
	return 0;
}

/*
 * The provider's doorbell: a post_send with no work requests, made only when
 * the QP asked for one in its send queue (abi/src/wq.rs).  Work requests from
 * the kernel are not served: in-kernel consumers are not offered the device.
 */
int ferrite_post_send(struct ib_qp *ibqp, const struct ib_send_wr *wr,
		      const struct ib_send_wr **bad_wr)
{
	struct ferrite_qp *qp = to_fqp(ibqp);

	if (wr) {
		*bad_wr = wr;
		return -EOPNOTSUPP;
	}
	ferrite_rs_qp_doorbell(qp->rs);
	/*
	 * The doorbell runs the QP in the caller's context: one round is cheaper
	 * than waking a worker, and the caller is the one waiting for it.  What
	 * the budgets leave goes to the work item.
	 */
	if (ferrite_qp_round(qp))
		queue_work(ferrite_wq, &qp->work);
	return 0;
}

int ferrite_post_recv(struct ib_qp *ibqp, const struct ib_recv_wr *wr,
		      const struct ib_recv_wr **bad_wr)
{
	/* Receive WQEs are posted to the shared ring, never through here. */
	if (wr)
		*bad_wr = wr;
	return -EOPNOTSUPP;
}
