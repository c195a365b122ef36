/* SPDX-License-Identifier: MIT */
/* virtio-vsock over the unit-test driver: the test plays the guest's
 * vsock driver on fake guest memory (its own small credit, so the
 * device's flow control is exercised), the I/O loop runs on a thread, and
 * the host side is real UNIX sockets in a temporary directory. Covered:
 * config space and features, create errors, host- and guest-initiated
 * connections with bulk data both ways, several connections at once,
 * shutdown in either direction, credit requests, hostile packets (the
 * device keeps serving a good connection), reset, save/restore. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio/devices.h"
#include "loopthread.h"
#include "vqdriver.h"

#define GUEST_CID 3u
#define HOST_CID 2u
#define HDR 44u
#define TYPE_STREAM 1
#define OP_REQUEST 1
#define OP_RESPONSE 2
#define OP_RST 3
#define OP_SHUTDOWN 4
#define OP_RW 5
#define OP_CREDIT_UPDATE 6
#define OP_CREDIT_REQUEST 7
#define SHUT_RCV 1u
#define SHUT_SEND 2u
#define DEV_BUF_ALLOC (256u * 1024u) /* what the device advertises */
#define FIRST_HOST_PORT (1u << 30)

#define QSZ 256
#define NRX 128
#define RX_PAYLOAD 4096u
#define RXLEN (HDR + RX_PAYLOAD)
#define NTX 64
#define TX_PAYLOAD (64u * 1024u)
#define TXLEN (HDR + TX_PAYLOAD)
#define NEV 4
/* The test guest's own buf_alloc: small, and no multiple of the receive
 * buffer size, so that the device must cut a packet short to respect it. */
#define GBUF 60000u

struct __attribute__((packed)) vhdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};
_Static_assert(sizeof(struct vhdr) == HDR, "vsock header is 44 bytes");

struct vs {
	struct vqd_mem m;
	struct vqd_queue q[3];
	struct vqd_transport t;
	struct vmkit_virtio_dev dev;
	const vmkit_virtio_ops *ops;
	void *opaque;
	struct loop_thread lt;
	char dir[64];
	char path[108];
	uint64_t rx_pool[NRX];
	uint64_t rx_gpa[QSZ];   /* by head: the buffer posted there */
	uint32_t rx_len[QSZ];
	uint64_t tx_pool[NTX];
	bool tx_busy[NTX];
	int tx_slot[QSZ];       /* by head: the pool slot, -1 for others */
	uint64_t ev_gpa[QSZ];
	unsigned n_sent;
};

/* ---- set-up ----------------------------------------------------------------------- */

static void make_dir(struct vs *s)
{
	snprintf(s->dir, sizeof(s->dir), "/tmp/vmkit-vsock-XXXXXX");
	cr_assert_not_null(mkdtemp(s->dir));
	snprintf(s->path, sizeof(s->path), "%s/v.sock", s->dir);
}

static void remove_dir(const char *dir)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

static void rx_post(struct vs *s, uint64_t gpa, uint32_t len)
{
	int head = vqd_add_chain(&s->q[0], &(struct vqd_buf){ gpa, len, true }, 1);

	s->rx_gpa[head] = gpa;
	s->rx_len[head] = len;
	vqd_publish(&s->q[0], (uint16_t)head);
}

static void ev_post(struct vs *s, uint64_t gpa, uint32_t len)
{
	int head = vqd_add_chain(&s->q[2], &(struct vqd_buf){ gpa, len, true }, 1);

	s->ev_gpa[head] = gpa;
	vqd_publish(&s->q[2], (uint16_t)head);
}

/* The driver's part: queues, handshake, receive and event buffers. */
static void driver_up(struct vs *s)
{
	struct vqd_queue *qs[3] = { &s->q[0], &s->q[1], &s->q[2] };

	for (unsigned i = 0; i < 3; i++)
		vqd_queue_init(&s->q[i], &s->m, QSZ);
	for (unsigned i = 0; i < QSZ; i++)
		s->tx_slot[i] = -1;
	memset(s->tx_busy, 0, sizeof(s->tx_busy));
	cr_assert(vqd_status_live(vqd_handshake(&s->dev, VQD_FEATURES_ALL, qs, 3)));
	for (unsigned i = 0; i < NRX; i++)
		rx_post(s, s->rx_pool[i], RXLEN);
	for (unsigned i = 0; i < NEV; i++)
		ev_post(s, vqd_alloc(&s->m, 8, 8), 8);
	vqd_kick(&s->dev, 0);
}

static void vs_create(struct vs *s)
{
	vmkit_vsock_config cfg = VMKIT_VSOCK_CONFIG_INIT;

	cfg.guest_cid = GUEST_CID;
	cfg.uds_path = s->path;
	cr_assert_eq(virtio_vsock_create(&cfg, s->lt.loop, &s->ops, &s->opaque), 0, "%s",
		     vmkit_last_error());
	cr_assert_eq(virtio_dev_init(&s->dev, s->ops, s->opaque, &s->m.gm, &s->t.tr, &s->t, "vsock0"),
		     0);
}

static void vs_up(struct vs *s)
{
	memset(s, 0, sizeof(*s));
	make_dir(s);
	loop_thread_new(&s->lt);
	vqd_mem_init(&s->m, 0, 24u << 20);
	vqd_transport_init(&s->t);
	for (unsigned i = 0; i < NRX; i++)
		s->rx_pool[i] = vqd_alloc(&s->m, RXLEN, 16);
	for (unsigned i = 0; i < NTX; i++)
		s->tx_pool[i] = vqd_alloc(&s->m, TXLEN, 16);
	vs_create(s);
	loop_thread_start(&s->lt);
	driver_up(s);
}

static void vs_down(struct vs *s)
{
	struct stat st;

	cr_assert(vqd_status_live(vqd_status(&s->dev)), "the device needs a reset");
	loop_thread_stop(&s->lt);
	virtio_dev_destroy(&s->dev);
	cr_assert_neq(stat(s->path, &st), 0, "the socket file outlived the device");
	loop_thread_free(&s->lt);
	vqd_mem_destroy(&s->m);
	remove_dir(s->dir);
}

/* ---- the guest's transmit side ---------------------------------------------------- */

static void tx_reclaim(struct vs *s)
{
	uint32_t id, len;

	while (vqd_get_used(&s->q[1], &id, &len)) {
		cr_assert_lt(id, QSZ);
		if (s->tx_slot[id] >= 0)
			s->tx_busy[s->tx_slot[id]] = false;
		s->tx_slot[id] = -1;
	}
}

static int tx_slot(struct vs *s)
{
	for (int tries = 0; tries < 5000; tries++) {
		tx_reclaim(s);
		for (int i = 0; i < NTX; i++)
			if (!s->tx_busy[i])
				return i;
		usleep(1000);
	}
	cr_assert_fail("the device does not return transmit buffers");
	return -1;
}

