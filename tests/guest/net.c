/* SPDX-License-Identifier: MIT */
/* net: vmkit's virtio-net driven from CPL3 by the kit's driver (vdrv.c).
 * The host test (tests/kvm/test_guest_net.c) is the peer behind the
 * device's backend and checks what it receives; this guest checks what
 * it receives. Frames are those of netframe.h.
 *
 *   transport=pci|mmio (default pci)   timeout_ms=T (no progress for T ms: fail)
 *   tx=N seed=S      send frames 0..N-1 of stream S (to ff:ff:ff:ff:ff:ff)
 *   rx=M rseed=R     receive frames 0..M-1 of stream R, in order, each
 *                    checked; frames of other ethertypes are counted and
 *                    ignored
 *   jumbo=1          the streams include NETF_JUMBO-byte frames
 *   rxbuf=B          receive buffer size (default 2048; with mergeable
 *                    buffers a frame spans several)
 *   mrg=0            do not negotiate VIRTIO_NET_F_MRG_RXBUF
 *   pause_at=K pause_ms=P  after K frames received, post no receive
 *                    buffers for P ms (the device must hold the rest)
 *   ping=N ip=A peer=B psize=S   ARP for B, then N ICMP echo requests of S
 *                    payload bytes from A, each reply checked
 *   ecam=A           PCI ECAM base (default 0xe0000000; QEMU's q35: 0xb0000000)
 *   fsize=B check=0  (benchmarks) every frame B bytes (NETF_HDR..NETF_JUMBO),
 *                    received test frames counted, not checked
 *   bench=1          for bench/virtio: print "net bench start" before the
 *                    streams and "net bench end us=T" after them (T from the
 *                    TSC), spinning 200 ms after each so that the host can
 *                    sample its counters while the guest only spins
 *
 * Prints "net mac=... status=..." first, then "net tx sent=N", "net rx
 * got=M other=O", "net ping replies=N", and exits with 0 when everything
 * asked for succeeded (1 otherwise). */
#include "netframe.h"
#include "vdrv.h"

#define NET_F_MAC 5
#define NET_F_MRG_RXBUF 15
#define NET_F_STATUS 16
#define HDR 12u                 /* struct virtio_net_hdr_v1 */
#define QSIZE 256u
#define TX_SLOTS 64u
#define MAX_FRAME (NETF_JUMBO + 64u)
#define RXQ 0
#define TXQ 1

static struct vdrv dev;
static uint64_t timeout_ms;
static uint8_t mac[6];
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static bool mergeable;

/* ---- receive ------------------------------------------------------------------ */

static uint8_t *rx_buf[QSIZE];          /* by descriptor head */
static uint32_t rxbuf_size;
static uint8_t *rx_frame;               /* a whole frame, header stripped */
static uint32_t rx_posted;              /* buffers the device holds */
static uint8_t *rx_spare[QSIZE];        /* buffers to post again */
static uint32_t n_spare;
static bool rx_paused;

static void *alloc_or_die(size_t size, size_t align)
{
	void *p = vdrv_alloc(size, align);

	if (!p) {
		kit_printf("net: out of heap for %lu bytes\n", (unsigned long)size);
		kit_exit(KIT_EXIT_KIT_ERROR);
	}
	return p;
}

/* Post the spare buffers (all of them, or none while paused). */
static void rx_refill(bool force)
{
	struct vdrv_queue *q = &dev.q[RXQ];
	bool added = false;

	if (rx_paused)
		return;
	/* Batch the notifications: each is an exit. */
	if (!force && n_spare < 32 && rx_posted >= 32)
		return;
	while (n_spare) {
		uint8_t *b = rx_spare[--n_spare];
		struct vdrv_buf vb = { b, rxbuf_size, true };
		int head = vdrv_add(q, &vb, 1);

		if (head < 0) {
			n_spare++;
			break;
		}
		rx_buf[head] = b;
		rx_posted++;
		added = true;
	}
	if (added)
		vdrv_kick(&dev, q);
}

/* The next used receive buffer, or NULL. */
static uint8_t *rx_next(uint32_t *len)
{
	int head = vdrv_poll(&dev.q[RXQ], len);
	uint8_t *b;

	if (head < 0)
		return NULL;
	b = rx_buf[head];
	rx_buf[head] = NULL;
	rx_posted--;
	rx_spare[n_spare++] = b;
	return b;
}

/* Assemble the next frame (header stripped) into rx_frame: its length,
 * 0 when none is complete yet, -1 on a malformed one (printed). A frame
 * whose later buffers have not arrived yet is waited for (a device
 * publishes all of a frame's buffers together). */
