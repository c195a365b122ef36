/* SPDX-License-Identifier: MIT */
/* virtio-rng (VIRTIO 1.2, 5.4): one request queue; each chain's
 * device-writable buffers are filled with getrandom() bytes.
 *
 * Rate limit: a token bucket of bytes, refilled from CLOCK_MONOTONIC at
 * @bytes_per_sec and holding at most RNG_BURST(rate) bytes. It starts
 * full at creation and is never refilled by a reset, so a guest cannot
 * reset its way past the limit. When it is empty, requests stay on the
 * queue (not popped) and a timerfd on the I/O loop resumes the work once
 * enough tokens have accumulated. A request gets as many bytes as there
 * are tokens (the spec lets the device use less than the whole buffer).
 *
 * Threads: queue_notify/activate/reset run with the device lock held (I/O
 * or vCPU thread); the timer callback runs on the I/O thread and takes
 * the device lock itself. All state below is under the device lock. */
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "devices/virtio/devices.h"
#include "devices/virtio/devutil.h"
#include "loop/loop.h"

#define RNG_STATE_VERSION 2u
#define RNG_QUEUE_SIZE 256u
/* Bytes given to one request at most (a hostile 4 GiB buffer must not
 * keep the thread busy for seconds), and chains served per wake-up. */
#define RNG_MAX_PER_REQUEST (64u * 1024u)
#define RNG_BATCH 64u
/* Tokens worth waiting for before the timer resumes the work. */
#define RNG_RESUME_TOKENS 64u
#define NS_PER_SEC 1000000000ull

/* Bucket size: an eighth of a second's worth, at least 64 bytes (or the
 * whole rate when that is smaller). */
static uint64_t rng_burst(uint64_t rate)
{
	uint64_t b = rate / 8;

	if (b < RNG_RESUME_TOKENS)
		b = rate < RNG_RESUME_TOKENS ? rate : RNG_RESUME_TOKENS;
	return b;
}

struct rng {
	vmkit_virtio_ops ops;
	struct vmkit_loop *loop;
	int timer_fd;                 /* -1 without a loop */
	vmkit_virtio_dev *_Atomic dev; /* the core, known from activate on */
	bool live;                    /* activated (or restored live), not reset since */
	bool timer_armed;
	uint64_t rate;                /* bytes per second; 0: no limit */
	uint64_t burst;
	uint64_t tokens;
	uint64_t last_ns;             /* refill clock */
};

static void refill(struct rng *r)
{
	uint64_t now = dv_now_ns();
	unsigned __int128 add;

	if (now <= r->last_ns)
		return;
	add = (unsigned __int128)(now - r->last_ns) * r->rate / NS_PER_SEC;
	if (add == 0)
		return;
	if (add >= r->burst - r->tokens) {
		r->tokens = r->burst;
		r->last_ns = now;
	} else {
		r->tokens += (uint64_t)add;
		/* Advance the clock only by the time those tokens took, so
		 * that fractions of a token are not lost. */
		r->last_ns += (uint64_t)(add * NS_PER_SEC / r->rate);
	}
}

static void arm_timer(struct rng *r, uint64_t delay_ns)
{
	struct itimerspec its = { 0 };

	if (r->timer_fd < 0 || r->timer_armed)
		return;
	if (delay_ns == 0)
		delay_ns = 1;
	its.it_value.tv_sec = (time_t)(delay_ns / NS_PER_SEC);
	its.it_value.tv_nsec = (long)(delay_ns % NS_PER_SEC);
	if (timerfd_settime(r->timer_fd, 0, &its, NULL) == 0)
		r->timer_armed = true;
}

static void disarm_timer(struct rng *r)
{
	struct itimerspec its = { 0 };

	if (r->timer_fd >= 0)
		timerfd_settime(r->timer_fd, 0, &its, NULL);
	r->timer_armed = false;
}

/* Time until RNG_RESUME_TOKENS (or a full bucket, if smaller) are there. */
static uint64_t wait_ns(const struct rng *r)
{
	uint64_t want = r->burst < RNG_RESUME_TOKENS ? r->burst : RNG_RESUME_TOKENS;
	uint64_t now = dv_now_ns(), ready;

	if (r->tokens >= want)
		return 0;
	ready = r->last_ns + (uint64_t)(((unsigned __int128)(want - r->tokens) * NS_PER_SEC +
					 r->rate - 1) / r->rate);
	return ready > now ? ready - now : 0;
}

/* Fill up to @want bytes of @e's writable buffers; returns the count. */
static uint32_t fill_random(vmkit_virtq_elem *e, uint64_t want)
{
	uint64_t done = 0;

	for (uint32_t i = 0; i < e->n_in && done < want; i++) {
		uint8_t *p = e->in[i].iov_base;
		size_t len = e->in[i].iov_len;

		if (len > want - done)
			len = (size_t)(want - done);
		while (len > 0) {
			ssize_t n = getrandom(p, len, 0);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				return (uint32_t)done;
			}
			p += n;
			len -= (size_t)n;
			done += (uint64_t)n;
		}
	}
	return (uint32_t)done;
}

