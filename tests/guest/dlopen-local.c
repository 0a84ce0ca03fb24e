// SPDX-License-Identifier: GPL-2.0
/*
 * dlopen-local: load libibverbs the way language bindings, MPI and UCX do, with
 * dlopen(RTLD_LOCAL), and use a ferrite device through it.  libibverbs is then not in
 * the global symbol scope, so its providers must find it through their own NEEDED
 * entry.  Built inside each target's root; it is not linked against libibverbs.
 *
 *   dlopen-local DEV   one "STEP: ok" / "STEP: FAILED ..." line per step; exit 0 only
 *                      if every step succeeded
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <infiniband/verbs.h>

static struct {
	__typeof__(&ibv_get_device_list) get_device_list;
	__typeof__(&ibv_get_device_name) get_device_name;
	__typeof__(&ibv_open_device) open_device;
	__typeof__(&ibv_alloc_pd) alloc_pd;
	__typeof__(&ibv_dealloc_pd) dealloc_pd;
	__typeof__(&ibv_close_device) close_device;
	__typeof__(&ibv_free_device_list) free_device_list;
} v;

static int step(const char *name, int ok, const char *why)
{
	if (ok)
		printf("%s: ok\n", name);
	else
		printf("%s: FAILED%s%s\n", name, why ? ": " : "", why ? why : "");
	fflush(stdout);
	return ok;
}

static void *sym(void *lib, const char *name)
{
	void *p = dlsym(lib, name);

	if (!p)
		printf("dlsym %s: %s\n", name, dlerror());
	return p;
}

int main(int argc, char **argv)
{
	struct ibv_device **list;
	struct ibv_device *dev = NULL;
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	void *lib;
	int i, n, rc;
	char msg[128];

	if (argc != 2) {
		fprintf(stderr, "usage: %s DEV\n", argv[0]);
		return 2;
	}
	lib = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!step("dlopen libibverbs.so.1 RTLD_NOW|RTLD_LOCAL", lib != NULL, lib ? NULL : dlerror()))
		return 1;
	/* The point of the test: nothing else put libibverbs in the global scope. */
	if (!step("libibverbs not in the global scope",
		  dlsym(RTLD_DEFAULT, "ibv_get_device_list") == NULL, "it is: the test proves nothing"))
		return 1;
	v.get_device_list = sym(lib, "ibv_get_device_list");
	v.get_device_name = sym(lib, "ibv_get_device_name");
	v.open_device = sym(lib, "ibv_open_device");
	v.alloc_pd = sym(lib, "ibv_alloc_pd");
	v.dealloc_pd = sym(lib, "ibv_dealloc_pd");
	v.close_device = sym(lib, "ibv_close_device");
	v.free_device_list = sym(lib, "ibv_free_device_list");
	if (!step("dlsym verbs", v.get_device_list && v.get_device_name && v.open_device &&
		  v.alloc_pd && v.dealloc_pd && v.close_device && v.free_device_list, NULL))
		return 1;

	list = v.get_device_list(&n);
	if (!step("ibv_get_device_list", list != NULL, strerror(errno)))
		return 1;
	msg[0] = '\0';
	for (i = 0; i < n; i++) {
		const char *name = v.get_device_name(list[i]);

		snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), "%s%s", i ? " " : "", name);
		if (!strcmp(name, argv[1]))
			dev = list[i];
	}
	printf("devices: %s\n", n ? msg : "(none)");
	snprintf(msg, sizeof(msg), "no device %s: its provider did not load", argv[1]);
	if (!step("find device", dev != NULL, msg)) {
		v.free_device_list(list);
		return 1;
	}
	ctx = v.open_device(dev);
	if (!step("ibv_open_device", ctx != NULL, strerror(errno))) {
		v.free_device_list(list);
		return 1;
	}
	pd = v.alloc_pd(ctx);
	rc = step("ibv_alloc_pd", pd != NULL, strerror(errno));
	if (pd) {
		errno = v.dealloc_pd(pd);
		rc &= step("ibv_dealloc_pd", errno == 0, strerror(errno));
	}
	errno = v.close_device(ctx);
	rc &= step("ibv_close_device", errno == 0, strerror(errno));
	v.free_device_list(list);
	return rc ? 0 : 1;
}
