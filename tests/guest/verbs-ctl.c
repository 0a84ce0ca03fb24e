// SPDX-License-Identifier: GPL-2.0
/*
 * verbs-ctl: the control-path test of ferrite's provider, through the public
 * verbs API of the target's own libibverbs.  Built inside each target's root.
 *
 *   verbs-ctl DEV        run the checks; one "ok - NAME" / "not ok - NAME" line
 *                        each, with "# " lines of detail before it
 *   verbs-ctl DEV hold   allocate a PD, MR and CQ (with a completion channel),
 *                        print "held", then sleep (the boot test kills it with
 *                        SIGKILL)
 *   verbs-ctl DEV orphan hold as above, wait for a line on stdin while the boot
 *                        test removes the device, then check what a process sees of
 *                        a device removed under it: the DEVICE_FATAL event, an
 *                        empty CQ, and teardown calls that succeed (or say EIO)
 *   verbs-ctl DEV memlock  run without CAP_IPC_LOCK under a 1 MiB
 *                        RLIMIT_MEMLOCK: 8 MiB must fail with ENOMEM, 4 KiB pass
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <infiniband/verbs.h>

static int failed;

static void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static void result(const char *name, int ok)
{
	printf("%s - %s\n", ok ? "ok" : "not ok", name);
	fflush(stdout);
	if (!ok)
		failed = 1;
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

/* Register, check the keys, deregister; returns 0 or the errno of reg. */
static int reg_dereg(struct ibv_pd *pd, void *addr, size_t len, int access)
{
	struct ibv_mr *mr = ibv_reg_mr(pd, addr, len, access);
	int err;

	if (!mr)
		return errno;
	if (mr->lkey == 0 || mr->lkey != mr->rkey || mr->addr != addr ||
	    mr->length != len) {
		diag("MR %p+%zu: lkey %#x rkey %#x addr %p length %zu", addr,
		     len, mr->lkey, mr->rkey, mr->addr, mr->length);
		ibv_dereg_mr(mr);
		return -1;
	}
	err = ibv_dereg_mr(mr);
	if (err) {
		diag("dereg_mr: %d", err);
		return -1;
	}
	return 0;
}

static void t_query(struct ibv_context *ctx, struct ibv_device_attr_ex *a)
{
	struct ibv_port_attr p;
	int ok;

	ok = !ibv_query_device_ex(ctx, NULL, a);
	ok = ok && a->orig_attr.max_pd == 4096 && a->orig_attr.max_cqe == 32767 &&
	     a->orig_attr.vendor_id == 0xffffff &&
	     a->orig_attr.vendor_part_id == 0xfe02 &&
	     a->orig_attr.phys_port_cnt == 1;
	diag("max_pd %d max_cqe %d max_mr %d max_mr_size %#llx vendor %#x part %#x",
	     a->orig_attr.max_pd, a->orig_attr.max_cqe, a->orig_attr.max_mr,
	     (unsigned long long)a->orig_attr.max_mr_size,
	     a->orig_attr.vendor_id, a->orig_attr.vendor_part_id);
	result("provider_query_device", ok);

	ok = !ibv_query_port(ctx, 1, &p) && p.state == IBV_PORT_ACTIVE &&
	     p.link_layer == IBV_LINK_LAYER_ETHERNET && p.gid_tbl_len == 1024;
	diag("port 1: state %d active_mtu %d link_layer %d gid_tbl_len %d",
	     p.state, p.active_mtu, p.link_layer, p.gid_tbl_len);
	result("provider_query_port", ok);
}

static void t_pds(struct ibv_context *ctx)
{
	struct ibv_pd *pd[16];
	int i, ok = 1;

	for (i = 0; i < 16; i++)
		ok &= (pd[i] = ibv_alloc_pd(ctx)) != NULL;
	for (i = 0; i < 16; i++)
		ok &= pd[i] && !ibv_dealloc_pd(pd[i]);
	result("provider_pd_alloc_dealloc", ok);
}