/* Put @hdr_len bytes of header and @plen payload bytes on the transmit
 * queue as the guest driver would (header and payload in one or in two
 * descriptors, alternately) and notify. */
static void tx_raw(struct vs *s, const void *hdr, uint32_t hdr_len, const void *payload,
		   uint32_t plen)
{
	int slot = tx_slot(s), head;
	uint64_t g = s->tx_pool[slot];
	uint8_t *p = vqd_hva(&s->m, g, TXLEN);

	cr_assert_leq(hdr_len + plen, TXLEN);
	memcpy(p, hdr, hdr_len);
	if (plen)
		memcpy(p + hdr_len, payload, plen);
	if (plen && (s->n_sent++ & 1))
		head = vqd_add_chain(&s->q[1],
				     (struct vqd_buf[]){ { g, hdr_len, false },
							 { g + hdr_len, plen, false } },
				     2);
	else
		head = vqd_add_chain(&s->q[1], &(struct vqd_buf){ g, hdr_len + plen, false }, 1);
	s->tx_busy[slot] = true;
	s->tx_slot[head] = slot;
	vqd_publish(&s->q[1], (uint16_t)head);
	vqd_kick(&s->dev, 1);
	tx_reclaim(s);
}

static struct vhdr mkhdr(uint32_t sport, uint32_t dport, uint16_t op, uint32_t len)
{
	return (struct vhdr){ .src_cid = GUEST_CID, .dst_cid = HOST_CID, .src_port = sport,
			      .dst_port = dport, .len = len, .type = TYPE_STREAM, .op = op,
			      .buf_alloc = GBUF };
}

static void tx_pkt(struct vs *s, const struct vhdr *h, const void *payload, uint32_t plen)
{
	tx_raw(s, h, HDR, payload, plen);
}

static void tx_op(struct vs *s, uint32_t sport, uint32_t dport, uint16_t op, uint32_t flags,
		  uint32_t fwd_cnt)
{
	struct vhdr h = mkhdr(sport, dport, op, 0);

	h.flags = flags;
	h.fwd_cnt = fwd_cnt;
	tx_pkt(s, &h, NULL, 0);
}

/* ---- the guest's receive side ----------------------------------------------------- */

/* The next packet the device sent, within @ms: header, and payload into
 * @payload (RX_PAYLOAD bytes). The buffer goes back on the queue. */
static bool rx_next(struct vs *s, struct vhdr *h, void *payload, int ms)
{
	for (;;) {
		uint32_t id, len;
		uint64_t g;

		if (!LT_WAIT(vqd_used_pending(&s->q[0]) > 0, ms))
			return false;
		cr_assert(vqd_get_used(&s->q[0], &id, &len));
		cr_assert_lt(id, QSZ);
		g = s->rx_gpa[id];
		if (s->rx_len[id] < HDR) {
			cr_assert_eq(len, 0, "%u bytes written into a %u-byte buffer", len, s->rx_len[id]);
			continue; /* a buffer too small for a packet comes back empty */
		}
		cr_assert_geq(len, HDR, "a used receive buffer of %u bytes", len);
		memcpy(h, vqd_hva(&s->m, g, HDR), HDR);
		cr_assert_eq(len, HDR + h->len, "used length %u for a packet of %u bytes", len, h->len);
		cr_assert_leq(h->len, s->rx_len[id] - HDR);
		cr_assert_eq(h->src_cid, HOST_CID);
		cr_assert_eq(h->dst_cid, GUEST_CID);
		cr_assert(h->type == TYPE_STREAM || h->op == OP_RST, "type %u", h->type);
		cr_assert_eq(h->op == OP_RW || h->len == 0, true, "op %u with a payload", h->op);
		if (h->len && payload)
			memcpy(payload, vqd_hva(&s->m, g + HDR, h->len), h->len);
		rx_post(s, g, s->rx_len[id]);
		vqd_kick(&s->dev, 0);
		return true;
	}
}

/* The next packet other than a credit update, which must be @op for the
 * guest port @gport. */
static struct vhdr rx_expect(struct vs *s, uint16_t op, uint32_t gport, void *payload)
{
	struct vhdr h;

	for (;;) {
		cr_assert(rx_next(s, &h, payload, 5000), "no packet (waiting for op %u to port %u)", op,
			  gport);
		if (h.op == OP_CREDIT_UPDATE && op != OP_CREDIT_UPDATE)
			continue;
		cr_assert_eq(h.op, op, "op %u to port %u, expected op %u", h.op, h.dst_port, op);
		cr_assert_eq(h.dst_port, gport, "op %u to port %u, expected port %u", op, h.dst_port,
			     gport);
		return h;
	}
}

/* Nothing arrives within @ms. */
static void rx_none(struct vs *s, int ms)
{
	usleep((useconds_t)ms * 1000);
	cr_assert_eq(vqd_used_pending(&s->q[0]), 0, "an unexpected packet");
}

/* ---- host side -------------------------------------------------------------------- */

static int unix_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect %s: %s", path,
		     strerror(errno));
	return fd;
}

static int unix_listen_backlog(const char *path, int backlog)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fd, backlog), 0);
	return fd;
}

static int unix_listen(const char *path) { return unix_listen_backlog(path, 16); }

static int accept_for(int lfd, int ms)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	cr_assert_eq(poll(&p, 1, ms), 1, "no connection from the device");
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static void write_all(int fd, const void *buf, size_t n)
{
	cr_assert_eq(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Read exactly @n bytes within @ms. */
static size_t read_for(int fd, void *buf, size_t n, int ms)
{
	size_t got = 0;
	double end = lt_now() + ms / 1000.0;

	while (got < n && lt_now() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 10) <= 0)
			continue;
		r = recv(fd, (uint8_t *)buf + got, n - got, MSG_DONTWAIT);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

/* The socket reaches end of file (or a reset) within @ms, with nothing
 * more to read first. */
static bool eof_within(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&p, 1, ms) != 1)
		return false;
	return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static void read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		cr_assert_eq(read_for(fd, buf + n, 1, 5000), 1, "no line from the device");
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = 0;
}

/* ---- connections ------------------------------------------------------------------ */

struct gconn {
	uint32_t gport, hport;
	/* guest receive side */
	uint32_t fwd_cnt;
	uint64_t held, max_held, rx_off;
	uint32_t rx_seed;
	/* the device's credit */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	uint32_t shut_flags;
	bool rst;
	unsigned credit_updates;
};

static uint8_t pat(uint32_t seed, uint64_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ull + seed;

	x ^= x >> 29;
	return (uint8_t)(x ^ x >> 11);
}

static void fill(uint8_t *b, size_t n, uint32_t seed, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		b[i] = pat(seed, off + i);
}