static long rx_frame_next(void)
{
	uint32_t len, nbuf, total, i;
	uint8_t *b = rx_next(&len);
	uint64_t t0;

	if (!b)
		return 0;
	if (len < HDR) {
		kit_printf("net rx: used length %u below the header\n", len);
		return -1;
	}
	nbuf = (uint32_t)b[10] | (uint32_t)b[11] << 8;
	if (nbuf == 0 || (!mergeable && nbuf != 1) || nbuf > QSIZE) {
		kit_printf("net rx: num_buffers %u\n", nbuf);
		return -1;
	}
	if (b[0] & ~3u || b[1]) {
		kit_printf("net rx: header flags 0x%x gso_type %u (no offloads negotiated)\n", b[0],
			   b[1]);
		return -1;
	}
	total = len - HDR;
	if (total > MAX_FRAME) {
		kit_printf("net rx: frame of %u bytes\n", total);
		return -1;
	}
	memcpy(rx_frame, b + HDR, total);
	for (i = 1; i < nbuf; i++) {
		t0 = vdrv_now_us();
		while (!(b = rx_next(&len))) {
			if (vdrv_now_us() - t0 > 1000000) {
				kit_printf("net rx: buffer %u of %u never came\n", i, nbuf);
				return -1;
			}
			cpu_relax();
		}
		if (total + len > MAX_FRAME) {
			kit_printf("net rx: merged frame over %u bytes\n", MAX_FRAME);
			return -1;
		}
		memcpy(rx_frame + total, b, len);
		total += len;
	}
	return total;
}

/* ---- transmit ------------------------------------------------------------------ */

static uint8_t *tx_slot[TX_SLOTS];
static bool tx_busy[TX_SLOTS];
static int8_t slot_of_head[QSIZE];

static void tx_reclaim(void)
{
	int head;

	while ((head = vdrv_poll(&dev.q[TXQ], NULL)) >= 0) {
		if (slot_of_head[head] >= 0)
			tx_busy[slot_of_head[head]] = false;
		slot_of_head[head] = -1;
	}
}

/* Queue frame @f (@len bytes, already at tx_slot[s] + HDR) in slot @s:
 * header and frame in one buffer, in two, or the frame split as well, in
 * turn, so that the device sees every layout. */
static bool tx_queue(uint32_t s, uint32_t len, uint32_t seq)
{
	uint8_t *p = tx_slot[s];
	struct vdrv_buf b[3];
	uint32_t n, half = len / 2;
	int head;

	memset(p, 0, HDR);
	switch (seq % 3) {
	case 0:
		b[0] = (struct vdrv_buf){ p, HDR + len, false };
		n = 1;
		break;
	case 1:
		b[0] = (struct vdrv_buf){ p, HDR, false };
		b[1] = (struct vdrv_buf){ p + HDR, len, false };
		n = 2;
		break;
	default:
		b[0] = (struct vdrv_buf){ p, HDR, false };
		b[1] = (struct vdrv_buf){ p + HDR, half, false };
		b[2] = (struct vdrv_buf){ p + HDR + half, len - half, false };
		n = 3;
		break;
	}
	head = vdrv_add(&dev.q[TXQ], b, n);
	if (head < 0)
		return false;
	tx_busy[s] = true;
	slot_of_head[head] = (int8_t)s;
	return true;
}

/* ---- streams ------------------------------------------------------------------ */

struct stream {
	uint32_t fsize;             /* fixed frame size, or 0 */
	bool check;
	uint32_t n_tx, seed, sent;
	uint32_t n_rx, rseed, got, other, bad;
	bool jumbo;
	uint32_t pause_at, pause_ms;
};

static bool tx_more(struct stream *st)
{
	bool added = false;

	tx_reclaim();
	for (uint32_t s = 0; s < TX_SLOTS && st->sent < st->n_tx; s++) {
		uint32_t len;

		if (tx_busy[s])
			continue;
		len = st->fsize ? st->fsize : netf_size(st->seed, st->sent, st->jumbo);
		netf_fill(tx_slot[s] + HDR, len, st->seed, st->sent, bcast, mac);
		if (!tx_queue(s, len, st->sent))
			break;
		st->sent++;
		added = true;
	}
	if (added)
		vdrv_kick(&dev, &dev.q[TXQ]);
	return added;
}