static void t_mr_sizes(struct ibv_pd *pd)
{
	static const size_t sizes[] = { 1, 4095, 4096, 4097, 65536, 1 << 20,
					64 << 20 };
	static const size_t offsets[] = { 0, 1, 4095 };
	size_t i, j;
	char *buf = malloc((64 << 20) + 8192);
	int ok = buf != NULL, err;

	for (i = 0; ok && i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (j = 0; j < sizeof(offsets) / sizeof(offsets[0]); j++) {
			err = reg_dereg(pd, buf + offsets[j], sizes[i],
					IBV_ACCESS_LOCAL_WRITE);
			if (err) {
				diag("reg %zu bytes at offset %zu: %d", sizes[i],
				     offsets[j], err);
				ok = 0;
			}
		}
	free(buf);
	result("provider_mr_sizes_and_unaligned_starts", ok);
}

static void t_mr_access(struct ibv_pd *pd)
{
	static char buf[8192];
	int bits, ok = 1, err, want;

	for (bits = 0; bits < 16; bits++) {
		/* IB spec: remote write and atomic need local write. */
		want = ((bits & (IBV_ACCESS_REMOTE_WRITE |
				 IBV_ACCESS_REMOTE_ATOMIC)) &&
			!(bits & IBV_ACCESS_LOCAL_WRITE)) ? EINVAL : 0;
		err = reg_dereg(pd, buf, sizeof(buf), bits);
		if (err != want) {
			diag("access %#x: got %d, want %d", bits, err, want);
			ok = 0;
		}
	}
	result("provider_mr_access_flags", ok);
}

static void t_mr_invalid(struct ibv_pd *pd)
{
	static char buf[4096];
	int ok = 1, err;

	err = reg_dereg(pd, buf, 0, IBV_ACCESS_LOCAL_WRITE);
	diag("zero length: %d", err);
	ok &= err == EINVAL;
	err = reg_dereg(pd, buf, (1ULL << 40) + 1, IBV_ACCESS_LOCAL_WRITE);
	diag("over max_mr_size: %d", err);
	ok &= err == EINVAL;
	err = reg_dereg(pd, buf, sizeof(buf), 1 << 12);
	diag("unknown access bit: %d", err);
	ok &= err == EINVAL;
	err = reg_dereg(pd, buf, sizeof(buf), IBV_ACCESS_ON_DEMAND);
	diag("on-demand paging: %d", err);
	ok &= err == EOPNOTSUPP || err == EINVAL;
	result("provider_mr_invalid_requests", ok);
}

/*
 * Deregistering an MR a second time must fail cleanly.  The verbs API frees
 * the MR on success, so the second call goes through a byte copy of it (the
 * provider's verbs_mr: struct ibv_mr plus two ints), which still names the
 * kernel handle that is now gone.
 */
static void t_mr_dereg_twice(struct ibv_pd *pd)
{
	static char buf[4096];
	struct ibv_mr *mr = ibv_reg_mr(pd, buf, sizeof(buf),
				       IBV_ACCESS_LOCAL_WRITE);
	uint64_t copy[8] = { 0 };
	int first, second;

	if (!mr) {
		result("provider_mr_dereg_twice", 0);
		return;
	}
	memcpy(copy, mr, sizeof(struct ibv_mr) + 2 * sizeof(int));
	first = ibv_dereg_mr(mr);
	second = ibv_dereg_mr((struct ibv_mr *)copy);
	diag("dereg: %d, again: %d", first, second);
	/* The core finds no object for the handle: ENOENT, on every tree. */
	result("provider_mr_dereg_twice", first == 0 && second == ENOENT);
}

static void t_pd_in_use(struct ibv_context *ctx)
{
	static char buf[4096];
	struct ibv_pd *pd = ibv_alloc_pd(ctx);
	struct ibv_mr *mr = pd ? ibv_reg_mr(pd, buf, sizeof(buf),
					    IBV_ACCESS_LOCAL_WRITE) : NULL;
	int busy = -1, ok;

	if (mr)
		busy = ibv_dealloc_pd(pd);
	diag("dealloc_pd with an MR: %d", busy);
	ok = mr && busy == EBUSY && !ibv_dereg_mr(mr) && !ibv_dealloc_pd(pd);
	result("provider_pd_in_use_is_busy", ok);
}

static int cq_cycle(struct ibv_context *ctx, int depth,
		    struct ibv_comp_channel *ch)
{
	struct ibv_cq *cq = ibv_create_cq(ctx, depth, NULL, ch, 0);
	struct ibv_wc wc[4];
	int n;

	if (!cq)
		return errno;
	n = ibv_poll_cq(cq, 4, wc);
	if (cq->cqe < depth || n != 0 || ibv_req_notify_cq(cq, 0) ||
	    ibv_req_notify_cq(cq, 1)) {
		diag("CQ depth %d: cqe %d, poll %d", depth, cq->cqe, n);
		ibv_destroy_cq(cq);
		return -1;
	}
	return ibv_destroy_cq(cq) ? -1 : 0;
}

static void t_cqs(struct ibv_context *ctx, int max_cqe)
{
	int depths[] = { 1, 2, 3, 100, 4096, max_cqe };
	struct ibv_comp_channel *ch;
	unsigned int i;
	int ok = 1, err;

	for (i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
		err = cq_cycle(ctx, depths[i], NULL);
		if (err) {
			diag("CQ depth %d: %d", depths[i], err);
			ok = 0;
		}
	}
	result("provider_cq_depths", ok);

	err = cq_cycle(ctx, max_cqe + 1, NULL);
	diag("depth max+1: %d", err);
	ok = err == EINVAL;
	err = cq_cycle(ctx, 0, NULL);
	diag("depth 0: %d", err);
	ok &= err == EINVAL;
	result("provider_cq_invalid_depth", ok);

	ch = ibv_create_comp_channel(ctx);
	ok = ch && !cq_cycle(ctx, 16, ch) && !ibv_destroy_comp_channel(ch);
	result("provider_cq_completion_channel", ok);
}

/* 0 when a teardown call reports the object gone: success, or EIO after removal. */
static int gone(const char *what, int rc)
{
	diag("%s: %s", what, rc ? strerror(rc) : "ok");
	return rc && rc != EIO;
}

/* What "hold" and "orphan" keep open on the device. */
struct held {
	struct ibv_pd *pd;
	struct ibv_mr *mr;
	struct ibv_comp_channel *ch;
	struct ibv_cq *cq;
};

/* Allocate a PD, a 64 KiB MR and a CQ with a completion channel; print "held". */
static int hold(struct ibv_context *ctx, struct held *h)
{
	static char buf[1 << 16];

	h->pd = ibv_alloc_pd(ctx);
	h->mr = h->pd ? ibv_reg_mr(h->pd, buf, sizeof(buf), IBV_ACCESS_LOCAL_WRITE) : NULL;
	h->ch = ibv_create_comp_channel(ctx);
	h->cq = h->ch ? ibv_create_cq(ctx, 64, NULL, h->ch, 0) : NULL;
	if (!h->mr || !h->cq) {
		diag("setup failed: %s", strerror(errno));
		return 1;
	}
	printf("held\n");
	fflush(stdout);
	return 0;
}

/* The "orphan" mode; returns the exit status (0: everything as expected). */
static int orphan(struct ibv_context *ctx)
{
	struct ibv_async_event ev;
	struct pollfd pfd;
	struct ibv_wc wc;
	struct held h;
	char line[16];
	int bad = 0, fatal, n;

	if (hold(ctx, &h))
		return 1;
	if (!fgets(line, sizeof(line), stdin))
		diag("stdin closed");

	/*
	 * The core tells every process of the removal on its async fd; port and GID
	 * events of the device's last moments may come first.
	 */
	pfd.fd = ctx->async_fd;
	pfd.events = POLLIN;
	fatal = 0;
	while (!fatal && poll(&pfd, 1, 10000) == 1 && !ibv_get_async_event(ctx, &ev)) {
		diag("async event: %s", ibv_event_type_str(ev.event_type));
		fatal = ev.event_type == IBV_EVENT_DEVICE_FATAL;
		ibv_ack_async_event(&ev);
	}
	if (!fatal) {
		diag("no DEVICE_FATAL event within 10 s");
		bad = 1;
	}
	/* The ring mapping was replaced by a zero page: an empty CQ, no fault. */
	n = ibv_poll_cq(h.cq, 1, &wc);
	diag("poll_cq after removal: %d", n);
	bad |= n != 0;
	/* Arming goes to the kernel: EIO, or EINVAL where 5.10 finds the CQ gone. */
	n = ibv_req_notify_cq(h.cq, 0);
	diag("req_notify_cq: %s", n ? strerror(n) : "ok");
	bad |= n && n != EIO && n != EINVAL;
	bad |= gone("destroy_cq", ibv_destroy_cq(h.cq));
	bad |= gone("destroy_comp_channel", ibv_destroy_comp_channel(h.ch));
	bad |= gone("dereg_mr", ibv_dereg_mr(h.mr));
	bad |= gone("dealloc_pd", ibv_dealloc_pd(h.pd));
	bad |= gone("close_device", ibv_close_device(ctx));
	return bad;
}

int main(int argc, char **argv)
{
	struct ibv_device_attr_ex attr;
	struct ibv_context *ctx;
	struct ibv_pd *pd;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DEV [hold|orphan|memlock]\n", argv[0]);
		return 2;
	}
	ctx = open_dev(argv[1]);
	result("provider_open_device", ctx != NULL);
	if (!ctx)
		return 1;

	if (argc > 2 && !strcmp(argv[2], "hold")) {
		struct held h;

		if (hold(ctx, &h))
			return 1;
		for (;;)
			pause();
	}

	if (argc > 2 && !strcmp(argv[2], "orphan"))
		return orphan(ctx);

	if (argc > 2 && !strcmp(argv[2], "memlock")) {
		static char small[4096];
		char *big = malloc(8 << 20);
		int e_big, e_small;

		pd = ibv_alloc_pd(ctx);
		if (!pd || !big)
			return 1;
		e_big = reg_dereg(pd, big, 8 << 20, IBV_ACCESS_LOCAL_WRITE);
		e_small = reg_dereg(pd, small, sizeof(small), IBV_ACCESS_LOCAL_WRITE);
		diag("8 MiB: %d, 4 KiB: %d", e_big, e_small);
		result("provider_mr_honours_memlock", e_big == ENOMEM && e_small == 0);
		free(big);
		ibv_dealloc_pd(pd);
		ibv_close_device(ctx);
		return failed;
	}

	memset(&attr, 0, sizeof(attr));
	t_query(ctx, &attr);
	t_pds(ctx);
	pd = ibv_alloc_pd(ctx);
	if (!pd) {
		result("provider_alloc_pd", 0);
		return 1;
	}
	t_mr_sizes(pd);
	t_mr_access(pd);
	t_mr_invalid(pd);
	t_mr_dereg_twice(pd);
	ibv_dealloc_pd(pd);
	t_pd_in_use(ctx);
	t_cqs(ctx, attr.orig_attr.max_cqe);
	result("provider_close_device", !ibv_close_device(ctx));
	return failed;
}
