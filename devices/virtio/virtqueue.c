/* SPDX-License-Identifier: MIT */
/* The split virtqueue engine (VIRTIO 1.2, 2.7): the device side of the
 * descriptor table, the available ring and the used ring.
 *
 * Everything in the rings is written by a guest we do not trust, and may
 * change under us at any time. Each value is therefore read once into a
 * local (descriptors are copied whole), validated there, and used from
 * there; nothing is read twice. Guest buffers are resolved through the
 * bounds-checked guest-memory helpers and split at region boundaries.
 * A malformed chain marks the queue broken: it is never touched again
 * until a reset, and the caller puts the device into NEEDS_RESET. */
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtio.h"

/* Ring layout (2.7): the avail ring is u16 flags, idx, ring[size],
 * used_event; the used ring u16 flags, idx, {u32 id, u32 len}[size],
 * u16 avail_event. */
#define AVAIL_FLAGS 0
#define AVAIL_IDX 1
#define AVAIL_RING 2
#define USED_FLAGS_OFF 0
#define USED_IDX_OFF 2
#define USED_RING_OFF 4

static uint64_t desc_bytes(uint16_t size) { return 16ull * size; }
static uint64_t avail_bytes(uint16_t size) { return 6ull + 2ull * size; }
static uint64_t used_bytes(uint16_t size) { return 6ull + 8ull * size; }

static bool started(const struct virtq *vq) { return vq->desc && vq->avail && vq->used; }

static volatile uint16_t *used_u16(const struct virtq *vq, uint64_t off)
{
	return (volatile uint16_t *)(vq->used + off);
}

static volatile uint16_t *used_flags(const struct virtq *vq) { return used_u16(vq, USED_FLAGS_OFF); }
static volatile uint16_t *used_idx_p(const struct virtq *vq) { return used_u16(vq, USED_IDX_OFF); }
static volatile uint16_t *avail_event_p(const struct virtq *vq)
{
	return used_u16(vq, USED_RING_OFF + 8ull * vq->size);
}
static volatile uint16_t *used_event_p(const struct virtq *vq)
{
	return &vq->avail[AVAIL_RING + vq->size];
}

/* @rw: the device writes this ring (used), so read-only memory will not do. */
static int ring_ptr(const struct vmkit_gmem *mem, const char *what, uint64_t gpa, uint64_t len,
		    uint64_t align, bool rw, void **out)
{
	if (gpa & (align - 1))
		return vmkit__err(-EINVAL, "virtqueue %s ring at 0x%llx is not %llu-byte aligned",
				  what, (unsigned long long)gpa, (unsigned long long)align);
	*out = rw ? vmkit__gmem_ptr_rw(mem, gpa, (size_t)len) :
		    vmkit__gmem_ptr(mem, gpa, (size_t)len);
	if (!*out)
		return vmkit__err(-EFAULT,
				  "virtqueue %s ring 0x%llx+0x%llx is not inside one %sguest memory region",
				  what, (unsigned long long)gpa, (unsigned long long)len,
				  rw ? "writable " : "");
	return 0;
}

int virtq_start(struct virtq *vq, const struct vmkit_gmem *mem)
{
	void *d, *a, *u;
	int ret;

	if (vq->size == 0 || vq->size > VMKIT_VIRTQ_MAX_SIZE || (vq->size & (vq->size - 1)))
		return vmkit__err(-EINVAL, "virtqueue size %u is not a power of two in 1..%u",
				  vq->size, VMKIT_VIRTQ_MAX_SIZE);
	ret = ring_ptr(mem, "descriptor", vq->desc_gpa, desc_bytes(vq->size), 16, false, &d);
	if (ret == 0)
		ret = ring_ptr(mem, "available", vq->avail_gpa, avail_bytes(vq->size), 2, false, &a);
	if (ret == 0)
		ret = ring_ptr(mem, "used", vq->used_gpa, used_bytes(vq->size), 4, true, &u);
	if (ret < 0)
		return ret;
	vq->desc = d;
	vq->avail = a;
	vq->used = u;
	return 0;
}

void virtq_reset(struct virtq *vq)
{
	memset(vq, 0, sizeof(*vq));
	vq->msix_vector = VIRTIO_MSI_NO_VECTOR;
}

/* avail->idx, with acquire: ring entries and descriptors published before
 * it are visible after it. */
static uint16_t load_avail_idx(const struct virtq *vq)
{
	return __atomic_load_n(&vq->avail[AVAIL_IDX], __ATOMIC_ACQUIRE);
}

