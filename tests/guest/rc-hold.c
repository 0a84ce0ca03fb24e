// SPDX-License-Identifier: GPL-2.0
/*
 * rc-hold: a connected pair of RC QPs, held open and idle between rounds of
 * checked traffic, for the boot test's malformed-packet checks
 * (tests/guest/malformed.sh).  Built inside each target's root against its
 * libibverbs.
 *
 *   rc-hold DEV_A GID_INDEX_A DEV_B GID_INDEX_B
 *
 * QP a on DEV_A and QP b on DEV_B are connected to each other (MTU 1024).  The
 * program prints "qp a QPN RQ_PSN SQ_PSN RKEY VA" (the key and address of a's
 * remotely writable buffer) and "ready", then reads commands from stdin, one a
 * line, and answers each with one line:
 *
 *   state   "state ok a QPN RQ_PSN SQ_PSN" when both QPs are in RTS, neither CQ
 *           holds a completion and a's memory is as the last round left it
 *           (a forged packet that was accepted shows as one of these), else
 *           "state bad REASON"
 *   round   both QPs SEND 2500 bytes (3 packets) and RDMA WRITE 3000 bytes to
 *           each other; every completion and every byte is checked: "round N
 *           ok" or "round N bad REASON"
 *
 * At the end of stdin it exits 0 only if every answer was ok.  Between rounds a
 * receive is posted on each QP, so that a SEND that should have been dropped
 * would complete it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <infiniband/verbs.h>

#define SEND_LEN	2500
#define WRITE_LEN	3000
#define AREA		4096
#define POISON		0xe7

/* One side's buffer: what it receives into, what it is written to, sources. */
enum { RECV_AREA, WRITE_AREA, SEND_SRC, WRITE_SRC, AREAS };

struct side {
	const char *name;
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_qp *qp;
	struct ibv_mr *mr;
	uint8_t *buf;
	uint8_t expect[AREA];	/* WRITE_AREA as the last round left it */
	union ibv_gid gid;
	int gid_index;
	uint32_t psn;		/* the first PSN it sends */
};

static int bad;

static uint8_t *area(const struct side *s, int i)
{
	return s->buf + i * AREA;
}

static void fill(uint8_t *p, size_t n, unsigned int seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31 + seed * 7 + (i >> 8));
}

static struct ibv_context *open_dev(const char *name)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;
	int i;

	for (i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			ctx = ibv_open_device(list[i]);
	ibv_free_device_list(list);
	return ctx;
}

