// SPDX-License-Identifier: GPL-2.0
/*
 * Compiled inside each target's root at build time, against that release's
 * own installed headers: the public verbs and uverbs structures that
 * provider/src/sys.rs mirrors must have the layout it assumes there.  A
 * release that moves one fails the build here, before any user runs it.
 * (driver.h is not installed; the private layouts are pinned per release in
 * sys.rs, measured from each release's sources.)
 *
 * struct ibv_qp_ex grew in v44 (wr_atomic_write) and v45 (wr_flush), and sys.rs
 * picks its layout from the release's major number.  Given that number as
 * -DFERRITE_RDMA_CORE_MAJOR=N, this file checks the exact layout for it; without
 * it, only that the size is one of the three sys.rs knows.
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

/* Extended CQ (provider/src/cq_ex.rs). */
LAYOUT(sizeof(struct ibv_cq_ex) == 288);
LAYOUT(offsetof(struct ibv_cq_ex, comp_events_completed) == 120);
LAYOUT(offsetof(struct ibv_cq_ex, comp_mask) == 128);
LAYOUT(offsetof(struct ibv_cq_ex, status) == 132);
LAYOUT(offsetof(struct ibv_cq_ex, wr_id) == 136);
LAYOUT(offsetof(struct ibv_cq_ex, start_poll) == 144);
LAYOUT(offsetof(struct ibv_cq_ex, read_opcode) == 168);
LAYOUT(offsetof(struct ibv_cq_ex, read_wc_flags) == 216);
LAYOUT(offsetof(struct ibv_cq_ex, read_dlid_path_bits) == 240);
LAYOUT(offsetof(struct ibv_cq_ex, read_completion_ts) == 248);
LAYOUT(offsetof(struct ibv_cq_ex, read_completion_wallclock_ns) == 280);
LAYOUT(sizeof(struct ibv_cq_init_attr_ex) == 56);
LAYOUT(offsetof(struct ibv_cq_init_attr_ex, wc_flags) == 32);
LAYOUT(offsetof(struct ibv_cq_init_attr_ex, comp_mask) == 40);
LAYOUT(offsetof(struct ibv_cq_init_attr_ex, flags) == 44);
LAYOUT(offsetof(struct ibv_cq_init_attr_ex, parent_domain) == 48);
LAYOUT(IBV_WC_STANDARD_FLAGS == 0x7f);
LAYOUT(IBV_WC_EX_WITH_BYTE_LEN == 1 && IBV_WC_EX_WITH_DLID_PATH_BITS == 1 << 6);
LAYOUT(IBV_CQ_INIT_ATTR_MASK_FLAGS == 1 && IBV_CQ_INIT_ATTR_MASK_PD == 2);
LAYOUT(IBV_CREATE_CQ_ATTR_SINGLE_THREADED == 1 && IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN == 2);
LAYOUT(sizeof(struct ib_uverbs_ex_cmd_hdr) == 16);
LAYOUT(sizeof(struct ib_uverbs_ex_create_cq) == 32);
LAYOUT(sizeof(struct ib_uverbs_ex_create_cq_resp) == 16);

/* QPs (provider/src/qp.rs). */
LAYOUT(sizeof(struct ibv_qp) == 160);
LAYOUT(offsetof(struct ibv_qp, handle) == 48);
LAYOUT(offsetof(struct ibv_qp, qp_num) == 52);
LAYOUT(offsetof(struct ibv_qp, state) == 56);
LAYOUT(offsetof(struct ibv_qp, qp_type) == 60);
LAYOUT(offsetof(struct ibv_qp, events_completed) == 152);
LAYOUT(sizeof(struct ibv_qp_cap) == 20);
LAYOUT(sizeof(struct ibv_qp_init_attr) == 64);
LAYOUT(offsetof(struct ibv_qp_init_attr, cap) == 32);
LAYOUT(offsetof(struct ibv_qp_init_attr, qp_type) == 52);
LAYOUT(offsetof(struct ibv_qp_init_attr, sq_sig_all) == 56);
LAYOUT(sizeof(struct ibv_qp_init_attr_ex) == 136);
LAYOUT(offsetof(struct ibv_qp_init_attr_ex, cap) == 32);
LAYOUT(offsetof(struct ibv_qp_init_attr_ex, comp_mask) == 60);
LAYOUT(offsetof(struct ibv_qp_init_attr_ex, pd) == 64);
LAYOUT(offsetof(struct ibv_qp_init_attr_ex, xrcd) == 72);
LAYOUT(offsetof(struct ibv_qp_init_attr_ex, create_flags) == 80);
LAYOUT(offsetof(struct ibv_qp_init_attr_ex, max_tso_header) == 84);
LAYOUT(offsetof(struct ibv_qp_init_attr_ex, rwq_ind_tbl) == 88);
LAYOUT(offsetof(struct ibv_qp_init_attr_ex, rx_hash_conf) == 96);
LAYOUT(sizeof(struct ibv_rx_hash_conf) == 24);
LAYOUT(offsetof(struct ibv_qp_init_attr_ex, source_qpn) == 120);
LAYOUT(offsetof(struct ibv_qp_init_attr_ex, send_ops_flags) == 128);
LAYOUT(IBV_QPT_RC == 2 && IBV_QPT_UC == 3);
LAYOUT(IBV_QPS_RESET == 0 && IBV_QPS_INIT == 1 && IBV_QPS_RTR == 2);
LAYOUT(IBV_QP_INIT_ATTR_PD == 1 && IBV_QP_INIT_ATTR_CREATE_FLAGS == 4 &&
       IBV_QP_INIT_ATTR_SEND_OPS_FLAGS == 64);
