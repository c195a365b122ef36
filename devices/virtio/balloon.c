/* SPDX-License-Identifier: MIT */
/* virtio-balloon, the traditional memory balloon (VIRTIO 1.2, 5.5).
 *
 * Queues: inflateq, deflateq, then statsq when VIRTIO_BALLOON_F_STATS_VQ
 * was negotiated, then reporting_vq when VIRTIO_BALLOON_F_PAGE_REPORTING
 * was. A queue that does not exist takes no index (5.5.2), so the index of
 * each depends on the features the driver actually accepted: without
 * STATS_VQ the reporting queue is index 2. (free_page_vq would sit between
 * them; FREE_PAGE_HINT is not offered.)
 *
 * Pages the guest gives up (inflate, free page reporting) go back to the
 * host: a hole punched in memfd memory (plus MADV_DONTNEED on our
 * mapping), MADV_DONTNEED on anonymous memory. Every page number is
 * checked against guest RAM first: a page outside guest memory, in a
 * read-only region (ROM), or not page-aligned on the host is skipped and
 * logged; nothing outside guest RAM is ever advised. Deflate needs no
 * work (touching a released page faults in a zero page) and is counted.
 *
 * Statistics follow the spec's protocol: the driver's buffer is kept by
 * the device and used (returned) when the device wants fresh numbers,
 * here once a second (a timerfd on the I/O loop); the latest value of
 * each tag is kept for vmkit_machine_balloon_get_stats().
 *
 * Threads: device callbacks run with the device lock held; the timer
 * callback and the control-thread calls (set_target, get_actual,
 * get_stats) take it. All state is under the device lock. */
#include <endian.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "devices/virtio/devices.h"
#include "devices/virtio/devutil.h"
#include "loop/loop.h"

/* Feature bits (5.5.3). */
#define BALLOON_F_MUST_TELL_HOST 0
#define BALLOON_F_STATS_VQ 1
#define BALLOON_F_DEFLATE_ON_OOM 2
#define BALLOON_F_FREE_PAGE_HINT 3
#define BALLOON_F_PAGE_POISON 4
#define BALLOON_F_PAGE_REPORTING 5
#define BALLOON_FEATURES \
	(VIRTIO_BIT(BALLOON_F_STATS_VQ) | VIRTIO_BIT(BALLOON_F_DEFLATE_ON_OOM) | \
	 VIRTIO_BIT(BALLOON_F_PAGE_REPORTING))

/* Config space (5.5.4): le32 num_pages, actual, free_page_hint_cmd_id,
 * poison_val. The driver writes actual and poison_val only. */
#define CFG_NUM_PAGES 0u
#define CFG_ACTUAL 4u
#define CFG_POISON 12u
#define CFG_SIZE 16u

#define BALLOON_PAGE 4096u
#define BALLOON_QUEUE_SIZE 256u
#define BALLOON_MAX_QUEUES 4u  /* inflate, deflate, stats, reporting */
/* Page numbers taken from one buffer at most (Linux sends 256); the rest
 * of a larger buffer is skipped. */
#define BALLOON_MAX_PFNS 4096u  /* per buffer (Linux sends 256) */
#define BALLOON_BATCH 16u       /* buffers per dispatch */
#define PFN_CHUNK 256u
/* Stats entries read from one buffer at most (10 tags are defined). */
#define BALLOON_MAX_STATS 64u
#define STAT_ENTRY 10u
#define BALLOON_N_TAGS 10u
#define STATS_PERIOD_NS 1000000000ull
#define BALLOON_STATE_VERSION 1u

