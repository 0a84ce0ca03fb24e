// SPDX-License-Identifier: GPL-2.0
/*
 * main.c - ferrite's module life cycle: the "ferrite" rdma link type, the
 * netdev notifier, and the list of devices that unloading removes.
 *
 * A device lives from "rdma link add" until one of: "rdma link delete", the
 * removal of its netdev, or module unload.  Every path ends in
 * ferrite_dev_release(), called by the core through ->dealloc_driver.
 */
#include <linux/atomic.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/wait.h>
#include <rdma/ib_verbs.h>
#include <rdma/rdma_netlink.h>

#include "ferrite.h"
#include "uverbs.h"

/*
 * ferrite_lock guards ferrite_devices and each entry's registered/doomed
 * flags.  ferrite_ndevs counts devices not yet released; unload waits for 0.
 */
static LIST_HEAD(ferrite_devices);
static DEFINE_MUTEX(ferrite_lock);
static atomic_t ferrite_ndevs = ATOMIC_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(ferrite_release_wq);

/* Where QPs run (qp.c). */
struct workqueue_struct *ferrite_wq;

/*
 * Called by the core through ->dealloc_driver: after unregistration, or from
 * ib_dealloc_device() when registration never completed.
 */
void ferrite_dev_release(struct ferrite_dev *fdev)
{
	bool listed;

	mutex_lock(&ferrite_lock);
	listed = !list_empty(&fdev->list);
	list_del_init(&fdev->list);
	mutex_unlock(&ferrite_lock);
	/* No packet can reach the device after this. */
	ferrite_net_detach(fdev);
	WARN_ON(!xa_empty(&fdev->qps));
	xa_destroy(&fdev->qps);
	ferrite_rs_dev_destroy(fdev->rs);
	fdev->rs = NULL;
	dev_put(fdev->ndev);
	/* The core frees the ib_device itself after this returns. */
	if (listed && atomic_dec_and_test(&ferrite_ndevs))
		wake_up(&ferrite_release_wq);
}

static int ferrite_newlink(const char *name, struct net_device *ndev)
{
	struct ferrite_netdev_info info = {};
	struct ferrite_dev_attr attr;
	struct ferrite_dev *fdev;
	bool doomed;
	void *rs;
	int err;

	info.key = (u64)(uintptr_t)ndev;
	info.ifindex = ndev->ifindex;
	info.mtu = ndev->mtu;
	info.type = ndev->type;
	info.addr_len = min_t(u8, ndev->addr_len, sizeof(info.addr));
	memcpy(info.addr, ndev->dev_addr, info.addr_len);

	err = ferrite_rs_dev_create(&info, &rs);
	if (err == -EEXIST)
		pr_err("ferrite: %s already carries a ferrite device\n",
		       ndev->name);
	else if (err == -EINVAL)
		pr_err("ferrite: %s is not an Ethernet device with a unicast MAC\n",
		       ndev->name);
	if (err)
		return err;

	fdev = ib_alloc_device(ferrite_dev, ibdev);
	if (!fdev) {
		ferrite_rs_dev_destroy(rs);
		return -ENOMEM;
	}
	/* From here on ib_dealloc_device() undoes everything (->dealloc_driver). */
	fdev->rs = rs;
	fdev->ndev = ndev;
	dev_hold(ndev);
	INIT_LIST_HEAD(&fdev->list);
	INIT_LIST_HEAD(&fdev->net_node);
	xa_init_flags(&fdev->qps, XA_FLAGS_ALLOC);
	ib_set_device_ops(&fdev->ibdev, &ferrite_dev_ops);

	ferrite_rs_dev_query(rs, &attr);
	fdev->ibdev.node_type = RDMA_NODE_IB_CA;
	fdev->ibdev.node_guid = (__force __be64)attr.node_guid;
	fdev->ibdev.phys_port_cnt = 1;
	fdev->ibdev.num_comp_vectors = 1;
	strscpy(fdev->ibdev.node_desc, "ferrite", sizeof(fdev->ibdev.node_desc));
	ferrite_set_uverbs_cmds(&fdev->ibdev);
	ferrite_set_sysfs_group(&fdev->ibdev);

	/*
	 * Join the list before registering, unless the netdev is already on
	 * its way out: its NETDEV_UNREGISTER notifier runs after reg_state
	 * changes, and takes ferrite_lock, so it either sees this entry or we
	 * see the new state.
	 */
	mutex_lock(&ferrite_lock);
	if (ndev->reg_state != NETREG_REGISTERED) {
		mutex_unlock(&ferrite_lock);
		err = -ENODEV;
		goto err_dealloc;
	}
	list_add_tail(&fdev->list, &ferrite_devices);
	atomic_inc(&ferrite_ndevs);
	mutex_unlock(&ferrite_lock);

	err = ferrite_net_attach(fdev);
	if (err)
		goto err_dealloc;
	err = ib_device_set_netdev(&fdev->ibdev, ndev, 1);
	if (err)
		goto err_dealloc;
	err = ib_register_device(&fdev->ibdev, name, NULL);
	if (err) {
		pr_err("ferrite: registering %s on %s failed: %d\n", name,
		       ndev->name, err);
		goto err_dealloc;
	}

	mutex_lock(&ferrite_lock);
	fdev->registered = true;
	doomed = fdev->doomed;
	mutex_unlock(&ferrite_lock);
	if (doomed)
		ib_unregister_device_queued(&fdev->ibdev);
	else
		pr_info("ferrite: %s added on %s\n", name, ndev->name);
	return 0;

err_dealloc:
	ib_dealloc_device(&fdev->ibdev);
	return err;
}

