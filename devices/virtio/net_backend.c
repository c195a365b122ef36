/* SPDX-License-Identifier: MIT */
/* virtio-net host backends: tap, UNIX stream (length-prefixed), UNIX
 * datagram and the embedder's callbacks (see net_backend.h). */
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio/net_backend.h"
#include "internal.h"

/* Room for two whole length-prefixed frames: a frame that starts late in
 * the buffer always fits after moving it to the front. */
#define STREAM_PREFIX 4u
#define STREAM_RBUF (2u * (STREAM_PREFIX + NET_MAX_FRAME))
#define STREAM_WBUF (STREAM_PREFIX + NET_MAX_FRAME)

/* The offloads a tap may be asked for (TUNSETOFFLOAD). */
#define TUN_BASE_OFFLOADS (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- opening ----------------------------------------------------------------- */

static int dup_fd(struct net_backend *b, int fd)
{
	b->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (b->fd < 0)
		return vmkit__err(-errno, "virtio-net: %s: dup: %s", b->what, strerror(errno));
	b->is_dup = true;
	return 0;
}

/* Which offloads does the tap take? Asked once, then turned off: frames
 * read before the guest says what it accepts must be plain. */
static void tap_probe_offloads(struct net_backend *b)
{
	if (ioctl(b->fd, TUNSETOFFLOAD, (unsigned long)(TUN_BASE_OFFLOADS | TUN_F_UFO)) == 0)
		b->tun_offloads = TUN_BASE_OFFLOADS | TUN_F_UFO;
	else if (ioctl(b->fd, TUNSETOFFLOAD, (unsigned long)TUN_BASE_OFFLOADS) == 0)
		b->tun_offloads = TUN_BASE_OFFLOADS;
	else
		b->tun_offloads = 0;
	ioctl(b->fd, TUNSETOFFLOAD, 0ul);
}

static int tap_vnet_setup(struct net_backend *b)
{
	int sz = (int)NET_HDR_LEN;

	if (ioctl(b->fd, TUNSETVNETHDRSZ, &sz) < 0)
		return vmkit__err(-errno, "virtio-net: %s: TUNSETVNETHDRSZ: %s", b->what,
				  strerror(errno));
	b->vnet_hdr = true;
	tap_probe_offloads(b);
	return 0;
}

static int tap_open_name(struct net_backend *b, const char *ifname)
{
	struct ifreq ifr;
	int e;

	if (strlen(ifname) == 0 || strlen(ifname) >= IFNAMSIZ)
		return vmkit__err(-EINVAL, "virtio-net: tap name '%s' is empty or longer than %d bytes",
				  ifname, IFNAMSIZ - 1);
	b->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (b->fd < 0)
		return vmkit__err(-errno, "virtio-net: %s: /dev/net/tun: %s", b->what,
				  strerror(errno));
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	memcpy(ifr.ifr_name, ifname, strlen(ifname));
	if (ioctl(b->fd, TUNSETIFF, &ifr) < 0) {
		e = errno;
		return vmkit__err(-e, "virtio-net: %s: TUNSETIFF: %s%s", b->what, strerror(e),
				  e == EPERM ? " (creating a tap needs CAP_NET_ADMIN, or a persistent tap owned by this user)"
					     : "");
	}
	return tap_vnet_setup(b);
}

