/* SPDX-License-Identifier: MIT */
/* The driver side of virtio, for unit tests: a fake guest memory, split
 * virtqueues laid out in it, chains put on the avail ring and used
 * entries read back, and a device core brought through the driver
 * handshake with a recording fake transport. No KVM, no threads.
 *
 * Typical use:
 *
 *	struct vqd_mem m;
 *	struct vqd_queue q;
 *	struct vqd_transport t;
 *	struct vmkit_virtio_dev dev;
 *
 *	vqd_mem_init(&m, 0, 0);                 // 4 MiB at gpa 0
 *	vqd_queue_init(&q, &m, 256);            // rings allocated in m
 *	vqd_transport_init(&t);
 *	virtio_dev_init(&dev, &ops, opaque, &m.gm, &t.tr, &t, "test0");
 *	vqd_handshake(&dev, VQD_FEATURES_ALL, (struct vqd_queue *[]){ &q }, 1);
 *	uint64_t buf = vqd_alloc(&m, 512, 16);
 *	int head = vqd_add_chain(&q, (struct vqd_buf[]){ { buf, 512, false } }, 1);
 *	vqd_publish(&q, (uint16_t)head);
 *	virtio_dev_kick(&dev, 0);
 *	uint32_t id, len;
 *	cr_assert(vqd_get_used(&q, &id, &len));
 *	...
 *	virtio_dev_destroy(&dev);
 *	vqd_mem_destroy(&m);
 *
 * Every helper that can fail reports it with cr_assert (so it is only for
 * Criterion tests), except where a return value says otherwise. All ring
 * fields are little-endian (the tests run on x86). */
#ifndef VMKIT_TESTS_VQDRIVER_H
#define VMKIT_TESTS_VQDRIVER_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtio.h"

/* ---- fake guest memory ---------------------------------------------------- */

#define VQD_MEM_DEFAULT_SIZE (4u << 20)
#define VQD_MAX_REGIONS 8

struct vqd_mem {
	struct vmkit_gmem gm;
	uint64_t gpa, size;          /* the first region (the allocator's) */
	uint64_t next;               /* bump allocator: next free gpa in it */
	void *host[VQD_MAX_REGIONS]; /* calloc'd backing of each region */
	unsigned n_host;
};

/* A guest memory of one zeroed region of @size bytes (0: 4 MiB) at @gpa,
 * backed by calloc. vqd_alloc() hands out space from it. */
static inline void vqd_mem_init(struct vqd_mem *m, uint64_t gpa, uint64_t size)
{
	memset(m, 0, sizeof(*m));
	if (size == 0)
		size = VQD_MEM_DEFAULT_SIZE;
	vmkit__gmem_init(&m->gm);
	m->host[0] = calloc(1, (size_t)size);
	cr_assert_not_null(m->host[0]);
	m->n_host = 1;
	cr_assert_geq(vmkit__gmem_add_host(&m->gm, gpa, size, m->host[0], 0), 0);
	m->gpa = gpa;
	m->size = size;
	/* Leave page 0 of the region unused so that gpa 0 is never handed out. */
	m->next = gpa + 0x1000;
}

/* Add another zeroed region of @size bytes at @gpa with its own calloc'd
 * backing (not adjacent to the others in host memory, so a buffer that
 * spans two adjacent regions must be split by the device). Returns a host
 * pointer to it. */
static inline void *vqd_mem_add(struct vqd_mem *m, uint64_t gpa, uint64_t size)
{
	void *p;

	cr_assert_lt(m->n_host, VQD_MAX_REGIONS);
	p = calloc(1, (size_t)size);
	cr_assert_not_null(p);
	cr_assert_geq(vmkit__gmem_add_host(&m->gm, gpa, size, p, 0), 0);
	m->host[m->n_host++] = p;
	return p;
}

/* Free the regions' backing. The gmem is destroyed (host memory is not
 * owned by it, so nothing is unmapped). */
static inline void vqd_mem_destroy(struct vqd_mem *m)
{
	vmkit__gmem_destroy(&m->gm);
	for (unsigned i = 0; i < m->n_host; i++)
		free(m->host[i]);
	m->n_host = 0;
}

/* Allocate @len bytes (zeroed at start, never reused) aligned to @align
 * (a power of two; 0 means 16) in the first region; returns the gpa. */
