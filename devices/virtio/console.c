/* SPDX-License-Identifier: MIT */
/* virtio-console (VIRTIO 1.2, 5.3): port 0 is the console; with more than
 * one port the device offers VIRTIO_CONSOLE_F_MULTIPORT and announces the
 * ports over the control queues. Queues (5.3.2): receiveq0, transmitq0,
 * control receiveq, control transmitq, receiveq1, transmitq1, ...
 *
 * Host side: each port has an input fd (host to guest) and an output fd
 * (guest to host), either may be -1. We keep private duplicates so the
 * caller's fds and their flags are left alone where possible:
 *  - sockets: dup(), then recvmsg/send with MSG_DONTWAIT (and MSG_NOSIGNAL);
 *  - pipes/FIFOs: reopened through /proc/self/fd with O_NONBLOCK, which
 *    gives a file description of our own;
 *  - other pollable files (terminals): dup(), O_NONBLOCK set only around
 *    each read or write (the description is shared with the caller);
 *  - files epoll cannot watch (regular files, /dev/null): plain I/O, which
 *    does not block on them.
 * Writes to a pipe never raise SIGPIPE in the process: the signal is
 * blocked around the write and a pending one it caused is consumed.
 *
 * Output (transmitq to the output fd) never blocks the calling thread:
 * guest buffers are copied into a bounded per-port buffer and returned;
 * the buffer is written with non-blocking writes; while it is full no
 * further transmit buffers are taken, and EPOLLOUT on the loop resumes.
 * Input (input fd to receiveq): when the fd is readable and the guest has
 * a receive buffer, one read fills it. With no buffer the fd is no longer
 * watched until the guest notifies the receive queue. End of input (EOF,
 * POLLHUP with nothing left) stops reading for good.
 *
 * Threads: device callbacks run with the device lock held (I/O thread or
 * vCPU thread); the loop callbacks (fd readiness, the wake eventfd) run on
 * the I/O thread and take the device lock. Loop registrations change only
 * on the loop thread: from elsewhere, a write to the wake eventfd asks the
 * loop thread to bring them up to date. All state is under the device
 * lock. */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/virtio/devices.h"
#include "devices/virtio/devutil.h"
#include "loop/loop.h"

/* Feature bits (5.3.3). VIRTIO_CONSOLE_F_SIZE and EMERG_WRITE are not
 * offered. */
#define CONSOLE_F_MULTIPORT 1

/* Control events (5.3.6.2). */
#define CTL_DEVICE_READY 0
#define CTL_PORT_ADD 1
#define CTL_PORT_READY 3
#define CTL_CONSOLE_PORT 4
#define CTL_PORT_OPEN 6
#define CTL_PORT_NAME 7
#define CTL_HDR 8u /* le32 id, le16 event, le16 value */

/* Control messages still to send for a port, in this order. */
#define PEND_ADD 1u
#define PEND_CONSOLE 2u
#define PEND_NAME 4u
#define PEND_OPEN 8u
#define PEND_ALL 15u

#define CON_QUEUE_SIZE 256u
#define CON_CTRL_RX 2u
#define CON_CTRL_TX 3u
/* Output buffering: at most CON_OUT_MAX bytes per port and CON_OUT_BUDGET
 * over all ports (so that a saved state always fits one blob). */
#define CON_OUT_MAX 4096u
#define CON_OUT_BUDGET 12288u
/* Chains handled per port per wake-up before others get a turn. */
#define CON_BATCH 64u
#define CON_NAME_MAX 255u
#define CON_CONFIG_SIZE 12u /* cols, rows, max_nr_ports, emerg_wr */
#define CON_STATE_VERSION 1u

enum fd_kind {
	FDK_NONE,     /* no fd */
	FDK_SOCKET,   /* MSG_DONTWAIT */
	FDK_OWN,      /* our own non-blocking description */
	FDK_TOGGLE,   /* shared description: O_NONBLOCK around each call */
	FDK_PLAIN,    /* not pollable (regular file): plain I/O */
};

struct con_fd {
	int fd;
	enum fd_kind kind;
	bool watched; /* registered on the loop */
	bool unwatchable; /* the loop refused it: not tried again */
};

struct console;

