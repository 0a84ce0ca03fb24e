// SPDX-License-Identifier: GPL-2.0
/*
 * verbs.c - ferrite's ib_device_ops.
 *
 * Each callback converts between the tree's structures and the fixed ones
 * of ferrite_compat.h and lets Rust decide.  The userspace verbs (contexts,
 * CQs, MRs) are in uverbs.c, QPs in qp.c.  There is no get_dma_mr, so the core
 * does not offer the device to in-kernel consumers (kverbs_provider stays false).
 */
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <rdma/ib_mad.h>
#include <rdma/ib_verbs.h>

#include "ferrite.h"
#include "uverbs.h"

static void ferrite_read_netdev_state(struct net_device *ndev,
				      struct ferrite_netdev_state *st)
{
	memset(st, 0, sizeof(*st));
	st->mtu = READ_ONCE(ndev->mtu);
	st->running = netif_running(ndev);
	st->carrier = netif_carrier_ok(ndev);
}

static int ferrite_query_device(struct ib_device *ibdev,
				struct ib_device_attr *attr,
				struct ib_udata *udata)
{
	struct ferrite_dev *fdev = to_fdev(ibdev);
	struct ferrite_dev_attr a;

	if (udata && (udata->inlen || udata->outlen))
		return -EINVAL;

	ferrite_rs_dev_query(fdev->rs, &a);
	attr->fw_ver = a.fw_ver;
	attr->sys_image_guid = (__force __be64)a.sys_image_guid;
	attr->max_mr_size = a.max_mr_size;
	attr->page_size_cap = a.page_size_cap;
	attr->vendor_id = a.vendor_id;
	attr->vendor_part_id = a.vendor_part_id;
	attr->hw_ver = a.hw_ver;
	attr->max_qp = a.max_qp;
	attr->max_qp_wr = a.max_qp_wr;
	attr->max_send_sge = a.max_send_sge;
	attr->max_recv_sge = a.max_recv_sge;
	attr->max_sge_rd = a.max_sge_rd;
	attr->max_cq = a.max_cq;
	attr->max_cqe = a.max_cqe;
	attr->max_mr = a.max_mr;
	attr->max_pd = a.max_pd;
	attr->max_qp_rd_atom = a.max_qp_rd_atom;
	attr->max_qp_init_rd_atom = a.max_qp_init_rd_atom;
	attr->max_res_rd_atom = a.max_res_rd_atom;
	attr->max_srq = a.max_srq;
	attr->max_srq_wr = a.max_srq_wr;
	attr->max_srq_sge = a.max_srq_sge;
	attr->max_ah = a.max_ah;
	attr->max_mcast_grp = a.max_mcast_grp;
	attr->max_mcast_qp_attach = a.max_mcast_qp_attach;
	attr->max_total_mcast_qp_attach = a.max_total_mcast_qp_attach;
	attr->max_fast_reg_page_list_len = a.max_fast_reg_page_list_len;
	attr->max_pkeys = a.max_pkeys;
	attr->local_ca_ack_delay = a.local_ca_ack_delay;
	/* The engine executes atomics atomically with respect to each other. */
	attr->atomic_cap = IB_ATOMIC_HCA;
	/* IBTA 1.5 ATOMIC WRITE and FLUSH, where the tree can say so (Linux 6.2). */
#ifdef HAVE_IB_DEVICE_ATOMIC_WRITE
	if (a.cap_flags & FERRITE_DEV_CAP_ATOMIC_WRITE)
		attr->device_cap_flags |= IB_DEVICE_ATOMIC_WRITE;
#endif
#ifdef HAVE_IB_DEVICE_FLUSH
	if (a.cap_flags & FERRITE_DEV_CAP_FLUSH_GLOBAL)
		attr->device_cap_flags |= IB_DEVICE_FLUSH_GLOBAL;
#endif
	/* "rdma link delete" may remove the device. */
#ifdef HAVE_IBK_ALLOW_USER_UNREG
	attr->kernel_cap_flags |= IBK_ALLOW_USER_UNREG;
#else
	attr->device_cap_flags |= IB_DEVICE_ALLOW_USER_UNREG;
#endif
	return 0;
}