struct balloon {
	vmkit_virtio_ops ops;
	const struct vmkit_gmem *mem;
	struct vmkit_loop *loop;
	int timer_fd;                  /* -1 without a loop */
	vmkit_virtio_dev *_Atomic dev; /* the core, known from the first callback */
	bool live;                     /* activated (or restored live), not reset */
	uint64_t features;             /* negotiated */
	int q_stats, q_report;         /* queue indices, -1 when absent */
	uint8_t config[CFG_SIZE];
	/* Statistics. */
	vmkit_virtq_elem *stats_elem;  /* the driver's buffer we keep */
	bool stats_restored;           /* a kept buffer from before a restore */
	uint16_t stats_head;           /* ... and its head index */
	bool timer_armed;
	uint64_t updates;
	uint16_t have;                 /* bit per tag received */
	uint64_t val[BALLOON_N_TAGS];
	/* Counters for the log. */
	uint64_t released, deflated, skipped;
	bool warned;                   /* a bad page was logged as a warning */
};

static uint32_t cfg_get(const struct balloon *b, uint32_t off)
{
	const uint8_t *p = b->config + off;

	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void cfg_put(struct balloon *b, uint32_t off, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		b->config[off + i] = (uint8_t)(v >> (8 * i));
}

/* ---- releasing guest pages ------------------------------------------------- */

/* The region holding [gpa, gpa + len) entirely, or NULL. */
static const struct vmkit_gmem_region *region_of(const struct vmkit_gmem *mem, uint64_t gpa,
						 uint64_t len)
{
	for (unsigned i = 0; i < mem->n; i++) {
		const struct vmkit_gmem_region *r = &mem->r[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->len && len <= r->len - (gpa - r->gpa))
			return r;
	}
	return NULL;
}

/* The region whose host mapping holds [hva, hva + len) entirely. */
static const struct vmkit_gmem_region *region_of_hva(const struct vmkit_gmem *mem,
						     const uint8_t *hva, uint64_t len)
{
	for (unsigned i = 0; i < mem->n; i++) {
		const struct vmkit_gmem_region *r = &mem->r[i];

		if (hva >= r->hva && (uint64_t)(hva - r->hva) < r->len &&
		    len <= r->len - (uint64_t)(hva - r->hva))
			return r;
	}
	return NULL;
}

static bool host_page_aligned(const void *p)
{
	return ((uintptr_t)p & (BALLOON_PAGE - 1)) == 0;
}

/* Give [hva, hva + len) of region @r back to the host. @hva and @len are
 * page-aligned and inside @r (the callers checked). */
static void discard(struct balloon *b, vmkit_virtio_dev *dev,
		    const struct vmkit_gmem_region *r, uint8_t *hva, uint64_t len)
{
	int ret = 0;

	if (r->fd >= 0) {
		off_t off = (off_t)(hva - r->hva);

		int mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

		if (fallocate(r->fd, mode, off, (off_t)len) == 0)
			ret = madvise(hva, len, MADV_DONTNEED);
		else
			ret = madvise(hva, len, MADV_REMOVE);
	} else {
		ret = madvise(hva, len, MADV_DONTNEED);
	}
	if (ret < 0) {
		dv_log(dev, VMKIT_LOG_WARN, "cannot release 0x%llx bytes of guest memory: %s",
		       (unsigned long long)len, strerror(errno));
		return;
	}
	b->released += len / BALLOON_PAGE;
}

/* Consecutive pages of one region, released with one call. */
struct run {
	const struct vmkit_gmem_region *r;
	uint8_t *hva;
	uint64_t len;
};

static void run_flush(struct balloon *b, vmkit_virtio_dev *dev, struct run *run)
{
	if (run->len)
		discard(b, dev, run->r, run->hva, run->len);
	run->len = 0;
}

/* Is page @pfn guest RAM we may release? Sets *@r and *@hva. */
static bool ram_page(const struct balloon *b, uint32_t pfn, const struct vmkit_gmem_region **r,
		     uint8_t **hva)
{
	uint64_t gpa = (uint64_t)pfn * BALLOON_PAGE, avail = 0;
	uint8_t *p = vmkit__gmem_span(b->mem, gpa, &avail);

	if (!p || avail < BALLOON_PAGE || !host_page_aligned(p))
		return false;
	*r = region_of(b->mem, gpa, BALLOON_PAGE);
	if (!*r || ((*r)->flags & VMKIT_MEMORY_READONLY))
		return false;
	*hva = p;
	return true;
}

/* An inflate or deflate buffer: an array of le32 page numbers. */
static void handle_pfns(struct balloon *b, vmkit_virtio_dev *dev, vmkit_virtq_elem *e,
			bool inflate)
{
	uint64_t total = e->out_len / 4, bad = 0, done = 0;
	struct run run = { 0 };
	uint32_t pfns[PFN_CHUNK];

	if (total > BALLOON_MAX_PFNS) {
		dv_log(dev, VMKIT_LOG_WARN, "%s buffer of %llu pages: only the first %u taken",
		       inflate ? "inflate" : "deflate", (unsigned long long)total,
		       BALLOON_MAX_PFNS);
		total = BALLOON_MAX_PFNS;
	}
	while (done < total) {
		size_t k = total - done < PFN_CHUNK ? (size_t)(total - done) : PFN_CHUNK;

		/* Copy once out of guest memory; use only the copy. */
		k = dv_iov_read(e->out, e->n_out, done * 4, pfns, k * 4) / 4;
		if (k == 0)
			break;
		for (size_t i = 0; i < k; i++) {
			const struct vmkit_gmem_region *r;
			uint8_t *hva;

			if (!ram_page(b, le32toh(pfns[i]), &r, &hva)) {
				bad++;
				continue;
			}
			if (!inflate) {
				b->deflated++;
				continue;
			}
			if (run.len && run.r == r && run.hva + run.len == hva) {
				run.len += BALLOON_PAGE;
				continue;
			}
			run_flush(b, dev, &run);
			run = (struct run){ r, hva, BALLOON_PAGE };
		}
		done += k;
	}
	run_flush(b, dev, &run);
	if (bad) {
		b->skipped += bad;
		/* A guest can send these at will: warn once, then only debug. */
		dv_log(dev, b->warned ? VMKIT_LOG_DEBUG : VMKIT_LOG_WARN,
		       "%s: %llu page number(s) not in guest RAM skipped (%llu so far)",
		       inflate ? "inflate" : "deflate", (unsigned long long)bad,
		       (unsigned long long)b->skipped);
		b->warned = true;
	}
	dv_log(dev, VMKIT_LOG_DEBUG, "%s: %llu pages released, %llu deflated so far",
	       inflate ? "inflate" : "deflate", (unsigned long long)b->released,
	       (unsigned long long)b->deflated);
}

/* Free page reporting: each buffer of the chain is a run of free guest
 * memory. Only whole pages inside it are released. */
static void discard_iov(struct balloon *b, vmkit_virtio_dev *dev, const struct iovec *iov)
{
	const uintptr_t mask = BALLOON_PAGE - 1;
	uintptr_t start = (uintptr_t)iov->iov_base, end = start + iov->iov_len;
	uint8_t *s = (uint8_t *)((start + mask) & ~mask);
	uint8_t *t = (uint8_t *)(end & ~mask);
	const struct vmkit_gmem_region *r;

	if (iov->iov_len == 0 || t <= s)
		return;
	r = region_of_hva(b->mem, s, (uint64_t)(t - s));
	if (!r || (r->flags & VMKIT_MEMORY_READONLY)) {
		b->skipped += (uint64_t)(t - s) / BALLOON_PAGE;
		dv_log(dev, b->warned ? VMKIT_LOG_DEBUG : VMKIT_LOG_WARN,
		       "reported range is not guest RAM: skipped");
		b->warned = true;
		return;
	}
	discard(b, dev, r, s, (uint64_t)(t - s));
}

/* Reported ranges come as device-writable buffers (the driver lends the
 * pages to the device, as Linux's virtqueue_add_inbuf() does; QEMU reads
 * only those too). A device-readable descriptor promises the device will
 * not change the memory, so it is never discarded. */
static void handle_report(struct balloon *b, vmkit_virtio_dev *dev, vmkit_virtq_elem *e)
{
	for (uint32_t i = 0; i < e->n_in; i++)
		discard_iov(b, dev, &e->in[i]);
	if (e->n_out) {
		dv_log(dev, b->warned ? VMKIT_LOG_DEBUG : VMKIT_LOG_WARN,
		       "free page report in device-readable buffers: ignored");
		b->warned = true;
	}
}

/* ---- statistics --------------------------------------------------------------- */

static void arm_stats_timer(struct balloon *b, uint64_t ns)
{
	struct itimerspec its = { 0 };

	if (b->timer_fd < 0 || b->timer_armed)
		return;
	its.it_value.tv_sec = (time_t)(ns / 1000000000ull);
	its.it_value.tv_nsec = (long)(ns % 1000000000ull);
	if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
		its.it_value.tv_nsec = 1;
	if (timerfd_settime(b->timer_fd, 0, &its, NULL) == 0)
		b->timer_armed = true;
}

static void disarm_stats_timer(struct balloon *b)
{
	struct itimerspec its = { 0 };

	if (b->timer_fd >= 0)
		timerfd_settime(b->timer_fd, 0, &its, NULL);
	b->timer_armed = false;
}

static void parse_stats(struct balloon *b, const vmkit_virtq_elem *e)
{
	uint8_t buf[BALLOON_MAX_STATS * STAT_ENTRY];
	size_t n = dv_iov_read(e->out, e->n_out, 0, buf, sizeof(buf)) / STAT_ENTRY;

	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = buf + i * STAT_ENTRY;
		uint16_t tag = (uint16_t)(p[0] | p[1] << 8);
		uint64_t v = 0;

		for (unsigned k = 0; k < 8; k++)
			v |= (uint64_t)p[2 + k] << (8 * k);
		if (tag < BALLOON_N_TAGS) { /* unknown tags are ignored (5.5.6.3) */
			b->val[tag] = v;
			b->have |= (uint16_t)(1u << tag);
		}
	}
	b->updates++;
}