static void process(struct rng *r, vmkit_virtio_dev *dev)
{
	bool pushed = false;
	unsigned served = 0;

	while (r->live) {
		vmkit_virtq_elem *e;
		uint64_t want;
		uint32_t n;

		if (r->rate) {
			refill(r);
			if (r->tokens == 0) {
				arm_timer(r, wait_ns(r));
				break;
			}
		}
		if (served == RNG_BATCH && r->timer_fd >= 0) {
			/* Let the loop breathe; the timer brings us back. */
			arm_timer(r, 0);
			break;
		}
		if (vmkit_virtq_pop(dev, 0, &e) <= 0)
			break;
		served++;
		want = e->in_len < RNG_MAX_PER_REQUEST ? e->in_len : RNG_MAX_PER_REQUEST;
		if (r->rate && want > r->tokens)
			want = r->tokens;
		n = fill_random(e, want);
		if (r->rate)
			r->tokens -= n;
		vmkit_virtq_push(dev, e, n);
		pushed = true;
	}
	if (pushed)
		vmkit_virtq_notify(dev, 0);
}

static void on_timer(void *opaque, int fd, uint32_t events)
{
	struct rng *r = opaque;
	vmkit_virtio_dev *dev = atomic_load(&r->dev);
	uint64_t ticks;

	(void)events;
	if (read(fd, &ticks, sizeof(ticks)) < 0) {
		/* EAGAIN: disarmed meanwhile; nothing to drain */
	}
	if (!dev)
		return;
	vmkit_virtio_lock(dev);
	r->timer_armed = false;
	process(r, dev);
	vmkit_virtio_unlock(dev);
}

static int rng_activate(void *opaque, vmkit_virtio_dev *dev, uint64_t features)
{
	struct rng *r = opaque;

	(void)features;
	atomic_store(&r->dev, dev);
	r->live = true;
	/* Requests queued before DRIVER_OK were never notified to us. */
	process(r, dev);
	return 0;
}

static void rng_notify(void *opaque, vmkit_virtio_dev *dev, uint16_t queue)
{
	struct rng *r = opaque;

	if (!atomic_load(&r->dev))
		atomic_store(&r->dev, dev); /* restored live: no activate came */
	if (queue == 0)
		process(r, dev);
}

static void rng_reset(void *opaque, vmkit_virtio_dev *dev)
{
	struct rng *r = opaque;

	(void)dev;
	r->live = false;
	disarm_timer(r);
}

static long rng_save(void *opaque, void *buf, size_t cap)
{
	struct rng *r = opaque;
	struct dev_state_writer w;

	dev_state_begin(&w, "VRNG");
	dev_state_put_u64(&w, r->rate);
	dev_state_put_u8(&w, r->live);
	return dv_save_out(&w, RNG_STATE_VERSION, buf, cap);
}

static int rng_restore(void *opaque, const void *buf, size_t len)
{
	struct rng *r = opaque;
	struct dev_state_reader rd;
	uint64_t rate;
	uint8_t live;
	int ret = dev_state_open(&rd, buf, len, "VRNG", RNG_STATE_VERSION);

	if (ret < 0)
		return ret;
	rate = dev_state_get_u64(&rd);
	live = dev_state_get_u8(&rd);
	if ((ret = dev_state_close(&rd)) < 0)
		return ret;
	if (live > 1)
		return vmkit__err(-EINVAL, "VRNG state: bad live flag %u", live);
	if (rate && r->timer_fd < 0)
		return vmkit__err(-EINVAL, "VRNG state: a rate limit needs an event loop");
	/* A device saved live serves the next notification without a new
	 * activate (the core restores DRIVER_OK); the timer learns the core
	 * from that notification. */
	if (!live)
		disarm_timer(r);
	r->live = live;
	r->rate = rate;
	r->burst = rng_burst(rate);
	r->tokens = r->burst;
	r->last_ns = dv_now_ns();
	return 0;
}

static void rng_destroy(void *opaque)
{
	struct rng *r = opaque;

	if (!r)
		return;
	if (r->timer_fd >= 0) {
		vmkit__loop_del(r->loop, r->timer_fd);
		close(r->timer_fd);
	}
	free(r);
}

static const vmkit_virtio_ops rng_ops_template = {
	.size = sizeof(vmkit_virtio_ops),
	.device_id = VMKIT_VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_max = RNG_QUEUE_SIZE,
	.config_size = 0,
	.features = 0,
	.activate = rng_activate,
	.queue_notify = rng_notify,
	.reset = rng_reset,
	.save = rng_save,
	.restore = rng_restore,
	.destroy = rng_destroy,
};

int virtio_rng_create(uint64_t bytes_per_sec, struct vmkit_loop *loop,
		      const vmkit_virtio_ops **ops, void **opaque)
{
	struct rng *r;
	int ret;

	if (bytes_per_sec && !loop)
		return vmkit__err(-EINVAL, "virtio-rng: a rate limit needs an event loop");
	r = calloc(1, sizeof(*r));
	if (!r)
		return vmkit__err(-ENOMEM, "virtio-rng: out of memory");
	r->ops = rng_ops_template;
	r->loop = loop;
	r->timer_fd = -1;
	r->rate = bytes_per_sec;
	r->burst = rng_burst(bytes_per_sec);
	r->tokens = r->burst;
	r->last_ns = dv_now_ns();
	if ((ret = dv_timer_new(loop, "virtio-rng", on_timer, r, &r->timer_fd)) < 0) {
		free(r);
		return ret;
	}
	*ops = &r->ops;
	*opaque = r;
	return 0;
}