static void check(const uint8_t *b, size_t n, uint32_t seed, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != pat(seed, off + i))
			cr_assert_fail("byte %llu of stream %u is wrong", (unsigned long long)(off + i),
				       seed);
}

static uint32_t gc_credit(const struct gconn *g)
{
	uint32_t used = g->tx_cnt - g->peer_fwd_cnt;

	return used >= g->peer_buf_alloc ? 0 : g->peer_buf_alloc - used;
}

static void gc_hdr(struct gconn *g, const struct vhdr *h)
{
	g->peer_buf_alloc = h->buf_alloc;
	g->peer_fwd_cnt = h->fwd_cnt;
}

static void gc_send(struct vs *s, struct gconn *g, uint16_t op, uint32_t flags, const void *data,
		    uint32_t len)
{
	struct vhdr h = mkhdr(g->gport, g->hport, op, len);

	h.flags = flags;
	h.fwd_cnt = g->fwd_cnt;
	if (op == OP_RW)
		g->tx_cnt += len;
	tx_pkt(s, &h, data, len);
}

/* The host program connects and asks for guest port @port; the guest
 * accepts. Returns the host socket (its "OK" line read). */
static int host_initiated(struct vs *s, struct gconn *g, uint32_t port, uint32_t seed)
{
	char line[64], want[64];
	int fd = unix_connect(s->path);
	struct vhdr h;

	snprintf(line, sizeof(line), "CONNECT %u\n", port);
	write_all(fd, line, strlen(line));
	h = rx_expect(s, OP_REQUEST, port, NULL);
	cr_assert_geq(h.src_port, FIRST_HOST_PORT, "host port %u", h.src_port);
	cr_assert_eq(h.buf_alloc, DEV_BUF_ALLOC);
	cr_assert_eq(h.fwd_cnt, 0);
	memset(g, 0, sizeof(*g));
	g->gport = port;
	g->hport = h.src_port;
	g->rx_seed = seed;
	gc_hdr(g, &h);
	gc_send(s, g, OP_RESPONSE, 0, NULL, 0);
	read_line(fd, line, sizeof(line));
	snprintf(want, sizeof(want), "OK %u\n", g->hport);
	cr_assert_str_eq(line, want);
	return fd;
}

/* The guest connects from @gport to host port @port, where @lfd listens
 * (at <uds_path>_<port>). Returns the accepted host socket. */
static int guest_initiated(struct vs *s, struct gconn *g, int lfd, uint32_t port, uint32_t gport,
			   uint32_t seed)
{
	struct vhdr h;
	int fd;

	memset(g, 0, sizeof(*g));
	g->gport = gport;
	g->hport = port;
	g->rx_seed = seed;
	gc_send(s, g, OP_REQUEST, 0, NULL, 0);
	h = rx_expect(s, OP_RESPONSE, gport, NULL);
	cr_assert_eq(h.src_port, port);
	gc_hdr(g, &h);
	fd = accept_for(lfd, 5000);
	cr_assert_geq(fd, 0);
	return fd;
}

static void port_path(const struct vs *s, uint32_t port, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s_%u", s->path, port);
}

/* The guest consumes what it holds and tells the device, as Linux does
 * once half of its buffer has been freed. */
static void gc_consume(struct vs *s, struct gconn *g)
{
	if (!g->held)
		return;
	g->fwd_cnt += (uint32_t)g->held;
	g->held = 0;
	gc_send(s, g, OP_CREDIT_UPDATE, 0, NULL, 0);
}

/* Route the packets that arrived (waiting up to @ms for the first) to
 * their connections. */
static void dispatch(struct vs *s, struct gconn **gs, unsigned n, int ms)
{
	static uint8_t buf[RX_PAYLOAD];
	struct vhdr h;

	while (rx_next(s, &h, buf, ms)) {
		struct gconn *g = NULL;

		ms = 0;
		for (unsigned i = 0; i < n; i++)
			if (gs[i]->gport == h.dst_port && gs[i]->hport == h.src_port)
				g = gs[i];
		cr_assert_not_null(g, "op %u for unknown connection %u:%u", h.op, h.src_port,
				   h.dst_port);
		gc_hdr(g, &h);
		switch (h.op) {
		case OP_RW:
			check(buf, h.len, g->rx_seed, g->rx_off);
			g->rx_off += h.len;
			g->held += h.len;
			if (g->held > g->max_held)
				g->max_held = g->held;
			cr_assert_leq(g->held, GBUF, "the device sent %llu bytes on a %u-byte credit",
				      (unsigned long long)g->held, GBUF);
			break;
		case OP_CREDIT_UPDATE:
			g->credit_updates++;
			break;
		case OP_SHUTDOWN:
			g->shut_flags |= h.flags;
			break;
		case OP_RST:
			g->rst = true;
			break;
		default:
			cr_assert_fail("unexpected op %u", h.op);
		}
	}
}

struct xfer {
	struct gconn g;
	int fd;
	uint64_t h2g, g2h;         /* bytes to move each way */
	uint64_t h_written, h_read, g_sent;
	uint32_t g2h_seed;
};

/* Move the bytes over every connection at once, both ways: the host
 * program writes as fast as the socket takes and reads only every fourth
 * round; the guest holds what it receives until its whole credit is used
 * and sends in 32 KiB packets within the device's credit. */
