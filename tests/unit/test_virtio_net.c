/* SPDX-License-Identifier: MIT */
/* virtio-net over the unit-test driver, with the I/O loop on a thread and
 * socketpairs (the test holds the other end), the callback backend, and
 * a tap inside a private network namespace as the host side: features
 * and config space per backend; transmit of many frames in any split,
 * in order, with back-pressure; receive with and without mergeable
 * buffers, waiting for buffers, stream reassembly; the callback's hold
 * and inbox; rate limits (bounds only, never exact times); hostile
 * descriptor chains; save/restore. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "devices/legacy/legacy.h"
#include "devices/virtio/devices.h"
#include "loopthread.h"
#include "vqdriver.h"

/* Feature bits (VIRTIO 1.2, 5.1.3). */
#define F_CSUM (1ull << 0)
#define F_GUEST_CSUM (1ull << 1)
#define F_MTU (1ull << 3)
#define F_MAC (1ull << 5)
#define F_GUEST_TSO4 (1ull << 7)
#define F_GUEST_TSO6 (1ull << 8)
#define F_GUEST_ECN (1ull << 9)
#define F_GUEST_UFO (1ull << 10)
#define F_HOST_TSO4 (1ull << 11)
#define F_HOST_TSO6 (1ull << 12)
#define F_HOST_ECN (1ull << 13)
#define F_HOST_UFO (1ull << 14)
#define F_MRG_RXBUF (1ull << 15)
#define F_STATUS (1ull << 16)
#define F_CTRL_VQ (1ull << 17)
#define F_MQ (1ull << 22)
#define F_VERSION_1 (1ull << 32)
#define OFFLOAD_BITS                                                                      \
	(F_CSUM | F_GUEST_CSUM | F_GUEST_TSO4 | F_GUEST_TSO6 | F_GUEST_ECN | F_GUEST_UFO | \
	 F_HOST_TSO4 | F_HOST_TSO6 | F_HOST_ECN | F_HOST_UFO)

#define HDR 12u
#define MAX_FRAME 65550u
#define ETHERTYPE_TEST 0x88b5 /* IEEE local experimental */
#define QSIZE 256u
#define TX_SLOTS 60u
#define TX_SLOT_BYTES (HDR + MAX_FRAME + 64 + 64)
#define RX_SLOT_BYTES (HDR + MAX_FRAME + 14)
#define MEM_BYTES (64u << 20)

struct netf {
	struct vqd_mem m;
	struct vqd_queue rxq, txq;
	struct vqd_transport t;
	struct vmkit_virtio_dev dev;
	const vmkit_virtio_ops *ops;
	void *opaque;
	struct loop_thread lt;
	int peer;                 /* the test's end of the socketpair, or -1 */
	bool up;
	/* transmit: chains complete in order; each uses a slot and descriptors */
	uint64_t tx_pool;
	unsigned tx_posted, tx_done, tx_desc_out;
	unsigned tx_desc[TX_SLOTS];
	/* receive: one buffer per descriptor index */
	uint64_t rx_pool;
	unsigned rx_desc_out;
};

/* ---- frames ------------------------------------------------------------------------------ */

static uint32_t mix(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

static size_t frame_size(unsigned i)
{
	if (i % 509 == 3)
		return 65535;
	return 14 + mix(i) % 1501;
}

/* Frame @i: an Ethernet header (broadcast, a fixed source, the test
 * ethertype), then its index and bytes that depend on it. */
static void frame_fill(unsigned i, uint8_t *p, size_t len)
{
	uint32_t s = mix(i * 2654435761u + 1);

	for (size_t k = 0; k < len; k++) {
		s = s * 1103515245u + 12345u;
		p[k] = (uint8_t)(s >> 16);
	}
	memset(p, 0xff, len < 6 ? len : 6);
	if (len >= 14) {
		memcpy(p + 6, "\x02\x00\x00\x00\x00\x01", 6);
		p[12] = ETHERTYPE_TEST >> 8;
		p[13] = ETHERTYPE_TEST & 0xff;
	}
	if (len >= 18)
		memcpy(p + 14, &i, 4);
}

static bool frame_is(unsigned i, const uint8_t *p, size_t len)
{
	uint8_t *want = malloc(len ? len : 1);
	bool ok;

	cr_assert_not_null(want);
	frame_fill(i, want, len);
	ok = memcmp(want, p, len) == 0;
	free(want);
	return ok;
}

/* ---- the fixture --------------------------------------------------------------------------- */

static void cfg_init(vmkit_net_config *c, uint32_t backend, int fd)
{
	*c = (vmkit_net_config)VMKIT_NET_CONFIG_INIT;
	c->backend = backend;
	c->fd = fd;
}

/* Create the device from @cfg (without a driver yet). Memory layout is
 * the same for every fixture, so a saved queue fits another one. */
static int net_try_new(struct netf *f, const vmkit_net_config *cfg)
{
	int ret;

	memset(f, 0, sizeof(*f));
	f->peer = -1;
	loop_thread_new(&f->lt);
	vqd_mem_init(&f->m, 0, MEM_BYTES);
	vqd_queue_init(&f->rxq, &f->m, QSIZE);
	vqd_queue_init(&f->txq, &f->m, QSIZE);
	f->tx_pool = vqd_alloc(&f->m, (uint64_t)TX_SLOTS * TX_SLOT_BYTES, 4096);
	f->rx_pool = vqd_alloc(&f->m, (uint64_t)QSIZE * RX_SLOT_BYTES, 4096);
	vqd_transport_init(&f->t);
	ret = virtio_net_create(cfg, f->lt.loop, &f->ops, &f->opaque);
	if (ret < 0) {
		loop_thread_free(&f->lt);
		vqd_mem_destroy(&f->m);
		return ret;
	}
	cr_assert_eq(f->ops->device_id, VMKIT_VIRTIO_ID_NET);
	cr_assert_eq(f->ops->num_queues, 2);
	cr_assert_eq(virtio_dev_init(&f->dev, f->ops, f->opaque, &f->m.gm, &f->t.tr, &f->t, "net0"),
		     0, "%s", vmkit_last_error());
	loop_thread_start(&f->lt);
	return 0;
}

static void net_new(struct netf *f, const vmkit_net_config *cfg)
{
	int ret = net_try_new(f, cfg);

	cr_assert_eq(ret, 0, "virtio_net_create: %s", vmkit_last_error());
}

/* A device on one end of a socketpair of @type; the test keeps the other. */
static void net_new_pair(struct netf *f, uint32_t backend, vmkit_net_config *cfg_in)
{
	vmkit_net_config cfg;
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, (backend == VMKIT_NET_STREAM ? SOCK_STREAM : SOCK_DGRAM) |
					  SOCK_CLOEXEC, 0, sv), 0);
	if (cfg_in)
		cfg = *cfg_in;
	else
		cfg_init(&cfg, backend, -1);
	cfg.backend = backend;
	cfg.fd = sv[0];
	net_new(f, &cfg);
	close(sv[0]); /* the device works on its own duplicate */
	f->peer = sv[1];
}

static void net_up(struct netf *f, uint64_t features)
{
	uint8_t s = vqd_handshake(&f->dev, features, (struct vqd_queue *[]){ &f->rxq, &f->txq }, 2);

	cr_assert(vqd_status_live(s), "status 0x%x: %s", s, vmkit_last_error());
	f->up = true;
}

static void net_down(struct netf *f)
{
	loop_thread_stop(&f->lt);
	virtio_dev_destroy(&f->dev);
	loop_thread_free(&f->lt);
	vqd_mem_destroy(&f->m);
	if (f->peer >= 0)
		close(f->peer);
}

static vmkit_net_stats stats(struct netf *f)
{
	vmkit_net_stats s = { .size = sizeof(s) };

	cr_assert_eq(virtio_net_get_stats(f->opaque, &f->dev, &s), 0, "%s", vmkit_last_error());
	return s;
}

#define STAT(f, field) (stats(f).field)

static void config_read(struct netf *f, uint32_t off, void *buf, uint32_t len)
{
	vqd_lock(&f->dev);
	virtio_dev_config_read(&f->dev, off, buf, len);
	vqd_unlock(&f->dev);
}

static uint16_t link_status(struct netf *f)
{
	uint16_t s;

	config_read(f, 6, &s, 2);
	return s;
}

/* ---- transmit helpers ----------------------------------------------------------------------- */

enum split {
	SPLIT_ONE,        /* header and frame in one descriptor */
	SPLIT_HDR,        /* header, frame */
	SPLIT_THREE,      /* header, frame in three pieces */
	SPLIT_ODD,        /* 5 bytes of header, the rest of it with frame data, more data, a writable tail */
	SPLIT_MODES,
};

/* Take back the transmit chains the device returned (each with nothing
 * written). */
static void tx_reap(struct netf *f)
{
	uint32_t id, len;

	while (vqd_get_used(&f->txq, &id, &len)) {
		cr_assert_eq(len, 0, "a transmit chain came back with %u bytes written", len);
		f->tx_desc_out -= f->tx_desc[f->tx_done % TX_SLOTS];
		f->tx_done++;
	}
}

/* Put header @hdr (NULL: zero) + @frame on the transmit queue, split as
 * @mode says; not notified. */
static void tx_post(struct netf *f, const uint8_t *hdr, const uint8_t *frame, size_t len,
		    enum split mode)
{
	unsigned slot = f->tx_posted % TX_SLOTS;
	uint64_t g = f->tx_pool + (uint64_t)slot * TX_SLOT_BYTES;
	uint8_t *p = vqd_hva(&f->m, g, HDR + len);
	struct vqd_buf b[5];
	uint32_t total = (uint32_t)(HDR + len), a, c;
	unsigned n = 0;

	cr_assert_lt(f->tx_posted - f->tx_done, TX_SLOTS, "too many transmit chains in flight");
	if (hdr)
		memcpy(p, hdr, HDR);
	else
		memset(p, 0, HDR);
	memcpy(p + HDR, frame, len);
	switch (mode) {
	case SPLIT_ONE:
		b[n++] = (struct vqd_buf){ g, total, false };
		break;
	case SPLIT_HDR:
		b[n++] = (struct vqd_buf){ g, HDR, false };
		b[n++] = (struct vqd_buf){ g + HDR, (uint32_t)len, false };
		break;
	case SPLIT_THREE:
		a = (uint32_t)(len / 3);
		c = (uint32_t)(len - len / 4);
		b[n++] = (struct vqd_buf){ g, HDR, false };
		b[n++] = (struct vqd_buf){ g + HDR, a, false };
		b[n++] = (struct vqd_buf){ g + HDR + a, c - a, false };
		b[n++] = (struct vqd_buf){ g + HDR + c, (uint32_t)len - c, false };
		break;
	default:
		a = (uint32_t)(len / 2);
		b[n++] = (struct vqd_buf){ g, 5, false };
		b[n++] = (struct vqd_buf){ g + 5, HDR - 5 + a, false };
		b[n++] = (struct vqd_buf){ g + HDR + a, (uint32_t)len - a, false };
		b[n++] = (struct vqd_buf){ g + HDR + len + 64, 64, true };
		break;
	}
	cr_assert_leq(f->tx_desc_out + n, QSIZE, "too many transmit descriptors in flight");
	f->tx_desc[slot] = n;
	f->tx_desc_out += n;
	f->tx_posted++;
	vqd_publish(&f->txq, (uint16_t)vqd_add_chain(&f->txq, b, n));
}

