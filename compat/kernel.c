// SPDX-License-Identifier: GPL-2.0
/*
 * kernel.c - kernel services for ferrite's Rust code (ferrite_k_* in
 * ferrite_compat.h): memory, printing, locks and the bug path.
 *
 * Kernel symbols whose names move between trees (kmalloc became
 * __kmalloc_noprof, ...) are reached only from here, through the tree's own
 * headers, so the Rust object never names them.
 */
#include <linux/bug.h>
#include <linux/crc32.h>
#include <linux/ktime.h>
#include <linux/log2.h>
#include <linux/mutex.h>
#include <linux/printk.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#include "ferrite_compat.h"

void *ferrite_k_alloc(size_t size, size_t align)
{
	/*
	 * kmalloc aligns to ARCH_KMALLOC_MINALIGN, and power-of-two sizes to
	 * their size; round up for larger alignments.
	 */
	if (align > ARCH_KMALLOC_MINALIGN) {
		if (size < align)
			size = align;
		size = roundup_pow_of_two(size);
	}
	return kmalloc(size ? size : 1, GFP_KERNEL);
}

void ferrite_k_free(void *ptr)
{
	kfree(ptr);
}

void ferrite_k_log(int level, const u8 *msg, size_t len)
{
	int n = min_t(size_t, len, 512);

	switch (level) {
	case FERRITE_LOG_ERR:
		pr_err("ferrite: %.*s\n", n, msg);
		break;
	case FERRITE_LOG_WARNING:
		pr_warn("ferrite: %.*s\n", n, msg);
		break;
	case FERRITE_LOG_INFO:
		pr_info("ferrite: %.*s\n", n, msg);
		break;
	default:
		pr_debug("ferrite: %.*s\n", n, msg);
		break;
	}
}

void ferrite_k_bug(const u8 *msg, size_t len)
{
	pr_emerg("ferrite: %.*s\n", (int)min_t(size_t, len, 512), msg);
	BUG();
}

struct ferrite_k_mutex {
	struct mutex lock;
};

/* One lockdep class per kind of lock (FERRITE_LOCK_*): keys must be static. */
static struct lock_class_key ferrite_lock_keys[FERRITE_LOCK_CLASSES];
static const char * const ferrite_lock_names[FERRITE_LOCK_CLASSES] = {
	[FERRITE_LOCK_QP] = "ferrite_qp",
	[FERRITE_LOCK_MRS] = "ferrite_mrs",
	[FERRITE_LOCK_REGISTRY] = "ferrite_registry",
};

struct ferrite_k_mutex *ferrite_k_mutex_new(u32 lock_class)
{
	struct ferrite_k_mutex *m;

	if (WARN_ON_ONCE(lock_class >= FERRITE_LOCK_CLASSES))
		return NULL;
	m = kmalloc(sizeof(*m), GFP_KERNEL);
	if (m)
		__mutex_init(&m->lock, ferrite_lock_names[lock_class],
			     &ferrite_lock_keys[lock_class]);
	return m;
}

void ferrite_k_mutex_free(struct ferrite_k_mutex *m)
{
	if (m)
		mutex_destroy(&m->lock);
	kfree(m);
}

void ferrite_k_mutex_lock(struct ferrite_k_mutex *m)
{
	mutex_lock(&m->lock);
}

void ferrite_k_mutex_unlock(struct ferrite_k_mutex *m)
{
	mutex_unlock(&m->lock);
}

struct ferrite_k_spin {
	spinlock_t lock;
};

struct ferrite_k_spin *ferrite_k_spin_new(u32 lock_class)
{
	struct ferrite_k_spin *s;

	if (WARN_ON_ONCE(lock_class >= FERRITE_LOCK_CLASSES))
		return NULL;
	s = kmalloc(sizeof(*s), GFP_KERNEL);
	if (s) {
		spin_lock_init(&s->lock);
		lockdep_set_class_and_name(&s->lock,
					   &ferrite_lock_keys[lock_class],
					   ferrite_lock_names[lock_class]);
	}
	return s;
}

void ferrite_k_spin_free(struct ferrite_k_spin *s)
{
	kfree(s);
}

void ferrite_k_spin_lock(struct ferrite_k_spin *s)
{
	spin_lock_bh(&s->lock);
}

void ferrite_k_spin_unlock(struct ferrite_k_spin *s)
{
	spin_unlock_bh(&s->lock);
}

u64 ferrite_k_now_ns(void)
{
	return ktime_get_ns();
}

u32 ferrite_k_crc32_le(u32 seed, const u8 *data, size_t len)
{
	return crc32_le(seed, data, len);
}