struct con_port {
	struct console *c;
	unsigned id;
	char *name;
	struct con_fd in, out;
	bool eof;          /* input ended: no more reading */
	bool out_dead;     /* output fd failed: guest output is dropped */
	bool guest_open;   /* the driver opened the port (always, without MULTIPORT) */
	bool added;        /* PORT_ADD was sent (5.3.6.2.1: never twice) */
	bool rx_starved;   /* no receive buffer: wait for the guest's notify */
	bool more;         /* a batch limit was hit: the wake callback goes on */
	uint8_t pending;   /* PEND_* */
	/* Output buffer and the transmit chain partly copied into it. */
	uint8_t *obuf;
	uint32_t ocap, olen;
	vmkit_virtq_elem *tx_held;
	uint64_t tx_off;
	/* A chain kept when the state was saved, in flight after a restore. */
	bool tx_restored;
	uint16_t tx_head;
};

struct console {
	vmkit_virtio_ops ops;
	struct vmkit_loop *loop;
	int wake_fd;                   /* eventfd, -1 without a loop */
	vmkit_virtio_dev *_Atomic dev; /* the core, known from the first callback */
	bool live;                     /* activated (or restored live), not reset */
	bool multiport;                /* negotiated */
	bool ready;                    /* the driver sent DEVICE_READY */
	uint64_t features;
	size_t n_ports;
	struct con_port port[VIRTIO_CONSOLE_MAX_PORTS];
	uint8_t config[CON_CONFIG_SIZE];
};

static uint16_t rx_queue(unsigned port) { return (uint16_t)(port == 0 ? 0 : 2 * (port + 1)); }
static uint16_t tx_queue(unsigned port) { return (uint16_t)(rx_queue(port) + 1); }

/* ---- host fds ----------------------------------------------------------------- */

static void fd_nop(void *opaque, int fd, uint32_t events)
{
	(void)opaque;
	(void)fd;
	(void)events;
}

/* Take a private handle on @fd for reading (@input) or writing. */
static int fd_open(struct console *c, struct con_fd *f, int fd, bool input)
{
	struct stat st;
	int nfd = -1, ret;

	f->fd = -1;
	f->kind = FDK_NONE;
	f->watched = false;
	f->unwatchable = false;
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0)
		return vmkit__err(-errno, "virtio-console: fd %d: %s", fd, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return vmkit__err(-EINVAL, "virtio-console: fd %d is a directory", fd);
	if (S_ISFIFO(st.st_mode)) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		nfd = open(path, (input ? O_RDONLY : O_WRONLY) | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (nfd >= 0)
			f->kind = FDK_OWN;
	}
	if (nfd < 0) {
		nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (nfd < 0)
			return vmkit__err(-errno, "virtio-console: dup fd %d: %s", fd, strerror(errno));
		if (S_ISSOCK(st.st_mode))
			f->kind = FDK_SOCKET;
		else if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
			f->kind = FDK_PLAIN;
		else
			f->kind = FDK_TOGGLE;
	}
	f->fd = nfd;
	if (f->kind != FDK_PLAIN) {
		/* Can the loop watch it at all? (/dev/null cannot.) */
		ret = vmkit__loop_add(c->loop, nfd, 0, fd_nop, NULL);
		if (ret == -EPERM)
			f->kind = FDK_PLAIN;
		else if (ret < 0)
			return ret;
		else
			vmkit__loop_del(c->loop, nfd);
	}
	return 0;
}

static void fd_close(struct console *c, struct con_fd *f)
{
	if (f->fd < 0)
		return;
	if (f->watched)
		vmkit__loop_del(c->loop, f->fd);
	close(f->fd);
	f->fd = -1;
	f->watched = false;
}

/* Run @op with O_NONBLOCK set on a shared description, then put the flags
 * back. */
static int nonblock_begin(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	return fl;
}

static void nonblock_end(int fd, int fl)
{
	int e = errno;

	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl);
	errno = e;
}

static ssize_t fd_readv(struct con_fd *f, const struct iovec *iov, uint32_t n)
{
	int cnt = n > IOV_MAX ? IOV_MAX : (int)n;
	ssize_t r;
	int fl;

	switch (f->kind) {
	case FDK_SOCKET: {
		struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt };
		return recvmsg(f->fd, &m, MSG_DONTWAIT);
	}
	case FDK_TOGGLE:
		fl = nonblock_begin(f->fd);
		r = readv(f->fd, iov, cnt);
		nonblock_end(f->fd, fl);
		return r;
	default:
		return readv(f->fd, iov, cnt);
	}
}