static void tx_post_frame(struct netf *f, unsigned i, size_t len, enum split mode)
{
	uint8_t *fr = malloc(len);

	cr_assert_not_null(fr);
	frame_fill(i, fr, len);
	tx_post(f, NULL, fr, len, mode);
	free(fr);
}

/* Wait until the device has returned every transmit chain. */
static bool tx_all_back(struct netf *f, int ms)
{
	return LT_WAIT((tx_reap(f), f->tx_done == f->tx_posted), ms);
}

/* ---- the test's end of the socket ------------------------------------------------------------ */

static bool wait_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) > 0;
}

/* One datagram within @ms: its length, or -1. */
static ssize_t dg_read(int fd, uint8_t *buf, size_t cap, int ms)
{
	if (!wait_readable(fd, ms))
		return -1;
	return recv(fd, buf, cap, MSG_DONTWAIT);
}

/* Exactly @n bytes: the first within @ms, the rest within 5 s after it
 * (a stream must not be left in the middle of a frame). */
static bool read_exact(int fd, uint8_t *buf, size_t n, int ms)
{
	size_t got = 0;
	double end = lt_now() + ms / 1000.0;

	while (got < n && lt_now() < end) {
		ssize_t r;

		if (!wait_readable(fd, ms < 10 ? ms : 10))
			continue;
		r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
		if (r <= 0)
			return false;
		if (got == 0)
			end = lt_now() + 5.0;
		got += (size_t)r;
	}
	return got == n;
}

/* One length-prefixed frame from a stream within @ms: its length, or -1. */
static ssize_t st_read(int fd, uint8_t *buf, size_t cap, int ms)
{
	uint8_t pre[4];
	uint32_t len;

	if (!read_exact(fd, pre, 4, ms))
		return -1;
	len = (uint32_t)pre[0] << 24 | (uint32_t)pre[1] << 16 | (uint32_t)pre[2] << 8 | pre[3];
	cr_assert_leq(len, cap, "stream frame of %u bytes", len);
	if (!read_exact(fd, buf, len, 5000))
		return -1;
	return len;
}

static ssize_t peer_read(struct netf *f, bool stream, uint8_t *buf, size_t cap, int ms)
{
	return stream ? st_read(f->peer, buf, cap, ms) : dg_read(f->peer, buf, cap, ms);
}

/* Write frame @i of @len bytes to the peer (length-prefixed on a stream). */
static void peer_write(struct netf *f, bool stream, unsigned i, size_t len)
{
	uint8_t *b = malloc(len + 4);

	cr_assert_not_null(b);
	frame_fill(i, b + 4, len);
	if (stream) {
		b[0] = (uint8_t)(len >> 24);
		b[1] = (uint8_t)(len >> 16);
		b[2] = (uint8_t)(len >> 8);
		b[3] = (uint8_t)len;
		for (size_t off = 0; off < len + 4;) {
			ssize_t w = send(f->peer, b + off, len + 4 - off, MSG_NOSIGNAL);

			cr_assert_gt(w, 0, "write to the device's stream: %s", strerror(errno));
			off += (size_t)w;
		}
	} else {
		cr_assert_eq(send(f->peer, b + 4, len, MSG_NOSIGNAL), (ssize_t)len, "%s",
			     strerror(errno));
	}
	free(b);
}

/* ---- receive helpers --------------------------------------------------------------------------- */

static uint64_t rx_gpa(struct netf *f, uint16_t head)
{
	return f->rx_pool + (uint64_t)head * RX_SLOT_BYTES;
}

/* Post @n receive chains of one writable buffer of @len bytes. */
static void rx_post_nokick(struct netf *f, unsigned n, uint32_t len)
{
	cr_assert_leq(len, RX_SLOT_BYTES);
	for (unsigned i = 0; i < n; i++) {
		uint16_t head = f->rxq.next_desc;

		cr_assert_lt(f->rx_desc_out, QSIZE, "too many receive buffers posted");
		vqd_add_chain(&f->rxq, &(struct vqd_buf){ rx_gpa(f, head), len, true }, 1);
		vqd_publish(&f->rxq, head);
		f->rx_desc_out++;
	}
}

/* ... and notify. */
static void rx_post(struct netf *f, unsigned n, uint32_t len)
{
	rx_post_nokick(f, n, len);
	vqd_kick(&f->dev, 0);
}

/* The next used receive buffer within @ms: true with its head and length. */
static bool rx_used(struct netf *f, uint32_t *head, uint32_t *len, int ms)
{
	if (!LT_WAIT(vqd_used_pending(&f->rxq) > 0, ms))
		return false;
	cr_assert(vqd_get_used(&f->rxq, head, len));
	cr_assert_lt(*head, QSIZE);
	f->rx_desc_out--;
	return true;
}

struct rx_frame {
	uint8_t hdr[HDR];
	uint16_t num_buffers;
	size_t len;
	uint8_t data[MAX_FRAME];
};

/* The next frame the guest received (within @ms), joined from its
 * num_buffers buffers. */
static bool rx_frame(struct netf *f, struct rx_frame *out, int ms)
{
	uint32_t head, len;
	const uint8_t *p;

	if (!rx_used(f, &head, &len, ms))
		return false;
	cr_assert_geq(len, HDR, "a receive buffer of %u bytes", len);
	p = vqd_hva(&f->m, rx_gpa(f, (uint16_t)head), len);
	memcpy(out->hdr, p, HDR);
	out->num_buffers = (uint16_t)(p[10] | p[11] << 8);
	out->len = len - HDR;
	memcpy(out->data, p + HDR, out->len);
	for (unsigned k = 1; k < out->num_buffers; k++) {
		cr_assert(rx_used(f, &head, &len, 5000), "buffer %u of %u missing", k,
			  out->num_buffers);
		cr_assert_leq(out->len + len, MAX_FRAME);
		memcpy(out->data + out->len, vqd_hva(&f->m, rx_gpa(f, (uint16_t)head), len), len);
		out->len += len;
	}
	return true;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* The process uses almost no CPU for half a second: no busy loop on a
 * hung-up fd (one would take a tenth of a CPU even on a loaded machine). */
static void assert_idle(const char *what)
{
	double c0 = cpu_seconds(), c1;

	usleep(500 * 1000);
	c1 = cpu_seconds();
	cr_assert_lt(c1 - c0, 0.05, "%.3f s of CPU in 0.5 s %s", c1 - c0, what);
}

static bool hdr_is_plain(const struct rx_frame *fr)
{
	static const uint8_t zero[10];

	return memcmp(fr->hdr, zero, 10) == 0;
}

/* ============================================================================================= */
/* features and config space                                                                      */

static int never_tx(void *u, const struct iovec *iov, unsigned n, size_t len)
{
	(void)u;
	(void)iov;
	(void)n;
	(void)len;
	cr_assert_fail("tx_fn called without a driver");
	return 0;
}

Test(virtio_net, features_without_offloads_for_socket_and_callback_backends)
{
	static const uint32_t kinds[] = { VMKIT_NET_DGRAM, VMKIT_NET_STREAM, VMKIT_NET_CALLBACK };

	for (unsigned k = 0; k < ARRAY_SIZE(kinds); k++) {
		struct netf f;
		vmkit_net_config cfg;
		uint64_t feat;

		if (kinds[k] == VMKIT_NET_CALLBACK) {
			cfg_init(&cfg, VMKIT_NET_CALLBACK, -1);
			cfg.tx_fn = never_tx;
			net_new(&f, &cfg);
		} else {
			net_new_pair(&f, kinds[k], NULL);
		}
		feat = vqd_device_features(&f.dev);
		cr_assert_eq(feat & OFFLOAD_BITS, 0, "backend %u offers offloads 0x%llx", kinds[k],
			     (unsigned long long)(feat & OFFLOAD_BITS));
		cr_assert_eq(feat & (F_MAC | F_STATUS | F_MRG_RXBUF | F_VERSION_1),
			     F_MAC | F_STATUS | F_MRG_RXBUF | F_VERSION_1);
		cr_assert_eq(feat & (F_CTRL_VQ | F_MQ | F_MTU), 0);
		net_down(&f);
	}
}

Test(virtio_net, config_space_mac_status_and_read_only)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	vmkit_net_config cfg;
	struct netf f, g;
	uint8_t c[12], c2[12], m1[6], m2[6];

	cfg_init(&cfg, VMKIT_NET_DGRAM, -1);
	memcpy(cfg.mac, mac, 6);
	cfg.mac_set = true;
	net_new_pair(&f, VMKIT_NET_DGRAM, &cfg);
	cr_assert_eq(f.ops->config_size, 12);
	config_read(&f, 0, c, 12);
	cr_assert_eq(memcmp(c, mac, 6), 0);
	cr_assert_eq(c[6] | c[7] << 8, 1, "status: LINK_UP");
	cr_assert_eq(c[8] | c[9] << 8, 1, "max_virtqueue_pairs");
	cr_assert_eq(c[10] | c[11] << 8, 0, "mtu (not offered)");
	/* writes are ignored */
	vqd_lock(&f.dev);
	virtio_dev_config_write(&f.dev, 0, "\x01\x02\x03\x04\x05\x06\x00\x00", 8);
	vqd_unlock(&f.dev);
	config_read(&f, 0, c2, 12);
	cr_assert_eq(memcmp(c, c2, 12), 0);
	/* unaligned and partial reads see the same bytes */
	config_read(&f, 3, c2, 4);
	cr_assert_eq(memcmp(c2, c + 3, 4), 0);
	net_down(&f);

	/* no MAC given: a random locally administered unicast one, per device */
	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_new_pair(&g, VMKIT_NET_DGRAM, NULL);
	config_read(&f, 0, m1, 6);
	config_read(&g, 0, m2, 6);
	cr_assert_eq(m1[0] & 3, 2, "MAC %02x:..: not locally administered unicast", m1[0]);
	cr_assert_eq(m2[0] & 3, 2);
	cr_assert_neq(memcmp(m1, m2, 6), 0, "two devices got the same random MAC");
	net_down(&f);
	net_down(&g);
}