static bool rx_more(struct stream *st)
{
	bool progress = false;
	long len;

	while (st->got < st->n_rx && (len = rx_frame_next()) != 0) {
		enum netf_error e;

		progress = true;
		if (len < 0) {
			st->bad++;
			continue;
		}
		if (!netf_is_test(rx_frame, (uint32_t)len)) {
			st->other++;
			continue;
		}
		e = st->check ? netf_check(rx_frame, (uint32_t)len, st->rseed, st->got, st->jumbo) :
				NETF_OK;
		if (e != NETF_OK) {
			if (st->bad++ < 5)
				kit_printf("net rx error: frame %u (%ld bytes, seq field %u): code %u\n",
					   st->got, len, netf_get32(rx_frame + 18), (unsigned)e);
		}
		st->got++;
		if (st->pause_at && st->got == st->pause_at) {
			kit_printf("net rx pausing %u ms after %u frames\n", st->pause_ms, st->got);
			rx_paused = true;
			vdrv_delay_us(st->pause_ms * 1000ull);
			rx_paused = false;
			rx_refill(true);
		}
	}
	rx_refill(false);
	return progress;
}

static bool run_stream(struct stream *st)
{
	uint64_t last = vdrv_now_us();

	while (st->sent < st->n_tx || st->got < st->n_rx) {
		bool p = false;

		if (st->sent < st->n_tx)
			p |= tx_more(st);
		p |= rx_more(st);
		if (p) {
			last = vdrv_now_us();
		} else if (vdrv_now_us() - last > timeout_ms * 1000) {
			kit_printf("net: no progress for %lu ms (sent %u/%u, got %u/%u, rx posted %u)\n",
				   (unsigned long)timeout_ms, st->sent, st->n_tx, st->got, st->n_rx,
				   rx_posted);
			return false;
		} else {
			cpu_relax();
		}
	}
	/* Wait for the device to have taken every frame we sent. */
	while (dev.q[TXQ].num_free != dev.q[TXQ].size) {
		tx_reclaim();
		if (vdrv_now_us() - last > timeout_ms * 1000) {
			kit_printf("net: transmit queue never drained\n");
			return false;
		}
	}
	return true;
}

/* ---- ping: ARP and ICMP echo through a real IP stack ------------------------------ */