/* write() without SIGPIPE reaching the process when the reader is gone. */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len)
{
	sigset_t pipe_set, old, pending;
	bool was_pending;
	ssize_t n;
	int e;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	n = write(fd, buf, len);
	e = errno;
	if (n < 0 && e == EPIPE && !was_pending) {
		struct timespec zero = { 0, 0 };

		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return n;
}

static ssize_t fd_write(struct con_fd *f, const void *buf, size_t len)
{
	ssize_t r;
	int fl;

	switch (f->kind) {
	case FDK_SOCKET:
		return send(f->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	case FDK_TOGGLE:
		fl = nonblock_begin(f->fd);
		r = write_nosigpipe(f->fd, buf, len);
		nonblock_end(f->fd, fl);
		return r;
	default:
		return write_nosigpipe(f->fd, buf, len);
	}
}

/* Is there something to read (or an end of input to see) right now? */
static bool fd_readable(const struct con_fd *f)
{
	struct pollfd p = { .fd = f->fd, .events = POLLIN };

	if (f->kind == FDK_PLAIN)
		return true;
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL));
}

/* ---- loop registrations ---------------------------------------------------------- */

static void on_in(void *opaque, int fd, uint32_t events);
static void on_out(void *opaque, int fd, uint32_t events);

static void set_watch(struct con_port *p, struct con_fd *f, bool want, uint32_t events,
		      vmkit_loop_fn fn)
{
	struct console *c = p->c;

	if (want == f->watched || f->fd < 0 || f->unwatchable)
		return;
	if (want) {
		if (vmkit__loop_add(c->loop, f->fd, events, fn, p) < 0) {
			dv_log(atomic_load(&c->dev), VMKIT_LOG_WARN, "port %u: cannot watch fd: %s",
			       p->id, vmkit_last_error());
			f->unwatchable = true;
			return;
		}
	} else {
		vmkit__loop_del(c->loop, f->fd);
	}
	f->watched = want;
}

/* Bring the loop registrations in line with the state. Loop thread only,
 * device lock held. */
static void sync_watches(struct console *c)
{
	bool attached = atomic_load(&c->dev) != NULL;

	for (size_t i = 0; i < c->n_ports; i++) {
		struct con_port *p = &c->port[i];
		bool want_in = attached && c->live && p->guest_open && p->in.kind != FDK_PLAIN &&
			       !p->eof && !p->rx_starved;
		bool want_out = attached && p->olen > 0 && !p->out_dead &&
				p->out.kind != FDK_PLAIN;

		set_watch(p, &p->in, want_in, EPOLLIN, on_in);
		set_watch(p, &p->out, want_out, EPOLLOUT, on_out);
	}
}

static bool any_more(const struct console *c)
{
	for (size_t i = 0; i < c->n_ports; i++)
		if (c->port[i].more)
			return true;
	return false;
}

/* After a state change: update the registrations now when on the loop
 * thread, else wake the loop thread to do it (and to go on with batches
 * left unfinished). */
static void request_sync(struct console *c)
{
	uint64_t one = 1;

	if (!c->loop)
		return;
	if (vmkit__loop_on_thread(c->loop) && !any_more(c)) {
		sync_watches(c);
		return;
	}
	if (write(c->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: a wake-up is pending anyway */
	}
}

/* ---- data: host input to the receive queues --------------------------------------- */

static void rx_pump(struct console *c, struct con_port *p, vmkit_virtio_dev *dev)
{
	bool pushed = false;
	unsigned n_done = 0;

	if (!c->live || !p->guest_open || p->in.fd < 0 || p->eof)
		return;
	while (n_done < CON_BATCH) {
		vmkit_virtq_elem *e;
		ssize_t n = 0;

		if (!fd_readable(&p->in))
			break;
		if (vmkit_virtq_pop(dev, rx_queue(p->id), &e) <= 0) {
			p->rx_starved = true;
			break;
		}
		n_done++;
		if (e->in_len) {
			n = fd_readv(&p->in, e->in, e->n_in);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
				       errno != EINTR))
				p->eof = true;
		}
		vmkit_virtq_push(dev, e, n > 0 ? (uint32_t)n : 0);
		pushed = true;
		if (p->eof)
			break;
	}
	if (n_done == CON_BATCH && p->in.kind == FDK_PLAIN)
		p->more = true;
	if (pushed)
		vmkit_virtq_notify(dev, rx_queue(p->id));
}

/* ---- data: transmit queues to host output ------------------------------------------ */

