/* SPDX-License-Identifier: MIT */
/* virtio-console over the unit-test driver, with pipes and socketpairs as
 * the host side and the I/O loop on a thread: echo both ways, output
 * back-pressure (a full pipe never blocks the notifying thread and the
 * data arrives in order once drained), the multiport control handshake
 * with port names, end of input, and save/restore. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/virtio/devices.h"
#include "loopthread.h"
#include "vqdriver.h"

#define F_MULTIPORT (1ull << 1)
#define MAX_Q 8

struct con {
	struct vqd_mem m;
	struct vqd_queue q[MAX_Q];
	struct vqd_transport t;
	struct vmkit_virtio_dev dev;
	const vmkit_virtio_ops *ops;
	void *opaque;
	struct loop_thread lt;
	unsigned nq;
};

static void con_up(struct con *c, const struct virtio_console_port *ports, size_t n)
{
	struct vqd_queue *qs[MAX_Q];

	memset(c, 0, sizeof(*c));
	loop_thread_new(&c->lt);
	vqd_mem_init(&c->m, 0, 8u << 20);
	vqd_transport_init(&c->t);
	cr_assert_eq(virtio_console_create(ports, n, c->lt.loop, &c->ops, &c->opaque), 0, "%s",
		     vmkit_last_error());
	cr_assert_eq(c->ops->device_id, VMKIT_VIRTIO_ID_CONSOLE);
	c->nq = c->ops->num_queues;
	cr_assert_leq(c->nq, MAX_Q);
	cr_assert_eq(virtio_dev_init(&c->dev, c->ops, c->opaque, &c->m.gm, &c->t.tr, &c->t, "con0"),
		     0);
	loop_thread_start(&c->lt);
	for (unsigned i = 0; i < c->nq; i++) {
		vqd_queue_init(&c->q[i], &c->m, 64);
		qs[i] = &c->q[i];
	}
	cr_assert(vqd_status_live(vqd_handshake(&c->dev, VQD_FEATURES_ALL, qs, c->nq)));
}

static void con_down(struct con *c)
{
	loop_thread_stop(&c->lt);
	virtio_dev_destroy(&c->dev);
	loop_thread_free(&c->lt);
	vqd_mem_destroy(&c->m);
}

/* Post @n writable buffers of @len bytes on @q; returns the first gpa
 * (they follow each other at @len-byte strides, 16-aligned). */
static uint64_t post_rx(struct con *c, unsigned q, unsigned n, uint32_t len)
{
	uint64_t first = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t g = vqd_alloc(&c->m, len, 16);

		if (i == 0)
			first = g;
		vqd_publish(&c->q[q], (uint16_t)vqd_add_chain(&c->q[q],
							      &(struct vqd_buf){ g, len, true }, 1));
	}
	vqd_kick(&c->dev, (uint16_t)q);
	return first;
}

/* Queue @len bytes of @data for the device on @q (no kick). */
static void post_tx_nokick(struct con *c, unsigned q, const void *data, uint32_t len)
{
	uint64_t g = vqd_alloc(&c->m, len ? len : 1, 16);

	memcpy(vqd_hva(&c->m, g, len ? len : 1), data, len);
	vqd_publish(&c->q[q], (uint16_t)vqd_add_chain(&c->q[q], &(struct vqd_buf){ g, len, false },
						      1));
}

static void post_tx(struct con *c, unsigned q, const void *data, uint32_t len)
{
	post_tx_nokick(c, q, data, len);
	vqd_kick(&c->dev, (uint16_t)q);
}