Test(virtio_net, create_refuses_bad_configurations)
{
	const vmkit_virtio_ops *ops;
	struct loop_thread lt;
	vmkit_net_config cfg;
	void *op;
	int sv[2];

	loop_thread_new(&lt);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	cfg_init(&cfg, VMKIT_NET_DGRAM, sv[0]);
	cr_assert_eq(virtio_net_create(&cfg, NULL, &ops, &op), -EINVAL, "no loop");
	cr_assert_eq(virtio_net_create(NULL, lt.loop, &ops, &op), -EINVAL);
	cfg.size = 8;
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -EINVAL, "old struct size");
	cfg_init(&cfg, 7, sv[0]);
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -EINVAL, "unknown backend");
	cfg_init(&cfg, VMKIT_NET_DGRAM, sv[0]);
	cfg.mac_set = true;
	memcpy(cfg.mac, "\x01\x00\x5e\x00\x00\x01", 6);
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -EINVAL, "multicast MAC");
	memset(cfg.mac, 0, 6);
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -EINVAL, "zero MAC");
	cfg_init(&cfg, VMKIT_NET_STREAM, sv[0]);
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -EINVAL,
		     "a datagram socket for a stream backend");
	cr_assert(strstr(vmkit_last_error(), "stream"), "%s", vmkit_last_error());
	cfg_init(&cfg, VMKIT_NET_STREAM, -1);
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -EINVAL, "neither fd nor path");
	cfg.path = "/nonexistent/vmkit-net.sock";
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -ENOENT);
	cr_assert(strstr(vmkit_last_error(), "/nonexistent/vmkit-net.sock"), "%s",
		  vmkit_last_error());
	cfg_init(&cfg, VMKIT_NET_DGRAM, 1000);
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -EBADF);
	cfg_init(&cfg, VMKIT_NET_TAP, -1);
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -EINVAL, "tap without a name");
	cfg.ifname = "a-name-much-too-long-for-linux";
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -EINVAL);
	cfg_init(&cfg, VMKIT_NET_TAP, sv[0]);
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -EINVAL, "a socket is no tap");
	cfg_init(&cfg, VMKIT_NET_CALLBACK, -1);
	cr_assert_eq(virtio_net_create(&cfg, lt.loop, &ops, &op), -EINVAL, "callback without tx_fn");
	close(sv[0]);
	close(sv[1]);
	loop_thread_free(&lt);
}

/* ============================================================================================= */
/* transmit                                                                                          */

/* @n frames of mixed sizes (a 65535-byte one now and then) in every
 * split, through the device to the peer: content and order. */
