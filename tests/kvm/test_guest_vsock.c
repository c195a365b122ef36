/* SPDX-License-Identifier: MIT */
/* vmkit's virtio-vsock driven by the guest kit's own stream-socket driver
 * at CPL3 (tests/guest/vsock.c), with this test as the host side through
 * the UNIX socket mapping (Firecracker's protocol): 64 MiB each way with
 * the content checked, several connections at once, a refused port, a
 * reset from the guest and a close from the host. */
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "../guest/guest_host.h"
#include "vmkit/device.h"

#define BIG (64u << 20)
#define VS_TIMEOUT_MS 600000

static char dir[64];
static char uds[80];

static void vs_teardown(void)
{
	char p[200];

	guest_teardown();
	if (!dir[0])
		return;
	/* The listeners this test made (vmkit removes its own socket). */
	for (int port = 5000; port < 5010; port++) {
		snprintf(p, sizeof(p), "%s_%d", uds, port);
		unlink(p);
	}
	rmdir(dir);
	dir[0] = '\0';
}

TestSuite(guest_vsock, .fini = vs_teardown, .timeout = 900);

static void vs_config(vmkit_virtio_transport t, const char *steps)
{
	vmkit_vsock_config vc = VMKIT_VSOCK_CONFIG_INIT;
	char cmd[512];

	const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	/* The sockets, <dir>/v.sock_<port>, must fit a sockaddr_un (and
	 * @dir its buffer): a long TMPDIR is not used. */
	if (strlen(base) + sizeof("/vmkit-vsock-XXXXXX") > sizeof(dir))
		base = "/tmp";
	snprintf(dir, sizeof(dir), "%s/vmkit-vsock-XXXXXX", base);
	cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(uds, sizeof(uds), "%s/v.sock", dir);
	snprintf(cmd, sizeof(cmd), "%s transport=%s", steps,
		 t == VMKIT_VIRTIO_MMIO ? "mmio" : "pci");
	guest_config("vsock", cmd);
	vc.transport = t;
	vc.guest_cid = 42;
	vc.uds_path = uds;
	cr_assert_eq(vmkit_machine_config_set_vsock(g.cfg, &vc), 0, "%s", vmkit_last_error());
}

/* ---- host-side streams --------------------------------------------------------------- */

struct pat {
	uint32_t x;
};

static void pat_init(struct pat *p, uint32_t seed) { p->x = seed ? seed : 1; }

static uint8_t pat_next(struct pat *p)
{
	p->x ^= p->x << 13;
	p->x ^= p->x >> 17;
	p->x ^= p->x << 5;
	return (uint8_t)(p->x >> 24);
}

/* Read @fd to EOF (or an error), checking each byte against @seed. */
struct sink {
	int fd;
	uint32_t seed;
	uint64_t bytes, bad;
	int err;                /* errno of the read that ended it, 0 on EOF */
};

/* No read waits for ever: a stalled stream fails the test (with the
 * guest's output) instead of hanging it. */
static void no_hang(int fd)
{
	struct timeval tv = { .tv_sec = 120 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void sink_run(struct sink *s)
{
	static __thread uint8_t buf[65536];
	struct pat p;

	no_hang(s->fd);
	pat_init(&p, s->seed);
	for (;;) {
		ssize_t n = read(s->fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			s->err = n < 0 ? errno : 0;
			return;
		}
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pat_next(&p))
				s->bad++;
		s->bytes += (uint64_t)n;
	}
}

static int write_pattern(int fd, uint32_t seed, uint64_t bytes)
{
	static __thread uint8_t buf[65536];
	struct pat p;

	pat_init(&p, seed);
	while (bytes) {
		size_t n = bytes < sizeof(buf) ? (size_t)bytes : sizeof(buf), off = 0;

		for (size_t i = 0; i < n; i++)
			buf[i] = pat_next(&p);
		while (off < n) {
			ssize_t w = write(fd, buf + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return -1;
			off += (size_t)w;
		}
		bytes -= n;
	}
	return 0;
}

/* A listener at "<uds>_<port>", as a host agent would have. */
static int listen_port(int port)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s_%d", uds, port);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "bind %s: %s", a.sun_path,
		     strerror(errno));
	cr_assert_eq(listen(fd, 8), 0);
	return fd;
}