/* Write out what is buffered, without blocking. */
static void tx_flush(struct con_port *p)
{
	while (p->olen > 0 && !p->out_dead) {
		ssize_t n = fd_write(&p->out, p->obuf, p->olen);

		if (n > 0) {
			memmove(p->obuf, p->obuf + n, p->olen - (size_t)n);
			p->olen -= (uint32_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return; /* EPOLLOUT brings us back */
		dv_log(atomic_load(&p->c->dev), VMKIT_LOG_WARN,
		       "port %u: output failed (%s): further output is dropped", p->id,
		       n < 0 ? strerror(errno) : "nothing written");
		p->out_dead = true;
		p->olen = 0;
	}
}

static void tx_done(struct con_port *p, vmkit_virtio_dev *dev, vmkit_virtq_elem *e)
{
	vmkit_virtq_push(dev, e, 0);
	p->tx_held = NULL;
	p->tx_off = 0;
}

static void tx_pump(struct console *c, struct con_port *p, vmkit_virtio_dev *dev)
{
	bool pushed = false;
	unsigned n_done = 0;

	if (!c->live)
		return;
	while (n_done < CON_BATCH) {
		bool discard = p->out.fd < 0 || p->out_dead;
		vmkit_virtq_elem *e = p->tx_held;
		size_t n;

		if (!discard) {
			tx_flush(p);
			discard = p->out_dead;
			if (!discard && p->olen == p->ocap)
				break; /* full: wait for the fd to take more */
		}
		if (!e && vmkit_virtq_pop(dev, tx_queue(p->id), &e) <= 0)
			break;
		n_done++;
		if (discard) {
			tx_done(p, dev, e);
			pushed = true;
			continue;
		}
		n = dv_iov_read(e->out, e->n_out, p->tx_off, p->obuf + p->olen, p->ocap - p->olen);
		p->olen += (uint32_t)n;
		p->tx_off += n;
		if (p->tx_off >= e->out_len) {
			tx_done(p, dev, e);
			pushed = true;
		} else {
			p->tx_held = e;
		}
	}
	/* (No flush here: one that empties a full buffer after the loop gave
	 * up would leave chains behind with nothing watching for them. The
	 * loop flushes before each pop, and with a batch left over the wake
	 * callback comes back.) */
	if (n_done == CON_BATCH)
		p->more = true;
	if (pushed)
		vmkit_virtq_notify(dev, tx_queue(p->id));
}

/* ---- control queues ---------------------------------------------------------------- */

/* Send the pending control messages while the driver has buffers. */
static void ctrl_send(struct console *c, vmkit_virtio_dev *dev)
{
	static const struct {
		uint8_t bit;
		uint16_t event;
		uint16_t value;
	} order[] = {
		{ PEND_ADD, CTL_PORT_ADD, 0 },
		{ PEND_CONSOLE, CTL_CONSOLE_PORT, 1 },
		{ PEND_NAME, CTL_PORT_NAME, 0 },
		{ PEND_OPEN, CTL_PORT_OPEN, 1 },
	};
	uint8_t msg[CTL_HDR + CON_NAME_MAX];
	bool pushed = false;

	if (!c->live || !c->multiport)
		return;
	for (size_t i = 0; i < c->n_ports; i++) {
		struct con_port *p = &c->port[i];

		for (size_t k = 0; k < ARRAY_SIZE(order); k++) {
			vmkit_virtq_elem *e;
			size_t len = CTL_HDR, n;

			if (!(p->pending & order[k].bit))
				continue;
			if (vmkit_virtq_pop(dev, CON_CTRL_RX, &e) <= 0)
				goto out;
			vmkit__put_le32(msg, p->id);
			vmkit__put_le16(msg + 4, order[k].event);
			vmkit__put_le16(msg + 6, order[k].value);
			if (order[k].bit == PEND_NAME) {
				size_t nl = strlen(p->name);

				memcpy(msg + CTL_HDR, p->name, nl); /* no NUL (5.3.6.2) */
				len += nl;
			}
			n = dv_iov_write(e->in, e->n_in, 0, msg, len);
			if (n < len)
				dv_log(dev, VMKIT_LOG_WARN,
				       "control buffer of %llu bytes too small for a %zu-byte message",
				       (unsigned long long)e->in_len, len);
			vmkit_virtq_push(dev, e, (uint32_t)n);
			pushed = true;
			p->pending &= (uint8_t)~order[k].bit;
			if (order[k].bit == PEND_ADD)
				p->added = true;
		}
	}
out:
	if (pushed)
		vmkit_virtq_notify(dev, CON_CTRL_RX);
}

static void ctrl_message(struct console *c, vmkit_virtio_dev *dev, const uint8_t *m)
{
	uint32_t id = (uint32_t)m[0] | (uint32_t)m[1] << 8 | (uint32_t)m[2] << 16 |
		      (uint32_t)m[3] << 24;
	uint16_t event = (uint16_t)(m[4] | m[5] << 8), value = (uint16_t)(m[6] | m[7] << 8);
	struct con_port *p = id < c->n_ports ? &c->port[id] : NULL;

	switch (event) {
	case CTL_DEVICE_READY:
		if (value != 1) {
			dv_log(dev, VMKIT_LOG_WARN, "the driver failed to set up the device");
			break;
		}
		c->ready = true;
		for (size_t i = 0; i < c->n_ports; i++)
			if (!c->port[i].added)
				c->port[i].pending |= PEND_ADD;
		break;
	case CTL_PORT_READY:
		if (!p)
			break;
		if (value != 1) {
			dv_log(dev, VMKIT_LOG_WARN, "the driver failed to add port %u", id);
			break;
		}
		if (p->id == 0)
			p->pending |= PEND_CONSOLE;
		if (p->name)
			p->pending |= PEND_NAME;
		if (p->in.fd >= 0 || p->out.fd >= 0)
			p->pending |= PEND_OPEN;
		break;
	case CTL_PORT_OPEN:
		if (!p)
			break;
		p->guest_open = value != 0;
		if (p->guest_open) {
			p->rx_starved = false;
			rx_pump(c, p, dev);
		}
		break;
	default:
		break; /* events the driver does not send are ignored */
	}
}

static void ctrl_receive(struct console *c, vmkit_virtio_dev *dev)
{
	vmkit_virtq_elem *e;
	bool pushed = false;
	unsigned n = 0;

	if (!c->live || !c->multiport)
		return;
	while (vmkit_virtq_pop(dev, CON_CTRL_TX, &e) > 0) {
		uint8_t m[CTL_HDR];

		/* Copy the header once; a shorter buffer is dropped. */
		if (dv_iov_read(e->out, e->n_out, 0, m, CTL_HDR) == CTL_HDR)
			ctrl_message(c, dev, m);
		vmkit_virtq_push(dev, e, 0);
		pushed = true;
		/* A bounded batch: the I/O thread serves others meanwhile. */
		if (++n == 64) {
			vmkit_virtq_kick_later(dev, CON_CTRL_TX);
			break;
		}
	}
	if (pushed)
		vmkit_virtq_notify(dev, CON_CTRL_TX);
	ctrl_send(c, dev);
}

/* ---- loop callbacks ---------------------------------------------------------------------- */

static void on_in(void *opaque, int fd, uint32_t events)
{
	struct con_port *p = opaque;
	struct console *c = p->c;
	vmkit_virtio_dev *dev = atomic_load(&c->dev);

	(void)fd;
	(void)events;
	vmkit_virtio_lock(dev);
	rx_pump(c, p, dev);
	sync_watches(c);
	vmkit_virtio_unlock(dev);
}

static void on_out(void *opaque, int fd, uint32_t events)
{
	struct con_port *p = opaque;
	struct console *c = p->c;
	vmkit_virtio_dev *dev = atomic_load(&c->dev);

	(void)fd;
	(void)events;
	vmkit_virtio_lock(dev);
	if (c->live)
		tx_pump(c, p, dev);
	else
		tx_flush(p);
	sync_watches(c);
	vmkit_virtio_unlock(dev);
}

static void on_wake(void *opaque, int fd, uint32_t events)
{
	struct console *c = opaque;
	vmkit_virtio_dev *dev = atomic_load(&c->dev);
	uint64_t v;

	(void)events;
	if (read(fd, &v, sizeof(v)) < 0) {
		/* nothing pending */
	}
	if (!dev)
		return;
	vmkit_virtio_lock(dev);
	for (size_t i = 0; i < c->n_ports; i++) {
		struct con_port *p = &c->port[i];

		if (!p->more)
			continue;
		p->more = false;
		tx_pump(c, p, dev);
		rx_pump(c, p, dev);
	}
	sync_watches(c);
	if (any_more(c))
		request_sync(c);
	vmkit_virtio_unlock(dev);
}

/* ---- device callbacks -------------------------------------------------------------------- */

/* Chains that were in flight when the state was saved: return them now
 * that the core is known (their bytes in the output buffer were saved). */
static void finish_restored(struct console *c, vmkit_virtio_dev *dev)
{
	for (size_t i = 0; i < c->n_ports; i++) {
		struct con_port *p = &c->port[i];
		uint16_t q = tx_queue(p->id);

		if (!p->tx_restored)
			continue;
		p->tx_restored = false;
		if (c->live && q < dev->num_queues && virtq_push(&dev->vq[q], p->tx_head, 0) == 0)
			vmkit_virtq_notify(dev, q);
	}
}

static void attach(struct console *c, vmkit_virtio_dev *dev)
{
	if (!atomic_load(&c->dev))
		atomic_store(&c->dev, dev);
	finish_restored(c, dev);
}

/* Serve everything the driver may have queued before DRIVER_OK (its kicks
 * then were not delivered) or before a restore. */
static void pump_all(struct console *c, vmkit_virtio_dev *dev)
{
	ctrl_receive(c, dev);
	ctrl_send(c, dev);
	for (size_t i = 0; i < c->n_ports; i++) {
		if (i > 0 && !c->multiport)
			break;
		tx_pump(c, &c->port[i], dev);
		rx_pump(c, &c->port[i], dev);
	}
}

static void console_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
	struct console *c = opaque;

	memcpy(data, c->config + offset, len);
}

static int console_activate(void *opaque, vmkit_virtio_dev *dev, uint64_t features)
{
	struct console *c = opaque;

	atomic_store(&c->dev, dev);
	if (!c->live) {
		c->features = features;
		c->multiport = (features & VIRTIO_BIT(CONSOLE_F_MULTIPORT)) != 0;
		c->live = true;
		/* Without MULTIPORT, port 0 is there and open from the start. */
		if (!c->multiport)
			c->port[0].guest_open = true;
	}
	finish_restored(c, dev);
	pump_all(c, dev);
	request_sync(c);
	return 0;
}

static void console_notify(void *opaque, vmkit_virtio_dev *dev, uint16_t queue)
{
	struct console *c = opaque;
	struct con_port *p;
	unsigned id;

	attach(c, dev);
	if (!c->live)
		return;
	if (queue == CON_CTRL_RX || queue == CON_CTRL_TX) {
		if (queue == CON_CTRL_RX)
			ctrl_send(c, dev);
		else
			ctrl_receive(c, dev);
		request_sync(c);
		return;
	}
	id = queue < 2 ? 0 : queue / 2u - 1u;
	if (id >= c->n_ports || (id > 0 && !c->multiport))
		return;
	p = &c->port[id];
	if (queue == rx_queue(id)) {
		p->rx_starved = false;
		rx_pump(c, p, dev);
	} else {
		tx_pump(c, p, dev);
	}
	request_sync(c);
}

static void console_reset(void *opaque, vmkit_virtio_dev *dev)
{
	struct console *c = opaque;

	attach(c, dev);
	c->live = false;
	c->multiport = false;
	c->ready = false;
	c->features = 0;
	for (size_t i = 0; i < c->n_ports; i++) {
		struct con_port *p = &c->port[i];

		/* Buffered output was the guest's already: it still goes out. */
		vmkit_virtq_elem_free(p->tx_held);
		p->tx_held = NULL;
		p->tx_off = 0;
		p->tx_restored = false;
		p->guest_open = false;
		p->added = false;
		p->rx_starved = false;
		p->more = false;
		p->pending = 0;
	}
	request_sync(c);
}

/* State: u32 ports, u64 features, u8 live, u8 ready; per port: u8
 * guest_open, u8 added, u8 pending, u8 chain kept, u16 its head, u32 buffered
 * length, the buffered bytes. Host-side conditions (end of input, a dead
 * output fd) belong to the fds and are not saved. */
static long console_save(void *opaque, void *buf, size_t cap)
{
	struct console *c = opaque;
	struct dev_state_writer *w = malloc(sizeof(*w));
	long ret;

	if (!w)
		return vmkit__err(-ENOMEM, "virtio-console: out of memory saving state");
	dev_state_begin(w, "VCON");
	dev_state_put_u32(w, (uint32_t)c->n_ports);
	dev_state_put_u64(w, c->features);
	dev_state_put_u8(w, c->live);
	dev_state_put_u8(w, c->ready);
	for (size_t i = 0; i < c->n_ports; i++) {
		const struct con_port *p = &c->port[i];
		bool kept = p->tx_held || p->tx_restored;

		dev_state_put_u8(w, p->guest_open);
		dev_state_put_u8(w, p->added);
		dev_state_put_u8(w, p->pending);
		dev_state_put_u8(w, kept);
		dev_state_put_u16(w, p->tx_held ? p->tx_held->head : p->tx_head);
		dev_state_put_u32(w, p->olen);
		dev_state_put_bytes(w, p->obuf, p->olen);
	}
	ret = dv_save_out(w, CON_STATE_VERSION, buf, cap);
	free(w);
	return ret;
}

struct port_state {
	uint8_t guest_open, added, pending, kept;
	uint16_t head;
	uint32_t olen;
	const uint8_t *data;
};

static int console_restore(void *opaque, const void *buf, size_t len)
{
	struct console *c = opaque;
	struct port_state ps[VIRTIO_CONSOLE_MAX_PORTS];
	struct dev_state_reader r;
	uint64_t features;
	uint8_t live, ready;
	bool multiport;
	int ret = dev_state_open(&r, buf, len, "VCON", CON_STATE_VERSION);

	if (ret < 0)
		return ret;
	if (dev_state_get_u32(&r) != c->n_ports)
		return vmkit__err(-EINVAL, "VCON state: saved with a different number of ports");
	features = dev_state_get_u64(&r);
	live = dev_state_get_u8(&r);
	ready = dev_state_get_u8(&r);
	multiport = (features & VIRTIO_BIT(CONSOLE_F_MULTIPORT)) != 0;
	if (features & ~(c->ops.features | VIRTIO_TRANSPORT_FEATURES))
		return vmkit__err(-EINVAL, "VCON state: features not offered");
	if (live > 1 || ready > 1 || (ready && (!live || !multiport)))
		return vmkit__err(-EINVAL, "VCON state: inconsistent flags");
	for (size_t i = 0; i < c->n_ports; i++) {
		struct con_port *p = &c->port[i];

		ps[i].guest_open = dev_state_get_u8(&r);
		ps[i].added = dev_state_get_u8(&r);
		ps[i].pending = dev_state_get_u8(&r);
		ps[i].kept = dev_state_get_u8(&r);
		ps[i].head = dev_state_get_u16(&r);
		ps[i].olen = dev_state_get_u32(&r);
		if (r.bad)
			break;
		if (ps[i].guest_open > 1 || ps[i].added > 1 || ps[i].kept > 1 ||
		    (ps[i].pending & ~PEND_ALL) ||
		    ((ps[i].guest_open || ps[i].kept || ps[i].pending || ps[i].added) && !live) ||
		    ((ps[i].pending || ps[i].added) && !multiport) ||
		    ps[i].head >= VMKIT_VIRTQ_MAX_SIZE)
			return vmkit__err(-EINVAL, "VCON state: port %zu: inconsistent flags", i);
		if (ps[i].olen > p->ocap)
			return vmkit__err(-EINVAL, "VCON state: port %zu: %u buffered bytes, at most %u",
					  i, ps[i].olen, p->ocap);
		if (ps[i].olen > r.len - r.off) {
			r.bad = true;
			break;
		}
		ps[i].data = r.p + r.off;
		r.off += ps[i].olen;
	}
	if ((ret = dev_state_close(&r)) < 0)
		return ret;
	c->features = live ? features : 0;
	c->multiport = live && multiport;
	c->live = live;
	c->ready = ready;
	for (size_t i = 0; i < c->n_ports; i++) {
		struct con_port *p = &c->port[i];

		vmkit_virtq_elem_free(p->tx_held);
		p->tx_held = NULL;
		p->tx_off = 0;
		p->guest_open = ps[i].guest_open;
		p->added = ps[i].added;
		p->pending = ps[i].pending;
		p->tx_restored = ps[i].kept;
		p->tx_head = ps[i].head;
		p->rx_starved = false;
		p->more = false;
		if (ps[i].olen)
			memcpy(p->obuf, ps[i].data, ps[i].olen);
		p->olen = ps[i].olen;
	}
	request_sync(c);
	return 0;
}

static void console_destroy(void *opaque)
{
	struct console *c = opaque;

	if (!c)
		return;
	for (size_t i = 0; i < c->n_ports; i++) {
		struct con_port *p = &c->port[i];

		fd_close(c, &p->in);
		fd_close(c, &p->out);
		vmkit_virtq_elem_free(p->tx_held);
		free(p->obuf);
		free(p->name);
	}
	if (c->wake_fd >= 0) {
		vmkit__loop_del(c->loop, c->wake_fd);
		close(c->wake_fd);
	}
	free(c);
}

static const vmkit_virtio_ops console_ops_template = {
	.size = sizeof(vmkit_virtio_ops),
	.device_id = VMKIT_VIRTIO_ID_CONSOLE,
	.queue_max = CON_QUEUE_SIZE,
	.config_size = CON_CONFIG_SIZE,
	.config_read = console_config_read,
	.activate = console_activate,
	.queue_notify = console_notify,
	.reset = console_reset,
	.save = console_save,
	.restore = console_restore,
	.destroy = console_destroy,
};

static int port_init(struct console *c, struct con_port *p, unsigned id,
		     const struct virtio_console_port *cfg)
{
	int ret;

	p->c = c;
	p->id = id;
	p->in.fd = p->out.fd = -1;
	if (cfg->name) {
		size_t nl = strlen(cfg->name);

		if (nl == 0 || nl > CON_NAME_MAX)
			return vmkit__err(-EINVAL, "virtio-console: port %u: name of %zu bytes (1..%u)",
					  id, nl, CON_NAME_MAX);
		if (!(p->name = strdup(cfg->name)))
			return vmkit__err(-ENOMEM, "virtio-console: out of memory");
	}
	if ((ret = fd_open(c, &p->in, cfg->in_fd, true)) < 0 ||
	    (ret = fd_open(c, &p->out, cfg->out_fd, false)) < 0)
		return vmkit__err(ret, "virtio-console: port %u: %s", id, vmkit_last_error());
	if (p->out.fd >= 0) {
		p->ocap = CON_OUT_BUDGET / (uint32_t)c->n_ports;
		if (p->ocap > CON_OUT_MAX)
			p->ocap = CON_OUT_MAX;
		if (!(p->obuf = malloc(p->ocap)))
			return vmkit__err(-ENOMEM, "virtio-console: out of memory");
	}
	return 0;
}

int virtio_console_create(const struct virtio_console_port *ports, size_t n_ports,
			  struct vmkit_loop *loop, const vmkit_virtio_ops **ops, void **opaque)
{
	struct console *c;
	bool any_fd = false;
	int ret;

	if (!ports || n_ports == 0 || n_ports > VIRTIO_CONSOLE_MAX_PORTS)
		return vmkit__err(-EINVAL, "virtio-console: %zu ports (1..%d)", n_ports,
				  VIRTIO_CONSOLE_MAX_PORTS);
	for (size_t i = 0; i < n_ports; i++)
		any_fd = any_fd || ports[i].in_fd >= 0 || ports[i].out_fd >= 0;
	if (any_fd && !loop)
		return vmkit__err(-EINVAL, "virtio-console: host fds need an event loop");
	c = calloc(1, sizeof(*c));
	if (!c)
		return vmkit__err(-ENOMEM, "virtio-console: out of memory");
	c->ops = console_ops_template;
	c->loop = loop;
	c->wake_fd = -1;
	c->n_ports = n_ports;
	if (n_ports > 1) {
		c->ops.features = VIRTIO_BIT(CONSOLE_F_MULTIPORT);
		c->ops.num_queues = (uint16_t)(2 * (n_ports + 1));
	} else {
		c->ops.num_queues = 2;
	}
	vmkit__put_le32(c->config + 4, (uint32_t)n_ports); /* max_nr_ports */
	for (size_t i = 0; i < n_ports; i++)
		c->port[i].in.fd = c->port[i].out.fd = -1;
	for (size_t i = 0; i < n_ports; i++) {
		if ((ret = port_init(c, &c->port[i], (unsigned)i, &ports[i])) < 0)
			goto fail;
	}
	if (loop) {
		c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (c->wake_fd < 0) {
			ret = vmkit__err(-errno, "virtio-console: eventfd: %s", strerror(errno));
			goto fail;
		}
		if ((ret = vmkit__loop_add(loop, c->wake_fd, EPOLLIN, on_wake, c)) < 0) {
			close(c->wake_fd);
			c->wake_fd = -1;
			goto fail;
		}
	}
	*ops = &c->ops;
	*opaque = c;
	return 0;
fail:
	console_destroy(c);
	return ret;
}