static void tx_many(bool stream, unsigned n)
{
	struct netf f;
	uint8_t *buf = malloc(MAX_FRAME);
	unsigned got = 0;
	uint64_t bytes = 0;
	double end = lt_now() + 120;
	vmkit_net_stats s;

	cr_assert_not_null(buf);
	net_new_pair(&f, stream ? VMKIT_NET_STREAM : VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	while (got < n) {
		bool posted = false;
		ssize_t len;

		cr_assert_lt(lt_now(), end, "only %u of %u frames arrived", got, n);
		while (f.tx_posted < n && f.tx_posted - f.tx_done < TX_SLOTS &&
		       f.tx_desc_out + 4 <= QSIZE) {
			unsigned i = f.tx_posted;

			tx_post_frame(&f, i, frame_size(i), (enum split)(i % SPLIT_MODES));
			posted = true;
		}
		if (posted)
			vqd_kick(&f.dev, 1);
		while ((len = peer_read(&f, stream, buf, MAX_FRAME, got ? 1 : 100)) >= 0) {
			cr_assert_eq((size_t)len, frame_size(got), "frame %u: %zd bytes, expected %zu",
				     got, len, frame_size(got));
			cr_assert(frame_is(got, buf, (size_t)len), "frame %u arrived changed or out of order",
				  got);
			bytes += (uint64_t)len;
			if (++got == n)
				break;
		}
		tx_reap(&f);
	}
	cr_assert(tx_all_back(&f, 5000));
	s = stats(&f);
	cr_assert_eq(s.tx_frames, n);
	cr_assert_eq(s.tx_bytes, bytes);
	cr_assert_eq(s.tx_dropped, 0);
	cr_assert_eq(s.rx_frames, 0);
	cr_assert_eq(dg_read(f.peer, buf, MAX_FRAME, 50), -1, "more arrived than was sent");
	net_down(&f);
	free(buf);
}

Test(virtio_net, tx_dgram_ten_thousand_frames_in_order, .timeout = 300)
{
	tx_many(false, 10000);
}

Test(virtio_net, tx_stream_ten_thousand_frames_in_order, .timeout = 300)
{
	tx_many(true, 10000);
}

Test(virtio_net, tx_chain_of_two_hundred_descriptors)
{
	enum { PIECES = 200 };
	struct vqd_buf b[PIECES + 1];
	struct netf f;
	uint8_t *buf = malloc(MAX_FRAME);
	size_t len = 6000;
	uint64_t g;
	ssize_t got;

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	g = vqd_alloc(&f.m, HDR + len, 16);
	memset(vqd_hva(&f.m, g, HDR), 0, HDR);
	frame_fill(77, vqd_hva(&f.m, g + HDR, len), len);
	b[0] = (struct vqd_buf){ g, HDR, false };
	for (unsigned i = 0; i < PIECES; i++)
		b[i + 1] = (struct vqd_buf){ g + HDR + i * (len / PIECES), (uint32_t)(len / PIECES),
					     false };
	vqd_publish(&f.txq, (uint16_t)vqd_add_chain(&f.txq, b, PIECES + 1));
	vqd_kick(&f.dev, 1);
	got = dg_read(f.peer, buf, MAX_FRAME, 5000);
	cr_assert_eq(got, (ssize_t)len);
	cr_assert(frame_is(77, buf, len));
	net_down(&f);
	free(buf);
}

/* Fill the peer's buffer: nothing is dropped, the queue waits, and every
 * frame arrives in order once the test reads. On a stream, 64 KiB frames
 * through a small buffer are written in parts. (A datagram larger than
 * the socket's send buffer could never be sent: 1514-byte ones there.) */
static size_t bp_size(bool stream, unsigned i)
{
	return stream && i % 7 == 3 ? 65535 : 1514;
}

static void tx_back_pressure(bool stream)
{
	enum { N = 50 };
	struct netf f;
	uint8_t *buf = malloc(MAX_FRAME);
	int small = 4096;
	vmkit_net_stats s;
	unsigned got = 0;
	int sv[2];
	vmkit_net_config cfg;

	cr_assert_eq(socketpair(AF_UNIX, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0, sv),
		     0);
	cr_assert_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	cr_assert_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	cfg_init(&cfg, stream ? VMKIT_NET_STREAM : VMKIT_NET_DGRAM, sv[0]);
	net_new(&f, &cfg);
	close(sv[0]);
	f.peer = sv[1];
	net_up(&f, VQD_FEATURES_ALL);
	for (unsigned i = 0; i < N; i++)
		tx_post_frame(&f, i, bp_size(stream, i), (enum split)(i % SPLIT_MODES));
	vqd_kick(&f.dev, 1);
	cr_assert(LT_WAIT(STAT(&f, tx_backpressure) > 0, 5000), "the backend never filled up");
	usleep(100 * 1000);
	tx_reap(&f);
	cr_assert_lt(f.tx_done, N, "all %u frames taken although nobody reads", N);
	s = stats(&f);
	cr_assert_eq(s.tx_dropped, 0);
	while (got < N) {
		ssize_t len = peer_read(&f, stream, buf, MAX_FRAME, 5000);
		size_t want = bp_size(stream, got);

		cr_assert_eq(len, (ssize_t)want, "frame %u: %zd bytes", got, len);
		cr_assert(frame_is(got, buf, want), "frame %u changed or out of order", got);
		got++;
	}
	cr_assert(tx_all_back(&f, 5000));
	s = stats(&f);
	cr_assert_eq(s.tx_frames, N);
	cr_assert_eq(s.tx_dropped, 0);
	net_down(&f);
	free(buf);
}

Test(virtio_net, tx_dgram_back_pressure_keeps_everything_in_order)
{
	tx_back_pressure(false);
}

Test(virtio_net, tx_stream_back_pressure_and_partial_writes_keep_order)
{
	tx_back_pressure(true);
}

/* ============================================================================================= */
/* receive                                                                                            */

static void rx_both_ways(bool stream)
{
	enum { N = 50 };
	struct netf f;
	struct rx_frame *fr = malloc(sizeof(*fr));
	uint64_t bytes = 0;
	vmkit_net_stats s;

	net_new_pair(&f, stream ? VMKIT_NET_STREAM : VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	rx_post(&f, 64, 1526);
	for (unsigned i = 0; i < N; i++) {
		size_t len = i == 7 ? 14 : frame_size(i + 1) % 1501 + 14;

		peer_write(&f, stream, i, len);
		bytes += len;
	}
	for (unsigned i = 0; i < N; i++) {
		size_t len = i == 7 ? 14 : frame_size(i + 1) % 1501 + 14;

		cr_assert(rx_frame(&f, fr, 5000), "frame %u did not arrive", i);
		cr_assert_eq(fr->num_buffers, 1);
		cr_assert(hdr_is_plain(fr), "header flags/gso set without offloads");
		cr_assert_eq(fr->len, len, "frame %u: %zu bytes, expected %zu", i, fr->len, len);
		cr_assert(frame_is(i, fr->data, len), "frame %u changed or out of order", i);
	}
	s = stats(&f);
	cr_assert_eq(s.rx_frames, N);
	cr_assert_eq(s.rx_bytes, bytes);
	cr_assert_eq(s.rx_dropped, 0);
	net_down(&f);
	free(fr);
}

Test(virtio_net, rx_dgram_frames_reach_the_guest_intact)
{
	rx_both_ways(false);
}

Test(virtio_net, rx_stream_frames_reach_the_guest_intact)
{
	rx_both_ways(true);
}

Test(virtio_net, rx_mergeable_frame_spans_buffers)
{
	struct netf f;
	struct rx_frame *fr = malloc(sizeof(*fr));
	uint32_t head, len, total = 0;

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	rx_post(&f, 8, 1526);
	peer_write(&f, false, 5, 9000);
	cr_assert(rx_frame(&f, fr, 5000));
	cr_assert_eq(fr->num_buffers, 6, "9000 + 12 bytes over 1526-byte buffers");
	cr_assert_eq(fr->len, 9000);
	cr_assert(frame_is(5, fr->data, 9000));
	cr_assert_eq(vqd_used_pending(&f.rxq), 0, "no buffer beyond the six was used");
	/* the two left take the next frame */
	peer_write(&f, false, 6, 1000);
	cr_assert(rx_used(&f, &head, &len, 5000));
	total = len;
	cr_assert_eq(total, HDR + 1000);
	cr_assert_eq(STAT(&f, rx_frames), 2);
	net_down(&f);
	free(fr);
}

Test(virtio_net, rx_mergeable_frame_waits_for_enough_buffers)
{
	struct netf f;
	struct rx_frame *fr = malloc(sizeof(*fr));

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	rx_post(&f, 3, 1526);
	peer_write(&f, false, 1, 9000);
	peer_write(&f, false, 2, 100);
	cr_assert(LT_WAIT(STAT(&f, rx_no_buffer) > 0, 5000));
	usleep(50 * 1000);
	cr_assert_eq(vqd_used_pending(&f.rxq), 0, "a part of the frame was delivered");
	rx_post(&f, 4, 1526);
	cr_assert(rx_frame(&f, fr, 5000));
	cr_assert_eq(fr->num_buffers, 6);
	cr_assert(frame_is(1, fr->data, 9000));
	cr_assert(rx_frame(&f, fr, 5000));
	cr_assert_eq(fr->len, 100);
	cr_assert(frame_is(2, fr->data, 100));
	cr_assert_eq(STAT(&f, rx_dropped), 0);
	net_down(&f);
	free(fr);
}

Test(virtio_net, rx_non_mergeable_drops_a_frame_that_does_not_fit)
{
	struct netf f;
	struct rx_frame *fr = malloc(sizeof(*fr));
	vmkit_net_stats s;

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, vqd_device_features(&f.dev) & ~F_MRG_RXBUF);
	rx_post(&f, 2, 1526);
	peer_write(&f, false, 1, 2000);
	peer_write(&f, false, 2, 1000);
	cr_assert(rx_frame(&f, fr, 5000));
	cr_assert_eq(fr->num_buffers, 1, "num_buffers is 1 without MRG_RXBUF");
	cr_assert_eq(fr->len, 1000);
	cr_assert(frame_is(2, fr->data, 1000));
	s = stats(&f);
	cr_assert_eq(s.rx_dropped, 1);
	cr_assert_eq(s.rx_frames, 1);
	/* a frame that fits exactly: header + 1514 in 1526 bytes */
	peer_write(&f, false, 3, 1514);
	cr_assert(rx_frame(&f, fr, 5000));
	cr_assert_eq(fr->len, 1514);
	cr_assert(frame_is(3, fr->data, 1514));
	net_down(&f);
	free(fr);
}

static void rx_waits_for_buffers(bool stream)
{
	enum { N = 20 };
	struct netf f;
	struct rx_frame *fr = malloc(sizeof(*fr));
	vmkit_net_stats s;

	net_new_pair(&f, stream ? VMKIT_NET_STREAM : VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	for (unsigned i = 0; i < N; i++)
		peer_write(&f, stream, i, 100 + i);
	cr_assert(LT_WAIT(STAT(&f, rx_no_buffer) > 0, 5000), "the device never waited");
	usleep(50 * 1000);
	s = stats(&f);
	cr_assert_eq(s.rx_frames, 0);
	cr_assert_eq(s.rx_dropped, 0);
	rx_post(&f, 32, 1526);
	for (unsigned i = 0; i < N; i++) {
		cr_assert(rx_frame(&f, fr, 5000), "frame %u lost", i);
		cr_assert_eq(fr->len, 100 + i);
		cr_assert(frame_is(i, fr->data, 100 + i), "frame %u changed or out of order", i);
	}
	s = stats(&f);
	cr_assert_eq(s.rx_frames, N);
	cr_assert_eq(s.rx_dropped, 0);
	net_down(&f);
	free(fr);
}

Test(virtio_net, rx_dgram_frames_wait_for_buffers)
{
	rx_waits_for_buffers(false);
}

Test(virtio_net, rx_stream_frames_wait_for_buffers)
{
	rx_waits_for_buffers(true);
}

Test(virtio_net, rx_stream_reassembles_partial_writes)
{
	struct netf f;
	struct rx_frame *fr = malloc(sizeof(*fr));
	uint8_t b[2 * (4 + 3000)];
	size_t len = 3000;

	net_new_pair(&f, VMKIT_NET_STREAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	rx_post(&f, 8, 1526);
	/* one frame in three pieces, with pauses: the prefix split too */
	b[0] = 0;
	b[1] = 0;
	b[2] = (uint8_t)(len >> 8);
	b[3] = (uint8_t)len;
	frame_fill(1, b + 4, len);
	cr_assert_eq(send(f.peer, b, 2, 0), 2);
	usleep(50 * 1000);
	cr_assert_eq(send(f.peer, b + 2, 1000, 0), 1000);
	usleep(50 * 1000);
	cr_assert_eq(vqd_used_pending(&f.rxq), 0, "a partial frame was delivered");
	cr_assert_eq(send(f.peer, b + 1002, len + 4 - 1002, 0), (ssize_t)(len + 4 - 1002));
	cr_assert(rx_frame(&f, fr, 5000));
	cr_assert_eq(fr->len, len);
	cr_assert(frame_is(1, fr->data, len));
	/* the end of one frame and the start of the next in one write */
	for (unsigned k = 0; k < 2; k++) {
		uint8_t *p = b + k * (4 + 100);

		p[0] = p[1] = p[2] = 0;
		p[3] = 100;
		frame_fill(10 + k, p + 4, 100);
	}
	cr_assert_eq(send(f.peer, b, 50, 0), 50);
	usleep(20 * 1000);
	cr_assert_eq(send(f.peer, b + 50, 100, 0), 100);
	usleep(20 * 1000);
	cr_assert_eq(send(f.peer, b + 150, 58, 0), 58);
	for (unsigned k = 0; k < 2; k++) {
		cr_assert(rx_frame(&f, fr, 5000));
		cr_assert_eq(fr->len, 100);
		cr_assert(frame_is(10 + k, fr->data, 100));
	}
	cr_assert_eq(STAT(&f, rx_dropped), 0);
	net_down(&f);
	free(fr);
}

Test(virtio_net, rx_dgram_drops_runts_and_giants)
{
	struct netf f;
	struct rx_frame *fr = malloc(sizeof(*fr));
	uint8_t *big = calloc(1, 70000);

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	rx_post(&f, 64, 4096);
	cr_assert_eq(send(f.peer, "short", 5, 0), 5);
	cr_assert_eq(send(f.peer, "", 0, 0), 0);
	cr_assert_eq(send(f.peer, big, MAX_FRAME + 1, 0), (ssize_t)MAX_FRAME + 1);
	peer_write(&f, false, 4, 64);
	cr_assert(rx_frame(&f, fr, 5000));
	cr_assert_eq(fr->len, 64);
	cr_assert(frame_is(4, fr->data, 64));
	cr_assert_eq(STAT(&f, rx_dropped), 3);
	net_down(&f);
	free(fr);
	free(big);
}

/* ============================================================================================= */
/* the stream's end and protocol errors                                                              */

Test(virtio_net, stream_protocol_error_takes_the_link_down)
{
	struct netf f;
	uint8_t bad[4 + 10] = { 0, 0, 0, 10 };
	unsigned irqs;
	vmkit_net_stats s;

	net_new_pair(&f, VMKIT_NET_STREAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	rx_post(&f, 8, 1526);
	irqs = f.t.config_irqs;
	cr_assert_eq(link_status(&f), 1);
	cr_assert_eq(send(f.peer, bad, sizeof(bad), 0), (ssize_t)sizeof(bad));
	cr_assert(LT_WAIT(link_status(&f) == 0, 5000), "the link stayed up");
	cr_assert_gt(f.t.config_irqs, irqs, "the driver was not told");
	s = stats(&f);
	cr_assert_eq(s.rx_dropped, 1);
	cr_assert_eq(s.rx_frames, 0);
	/* the device lives on: the guest's frames are dropped and counted */
	tx_post_frame(&f, 1, 100, SPLIT_HDR);
	vqd_kick(&f.dev, 1);
	cr_assert(tx_all_back(&f, 5000));
	cr_assert_eq(STAT(&f, tx_dropped), 1);
	cr_assert(vqd_status_live(vqd_status(&f.dev)));
	net_down(&f);
}

Test(virtio_net, stream_peer_closing_takes_the_link_down)
{
	struct netf f;
	struct rx_frame *fr = malloc(sizeof(*fr));

	net_new_pair(&f, VMKIT_NET_STREAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	rx_post(&f, 8, 1526);
	/* what was sent before the close is still delivered */
	peer_write(&f, true, 3, 200);
	close(f.peer);
	f.peer = -1;
	cr_assert(rx_frame(&f, fr, 5000));
	cr_assert(frame_is(3, fr->data, 200));
	cr_assert(LT_WAIT(link_status(&f) == 0, 5000), "the link stayed up");
	tx_post_frame(&f, 1, 100, SPLIT_ONE);
	vqd_kick(&f.dev, 1);
	cr_assert(tx_all_back(&f, 5000));
	cr_assert_eq(STAT(&f, tx_dropped), 1);
	net_down(&f);
	free(fr);
}

Test(virtio_net, stream_peer_closing_before_the_driver_comes)
{
	struct netf f;

	net_new_pair(&f, VMKIT_NET_STREAM, NULL);
	close(f.peer);
	f.peer = -1;
	assert_idle("with a hung-up stream and no driver");
	net_up(&f, VQD_FEATURES_ALL);
	cr_assert(LT_WAIT(link_status(&f) == 0, 5000), "the link stayed up");
	net_down(&f);
}

Test(virtio_net, stream_hang_up_while_waiting_for_buffers)
{
	struct netf f;
	struct rx_frame *fr = malloc(sizeof(*fr));

	net_new_pair(&f, VMKIT_NET_STREAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	for (unsigned i = 0; i < 3; i++)
		peer_write(&f, true, i, 300);
	close(f.peer);
	f.peer = -1;
	cr_assert(LT_WAIT(STAT(&f, rx_no_buffer) > 0, 5000));
	assert_idle("with a hung-up stream while waiting for buffers");
	cr_assert_eq(link_status(&f), 1, "the link went down with frames still to deliver");
	rx_post(&f, 8, 1526);
	for (unsigned i = 0; i < 3; i++) {
		cr_assert(rx_frame(&f, fr, 5000), "frame %u sent before the hang-up was lost", i);
		cr_assert(frame_is(i, fr->data, 300));
	}
	cr_assert(LT_WAIT(link_status(&f) == 0, 5000), "the link stayed up");
	net_down(&f);
	free(fr);
}

Test(virtio_net, dgram_without_a_peer_drops_and_counts)
{
	struct netf f;

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	close(f.peer);
	f.peer = -1;
	for (unsigned i = 0; i < 3; i++)
		tx_post_frame(&f, i, 100, SPLIT_ONE);
	vqd_kick(&f.dev, 1);
	cr_assert(tx_all_back(&f, 5000));
	cr_assert_eq(STAT(&f, tx_dropped), 3);
	cr_assert_eq(link_status(&f), 1, "a datagram socket has no link to lose");
	net_down(&f);
}

/* ============================================================================================= */
/* the callback backend                                                                              */

struct cb {
	pthread_mutex_t mu;
	unsigned frames, calls, ready, eagain_at, fail_at;
	bool held;
	size_t len[64];
	uint8_t data[64][256];
};

static int cb_tx(void *u, const struct iovec *iov, unsigned n, size_t len)
{
	struct cb *c = u;
	size_t off = 0;
	int ret = 0;

	pthread_mutex_lock(&c->mu);
	c->calls++;
	if (c->frames == c->eagain_at && !c->held) {
		c->held = true;
		ret = -EAGAIN;
	} else if (c->calls == c->fail_at) {
		ret = -EIO;
	} else if (c->frames < 64) {
		c->len[c->frames] = len;
		for (unsigned i = 0; i < n; i++) {
			size_t k = iov[i].iov_len;

			if (off + k > sizeof(c->data[0]))
				k = sizeof(c->data[0]) - off;
			memcpy(c->data[c->frames] + off, iov[i].iov_base, k);
			off += k;
		}
		c->frames++;
	}
	pthread_mutex_unlock(&c->mu);
	return ret;
}

static void cb_ready(void *u)
{
	struct cb *c = u;

	pthread_mutex_lock(&c->mu);
	c->ready++;
	pthread_mutex_unlock(&c->mu);
}

static unsigned cb_get(struct cb *c, unsigned *field)
{
	unsigned v;

	pthread_mutex_lock(&c->mu);
	v = *field;
	pthread_mutex_unlock(&c->mu);
	return v;
}

static void net_new_cb(struct netf *f, struct cb *c)
{
	vmkit_net_config cfg;

	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	c->eagain_at = UINT32_MAX;
	c->fail_at = UINT32_MAX;
	cfg_init(&cfg, VMKIT_NET_CALLBACK, -1);
	cfg.tx_fn = cb_tx;
	cfg.ready_fn = cb_ready;
	cfg.userdata = c;
	net_new(f, &cfg);
}

Test(virtio_net, callback_tx_holds_on_eagain_until_kicked)
{
	struct netf f;
	struct cb c;
	vmkit_net_stats s;

	net_new_cb(&f, &c);
	c.eagain_at = 3;
	net_up(&f, VQD_FEATURES_ALL);
	for (unsigned i = 0; i < 8; i++)
		tx_post_frame(&f, i, 60 + i, (enum split)(i % SPLIT_MODES));
	vqd_kick(&f.dev, 1);
	cr_assert(LT_WAIT(cb_get(&c, &c.frames) == 3, 5000));
	usleep(100 * 1000);
	vqd_kick(&f.dev, 1); /* a guest notify does not end the hold */
	usleep(50 * 1000);
	cr_assert_eq(cb_get(&c, &c.frames), 3, "frames went on before the kick");
	cr_assert_eq(cb_get(&c, &c.calls), 4, "tx_fn was called again while holding");
	tx_reap(&f);
	cr_assert_eq(f.tx_done, 3, "held chains were returned to the guest");
	cr_assert_eq(STAT(&f, tx_backpressure), 1);
	cr_assert_eq(virtio_net_kick(f.opaque, &f.dev), 0);
	cr_assert(LT_WAIT(cb_get(&c, &c.frames) == 8, 5000));
	for (unsigned i = 0; i < 8; i++) {
		cr_assert_eq(c.len[i], 60 + i);
		cr_assert(frame_is(i, c.data[i], 60 + i), "frame %u changed or out of order", i);
	}
	cr_assert(tx_all_back(&f, 5000));
	s = stats(&f);
	cr_assert_eq(s.tx_frames, 8);
	cr_assert_eq(s.tx_dropped, 0);
	net_down(&f);
}

Test(virtio_net, callback_tx_error_drops_one_frame)
{
	struct netf f;
	struct cb c;

	net_new_cb(&f, &c);
	c.fail_at = 2;
	net_up(&f, VQD_FEATURES_ALL);
	for (unsigned i = 0; i < 3; i++)
		tx_post_frame(&f, i, 100, SPLIT_ONE);
	vqd_kick(&f.dev, 1);
	cr_assert(tx_all_back(&f, 5000));
	cr_assert_eq(cb_get(&c, &c.frames), 2);
	cr_assert(frame_is(0, c.data[0], 100));
	cr_assert(frame_is(2, c.data[1], 100));
	cr_assert_eq(STAT(&f, tx_dropped), 1);
	cr_assert_eq(STAT(&f, tx_frames), 2);
	net_down(&f);
}

Test(virtio_net, callback_receive_until_full_then_ready)
{
	struct netf f;
	struct cb c;
	struct rx_frame *fr = malloc(sizeof(*fr));
	uint8_t frame[300];
	unsigned queued = 0, got = 0;
	int r;

	net_new_cb(&f, &c);
	/* sizes and the wrong backend */
	cr_assert_eq(virtio_net_receive(f.opaque, &f.dev, frame, 13), -EMSGSIZE);
	cr_assert_eq(virtio_net_receive(f.opaque, &f.dev, frame, 65536), -EMSGSIZE);
	net_up(&f, VQD_FEATURES_ALL);
	/* no buffers yet: the inbox fills */
	for (;;) {
		frame_fill(queued, frame, 100 + queued % 200);
		r = virtio_net_receive(f.opaque, &f.dev, frame, 100 + queued % 200);
		if (r == -EAGAIN)
			break;
		cr_assert_eq(r, 0, "%s", vmkit_last_error());
		queued++;
		cr_assert_lt(queued, 100000, "the inbox is unbounded");
	}
	cr_assert_geq(queued, 2);
	cr_assert_eq(cb_get(&c, &c.ready), 0);
	/* the guest drains: ready_fn is called once there is room */
	while (got < queued) {
		if (f.rx_desc_out < 32)
			rx_post(&f, 32, 1526);
		cr_assert(rx_frame(&f, fr, 5000), "frame %u of %u lost", got, queued);
		cr_assert_eq(fr->len, 100 + got % 200);
		cr_assert(frame_is(got, fr->data, fr->len), "frame %u changed or out of order", got);
		got++;
	}
	cr_assert(LT_WAIT(cb_get(&c, &c.ready) == 1, 5000), "ready_fn was not called");
	frame_fill(queued, frame, 64);
	cr_assert_eq(virtio_net_receive(f.opaque, &f.dev, frame, 64), 0);
	cr_assert(rx_frame(&f, fr, 5000));
	cr_assert(frame_is(queued, fr->data, 64));
	cr_assert_eq(STAT(&f, rx_frames), queued + 1);
	net_down(&f);
	free(fr);
}

Test(virtio_net, receive_and_kick_need_the_callback_backend)
{
	struct netf f;

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	cr_assert_eq(virtio_net_receive(f.opaque, &f.dev, "0123456789abcdef", 16), -ENOTSUP);
	cr_assert_eq(virtio_net_kick(f.opaque, &f.dev), -ENOTSUP);
	{
		vmkit_net_stats s = { .size = 8 };

		cr_assert_eq(virtio_net_get_stats(f.opaque, &f.dev, &s), -EINVAL, "short stats struct");
	}
	/* stats before any driver */
	cr_assert_eq(STAT(&f, rx_frames), 0);
	net_down(&f);
}

/* ============================================================================================= */
/* rate limits                                                                                       */

Test(virtio_net, tx_rate_limit_bounds_frames_then_lifts)
{
	enum { N = 20 };
	vmkit_net_config cfg;
	vmkit_rate_limit none = { 0, 0, 0, 0 };
	struct netf f;
	uint8_t buf[256];
	unsigned got = 0;
	double t0;

	cfg_init(&cfg, VMKIT_NET_DGRAM, -1);
	cfg.tx.frames_per_sec = 10;
	cfg.tx.frames_burst = 2;
	net_new_pair(&f, VMKIT_NET_DGRAM, &cfg);
	net_up(&f, VQD_FEATURES_ALL);
	for (unsigned i = 0; i < N; i++)
		tx_post_frame(&f, i, 100, SPLIT_ONE);
	t0 = lt_now();
	vqd_kick(&f.dev, 1);
	while (lt_now() - t0 < 0.3)
		if (dg_read(f.peer, buf, sizeof(buf), 10) > 0)
			got++;
	cr_assert_leq(got, 2 + 4, "%u frames in 300 ms at 10/s with a burst of 2", got);
	cr_assert_geq(STAT(&f, tx_throttled), 1);
	cr_assert_eq(virtio_net_set_rate_limit(f.opaque, &f.dev, NULL, &none), 0);
	while (got < N) {
		cr_assert_eq(dg_read(f.peer, buf, sizeof(buf), 5000), 100, "after lifting the limit");
		got++;
	}
	cr_assert(tx_all_back(&f, 5000));
	cr_assert_eq(STAT(&f, tx_dropped), 0);
	net_down(&f);
}

Test(virtio_net, tx_byte_rate_limit_bounds_bytes)
{
	vmkit_net_config cfg;
	struct netf f;
	uint8_t buf[2048];
	uint64_t bytes = 0;
	double t0;

	cfg_init(&cfg, VMKIT_NET_DGRAM, -1);
	cfg.tx.bytes_per_sec = 100000; /* burst 0: the default, 64 KiB here */
	net_new_pair(&f, VMKIT_NET_DGRAM, &cfg);
	net_up(&f, VQD_FEATURES_ALL);
	for (unsigned i = 0; i < TX_SLOTS; i++)
		tx_post_frame(&f, i, 1500, SPLIT_ONE);
	t0 = lt_now();
	vqd_kick(&f.dev, 1);
	while (lt_now() - t0 < 0.3) {
		ssize_t r = dg_read(f.peer, buf, sizeof(buf), 10);

		if (r > 0)
			bytes += (uint64_t)r;
	}
	cr_assert_leq(bytes, 65536 + 2 * 30000 + 1500, "%llu bytes in 300 ms at 100 kB/s",
		      (unsigned long long)bytes);
	cr_assert_gt(bytes, 0);
	net_down(&f);
}

Test(virtio_net, rx_rate_limit_bounds_frames_then_lifts)
{
	enum { N = 20 };
	vmkit_net_config cfg;
	vmkit_rate_limit none = { 0, 0, 0, 0 };
	struct netf f;
	struct rx_frame *fr = malloc(sizeof(*fr));
	unsigned got = 0;
	double t0;

	cfg_init(&cfg, VMKIT_NET_DGRAM, -1);
	cfg.rx.frames_per_sec = 10;
	cfg.rx.frames_burst = 2;
	net_new_pair(&f, VMKIT_NET_DGRAM, &cfg);
	net_up(&f, VQD_FEATURES_ALL);
	rx_post(&f, 32, 1526);
	t0 = lt_now();
	for (unsigned i = 0; i < N; i++)
		peer_write(&f, false, i, 100);
	while (lt_now() - t0 < 0.3)
		if (rx_frame(&f, fr, 10)) {
			cr_assert(frame_is(got, fr->data, 100));
			got++;
		}
	cr_assert_leq(got, 2 + 4, "%u frames in 300 ms at 10/s with a burst of 2", got);
	cr_assert_geq(STAT(&f, rx_throttled), 1);
	cr_assert_eq(virtio_net_set_rate_limit(f.opaque, &f.dev, &none, NULL), 0);
	while (got < N) {
		cr_assert(rx_frame(&f, fr, 5000), "frame %u after lifting the limit", got);
		cr_assert(frame_is(got, fr->data, 100), "frame %u changed or out of order", got);
		got++;
	}
	cr_assert_eq(STAT(&f, rx_dropped), 0);
	net_down(&f);
	free(fr);
}

Test(virtio_net, rate_limit_set_at_run_time_applies)
{
	vmkit_rate_limit slow = { 0, 0, 10, 1 };
	struct netf f;
	uint8_t buf[256];
	unsigned got = 0;
	double t0;

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	cr_assert_eq(virtio_net_set_rate_limit(f.opaque, &f.dev, NULL, &slow), 0);
	for (unsigned i = 0; i < 20; i++)
		tx_post_frame(&f, i, 100, SPLIT_ONE);
	t0 = lt_now();
	vqd_kick(&f.dev, 1);
	while (lt_now() - t0 < 0.3)
		if (dg_read(f.peer, buf, sizeof(buf), 10) > 0)
			got++;
	cr_assert_leq(got, 1 + 4, "%u frames in 300 ms at 10/s with a burst of 1", got);
	cr_assert_geq(got, 1, "a full bucket lets the first frame through");
	net_down(&f);
}

/* ============================================================================================= */
/* hostile descriptors                                                                               */

/* Reset and bring the device up again; a frame then goes through. */
static void recovers(struct netf *f)
{
	uint8_t buf[256];

	cr_assert_eq(vqd_status(&f->dev) & VIRTIO_STATUS_NEEDS_RESET, VIRTIO_STATUS_NEEDS_RESET,
		     "status 0x%x", vqd_status(&f->dev));
	vqd_queue_init_at(&f->rxq, &f->m, QSIZE, f->rxq.desc, f->rxq.avail, f->rxq.used);
	vqd_queue_init_at(&f->txq, &f->m, QSIZE, f->txq.desc, f->txq.avail, f->txq.used);
	f->tx_posted = f->tx_done = f->tx_desc_out = f->rx_desc_out = 0;
	net_up(f, VQD_FEATURES_ALL);
	tx_post_frame(f, 9, 120, SPLIT_HDR);
	vqd_kick(&f->dev, 1);
	cr_assert_eq(dg_read(f->peer, buf, sizeof(buf), 5000), 120, "no frame after the reset");
	cr_assert(frame_is(9, buf, 120));
}

Test(virtio_net, tx_chains_too_short_or_too_long_are_dropped)
{
	struct netf f;
	uint8_t buf[256];
	uint64_t g;
	vmkit_net_stats s;
	uint32_t id, len;
	struct {
		uint32_t a, b; /* two readable descriptors of these lengths (b may be 0: one) */
	} bad[] = {
		{ 5, 0 },                    /* shorter than the header */
		{ HDR, 0 },                  /* a header, no frame */
		{ HDR + 13, 0 },             /* less than an Ethernet header */
		{ HDR, MAX_FRAME + 1 },      /* longer than any frame */
		{ 0x80000000u, 0x7ffffff0u },/* huge (beyond memory: the engine refuses) */
	};

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	g = vqd_alloc(&f.m, HDR + MAX_FRAME + 1, 16);
	for (unsigned i = 0; i < 4; i++) {
		struct vqd_buf b[2] = { { g, bad[i].a, false }, { g + bad[i].a, bad[i].b, false } };

		vqd_publish(&f.txq, (uint16_t)vqd_add_chain(&f.txq, b, bad[i].b ? 2 : 1));
	}
	/* and one good frame after them, with a writable descriptor too */
	tx_post_frame(&f, 1, 14, SPLIT_ODD);
	vqd_kick(&f.dev, 1);
	cr_assert_eq(dg_read(f.peer, buf, sizeof(buf), 5000), 14);
	cr_assert(frame_is(1, buf, 14));
	cr_assert(LT_WAIT(vqd_used_pending(&f.txq) == 5, 5000));
	for (unsigned i = 0; i < 5; i++) {
		cr_assert(vqd_get_used(&f.txq, &id, &len));
		cr_assert_eq(len, 0);
	}
	s = stats(&f);
	cr_assert_eq(s.tx_dropped, 4);
	cr_assert_eq(s.tx_frames, 1);
	cr_assert_eq(dg_read(f.peer, buf, sizeof(buf), 50), -1, "a bad chain reached the backend");
	cr_assert(vqd_status_live(vqd_status(&f.dev)));
	/* a length beyond guest memory: a malformed chain */
	{
		struct vqd_buf b[2] = { { 0x1000, bad[4].a, false }, { 0x2000, bad[4].b, false } };

		vqd_publish(&f.txq, (uint16_t)vqd_add_chain(&f.txq, b, 2));
	}
	vqd_kick(&f.dev, 1);
	cr_assert(LT_WAIT(vqd_status(&f.dev) & VIRTIO_STATUS_NEEDS_RESET, 5000));
	recovers(&f);
	net_down(&f);
}

Test(virtio_net, rx_chain_without_writable_buffers_needs_reset)
{
	struct netf f;
	uint64_t g;

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	g = vqd_alloc(&f.m, 2048, 16);
	vqd_publish(&f.rxq, (uint16_t)vqd_add_chain(&f.rxq, &(struct vqd_buf){ g, 2048, false }, 1));
	vqd_kick(&f.dev, 0);
	peer_write(&f, false, 1, 100);
	cr_assert(LT_WAIT(vqd_status(&f.dev) & VIRTIO_STATUS_NEEDS_RESET, 5000),
		  "a readable-only receive chain was accepted");
	cr_assert_eq(vqd_used_pending(&f.rxq), 0);
	recovers(&f);
	cr_assert_eq(STAT(&f, rx_dropped), 1, "the frame held at the reset is counted");
	net_down(&f);
}

Test(virtio_net, rx_mergeable_first_buffer_smaller_than_the_header_needs_reset)
{
	struct netf f;

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	rx_post(&f, 1, 8);
	peer_write(&f, false, 1, 100);
	cr_assert(LT_WAIT(vqd_status(&f.dev) & VIRTIO_STATUS_NEEDS_RESET, 5000));
	recovers(&f);
	net_down(&f);
}

Test(virtio_net, avail_index_overflow_needs_reset)
{
	struct netf f;

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	vqd_set_avail_idx(&f.txq, (uint16_t)(f.txq.avail_idx + QSIZE + 1));
	vqd_kick(&f.dev, 1);
	cr_assert(LT_WAIT(vqd_status(&f.dev) & VIRTIO_STATUS_NEEDS_RESET, 5000));
	recovers(&f);
	/* the receive side too, with a head index beyond the queue */
	vqd_set_avail_ring(&f.rxq, f.rxq.avail_idx, 0xffff);
	vqd_set_avail_idx(&f.rxq, (uint16_t)(f.rxq.avail_idx + 1));
	vqd_kick(&f.dev, 0);
	peer_write(&f, false, 1, 100);
	cr_assert(LT_WAIT(vqd_status(&f.dev) & VIRTIO_STATUS_NEEDS_RESET, 5000));
	recovers(&f);
	net_down(&f);
}

Test(virtio_net, reset_while_waiting_drops_the_held_frame_only)
{
	struct netf f;
	struct rx_frame *fr = malloc(sizeof(*fr));

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	net_up(&f, VQD_FEATURES_ALL);
	peer_write(&f, false, 1, 100);
	peer_write(&f, false, 2, 100);
	cr_assert(LT_WAIT(STAT(&f, rx_no_buffer) > 0, 5000));
	vqd_write_status(&f.dev, 0);
	vqd_queue_init_at(&f.rxq, &f.m, QSIZE, f.rxq.desc, f.rxq.avail, f.rxq.used);
	vqd_queue_init_at(&f.txq, &f.m, QSIZE, f.txq.desc, f.txq.avail, f.txq.used);
	f.rx_desc_out = 0;
	net_up(&f, VQD_FEATURES_ALL);
	rx_post(&f, 4, 1526);
	/* frame 1 was held by the device for the old driver; frame 2 waited in
	 * the socket and reaches the new one */
	cr_assert(rx_frame(&f, fr, 5000));
	cr_assert(frame_is(2, fr->data, 100));
	cr_assert_eq(STAT(&f, rx_dropped), 1);
	net_down(&f);
	free(fr);
}

/* ============================================================================================= */
/* save / restore                                                                                     */

static void save_core(struct netf *f, uint8_t **b, size_t *n)
{
	cr_assert_eq(virtio_dev_save(&f->dev, b, n), 0, "%s", vmkit_last_error());
}

Test(virtio_net, save_restore_round_trip)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };
	vmkit_net_config cfg;
	struct netf a, b;
	struct rx_frame *fr = malloc(sizeof(*fr));
	uint8_t *blob_a, *blob_b, m[6], buf[256];
	size_t la, lb;

	cfg_init(&cfg, VMKIT_NET_DGRAM, -1);
	memcpy(cfg.mac, mac, 6);
	cfg.mac_set = true;
	cfg.tx = (vmkit_rate_limit){ 1000000, 0, 5000, 50 };
	cfg.rx = (vmkit_rate_limit){ 0, 0, 7000, 0 };
	net_new_pair(&a, VMKIT_NET_DGRAM, &cfg);
	net_up(&a, vqd_device_features(&a.dev) & ~F_MRG_RXBUF);
	save_core(&a, &blob_a, &la);

	net_new_pair(&b, VMKIT_NET_DGRAM, NULL); /* another MAC, no limits */
	cr_assert_eq(virtio_dev_restore(&b.dev, blob_a, la), 0, "%s", vmkit_last_error());
	usleep(50 * 1000); /* whatever the loop does next, it does without a core */
	config_read(&b, 0, m, 6);
	cr_assert_eq(memcmp(m, mac, 6), 0, "the MAC came back");
	save_core(&b, &blob_b, &lb);
	cr_assert_eq(lb, la);
	cr_assert_eq(memcmp(blob_a, blob_b, la), 0, "the restored device saves the same state");
	/* it runs, on b's own socket: receive buffers the driver had posted
	 * (never notified) are used once the device hears from its core,
	 * here by a control call */
	b.txq = a.txq;
	b.txq.m = &b.m;
	b.rxq = a.rxq;
	b.rxq.m = &b.m;
	rx_post_nokick(&b, 4, 1526);
	cr_assert_eq(STAT(&b, rx_frames), 0);
	peer_write(&b, false, 3, 80);
	cr_assert(rx_frame(&b, fr, 5000), "the restored device does not receive");
	cr_assert(frame_is(3, fr->data, 80));
	tx_post_frame(&b, 4, 90, SPLIT_HDR);
	vqd_kick(&b.dev, 1);
	cr_assert_eq(dg_read(b.peer, buf, sizeof(buf), 5000), 90);
	cr_assert(frame_is(4, buf, 90));
	free(fr);
	free(blob_a);
	free(blob_b);
	net_down(&a);
	net_down(&b);
}

/* A device blob like net_save's, with the fields given. */
struct vnet_fields {
	char tag[5];
	uint32_t version;
	uint8_t kind, mac_len;
	uint8_t mac[8];
	uint64_t offered;
	uint8_t live;
	uint64_t features;
	uint32_t tun;
	bool extra;
};

static size_t craft(const struct vnet_fields *v, uint8_t *out, size_t cap)
{
	struct dev_state_writer *w = malloc(sizeof(*w));
	struct dev_state st;
	size_t len;

	cr_assert_not_null(w);
	dev_state_begin(w, v->tag);
	dev_state_put_u8(w, v->kind);
	dev_state_put_u8(w, v->mac_len);
	dev_state_put_bytes(w, v->mac, v->mac_len);
	dev_state_put_u64(w, v->offered);
	dev_state_put_u8(w, v->live);
	dev_state_put_u64(w, v->features);
	dev_state_put_u32(w, v->tun);
	for (unsigned i = 0; i < 8; i++)
		dev_state_put_u64(w, 0);
	if (v->extra)
		dev_state_put_u8(w, 0);
	cr_assert_eq(dev_state_finish(w, v->version, &st), 0);
	cr_assert_leq(st.len, cap);
	memcpy(out, st.data, st.len);
	len = st.len;
	dev_state_free(&st);
	free(w);
	return len;
}

Test(virtio_net, corrupted_blobs_are_refused)
{
	struct netf f;
	uint8_t blob[512], bad[512], before[6], after[6];
	long len;
	uint64_t offered;
	struct vnet_fields good;

	net_new_pair(&f, VMKIT_NET_DGRAM, NULL);
	offered = f.ops->features;
	len = f.ops->save(f.opaque, blob, sizeof(blob));
	cr_assert_gt(len, 0);
	cr_assert_leq(len, (long)sizeof(blob));
	config_read(&f, 0, before, 6);
	/* its own blob goes back */
	cr_assert_eq(f.ops->restore(f.opaque, blob, (size_t)len), 0, "%s", vmkit_last_error());
	/* truncated, grown, a flipped bit, another version */
	cr_assert_eq(f.ops->restore(f.opaque, blob, (size_t)len - 1), -EINVAL);
	cr_assert_eq(f.ops->restore(f.opaque, blob, 10), -EINVAL);
	cr_assert_eq(f.ops->restore(f.opaque, NULL, 0), -EINVAL);
	memcpy(bad, blob, (size_t)len);
	bad[len] = 0;
	cr_assert_eq(f.ops->restore(f.opaque, bad, (size_t)len + 1), -EINVAL);
	bad[len - 3] ^= 0x10;
	cr_assert_eq(f.ops->restore(f.opaque, bad, (size_t)len), -EINVAL, "checksum");
	memcpy(bad, blob, (size_t)len);
	bad[4] = 9;
	cr_assert_eq(f.ops->restore(f.opaque, bad, (size_t)len), -EINVAL, "version");

	/* well-formed blobs with bad contents */
	good = (struct vnet_fields){ "VNET", 1, VMKIT_NET_DGRAM, 6, { 0x52, 0x54, 0, 1, 2, 3 },
				     offered, 1, offered | F_VERSION_1, 0, false };
	cr_assert_eq(f.ops->restore(f.opaque, bad, craft(&good, bad, sizeof(bad))), 0, "%s",
		     vmkit_last_error());
	{
		struct vnet_fields v[] = { good, good, good, good, good, good, good, good, good, good,
					   good };

		memcpy(v[0].tag, "VRNG", 4);
		v[1].version = 2;
		v[2].kind = VMKIT_NET_STREAM;
		v[3].mac_len = 5;
		v[4].mac_len = 8;
		v[5].mac[0] = 0x01; /* multicast */
		memset(v[6].mac, 0, 6);
		v[7].offered = offered | F_CSUM;
		v[8].live = 2;
		v[9].features = offered; /* live without VERSION_1 */
		v[10].extra = true;
		for (unsigned i = 0; i < ARRAY_SIZE(v); i++) {
			size_t n = craft(&v[i], bad, sizeof(bad));

			cr_assert_eq(f.ops->restore(f.opaque, bad, n), -EINVAL, "blob %u accepted", i);
			cr_assert_eq(strchr(vmkit_last_error(), '\n'), NULL);
		}
		v[0] = good;
		v[0].live = 0; /* negotiated features without a driver */
		cr_assert_eq(f.ops->restore(f.opaque, bad, craft(&v[0], bad, sizeof(bad))), -EINVAL);
		v[0].features = offered | F_VERSION_1 | (1ull << 40); /* not offered */
		v[0].live = 1;
		cr_assert_eq(f.ops->restore(f.opaque, bad, craft(&v[0], bad, sizeof(bad))), -EINVAL);
		v[0] = good;
		v[0].tun = 1; /* tap offloads on a datagram socket */
		cr_assert_eq(f.ops->restore(f.opaque, bad, craft(&v[0], bad, sizeof(bad))), -EINVAL);
	}
	/* the refused blobs left the device as the last good one made it */
	cr_assert_eq(f.ops->restore(f.opaque, blob, (size_t)len), 0);
	config_read(&f, 0, after, 6);
	cr_assert_eq(memcmp(before, after, 6), 0);
	net_down(&f);
}

/* ============================================================================================= */
/* tap, in a network namespace of its own (a child process)                                          */

#define CHILD_SKIP 77

static int report_fd = -1;

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (!(cond)) {                                            \
			dprintf(report_fd, "line %d: ", __LINE__);        \
			dprintf(report_fd, __VA_ARGS__);                  \
			_exit(1);                                         \
		}                                                         \
	} while (0)

static void child_skip(const char *why)
{
	dprintf(report_fd, "%s", why);
	_exit(CHILD_SKIP);
}

/* Run @body in a child process inside a new network namespace; skip
 * when there is no /dev/net/tun or no right to make a namespace or tap. */
static void in_netns(void (*body)(void))
{
	char msg[512] = "";
	int p[2], st;
	ssize_t n;
	pid_t pid;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		report_fd = p[1];
		close(p[0]);
		if (access("/dev/net/tun", R_OK | W_OK) < 0) {
			dprintf(report_fd, "/dev/net/tun: %s", strerror(errno));
			_exit(CHILD_SKIP);
		}
		if (unshare(CLONE_NEWNET) < 0) {
			dprintf(report_fd, "unshare(CLONE_NEWNET): %s (needs CAP_SYS_ADMIN)",
				strerror(errno));
			_exit(CHILD_SKIP);
		}
		body();
		_exit(0);
	}
	close(p[1]);
	n = read(p[0], msg, sizeof(msg) - 1);
	msg[n > 0 ? n : 0] = 0;
	close(p[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == CHILD_SKIP)
		cr_skip_test("tap test skipped: %s", msg);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tap test failed (status 0x%x): %s", st,
		  msg);
}

static int if_up(const char *name)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ret = ioctl(s, SIOCGIFFLAGS, &ifr);
	ifr.ifr_flags |= IFF_UP | IFF_NOARP;
	if (ret == 0)
		ret = ioctl(s, SIOCSIFFLAGS, &ifr);
	close(s);
	return ret;
}

/* The tap's ethtool view of what it may hand us: checksum offload on? */
static int if_tx_csum(const char *name)
{
	struct ethtool_value ev = { .cmd = ETHTOOL_GTXCSUM };
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_data = (void *)&ev;
	ret = ioctl(s, SIOCETHTOOL, &ifr);
	close(s);
	return ret < 0 ? -1 : (int)ev.data;
}

/* A packet socket on @name for the test ethertype only. */
static int packet_socket(const char *name)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE_TEST) };
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETHERTYPE_TEST));

	CHECK(s >= 0, "AF_PACKET: %s", strerror(errno));
	sll.sll_ifindex = (int)if_nametoindex(name);
	CHECK(sll.sll_ifindex > 0, "no interface %s", name);
	CHECK(bind(s, (struct sockaddr *)&sll, sizeof(sll)) == 0, "bind: %s", strerror(errno));
	return s;
}