static int tap_open_fd(struct net_backend *b, int fd)
{
	struct ifreq ifr;
	int fl, ret;

	if ((ret = dup_fd(b, fd)) < 0)
		return ret;
	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(b->fd, TUNGETIFF, &ifr) < 0)
		return vmkit__err(-EINVAL, "virtio-net: %s is not an attached tap fd: %s", b->what,
				  strerror(errno));
	if ((ifr.ifr_flags & (IFF_TUN | IFF_TAP)) != IFF_TAP)
		return vmkit__err(-EINVAL, "virtio-net: %s is a tun (IP) device, not a tap", b->what);
	if (!(ifr.ifr_flags & IFF_NO_PI))
		return vmkit__err(-EINVAL,
				  "virtio-net: %s carries packet information (set IFF_NO_PI)", b->what);
	/* A tap fd cannot take MSG_DONTWAIT: the shared description must be
	 * non-blocking (as with QEMU's tap fds). */
	fl = fcntl(b->fd, F_GETFL);
	if (fl < 0 || fcntl(b->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return vmkit__err(-errno, "virtio-net: %s: O_NONBLOCK: %s", b->what, strerror(errno));
	if (ifr.ifr_flags & IFF_VNET_HDR)
		return tap_vnet_setup(b);
	return 0;
}

static int sock_check_type(struct net_backend *b, int want)
{
	int type = 0;
	socklen_t l = sizeof(type);

	if (getsockopt(b->fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0)
		return vmkit__err(-EINVAL, "virtio-net: %s is not a socket: %s", b->what,
				  strerror(errno));
	if (type != want)
		return vmkit__err(-EINVAL, "virtio-net: %s is not a %s socket", b->what,
				  want == SOCK_STREAM ? "stream" : "datagram");
	return 0;
}

static int sock_connect(struct net_backend *b, const char *path, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(sa.sun_path))
		return vmkit__err(-EINVAL, "virtio-net: socket path of %zu bytes (1..%zu)", len,
				  sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, len);
	b->fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (b->fd < 0)
		return vmkit__err(-errno, "virtio-net: %s: socket: %s", b->what, strerror(errno));
	if (type == SOCK_DGRAM) {
		/* Autobind an abstract address so the peer can answer. */
		struct sockaddr_un any = { .sun_family = AF_UNIX };

		if (bind(b->fd, (struct sockaddr *)&any, sizeof(sa_family_t)) < 0)
			return vmkit__err(-errno, "virtio-net: %s: bind: %s", b->what,
					  strerror(errno));
	}
	/* A UNIX connect completes at once or fails (EAGAIN: the listener's
	 * backlog is full); it never leaves us waiting. */
	if (connect(b->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return vmkit__err(-errno, "virtio-net: %s: connect: %s", b->what, strerror(errno));
	return 0;
}

static void describe(struct net_backend *b, const vmkit_net_config *cfg)
{
	static const char *const kind[] = { "tap", "stream", "dgram", "callback" };
	const char *k = kind[cfg->backend];

	if (cfg->backend == VMKIT_NET_CALLBACK)
		snprintf(b->what, sizeof(b->what), "callback");
	else if (cfg->fd >= 0)
		snprintf(b->what, sizeof(b->what), "%s fd %d", k, cfg->fd);
	else if (cfg->backend == VMKIT_NET_TAP)
		snprintf(b->what, sizeof(b->what), "tap %s", cfg->ifname ? cfg->ifname : "");
	else
		snprintf(b->what, sizeof(b->what), "%s %s", k, cfg->path ? cfg->path : "");
}

int net_backend_open(struct net_backend *b, const vmkit_net_config *cfg)
{
	int ret;

	memset(b, 0, sizeof(*b));
	b->fd = -1;
	if (cfg->backend > VMKIT_NET_CALLBACK)
		return vmkit__err(-EINVAL, "virtio-net: unknown backend %u", cfg->backend);
	b->kind = cfg->backend;
	describe(b, cfg);
	switch (cfg->backend) {
	case VMKIT_NET_TAP:
		if (cfg->fd >= 0)
			ret = tap_open_fd(b, cfg->fd);
		else if (cfg->ifname)
			ret = tap_open_name(b, cfg->ifname);
		else
			ret = vmkit__err(-EINVAL, "virtio-net: a tap backend needs an fd or an ifname");
		break;
	case VMKIT_NET_STREAM:
	case VMKIT_NET_DGRAM: {
		int type = cfg->backend == VMKIT_NET_STREAM ? SOCK_STREAM : SOCK_DGRAM;

		if (cfg->fd >= 0) {
			ret = dup_fd(b, cfg->fd);
			if (ret == 0)
				ret = sock_check_type(b, type);
		} else if (cfg->path) {
			ret = sock_connect(b, cfg->path, type);
		} else {
			ret = vmkit__err(-EINVAL, "virtio-net: a %s backend needs an fd or a path",
					 cfg->backend == VMKIT_NET_STREAM ? "stream" : "dgram");
		}
		if (ret == 0 && cfg->backend == VMKIT_NET_STREAM) {
			b->rbuf = malloc(STREAM_RBUF);
			b->wbuf = malloc(STREAM_WBUF);
			if (!b->rbuf || !b->wbuf)
				ret = vmkit__err(-ENOMEM, "virtio-net: out of memory");
		}
		break;
	}
	default: /* VMKIT_NET_CALLBACK */
		if (!cfg->tx_fn) {
			ret = vmkit__err(-EINVAL, "virtio-net: a callback backend needs tx_fn");
			break;
		}
		b->tx_fn = cfg->tx_fn;
		b->userdata = cfg->userdata;
		ret = 0;
		break;
	}
	if (ret < 0)
		net_backend_close(b);
	return ret;
}

void net_backend_close(struct net_backend *b)
{
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
	free(b->rbuf);
	free(b->wbuf);
	b->rbuf = b->wbuf = NULL;
	b->rhead = b->rtail = b->woff = b->wlen = 0;
	while (b->in_count) {
		free(b->inbox[b->in_head].data);
		b->in_head = (b->in_head + 1) % NET_INBOX_FRAMES;
		b->in_count--;
	}
	b->in_bytes = 0;
	b->vnet_hdr = false;
	b->tun_offloads = 0;
}

int net_backend_set_offloads(struct net_backend *b, uint32_t tun_flags)
{
	if (b->kind != VMKIT_NET_TAP || !b->vnet_hdr || b->fd < 0)
		return 0;
	if (ioctl(b->fd, TUNSETOFFLOAD, (unsigned long)(tun_flags & b->tun_offloads)) < 0)
		return vmkit__err(-errno, "virtio-net: %s: TUNSETOFFLOAD 0x%x: %s", b->what,
				  tun_flags, strerror(errno));
	return 0;
}

/* ---- sending ------------------------------------------------------------------- */

static bool errno_again(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

/* What happened to a frame the kernel refused. */
static int send_error(struct net_backend *b, int e)
{
	switch (b->kind) {
	case VMKIT_NET_TAP:
		/* EIO/EBADFD: the tap went away under us. Anything else (a
		 * header the kernel rejects) concerns this frame only. */
		if (e == EIO || e == EBADFD || e == ENODEV || e == ENXIO)
			return vmkit__err(-EPIPE, "virtio-net: %s: %s", b->what, strerror(e));
		return -e;
	case VMKIT_NET_STREAM:
		return vmkit__err(-EPIPE, "virtio-net: %s: %s", b->what, strerror(e));
	default: /* DGRAM: no peer (ECONNREFUSED, ENOTCONN), too big: this frame */
		return -e;
	}
}

/* Copy [@off, end) of the iovecs @iov[0..@n) to @dst. */
static size_t iov_copy_from(const struct iovec *iov, unsigned n, size_t off, uint8_t *dst)
{
	size_t done = 0;

	for (unsigned i = 0; i < n; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		memcpy(dst + done, (const uint8_t *)iov[i].iov_base + off, l - off);
		done += l - off;
		off = 0;
	}
	return done;
}

static int stream_send(struct net_backend *b, struct iovec *v, unsigned nv, size_t total)
{
	struct msghdr m = { .msg_iov = v, .msg_iovlen = nv };
	ssize_t w;
	int ret;

	if (b->wlen) {
		ret = net_backend_flush(b);
		if (ret < 0)
			return ret;
		if (b->wlen)
			return -EAGAIN;
	}
	do
		w = sendmsg(b->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return errno_again(errno) ? -EAGAIN : send_error(b, errno);
	if ((size_t)w < total) {
		/* The frame is ours now (the guest gets its buffer back);
		 * its tail goes out before anything else. */
		b->wlen = iov_copy_from(v, nv, (size_t)w, b->wbuf);
		b->woff = 0;
	}
	return 0;
}

int net_backend_send(struct net_backend *b, const uint8_t *hdr, const struct iovec *iov,
		     unsigned n, size_t len)
{
	struct iovec v[NET_IOV_MAX + 1];
	uint8_t prefix[STREAM_PREFIX];
	struct msghdr m = { .msg_iov = v };
	unsigned nv = 0;
	size_t total = len;
	ssize_t w;

	if (n > NET_IOV_MAX)
		return vmkit__err(-EINVAL, "virtio-net: frame in %u pieces (at most %u)", n,
				  NET_IOV_MAX);
	if (b->kind == VMKIT_NET_CALLBACK) {
		int r = b->tx_fn(b->userdata, iov, n, len);

		if (r == 0 || r == -EAGAIN)
			return r;
		return r < 0 ? r : -EINVAL;
	}
	if (b->fd < 0)
		return -EPIPE;
	if (b->kind == VMKIT_NET_STREAM) {
		put_be32(prefix, (uint32_t)len);
		v[nv++] = (struct iovec){ prefix, STREAM_PREFIX };
		total += STREAM_PREFIX;
	} else if (b->vnet_hdr) {
		v[nv++] = (struct iovec){ (void *)hdr, NET_HDR_LEN };
		total += NET_HDR_LEN;
	}
	memcpy(v + nv, iov, n * sizeof(*iov));
	nv += n;
	if (b->kind == VMKIT_NET_STREAM)
		return stream_send(b, v, nv, total);
	m.msg_iovlen = nv;
	do {
		if (b->kind == VMKIT_NET_TAP)
			w = writev(b->fd, v, (int)nv);
		else
			w = sendmsg(b->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (w < 0 && errno == EINTR);
	if (w < 0)
		return errno_again(errno) ? -EAGAIN : send_error(b, errno);
	/* A tap or datagram write is all or nothing. */
	return 0;
}

bool net_backend_out_pending(const struct net_backend *b)
{
	return b->wlen > b->woff;
}

int net_backend_flush(struct net_backend *b)
{
	while (b->wlen > b->woff) {
		ssize_t w = send(b->fd, b->wbuf + b->woff, b->wlen - b->woff,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno_again(errno) ? -EAGAIN : send_error(b, errno);
		b->woff += (size_t)w;
	}
	b->woff = b->wlen = 0;
	return 0;
}

/* ---- receiving ----------------------------------------------------------------- */

static ssize_t stream_recv(struct net_backend *b, uint8_t *buf)
{
	for (;;) {
		size_t have = b->rtail - b->rhead, need = STREAM_PREFIX;
		ssize_t r;

		if (have >= STREAM_PREFIX) {
			uint32_t len = get_be32(b->rbuf + b->rhead);

			if (len < NET_MIN_FRAME || len > NET_MAX_FRAME)
				return vmkit__err(-EPROTO,
						  "virtio-net: %s: the peer sent a frame length of %u (%u..%u): protocol error",
						  b->what, len, NET_MIN_FRAME, NET_MAX_FRAME);
			need = STREAM_PREFIX + len;
			if (have >= need) {
				memset(buf, 0, NET_HDR_LEN);
				memcpy(buf + NET_HDR_LEN, b->rbuf + b->rhead + STREAM_PREFIX, len);
				b->rhead += need;
				if (b->rhead == b->rtail)
					b->rhead = b->rtail = 0;
				return len;
			}
		}
		if (b->fd < 0)
			return -EPIPE;
		if (b->rhead + need > STREAM_RBUF) {
			/* Move the partial frame to the front (have < need, so
			 * at most one frame is moved, rarely). */
			memmove(b->rbuf, b->rbuf + b->rhead, have);
			b->rhead = 0;
			b->rtail = have;
		}
		r = recv(b->fd, b->rbuf + b->rtail, STREAM_RBUF - b->rtail, MSG_DONTWAIT);
		if (r > 0) {
			b->rtail += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno_again(errno))
			return -EAGAIN;
		if (r == 0)
			return vmkit__err(-EPIPE, "virtio-net: %s: the peer closed the connection%s",
					  b->what, have ? " in the middle of a frame" : "");
		return vmkit__err(-EPIPE, "virtio-net: %s: %s", b->what, strerror(errno));
	}
}

static ssize_t inbox_recv(struct net_backend *b, uint8_t *buf)
{
	struct net_inbox_frame *f;
	uint32_t len;

	if (!b->in_count)
		return -EAGAIN;
	f = &b->inbox[b->in_head];
	len = f->len;
	memset(buf, 0, NET_HDR_LEN);
	memcpy(buf + NET_HDR_LEN, f->data, len);
	free(f->data);
	f->data = NULL;
	b->in_head = (b->in_head + 1) % NET_INBOX_FRAMES;
	b->in_count--;
	b->in_bytes -= len;
	return len;
}

static ssize_t check_len(ssize_t len)
{
	return len < (ssize_t)NET_MIN_FRAME || len > (ssize_t)NET_MAX_FRAME ? -EMSGSIZE : len;
}

static ssize_t dgram_recv(struct net_backend *b, uint8_t *buf)
{
	/* Two tries: a pending socket error (an earlier datagram to a peer
	 * that is gone) is reported once, then reading goes on. */
	for (int tries = 0; tries < 2; tries++) {
		/* MSG_TRUNC: the datagram's real length, even when cut. */
		ssize_t r = recv(b->fd, buf + NET_HDR_LEN, NET_MAX_FRAME + 1,
				 MSG_DONTWAIT | MSG_TRUNC);

		if (r >= 0) {
			memset(buf, 0, NET_HDR_LEN);
			return check_len(r);
		}
		if (errno_again(errno))
			return -EAGAIN;
		if (errno != EINTR && errno != ECONNREFUSED && errno != ECONNRESET &&
		    errno != ENOTCONN)
			return vmkit__err(-EPIPE, "virtio-net: %s: %s", b->what, strerror(errno));
	}
	return -EAGAIN;
}

static ssize_t tap_recv(struct net_backend *b, uint8_t *buf)
{
	size_t hl = b->vnet_hdr ? NET_HDR_LEN : 0;
	ssize_t r;

	/* One byte more than a frame may have: a longer one shows as such. */
	do
		r = read(b->fd, buf + NET_HDR_LEN - hl, hl + NET_MAX_FRAME + 1);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		if (errno_again(errno))
			return -EAGAIN;
		return vmkit__err(-EPIPE, "virtio-net: %s: %s", b->what, strerror(errno));
	}
	if ((size_t)r < hl)
		return -EMSGSIZE;
	if (!hl)
		memset(buf, 0, NET_HDR_LEN);
	return check_len(r - (ssize_t)hl);
}

ssize_t net_backend_recv(struct net_backend *b, uint8_t *buf)
{
	switch (b->kind) {
	case VMKIT_NET_CALLBACK:
		return inbox_recv(b, buf);
	case VMKIT_NET_STREAM:
		return b->rbuf ? stream_recv(b, buf) : -EPIPE;
	default:
		if (b->fd < 0)
			return -EPIPE;
		return b->kind == VMKIT_NET_TAP ? tap_recv(b, buf) : dgram_recv(b, buf);
	}
}

bool net_backend_rx_buffered(const struct net_backend *b)
{
	if (b->kind == VMKIT_NET_CALLBACK)
		return b->in_count > 0;
	if (b->kind == VMKIT_NET_STREAM && b->rtail - b->rhead >= STREAM_PREFIX) {
		uint32_t len = get_be32(b->rbuf + b->rhead);

		/* A bad length counts: reading it reports the error. */
		return len < NET_MIN_FRAME || len > NET_MAX_FRAME ||
		       b->rtail - b->rhead >= STREAM_PREFIX + len;
	}
	return false;
}

bool net_backend_hangup(struct net_backend *b)
{
	if (b->kind == VMKIT_NET_DGRAM && b->fd >= 0) {
		int err = 0;
		socklen_t l = sizeof(err);

		/* EPOLLERR on a datagram socket is a pending error about an
		 * earlier datagram: reading it clears it, and we carry on. */
		if (getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err != 0)
			return false;
	}
	return true;
}

/* ---- the callback backend's inbox ------------------------------------------------ */

int net_backend_inbox_put(struct net_backend *b, const void *frame, size_t len)
{
	struct net_inbox_frame *f;

	if (b->kind != VMKIT_NET_CALLBACK)
		return vmkit__err(-ENOTSUP, "virtio-net: not a callback backend");
	if (b->in_count == NET_INBOX_FRAMES || (b->in_count && b->in_bytes + len > NET_INBOX_BYTES))
		return -EAGAIN;
	f = &b->inbox[(b->in_head + b->in_count) % NET_INBOX_FRAMES];
	f->data = malloc(len);
	if (!f->data)
		return vmkit__err(-ENOMEM, "virtio-net: out of memory");
	memcpy(f->data, frame, len);
	f->len = (uint32_t)len;
	b->in_count++;
	b->in_bytes += len;
	return 0;
}

bool net_backend_inbox_has_room(const struct net_backend *b)
{
	return b->in_count <= NET_INBOX_FRAMES / 2 && b->in_bytes <= NET_INBOX_BYTES / 2;
}
