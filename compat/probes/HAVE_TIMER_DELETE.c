// SPDX-License-Identifier: GPL-2.0
#include <linux/timer.h>

int probe(struct timer_list *t)
{
	return timer_delete_sync(t) + timer_delete(t);
}