static void run_xfers(struct vs *s, struct xfer *x, unsigned n)
{
	uint8_t *buf = malloc(TX_PAYLOAD);
	struct gconn *gs[16];
	double end = lt_now() + 60;
	unsigned round = 0;

	cr_assert_leq(n, 16);
	for (unsigned i = 0; i < n; i++) {
		gs[i] = &x[i].g;
		cr_assert_eq(fcntl(x[i].fd, F_SETFL, O_NONBLOCK), 0);
	}
	for (;;) {
		bool done = true;

		for (unsigned i = 0; i < n; i++) {
			struct xfer *t = &x[i];
			uint32_t credit;
			ssize_t r;

			if (t->h_written < t->h2g) {
				size_t k = t->h2g - t->h_written < TX_PAYLOAD ? t->h2g - t->h_written
									     : TX_PAYLOAD;

				fill(buf, k, t->g.rx_seed, t->h_written);
				r = send(t->fd, buf, k, MSG_DONTWAIT | MSG_NOSIGNAL);
				if (r > 0)
					t->h_written += (uint64_t)r;
			}
			if (round % 4 == 0 && (r = recv(t->fd, buf, TX_PAYLOAD, MSG_DONTWAIT)) > 0) {
				check(buf, (size_t)r, t->g2h_seed, t->h_read);
				t->h_read += (uint64_t)r;
			}
			if (t->g.held == GBUF || (t->g.rx_off == t->h2g && t->g.held))
				gc_consume(s, &t->g);
			credit = gc_credit(&t->g);
			if (t->g_sent < t->g2h && credit > 0) {
				uint64_t k = t->g2h - t->g_sent;

				if (k > credit)
					k = credit;
				if (k > 32768)
					k = 32768;
				fill(buf, (size_t)k, t->g2h_seed, t->g_sent);
				gc_send(s, &t->g, OP_RW, 0, buf, (uint32_t)k);
				t->g_sent += k;
			}
			if (t->h_read < t->g2h || t->g.rx_off < t->h2g)
				done = false;
		}
		if (done)
			break;
		dispatch(s, gs, n, 1);
		for (unsigned i = 0; i < n; i++)
			cr_assert_not(x[i].g.rst || x[i].g.shut_flags, "connection %u closed", i);
		cr_assert_lt(lt_now(), end,
			     "transfer stalled: host got %llu of %llu, guest %llu of %llu bytes",
			     (unsigned long long)x[0].h_read, (unsigned long long)x[0].g2h,
			     (unsigned long long)x[0].g.rx_off, (unsigned long long)x[0].h2g);
		round++;
	}
	for (unsigned i = 0; i < n; i++) {
		cr_assert_eq(x[i].h_read, x[i].g2h);
		cr_assert_eq(x[i].g.rx_off, x[i].h2g);
		/* The device filled the guest's credit and waited for more. */
		if (x[i].h2g >= GBUF)
			cr_assert_eq(x[i].g.max_held, GBUF);
	}
	free(buf);
}

/* ---- tests ------------------------------------------------------------------------ */

Test(virtio_vsock, config_and_features)
{
	struct vs s;
	uint64_t cid = 0, f;
	uint32_t hi = 1;

	vs_up(&s);
	cr_assert_eq(s.ops->device_id, VMKIT_VIRTIO_ID_VSOCK);
	cr_assert_eq(s.ops->num_queues, 3, "rx, tx, event");
	cr_assert_eq(s.ops->config_size, 8);
	vqd_lock(&s.dev);
	virtio_dev_config_read(&s.dev, 0, &cid, 8);
	virtio_dev_config_read(&s.dev, 4, &hi, 4);
	virtio_dev_config_write(&s.dev, 0, &(uint64_t){ 77 }, 8);
	vqd_unlock(&s.dev);
	cr_assert_eq(cid, GUEST_CID);
	cr_assert_eq(hi, 0);
	vqd_lock(&s.dev);
	virtio_dev_config_read(&s.dev, 0, &cid, 8);
	vqd_unlock(&s.dev);
	cr_assert_eq(cid, GUEST_CID, "the guest changed its CID");
	f = vqd_device_features(&s.dev);
	cr_assert(f & 1, "VIRTIO_VSOCK_F_STREAM not offered");
	cr_assert_not(f & 2, "VIRTIO_VSOCK_F_SEQPACKET offered");
	/* nothing is sent unasked, and no event without a restore */
	rx_none(&s, 50);
	cr_assert_eq(vqd_used_pending(&s.q[2]), 0);
	vs_down(&s);
}

