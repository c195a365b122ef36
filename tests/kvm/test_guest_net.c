/* SPDX-License-Identifier: MIT */
/* vmkit's virtio-net driven by the guest kit's driver at CPL3
 * (tests/guest/net.c) against each backend, with this test as the peer:
 *  - a UNIX datagram socketpair and a UNIX stream socketpair (QEMU's
 *    4-byte length framing): 100,000 frames of mixed sizes each way,
 *    content and order checked on both sides, the guest pausing its
 *    receive buffers half-way and the test pausing its reads (no frame
 *    lost: back-pressure both ways), then the device's counters;
 *  - a tap in a network namespace this test creates (unshare), by name
 *    and as an fd: ARP and ICMP echo answered by the namespace's own IP
 *    stack, plus frames checked both ways through a packet socket;
 *  - the embedder callback backend, and the rate limiter.
 * Network traffic never leaves the test's own namespace or socketpairs. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "../guest/guest_host.h"
#include "../guest/netframe.h"
#include "vmkit/device.h"

#define FRAMES 100000u
#define NET_TIMEOUT_MS 300000

static int sv[2] = { -1, -1 };

static void net_teardown(void)
{
	guest_teardown();
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0)
			close(sv[i]);
		sv[i] = -1;
	}
}

TestSuite(guest_net, .fini = net_teardown, .timeout = 600);

static const char *tname(vmkit_virtio_transport t)
{
	return t == VMKIT_VIRTIO_MMIO ? "mmio" : "pci";
}

static const uint8_t host_mac[6] = { 0x02, 0x00, 0x00, 0x76, 0x6b, 0x01 };
static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x76, 0x6b, 0x02 };

static void net_config(vmkit_virtio_transport t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void net_config(vmkit_virtio_transport t, const char *fmt, ...)
{
	char cmd[512], full[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "%s transport=%s timeout_ms=60000", cmd, tname(t));
	guest_config("net", full);
}

static void add_net(vmkit_net_config *n)
{
	memcpy(n->mac, guest_mac, 6);
	n->mac_set = true;
	cr_assert_eq(vmkit_machine_config_add_net(g.cfg, n), 0, "%s", vmkit_last_error());
}

/* ---- the socket peer ------------------------------------------------------------ */

struct peer {
	int fd;
	bool stream;            /* 4-byte big-endian length before each frame */
	uint32_t n_rx, seed;    /* frames to expect from the guest (its "seed") */
	uint32_t n_tx, rseed;   /* frames to send to the guest (its "rseed") */
	bool jumbo;
	uint32_t pause_at;      /* stop reading for a while after this many */
	/* results */
	uint32_t got, bad, first_bad_seq, first_bad_code, sent;
	char err[160];
};