static inline uint64_t vqd_alloc(struct vqd_mem *m, uint64_t len, uint64_t align)
{
	uint64_t a;

	if (align == 0)
		align = 16;
	a = (m->next + align - 1) & ~(align - 1);
	cr_assert_leq(a + len, m->gpa + m->size, "vqd_alloc: fake guest memory exhausted");
	m->next = a + len;
	return a;
}

/* Host pointer for [@gpa, @gpa + @len) (one region), asserting it is memory. */
static inline void *vqd_hva(struct vqd_mem *m, uint64_t gpa, uint64_t len)
{
	void *p = vmkit__gmem_ptr(&m->gm, gpa, (size_t)(len ? len : 1));

	cr_assert_not_null(p, "vqd_hva: 0x%llx+0x%llx is not fake guest memory",
			   (unsigned long long)gpa, (unsigned long long)len);
	return p;
}

/* Is the host range [@p, @p + @len) wholly inside one of @m's regions? (For
 * checking the iovecs a device got.) A zero-length range must still point
 * inside or at the end of a region. */
static inline bool vqd_mem_contains(const struct vqd_mem *m, const void *p, size_t len)
{
	const uint8_t *b = p;

	for (unsigned i = 0; i < m->gm.n; i++) {
		const struct vmkit_gmem_region *r = &m->gm.r[i];

		if (b >= r->hva && b <= r->hva + r->len && len <= (size_t)(r->hva + r->len - b))
			return true;
	}
	return false;
}

/* ---- a split virtqueue (driver side) --------------------------------------- */

struct vqd_queue {
	struct vqd_mem *m;
	uint16_t size;
	uint64_t desc, avail, used;  /* ring gpas */
	uint16_t avail_idx;          /* next avail->idx to publish */
	uint16_t last_used;          /* used->idx already consumed by vqd_get_used */
	uint16_t next_desc;          /* next descriptor index handed out (cyclic) */
};

/* Ring sizes in bytes (2.7): desc 16*n, avail 6+2n (with used_event),
 * used 6+8n (with avail_event). */
static inline uint64_t vqd_desc_bytes(uint16_t n) { return 16ull * n; }
static inline uint64_t vqd_avail_bytes(uint16_t n) { return 6ull + 2ull * n; }
static inline uint64_t vqd_used_bytes(uint16_t n) { return 6ull + 8ull * n; }

/* Lay out a queue of @size entries with its rings at the given gpas (which
 * must be memory of @m; alignment is the caller's business, so that tests
 * can also try misaligned rings). The rings are zeroed. */
static inline void vqd_queue_init_at(struct vqd_queue *q, struct vqd_mem *m, uint16_t size,
				     uint64_t desc, uint64_t avail, uint64_t used)
{
	memset(q, 0, sizeof(*q));
	q->m = m;
	q->size = size;
	q->desc = desc;
	q->avail = avail;
	q->used = used;
	memset(vqd_hva(m, desc, vqd_desc_bytes(size)), 0, vqd_desc_bytes(size));
	memset(vqd_hva(m, avail, vqd_avail_bytes(size)), 0, vqd_avail_bytes(size));
	memset(vqd_hva(m, used, vqd_used_bytes(size)), 0, vqd_used_bytes(size));
}

/* Lay out a queue of @size entries with rings freshly allocated in @m
 * (desc 16-, avail 2-, used 4-byte aligned; each on its own 4 KiB page
 * boundary). */
static inline void vqd_queue_init(struct vqd_queue *q, struct vqd_mem *m, uint16_t size)
{
	uint64_t d = vqd_alloc(m, vqd_desc_bytes(size), 4096);
	uint64_t a = vqd_alloc(m, vqd_avail_bytes(size), 4096);
	uint64_t u = vqd_alloc(m, vqd_used_bytes(size), 4096);

	vqd_queue_init_at(q, m, size, d, a, u);
}

/* Write descriptor @i of the descriptor table as is (for hostile tables). */
static inline void vqd_set_desc(struct vqd_queue *q, uint16_t i, uint64_t addr, uint32_t len,
				uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };

	cr_assert_lt(i, q->size);
	memcpy(vqd_hva(q->m, q->desc + 16ull * i, 16), &d, 16);
}