/* The next frame the tap handed up to the stack (not one we sent). */
static ssize_t packet_read(int s, uint8_t *buf, size_t cap, int ms)
{
	double end = lt_now() + ms / 1000.0;

	while (lt_now() < end) {
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t r;

		if (!wait_readable(s, 10))
			continue;
		r = recvfrom(s, buf, cap, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (r >= 0 && from.sll_pkttype != PACKET_OUTGOING)
			return r;
	}
	return -1;
}

/* The child's own copy of the fixture (Criterion's asserts stay in the
 * parent's helpers, which only fail on a broken test harness). */
static struct netf tf;

static void tap_frame_out(struct netf *f, int ps, unsigned i, size_t len, const uint8_t *hdr,
			  bool expect)
{
	uint8_t *fr = malloc(len), *buf = malloc(MAX_FRAME);
	ssize_t got;

	frame_fill(i, fr, len);
	tx_post(f, hdr, fr, len, SPLIT_HDR);
	vqd_kick(&f->dev, 1);
	got = packet_read(ps, buf, MAX_FRAME, expect ? 5000 : 200);
	if (expect) {
		CHECK(got == (ssize_t)len, "frame %u: %zd bytes on the tap, expected %zu", i, got, len);
		CHECK(memcmp(buf, fr, len) == 0, "frame %u changed on its way", i);
	} else {
		CHECK(got < 0, "frame %u should have been refused", i);
	}
	CHECK(LT_WAIT((tx_reap(f), f->tx_done == f->tx_posted), 5000), "chain not returned");
	free(fr);
	free(buf);
}

/* Inject frame @i on the tap's stack side; the guest receives it. */
static void tap_frame_in(struct netf *f, int ps, unsigned i, size_t len)
{
	struct rx_frame *fr = malloc(sizeof(*fr));
	uint8_t *b = malloc(len);

	frame_fill(i, b, len);
	CHECK(send(ps, b, len, 0) == (ssize_t)len, "packet send: %s", strerror(errno));
	for (;;) {
		CHECK(rx_frame(f, fr, 5000), "frame %u did not reach the guest", i);
		if (f->rx_desc_out < 16)
			rx_post(f, 16, 1526);
		if (fr->len >= 14 && fr->data[12] == (ETHERTYPE_TEST >> 8) &&
		    fr->data[13] == (ETHERTYPE_TEST & 0xff))
			break; /* (anything else is the namespace's own traffic) */
	}
	CHECK(fr->len == len, "frame %u: %zu bytes in the guest, expected %zu", i, fr->len, len);
	CHECK(memcmp(fr->data, b, len) == 0, "frame %u changed on its way in", i);
	CHECK(fr->num_buffers == 1, "num_buffers %u", fr->num_buffers);
	CHECK((fr->hdr[0] & ~2u) == 0 && fr->hdr[1] == 0, "header flags 0x%x gso 0x%x", fr->hdr[0],
	      fr->hdr[1]);
	free(fr);
	free(b);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0) {
			/* best effort */
		}
		close(fd);
	}
}

