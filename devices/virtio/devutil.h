/* SPDX-License-Identifier: MIT */
/* Small helpers shared by the built-in virtio devices (console, rng,
 * balloon, net): copies between guest iovecs and host buffers, a device log
 * line through the machine's logger, and the save() contract on top of
 * the device-state blob writer. Header-only: each device includes it. */
#ifndef VMKIT_DEVICES_VIRTIO_DEVUTIL_H
#define VMKIT_DEVICES_VIRTIO_DEVUTIL_H

#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "devices/legacy/legacy.h"
#include "devices/virtio/virtio.h"
#include "loop/loop.h"

/* Copy up to @len bytes out of the iovecs @iov[0..@n) starting @off bytes
 * in, into @dst. Returns the bytes copied (less at the end of the iovecs).
 * The source is guest memory: copy once, then validate the copy. */
static inline size_t dv_iov_read(const struct iovec *iov, uint32_t n, uint64_t off, void *dst,
				 size_t len)
{
	uint8_t *d = dst;
	size_t done = 0;

	for (uint32_t i = 0; i < n && done < len; i++) {
		size_t l = iov[i].iov_len, k;

		if (off >= l) {
			off -= l;
			continue;
		}
		k = l - (size_t)off < len - done ? l - (size_t)off : len - done;
		memcpy(d + done, (const uint8_t *)iov[i].iov_base + off, k);
		done += k;
		off = 0;
	}
	return done;
}

/* Copy @len bytes from @src into the iovecs @iov[0..@n) starting @off
 * bytes in. Returns the bytes copied (less when the iovecs end). */
static inline size_t dv_iov_write(const struct iovec *iov, uint32_t n, uint64_t off,
				  const void *src, size_t len)
{
	const uint8_t *s = src;
	size_t done = 0;

	for (uint32_t i = 0; i < n && done < len; i++) {
		size_t l = iov[i].iov_len, k;

		if (off >= l) {
			off -= l;
			continue;
		}
		k = l - (size_t)off < len - done ? l - (size_t)off : len - done;
		memcpy((uint8_t *)iov[i].iov_base + off, s + done, k);
		done += k;
		off = 0;
	}
	return done;
}

/* One log line through the logger of the machine @dev belongs to (none
 * in unit tests, where the device has no machine). */
static inline void dv_log(vmkit_virtio_dev *dev, vmkit_log_level level, const char *fmt, ...)
	VMKIT_PRINTF(3, 4);
static inline void dv_log(vmkit_virtio_dev *dev, vmkit_log_level level, const char *fmt, ...)
{
	vmkit_machine *m = dev ? dev->machine : NULL;
	vmkit_vm *vm = m ? vmkit_machine_vm(m) : NULL;
	char buf[400];
	va_list ap;

	if (!vm || !vm->log.fn || level > vm->log.max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	vmkit__log(&vm->log, level, "%s: %s", dev->name, buf);
}

/* Finish @w into a blob and hand it out by the vmkit_virtio_ops.save rule:
 * copy it to @buf when it fits in @cap and return its length; return the
 * length needed when it does not; < 0 on error. */
static inline long dv_save_out(struct dev_state_writer *w, uint32_t version, void *buf,
			       size_t cap)
{
	struct dev_state st;
	long len;
	int ret = dev_state_finish(w, version, &st);

	if (ret < 0)
		return ret;
	len = (long)st.len;
	if (st.len <= cap)
		memcpy(buf, st.data, st.len);
	dev_state_free(&st);
	return len;
}

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t dv_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A timerfd watched on @loop calling @fn; -1 in *@fd without a loop.
 * Errors name @what. */
static inline int dv_timer_new(struct vmkit_loop *loop, const char *what, vmkit_loop_fn fn,
			       void *opaque, int *fd)
{
	int ret;

	*fd = -1;
	if (!loop)
		return 0;
	*fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (*fd < 0)
		return vmkit__err(-errno, "%s: timerfd: %s", what, strerror(errno));
	if ((ret = vmkit__loop_add(loop, *fd, EPOLLIN, fn, opaque)) < 0) {
		close(*fd);
		*fd = -1;
	}
	return ret;
}

#endif