/* Write entry @i of an indirect table at @table_gpa as is. */
static inline void vqd_set_indirect_desc(struct vqd_mem *m, uint64_t table_gpa, uint16_t i,
					 uint64_t addr, uint32_t len, uint16_t flags,
					 uint16_t next)
{
	struct virtq_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };

	memcpy(vqd_hva(m, table_gpa + 16ull * i, 16), &d, 16);
}

/* One buffer of a chain: guest address, length, device-writable or not. */
struct vqd_buf {
	uint64_t gpa;
	uint32_t len;
	bool writable;
};

/* Put @n buffers in consecutive (cyclic) free descriptors linked with NEXT,
 * WRITE on the writable ones. Returns the head index (not yet published).
 * The descriptors are taken round-robin: a test must not have more than
 * q->size descriptors outstanding. */
static inline int vqd_add_chain(struct vqd_queue *q, const struct vqd_buf *bufs, unsigned n)
{
	uint16_t head = q->next_desc;

	cr_assert(n > 0 && n <= q->size, "vqd_add_chain: %u buffers for a queue of %u", n,
		  q->size);
	for (unsigned k = 0; k < n; k++) {
		uint16_t i = (uint16_t)((head + k) & (q->size - 1));
		uint16_t nx = (uint16_t)((i + 1) & (q->size - 1));
		uint16_t fl = (uint16_t)((bufs[k].writable ? VIRTQ_DESC_F_WRITE : 0) |
					 (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));

		vqd_set_desc(q, i, bufs[k].gpa, bufs[k].len, fl, k + 1 < n ? nx : 0);
	}
	q->next_desc = (uint16_t)((head + n) & (q->size - 1));
	return head;
}

/* Put @n buffers in a freshly allocated indirect table (entries linked
 * with NEXT, 0..n-1) and one free descriptor pointing at it with
 * VIRTQ_DESC_F_INDIRECT. Returns the head index; *@table_gpa (if not NULL)
 * gets the table's address so a test can corrupt it. */
static inline int vqd_add_indirect(struct vqd_queue *q, const struct vqd_buf *bufs, unsigned n,
				   uint64_t *table_gpa)
{
	uint64_t t = vqd_alloc(q->m, 16ull * n, 16);
	uint16_t head = q->next_desc;

	for (unsigned k = 0; k < n; k++) {
		uint16_t fl = (uint16_t)((bufs[k].writable ? VIRTQ_DESC_F_WRITE : 0) |
					 (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));

		vqd_set_indirect_desc(q->m, t, (uint16_t)k, bufs[k].gpa, bufs[k].len, fl,
				      (uint16_t)(k + 1 < n ? k + 1 : 0));
	}
	vqd_set_desc(q, head, t, (uint32_t)(16u * n), VIRTQ_DESC_F_INDIRECT, 0);
	q->next_desc = (uint16_t)((head + 1) & (q->size - 1));
	if (table_gpa)
		*table_gpa = t;
	return head;
}

static inline volatile uint16_t *vqd_avail_field(struct vqd_queue *q, uint64_t off)
{
	return (volatile uint16_t *)vqd_hva(q->m, q->avail + off, 2);
}

static inline volatile uint8_t *vqd_used_field(struct vqd_queue *q, uint64_t off, uint64_t len)
{
	return (volatile uint8_t *)vqd_hva(q->m, q->used + off, len);
}

/* Write avail->ring[@slot % size] = @head without publishing (hostile tests
 * may write any @head). */
static inline void vqd_set_avail_ring(struct vqd_queue *q, uint16_t slot, uint16_t head)
{
	__atomic_store_n(vqd_avail_field(q, 4 + 2ull * (slot & (q->size - 1))), head,
			 __ATOMIC_RELAXED);
}

/* Store avail->idx = @idx (release) and remember it as the next index. */
static inline void vqd_set_avail_idx(struct vqd_queue *q, uint16_t idx)
{
	q->avail_idx = idx;
	__atomic_store_n(vqd_avail_field(q, 2), idx, __ATOMIC_RELEASE);
}

/* Make chain @head available: ring entry, then avail->idx + 1 (release).
 * Returns the new avail->idx. */
static inline uint16_t vqd_publish(struct vqd_queue *q, uint16_t head)
{
	vqd_set_avail_ring(q, q->avail_idx, head);
	vqd_set_avail_idx(q, (uint16_t)(q->avail_idx + 1));
	return q->avail_idx;
}

/* avail->flags (VIRTQ_AVAIL_F_NO_INTERRUPT) and used_event (the avail
 * ring's trailing field, for EVENT_IDX). */