static uint16_t csum(const uint8_t *p, uint32_t len)
{
	uint32_t s = 0;

	for (uint32_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static bool parse_ip(const char *v, uint8_t ip[4])
{
	for (int i = 0; i < 4; i++) {
		uint32_t n = 0;
		int digits = 0;

		while (v && *v >= '0' && *v <= '9' && digits < 3) {
			n = n * 10 + (uint32_t)(*v++ - '0');
			digits++;
		}
		if (!digits || n > 255 || (i < 3 && *v++ != '.'))
			return false;
		ip[i] = (uint8_t)n;
	}
	return true;
}

static bool send_frame(const uint8_t *f, uint32_t len)
{
	uint64_t t0 = vdrv_now_us();

	for (;;) {
		tx_reclaim();
		for (uint32_t s = 0; s < TX_SLOTS; s++) {
			if (tx_busy[s])
				continue;
			memcpy(tx_slot[s] + HDR, f, len);
			if (!tx_queue(s, len, 0))
				break;
			vdrv_kick(&dev, &dev.q[TXQ]);
			return true;
		}
		if (vdrv_now_us() - t0 > timeout_ms * 1000)
			return false;
	}
}

/* Wait for a frame that @match accepts (others are ignored). */
static long wait_frame(bool (*match)(const uint8_t *f, long len, const void *ctx), const void *ctx)
{
	uint64_t t0 = vdrv_now_us();
	long len;

	while (vdrv_now_us() - t0 < timeout_ms * 1000) {
		len = rx_frame_next();
		rx_refill(false);
		if (len > 0 && match(rx_frame, len, ctx))
			return len;
		if (len == 0)
			cpu_relax();
	}
	return -1;
}

struct ping {
	uint8_t ip[4], peer[4], peer_mac[6];
	uint16_t id, seq;
	uint32_t psize;
};

static bool is_arp_reply(const uint8_t *f, long len, const void *ctx)
{
	const struct ping *p = ctx;

	return len >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[20] == 0 && f[21] == 2 &&
	       !memcmp(f + 28, p->peer, 4) && !memcmp(f + 38, p->ip, 4);
}

static bool is_echo_reply(const uint8_t *f, long len, const void *ctx)
{
	const struct ping *p = ctx;
	const uint8_t *ip = f + 14, *icmp;
	uint32_t ihl;

	if (len < 14 + 20 + 8 || f[12] != 0x08 || f[13] != 0x00 || (ip[0] >> 4) != 4 || ip[9] != 1)
		return false;
	ihl = (ip[0] & 15u) * 4;
	icmp = ip + ihl;
	if (len < (long)(14 + ihl + 8 + p->psize) || memcmp(ip + 12, p->peer, 4))
		return false;
	return icmp[0] == 0 && ((uint16_t)icmp[4] << 8 | icmp[5]) == p->id &&
	       ((uint16_t)icmp[6] << 8 | icmp[7]) == p->seq;
}

static bool run_ping(uint32_t count)
{
	static uint8_t f[1600];
	struct ping p = { .id = 0x766b };
	uint32_t replies = 0, len;
	long r;

	p.psize = (uint32_t)kit_cmdline_uint("psize", 56);
	if (!parse_ip(kit_cmdline_value("ip"), p.ip) || !parse_ip(kit_cmdline_value("peer"), p.peer) ||
	    p.psize > 1400) {
		kit_printf("net ping: needs ip=A.B.C.D peer=A.B.C.D (psize <= 1400)\n");
		return false;
	}
	/* ARP who-has peer */
	memset(f, 0, 60);
	memcpy(f, bcast, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x08, f[13] = 0x06;
	f[14] = 0, f[15] = 1, f[16] = 0x08, f[17] = 0, f[18] = 6, f[19] = 4, f[20] = 0, f[21] = 1;
	memcpy(f + 22, mac, 6);
	memcpy(f + 28, p.ip, 4);
	memcpy(f + 38, p.peer, 4);
	if (!send_frame(f, 60) || (r = wait_frame(is_arp_reply, &p)) < 0) {
		kit_printf("net ping: no ARP reply from the peer\n");
		return false;
	}
	memcpy(p.peer_mac, rx_frame + 22, 6);
	kit_printf("net arp peer_mac=%02x:%02x:%02x:%02x:%02x:%02x\n", p.peer_mac[0], p.peer_mac[1],
		   p.peer_mac[2], p.peer_mac[3], p.peer_mac[4], p.peer_mac[5]);
	for (p.seq = 1; p.seq <= count; p.seq++) {
		uint8_t *ip = f + 14, *icmp = f + 34;

		len = 14 + 20 + 8 + p.psize;
		memcpy(f, p.peer_mac, 6);
		memcpy(f + 6, mac, 6);
		f[12] = 0x08, f[13] = 0x00;
		memset(ip, 0, 20);
		ip[0] = 0x45;
		ip[2] = (uint8_t)((len - 14) >> 8), ip[3] = (uint8_t)(len - 14);
		ip[4] = (uint8_t)(p.seq >> 8), ip[5] = (uint8_t)p.seq;
		ip[6] = 0x40; /* DF */
		ip[8] = 64, ip[9] = 1;
		memcpy(ip + 12, p.ip, 4);
		memcpy(ip + 16, p.peer, 4);
		{
			uint16_t c = csum(ip, 20);
			ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
		}
		icmp[0] = 8, icmp[1] = 0, icmp[2] = icmp[3] = 0;
		icmp[4] = (uint8_t)(p.id >> 8), icmp[5] = (uint8_t)p.id;
		icmp[6] = (uint8_t)(p.seq >> 8), icmp[7] = (uint8_t)p.seq;
		kit_pattern(icmp + 8, p.psize, 0x1c3b0000u + p.seq);
		{
			uint16_t c = csum(icmp, 8 + p.psize);
			icmp[2] = (uint8_t)(c >> 8), icmp[3] = (uint8_t)c;
		}
		if (!send_frame(f, len))
			break;
		if ((r = wait_frame(is_echo_reply, &p)) < 0) {
			kit_printf("net ping: no reply to seq %u\n", p.seq);
			break;
		}
		{
			static uint8_t want[1400];
			const uint8_t *rip = rx_frame + 14;
			const uint8_t *ricmp = rip + (rip[0] & 15u) * 4;

			kit_pattern(want, p.psize, 0x1c3b0000u + p.seq);
			if (memcmp(ricmp + 8, want, p.psize) || csum(ricmp, 8 + p.psize) != 0) {
				kit_printf("net ping: reply %u has other data or a bad checksum\n", p.seq);
				break;
			}
		}
		replies++;
	}
	kit_printf("net ping sent=%u replies=%u\n", count, replies);
	return replies == count;
}

/* ---- set-up ------------------------------------------------------------------------ */

static int net_setup(int transport)
{
	uint64_t want = VDRV_BIT(NET_F_MAC) | VDRV_BIT(NET_F_STATUS);

	if (kit_cmdline_uint("mrg", 1))
		want |= VDRV_BIT(NET_F_MRG_RXBUF);
	if (vdrv_find(&dev, transport, 1, 0) < 0) {
		kit_printf("net: no virtio-net on %s\n", vdrv_transport_name(transport));
		return -1;
	}
	if (vdrv_init(&dev, want) < 0)
		return -1;
	mergeable = dev.features & VDRV_BIT(NET_F_MRG_RXBUF);
	for (int i = 0; i < 6; i++)
		mac[i] = vdrv_cfg8(&dev, (uint32_t)i);
	kit_printf("net mac=%02x:%02x:%02x:%02x:%02x:%02x status=%u offered=0x%lx mrg=%u\n", mac[0],
		   mac[1], mac[2], mac[3], mac[4], mac[5], vdrv_cfg16(&dev, 6),
		   (unsigned long)dev.offered, mergeable);
	if (vdrv_queue_setup(&dev, RXQ, QSIZE, VDRV_NO_VECTOR) < 0 ||
	    vdrv_queue_setup(&dev, TXQ, QSIZE, VDRV_NO_VECTOR) < 0)
		return -1;
	if (dev.q[RXQ].size != QSIZE || dev.q[TXQ].size != QSIZE) {
		kit_printf("net: queue sizes %u/%u, wanted %u\n", dev.q[RXQ].size, dev.q[TXQ].size,
			   QSIZE);
		return -1;
	}
	rxbuf_size = (uint32_t)kit_cmdline_uint("rxbuf", 2048);
	if (rxbuf_size < HDR + 64 || rxbuf_size > 65536) {
		kit_printf("net: rxbuf=%u out of range\n", rxbuf_size);
		return -1;
	}
	rx_frame = alloc_or_die(MAX_FRAME, 64);
	for (uint32_t i = 0; i < QSIZE; i++) {
		rx_spare[n_spare++] = alloc_or_die(rxbuf_size, 64);
		slot_of_head[i] = -1;
	}
	for (uint32_t s = 0; s < TX_SLOTS; s++)
		tx_slot[s] = alloc_or_die(HDR + MAX_FRAME, 64);
	if (vdrv_driver_ok(&dev) < 0)
		return -1;
	rx_refill(true);
	return 0;
}

long guest_main(const char *cmdline)
{
	const char *t = kit_cmdline_value("transport");
	int transport = t && !strncmp(t, "mmio", 4) ? VDRV_MMIO : VDRV_PCI;
	struct stream st = { 0 };
	uint32_t ping;
	bool ok = true;

	(void)cmdline;
	timeout_ms = kit_cmdline_uint("timeout_ms", 20000);
	vdrv_time_init();
	vdrv_ecam_base = kit_cmdline_uint("ecam", VDRV_ECAM_BASE);
	if (net_setup(transport) < 0)
		return 1;
	ping = (uint32_t)kit_cmdline_uint("ping", 0);
	if (ping)
		ok &= run_ping(ping);
	st.n_tx = (uint32_t)kit_cmdline_uint("tx", 0);
	st.seed = (uint32_t)kit_cmdline_uint("seed", 1);
	st.n_rx = (uint32_t)kit_cmdline_uint("rx", 0);
	st.rseed = (uint32_t)kit_cmdline_uint("rseed", 2);
	st.jumbo = kit_cmdline_uint("jumbo", 0) != 0;
	st.pause_at = (uint32_t)kit_cmdline_uint("pause_at", 0);
	st.pause_ms = (uint32_t)kit_cmdline_uint("pause_ms", 500);
	st.fsize = (uint32_t)kit_cmdline_uint("fsize", 0);
	st.check = kit_cmdline_uint("check", 1) != 0;
	if (st.fsize && (st.fsize < NETF_HDR || st.fsize > NETF_JUMBO)) {
		kit_printf("net: fsize=%u out of range\n", st.fsize);
		return 1;
	}
	if (ok && (st.n_tx || st.n_rx)) {
		bool bench = kit_cmdline_uint("bench", 0) != 0;
		uint64_t t0;

		if (bench) {
			kit_printf("net bench start\n");
			vdrv_delay_us(200000);
		}
		t0 = vdrv_now_us();
		ok &= run_stream(&st);
		if (bench) {
			kit_printf("net bench end us=%lu\n", (unsigned long)(vdrv_now_us() - t0));
			vdrv_delay_us(200000);
		}
		kit_printf("net tx sent=%u\n", st.sent);
		kit_printf("net rx got=%u other=%u bad=%u\n", st.got, st.other, st.bad);
		ok &= st.bad == 0 && st.sent == st.n_tx && st.got == st.n_rx;
	}
	kit_printf("net done ok=%u\n", ok);
	return ok ? 0 : 1;
}