/* Use the kept stats buffer: that asks the driver for fresh numbers. */
static void request_stats(struct balloon *b, vmkit_virtio_dev *dev)
{
	if (b->stats_elem) {
		vmkit_virtq_push(dev, b->stats_elem, 0);
		b->stats_elem = NULL;
		vmkit_virtq_notify(dev, (uint16_t)b->q_stats);
	}
}

static void handle_stats_queue(struct balloon *b, vmkit_virtio_dev *dev)
{
	vmkit_virtq_elem *e;

	while (vmkit_virtq_pop(dev, (uint16_t)b->q_stats, &e) > 0) {
		/* The driver keeps at most one buffer here; if it sends
		 * another, the older one goes back at once. */
		request_stats(b, dev);
		parse_stats(b, e);
		b->stats_elem = e;
	}
	if (b->stats_elem)
		arm_stats_timer(b, STATS_PERIOD_NS);
}

/* A buffer kept when the state was saved is in flight in the restored
 * queue: give it back (a stats request) once the core is known. */
static void finish_restored(struct balloon *b, vmkit_virtio_dev *dev)
{
	struct virtq *vq;

	if (!b->stats_restored)
		return;
	b->stats_restored = false;
	if (!b->live || b->q_stats < 0)
		return;
	vq = &dev->vq[b->q_stats];
	if (virtq_push(vq, b->stats_head, 0) == 0)
		vmkit_virtq_notify(dev, (uint16_t)b->q_stats);
}