static int setup(struct side *s, const char *dev, int gid_index)
{
	struct ibv_qp_init_attr init = { 0 };
	struct ibv_qp_attr a = { 0 };

	s->ctx = open_dev(dev);
	if (!s->ctx) {
		fprintf(stderr, "rc-hold: no device %s\n", dev);
		return 1;
	}
	s->gid_index = gid_index;
	s->buf = aligned_alloc(4096, AREAS * AREA);
	s->pd = ibv_alloc_pd(s->ctx);
	s->cq = ibv_create_cq(s->ctx, 64, NULL, NULL, 0);
	if (!s->buf || !s->pd || !s->cq || ibv_query_gid(s->ctx, 1, gid_index, &s->gid))
		return 1;
	memset(s->buf, POISON, AREAS * AREA);
	memset(s->expect, POISON, AREA);
	s->mr = ibv_reg_mr(s->pd, s->buf, AREAS * AREA,
			   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	init.send_cq = s->cq;
	init.recv_cq = s->cq;
	init.qp_type = IBV_QPT_RC;
	init.cap.max_send_wr = 16;
	init.cap.max_recv_wr = 16;
	init.cap.max_send_sge = 1;
	init.cap.max_recv_sge = 1;
	s->qp = s->mr ? ibv_create_qp(s->pd, &init) : NULL;
	if (!s->qp)
		return 1;
	a.qp_state = IBV_QPS_INIT;
	a.port_num = 1;
	a.qp_access_flags = IBV_ACCESS_REMOTE_WRITE;
	return ibv_modify_qp(s->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX |
			     IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

static int connect_to(struct side *s, const struct side *peer)
{
	struct ibv_qp_attr a = { 0 };

	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_1024;
	a.dest_qp_num = peer->qp->qp_num;
	a.rq_psn = peer->psn;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = peer->gid;
	a.ah_attr.grh.sgid_index = s->gid_index;
	a.ah_attr.grh.hop_limit = 64;
	a.ah_attr.port_num = 1;
	if (ibv_modify_qp(s->qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
			  IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
			  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		return 1;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.sq_psn = s->psn;
	a.max_rd_atomic = 1;
	return ibv_modify_qp(s->qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT |
			     IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
			     IBV_QP_MAX_QP_RD_ATOMIC);
}

/* Poison the receive area and post a receive for it. */
static int post_recv(struct side *s)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)area(s, RECV_AREA),
		.length = AREA,
		.lkey = s->mr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = 1, .sg_list = &sge, .num_sge = 1 };
	struct ibv_recv_wr *badwr;

	memset(area(s, RECV_AREA), POISON, AREA);
	return ibv_post_recv(s->qp, &wr, &badwr);
}

static int query(struct side *s, struct ibv_qp_attr *a)
{
	struct ibv_qp_init_attr init;

	return ibv_query_qp(s->qp, a, IBV_QP_STATE | IBV_QP_RQ_PSN | IBV_QP_SQ_PSN,
			    &init);
}

/* Nothing happened on the side since the last round; 0 or why not. */
static const char *quiet(struct side *s)
{
	static char why[96];
	struct ibv_qp_attr a = { 0 };
	struct ibv_wc wc;
	int i;

	if (query(s, &a) || a.qp_state != IBV_QPS_RTS) {
		snprintf(why, sizeof(why), "%s: QP state %d", s->name, a.qp_state);
		return why;
	}
	if (ibv_poll_cq(s->cq, 1, &wc) != 0) {
		snprintf(why, sizeof(why), "%s: a completion (status %d, opcode %d)",
			 s->name, wc.status, wc.opcode);
		return why;
	}
	if (memcmp(area(s, WRITE_AREA), s->expect, AREA))
		return "written to between rounds";
	for (i = 0; i < AREA; i++)
		if (area(s, RECV_AREA)[i] != POISON)
			return "received into between rounds";
	return NULL;
}

static int post_send(struct side *s, const struct side *peer, int write,
		     uint64_t wr_id)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)area(s, write ? WRITE_SRC : SEND_SRC),
		.length = write ? WRITE_LEN : SEND_LEN,
		.lkey = s->mr->lkey,
	};
	struct ibv_send_wr wr = {
		.wr_id = wr_id,
		.sg_list = &sge,
		.num_sge = 1,
		.opcode = write ? IBV_WR_RDMA_WRITE : IBV_WR_SEND,
		.send_flags = IBV_SEND_SIGNALED,
	};
	struct ibv_send_wr *badwr;

	if (write) {
		wr.wr.rdma.remote_addr = (uintptr_t)area(peer, WRITE_AREA);
		wr.wr.rdma.rkey = peer->mr->rkey;
	}
	return ibv_post_send(s->qp, &wr, &badwr);
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* Wait for SEND, WRITE and receive completions on `s`; 0 or why not. */
static const char *reap(struct side *s)
{
	static char why[96];
	int got[3] = { 0 }, n = 0, k;
	double end = now() + 30;
	struct ibv_wc wc;

	while (n < 3) {
		k = ibv_poll_cq(s->cq, 1, &wc);
		if (k < 0)
			return "poll_cq failed";
		if (k == 0) {
			if (now() > end) {
				snprintf(why, sizeof(why), "%s: %d of 3 completions in 30 s",
					 s->name, n);
				return why;
			}
			continue;
		}
		if (wc.status != IBV_WC_SUCCESS || wc.wr_id > 2 || got[wc.wr_id]++) {
			snprintf(why, sizeof(why), "%s: completion wr_id %llu status %s",
				 s->name, (unsigned long long)wc.wr_id,
				 ibv_wc_status_str(wc.status));
			return why;
		}
		if (wc.wr_id == 1 && (wc.opcode != IBV_WC_RECV ||
				      wc.byte_len != SEND_LEN))
			return "receive: wrong opcode or length";
		n++;
	}
	return NULL;
}