static void ferrite_get_dev_fw_str(struct ib_device *ibdev, char *str)
{
	struct ferrite_dev_attr a;

	ferrite_rs_dev_query(to_fdev(ibdev)->rs, &a);
	snprintf(str, IB_FW_VERSION_NAME_MAX, "%llu.%llu.%llu",
		 (unsigned long long)(a.fw_ver >> 32),
		 (unsigned long long)((a.fw_ver >> 16) & 0xffff),
		 (unsigned long long)(a.fw_ver & 0xffff));
}

static int ferrite_query_port(struct ib_device *ibdev, ferrite_port_t port,
			      struct ib_port_attr *attr)
{
	struct ferrite_dev *fdev = to_fdev(ibdev);
	struct ferrite_netdev_state st;
	struct ferrite_port_attr a;

	ferrite_read_netdev_state(fdev->ndev, &st);
	ferrite_rs_port_query(fdev->rs, &st, &a);
	attr->state = a.state;
	attr->phys_state = a.phys_state;
	attr->max_mtu = a.max_mtu;
	attr->active_mtu = a.active_mtu;
	attr->gid_tbl_len = a.gid_tbl_len;
	attr->pkey_tbl_len = a.pkey_tbl_len;
	attr->max_msg_sz = a.max_msg_sz;
	attr->port_cap_flags = IB_PORT_CM_SUP;
	return ib_get_eth_speed(ibdev, port, &attr->active_speed,
				&attr->active_width);
}

static int ferrite_get_port_immutable(struct ib_device *ibdev,
				      ferrite_port_t port,
				      struct ib_port_immutable *immutable)
{
	struct ib_port_attr attr;
	int err;

	err = ib_query_port(ibdev, port, &attr);
	if (err)
		return err;
	immutable->pkey_tbl_len = attr.pkey_tbl_len;
	immutable->gid_tbl_len = attr.gid_tbl_len;
	immutable->core_cap_flags = RDMA_CORE_PORT_IBA_ROCE_UDP_ENCAP;
	immutable->max_mad_size = IB_MGMT_MAD_SIZE;
	return 0;
}

static enum rdma_link_layer ferrite_get_link_layer(struct ib_device *ibdev,
						   ferrite_port_t port)
{
	return IB_LINK_LAYER_ETHERNET;
}

static int ferrite_query_pkey(struct ib_device *ibdev, ferrite_port_t port,
			      u16 index, u16 *pkey)
{
	/* A RoCE port has the default partition only. */
	if (index != 0)
		return -EINVAL;
	*pkey = 0xffff;
	return 0;
}

static int ferrite_alloc_pd(struct ib_pd *ibpd, struct ib_udata *udata)
{
	return ferrite_rs_pd_alloc(to_fdev(ibpd->device)->rs);
}

static int ferrite_dealloc_pd(struct ib_pd *ibpd, struct ib_udata *udata)
{
	ferrite_rs_pd_free(to_fdev(ibpd->device)->rs);
	return 0;
}

/* sysfs: which uverbs ABI this device speaks (the provider matches on it). */
static ssize_t ferrite_abi_show(struct device *device,
				struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", FERRITE_UVERBS_ABI_VERSION);
}
static DEVICE_ATTR_RO(ferrite_abi);

/* sysfs: the netdev the device is bound to, as rxe reports it. */
static ssize_t parent_show(struct device *device,
			   struct device_attribute *attr, char *buf)
{
	struct ferrite_dev *fdev =
		rdma_device_to_drv_device(device, struct ferrite_dev, ibdev);

	return sysfs_emit(buf, "%s\n", netdev_name(fdev->ndev));
}
static DEVICE_ATTR_RO(parent);

static struct attribute *ferrite_attrs[] = {
	&dev_attr_ferrite_abi.attr,
	&dev_attr_parent.attr,
	NULL,
};

static const struct attribute_group ferrite_attr_group = {
	.attrs = ferrite_attrs,
};

/* Attach ferrite's sysfs attributes; before ib_register_device(). */
void ferrite_set_sysfs_group(struct ib_device *ibdev)
{
#ifndef HAVE_OPS_DEVICE_GROUP
	rdma_set_device_sysfs_group(ibdev, &ferrite_attr_group);
#endif
}

/* ---- counters: "rdma statistic show link" ---- */

#define FERRITE_MAX_COUNTERS 32
#ifdef HAVE_RDMA_STAT_DESC
static struct rdma_stat_desc ferrite_stat_descs[FERRITE_MAX_COUNTERS];
#else
static const char *ferrite_stat_names[FERRITE_MAX_COUNTERS];
#endif
static u32 ferrite_nr_counters;