static int write_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t n = write(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t len)
{
	uint8_t *b = p;

	while (len) {
		ssize_t n = read(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *peer_tx(void *arg)
{
	struct peer *p = arg;
	static uint8_t f[4 + NETF_JUMBO];

	for (uint32_t seq = 0; seq < p->n_tx; seq++) {
		uint32_t len = netf_size(p->rseed, seq, p->jumbo);
		int r;

		netf_fill(f + 4, len, p->rseed, seq, guest_mac, host_mac);
		if (p->stream) {
			f[0] = (uint8_t)(len >> 24), f[1] = (uint8_t)(len >> 16);
			f[2] = (uint8_t)(len >> 8), f[3] = (uint8_t)len;
			r = write_all(p->fd, f, 4 + len);
		} else {
			r = send(p->fd, f + 4, len, 0) == (ssize_t)len ? 0 : -1;
		}
		if (r < 0) {
			snprintf(p->err, sizeof(p->err), "send of frame %u: %s", seq, strerror(errno));
			break;
		}
		p->sent++;
	}
	return NULL;
}

static void peer_check(struct peer *p, const uint8_t *f, uint32_t len)
{
	enum netf_error e = netf_check(f, len, p->seed, p->got, p->jumbo);

	if (e != NETF_OK && p->bad++ == 0) {
		p->first_bad_seq = p->got;
		p->first_bad_code = e;
	}
	p->got++;
}

static void *peer_rx(void *arg)
{
	struct peer *p = arg;
	static uint8_t f[65536];
	struct timespec pause = { 0, 400 * 1000 * 1000 };

	while (p->got < p->n_rx) {
		uint32_t len;

		if (p->pause_at && p->got == p->pause_at)
			nanosleep(&pause, NULL); /* the device's transmit side must wait */
		if (p->stream) {
			uint8_t l[4];
			if (read_all(p->fd, l, 4) < 0)
				break;
			len = (uint32_t)l[0] << 24 | (uint32_t)l[1] << 16 | (uint32_t)l[2] << 8 | l[3];
			if (len > sizeof(f) || read_all(p->fd, f, len) < 0) {
				snprintf(p->err, sizeof(p->err), "stream: frame of %u bytes", len);
				break;
			}
		} else {
			ssize_t n = recv(p->fd, f, sizeof(f), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			len = (uint32_t)n;
		}
		peer_check(p, f, len);
	}
	return NULL;
}

static void run_socket_peer(vmkit_virtio_transport t, bool stream)
{
	struct peer p = { .stream = stream, .n_rx = FRAMES, .seed = 0x5e1d0000u + (uint32_t)getpid(),
			  .n_tx = FRAMES, .rseed = 0x7e1d0000u ^ (uint32_t)time(NULL), .jumbo = true,
			  .pause_at = FRAMES / 3 };
	vmkit_net_config n = VMKIT_NET_CONFIG_INIT;
	vmkit_net_stats st = { .size = sizeof(st) };
	pthread_t rx, tx;
	int bufsz = 16 * 1024;

	cr_assert_eq(socketpair(AF_UNIX, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0, sv),
		     0);
	/* A small send buffer on the device's end: our pause below fills it. */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
	/* A stalled stream fails the test instead of hanging it. */
	setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &(struct timeval){ .tv_sec = 60 },
		   sizeof(struct timeval));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDTIMEO, &(struct timeval){ .tv_sec = 60 },
		   sizeof(struct timeval));
	p.fd = sv[1];
	net_config(t, "tx=%u seed=%u rx=%u rseed=%u jumbo=1 pause_at=%u pause_ms=500", p.n_rx,
		   p.seed, p.n_tx, p.rseed, FRAMES / 2);
	n.transport = t;
	n.backend = stream ? VMKIT_NET_STREAM : VMKIT_NET_DGRAM;
	n.fd = sv[0];
	add_net(&n);
	guest_start();
	/* vmkit works on its own duplicate: ours can go. */
	close(sv[0]);
	sv[0] = -1;
	cr_assert_eq(pthread_create(&rx, NULL, peer_rx, &p), 0);
	cr_assert_eq(pthread_create(&tx, NULL, peer_tx, &p), 0);
	guest_wait(NET_TIMEOUT_MS);
	/* The guest has exited: its frames are all out; unblock the threads. */
	shutdown(sv[1], SHUT_RDWR);
	pthread_join(rx, NULL);
	pthread_join(tx, NULL);
	guest_assert_exit(0);
	guest_expect("net mac=52:54:00:76:6b:02 status=1 ");
	guest_expect("net tx sent=%u\n", FRAMES);
	guest_expect("net rx got=%u other=0 bad=0\n", FRAMES);
	guest_expect("net rx pausing 500 ms after %u frames\n", FRAMES / 2);
	cr_assert_eq(p.got, FRAMES, "host got %u of %u frames (%s); serial:\n%s", p.got, FRAMES,
		     p.err, g.out);
	cr_assert_eq(p.bad, 0, "%u frames from the guest were wrong, the first #%u (code %u)", p.bad,
		     p.first_bad_seq, p.first_bad_code);
	cr_assert_eq(p.sent, FRAMES, "sent %u: %s", p.sent, p.err);
	cr_assert_eq(vmkit_machine_net_get_stats(g.m, 0, &st), 0, "%s", vmkit_last_error());
	cr_assert_eq(st.tx_frames, FRAMES);
	cr_assert_eq(st.rx_frames, FRAMES);
	cr_assert_eq(st.tx_dropped, 0);
	cr_assert_eq(st.rx_dropped, 0);
	/* The guest's pause made frames wait for buffers; our pause made the
	 * transmit queue wait for the socket. */
	cr_assert_gt(st.rx_no_buffer, 0, "the guest's pause left no trace in rx_no_buffer");
	cr_assert_gt(st.tx_backpressure, 0, "our pause left no trace in tx_backpressure");
	cr_assert_gt(st.rx_bytes, (uint64_t)FRAMES * NETF_MIN);
	cr_assert_eq(vmkit_machine_net_get_stats(g.m, 1, &st), -ENODEV);
}

Test(guest_net, dgram_pci_100k_frames_each_way_in_order_no_loss)
{
	run_socket_peer(VMKIT_VIRTIO_PCI, false);
}

Test(guest_net, stream_mmio_100k_frames_each_way_in_order_no_loss)
{
	run_socket_peer(VMKIT_VIRTIO_MMIO, true);
}

/* ---- tap in a network namespace of our own -------------------------------------- */

#define TAP_IP "192.168.77.1"
#define GUEST_IP "192.168.77.2"

/* A namespace for this test process only (Criterion runs each test in a
 * process of its own): the tap and every frame stay in it. Without the
 * privileges for it the test skips, saying why; as root (CI runs as
 * root) a failure here is a failure. */
static void enter_netns(void)
{
	const char *why = NULL;

	if (access("/dev/net/tun", R_OK | W_OK) != 0)
		why = "needs /dev/net/tun";
	else if (unshare(CLONE_NEWNET) != 0)
		why = "needs a network namespace of its own (CAP_SYS_ADMIN)";
	if (!why)
		return;
	if (geteuid() == 0)
		cr_assert_fail("as root, and yet: %s: %s", why, strerror(errno));
	cr_skip_test("skipped, %s: %s", why, strerror(errno));
}

/* Create tap @name (with vnet headers); persistent when @persist so that
 * vmkit can open it by name after we close ours. Its fd otherwise. */
static int tap_create(const char *name, bool persist)
{
	struct ifreq ifr = { 0 };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	cr_assert(fd >= 0, "/dev/net/tun: %s", strerror(errno));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	cr_assert_eq(ioctl(fd, TUNSETIFF, &ifr), 0, "TUNSETIFF %s: %s", name, strerror(errno));
	if (persist) {
		cr_assert_eq(ioctl(fd, TUNSETPERSIST, 1), 0, "TUNSETPERSIST: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Address @name with TAP_IP/24 and bring it up. */
static void tap_up(const char *name)
{
	struct ifreq ifr = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	cr_assert(s >= 0);
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, TAP_IP, &sin->sin_addr);
	cr_assert_eq(ioctl(s, SIOCSIFADDR, &ifr), 0, "SIOCSIFADDR: %s", strerror(errno));
	inet_pton(AF_INET, "255.255.255.0", &sin->sin_addr);
	cr_assert_eq(ioctl(s, SIOCSIFNETMASK, &ifr), 0, "SIOCSIFNETMASK: %s", strerror(errno));
	cr_assert_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	cr_assert_eq(ioctl(s, SIOCSIFFLAGS, &ifr), 0, "SIOCSIFFLAGS: %s", strerror(errno));
	close(s);
}

/* A packet socket on @name: what the guest sends arrives here, what we
 * send here reaches the guest. */
static int packet_socket(const char *name)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(NETF_ETHERTYPE) };
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(NETF_ETHERTYPE));
	/* Room for every frame of the stream (~2.5 KiB of truesize each), so
	 * that a slow test thread loses none; and no read waits for ever. */
	int bufsz = 64 << 20;
	struct timeval tv = { .tv_sec = 60 };

	cr_assert(s >= 0, "AF_PACKET: %s", strerror(errno));
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	cr_assert_eq(ioctl(s, SIOCGIFINDEX, &ifr), 0, "SIOCGIFINDEX %s: %s", name, strerror(errno));
	sll.sll_ifindex = ifr.ifr_ifindex;
	cr_assert_eq(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0, "bind: %s", strerror(errno));
	setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &bufsz, sizeof(bufsz));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return s;
}

