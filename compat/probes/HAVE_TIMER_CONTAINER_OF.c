// SPDX-License-Identifier: GPL-2.0
#include <linux/timer.h>

struct probe_obj {
	struct timer_list t;
};

struct probe_obj *probe(struct timer_list *t)
{
	struct probe_obj *o = timer_container_of(o, t, t);

	return o;
}