LAYOUT(IBV_QP_EX_WITH_RDMA_WRITE == 1 && IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM == 2 &&
       IBV_QP_EX_WITH_SEND == 4 && IBV_QP_EX_WITH_SEND_WITH_IMM == 8 &&
       IBV_QP_EX_WITH_RDMA_READ == 16 && IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP == 32 &&
       IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD == 64 && IBV_QP_EX_WITH_LOCAL_INV == 128 &&
       IBV_QP_EX_WITH_BIND_MW == 256 && IBV_QP_EX_WITH_SEND_WITH_INV == 512 &&
       IBV_QP_EX_WITH_TSO == 1024);

/* Work requests: the same numbers as ferrite_abi::wq::opcode and send_flags. */
LAYOUT(sizeof(struct ibv_sge) == 16);
LAYOUT(offsetof(struct ibv_sge, lkey) == 12);
LAYOUT(sizeof(struct ibv_data_buf) == 16);
LAYOUT(sizeof(struct ibv_mw_bind_info) == 32);
LAYOUT(sizeof(struct ibv_send_wr) == 128);
LAYOUT(offsetof(struct ibv_send_wr, next) == 8);
LAYOUT(offsetof(struct ibv_send_wr, sg_list) == 16);
LAYOUT(offsetof(struct ibv_send_wr, num_sge) == 24);
LAYOUT(offsetof(struct ibv_send_wr, opcode) == 28);
LAYOUT(offsetof(struct ibv_send_wr, send_flags) == 32);
LAYOUT(offsetof(struct ibv_send_wr, imm_data) == 36);
LAYOUT(offsetof(struct ibv_send_wr, wr) == 40);
LAYOUT(sizeof(((struct ibv_send_wr *)0)->wr) == 32);
LAYOUT(offsetof(struct ibv_send_wr, wr.rdma.rkey) == 48);
LAYOUT(offsetof(struct ibv_send_wr, wr.atomic.compare_add) == 48);
LAYOUT(offsetof(struct ibv_send_wr, wr.atomic.swap) == 56);
LAYOUT(offsetof(struct ibv_send_wr, wr.atomic.rkey) == 64);
LAYOUT(offsetof(struct ibv_send_wr, wr.ud.remote_qkey) == 52);
LAYOUT(offsetof(struct ibv_send_wr, qp_type.xrc.remote_srqn) == 72);
LAYOUT(offsetof(struct ibv_send_wr, bind_mw) == 80);
LAYOUT(offsetof(struct ibv_send_wr, bind_mw.bind_info) == 96);
LAYOUT(offsetof(struct ibv_send_wr, tso) == 80);
LAYOUT(sizeof(struct ibv_recv_wr) == 32);
LAYOUT(offsetof(struct ibv_recv_wr, num_sge) == 24);
LAYOUT(IBV_WR_RDMA_WRITE == 0 && IBV_WR_RDMA_WRITE_WITH_IMM == 1 && IBV_WR_SEND == 2 &&
       IBV_WR_SEND_WITH_IMM == 3 && IBV_WR_RDMA_READ == 4 &&
       IBV_WR_ATOMIC_CMP_AND_SWP == 5 && IBV_WR_ATOMIC_FETCH_AND_ADD == 6 &&
       IBV_WR_LOCAL_INV == 7 && IBV_WR_BIND_MW == 8 && IBV_WR_SEND_WITH_INV == 9 &&
       IBV_WR_TSO == 10 && IBV_WR_DRIVER1 == 11);
LAYOUT(IBV_SEND_FENCE == 1 && IBV_SEND_SIGNALED == 2 && IBV_SEND_SOLICITED == 4 &&
       IBV_SEND_INLINE == 8 && IBV_SEND_IP_CSUM == 16);