/* Read exactly @n bytes from @fd within @ms milliseconds. */
static size_t read_for(int fd, void *buf, size_t n, int ms)
{
	size_t got = 0;
	double end = lt_now() + ms / 1000.0;

	while (got < n && lt_now() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 10) <= 0)
			continue;
		r = read(fd, (uint8_t *)buf + got, n - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

/* Wait for a used entry on @q and return its length (or -1). */
static long wait_used(struct con *c, unsigned q, uint32_t *id)
{
	uint32_t len, i2;

	if (!LT_WAIT(vqd_used_pending(&c->q[q]) > 0, 5000))
		return -1;
	cr_assert(vqd_get_used(&c->q[q], id ? id : &i2, &len));
	return len;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

Test(virtio_console, echo_both_ways)
{
	int in[2], out[2];
	struct con c;
	uint64_t rx;
	char buf[64];
	uint32_t id;

	cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	con_up(&c, &(struct virtio_console_port){ NULL, in[0], out[1] }, 1);
	cr_assert_eq(c.nq, 2, "a single port has no control queues");
	cr_assert_eq(vqd_device_features(&c.dev) & F_MULTIPORT, 0);
	/* the caller's fds keep their flags: blocking */
	cr_assert_eq(fcntl(in[0], F_GETFL) & O_NONBLOCK, 0);
	cr_assert_eq(fcntl(out[1], F_GETFL) & O_NONBLOCK, 0);

	rx = post_rx(&c, 0, 4, 64);
	cr_assert_eq(write(in[1], "hello", 5), 5);
	cr_assert_eq(wait_used(&c, 0, &id), 5, "host input did not reach the guest");
	cr_assert_eq(memcmp(vqd_hva(&c.m, rx, 5), "hello", 5), 0);
	cr_assert_eq(write(in[1], "again", 5), 5);
	cr_assert_eq(wait_used(&c, 0, NULL), 5);
	cr_assert_eq(memcmp(vqd_hva(&c.m, rx + 64, 5), "again", 5), 0);

	post_tx(&c, 1, "world\n", 6);
	cr_assert_eq(read_for(out[0], buf, 6, 5000), 6);
	cr_assert_eq(memcmp(buf, "world\n", 6), 0);
	cr_assert_eq(wait_used(&c, 1, NULL), 0, "transmit buffer not returned");
	con_down(&c);
	close(in[0]);
	close(in[1]);
	close(out[0]);
	close(out[1]);
}

Test(virtio_console, output_back_pressure_keeps_order)
{
	enum { CHUNK = 1024, N = 48 };
	int out[2];
	struct con c;
	uint8_t chunk[CHUNK], *got = malloc(N * CHUNK);
	double t0, t1;
	uint16_t used;

	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	cr_assert_geq(fcntl(out[0], F_SETPIPE_SZ, 4096), 4096);
	con_up(&c, &(struct virtio_console_port){ NULL, -1, out[1] }, 1);
	for (unsigned i = 0; i < N; i++) {
		for (unsigned k = 0; k < CHUNK; k++)
			chunk[k] = (uint8_t)(i * 7 + k);
		post_tx_nokick(&c, 1, chunk, CHUNK);
	}
	t0 = lt_now();
	vqd_kick(&c.dev, 1); /* must come back although nobody reads the pipe */
	t1 = lt_now();
	cr_assert_lt(t1 - t0, 2.0, "the notifying thread was held %.2f s", t1 - t0);
	usleep(100 * 1000);
	used = vqd_used_pending(&c.q[1]);
	cr_assert_lt(used, N, "all %u buffers taken while the pipe is full", used);
	cr_assert_gt(used, 0);
	/* drain: everything arrives, in order */
	cr_assert_eq(read_for(out[0], got, N * CHUNK, 10000), N * CHUNK);
	for (unsigned i = 0; i < N; i++)
		for (unsigned k = 0; k < CHUNK; k++)
			cr_assert_eq(got[i * CHUNK + k], (uint8_t)(i * 7 + k),
				     "byte %u of chunk %u out of order", k, i);
	cr_assert(LT_WAIT(vqd_used_pending(&c.q[1]) == N, 5000));
	con_down(&c);
	free(got);
	close(out[0]);
	close(out[1]);
}

Test(virtio_console, output_to_a_closed_reader_is_dropped_without_sigpipe)
{
	int out[2];
	struct con c;

	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	con_up(&c, &(struct virtio_console_port){ NULL, -1, out[1] }, 1);
	close(out[0]);
	post_tx(&c, 1, "lost", 4);
	cr_assert_eq(wait_used(&c, 1, NULL), 0);
	post_tx(&c, 1, "lost too", 8);
	cr_assert_eq(wait_used(&c, 1, NULL), 0);
	cr_assert(vqd_status_live(vqd_status(&c.dev)));
	con_down(&c);
	close(out[1]);
}

struct ctl {
	uint32_t id;
	uint16_t event, value;
	char name[64];
};

/* Take the control messages the device sent on the control receive
 * queue (each used entry's buffer found through its head descriptor). */
static unsigned take_ctl(struct con *c, struct ctl *out, unsigned max)
{
	unsigned n = 0;
	uint32_t id, len;

	while (n < max && vqd_get_used(&c->q[2], &id, &len)) {
		struct virtq_desc d;
		const uint8_t *p;

		memcpy(&d, vqd_hva(&c->m, c->q[2].desc + 16ull * id, 16), 16);
		p = vqd_hva(&c->m, d.addr, 64);
		cr_assert_geq(len, 8);
		cr_assert_leq(len, 64);
		memcpy(&out[n].id, p, 4);
		memcpy(&out[n].event, p + 4, 2);
		memcpy(&out[n].value, p + 6, 2);
		memset(out[n].name, 0, sizeof(out[n].name));
		memcpy(out[n].name, p + 8, len - 8);
		n++;
	}
	return n;
}

static void send_ctl(struct con *c, uint32_t id, uint16_t event, uint16_t value)
{
	uint8_t m[8];

	memcpy(m, &id, 4);
	memcpy(m + 4, &event, 2);
	memcpy(m + 6, &value, 2);
	post_tx(c, 3, m, 8);
}

static bool has_ctl(const struct ctl *m, unsigned n, uint32_t id, uint16_t event,
		    const char *name)
{
	for (unsigned i = 0; i < n; i++)
		if (m[i].id == id && m[i].event == event &&
		    (!name || strcmp(m[i].name, name) == 0))
			return true;
	return false;
}

Test(virtio_console, multiport_handshake_names_and_data)
{
	int in0[2], out0[2], sp[2];
	struct virtio_console_port ports[3];
	struct con c;
	struct ctl msgs[32];
	unsigned n = 0;
	uint64_t rx1;
	uint32_t maxp;
	char buf[16];

	cr_assert_eq(pipe2(in0, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(out0, O_CLOEXEC), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	ports[0] = (struct virtio_console_port){ NULL, in0[0], out0[1] };
	ports[1] = (struct virtio_console_port){ "org.test.one", sp[0], sp[0] };
	ports[2] = (struct virtio_console_port){ "two", -1, -1 };
	con_up(&c, ports, 3);
	cr_assert(vqd_device_features(&c.dev) & F_MULTIPORT);
	cr_assert_eq(c.nq, 8, "3 ports: 2 per port plus the control pair");
	vqd_lock(&c.dev);
	virtio_dev_config_read(&c.dev, 4, &maxp, 4);
	vqd_unlock(&c.dev);
	cr_assert_eq(maxp, 3);

	/* two control buffers only: the third announcement waits for more */
	post_rx(&c, 2, 2, 64);
	send_ctl(&c, 0xffffffffu, 0 /* DEVICE_READY */, 1);
	cr_assert(LT_WAIT(vqd_used_pending(&c.q[2]) == 2, 2000));
	n += take_ctl(&c, msgs + n, 32 - n);
	post_rx(&c, 2, 14, 64);
	cr_assert(LT_WAIT(vqd_used_pending(&c.q[2]) == 1, 2000));
	n += take_ctl(&c, msgs + n, 32 - n);
	cr_assert_eq(n, 3);
	for (uint32_t p = 0; p < 3; p++)
		cr_assert(has_ctl(msgs, n, p, 1 /* PORT_ADD */, NULL), "no PORT_ADD for port %u", p);

	/* hostile control messages: unknown port, short buffer */
	send_ctl(&c, 99, 3, 1);
	post_tx(&c, 3, "abc", 3);
	cr_assert(vqd_status_live(vqd_status(&c.dev)));

	n = 0;
	for (uint32_t p = 0; p < 3; p++)
		send_ctl(&c, p, 3 /* PORT_READY */, 1);
	cr_assert(LT_WAIT(vqd_used_pending(&c.q[2]) >= 5, 2000));
	usleep(50 * 1000);
	n = take_ctl(&c, msgs, 32);
	cr_assert_eq(n, 5, "%u control messages", n);
	cr_assert(has_ctl(msgs, n, 0, 4 /* CONSOLE_PORT */, NULL));
	cr_assert(has_ctl(msgs, n, 0, 6 /* PORT_OPEN */, NULL));
	cr_assert(has_ctl(msgs, n, 1, 7 /* PORT_NAME */, "org.test.one"));
	cr_assert(has_ctl(msgs, n, 1, 6, NULL));
	cr_assert(has_ctl(msgs, n, 2, 7, "two"));
	cr_assert_not(has_ctl(msgs, n, 2, 6, NULL), "port 2 has no host side: not open");

	/* a second DEVICE_READY announces no port twice (5.3.6.2.1) */
	send_ctl(&c, 0xffffffffu, 0, 1);
	usleep(50 * 1000);
	cr_assert_eq(vqd_used_pending(&c.q[2]), 0, "a port was added twice");

	/* port 1 (queues 4/5): no data before the guest opens it */
	cr_assert_eq(write(sp[1], "ping", 4), 4);
	rx1 = post_rx(&c, 4, 2, 64);
	usleep(100 * 1000);
	cr_assert_eq(vqd_used_pending(&c.q[4]), 0, "data delivered to a port the guest did not open");
	send_ctl(&c, 1, 6 /* PORT_OPEN */, 1);
	cr_assert_eq(wait_used(&c, 4, NULL), 4);
	cr_assert_eq(memcmp(vqd_hva(&c.m, rx1, 4), "ping", 4), 0);
	post_tx(&c, 5, "pong", 4);
	cr_assert_eq(read_for(sp[1], buf, 4, 5000), 4);
	cr_assert_eq(memcmp(buf, "pong", 4), 0);
	/* port 2 has no output fd: its output is taken and dropped */
	post_tx(&c, 7, "void", 4);
	cr_assert_eq(wait_used(&c, 7, NULL), 0);
	/* port 0 still works as the console */
	post_tx(&c, 1, "con", 3);
	cr_assert_eq(read_for(out0[0], buf, 3, 5000), 3);
	cr_assert_eq(memcmp(buf, "con", 3), 0);
	con_down(&c);
	close(in0[0]);
	close(in0[1]);
	close(out0[0]);
	close(out0[1]);
	close(sp[0]);
	close(sp[1]);
}

Test(virtio_console, input_eof_stops_reading)
{
	int in[2], out[2];
	struct con c;
	uint64_t rx;
	double cpu0, cpu1;

	cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	con_up(&c, &(struct virtio_console_port){ NULL, in[0], out[1] }, 1);
	/* input waiting before the guest has a buffer: nothing spins */
	cr_assert_eq(write(in[1], "abc", 3), 3);
	cpu0 = cpu_seconds();
	usleep(300 * 1000);
	cpu1 = cpu_seconds();
	cr_assert_lt(cpu1 - cpu0, 0.15, "%.3f s of CPU while waiting for a buffer", cpu1 - cpu0);
	rx = post_rx(&c, 0, 4, 64);
	cr_assert_eq(wait_used(&c, 0, NULL), 3);
	cr_assert_eq(memcmp(vqd_hva(&c.m, rx, 3), "abc", 3), 0);
	/* end of input: the device stops reading and does not spin */
	close(in[1]);
	usleep(100 * 1000);
	cpu0 = cpu_seconds();
	usleep(300 * 1000);
	cpu1 = cpu_seconds();
	cr_assert_lt(cpu1 - cpu0, 0.15, "%.3f s of CPU after end of input", cpu1 - cpu0);
	/* and output still works */
	post_tx(&c, 1, "bye", 3);
	{
		char buf[3];
		cr_assert_eq(read_for(out[0], buf, 3, 5000), 3);
		cr_assert_eq(memcmp(buf, "bye", 3), 0);
	}
	cr_assert(vqd_status_live(vqd_status(&c.dev)));
	con_down(&c);
	close(in[0]);
	close(out[0]);
	close(out[1]);
}

Test(virtio_console, regular_file_output_and_dev_null)
{
	char path[] = "/tmp/vmkit-console-XXXXXX";
	int fd = mkstemp(path), nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	struct con c;
	char buf[16] = { 0 };

	cr_assert_geq(fd, 0);
	cr_assert_geq(nul, 0);
	unlink(path);
	con_up(&c, (struct virtio_console_port[]){ { NULL, nul, fd }, { "n", nul, nul } }, 2);
	post_tx(&c, 1, "to a file", 9);
	cr_assert_eq(wait_used(&c, 1, NULL), 0);
	cr_assert_eq(pread(fd, buf, sizeof(buf), 0), 9);
	cr_assert_eq(memcmp(buf, "to a file", 9), 0);
	con_down(&c);
	close(fd);
	close(nul);
}

Test(virtio_console, save_restore)
{
	enum { CHUNK = 1024, N = 16 };
	int out[2], out2[2];
	struct con c;
	struct vqd_transport t2;
	struct vmkit_virtio_dev dev2;
	const vmkit_virtio_ops *ops2;
	void *op2;
	uint8_t chunk[CHUNK], *got = malloc(N * CHUNK), *data = NULL, *bad;
	size_t len = 0, have;
	long n;
	uint8_t blob[16384], blob2[16384];

	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(out2, O_CLOEXEC), 0);
	cr_assert_geq(fcntl(out[0], F_SETPIPE_SZ, 4096), 4096);
	con_up(&c, &(struct virtio_console_port){ NULL, -1, out[1] }, 1);
	for (unsigned i = 0; i < N; i++) {
		memset(chunk, 'a' + (int)i, CHUNK);
		post_tx_nokick(&c, 1, chunk, CHUNK);
	}
	vqd_kick(&c.dev, 1);
	usleep(100 * 1000);
	loop_thread_stop(&c.lt); /* the old device writes no more */
	/* the pipe holds 4 chunks, the device's buffer the next 4 */
	have = read_for(out[0], got, 4 * CHUNK, 2000);
	cr_assert_eq(have, 4 * CHUNK);
	n = c.ops->save(c.opaque, blob, sizeof(blob));
	cr_assert(n > 4 * CHUNK && n <= (long)sizeof(blob), "blob of %ld bytes", n);
	cr_assert_eq(c.ops->restore(c.opaque, blob, (size_t)n), 0, "%s", vmkit_last_error());
	cr_assert_eq(c.ops->save(c.opaque, blob2, sizeof(blob2)), n);
	cr_assert_eq(memcmp(blob, blob2, (size_t)n), 0);
	cr_assert_eq(virtio_dev_save(&c.dev, &data, &len), 0, "%s", vmkit_last_error());
	vqd_write_status(&c.dev, 0); /* the old device lets go of the rings */
	/* a console with another number of ports refuses the blob */
	{
		const vmkit_virtio_ops *o3;
		void *p3;

		cr_assert_eq(virtio_console_create((struct virtio_console_port[]){ { NULL, -1, -1 },
										   { "x", -1, -1 } },
						   2, NULL, &o3, &p3),
			     0);
		cr_assert_lt(o3->restore(p3, blob, (size_t)n), 0);
		o3->destroy(p3);
	}

	/* into a fresh device writing to another pipe */
	vqd_transport_init(&t2);
	cr_assert_eq(virtio_console_create(&(struct virtio_console_port){ NULL, -1, out2[1] }, 1,
					   c.lt.loop, &ops2, &op2),
		     0);
	cr_assert_eq(virtio_dev_init(&dev2, ops2, op2, &c.m.gm, &t2.tr, &t2, "con1"), 0);
	bad = malloc(len);
	for (size_t i = 0; i < len; i += 5) {
		memcpy(bad, data, len);
		bad[i] ^= 0x04;
		cr_assert_lt(virtio_dev_restore(&dev2, bad, len), 0, "byte %zu flipped was accepted", i);
	}
	free(bad);
	cr_assert_eq(virtio_dev_restore(&dev2, data, len), 0, "%s", vmkit_last_error());
	loop_thread_start(&c.lt);
	vqd_kick(&dev2, 1);
	/* the buffered chunks 4..7 come out of the new device, then the rest */
	cr_assert_eq(read_for(out2[0], got + 4 * CHUNK, (N - 4) * CHUNK, 5000), (N - 4) * CHUNK);
	for (unsigned i = 0; i < N; i++)
		cr_assert_eq(got[i * CHUNK], 'a' + (int)i, "chunk %u", i);
	loop_thread_stop(&c.lt);
	virtio_dev_destroy(&dev2);
	free(data);
	con_down(&c);
	free(got);
	close(out[0]);
	close(out[1]);
	close(out2[0]);
	close(out2[1]);
}

Test(virtio_console, bad_configurations_are_refused)
{
	const vmkit_virtio_ops *ops;
	void *o;
	char longname[300];
	struct virtio_console_port many[VIRTIO_CONSOLE_MAX_PORTS + 1];

	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(many); i++)
		many[i] = (struct virtio_console_port){ NULL, -1, -1 };
	cr_assert_eq(virtio_console_create(many, 0, NULL, &ops, &o), -EINVAL);
	cr_assert_eq(virtio_console_create(many, ARRAY_SIZE(many), NULL, &ops, &o), -EINVAL);
	cr_assert_eq(virtio_console_create((struct virtio_console_port[]){ { NULL, -1, -1 },
									   { longname, -1, -1 } },
					   2, NULL, &ops, &o),
		     -EINVAL);
	/* fds without a loop */
	cr_assert_eq(virtio_console_create(&(struct virtio_console_port){ NULL, 0, -1 }, 1, NULL,
					   &ops, &o),
		     -EINVAL);
	/* no fds at all is fine without a loop */
	cr_assert_eq(virtio_console_create(many, 2, NULL, &ops, &o), 0);
	ops->destroy(o);
}

/* Buffers a driver queued before DRIVER_OK (whose kicks could not reach
 * the device) are served once the device is live. */
Test(virtio_console, buffers_queued_before_driver_ok)
{
	int in[2], out[2];
	struct con c;
	uint64_t rx;
	char buf[5];

	cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	memset(&c, 0, sizeof(c));
	loop_thread_new(&c.lt);
	vqd_mem_init(&c.m, 0, 0);
	vqd_transport_init(&c.t);
	cr_assert_eq(virtio_console_create(&(struct virtio_console_port){ NULL, in[0], out[1] }, 1,
					   c.lt.loop, &c.ops, &c.opaque),
		     0);
	cr_assert_eq(virtio_dev_init(&c.dev, c.ops, c.opaque, &c.m.gm, &c.t.tr, &c.t, "con2"), 0);
	loop_thread_start(&c.lt);
	cr_assert(vqd_negotiate(&c.dev, VQD_FEATURES_ALL));
	for (unsigned i = 0; i < 2; i++) {
		vqd_queue_init(&c.q[i], &c.m, 64);
		cr_assert(vqd_setup_queue(&c.dev, (uint16_t)i, &c.q[i]));
	}
	cr_assert_eq(write(in[1], "early", 5), 5);
	rx = post_rx(&c, 0, 2, 64);
	post_tx(&c, 1, "first", 5);
	usleep(50 * 1000);
	cr_assert_eq(vqd_used_pending(&c.q[0]), 0);
	cr_assert(vqd_status_live(vqd_driver_ok(&c.dev)));
	cr_assert_eq(wait_used(&c, 0, NULL), 5);
	cr_assert_eq(memcmp(vqd_hva(&c.m, rx, 5), "early", 5), 0);
	cr_assert_eq(read_for(out[0], buf, 5, 5000), 5);
	cr_assert_eq(memcmp(buf, "first", 5), 0);
	con_down(&c);
	close(in[0]);
	close(in[1]);
	close(out[0]);
	close(out[1]);
}