bool virtq_has_work(const struct virtq *vq)
{
	if (!started(vq) || vq->broken)
		return false;
	return load_avail_idx(vq) != vq->last_avail;
}

/* A descriptor as read from the guest, once. */
struct chain_desc {
	uint64_t addr;
	uint32_t len;
	bool write;
};

/* Scratch for one chain, on the stack: at most VIRTQ_MAX_CHAIN
 * descriptors (16 KiB). The chain is walked and validated into it first,
 * then the element is allocated at its exact size and filled from it. */
struct chain {
	struct chain_desc d[VIRTQ_MAX_CHAIN];
	unsigned n;
	unsigned n_out_iov, n_in_iov;
	uint64_t out_len, in_len;
	bool seen_write;
};

static struct virtq_desc read_desc(const volatile struct virtq_desc *p)
{
	struct virtq_desc d;

	d.addr = p->addr;
	d.len = p->len;
	d.flags = p->flags;
	d.next = p->next;
	return d;
}

/* How many iovecs [gpa, gpa+len) needs (one per region it touches), or
 * -EFAULT if any of it is not guest memory, or (@write: a buffer the
 * device fills) is read-only memory. @len > 0, no overflow. */
static int count_iov(const struct vmkit_gmem *mem, uint64_t gpa, uint64_t len, bool write)
{
	int n = 0;

	while (len > 0) {
		uint64_t avail = 0;
		void *p = write ? vmkit__gmem_span_rw(mem, gpa, &avail) :
				  vmkit__gmem_span(mem, gpa, &avail);

		if (!p || avail == 0)
			return -EFAULT;
		n++;
		if (avail >= len)
			break;
		gpa += avail;
		len -= avail;
	}
	return n;
}

static int malformed(struct virtq *vq, uint16_t qi, int code, const char *what,
		     unsigned long long a, unsigned long long b)
{
	vq->broken = true;
	return vmkit__err(code, "virtqueue %u: malformed descriptor chain: %s (0x%llx, 0x%llx)",
			  qi, what, a, b);
}

/* Add one buffer descriptor to @c after validating it. */
static int add_buffer(struct virtq *vq, uint16_t qi, const struct vmkit_gmem *mem,
		      struct chain *c, const struct virtq_desc *d)
{
	bool write = (d->flags & VIRTQ_DESC_F_WRITE) != 0;
	int niov = 0;

	if (c->n >= VIRTQ_MAX_CHAIN)
		return malformed(vq, qi, -EINVAL, "chain longer than the limit", c->n,
				 VIRTQ_MAX_CHAIN);
	if (!write && c->seen_write)
		return malformed(vq, qi, -EINVAL, "device-readable descriptor after a writable one",
				 d->addr, d->len);
	if (d->len > 0) {
		if (d->addr + d->len < d->addr)
			return malformed(vq, qi, -EFAULT, "buffer wraps around",
					 d->addr, d->len);
		niov = count_iov(mem, d->addr, d->len, write);
		if (niov < 0)
			return malformed(vq, qi, -EFAULT,
					 write ? "writable buffer outside guest RAM (or in ROM)" :
						 "buffer outside guest memory",
					 d->addr, d->len);
	}
	if (c->out_len + c->in_len + d->len > UINT32_MAX)
		return malformed(vq, qi, -EINVAL, "chain longer than 4 GiB in total",
				 c->out_len + c->in_len, d->len);
	c->seen_write |= write;
	c->d[c->n].addr = d->addr;
	c->d[c->n].len = d->len;
	c->d[c->n].write = write;
	c->n++;
	if (write) {
		c->n_in_iov += (unsigned)niov;
		c->in_len += d->len;
	} else {
		c->n_out_iov += (unsigned)niov;
		c->out_len += d->len;
	}
	return 0;
}

/* Follow an indirect table (@d is the descriptor that refers to it). */
static int walk_indirect(struct virtq *vq, uint16_t qi, const struct vmkit_gmem *mem,
			 struct chain *c, const struct virtq_desc *d)
{
	uint64_t table = d->addr;
	uint32_t entries, i = 0, seen = 0;
	int ret;