/* struct ibv_qp_ex: the members every release has ... */
LAYOUT(offsetof(struct ibv_qp_ex, qp_base) == 0);
LAYOUT(offsetof(struct ibv_qp_ex, comp_mask) == 160);
LAYOUT(offsetof(struct ibv_qp_ex, wr_id) == 168);
LAYOUT(offsetof(struct ibv_qp_ex, wr_flags) == 176);
LAYOUT(offsetof(struct ibv_qp_ex, wr_atomic_cmp_swp) == 184);
LAYOUT(offsetof(struct ibv_qp_ex, wr_atomic_fetch_add) == 192);
LAYOUT(offsetof(struct ibv_qp_ex, wr_bind_mw) == 200);
LAYOUT(offsetof(struct ibv_qp_ex, wr_local_inv) == 208);
LAYOUT(offsetof(struct ibv_qp_ex, wr_rdma_read) == 216);
LAYOUT(offsetof(struct ibv_qp_ex, wr_rdma_write) == 224);
LAYOUT(offsetof(struct ibv_qp_ex, wr_rdma_write_imm) == 232);
LAYOUT(offsetof(struct ibv_qp_ex, wr_send) == 240);
LAYOUT(offsetof(struct ibv_qp_ex, wr_send_imm) == 248);
LAYOUT(offsetof(struct ibv_qp_ex, wr_send_inv) == 256);
LAYOUT(offsetof(struct ibv_qp_ex, wr_send_tso) == 264);
LAYOUT(offsetof(struct ibv_qp_ex, wr_set_ud_addr) == 272);
LAYOUT(offsetof(struct ibv_qp_ex, wr_set_xrc_srqn) == 280);
LAYOUT(offsetof(struct ibv_qp_ex, wr_set_inline_data) == 288);
LAYOUT(offsetof(struct ibv_qp_ex, wr_set_inline_data_list) == 296);
LAYOUT(offsetof(struct ibv_qp_ex, wr_set_sge) == 304);
LAYOUT(offsetof(struct ibv_qp_ex, wr_set_sge_list) == 312);
LAYOUT(offsetof(struct ibv_qp_ex, wr_start) == 320);
LAYOUT(offsetof(struct ibv_qp_ex, wr_complete) == 328);
LAYOUT(offsetof(struct ibv_qp_ex, wr_abort) == 336);

/* ... and the ones appended in v44 and v45 (sys.rs: QP_EX_TAIL). */
#ifdef FERRITE_RDMA_CORE_MAJOR
#if FERRITE_RDMA_CORE_MAJOR >= 45
LAYOUT(offsetof(struct ibv_qp_ex, wr_atomic_write) == 344);
LAYOUT(offsetof(struct ibv_qp_ex, wr_flush) == 352);
LAYOUT(sizeof(struct ibv_qp_ex) == 360);
LAYOUT(IBV_WR_FLUSH == 14 && IBV_QP_EX_WITH_FLUSH == 1 << 11);
#elif FERRITE_RDMA_CORE_MAJOR >= 44
LAYOUT(offsetof(struct ibv_qp_ex, wr_atomic_write) == 344);
LAYOUT(sizeof(struct ibv_qp_ex) == 352);
#else
LAYOUT(sizeof(struct ibv_qp_ex) == 344);
#endif
#if FERRITE_RDMA_CORE_MAJOR >= 44
LAYOUT(IBV_WR_ATOMIC_WRITE == 15 && IBV_QP_EX_WITH_ATOMIC_WRITE == 1 << 12);
#endif
#else
LAYOUT(sizeof(struct ibv_qp_ex) == 344 || sizeof(struct ibv_qp_ex) == 352 ||
       sizeof(struct ibv_qp_ex) == 360);
#endif

/* The core's QP commands, followed by no driver data. */
LAYOUT(sizeof(struct ib_uverbs_create_qp) == 56);
LAYOUT(sizeof(struct ib_uverbs_ex_create_qp) == 64);
LAYOUT(sizeof(struct ib_uverbs_create_qp_resp) == 32);
LAYOUT(sizeof(struct ib_uverbs_ex_create_qp_resp) == 40);
LAYOUT(sizeof(struct ib_uverbs_qp_dest) == 32);
LAYOUT(sizeof(struct ib_uverbs_modify_qp) == 112);
LAYOUT(sizeof(struct ib_uverbs_query_qp) == 16);
LAYOUT(sizeof(struct ib_uverbs_post_send) == 24);
LAYOUT(sizeof(struct ib_uverbs_send_wr) == 56);

int main(void)
{
	return 0;
}
