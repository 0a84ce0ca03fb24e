// SPDX-License-Identifier: GPL-2.0
#include <rdma/ib_umem.h>

struct sg_table *probe(struct ib_umem *umem)
{
	return &umem->sgt_append.sgt;
}
