/* SPDX-License-Identifier: MIT */
/* vsock: vmkit's virtio-vsock driven from CPL3 by a minimal stream-socket
 * driver of our own over vdrv.c (connections, credit-based flow control,
 * shutdown and reset as VIRTIO 1.2 5.10 says). The host test
 * (tests/kvm/test_guest_vsock.c) is the other end, through vmkit's UNIX
 * socket mapping. Data is kit_pattern bytes of a seed, checked as it
 * arrives on both sides.
 *
 * The command line is a list of steps, run in order:
 *   g2h=P:BYTES:SEED   connect to host port P, send BYTES, shut down our
 *                      sending side, wait for the host to close
 *   h2g=P:BYTES:SEED   listen on port P ("vsock listening port=P"), take
 *                      one connection, receive and check BYTES, wait for
 *                      the host to close
 *   multi=P:N:BYTES    N connections to host port P at once, sending BYTES
 *                      each (seed = index + 1) in interleaved packets
 *   refused=P          connect to host port P, where nothing listens:
 *                      expect a reset
 *   reset=P:BYTES      connect to host port P, send BYTES (seed 7), then
 *                      reset the connection ourselves
 *   hclose=P           listen on P, take a connection; the host closes it
 *                      after sending what it wants: report the bytes
 *   timeout_ms=T       per-step timeout (default 60000)
 * Each step prints one "vsock <step> ... ok=1|0" line (g2h adds the
 * microseconds from the first byte sent to the close: "us=T"); the guest exits
 * with 0 when every step succeeded. */
#include "vdrv.h"

#define VSOCK_ID 19
#define RXQ 0
#define TXQ 1
#define EVQ 2
#define QSIZE 128u
#define HDR 44u
#define RX_BUF (HDR + 32768u)
#define TX_SLOTS 32u
#define TX_MAX 16384u          /* payload per packet we send */
#define BUF_ALLOC (256u * 1024u)
#define HOST_CID 2u
#define MAX_CONN 8

enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE,
       OP_CREDIT_REQUEST };
#define SHUT_RCV 1u
#define SHUT_SEND 2u

static struct vdrv dev;
static uint64_t guest_cid, timeout_ms;

/* ---- a streaming pattern (kit_pattern, byte for byte, in pieces) ------------------ */

struct pat {
	uint32_t x;
};

static void pat_init(struct pat *p, uint32_t seed)
{
	p->x = seed ? seed : 1;
}

static uint8_t pat_next(struct pat *p)
{
	p->x ^= p->x << 13;
	p->x ^= p->x >> 17;
	p->x ^= p->x << 5;
	return (uint8_t)(p->x >> 24);
}