struct tap_peer {
	int fd;
	uint32_t n_rx, seed, n_tx, rseed;
	uint32_t got, bad, sent;
};

static void *tap_peer_rx(void *arg)
{
	struct tap_peer *p = arg;
	static uint8_t f[65536];

	while (p->got < p->n_rx) {
		ssize_t n = recv(p->fd, f, sizeof(f), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (!netf_is_test(f, (uint32_t)n))
			continue;
		if (netf_check(f, (uint32_t)n, p->seed, p->got, false) != NETF_OK)
			p->bad++;
		p->got++;
	}
	return NULL;
}

/* The guest's transmit side paces itself on the device; our sends to
 * the tap are dropped by the kernel when the tap's queue is full, so they
 * go once the guest is up, in a burst below the tap's queue length. */
static void tap_peer_send(struct tap_peer *p)
{
	static uint8_t f[NETF_MAX];

	for (uint32_t seq = 0; seq < p->n_tx; seq++) {
		uint32_t len = netf_size(p->rseed, seq, false);

		netf_fill(f, len, p->rseed, seq, guest_mac, host_mac);
		if (send(p->fd, f, len, 0) == (ssize_t)len)
			p->sent++;
	}
}

static void tap_test(vmkit_virtio_transport t, bool by_fd)
{
	const char *name = "vmkt0";
	struct tap_peer p = { .n_rx = 5000, .seed = 0x7a900000u + (uint32_t)getpid(), .n_tx = 200,
			      .rseed = 0x7a91u };
	vmkit_net_config n = VMKIT_NET_CONFIG_INIT;
	vmkit_net_stats st = { .size = sizeof(st) };
	pthread_t rx;
	int tapfd;

	enter_netns();
	tapfd = tap_create(name, !by_fd);
	tap_up(name);
	p.fd = packet_socket(name);
	net_config(t, "ping=20 psize=1000 ip=" GUEST_IP " peer=" TAP_IP " tx=%u seed=%u rx=%u rseed=%u",
		   p.n_rx, p.seed, p.n_tx, p.rseed);
	n.transport = t;
	n.backend = VMKIT_NET_TAP;
	if (by_fd)
		n.fd = tapfd;
	else
		n.ifname = name;
	add_net(&n);
	guest_start();
	if (tapfd >= 0)
		close(tapfd);
	cr_assert_eq(pthread_create(&rx, NULL, tap_peer_rx, &p), 0);
	cr_assert(guest_wait_output("net ping sent=20 replies=", NET_TIMEOUT_MS), "%s", g.out);
	tap_peer_send(&p);
	guest_wait(NET_TIMEOUT_MS);
	shutdown(p.fd, SHUT_RDWR);
	pthread_join(rx, NULL);
	close(p.fd);
	guest_assert_exit(0);
	guest_expect("net arp peer_mac=");
	guest_expect("net ping sent=20 replies=20\n");
	guest_expect("net rx got=%u ", p.n_tx);
	guest_expect("bad=0\n");
	cr_assert_eq(p.sent, p.n_tx);
	cr_assert_eq(p.got, p.n_rx, "the namespace saw %u of the guest's %u frames", p.got, p.n_rx);
	cr_assert_eq(p.bad, 0);
	cr_assert_eq(vmkit_machine_net_get_stats(g.m, 0, &st), 0, "%s", vmkit_last_error());
	cr_assert_geq(st.tx_frames, p.n_rx + 21);  /* ARP, pings, the stream */
	cr_assert_geq(st.rx_frames, p.n_tx + 21);
	cr_assert_eq(st.tx_dropped, 0);
}

Test(guest_net, tap_by_name_pci_ping_and_frames_in_a_netns)
{
	tap_test(VMKIT_VIRTIO_PCI, false);
}

Test(guest_net, tap_fd_mmio_ping_and_frames_in_a_netns)
{
	tap_test(VMKIT_VIRTIO_MMIO, true);
}

/* ---- the embedder's callback backend ----------------------------------------------- */

/* Written on the I/O thread, read here: atomics. No cr_assert on the
 * I/O thread (it would unwind the wrong thread). */
struct cb {
	uint32_t seed, eagain_at;  /* refuse once at this frame, until kicked */
	atomic_uint got, bad;
	atomic_bool refused;
	atomic_uint ready_calls;
};

static int cb_tx(void *ud, const struct iovec *iov, unsigned n, size_t len)
{
	struct cb *c = ud;
	static uint8_t f[65536];
	size_t off = 0;

	if (len > sizeof(f)) {
		c->bad++;
		return 0;
	}
	if (c->got == c->eagain_at && !c->refused) {
		c->refused = true;
		return -EAGAIN;
	}
	for (unsigned i = 0; i < n; i++) {
		memcpy(f + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	if (off != len)
		c->bad++;
	else if (netf_check(f, (uint32_t)len, c->seed, c->got, false) != NETF_OK)
		c->bad++;
	c->got++;
	return 0;
}

static void cb_ready(void *ud)
{
	struct cb *c = ud;

	atomic_fetch_add(&c->ready_calls, 1);
}

Test(guest_net, callback_backend_pci)
{
	struct cb c = { .seed = 0xcb00u, .eagain_at = 300 };
	vmkit_net_config n = VMKIT_NET_CONFIG_INIT;
	vmkit_net_stats st = { .size = sizeof(st) };
	const uint32_t n_tx = 2000, n_rx = 3000;
	static uint8_t f[NETF_MAX];
	uint32_t seq = 0, eagain = 0;
	struct timespec ts = { 0, 2 * 1000 * 1000 };

	/* The guest stops taking frames for a second after 1000: the inbox
	 * must fill and refuse, however fast or slow each side runs. */
	net_config(VMKIT_VIRTIO_PCI, "tx=%u seed=%u rx=%u rseed=%u pause_at=1000 pause_ms=1000", n_tx,
		   c.seed, n_rx, 0xcb01u);
	n.backend = VMKIT_NET_CALLBACK;
	n.tx_fn = cb_tx;
	n.ready_fn = cb_ready;
	n.userdata = &c;
	add_net(&n);
	guest_start();
	/* Held at frame 300 until we kick. */
	for (int i = 0; i < GUEST_TIMEOUT_MS / 2 && !c.refused; i++)
		nanosleep(&ts, NULL);
	cr_assert(c.refused, "the guest's frames never reached frame 300: %s", g.out);
	nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
	cr_assert_eq(c.got, 300, "frames went on after -EAGAIN without a kick");
	cr_assert_eq(vmkit_machine_net_kick(g.m, 0), 0, "%s", vmkit_last_error());
	while (seq < n_rx) {
		uint32_t len = netf_size(0xcb01u, seq, false);
		int r;

		netf_fill(f, len, 0xcb01u, seq, guest_mac, host_mac);
		r = vmkit_machine_net_receive(g.m, 0, f, len);
		if (r == -EAGAIN) {
			eagain++;
			nanosleep(&ts, NULL);
			continue;
		}
		cr_assert_eq(r, 0, "%s", vmkit_last_error());
		seq++;
	}
	cr_assert_eq(vmkit_machine_net_receive(g.m, 0, f, 13), -EMSGSIZE);
	cr_assert_eq(vmkit_machine_net_receive(g.m, 0, f, 65536), -EMSGSIZE);
	guest_wait(NET_TIMEOUT_MS);
	guest_assert_exit(0);
	guest_expect("net rx got=%u other=0 bad=0\n", n_rx);
	cr_assert_eq(c.got, n_tx);
	cr_assert_eq(c.bad, 0);
	/* 2000 frames left at the pause, room for 512 (ring and inbox): we
	 * must have been told to wait, and told when to go on. */
	cr_assert_gt(eagain, 0);
	cr_assert_gt(atomic_load(&c.ready_calls), 0);
	cr_assert_eq(vmkit_machine_net_get_stats(g.m, 0, &st), 0);
	cr_assert_eq(st.tx_frames, n_tx);
	cr_assert_eq(st.rx_frames, n_rx);
	cr_assert_geq(st.tx_backpressure, 1);
}

/* ---- rate limits --------------------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Through a 400 frames/s limit with a burst of 50, no window of t seconds
 * sees more than 50 + 400 t frames (+1: the frame that takes the bucket
 * into debt). The window is measured from the device's own counter, read
 * at both ends, so a test thread that looks late only shortens it; it
 * must hold at least 400 frames to say anything. Then the limit is lifted
 * at run time. */
Test(guest_net, tx_rate_limit_holds_and_changes_at_run_time)
{
	struct peer p = { .n_rx = 1600, .seed = 0x4a7e0000u };
	vmkit_net_config n = VMKIT_NET_CONFIG_INIT;
	vmkit_net_stats st = { .size = sizeof(st) };
	vmkit_net_stats s0 = { .size = sizeof(s0) }, s1 = { .size = sizeof(s1) };
	vmkit_rate_limit none = { 0 };
	pthread_t rx;
	double ta, tb;
	uint64_t n_win;
	struct timespec ts = { 0, 1000 * 1000 };

	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	p.fd = sv[1];
	net_config(VMKIT_VIRTIO_PCI, "tx=%u seed=%u", p.n_rx, p.seed);
	n.backend = VMKIT_NET_DGRAM;
	n.fd = sv[0];
	n.tx.frames_per_sec = 400;
	n.tx.frames_burst = 50;
	add_net(&n);
	cr_assert_eq(pthread_create(&rx, NULL, peer_rx, &p), 0);
	guest_start();
	cr_assert(guest_wait_output("net mac=", GUEST_TIMEOUT_MS), "%s", g.out);
	ta = now_s();
	cr_assert_eq(vmkit_machine_net_get_stats(g.m, 0, &s0), 0);
	while (p.got < 1200 && now_s() - ta < 60)
		nanosleep(&ts, NULL);
	cr_assert_eq(vmkit_machine_net_get_stats(g.m, 0, &s1), 0);
	tb = now_s();
	cr_assert_geq(p.got, 1200);
	n_win = s1.tx_frames - s0.tx_frames;
	cr_assert_geq(n_win, 400, "window too short: %" PRIu64 " frames already sent when it opened",
		      s0.tx_frames);
	cr_assert_leq((double)n_win, 51.0 + 400.0 * (tb - ta),
		      "%" PRIu64 " frames in %.3f s through a 400 frames/s limit (burst 50)", n_win,
		      tb - ta);
	cr_assert_eq(vmkit_machine_net_set_rate_limit(g.m, 0, NULL, &none), 0, "%s",
		     vmkit_last_error());
	guest_wait(NET_TIMEOUT_MS);
	shutdown(sv[1], SHUT_RDWR);
	pthread_join(rx, NULL);
	guest_assert_exit(0);
	cr_assert_eq(p.got, p.n_rx);
	cr_assert_eq(p.bad, 0);
	cr_assert_eq(vmkit_machine_net_get_stats(g.m, 0, &st), 0);
	cr_assert_gt(st.tx_throttled, 0);
	cr_assert_eq(vmkit_machine_net_set_rate_limit(g.m, 3, NULL, &none), -ENODEV);
}