static void tap_by_name_body(void)
{
	uint8_t hdr[HDR] = { 1, 0, 0, 0, 0, 0, 0x0f, 0x27, 6, 0, 0, 0 }; /* NEEDS_CSUM at 9999 */
	vmkit_net_config cfg;
	uint64_t feat;
	int ps, ret;

	/* quiet: no IPv6 chatter on the new interface */
	write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	cfg_init(&cfg, VMKIT_NET_TAP, -1);
	cfg.ifname = "vmknet0";
	ret = net_try_new(&tf, &cfg);
	if (ret == -EPERM || ret == -EACCES)
		child_skip(vmkit_last_error());
	CHECK(ret == 0, "%s", vmkit_last_error());
	feat = vqd_device_features(&tf.dev);
	CHECK((feat & (F_CSUM | F_GUEST_CSUM | F_HOST_TSO4 | F_HOST_TSO6 | F_HOST_ECN |
		       F_GUEST_TSO4 | F_GUEST_TSO6 | F_GUEST_ECN)) ==
		      (F_CSUM | F_GUEST_CSUM | F_HOST_TSO4 | F_HOST_TSO6 | F_HOST_ECN |
		       F_GUEST_TSO4 | F_GUEST_TSO6 | F_GUEST_ECN),
	      "tap offloads missing: 0x%llx", (unsigned long long)feat);
	CHECK(!(feat & F_HOST_UFO) == !(feat & F_GUEST_UFO), "UFO offered one way only");
	CHECK(if_up("vmknet0") == 0, "bringing vmknet0 up: %s", strerror(errno));
	ps = packet_socket("vmknet0");

	/* all offloads accepted: the tap is told, and the header reaches it */
	net_up(&tf, VQD_FEATURES_ALL);
	CHECK(if_tx_csum("vmknet0") == 1, "TUNSETOFFLOAD not applied (tx csum %d)",
	      if_tx_csum("vmknet0"));
	rx_post(&tf, 32, 1526);
	tap_frame_out(&tf, ps, 1, 200, NULL, true);
	tap_frame_out(&tf, ps, 2, 1514, NULL, true);
	/* a checksum request the kernel must refuse (start beyond the frame) */
	tap_frame_out(&tf, ps, 3, 100, hdr, false);
	CHECK(STAT(&tf, tx_dropped) == 1, "the bad header did not reach the tap");
	tap_frame_in(&tf, ps, 4, 100);
	tap_frame_in(&tf, ps, 5, 1514);

	/* no offloads accepted: the tap is told, and the same header is
	 * cleared before the tap sees it */
	vqd_write_status(&tf.dev, 0);
	vqd_queue_init_at(&tf.rxq, &tf.m, QSIZE, tf.rxq.desc, tf.rxq.avail, tf.rxq.used);
	vqd_queue_init_at(&tf.txq, &tf.m, QSIZE, tf.txq.desc, tf.txq.avail, tf.txq.used);
	tf.tx_posted = tf.tx_done = tf.tx_desc_out = tf.rx_desc_out = 0;
	net_up(&tf, F_VERSION_1 | F_MAC | F_STATUS | F_MRG_RXBUF);
	CHECK(if_tx_csum("vmknet0") == 0, "offloads left on for a guest without them");
	rx_post(&tf, 32, 1526);
	tap_frame_out(&tf, ps, 6, 100, hdr, true);
	CHECK(STAT(&tf, tx_dropped) == 1, "a sanitized header was refused");
	tap_frame_in(&tf, ps, 7, 300);
	close(ps);
	net_down(&tf);
}