Test(virtio_vsock, create_errors)
{
	struct loop_thread lt;
	vmkit_vsock_config cfg = VMKIT_VSOCK_CONFIG_INIT;
	const vmkit_virtio_ops *ops;
	void *opaque;
	char dir[64], path[200], buf[8];
	uint64_t bad_cids[] = { 0, 1, 2, 0xffffffffull, 1ull << 32, UINT64_MAX };
	struct stat st;
	size_t dl;
	int fd;

	snprintf(dir, sizeof(dir), "/tmp/vmkit-vsock-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	loop_thread_new(&lt);
	snprintf(path, sizeof(path), "%s/v.sock", dir);
	cfg.uds_path = path;
	for (size_t i = 0; i < ARRAY_SIZE(bad_cids); i++) {
		cfg.guest_cid = bad_cids[i];
		cr_assert_eq(virtio_vsock_create(&cfg, lt.loop, &ops, &opaque), -EINVAL,
			     "CID %llu accepted", (unsigned long long)bad_cids[i]);
		cr_assert_gt(strlen(vmkit_last_error()), 0);
	}
	cfg.guest_cid = 0xfffffffeull;
	cr_assert_eq(virtio_vsock_create(&cfg, NULL, &ops, &opaque), -EINVAL, "no loop");
	cfg.uds_path = NULL;
	cr_assert_eq(virtio_vsock_create(&cfg, lt.loop, &ops, &opaque), -EINVAL);
	cfg.uds_path = "";
	cr_assert_eq(virtio_vsock_create(&cfg, lt.loop, &ops, &opaque), -EINVAL);
	cfg.size = 8;
	cfg.uds_path = path;
	cr_assert_eq(virtio_vsock_create(&cfg, lt.loop, &ops, &opaque), -EINVAL, "short config");
	cfg.size = sizeof(cfg);

	/* 96 bytes is the longest path: "_<port>" must fit in sun_path too. */
	dl = strlen(dir);
	memset(path, 'a', sizeof(path));
	memcpy(path, dir, dl);
	path[dl] = '/';
	path[97] = 0;
	cr_assert_eq(virtio_vsock_create(&cfg, lt.loop, &ops, &opaque), -ENAMETOOLONG);
	cr_assert_neq(stat(path, &st), 0);
	path[96] = 0;
	cr_assert_eq(virtio_vsock_create(&cfg, lt.loop, &ops, &opaque), 0, "%s", vmkit_last_error());
	cr_assert(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
	ops->destroy(opaque);
	cr_assert_neq(stat(path, &st), 0, "the socket file was left behind");

	/* something that is not a socket is never replaced */
	snprintf(path, sizeof(path), "%s/file", dir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "data", 4), 4);
	close(fd);
	cr_assert_eq(virtio_vsock_create(&cfg, lt.loop, &ops, &opaque), -EEXIST);
	cr_assert(strstr(vmkit_last_error(), "not a socket"), "%s", vmkit_last_error());
	fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_eq(read(fd, buf, sizeof(buf)), 4, "the file was touched");
	close(fd);
	snprintf(path, sizeof(path), "%s/dir", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	cr_assert_eq(virtio_vsock_create(&cfg, lt.loop, &ops, &opaque), -EEXIST);

	/* a socket somebody listens on (another VM's) is left alone */
	snprintf(path, sizeof(path), "%s/live", dir);
	fd = unix_listen(path);
	cr_assert_eq(virtio_vsock_create(&cfg, lt.loop, &ops, &opaque), -EADDRINUSE);
	cr_assert(strstr(vmkit_last_error(), "in use"), "%s", vmkit_last_error());
	close(unix_connect(path));
	close(fd);

	/* a stale socket (nobody listening) is replaced */
	snprintf(path, sizeof(path), "%s/stale", dir);
	close(unix_listen(path));
	cr_assert_eq(virtio_vsock_create(&cfg, lt.loop, &ops, &opaque), 0, "%s", vmkit_last_error());
	close(unix_connect(path));
	ops->destroy(opaque);
	snprintf(path, sizeof(path), "%s/live", dir);
	unlink(path);
	loop_thread_free(&lt);
	remove_dir(dir);
}

Test(virtio_vsock, host_connect_bulk_both_ways)
{
	struct vs s;
	struct xfer x = { .h2g = 8u << 20, .g2h = 8u << 20, .g2h_seed = 2 };

	vs_up(&s);
	x.fd = host_initiated(&s, &x.g, 1234, 1);
	run_xfers(&s, &x, 1);

	/* guest RST: the host program sees EOF */
	gc_send(&s, &x.g, OP_RST, 0, NULL, 0);
	cr_assert(eof_within(x.fd, 5000));
	rx_none(&s, 50);
	close(x.fd);
	vs_down(&s);
}

Test(virtio_vsock, connect_line_and_pipelined_data)
{
	struct vs s;
	struct gconn g;
	struct vhdr h;
	char line[64], data[RX_PAYLOAD];
	int fd, fd2;

	vs_up(&s);
	/* data right behind the line is stream data, not part of the line */
	fd = unix_connect(s.path);
	write_all(fd, "CONNECT 77\nhello", 16);
	h = rx_expect(&s, OP_REQUEST, 77, NULL);
	memset(&g, 0, sizeof(g));
	g.gport = 77;
	g.hport = h.src_port;
	gc_hdr(&g, &h);
	gc_send(&s, &g, OP_RESPONSE, 0, NULL, 0);
	read_line(fd, line, sizeof(line));
	h = rx_expect(&s, OP_RW, 77, data);
	cr_assert_eq(h.len, 5);
	cr_assert_eq(memcmp(data, "hello", 5), 0);

	/* host ports are not reused while in use */
	fd2 = unix_connect(s.path);
	write_all(fd2, "CONNECT 77\n", 11);
	h = rx_expect(&s, OP_REQUEST, 77, NULL);
	cr_assert_neq(h.src_port, g.hport);
	tx_op(&s, 77, h.src_port, OP_RST, 0, 0);
	cr_assert(eof_within(fd2, 5000), "guest refused: the host program sees EOF");
	close(fd2);
	close(fd);
	vs_down(&s);
}

Test(virtio_vsock, malformed_connect_lines_are_closed)
{
	static const char *const lines[] = {
		"CONNECT abc\n", "HELLO 1234\n", "CONNECT \n", "CONNECT 4294967296\n",
		"CONNECT 12 34\n", "connect 1234\n",
	};
	char junk[100];
	struct vs s;
	int fd;

	vs_up(&s);
	for (size_t i = 0; i < ARRAY_SIZE(lines); i++) {
		fd = unix_connect(s.path);
		write_all(fd, lines[i], strlen(lines[i]));
		cr_assert(eof_within(fd, 5000), "line %zu kept open", i);
		close(fd);
	}
	/* no newline within the bound */
	memset(junk, 'C', sizeof(junk));
	fd = unix_connect(s.path);
	write_all(fd, junk, sizeof(junk));
	cr_assert(eof_within(fd, 5000));
	close(fd);
	/* a line in pieces is fine */
	fd = unix_connect(s.path);
	write_all(fd, "CONN", 4);
	usleep(20 * 1000);
	write_all(fd, "ECT 4294967295\n", 15);
	rx_expect(&s, OP_REQUEST, 4294967295u, NULL);
	rx_none(&s, 50);
	close(fd);
	vs_down(&s);
}

Test(virtio_vsock, host_connect_timeout)
{
	struct vs s;
	struct vhdr h, r;
	int fd;

	vs_up(&s);
	fd = unix_connect(s.path);
	write_all(fd, "CONNECT 9\n", 10);
	h = rx_expect(&s, OP_REQUEST, 9, NULL);
	/* the guest never answers: the host sees EOF, the guest an RST */
	cr_assert(eof_within(fd, 20000));
	r = rx_expect(&s, OP_RST, 9, NULL);
	cr_assert_eq(r.src_port, h.src_port);
	close(fd);
	vs_down(&s);
}

Test(virtio_vsock, guest_connect_bulk_and_refused)
{
	struct vs s;
	struct xfer x = { .h2g = 8u << 20, .g2h = 8u << 20, .g2h_seed = 5 };
	char p[128];
	struct vhdr h;
	int lfd;

	vs_up(&s);
	/* no listener: RST */
	tx_op(&s, 40000, 5001, OP_REQUEST, 0, 0);
	h = rx_expect(&s, OP_RST, 40000, NULL);
	cr_assert_eq(h.src_port, 5001);

	port_path(&s, 5000, p, sizeof(p));
	lfd = unix_listen(p);
	x.fd = guest_initiated(&s, &x.g, lfd, 5000, 40001, 6);
	run_xfers(&s, &x, 1);
	/* guest RST closes the host socket */
	gc_send(&s, &x.g, OP_RST, 0, NULL, 0);
	cr_assert(eof_within(x.fd, 5000));
	close(x.fd);
	close(lfd);
	unlink(p);
	vs_down(&s);
}

Test(virtio_vsock, several_connections_interleaved)
{
	struct vs s;
	struct xfer x[4] = { 0 };
	char p[128];
	int lfd;

	vs_up(&s);
	port_path(&s, 6000, p, sizeof(p));
	lfd = unix_listen(p);
	for (unsigned i = 0; i < 4; i++) {
		x[i].h2g = x[i].g2h = 1u << 20;
		x[i].g2h_seed = 100 + i;
	}
	x[0].fd = host_initiated(&s, &x[0].g, 1000, 10);
	x[1].fd = guest_initiated(&s, &x[1].g, lfd, 6000, 50000, 11);
	x[2].fd = host_initiated(&s, &x[2].g, 1000, 12); /* same guest port again */
	x[3].fd = guest_initiated(&s, &x[3].g, lfd, 6000, 50001, 13);
	cr_assert_neq(x[0].g.hport, x[2].g.hport);
	run_xfers(&s, x, 4);
	for (unsigned i = 0; i < 4; i++) {
		gc_send(&s, &x[i].g, OP_RST, 0, NULL, 0);
		cr_assert(eof_within(x[i].fd, 5000));
		close(x[i].fd);
	}
	close(lfd);
	unlink(p);
	vs_down(&s);
}

Test(virtio_vsock, one_way_data_needs_credit_updates)
{
	struct vs s;
	struct xfer x = { .h2g = 0, .g2h = 4u << 20, .g2h_seed = 9 };

	vs_up(&s);
	x.fd = host_initiated(&s, &x.g, 1235, 1);
	run_xfers(&s, &x, 1);
	/* No data comes back to carry the device's fwd_cnt: only its
	 * CREDIT_UPDATEs can have kept the guest sending beyond 256 KiB. */
	cr_assert_gt(x.g.credit_updates, 0);
	gc_send(&s, &x.g, OP_RST, 0, NULL, 0);
	cr_assert(eof_within(x.fd, 5000));
	close(x.fd);
	vs_down(&s);
}

Test(virtio_vsock, guest_shutdown_send_then_host_close)
{
	struct vs s;
	struct gconn g;
	struct vhdr h;
	char buf[RX_PAYLOAD];
	int fd;

	vs_up(&s);
	fd = host_initiated(&s, &g, 80, 0);
	gc_send(&s, &g, OP_RW, 0, "last words", 10);
	gc_send(&s, &g, OP_SHUTDOWN, SHUT_SEND, NULL, 0);
	cr_assert_eq(read_for(fd, buf, 10, 5000), 10);
	cr_assert_eq(memcmp(buf, "last words", 10), 0);
	cr_assert(eof_within(fd, 5000), "SHUTDOWN SEND did not reach the host as EOF");
	/* the other direction still works */
	write_all(fd, "reply", 5);
	h = rx_expect(&s, OP_RW, 80, buf);
	cr_assert_eq(h.len, 5);
	cr_assert_eq(memcmp(buf, "reply", 5), 0);
	/* host closes: nothing flows either way any more */
	close(fd);
	h = rx_expect(&s, OP_SHUTDOWN, 80, NULL);
	cr_assert_eq(h.flags, SHUT_SEND | SHUT_RCV);
	gc_send(&s, &g, OP_RST, 0, NULL, 0);
	rx_none(&s, 50);
	/* the connection is gone: more data gets an RST */
	gc_send(&s, &g, OP_RW, 0, "x", 1);
	rx_expect(&s, OP_RST, 80, NULL);
	vs_down(&s);
}

Test(virtio_vsock, host_half_close_then_guest_close)
{
	struct vs s;
	struct gconn g;
	struct vhdr h;
	char buf[RX_PAYLOAD], p[128];
	int lfd, fd;

	vs_up(&s);
	port_path(&s, 7000, p, sizeof(p));
	lfd = unix_listen(p);
	fd = guest_initiated(&s, &g, lfd, 7000, 33000, 0);
	write_all(fd, "bye", 3);
	cr_assert_eq(shutdown(fd, SHUT_WR), 0);
	h = rx_expect(&s, OP_RW, 33000, buf);
	cr_assert_eq(h.len, 3);
	h = rx_expect(&s, OP_SHUTDOWN, 33000, NULL);
	cr_assert_eq(h.flags, SHUT_SEND, "a half-close is SHUTDOWN SEND only");
	/* the guest may still send */
	gc_send(&s, &g, OP_RW, 0, "still here", 10);
	cr_assert_eq(read_for(fd, buf, 10, 5000), 10);
	cr_assert_eq(memcmp(buf, "still here", 10), 0);
	/* the guest closes: RST back, the host sees EOF */
	gc_send(&s, &g, OP_SHUTDOWN, SHUT_SEND | SHUT_RCV, NULL, 0);
	rx_expect(&s, OP_RST, 33000, NULL);
	cr_assert(eof_within(fd, 5000));
	close(fd);
	close(lfd);
	unlink(p);
	vs_down(&s);
}

Test(virtio_vsock, host_close_without_guest_answer_ends_in_rst)
{
	struct vs s;
	struct gconn g;
	struct vhdr h;
	int fd;

	vs_up(&s);
	fd = host_initiated(&s, &g, 81, 0);
	close(fd);
	h = rx_expect(&s, OP_SHUTDOWN, 81, NULL);
	cr_assert_eq(h.flags, SHUT_SEND | SHUT_RCV);
	/* no RST from the guest: the device gives up on it */
	rx_expect(&s, OP_RST, 81, NULL);
	vs_down(&s);
}

Test(virtio_vsock, host_reset_after_its_last_words)
{
	struct vs s;
	struct gconn g;
	struct vhdr h;
	char buf[RX_PAYLOAD];
	int fd;

	vs_up(&s);
	fd = host_initiated(&s, &g, 83, 0);
	/* the program writes, then closes with the guest's data unread */
	gc_send(&s, &g, OP_RW, 0, "unread", 6);
	write_all(fd, "bye", 3);
	close(fd);
	h = rx_expect(&s, OP_RW, 83, buf);
	cr_assert_eq(h.len, 3);
	cr_assert_eq(memcmp(buf, "bye", 3), 0);
	rx_expect(&s, OP_RST, 83, NULL);
	vs_down(&s);
}

Test(virtio_vsock, credit_request_and_guest_read_shutdown)
{
	struct vs s;
	struct gconn g;
	struct vhdr h;
	char buf[1000];
	int fd;

	vs_up(&s);
	fd = host_initiated(&s, &g, 82, 0);
	memset(buf, 'z', sizeof(buf));
	gc_send(&s, &g, OP_RW, 0, buf, sizeof(buf));
	cr_assert_eq(read_for(fd, buf, sizeof(buf), 5000), sizeof(buf));
	gc_send(&s, &g, OP_CREDIT_REQUEST, 0, NULL, 0);
	h = rx_expect(&s, OP_CREDIT_UPDATE, 82, NULL);
	cr_assert_eq(h.buf_alloc, DEV_BUF_ALLOC);
	cr_assert_eq(h.fwd_cnt, sizeof(buf), "fwd_cnt %u", h.fwd_cnt);

	/* SHUTDOWN RCV: the device stops reading the host socket */
	gc_send(&s, &g, OP_SHUTDOWN, SHUT_RCV, NULL, 0);
	write_all(fd, "unwanted", 8);
	rx_none(&s, 100);
	/* and the guest can still send */
	gc_send(&s, &g, OP_RW, 0, "ok", 2);
	cr_assert_eq(read_for(fd, buf, 2, 5000), 2);
	close(fd);
	vs_down(&s);
}

Test(virtio_vsock, hostile_packets)
{
	struct vs s;
	struct gconn a, b, c, d;
	struct vhdr h;
	uint8_t *big;
	char buf[RX_PAYLOAD];
	int fa, fb, fc, fd, zhead;
	uint64_t zg, bg;

	vs_up(&s);
	fa = host_initiated(&s, &a, 90, 0);
	fb = host_initiated(&s, &b, 91, 0);
	fc = host_initiated(&s, &c, 92, 0);
	fd = host_initiated(&s, &d, 93, 0);

	/* exactly the device's credit in one packet is fine */
	big = malloc(DEV_BUF_ALLOC + 1);
	memset(big, 'b', DEV_BUF_ALLOC + 1);
	bg = vqd_alloc(&s.m, HDR + DEV_BUF_ALLOC + 1, 16);
	h = mkhdr(b.gport, b.hport, OP_RW, DEV_BUF_ALLOC);
	memcpy(vqd_hva(&s.m, bg, HDR), &h, HDR);
	memcpy(vqd_hva(&s.m, bg + HDR, DEV_BUF_ALLOC + 1), big, DEV_BUF_ALLOC + 1);
	vqd_publish(&s.q[1], (uint16_t)vqd_add_chain(&s.q[1],
						     &(struct vqd_buf){ bg, HDR + DEV_BUF_ALLOC, false },
						     1));
	vqd_kick(&s.dev, 1);
	/* one byte more is a guest that ignores the credit: RST for it alone */
	h = mkhdr(a.gport, a.hport, OP_RW, DEV_BUF_ALLOC + 1);
	memcpy(vqd_hva(&s.m, bg, HDR), &h, HDR);
	vqd_publish(&s.q[1],
		    (uint16_t)vqd_add_chain(&s.q[1],
					    &(struct vqd_buf){ bg, HDR + DEV_BUF_ALLOC + 1, false }, 1));
	vqd_kick(&s.dev, 1);
	tx_reclaim(&s);
	h = rx_expect(&s, OP_RST, 90, NULL);
	cr_assert_eq(h.src_port, a.hport);
	cr_assert(eof_within(fa, 5000));
	cr_assert_eq(read_for(fb, big, DEV_BUF_ALLOC, 10000), DEV_BUF_ALLOC);
	free(big);

	/* wrong CIDs: dropped, no answer */
	h = mkhdr(c.gport, c.hport, OP_RW, 0);
	h.src_cid = GUEST_CID + 1;
	tx_pkt(&s, &h, NULL, 0);
	h.src_cid = GUEST_CID;
	h.dst_cid = 7;
	h.op = OP_RST;
	tx_pkt(&s, &h, NULL, 0);
	rx_none(&s, 50);
	/* another socket type: RST */
	h = mkhdr(44000, 5000, OP_REQUEST, 0);
	h.type = 2;
	tx_pkt(&s, &h, NULL, 0);
	rx_expect(&s, OP_RST, 44000, NULL);
	/* unknown op, unknown connection: RST */
	tx_op(&s, 44001, 12345, 99, 0, 0);
	rx_expect(&s, OP_RST, 44001, NULL);
	/* data for no connection: RST; an RST for none: nothing */
	h = mkhdr(44002, 12346, OP_RW, 3);
	tx_pkt(&s, &h, "abc", 3);
	rx_expect(&s, OP_RST, 44002, NULL);
	tx_op(&s, 44003, 12347, OP_RST, 0, 0);
	rx_none(&s, 50);
	/* a length beyond the buffer */
	h = mkhdr(44004, 12348, OP_RW, 1000);
	tx_pkt(&s, &h, "short", 5);
	rx_expect(&s, OP_RST, 44004, NULL);
	h.len = UINT32_MAX;
	tx_pkt(&s, &h, "short", 5);
	rx_expect(&s, OP_RST, 44004, NULL);
	/* a header cut short, an empty chain: ignored */
	tx_raw(&s, &h, 20, NULL, 0);
	zg = vqd_alloc(&s.m, 16, 16);
	vqd_publish(&s.q[1], (uint16_t)vqd_add_chain(&s.q[1], &(struct vqd_buf){ zg, 0, false }, 1));
	vqd_kick(&s.dev, 1);
	cr_assert(LT_WAIT(vqd_used_pending(&s.q[1]) > 0, 2000));
	tx_reclaim(&s);
	rx_none(&s, 50);
	/* on a connection: reset, and not a byte reaches the host */
	h = mkhdr(c.gport, c.hport, OP_RW, 1000);
	tx_pkt(&s, &h, "short", 5);
	rx_expect(&s, OP_RST, 92, NULL);
	cr_assert(eof_within(fc, 5000));
	/* unknown op on a connection: that connection is reset */
	tx_op(&s, d.gport, d.hport, 42, 0, 0);
	rx_expect(&s, OP_RST, 93, NULL);
	cr_assert(eof_within(fd, 5000));
	/* a zero-length receive buffer comes back empty */
	zhead = vqd_add_chain(&s.q[0], &(struct vqd_buf){ zg, 0, true }, 1);
	s.rx_gpa[zhead] = zg;
	s.rx_len[zhead] = 0;
	vqd_publish(&s.q[0], (uint16_t)zhead);
	vqd_kick(&s.dev, 0);

	/* the good connection still works both ways */
	gc_send(&s, &b, OP_RW, 0, "fine", 4);
	cr_assert_eq(read_for(fb, buf, 4, 5000), 4);
	cr_assert_eq(memcmp(buf, "fine", 4), 0);
	/* (enough packets to reach the empty buffer on the ring) */
	for (unsigned i = 0; i < NRX + 1; i++) {
		write_all(fb, "x", 1);
		h = rx_expect(&s, OP_RW, 91, buf);
		cr_assert_eq(h.len, 1);
		b.held++;
		if (b.held >= GBUF / 2)
			gc_consume(&s, &b);
	}
	cr_assert(vqd_status_live(vqd_status(&s.dev)));
	close(fa);
	close(fb);
	close(fc);
	close(fd);
	vs_down(&s);
}

Test(virtio_vsock, reset_closes_connections_and_keeps_listening)
{
	struct vs s;
	struct gconn g;
	char p[128];
	int fd, fd2, lfd;

	vs_up(&s);
	port_path(&s, 8000, p, sizeof(p));
	lfd = unix_listen(p);
	fd = host_initiated(&s, &g, 100, 0);
	fd2 = guest_initiated(&s, &g, lfd, 8000, 34000, 0);
	vqd_write_status(&s.dev, 0);
	cr_assert(eof_within(fd, 5000), "host-initiated connection survived the reset");
	cr_assert(eof_within(fd2, 5000), "guest-initiated connection survived the reset");
	close(fd);
	close(fd2);
	driver_up(&s);
	rx_none(&s, 50);
	fd = host_initiated(&s, &g, 100, 0);
	write_all(fd, "again", 5);
	rx_expect(&s, OP_RW, 100, NULL);
	close(fd);
	close(lfd);
	unlink(p);
	vs_down(&s);
}

Test(virtio_vsock, save_restore)
{
	struct vs s;
	struct gconn g;
	uint8_t *blob, *bad, other[4096], dblob[4096];
	size_t len;
	long n, on;
	vmkit_vsock_config cfg = VMKIT_VSOCK_CONFIG_INIT;
	const vmkit_virtio_ops *oops;
	void *oop;
	char opath[128], buf[8];
	struct vmkit_loop *l2;
	uint32_t id, ulen, ev;
	int fd;

	vs_up(&s);
	fd = host_initiated(&s, &g, 200, 0);

	/* the device's own blob: refused when foreign, corrupt or short */
	vqd_lock(&s.dev);
	n = s.ops->save(s.opaque, dblob, sizeof(dblob));
	vqd_unlock(&s.dev);
	cr_assert_gt(n, 0);
	cr_assert_lt(n, 4096);
	snprintf(opath, sizeof(opath), "%s/other.sock", s.dir);
	cfg.guest_cid = GUEST_CID + 4;
	cfg.uds_path = opath;
	/* (its own loop: the running one takes registrations only from its thread) */
	cr_assert_eq(vmkit__loop_new(&l2), 0);
	cr_assert_eq(virtio_vsock_create(&cfg, l2, &oops, &oop), 0, "%s", vmkit_last_error());
	on = oops->save(oop, other, sizeof(other));
	cr_assert_eq(on, n);
	vqd_lock(&s.dev);
	cr_assert_eq(s.ops->restore(s.opaque, other, (size_t)on), -EINVAL, "another CID accepted");
	cr_assert(strstr(vmkit_last_error(), "CID"), "%s", vmkit_last_error());
	cr_assert_eq(s.ops->restore(s.opaque, dblob, (size_t)n - 1), -EINVAL);
	cr_assert_eq(s.ops->restore(s.opaque, "garbage!", 8), -EINVAL);
	cr_assert_eq(s.ops->restore(s.opaque, NULL, 0), -EINVAL);
	for (long i = 0; i < n; i++) {
		memcpy(other, dblob, (size_t)n);
		other[i] ^= 0x20;
		cr_assert_lt(s.ops->restore(s.opaque, other, (size_t)n), 0, "byte %ld flipped", i);
	}
	vqd_unlock(&s.dev);
	oops->destroy(oop);
	vmkit__loop_free(l2);
	/* a refused blob left the connection alone */
	gc_send(&s, &g, OP_RW, 0, "alive", 5);
	cr_assert_eq(read_for(fd, buf, 5, 5000), 5);
	cr_assert_eq(vqd_used_pending(&s.q[2]), 0, "an event before any restore");

	/* the whole device through the core, corrupted and then as saved */
	cr_assert_eq(virtio_dev_save(&s.dev, &blob, &len), 0, "%s", vmkit_last_error());
	bad = malloc(len);
	memcpy(bad, blob, len);
	bad[len - 3] ^= 1;
	cr_assert_lt(virtio_dev_restore(&s.dev, bad, len), 0);
	cr_assert_lt(virtio_dev_restore(&s.dev, blob, len - 1), 0);
	free(bad);
	cr_assert_eq(virtio_dev_restore(&s.dev, blob, len), 0, "%s", vmkit_last_error());
	cr_assert(eof_within(fd, 5000), "a connection survived the restore");
	close(fd);
	/* the guest is told its connections are gone */
	cr_assert(LT_WAIT(vqd_used_pending(&s.q[2]) == 1, 5000), "no TRANSPORT_RESET event");
	cr_assert(vqd_get_used(&s.q[2], &id, &ulen));
	cr_assert_eq(ulen, 4);
	memcpy(&ev, vqd_hva(&s.m, s.ev_gpa[id], 4), 4);
	cr_assert_eq(ev, 0, "event id %u", ev);
	rx_none(&s, 50);
	cr_assert(vqd_status_live(vqd_status(&s.dev)));

	/* a restore into a new device, as in a new process: the event goes out
	 * once the core calls the device (here: a notify) */
	free(blob);
	cr_assert_eq(virtio_dev_save(&s.dev, &blob, &len), 0, "%s", vmkit_last_error());
	loop_thread_stop(&s.lt);
	virtio_dev_destroy(&s.dev);
	vs_create(&s);
	loop_thread_start(&s.lt);
	cr_assert_eq(virtio_dev_restore(&s.dev, blob, len), 0, "%s", vmkit_last_error());
	vqd_kick(&s.dev, 2);
	cr_assert(LT_WAIT(vqd_used_pending(&s.q[2]) == 1, 5000), "no TRANSPORT_RESET event");
	cr_assert(vqd_get_used(&s.q[2], &id, &ulen));
	cr_assert_eq(ulen, 4);
	/* and it serves new connections */
	fd = host_initiated(&s, &g, 201, 0);
	close(fd);
	free(blob);
	vs_down(&s);
}

Test(virtio_vsock, waiting_host_sockets_are_bounded)
{
	enum { LINES = 64 };
	int fds[LINES], extra, fd;
	struct gconn g;
	struct vs s;

	vs_up(&s);
	for (unsigned i = 0; i < LINES; i++)
		fds[i] = unix_connect(s.path);
	/* one more than may wait for its CONNECT line: closed at once */
	extra = unix_connect(s.path);
	cr_assert(eof_within(extra, 5000), "a 65th waiting socket was kept");
	close(extra);
	for (unsigned i = 0; i < LINES; i++) {
		struct pollfd p = { .fd = fds[i], .events = POLLIN };

		cr_assert_eq(poll(&p, 1, 0), 0, "waiting socket %u was closed", i);
	}
	/* a waiting socket that finishes its line becomes a connection */
	write_all(fds[0], "CONNECT 300\n", 12);
	rx_expect(&s, OP_REQUEST, 300, NULL);
	/* which frees its slot for a newcomer */
	fd = host_initiated(&s, &g, 301, 0);
	close(fd);
	for (unsigned i = 0; i < LINES; i++)
		close(fds[i]);
	vs_down(&s);
}

Test(virtio_vsock, listener_with_a_full_backlog_is_refused_without_waiting)
{
	unsigned responses = 0, rsts = 0;
	struct vs s;
	struct vhdr h;
	char p[128];
	double t0;
	int lfd;

	vs_up(&s);
	port_path(&s, 9000, p, sizeof(p));
	lfd = unix_listen_backlog(p, 1);
	/* nobody accepts: the device must not wait for the backlog */
	t0 = lt_now();
	for (uint32_t i = 0; i < 8; i++)
		tx_op(&s, 60000 + i, 9000, OP_REQUEST, 0, 0);
	cr_assert_lt(lt_now() - t0, 2.0, "the notifying thread was held");
	for (unsigned i = 0; i < 8; i++) {
		cr_assert(rx_next(&s, &h, NULL, 5000));
		cr_assert_geq(h.dst_port, 60000);
		cr_assert_lt(h.dst_port, 60008);
		if (h.op == OP_RESPONSE)
			responses++;
		else if (h.op == OP_RST)
			rsts++;
	}
	cr_assert_gt(responses, 0);
	cr_assert_gt(rsts, 0, "a full backlog was not refused");
	close(lfd);
	unlink(p);
	vs_down(&s);
}