/* Connect to vmkit's socket and ask for guest port @port; the fd once
 * "OK <hostport>" came back, or -1 (with the reply in @reply). */
static int host_connect(int port, char *reply, size_t len)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char line[32];
	size_t n = 0;

	cr_assert(fd >= 0);
	no_hang(fd);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", uds);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect %s: %s", uds,
		     strerror(errno));
	snprintf(line, sizeof(line), "CONNECT %d\n", port);
	cr_assert_eq(write(fd, line, strlen(line)), (ssize_t)strlen(line));
	/* The reply line, byte by byte: what follows it is the stream. */
	while (n + 1 < len) {
		ssize_t r = read(fd, reply + n, 1);
		if (r <= 0)
			break;
		if (reply[n++] == '\n')
			break;
	}
	reply[n] = '\0';
	if (strncmp(reply, "OK ", 3) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int accept_within(int lfd, int ms)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	if (poll(&p, 1, ms) != 1)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

struct accept_job {
	int lfd, n;
	struct sink s[8];
};

/* Accept @n connections on @lfd, one after another, and drain each. */
static void *accept_and_drain(void *arg)
{
	struct accept_job *j = arg;

	for (int i = 0; i < j->n; i++) {
		int fd = accept_within(j->lfd, 120000);
		if (fd < 0)
			break;
		j->s[i].fd = fd;
		sink_run(&j->s[i]);
		close(fd);
	}
	return NULL;
}

struct multi_job {
	int lfd, n;
	struct sink s[8];
	pthread_t t[8];
};

static void *drain_one(void *arg)
{
	struct sink *s = arg;

	sink_run(s);
	close(s->fd);
	return NULL;
}

/* Accept @n connections and drain them all at the same time (the guest
 * interleaves its streams: one at a time would stall on credit). */
static void *accept_all(void *arg)
{
	struct multi_job *j = arg;

	for (int i = 0; i < j->n; i++) {
		j->s[i].fd = accept_within(j->lfd, 120000);
		j->s[i].seed = (uint32_t)i + 1;
		if (j->s[i].fd < 0 || pthread_create(&j->t[i], NULL, drain_one, &j->s[i]) != 0) {
			j->n = i;
			break;
		}
	}
	for (int i = 0; i < j->n; i++)
		pthread_join(j->t[i], NULL);
	return NULL;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void vsock_64mib(vmkit_virtio_transport t)
{
	struct accept_job j = { .n = 1, .s = { { .seed = 1234 } } };
	struct sink from_guest;
	char steps[128], reply[64];
	pthread_t th;
	int fd;

	snprintf(steps, sizeof(steps), "g2h=5000:%u:1234 h2g=6000:%u:4321", BIG, BIG);
	vs_config(t, steps);
	j.lfd = listen_port(5000);
	cr_assert_eq(pthread_create(&th, NULL, accept_and_drain, &j), 0);
	guest_start();
	pthread_join(th, NULL);
	close(j.lfd);
	from_guest = j.s[0];
	cr_assert_eq(from_guest.bytes, BIG, "host got %llu of %u bytes from the guest (errno %d); "
		     "serial:\n%s", (unsigned long long)from_guest.bytes, BIG, from_guest.err, g.out);
	cr_assert_eq(from_guest.bad, 0, "%llu bytes differ", (unsigned long long)from_guest.bad);
	cr_assert(guest_wait_output("vsock listening port=6000", VS_TIMEOUT_MS), "%s", g.out);
	fd = host_connect(6000, reply, sizeof(reply));
	cr_assert(fd >= 0, "CONNECT 6000 answered '%s'", reply);
	cr_assert(reply[3] >= '0' && reply[3] <= '9', "reply '%s'", reply);
	cr_assert_eq(write_pattern(fd, 4321, BIG), 0, "write: %s; serial:\n%s", strerror(errno),
		     g.out);
	close(fd);
	guest_wait(VS_TIMEOUT_MS);
	guest_assert_exit(0);
	guest_expect("vsock cid=42\n");
	guest_expect("vsock g2h port=5000 bytes=%u sent=%u ok=1 us=", BIG, BIG);
	guest_expect("vsock h2g port=6000 bytes=%u bad=0 ", BIG);
}

Test(guest_vsock, pci_64mib_each_way)
{
	vsock_64mib(VMKIT_VIRTIO_PCI);
}

Test(guest_vsock, mmio_64mib_each_way)
{
	vsock_64mib(VMKIT_VIRTIO_MMIO);
}

/* Four interleaved connections; a port nobody listens on; a guest reset
 * mid-stream; a host close after 50,000 bytes. */
Test(guest_vsock, several_connections_refused_reset_and_host_close)
{
	struct multi_job m = { .n = 4 };
	struct accept_job r = { .n = 1, .s = { { .seed = 7 } } };
	pthread_t tm, tr;
	char reply[64];
	int fd;

	vs_config(VMKIT_VIRTIO_PCI, "multi=5001:4:4194304 refused=5999 reset=5002:100000 hclose=6001");
	m.lfd = listen_port(5001);
	r.lfd = listen_port(5002);
	cr_assert_eq(pthread_create(&tm, NULL, accept_all, &m), 0);
	cr_assert_eq(pthread_create(&tr, NULL, accept_and_drain, &r), 0);
	guest_start();
	pthread_join(tm, NULL);
	close(m.lfd);
	cr_assert_eq(m.n, 4, "accepted %d of 4 connections; serial:\n%s", m.n, g.out);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(m.s[i].bytes, 4194304, "connection %d: %llu bytes; serial:\n%s", i,
			     (unsigned long long)m.s[i].bytes, g.out);
		cr_assert_eq(m.s[i].bad, 0, "connection %d: %llu bytes differ", i,
			     (unsigned long long)m.s[i].bad);
	}
	pthread_join(tr, NULL);
	close(r.lfd);
	/* The reset ends the stream early or at its end, never with wrong data,
	 * and it ends it while the guest still runs (it waits on port 6001
	 * next): a read that timed out means the RST never reached the host. */
	cr_assert(r.s[0].err == 0 || r.s[0].err == ECONNRESET,
		  "the host side of the reset connection ended with errno %d, not EOF or ECONNRESET; serial:\n%s",
		  r.s[0].err, g.out);
	cr_assert_leq(r.s[0].bytes, 100000);
	cr_assert_eq(r.s[0].bad, 0);
	cr_assert(guest_wait_output("vsock listening port=6001", VS_TIMEOUT_MS), "%s", g.out);
	fd = host_connect(6001, reply, sizeof(reply));
	cr_assert(fd >= 0, "CONNECT 6001 answered '%s'", reply);
	cr_assert_eq(write_pattern(fd, 9, 50000), 0);
	close(fd);
	guest_wait(VS_TIMEOUT_MS);
	guest_assert_exit(0);
	guest_expect("vsock multi port=5001 conns=4 bytes=4194304 ok=1\n");
	guest_expect("vsock refused port=5999 reset=1 ok=1\n");
	guest_expect("vsock reset port=5002 sent=100000 ok=1\n");
	guest_expect("vsock hclose port=6001 bytes=50000 bad=0 ");
}

Test(guest_vsock, connect_to_a_port_without_listener_and_bad_lines)
{
	char reply[64];
	int fd;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;

	vs_config(VMKIT_VIRTIO_MMIO, "hclose=6100");
	guest_start();
	cr_assert(guest_wait_output("vsock listening port=6100", VS_TIMEOUT_MS), "%s", g.out);
	cr_assert_eq(stat(uds, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode), "%s is not a socket", uds);
	/* Nothing listens on 7000 in the guest: the guest resets, we get EOF. */
	fd = host_connect(7000, reply, sizeof(reply));
	cr_assert_eq(fd, -1, "CONNECT 7000 was accepted: '%s'", reply);
	/* A line that is not a CONNECT: the socket is closed. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", uds);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(write(fd, "HELLO there\n", 12), 12);
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char b[16];
		cr_assert_eq(poll(&p, 1, 10000), 1, "no answer to a bad line");
		cr_assert_leq(read(fd, b, sizeof(b)), 0, "a bad line got an answer");
	}
	close(fd);
	/* The device still works: the guest's listener takes this one. */
	fd = host_connect(6100, reply, sizeof(reply));
	cr_assert(fd >= 0, "CONNECT 6100 answered '%s'", reply);
	cr_assert_eq(write_pattern(fd, 9, 1000), 0);
	close(fd);
	guest_wait(VS_TIMEOUT_MS);
	guest_assert_exit(0);
	guest_expect("vsock hclose port=6100 bytes=1000 bad=0 ");
}
