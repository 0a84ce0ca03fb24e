// SPDX-License-Identifier: GPL-2.0
/*
 * Compiled inside each target's root at build time, against that release's
 * own installed headers: the public verbs and uverbs structures that
 * provider/src/sys.rs mirrors must have the layout it assumes there.  A
 * release that moves one fails the build here, before any user runs it.
 * (driver.h is not installed; the private layouts are pinned per release in
 * sys.rs, measured from each release's sources.)
 */
#include <stddef.h>
#include <infiniband/verbs.h>
#include <rdma/ib_user_verbs.h>

#define LAYOUT(cond) _Static_assert(cond, #cond)

LAYOUT(sizeof(struct ibv_context) == 328);
LAYOUT(offsetof(struct ibv_context, cmd_fd) == 264);
LAYOUT(sizeof(struct ibv_pd) == 16);
LAYOUT(offsetof(struct ibv_pd, handle) == 8);
LAYOUT(sizeof(struct ibv_mr) == 48);
LAYOUT(offsetof(struct ibv_mr, lkey) == 36);
LAYOUT(sizeof(struct ibv_cq) == 128);
LAYOUT(offsetof(struct ibv_cq, handle) == 24);
LAYOUT(offsetof(struct ibv_cq, cqe) == 28);
LAYOUT(sizeof(struct ibv_wc) == 48);
LAYOUT(offsetof(struct ibv_wc, byte_len) == 20);
LAYOUT(offsetof(struct ibv_wc, pkey_index) == 40);
LAYOUT(sizeof(struct ib_uverbs_cmd_hdr) == 8);
LAYOUT(sizeof(struct ib_uverbs_get_context) == 8);
LAYOUT(sizeof(struct ib_uverbs_get_context_resp) == 8);
LAYOUT(sizeof(struct ib_uverbs_alloc_pd_resp) == 4);
LAYOUT(sizeof(struct ib_uverbs_reg_mr) == 40);
LAYOUT(sizeof(struct ib_uverbs_reg_mr_resp) == 12);
LAYOUT(sizeof(struct ib_uverbs_create_cq) == 32);
LAYOUT(sizeof(struct ib_uverbs_create_cq_resp) == 8);
LAYOUT(sizeof(struct ib_uverbs_query_port) == 16);
LAYOUT(sizeof(struct ib_uverbs_ex_query_device_resp) == 304);
LAYOUT(offsetof(struct ib_uverbs_ex_query_device_resp, base.fw_ver) == 0);

int main(void)
{
	return 0;
}