/* Learn the core from the first call that names it (activate normally;
 * after a restore, whichever comes first). */
static void attach(struct balloon *b, vmkit_virtio_dev *dev)
{
	if (!atomic_load(&b->dev))
		atomic_store(&b->dev, dev);
	finish_restored(b, dev);
}

static void on_timer(void *opaque, int fd, uint32_t events)
{
	struct balloon *b = opaque;
	vmkit_virtio_dev *dev = atomic_load(&b->dev);
	uint64_t ticks;

	(void)events;
	if (read(fd, &ticks, sizeof(ticks)) < 0) {
		/* disarmed meanwhile */
	}
	if (!dev)
		return;
	vmkit_virtio_lock(dev);
	b->timer_armed = false;
	if (b->live && b->q_stats >= 0)
		request_stats(b, dev);
	vmkit_virtio_unlock(dev);
}

/* ---- device callbacks ----------------------------------------------------------- */

static void set_queues(struct balloon *b, uint64_t features)
{
	int next = 2;

	b->features = features;
	b->q_stats = (features & VIRTIO_BIT(BALLOON_F_STATS_VQ)) ? next++ : -1;
	b->q_report = (features & VIRTIO_BIT(BALLOON_F_PAGE_REPORTING)) ? next++ : -1;
}

static void balloon_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
	struct balloon *b = opaque;

	memcpy(data, b->config + offset, len);
}

