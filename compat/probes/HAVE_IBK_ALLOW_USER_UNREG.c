// SPDX-License-Identifier: GPL-2.0
#include <rdma/ib_verbs.h>

static void probe(struct ib_device *dev)
{
	dev->attrs.kernel_cap_flags |= IBK_ALLOW_USER_UNREG;
}

void (*probe_fn)(struct ib_device *dev) = probe;