Test(virtio_net, tap_by_name_offloads_and_frames_both_ways, .timeout = 60)
{
	in_netns(tap_by_name_body);
}

/* The embedder's own tap fd: with and without IFF_VNET_HDR. */
static void tap_fd_body(void)
{
	for (int vnet = 0; vnet < 2; vnet++) {
		const char *name = vnet ? "vmknet2" : "vmknet1";
		struct ifreq ifr;
		vmkit_net_config cfg;
		uint64_t feat;
		int fd, ps, ret;

		fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
		CHECK(fd >= 0, "/dev/net/tun: %s", strerror(errno));
		memset(&ifr, 0, sizeof(ifr));
		ifr.ifr_flags = (short)(IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
		if (ioctl(fd, TUNSETIFF, &ifr) < 0)
			child_skip("TUNSETIFF not permitted (CAP_NET_ADMIN)");
		cfg_init(&cfg, VMKIT_NET_TAP, fd);
		ret = net_try_new(&tf, &cfg);
		CHECK(ret == 0, "%s", vmkit_last_error());
		feat = vqd_device_features(&tf.dev);
		if (vnet)
			CHECK(feat & F_CSUM, "a vnet-header tap offers no offloads");
		else
			CHECK(!(feat & OFFLOAD_BITS), "a tap without vnet header offers offloads");
		CHECK(if_up(name) == 0, "bringing %s up: %s", name, strerror(errno));
		ps = packet_socket(name);
		net_up(&tf, VQD_FEATURES_ALL);
		rx_post(&tf, 32, 1526);
		tap_frame_out(&tf, ps, 10, 500, NULL, true);
		tap_frame_in(&tf, ps, 11, 600);
		close(ps);
		net_down(&tf);
		close(fd);
	}
}

Test(virtio_net, tap_fd_with_and_without_vnet_header, .timeout = 60)
{
	in_netns(tap_fd_body);
}

static void set_ipv4(const char *name, const char *addr)
{
	struct ifreq ifr;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, addr, &sin->sin_addr);
	CHECK(ioctl(s, SIOCSIFADDR, &ifr) == 0, "SIOCSIFADDR: %s", strerror(errno));
	inet_pton(AF_INET, "255.255.255.0", &sin->sin_addr);
	CHECK(ioctl(s, SIOCSIFNETMASK, &ifr) == 0, "SIOCSIFNETMASK: %s", strerror(errno));
	close(s);
}

