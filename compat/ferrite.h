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

#endif /* FERRITE_H */