/* ---- little-endian header fields ------------------------------------------------------ */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v), put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v), put32(p + 4, (uint32_t)(v >> 32)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

/* ---- connections ------------------------------------------------------------------------ */

enum cstate { C_FREE = 0, C_LISTEN, C_CONNECTING, C_OPEN, C_CLOSED };

struct conn {
	enum cstate state;
	uint32_t lport, pport;
	bool reset;                 /* the peer reset it (or refused) */
	uint32_t peer_shut;         /* SHUT_* the peer announced */
	/* credit */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	uint32_t fwd_cnt, fwd_advertised;
	/* Control packets owed to the peer, sent by flush_ctl() (never from
	 * inside the receive path, which send_pkt itself runs). */
	bool need_response, need_update, need_rst;
	/* receive check */
	struct pat rpat;
	uint64_t rx_bytes, rx_bad;
	uint32_t rx_fnv;
};

static struct conn conns[MAX_CONN];
static uint32_t next_port = 40000;

static struct conn *conn_find(uint32_t lport, uint32_t pport)
{
	for (int i = 0; i < MAX_CONN; i++)
		if (conns[i].state != C_FREE && conns[i].state != C_LISTEN &&
		    conns[i].lport == lport && conns[i].pport == pport)
			return &conns[i];
	return NULL;
}

static struct conn *conn_new(enum cstate st, uint32_t lport, uint32_t pport)
{
	for (int i = 0; i < MAX_CONN; i++) {
		if (conns[i].state == C_FREE) {
			memset(&conns[i], 0, sizeof(conns[i]));
			conns[i].state = st;
			conns[i].lport = lport;
			conns[i].pport = pport;
			conns[i].rx_fnv = 2166136261u;
			return &conns[i];
		}
	}
	return NULL;
}

static uint32_t credit(const struct conn *c)
{
	uint32_t used = c->tx_cnt - c->peer_fwd_cnt;

	return used >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - used;
}

/* ---- queues ------------------------------------------------------------------------ */

static uint8_t *rx_buf[QSIZE];
static uint8_t *tx_slot[TX_SLOTS];
static bool tx_busy[TX_SLOTS];
static int8_t slot_of_head[QSIZE];
static uint8_t *ev_buf;

static void *alloc_or_die(size_t size, size_t align)
{
	void *p = vdrv_alloc(size, align);

	if (!p) {
		kit_printf("vsock: out of heap\n");
		kit_exit(KIT_EXIT_KIT_ERROR);
	}
	return p;
}

static void rx_post(uint8_t *b)
{
	struct vdrv_buf vb = { b, RX_BUF, true };
	int head = vdrv_add(&dev.q[RXQ], &vb, 1);

	if (head >= 0)
		rx_buf[head] = b;
}

static void tx_reclaim(void)
{
	int head;

	while ((head = vdrv_poll(&dev.q[TXQ], NULL)) >= 0) {
		if (slot_of_head[head] >= 0)
			tx_busy[slot_of_head[head]] = false;
		slot_of_head[head] = -1;
	}
}

static void handle_rx(void);

/* Send a packet: header + @len payload bytes generated by @pat (or
 * none). Waits for a free slot (receiving meanwhile, so that the host's
 * credit updates get through). */
static bool send_pkt(struct conn *c, uint16_t op, uint32_t flags, struct pat *pat, uint32_t len)
{
	uint64_t t0 = vdrv_now_us();

	for (;;) {
		tx_reclaim();
		for (uint32_t s = 0; s < TX_SLOTS; s++) {
			uint8_t *p = tx_slot[s];
			struct vdrv_buf b[2];
			int head;

			if (tx_busy[s])
				continue;
			memset(p, 0, HDR);
			put64(p + 0, guest_cid);
			put64(p + 8, HOST_CID);
			put32(p + 16, c->lport);
			put32(p + 20, c->pport);
			put32(p + 24, len);
			put16(p + 28, 1); /* STREAM */
			put16(p + 30, op);
			put32(p + 32, flags);
			put32(p + 36, BUF_ALLOC);
			put32(p + 40, c->fwd_cnt);
			for (uint32_t i = 0; i < len; i++)
				p[HDR + i] = pat_next(pat);
			/* Header and payload in separate descriptors, as Linux does. */
			b[0] = (struct vdrv_buf){ p, HDR, false };
			b[1] = (struct vdrv_buf){ p + HDR, len, false };
			head = vdrv_add(&dev.q[TXQ], b, len ? 2 : 1);
			if (head < 0)
				break;
			tx_busy[s] = true;
			slot_of_head[head] = (int8_t)s;
			vdrv_kick(&dev, &dev.q[TXQ]);
			c->fwd_advertised = c->fwd_cnt;
			if (op == OP_RW)
				c->tx_cnt += len;
			return true;
		}
		handle_rx();
		if (vdrv_now_us() - t0 > timeout_ms * 1000) {
			kit_printf("vsock: transmit queue stuck\n");
			return false;
		}
	}
}

/* Resets owed for packets of connections we do not know. */
static struct { uint32_t lport, pport; } rst_owed[16];
static uint32_t n_rst_owed;

static void rst_unknown(uint32_t lport, uint32_t pport)
{
	if (n_rst_owed < 16)
		rst_owed[n_rst_owed].lport = lport, rst_owed[n_rst_owed++].pport = pport;
}

/* One packet from the device. */
static void packet(const uint8_t *p, uint32_t len)
{
	uint32_t plen = get32(p + 24), sport = get32(p + 16), dport = get32(p + 20);
	uint16_t op = get16(p + 30);
	struct conn *c;

	if (len < HDR || plen > len - HDR || get64(p + 8) != guest_cid || get64(p) != HOST_CID ||
	    get16(p + 28) != 1) {
		kit_printf("vsock: bad packet len=%u plen=%u op=%u\n", len, plen, op);
		return;
	}
	c = conn_find(dport, sport);
	if (!c && op == OP_REQUEST) {
		for (int i = 0; i < MAX_CONN; i++) {
			if (conns[i].state == C_LISTEN && conns[i].lport == dport) {
				c = &conns[i];
				c->state = C_OPEN;
				c->pport = sport;
				c->peer_buf_alloc = get32(p + 36);
				c->peer_fwd_cnt = get32(p + 40);
				c->need_response = true;
				return;
			}
		}
		rst_unknown(dport, sport);
		return;
	}
	if (!c) {
		if (op != OP_RST)
			rst_unknown(dport, sport);
		return;
	}
	c->peer_buf_alloc = get32(p + 36);
	c->peer_fwd_cnt = get32(p + 40);
	switch (op) {
	case OP_RESPONSE:
		if (c->state == C_CONNECTING)
			c->state = C_OPEN;
		break;
	case OP_RST:
		c->reset = true;
		c->state = C_CLOSED;
		break;
	case OP_SHUTDOWN:
		c->peer_shut |= get32(p + 32) & (SHUT_RCV | SHUT_SEND);
		if (c->peer_shut == (SHUT_RCV | SHUT_SEND)) {
			/* Both directions done: the connection is over; RST
			 * confirms it to the peer (5.10.6.6). */
			c->need_rst = true;
			c->state = C_CLOSED;
		}
		break;
	case OP_RW:
		for (uint32_t i = 0; i < plen; i++) {
			uint8_t b = p[HDR + i];
			if (b != pat_next(&c->rpat))
				c->rx_bad++;
			c->rx_fnv = (c->rx_fnv ^ b) * 16777619u;
		}
		c->rx_bytes += plen;
		c->fwd_cnt += plen;
		/* Consumed at once: give the credit back before the peer
		 * runs out of it. */
		if (c->fwd_cnt - c->fwd_advertised >= BUF_ALLOC / 4)
			c->need_update = true;
		break;
	case OP_CREDIT_REQUEST:
		c->need_update = true;
		break;
	case OP_CREDIT_UPDATE:
		break;
	default:
		kit_printf("vsock: unknown op %u\n", op);
		break;
	}
}

static void handle_rx(void)
{
	uint32_t len;
	int head, n = 0;

	while ((head = vdrv_poll(&dev.q[RXQ], &len)) >= 0) {
		uint8_t *b = rx_buf[head];

		packet(b, len > RX_BUF ? RX_BUF : len);
		rx_post(b);
		n++;
	}
	if (n)
		vdrv_kick(&dev, &dev.q[RXQ]);
	if (vdrv_poll(&dev.q[EVQ], &len) >= 0) {
		kit_printf("vsock event id=%u\n", get32(ev_buf));
		vdrv_add(&dev.q[EVQ], &(struct vdrv_buf){ ev_buf, 4, true }, 1);
		vdrv_kick(&dev, &dev.q[EVQ]);
	}
}

/* Send the control packets the receive path found owed. */
static void flush_ctl(void)
{
	for (int i = 0; i < MAX_CONN; i++) {
		struct conn *c = &conns[i];

		/* A flag is cleared only once its packet went out: an update
		 * the peer waits for must not be lost to a full ring. */
		if (c->need_response && send_pkt(c, OP_RESPONSE, 0, NULL, 0))
			c->need_response = false;
		if (c->need_update && send_pkt(c, OP_CREDIT_UPDATE, 0, NULL, 0))
			c->need_update = false;
		if (c->need_rst && send_pkt(c, OP_RST, 0, NULL, 0))
			c->need_rst = false;
	}
	while (n_rst_owed) {
		struct conn tmp = { .lport = rst_owed[n_rst_owed - 1].lport,
				    .pport = rst_owed[n_rst_owed - 1].pport };
		n_rst_owed--;
		send_pkt(&tmp, OP_RST, 0, NULL, 0);
	}
}

static void pump(void)
{
	handle_rx();
	flush_ctl();
}

/* Receive until @done(@c), or until the timeout passes with no progress
 * (no byte received, no state change): a long transfer on a slow host
 * keeps going; the host side bounds the whole run. */
static bool wait_for(struct conn *c, bool (*done)(const struct conn *c))
{
	uint64_t t0 = vdrv_now_us();
	uint64_t seen_bytes = c->rx_bytes;
	int seen_state = (int)c->state;

	while (!done(c)) {
		pump();
		if (c->rx_bytes != seen_bytes || (int)c->state != seen_state) {
			seen_bytes = c->rx_bytes;
			seen_state = (int)c->state;
			t0 = vdrv_now_us();
		}
		if (vdrv_now_us() - t0 > timeout_ms * 1000)
			return false;
		cpu_relax();
	}
	return true;
}

static bool is_open_or_closed(const struct conn *c) { return c->state != C_CONNECTING && c->state != C_LISTEN; }
static bool is_closed(const struct conn *c) { return c->state == C_CLOSED; }
static bool peer_done_sending(const struct conn *c)
{
	return c->state == C_CLOSED || (c->peer_shut & SHUT_SEND);
}

static struct conn *connect_to(uint32_t port)
{
	struct conn *c = conn_new(C_CONNECTING, next_port++, port);

	if (!c)
		return NULL;
	c->peer_buf_alloc = 0;
	if (!send_pkt(c, OP_REQUEST, 0, NULL, 0) || !wait_for(c, is_open_or_closed))
		c->state = C_CLOSED;
	return c;
}

/* Send @bytes of @pat on @c within the peer's credit. */
static bool send_stream(struct conn *c, struct pat *pat, uint64_t bytes)
{
	uint64_t t0 = vdrv_now_us(), sent = 0;

	while (sent < bytes) {
		uint32_t n = credit(c);

		if (c->state != C_OPEN)
			return false;
		if (n > TX_MAX)
			n = TX_MAX;
		if (n > bytes - sent)
			n = (uint32_t)(bytes - sent);
		if (n == 0) {
			pump();
			if (vdrv_now_us() - t0 > timeout_ms * 1000) {
				kit_printf("vsock: no credit from the host for %lu ms\n",
					   (unsigned long)timeout_ms);
				return false;
			}
			continue;
		}
		if (!send_pkt(c, OP_RW, 0, pat, n))
			return false;
		sent += n;
		t0 = vdrv_now_us();
	}
	return true;
}

static void flush_ctl(void);

/* Done with @c: what it still owes the peer goes first, and a
 * connection given up while open is reset, so that the host side sees
 * its end instead of waiting for ever. */
static void conn_free(struct conn *c)
{
	flush_ctl();
	if (c->state == C_OPEN || c->state == C_CONNECTING)
		send_pkt(c, OP_RST, 0, NULL, 0);
	c->state = C_FREE;
}

/* ---- steps ------------------------------------------------------------------------ */

/* "a:b:c" -> up to 3 numbers; how many were read. */
static int parse3(const char *v, uint64_t out[3])
{
	int n = 0;

	while (v && n < 3 && *v >= '0' && *v <= '9') {
		uint64_t x = 0;
		while (*v >= '0' && *v <= '9')
			x = x * 10 + (uint64_t)(*v++ - '0');
		out[n++] = x;
		if (*v != ':')
			break;
		v++;
	}
	return n;
}

static bool step_g2h(const char *v)
{
	uint64_t a[3], t0;
	struct conn *c;
	struct pat pat;
	bool ok;

	if (parse3(v, a) != 3)
		return false;
	c = connect_to((uint32_t)a[0]);
	if (!c || c->state != C_OPEN) {
		kit_printf("vsock g2h port=%lu connect failed ok=0\n", (unsigned long)a[0]);
		return false;
	}
	pat_init(&pat, (uint32_t)a[2]);
	t0 = vdrv_now_us();
	ok = send_stream(c, &pat, a[1]);
	ok = ok && send_pkt(c, OP_SHUTDOWN, SHUT_SEND, NULL, 0);
	ok = ok && wait_for(c, is_closed);
	kit_printf("vsock g2h port=%lu bytes=%lu sent=%u ok=%u us=%lu\n", (unsigned long)a[0],
		   (unsigned long)a[1], c->tx_cnt, ok, (unsigned long)(vdrv_now_us() - t0));
	conn_free(c);
	return ok;
}

static bool step_h2g(const char *v)
{
	uint64_t a[3];
	struct conn *c;
	bool ok;

	if (parse3(v, a) != 3)
		return false;
	c = conn_new(C_LISTEN, (uint32_t)a[0], 0);
	if (!c)
		return false;
	pat_init(&c->rpat, (uint32_t)a[2]);
	kit_printf("vsock listening port=%lu\n", (unsigned long)a[0]);
	ok = wait_for(c, peer_done_sending);
	if (ok && c->state != C_CLOSED)
		ok = wait_for(c, is_closed);
	ok = ok && c->rx_bytes == a[1] && c->rx_bad == 0;
	kit_printf("vsock h2g port=%lu bytes=%lu bad=%lu fnv=0x%08x ok=%u\n", (unsigned long)a[0],
		   (unsigned long)c->rx_bytes, (unsigned long)c->rx_bad, c->rx_fnv, ok);
	conn_free(c);
	return ok;
}

static bool step_multi(const char *v)
{
	uint64_t a[3], left[MAX_CONN];
	struct conn *c[MAX_CONN];
	struct pat pat[MAX_CONN];
	uint32_t n, i, done = 0;
	bool ok = true;

	if (parse3(v, a) != 3 || a[1] == 0 || a[1] > MAX_CONN)
		return false;
	n = (uint32_t)a[1];
	for (i = 0; i < n; i++) {
		c[i] = connect_to((uint32_t)a[0]);
		if (!c[i] || c[i]->state != C_OPEN) {
			kit_printf("vsock multi: connection %u failed ok=0\n", i);
			return false;
		}
		pat_init(&pat[i], i + 1);
		left[i] = a[2];
	}
	/* Round robin, one packet each, so the streams interleave. */
	while (ok && done < n) {
		done = 0;
		for (i = 0; i < n; i++) {
			uint32_t k = left[i] < 4096 ? (uint32_t)left[i] : 4096;

			if (!left[i]) {
				done++;
				continue;
			}
			ok = send_stream(c[i], &pat[i], k);
			left[i] -= k;
		}
	}
	for (i = 0; i < n && ok; i++)
		ok = send_pkt(c[i], OP_SHUTDOWN, SHUT_SEND, NULL, 0);
	for (i = 0; i < n && ok; i++)
		ok = wait_for(c[i], is_closed);
	kit_printf("vsock multi port=%lu conns=%u bytes=%lu ok=%u\n", (unsigned long)a[0], n,
		   (unsigned long)a[2], ok);
	for (i = 0; i < n; i++)
		conn_free(c[i]);
	return ok;
}

static bool step_refused(const char *v)
{
	uint64_t a[3];
	struct conn *c;
	bool ok;

	if (parse3(v, a) != 1)
		return false;
	c = connect_to((uint32_t)a[0]);
	ok = c && c->state == C_CLOSED && c->reset;
	kit_printf("vsock refused port=%lu reset=%u ok=%u\n", (unsigned long)a[0], c ? c->reset : 0,
		   ok);
	if (c)
		conn_free(c);
	return ok;
}

static bool step_reset(const char *v)
{
	uint64_t a[3];
	struct conn *c;
	struct pat pat;
	bool ok;

	if (parse3(v, a) != 2)
		return false;
	c = connect_to((uint32_t)a[0]);
	if (!c || c->state != C_OPEN) {
		kit_printf("vsock reset port=%lu connect failed ok=0\n", (unsigned long)a[0]);
		return false;
	}
	pat_init(&pat, 7);
	ok = send_stream(c, &pat, a[1]) && send_pkt(c, OP_RST, 0, NULL, 0);
	if (ok)
		c->state = C_CLOSED;
	kit_printf("vsock reset port=%lu sent=%u ok=%u\n", (unsigned long)a[0], c->tx_cnt, ok);
	conn_free(c);
	return ok;
}

static bool step_hclose(const char *v)
{
	uint64_t a[3];
	struct conn *c;
	bool ok;

	if (parse3(v, a) != 1)
		return false;
	c = conn_new(C_LISTEN, (uint32_t)a[0], 0);
	if (!c)
		return false;
	pat_init(&c->rpat, 9);
	kit_printf("vsock listening port=%lu\n", (unsigned long)a[0]);
	ok = wait_for(c, peer_done_sending) && c->rx_bad == 0;
	kit_printf("vsock hclose port=%lu bytes=%lu bad=%lu shut=%u reset=%u ok=%u\n",
		   (unsigned long)a[0], (unsigned long)c->rx_bytes, (unsigned long)c->rx_bad,
		   c->peer_shut, c->reset, ok);
	flush_ctl();
	if (c->state != C_CLOSED && send_pkt(c, OP_RST, 0, NULL, 0))
		c->state = C_CLOSED;
	conn_free(c);
	return ok;
}

static int vsock_setup(int transport)
{
	if (vdrv_find(&dev, transport, VSOCK_ID, 0) < 0) {
		kit_printf("vsock: no virtio-vsock on %s\n", vdrv_transport_name(transport));
		return -1;
	}
	if (vdrv_init(&dev, 0) < 0)
		return -1;
	guest_cid = vdrv_cfg64(&dev, 0);
	kit_printf("vsock cid=%lu\n", (unsigned long)guest_cid);
	if (vdrv_queue_setup(&dev, RXQ, QSIZE, VDRV_NO_VECTOR) < 0 ||
	    vdrv_queue_setup(&dev, TXQ, QSIZE, VDRV_NO_VECTOR) < 0 ||
	    vdrv_queue_setup(&dev, EVQ, 8, VDRV_NO_VECTOR) < 0)
		return -1;
	for (uint32_t i = 0; i < QSIZE; i++)
		slot_of_head[i] = -1;
	for (uint32_t s = 0; s < TX_SLOTS; s++)
		tx_slot[s] = alloc_or_die(HDR + TX_MAX, 64);
	ev_buf = alloc_or_die(64, 64);
	if (vdrv_driver_ok(&dev) < 0)
		return -1;
	for (uint32_t i = 0; i < 64; i++)
		rx_post(alloc_or_die(RX_BUF, 64));
	vdrv_kick(&dev, &dev.q[RXQ]);
	vdrv_add(&dev.q[EVQ], &(struct vdrv_buf){ ev_buf, 4, true }, 1);
	vdrv_kick(&dev, &dev.q[EVQ]);
	return 0;
}

long guest_main(const char *cmdline)
{
	static const struct {
		const char *key;
		bool (*fn)(const char *v);
	} steps[] = {
		{ "g2h=", step_g2h }, { "h2g=", step_h2g }, { "multi=", step_multi },
		{ "refused=", step_refused }, { "reset=", step_reset }, { "hclose=", step_hclose },
	};
	const char *t = kit_cmdline_value("transport");
	int transport = t && !strncmp(t, "mmio", 4) ? VDRV_MMIO : VDRV_PCI;
	const char *w = cmdline;
	bool ok = true;
	uint32_t n = 0;

	timeout_ms = kit_cmdline_uint("timeout_ms", 60000);
	vdrv_time_init();
	if (vsock_setup(transport) < 0)
		return 1;
	/* The steps, in command-line order. */
	while (w && *w) {
		while (*w == ' ')
			w++;
		for (unsigned i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
			size_t k = strlen(steps[i].key);
			if (!strncmp(w, steps[i].key, k)) {
				ok &= steps[i].fn(w + k);
				n++;
			}
		}
		while (*w && *w != ' ')
			w++;
	}
	kit_printf("vsock done steps=%u ok=%u\n", n, ok);
	return ok && n ? 0 : 1;
}