/* A UDP datagram from the host's stack out through the tap. */
static void udp_send(const char *dst, uint16_t port, size_t len)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };
	uint8_t payload[1024] = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, dst, &to.sin_addr);
	CHECK(sendto(s, payload, len, 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)len,
	      "sendto: %s", strerror(errno));
	close(s);
}

/* The guest's next IPv4 UDP frame: its destination port. */
static uint16_t rx_udp(struct netf *f, struct rx_frame *fr)
{
	for (;;) {
		CHECK(rx_frame(f, fr, 5000), "no UDP frame reached the guest");
		if (f->rx_desc_out < 16)
			rx_post(f, 16, 1526);
		if (fr->len >= 14 + 20 + 8 && fr->data[12] == 0x08 && fr->data[13] == 0 &&
		    fr->data[14 + 9] == 17)
			return (uint16_t)(fr->data[14 + 20 + 2] << 8 | fr->data[14 + 20 + 3]);
	}
}

static void tap_rx_offload_body(void)
{
	static struct rx_frame fr;
	vmkit_net_config cfg;
	int ret;

	write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	cfg_init(&cfg, VMKIT_NET_TAP, -1);
	cfg.ifname = "vmknet3";
	ret = net_try_new(&tf, &cfg);
	if (ret == -EPERM || ret == -EACCES)
		child_skip(vmkit_last_error());
	CHECK(ret == 0, "%s", vmkit_last_error());
	set_ipv4("vmknet3", "10.9.0.1");
	CHECK(if_up("vmknet3") == 0, "bringing vmknet3 up: %s", strerror(errno));

	/* GUEST_CSUM accepted: the stack leaves the UDP checksum to the
	 * guest, and the header says where it goes */
	net_up(&tf, VQD_FEATURES_ALL);
	rx_post(&tf, 32, 1526);
	udp_send("10.9.0.2", 7777, 200);
	CHECK(rx_udp(&tf, &fr) == 7777, "wrong frame");
	CHECK(fr.hdr[0] & 1, "NEEDS_CSUM missing: flags 0x%x", fr.hdr[0]);
	CHECK((fr.hdr[6] | fr.hdr[7] << 8) == 34 && (fr.hdr[8] | fr.hdr[9] << 8) == 6,
	      "csum_start %u csum_offset %u", fr.hdr[6] | fr.hdr[7] << 8, fr.hdr[8] | fr.hdr[9] << 8);

	/* a frame queued in the tap for that driver, then a driver without
	 * GUEST_CSUM: the stale frame is dropped, never handed over with a
	 * request the new driver cannot honour; new frames come complete */
	vqd_write_status(&tf.dev, 0);
	udp_send("10.9.0.2", 7778, 200);
	usleep(50 * 1000);
	vqd_queue_init_at(&tf.rxq, &tf.m, QSIZE, tf.rxq.desc, tf.rxq.avail, tf.rxq.used);
	vqd_queue_init_at(&tf.txq, &tf.m, QSIZE, tf.txq.desc, tf.txq.avail, tf.txq.used);
	tf.tx_posted = tf.tx_done = tf.tx_desc_out = tf.rx_desc_out = 0;
	net_up(&tf, F_VERSION_1 | F_MAC | F_STATUS | F_MRG_RXBUF);
	rx_post(&tf, 32, 1526);
	CHECK(LT_WAIT(STAT(&tf, rx_dropped) == 1, 5000), "the stale frame was not dropped (%llu)",
	      (unsigned long long)STAT(&tf, rx_dropped));
	udp_send("10.9.0.2", 7779, 200);
	CHECK(rx_udp(&tf, &fr) == 7779, "wrong frame");
	CHECK(fr.hdr[0] == 0, "flags 0x%x for a guest without offloads", fr.hdr[0]);
	net_down(&tf);
}

Test(virtio_net, tap_rx_checksum_offload_and_stale_offloaded_frames, .timeout = 60)
{
	in_netns(tap_rx_offload_body);
}
