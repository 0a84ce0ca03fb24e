/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ferrite.h - the C side's own view of a ferrite device.
 *
 * C owns the kernel objects (ib_device, the netdev reference, the list of
 * devices for module unload); Rust owns the driver state behind ->rs.
 */
#ifndef FERRITE_H
#define FERRITE_H

#include <linux/list.h>
#include <linux/netdevice.h>
#include <linux/xarray.h>
#include <rdma/ib_verbs.h>

#include "ferrite_compat.h"

/* The port number type of ib_device_ops on this tree. */
#ifdef HAVE_IB_PORT_U32
typedef u32 ferrite_port_t;
#else
typedef u8 ferrite_port_t;
#endif

struct ferrite_dev {
	struct ib_device ibdev;		/* must be first: ib_alloc_device */
	struct net_device *ndev;	/* held with dev_hold() for our lifetime */
	void *rs;			/* Rust device handle */
	struct list_head list;		/* on ferrite_devices, under ferrite_lock */
	bool registered;		/* ib_register_device() succeeded */
	bool doomed;			/* netdev went away: unregister */
	struct xarray qps;		/* QPN -> ferrite_qp; xa_load under RCU */
	u32 next_qpn;			/* for xa_alloc_cyclic */
	struct ferrite_net *fnet;	/* the netns's UDP sockets (net.c) */
	struct list_head net_node;	/* on fnet->devs, RCU */
};

struct ferrite_pd {
	struct ib_pd ibpd;
};

static inline struct ferrite_dev *to_fdev(struct ib_device *ibdev)
{
	return container_of(ibdev, struct ferrite_dev, ibdev);
}

/* verbs.c */
extern const struct ib_device_ops ferrite_dev_ops;
void ferrite_set_sysfs_group(struct ib_device *ibdev);

/* main.c */
void ferrite_dev_release(struct ferrite_dev *fdev);
extern struct workqueue_struct *ferrite_wq;

/* net.c: RoCE v2 over UDP, one pair of sockets per network namespace */
int ferrite_net_init(void);
void ferrite_net_exit(void);
int ferrite_net_attach(struct ferrite_dev *fdev);
void ferrite_net_detach(struct ferrite_dev *fdev);

/* verbs.c: counters */
int ferrite_stats_init(void);

#endif /* FERRITE_H */