static struct rdma_link_ops ferrite_link_ops = {
	.type = "ferrite",
	.newlink = ferrite_newlink,
};

static void ferrite_port_event(struct ferrite_dev *fdev,
			       enum ib_event_type type)
{
	struct ib_event ev = {
		.device = &fdev->ibdev,
		.element.port_num = 1,
		.event = type,
	};

	ib_dispatch_event(&ev);
}

static int ferrite_netdev_event(struct notifier_block *nb,
				unsigned long event, void *ptr)
{
	struct net_device *ndev = netdev_notifier_info_to_dev(ptr);
	struct ferrite_dev *fdev;

	mutex_lock(&ferrite_lock);
	list_for_each_entry(fdev, &ferrite_devices, list) {
		if (fdev->ndev != ndev)
			continue;
		switch (event) {
		case NETDEV_UNREGISTER:
			/* Under RTNL: the core unregisters from a work item. */
			if (fdev->registered &&
			    !fdev->doomed)
				ib_unregister_device_queued(&fdev->ibdev);
			fdev->doomed = true;
			break;
		case NETDEV_UP:
		case NETDEV_DOWN:
		case NETDEV_CHANGE:
			if (!fdev->registered)
				break;
			if (netif_running(ndev) && netif_carrier_ok(ndev))
				ferrite_port_event(fdev, IB_EVENT_PORT_ACTIVE);
			else
				ferrite_port_event(fdev, IB_EVENT_PORT_ERR);
			break;
		default:
			break;
		}
	}
	mutex_unlock(&ferrite_lock);
	return NOTIFY_DONE;
}

static struct notifier_block ferrite_netdev_nb = {
	.notifier_call = ferrite_netdev_event,
};

static int __init ferrite_init(void)
{
	int err;

	err = ferrite_rs_init();
	if (err)
		return err;
	err = ferrite_stats_init();
	if (err)
		goto err_rs;
	ferrite_wq = alloc_workqueue("ferrite", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!ferrite_wq) {
		err = -ENOMEM;
		goto err_rs;
	}
	err = ferrite_net_init();
	if (err)
		goto err_wq;
	err = register_netdevice_notifier(&ferrite_netdev_nb);
	if (err)
		goto err_net;
	rdma_link_register(&ferrite_link_ops);
	pr_info("ferrite: loaded, link type \"ferrite\" (compat ABI %d)\n",
		FERRITE_COMPAT_ABI);
	return 0;

err_net:
	ferrite_net_exit();
err_wq:
	destroy_workqueue(ferrite_wq);
err_rs:
	ferrite_rs_exit();
	return err;
}

/* Take a registration reference on some device still registered, if any. */
static struct ferrite_dev *ferrite_get_registered(void)
{
	struct ferrite_dev *fdev;

	mutex_lock(&ferrite_lock);
	list_for_each_entry(fdev, &ferrite_devices, list) {
		if (fdev->registered &&
		    ib_device_try_get(&fdev->ibdev)) {
			mutex_unlock(&ferrite_lock);
			return fdev;
		}
	}
	mutex_unlock(&ferrite_lock);
	return NULL;
}

static void __exit ferrite_exit(void)
{
	struct ferrite_dev *fdev;

	/* After these, no new device can appear and no notifier runs. */
	rdma_link_unregister(&ferrite_link_ops);
	unregister_netdevice_notifier(&ferrite_netdev_nb);

	while ((fdev = ferrite_get_registered()))
		ib_unregister_device_and_put(&fdev->ibdev);
	/* Unregistrations queued by netdev removal finish on their own. */
	wait_event(ferrite_release_wq, atomic_read(&ferrite_ndevs) == 0);
	ferrite_uverbs_report_leaks();
	ferrite_net_exit();
	destroy_workqueue(ferrite_wq);
	ferrite_rs_exit();
	pr_info("ferrite: unloaded\n");
}

module_init(ferrite_init);
module_exit(ferrite_exit);

MODULE_ALIAS_RDMA_LINK("ferrite");
MODULE_DESCRIPTION("ferrite: software RoCE v2 device, driver logic in Rust");
MODULE_LICENSE("GPL");