static int check_bytes(struct side *s, const struct side *peer)
{
	const uint8_t *r = area(s, RECV_AREA);
	int i;

	if (memcmp(r, area(peer, SEND_SRC), SEND_LEN))
		return 1;
	for (i = SEND_LEN; i < AREA; i++)
		if (r[i] != POISON)
			return 1;
	memcpy(s->expect, area(peer, WRITE_SRC), WRITE_LEN);
	return memcmp(area(s, WRITE_AREA), s->expect, AREA) != 0;
}

static const char *round_trip(struct side *a, struct side *b, unsigned int k)
{
	const char *why;

	fill(area(a, SEND_SRC), SEND_LEN, 4 * k);
	fill(area(b, SEND_SRC), SEND_LEN, 4 * k + 1);
	fill(area(a, WRITE_SRC), WRITE_LEN, 4 * k + 2);
	fill(area(b, WRITE_SRC), WRITE_LEN, 4 * k + 3);
	if (post_send(a, b, 0, 0) || post_send(a, b, 1, 2) ||
	    post_send(b, a, 0, 0) || post_send(b, a, 1, 2))
		return "post_send failed";
	why = reap(a);
	if (!why)
		why = reap(b);
	if (why)
		return why;
	if (check_bytes(a, b))
		return "a: bytes differ";
	if (check_bytes(b, a))
		return "b: bytes differ";
	if (post_recv(a) || post_recv(b))
		return "post_recv failed";
	return NULL;
}

int main(int argc, char **argv)
{
	struct side a = { .name = "a", .psn = 0x3a5a5a }, b = { .name = "b", .psn = 0xc0ffee };
	unsigned int rounds = 0;
	struct ibv_qp_attr qa;
	const char *why;
	char line[64];

	if (argc != 5) {
		fprintf(stderr, "usage: rc-hold DEV_A GID_INDEX_A DEV_B GID_INDEX_B\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (setup(&a, argv[1], atoi(argv[2])) || setup(&b, argv[3], atoi(argv[4])) ||
	    connect_to(&a, &b) || connect_to(&b, &a) || post_recv(&a) || post_recv(&b)) {
		fprintf(stderr, "rc-hold: setup failed: %s\n", strerror(errno));
		return 1;
	}
	printf("qp a 0x%x 0x%x 0x%x 0x%x 0x%llx\n", a.qp->qp_num, b.psn, a.psn,
	       a.mr->rkey, (unsigned long long)(uintptr_t)area(&a, WRITE_AREA));
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin)) {
		if (!strncmp(line, "state", 5)) {
			why = quiet(&a);
			if (!why)
				why = quiet(&b);
			if (why || query(&a, &qa)) {
				printf("state bad %s\n", why ? why : "query_qp failed");
				bad = 1;
				continue;
			}
			printf("state ok a 0x%x 0x%x 0x%x\n", a.qp->qp_num, qa.rq_psn,
			       qa.sq_psn);
		} else if (!strncmp(line, "round", 5)) {
			why = round_trip(&a, &b, ++rounds);
			printf("round %u %s%s\n", rounds, why ? "bad " : "ok", why ? why : "");
			bad |= why != NULL;
		} else {
			printf("bad command\n");
			bad = 1;
		}
	}
	ibv_destroy_qp(a.qp);
	ibv_destroy_qp(b.qp);
	return bad;
}