static inline void vqd_set_avail_flags(struct vqd_queue *q, uint16_t flags)
{
	__atomic_store_n(vqd_avail_field(q, 0), flags, __ATOMIC_SEQ_CST);
}

static inline void vqd_set_used_event(struct vqd_queue *q, uint16_t v)
{
	__atomic_store_n(vqd_avail_field(q, 4 + 2ull * q->size), v, __ATOMIC_SEQ_CST);
}

/* What the device wrote: used->flags (VIRTQ_USED_F_NO_NOTIFY), used->idx,
 * avail_event (the used ring's trailing field, for EVENT_IDX). */
static inline uint16_t vqd_used_flags(struct vqd_queue *q)
{
	return __atomic_load_n((volatile uint16_t *)vqd_used_field(q, 0, 2), __ATOMIC_SEQ_CST);
}

static inline uint16_t vqd_used_idx(struct vqd_queue *q)
{
	return __atomic_load_n((volatile uint16_t *)vqd_used_field(q, 2, 2), __ATOMIC_ACQUIRE);
}

static inline uint16_t vqd_avail_event(struct vqd_queue *q)
{
	return __atomic_load_n((volatile uint16_t *)vqd_used_field(q, 4 + 8ull * q->size, 2),
			       __ATOMIC_SEQ_CST);
}

/* Take the next used entry the device published: true with *@id and *@len
 * set, false when used->idx has not moved past what was taken already. */
static inline bool vqd_get_used(struct vqd_queue *q, uint32_t *id, uint32_t *len)
{
	uint64_t off;
	uint32_t e[2];

	if (vqd_used_idx(q) == q->last_used)
		return false;
	off = 4 + 8ull * (q->last_used & (q->size - 1));
	memcpy(e, (const void *)vqd_used_field(q, off, 8), 8);
	q->last_used++;
	*id = e[0];
	*len = e[1];
	return true;
}

/* How many used entries are waiting (used->idx - taken so far). */
static inline uint16_t vqd_used_pending(struct vqd_queue *q)
{
	return (uint16_t)(vqd_used_idx(q) - q->last_used);
}

/* ---- a recording fake transport ---------------------------------------------- */

struct vqd_transport {
	struct virtio_transport tr;
	unsigned config_irqs;                          /* config-change interrupts */
	unsigned queue_irqs[VMKIT_VIRTIO_MAX_QUEUES];  /* used-buffer interrupts per queue */
	unsigned total;                                /* all interrupts */
	unsigned bad_queue;                            /* interrupts for a queue >= max */
};

static inline void vqd_transport_interrupt(void *ctx, struct vmkit_virtio_dev *dev, bool config,
					   uint16_t queue)
{
	struct vqd_transport *t = ctx;

	(void)dev;
	t->total++;
	if (config)
		t->config_irqs++;
	else if (queue < VMKIT_VIRTIO_MAX_QUEUES)
		t->queue_irqs[queue]++;
	else
		t->bad_queue++;
}

/* Zero the counters and set the callback. Pass &t->tr as the transport and
 * t as its context to virtio_dev_init(). */
static inline void vqd_transport_init(struct vqd_transport *t)
{
	memset(t, 0, sizeof(*t));
	t->tr.interrupt = vqd_transport_interrupt;
}

/* ---- the driver handshake (3.1.1) ------------------------------------------- */

/* Accept every feature the device offers. */
#define VQD_FEATURES_ALL UINT64_MAX

static inline void vqd_lock(struct vmkit_virtio_dev *dev) { pthread_mutex_lock(&dev->lock); }
static inline void vqd_unlock(struct vmkit_virtio_dev *dev) { pthread_mutex_unlock(&dev->lock); }

/* Status register access as a transport does it (with the device lock). */
static inline void vqd_write_status(struct vmkit_virtio_dev *dev, uint8_t status)
{
	vqd_lock(dev);
	virtio_dev_write_status(dev, status);
	vqd_unlock(dev);
}

static inline uint8_t vqd_status(struct vmkit_virtio_dev *dev)
{
	uint8_t s;

	vqd_lock(dev);
	s = dev->status;
	vqd_unlock(dev);
	return s;
}