static void balloon_config_write(void *opaque, uint32_t offset, const void *data, uint32_t len)
{
	struct balloon *b = opaque;
	const uint8_t *d = data;

	for (uint32_t i = 0; i < len; i++) {
		uint32_t o = offset + i;

		bool writable = (o >= CFG_ACTUAL && o < CFG_ACTUAL + 4) ||
				(o >= CFG_POISON && o < CFG_POISON + 4);

		if (writable)
			b->config[o] = d[i];
	}
}

static void serve_pages(struct balloon *b, vmkit_virtio_dev *dev, uint16_t queue)
{
	vmkit_virtq_elem *e;
	bool pushed = false;
	unsigned n = 0;

	while (vmkit_virtq_pop(dev, queue, &e) > 0) {
		if ((int)queue == b->q_report)
			handle_report(b, dev, e);
		else
			handle_pfns(b, dev, e, queue == 0);
		vmkit_virtq_push(dev, e, 0);
		pushed = true;
		/* A bounded batch: the I/O thread serves others meanwhile. */
		if (++n == BALLOON_BATCH) {
			vmkit_virtq_kick_later(dev, queue);
			break;
		}
	}
	if (pushed)
		vmkit_virtq_notify(dev, queue);
}

static void serve(struct balloon *b, vmkit_virtio_dev *dev, uint16_t queue)
{
	if (!b->live)
		return;
	if (queue == 0 || queue == 1 || (int)queue == b->q_report)
		serve_pages(b, dev, queue);
	else if ((int)queue == b->q_stats)
		handle_stats_queue(b, dev);
}

static int balloon_activate(void *opaque, vmkit_virtio_dev *dev, uint64_t features)
{
	struct balloon *b = opaque;

	atomic_store(&b->dev, dev);
	set_queues(b, features);
	b->live = true;
	finish_restored(b, dev);
	/* The driver fills the stats queue (and may fill others) before
	 * DRIVER_OK; those notifications never reached us. */
	for (uint16_t q = 0; q < BALLOON_MAX_QUEUES; q++)
		serve(b, dev, q);
	return 0;
}

static void balloon_notify(void *opaque, vmkit_virtio_dev *dev, uint16_t queue)
{
	struct balloon *b = opaque;

	attach(b, dev);
	serve(b, dev, queue);
}

static void balloon_reset(void *opaque, vmkit_virtio_dev *dev)
{
	struct balloon *b = opaque;

	attach(b, dev);
	b->live = false;
	vmkit_virtq_elem_free(b->stats_elem);
	b->stats_elem = NULL;
	b->stats_restored = false;
	disarm_stats_timer(b);
	set_queues(b, 0);
	/* A new driver starts with an empty balloon; the target stays. */
	cfg_put(b, CFG_ACTUAL, 0);
	cfg_put(b, CFG_POISON, 0);
}

/* State: u64 features, u8 live, config[16], u8 stats kept, u16 its head,
 * u64 updates, u16 tags present, u64 value per tag. */
