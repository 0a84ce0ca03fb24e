// SPDX-License-Identifier: GPL-2.0
#include <rdma/ib_umem.h>

static struct ib_umem *probe(struct ib_device *dev, unsigned long addr,
			     size_t size, int access)
{
	return ib_umem_get_va(dev, addr, size, access);
}

struct ib_umem *(*probe_fn)(struct ib_device *dev, unsigned long addr,
			    size_t size, int access) = probe;
