// SPDX-License-Identifier: GPL-2.0
#include <rdma/ib_verbs.h>

static void probe(struct ib_device *dev)
{
	dev->uverbs_ex_cmd_mask = 0;
}

void (*probe_fn)(struct ib_device *dev) = probe;