/* The 64 device feature bits, read through the selector as a driver does. */
static inline uint64_t vqd_device_features(struct vmkit_virtio_dev *dev)
{
	uint64_t f;

	vqd_lock(dev);
	dev->device_features_sel = 0;
	f = virtio_dev_read_device_features(dev);
	dev->device_features_sel = 1;
	f |= (uint64_t)virtio_dev_read_device_features(dev) << 32;
	vqd_unlock(dev);
	return f;
}

/* Write the 64 driver feature bits through the selector, as they are
 * (tests may write bits the device did not offer). */
static inline void vqd_write_driver_features(struct vmkit_virtio_dev *dev, uint64_t f)
{
	vqd_lock(dev);
	dev->driver_features_sel = 0;
	virtio_dev_write_driver_features(dev, (uint32_t)f);
	dev->driver_features_sel = 1;
	virtio_dev_write_driver_features(dev, (uint32_t)(f >> 32));
	vqd_unlock(dev);
}

/* Reset, ACKNOWLEDGE, DRIVER, write @features (VQD_FEATURES_ALL: those
 * offered; anything else is written as given), FEATURES_OK. Returns true
 * when the device kept FEATURES_OK. */
static inline bool vqd_negotiate(struct vmkit_virtio_dev *dev, uint64_t features)
{
	uint8_t s = VIRTIO_STATUS_ACKNOWLEDGE;

	vqd_write_status(dev, 0);
	vqd_write_status(dev, s);
	s |= VIRTIO_STATUS_DRIVER;
	vqd_write_status(dev, s);
	if (features == VQD_FEATURES_ALL)
		features = vqd_device_features(dev);
	vqd_write_driver_features(dev, features);
	s |= VIRTIO_STATUS_FEATURES_OK;
	vqd_write_status(dev, s);
	return (vqd_status(dev) & VIRTIO_STATUS_FEATURES_OK) != 0;
}

/* Program queue @index with @q's size and ring addresses and enable it
 * (queue_sel, then the registers through virtio_dev_queue_for_write(), as
 * a transport does). Returns false if the device ignored the writes (the
 * queue was already enabled, DRIVER_OK was set, or @index is out of
 * range). */
static inline bool vqd_setup_queue(struct vmkit_virtio_dev *dev, uint16_t index,
				   const struct vqd_queue *q)
{
	struct virtq *vq;

	vqd_lock(dev);
	dev->queue_sel = index;
	vq = virtio_dev_queue_for_write(dev);
	if (vq) {
		vq->size = q->size;
		vq->desc_gpa = q->desc;
		vq->avail_gpa = q->avail;
		vq->used_gpa = q->used;
		vq->ready = true;
	}
	vqd_unlock(dev);
	return vq != NULL;
}

/* Set DRIVER_OK on top of the current status; returns the status after. */
static inline uint8_t vqd_driver_ok(struct vmkit_virtio_dev *dev)
{
	vqd_write_status(dev, (uint8_t)(vqd_status(dev) | VIRTIO_STATUS_DRIVER_OK));
	return vqd_status(dev);
}

/* The whole handshake: vqd_negotiate(@features), then queue i of the
 * device set up from @queues[i] for i < @n (a NULL entry leaves that queue
 * disabled), then DRIVER_OK. Returns the final status byte; a driver
 * would check DRIVER_OK set and NEEDS_RESET clear
 * (vqd_status_live()). Asserts that FEATURES_OK was accepted and the
 * queue writes taken. */
static inline uint8_t vqd_handshake(struct vmkit_virtio_dev *dev, uint64_t features,
				    struct vqd_queue *const *queues, unsigned n)
{
	cr_assert(vqd_negotiate(dev, features), "vqd_handshake: device refused FEATURES_OK");
	for (unsigned i = 0; i < n; i++)
		if (queues[i])
			cr_assert(vqd_setup_queue(dev, (uint16_t)i, queues[i]),
				  "vqd_handshake: queue %u registers ignored", i);
	return vqd_driver_ok(dev);
}

/* DRIVER_OK set and NEEDS_RESET / FAILED clear. */
static inline bool vqd_status_live(uint8_t s)
{
	return (s & VIRTIO_STATUS_DRIVER_OK) &&
	       !(s & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED));
}

/* Notify queue @index as the I/O thread would (virtio_dev_kick takes the
 * lock itself). */
static inline void vqd_kick(struct vmkit_virtio_dev *dev, uint16_t index)
{
	virtio_dev_kick(dev, index);
}

#endif
