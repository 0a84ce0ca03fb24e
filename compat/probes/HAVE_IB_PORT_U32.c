// SPDX-License-Identifier: GPL-2.0
#include <rdma/ib_verbs.h>

static int probe(struct ib_device *dev, u32 port, struct ib_port_attr *attr)
{
	return 0;
}

const struct ib_device_ops probe_ops = { .query_port = probe };