static long balloon_save(void *opaque, void *buf, size_t cap)
{
	struct balloon *b = opaque;
	struct dev_state_writer *w = malloc(sizeof(*w));
	bool kept = b->stats_elem || b->stats_restored;
	long ret;

	if (!w)
		return vmkit__err(-ENOMEM, "virtio-balloon: out of memory saving state");
	dev_state_begin(w, "VBAL");
	dev_state_put_u64(w, b->features);
	dev_state_put_u8(w, b->live);
	dev_state_put_bytes(w, b->config, CFG_SIZE);
	dev_state_put_u8(w, kept);
	dev_state_put_u16(w, b->stats_elem ? b->stats_elem->head : b->stats_head);
	dev_state_put_u64(w, b->updates);
	dev_state_put_u16(w, b->have);
	for (unsigned i = 0; i < BALLOON_N_TAGS; i++)
		dev_state_put_u64(w, b->val[i]);
	ret = dv_save_out(w, BALLOON_STATE_VERSION, buf, cap);
	free(w);
	return ret;
}

static int balloon_restore(void *opaque, const void *buf, size_t len)
{
	struct balloon *b = opaque;
	struct dev_state_reader r;
	uint64_t features, updates, val[BALLOON_N_TAGS];
	uint8_t live, kept, config[CFG_SIZE];
	uint16_t head, have;
	uint32_t target;
	uint64_t ram_pages = vmkit__gmem_total(b->mem) / BALLOON_PAGE;
	int ret = dev_state_open(&r, buf, len, "VBAL", BALLOON_STATE_VERSION);

	if (ret < 0)
		return ret;
	features = dev_state_get_u64(&r);
	live = dev_state_get_u8(&r);
	dev_state_get_bytes(&r, config, CFG_SIZE);
	kept = dev_state_get_u8(&r);
	head = dev_state_get_u16(&r);
	updates = dev_state_get_u64(&r);
	have = dev_state_get_u16(&r);
	for (unsigned i = 0; i < BALLOON_N_TAGS; i++)
		val[i] = dev_state_get_u64(&r);
	if ((ret = dev_state_close(&r)) < 0)
		return ret;
	if (features & ~(BALLOON_FEATURES | VIRTIO_TRANSPORT_FEATURES))
		return vmkit__err(-EINVAL, "VBAL state: features not offered");
	if (live > 1 || kept > 1 ||
	    (kept && (!live || !(features & VIRTIO_BIT(BALLOON_F_STATS_VQ)))))
		return vmkit__err(-EINVAL, "VBAL state: inconsistent flags");
	if (head >= VMKIT_VIRTQ_MAX_SIZE || (have & ~((1u << BALLOON_N_TAGS) - 1)))
		return vmkit__err(-EINVAL, "VBAL state: bad stats fields");
	target = (uint32_t)config[0] | (uint32_t)config[1] << 8 | (uint32_t)config[2] << 16 |
		 (uint32_t)config[3] << 24;
	if (target > ram_pages)
		return vmkit__err(-EINVAL, "VBAL state: target of %u pages above guest RAM", target);
	vmkit_virtq_elem_free(b->stats_elem);
	b->stats_elem = NULL;
	memcpy(b->config, config, CFG_SIZE);
	cfg_put(b, 8, 0); /* free_page_hint_cmd_id: FREE_PAGE_HINT is not offered */
	set_queues(b, live ? features : 0);
	b->live = live;
	b->stats_restored = kept;
	b->stats_head = head;
	b->updates = updates;
	b->have = have;
	memcpy(b->val, val, sizeof(val));
	return 0;
}

static void balloon_destroy(void *opaque)
{
	struct balloon *b = opaque;

	if (!b)
		return;
	vmkit_virtq_elem_free(b->stats_elem);
	if (b->timer_fd >= 0) {
		vmkit__loop_del(b->loop, b->timer_fd);
		close(b->timer_fd);
	}
	free(b);
}

static const vmkit_virtio_ops balloon_ops_template = {
	.size = sizeof(vmkit_virtio_ops),
	.device_id = VMKIT_VIRTIO_ID_BALLOON,
	.num_queues = BALLOON_MAX_QUEUES,
	.queue_max = BALLOON_QUEUE_SIZE,
	.config_size = CFG_SIZE,
	.features = BALLOON_FEATURES,
	.config_read = balloon_config_read,
	.config_write = balloon_config_write,
	.activate = balloon_activate,
	.queue_notify = balloon_notify,
	.reset = balloon_reset,
	.save = balloon_save,
	.restore = balloon_restore,
	.destroy = balloon_destroy,
};