/* Names come from Rust, which owns the counters. */
int ferrite_stats_init(void)
{
	u32 i, n = ferrite_rs_counter_count();

	if (n > FERRITE_MAX_COUNTERS)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		const char *name = (const char *)ferrite_rs_counter_name(i);

		if (!name)
			return -EINVAL;
#ifdef HAVE_RDMA_STAT_DESC
		ferrite_stat_descs[i].name = name;
#else
		ferrite_stat_names[i] = name;
#endif
	}
	ferrite_nr_counters = n;
	return 0;
}

#ifdef HAVE_RDMA_STAT_DESC
static struct rdma_hw_stats *ferrite_alloc_hw_port_stats(struct ib_device *ibdev,
							 u32 port)
{
	return rdma_alloc_hw_stats_struct(ferrite_stat_descs,
					  ferrite_nr_counters,
					  RDMA_HW_STATS_DEFAULT_LIFESPAN);
}
#else
static struct rdma_hw_stats *ferrite_alloc_hw_stats(struct ib_device *ibdev,
						    ferrite_port_t port)
{
	/* Device-wide counters only, reported on the port. */
	if (!port)
		return NULL;
	return rdma_alloc_hw_stats_struct(ferrite_stat_names,
					  ferrite_nr_counters,
					  RDMA_HW_STATS_DEFAULT_LIFESPAN);
}
#endif

static int ferrite_get_hw_stats(struct ib_device *ibdev,
				struct rdma_hw_stats *stats,
				ferrite_port_t port, int index)
{
	u32 n = min_t(u32, stats->num_counters, ferrite_nr_counters);

	ferrite_rs_counters(to_fdev(ibdev)->rs, stats->value, n);
	return n;
}

static void ferrite_dealloc_driver(struct ib_device *ibdev)
{
	ferrite_dev_release(to_fdev(ibdev));
}

const struct ib_device_ops ferrite_dev_ops = {
	.owner = THIS_MODULE,
	.driver_id = RDMA_DRIVER_UNKNOWN,
	.uverbs_abi_ver = FERRITE_UVERBS_ABI_VERSION,
#ifdef HAVE_OPS_DEVICE_GROUP
	.device_group = &ferrite_attr_group,
#endif

#ifdef HAVE_RDMA_STAT_DESC
	.alloc_hw_port_stats = ferrite_alloc_hw_port_stats,
#else
	.alloc_hw_stats = ferrite_alloc_hw_stats,
#endif
	.alloc_pd = ferrite_alloc_pd,
	.alloc_ucontext = ferrite_alloc_ucontext,
	.create_cq = ferrite_create_cq,
	.create_qp = ferrite_create_qp,
	.dealloc_driver = ferrite_dealloc_driver,
	.dealloc_pd = ferrite_dealloc_pd,
	.dealloc_ucontext = ferrite_dealloc_ucontext,
	.dereg_mr = ferrite_dereg_mr,
	.destroy_cq = ferrite_destroy_cq,
	.destroy_qp = ferrite_destroy_qp,
	.disassociate_ucontext = ferrite_disassociate_ucontext,
	.get_dev_fw_str = ferrite_get_dev_fw_str,
	.get_link_layer = ferrite_get_link_layer,
	.get_hw_stats = ferrite_get_hw_stats,
	.get_port_immutable = ferrite_get_port_immutable,
	.mmap = ferrite_mmap,
	.mmap_free = ferrite_mmap_free,
	.modify_qp = ferrite_modify_qp,
	.poll_cq = ferrite_poll_cq,
	.post_recv = ferrite_post_recv,
	.post_send = ferrite_post_send,
	.query_device = ferrite_query_device,
	.query_pkey = ferrite_query_pkey,
	.query_port = ferrite_query_port,
	.query_qp = ferrite_query_qp,
	.reg_user_mr = ferrite_reg_user_mr,
	.req_notify_cq = ferrite_req_notify_cq,

	INIT_RDMA_OBJ_SIZE(ib_cq, ferrite_cq, ibcq),
	INIT_RDMA_OBJ_SIZE(ib_pd, ferrite_pd, ibpd),
#ifdef HAVE_CORE_ALLOCATED_QP
	INIT_RDMA_OBJ_SIZE(ib_qp, ferrite_qp, ibqp),
#endif
	INIT_RDMA_OBJ_SIZE(ib_ucontext, ferrite_ucontext, ibuc),
};