	if (!vq->indirect)
		return malformed(vq, qi, -EINVAL, "indirect descriptor without INDIRECT_DESC",
				 d->addr, d->len);
	if (d->flags & VIRTQ_DESC_F_NEXT)
		return malformed(vq, qi, -EINVAL, "indirect descriptor with NEXT", d->addr, d->len);
	if (d->len == 0 || d->len % 16 != 0 || d->len > VIRTQ_MAX_INDIRECT_BYTES)
		return malformed(vq, qi, -EINVAL, "bad indirect table length", d->addr, d->len);
	if (table + d->len < table || count_iov(mem, table, d->len, false) < 0)
		return malformed(vq, qi, -EFAULT, "indirect table outside guest memory",
				 d->addr, d->len);
	entries = d->len / 16;
	for (;;) {
		struct virtq_desc e;

		/* Each visited entry counts; a loop runs out of entries. */
		if (seen++ == entries)
			return malformed(vq, qi, -EINVAL, "loop in indirect table", table, entries);
		if (vmkit__gmem_read(mem, table + 16ull * i, &e, sizeof(e)) < 0)
			return malformed(vq, qi, -EFAULT, "indirect table outside guest memory",
					 table, i);
		if (e.flags & VIRTQ_DESC_F_INDIRECT)
			return malformed(vq, qi, -EINVAL, "nested indirect table", table, i);
		ret = add_buffer(vq, qi, mem, c, &e);
		if (ret < 0)
			return ret;
		if (!(e.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (e.next >= entries)
			return malformed(vq, qi, -EINVAL, "indirect next beyond the table", e.next,
					 entries);
		i = e.next;
	}
}

/* Walk the chain from @head into @c. */
static int walk_chain(struct virtq *vq, uint16_t qi, const struct vmkit_gmem *mem,
		      struct chain *c, uint16_t head)
{
	uint16_t i = head;
	unsigned seen = 0;
	int ret;

	for (;;) {
		struct virtq_desc d;

		if (seen++ == vq->size)
			return malformed(vq, qi, -EINVAL, "chain longer than the queue (a loop?)",
					 head, vq->size);
		d = read_desc(&vq->desc[i]);
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return walk_indirect(vq, qi, mem, c, &d);
		ret = add_buffer(vq, qi, mem, c, &d);
		if (ret < 0)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= vq->size)
			return malformed(vq, qi, -EINVAL, "next index beyond the queue", d.next,
					 vq->size);
		i = d.next;
	}
}

/* Split [gpa, gpa+len) into iovecs at region boundaries (validated by
 * count_iov already). */
static struct iovec *fill_iov(const struct vmkit_gmem *mem, struct iovec *iov, uint64_t gpa,
			      uint64_t len)
{
	while (len > 0) {
		uint64_t avail = 0;
		void *p = vmkit__gmem_span(mem, gpa, &avail);
		uint64_t n = avail < len ? avail : len;

		iov->iov_base = p;
		iov->iov_len = (size_t)n;
		iov++;
		gpa += n;
		len -= n;
	}
	return iov;
}

int virtq_pop(struct virtq *vq, const struct vmkit_gmem *mem, uint16_t queue_index,
	      vmkit_virtq_elem **out)
{
	struct chain chain, *c = &chain;
	vmkit_virtq_elem *e;
	struct iovec *o, *in;
	uint16_t avail_idx, pending, head;
	size_t n_iov;
	int ret;

	*out = NULL;
	if (!started(vq) || vq->broken)
		return 0;
	avail_idx = load_avail_idx(vq);
	pending = (uint16_t)(avail_idx - vq->last_avail);
	if (pending == 0 && vq->event_idx) {
		/* Going idle: avail_event must be visible before we look at
		 * avail->idx once more. Without the full fence, x86 lets our
		 * load pass our store: the driver then reads an old
		 * avail_event, skips its notification, and we never see the
		 * request it added (a stalled queue). */
		__atomic_store_n(avail_event_p(vq), vq->last_avail, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		avail_idx = load_avail_idx(vq);
		pending = (uint16_t)(avail_idx - vq->last_avail);
	}
	if (pending == 0)
		return 0;
	if (pending > vq->size)
		return malformed(vq, queue_index, -EINVAL, "avail index too far ahead",
				 avail_idx, vq->last_avail);
	head = __atomic_load_n(&vq->avail[AVAIL_RING + (vq->last_avail & (vq->size - 1))],
			       __ATOMIC_RELAXED);
	if (head >= vq->size)
		return malformed(vq, queue_index, -EINVAL, "head index beyond the queue", head,
				 vq->size);

	c->n = 0;
	c->n_out_iov = c->n_in_iov = 0;
	c->out_len = c->in_len = 0;
	c->seen_write = false;
	ret = walk_chain(vq, queue_index, mem, c, head);
	if (ret < 0)
		return ret;

	n_iov = (size_t)c->n_out_iov + c->n_in_iov;
	e = malloc(sizeof(*e) + n_iov * sizeof(struct iovec));
	if (!e)
		return vmkit__err(-ENOMEM, "virtqueue %u: out of memory", queue_index);
	memset(e, 0, sizeof(*e));
	e->head = head;
	e->queue = queue_index;
	/* Where it was taken from, for virtq_unpop's LIFO check. */
	e->reserved = vq->last_avail;
	e->n_out = c->n_out_iov;
	e->n_in = c->n_in_iov;
	e->out_len = c->out_len;
	e->in_len = c->in_len;
	e->out = (struct iovec *)(e + 1);
	e->in = e->out + c->n_out_iov;
	o = e->out;
	in = e->in;
	for (unsigned k = 0; k < c->n; k++) {
		if (c->d[k].write)
			in = fill_iov(mem, in, c->d[k].addr, c->d[k].len);
		else
			o = fill_iov(mem, o, c->d[k].addr, c->d[k].len);
	}

	vq->last_avail++;
	vq->inflight++;
	/* With EVENT_IDX, ask to be notified when the driver makes the next
	 * entry available (2.7.10), as a device that keeps up would. */
	if (vq->event_idx)
		__atomic_store_n(avail_event_p(vq), vq->last_avail, __ATOMIC_RELAXED);
	*out = e;
	return 1;
}

int virtq_unpop(struct virtq *vq, const vmkit_virtq_elem *e)
{
	if (!started(vq))
		return vmkit__err(-EINVAL, "virtqueue not started");
	/* Only the latest chain taken goes back: anything else would make
	 * the next pop return a chain out of order, or one twice. */
	if (vq->inflight == 0 || e->reserved > UINT16_MAX ||
	    (uint16_t)e->reserved != (uint16_t)(vq->last_avail - 1))
		return vmkit__err(-EINVAL,
				  "virtqueue: element %u is not the one taken last (elements go back last in, first out)",
				  e->head);
	/* avail_event is left as it is: it already asks the driver to
	 * notify when it adds a chain beyond the ones seen, which is what a
	 * device giving chains back waits for. */
	vq->last_avail--;
	vq->inflight--;
	return 0;
}

int virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	volatile uint8_t *ent;

	if (!started(vq))
		return vmkit__err(-EINVAL, "virtqueue not started");
	if (head >= vq->size)
		return vmkit__err(-EINVAL, "used head %u beyond queue size %u", head, vq->size);
	if (vq->inflight == 0)
		return vmkit__err(-EINVAL, "used head %u but nothing is in flight", head);
	ent = vq->used + USED_RING_OFF + 8ull * (vq->used_idx & (vq->size - 1));
	__atomic_store_n((volatile uint32_t *)ent, (uint32_t)head, __ATOMIC_RELAXED);
	__atomic_store_n((volatile uint32_t *)(ent + 4), len, __ATOMIC_RELAXED);
	vq->used_idx++;
	vq->inflight--;
	/* The entry is visible before the index that publishes it. */
	__atomic_store_n(used_idx_p(vq), vq->used_idx, __ATOMIC_RELEASE);
	return 0;
}

/* 2.7.10: interrupt if used_event lies in [old, new). */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_should_notify(struct virtq *vq)
{
	uint16_t old, event;
	bool valid;

	if (!started(vq))
		return false;
	/* Our used->idx store must be visible before we read the driver's
	 * suppression fields, or both sides could decide not to act. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(__atomic_load_n(&vq->avail[AVAIL_FLAGS], __ATOMIC_RELAXED) &
			 VIRTQ_AVAIL_F_NO_INTERRUPT);
	old = vq->signalled_used;
	valid = vq->signalled_valid;
	vq->signalled_used = vq->used_idx;
	vq->signalled_valid = true;
	if (!valid)
		return true;
	event = __atomic_load_n(used_event_p(vq), __ATOMIC_RELAXED);
	return need_event(event, vq->used_idx, old);
}

void virtq_set_notification(struct virtq *vq, bool enable)
{
	if (!started(vq) || vq->broken)
		return;
	if (vq->event_idx) {
		/* flags stay 0 (2.7.10); avail_event says where to notify. */
		if (enable)
			__atomic_store_n(avail_event_p(vq), vq->last_avail, __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(used_flags(vq), enable ? 0 : VIRTQ_USED_F_NO_NOTIFY,
				 __ATOMIC_RELAXED);
	}
	/* Publish before the caller re-reads avail->idx (virtq_has_work). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void virtq_elem_free(vmkit_virtq_elem *e)
{
	free(e);
}