int virtio_balloon_create(const struct vmkit_gmem *mem, struct vmkit_loop *loop,
			  const vmkit_virtio_ops **ops, void **opaque)
{
	struct balloon *b;
	int ret;

	if (!mem)
		return vmkit__err(-EINVAL, "virtio-balloon: no guest memory");
	b = calloc(1, sizeof(*b));
	if (!b)
		return vmkit__err(-ENOMEM, "virtio-balloon: out of memory");
	b->ops = balloon_ops_template;
	b->mem = mem;
	b->loop = loop;
	b->timer_fd = -1;
	set_queues(b, 0);
	if ((ret = dv_timer_new(loop, "virtio-balloon", on_timer, b, &b->timer_fd)) < 0) {
		free(b);
		return ret;
	}
	*ops = &b->ops;
	*opaque = b;
	return 0;
}

/* ---- control-thread calls ------------------------------------------------------- */

int virtio_balloon_set_target(void *opaque, vmkit_virtio_dev *dev, uint64_t bytes)
{
	struct balloon *b = opaque;
	uint64_t pages = bytes / BALLOON_PAGE, ram;

	if (!b || !dev)
		return vmkit__err(-EINVAL, "balloon: no device");
	ram = vmkit__gmem_total(b->mem);
	if (bytes > ram)
		return vmkit__err(-EINVAL, "balloon target of %llu bytes is above the guest's %llu",
				  (unsigned long long)bytes, (unsigned long long)ram);
	if (pages > UINT32_MAX)
		return vmkit__err(-EINVAL, "balloon target of %llu pages is too large",
				  (unsigned long long)pages);
	vmkit_virtio_lock(dev);
	attach(b, dev);
	if (cfg_get(b, CFG_NUM_PAGES) != (uint32_t)pages) {
		cfg_put(b, CFG_NUM_PAGES, (uint32_t)pages);
		if (b->live)
			vmkit_virtio_config_changed(dev);
	}
	vmkit_virtio_unlock(dev);
	return 0;
}

int virtio_balloon_get_actual(void *opaque, vmkit_virtio_dev *dev, uint64_t *bytes)
{
	struct balloon *b = opaque;

	if (!b || !dev || !bytes)
		return vmkit__err(-EINVAL, "balloon: bad arguments");
	vmkit_virtio_lock(dev);
	attach(b, dev);
	*bytes = (uint64_t)cfg_get(b, CFG_ACTUAL) * BALLOON_PAGE;
	vmkit_virtio_unlock(dev);
	return 0;
}

int virtio_balloon_get_stats(void *opaque, vmkit_virtio_dev *dev, vmkit_balloon_stats *st)
{
	struct balloon *b = opaque;
	uint64_t v[BALLOON_N_TAGS];

	if (!b || !dev || !st)
		return vmkit__err(-EINVAL, "balloon: bad arguments");
	if (st->size < sizeof(*st))
		return vmkit__err(-EINVAL, "balloon stats: size %u, expected at least %zu", st->size,
				  sizeof(*st));
	vmkit_virtio_lock(dev);
	attach(b, dev);
	for (unsigned i = 0; i < BALLOON_N_TAGS; i++)
		v[i] = (b->have & (1u << i)) ? b->val[i] : UINT64_MAX;
	st->updates = b->updates;
	vmkit_virtio_unlock(dev);
	st->reserved = 0;
	st->swap_in = v[0];
	st->swap_out = v[1];
	st->major_faults = v[2];
	st->minor_faults = v[3];
	st->free_memory = v[4];
	st->total_memory = v[5];
	st->available_memory = v[6];
	st->disk_caches = v[7];
	st->hugetlb_allocations = v[8];
	st->hugetlb_failures = v[9];
	return 0;
}
