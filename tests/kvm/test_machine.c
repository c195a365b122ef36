/* SPDX-License-Identifier: MIT */
/* The machine layer on real KVM, with a few bytes of real-mode code as the
 * guest (a flat binary): exit reasons (exit port, ACPI power-off, the reset
 * paths, pvpanic, triple fault, strict policy, stop), serial output,
 * pause/resume, events, statistics, and start-up errors. */
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "kvmtest.h"

#define LOAD 0x10000

struct capture {
	pthread_mutex_t lock;
	char buf[4096];
	size_t len;
	int events[8];
	int nevents;
};

static struct capture cap = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void on_serial(void *ud, const uint8_t *data, size_t len)
{
	struct capture *c = ud;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < len && c->len < sizeof(c->buf) - 1; i++)
		c->buf[c->len++] = (char)data[i];
	pthread_mutex_unlock(&c->lock);
}

static void on_event(void *ud, vmkit_machine *m, vmkit_machine_event ev)
{
	struct capture *c = ud;

	(void)m;
	pthread_mutex_lock(&c->lock);
	if (c->nevents < 8)
		c->events[c->nevents++] = ev;
	pthread_mutex_unlock(&c->lock);
}

static vmkit_host *host;
static vmkit_machine *m;
static char kpath[64];

static void teardown(void)
{
	vmkit_machine_free(m);
	vmkit_host_free(host);
	m = NULL;
	host = NULL;
	if (kpath[0])
		unlink(kpath);
	kpath[0] = 0;
	cap.len = 0;
	cap.nevents = 0;
}

TestSuite(machine, .fini = teardown, .timeout = 120);

static vmkit_machine_config *flat_config(const uint8_t *code, size_t len, uint32_t cpus)
{
	vmkit_machine_config *cfg;
	int fd;

	snprintf(kpath, sizeof(kpath), "/tmp/vmkit-flat-XXXXXX");
	fd = mkstemp(kpath);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, code, len), (ssize_t)len);
	close(fd);
	cr_assert_eq(vmkit_machine_config_new(&cfg), 0);
	cr_assert_eq(vmkit_machine_config_set_kernel(cfg, kpath), 0);
	cr_assert_eq(vmkit_machine_config_set_flat(cfg, LOAD, LOAD, VMKIT_CPU_REAL), 0);
	cr_assert_eq(vmkit_machine_config_set_memory(cfg, 32 << 20), 0);
	cr_assert_eq(vmkit_machine_config_set_cpus(cfg, cpus), 0);
	cr_assert_eq(vmkit_machine_config_set_serial_callback(cfg, on_serial, &cap), 0);
	return cfg;
}

static vmkit_machine_exit run_cfg(vmkit_machine_config *cfg)
{
	vmkit_machine_exit ex = { .size = sizeof(ex) };

	host = kvmtest_host();
	cr_assert_eq(vmkit_machine_new(host, cfg, &m), 0, "%s", vmkit_last_error());
	vmkit_machine_config_free(cfg);
	cr_assert_eq(vmkit_machine_set_event_callback(m, on_event, &cap), 0);
	cr_assert_eq(vmkit_machine_start(m), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_wait(m, 60000, &ex), 0, "%s", vmkit_last_error());
	return ex;
}

static vmkit_machine_exit run_code(const uint8_t *code, size_t len)
{
	return run_cfg(flat_config(code, len, 1));
}

static void exit_port_case(uint8_t v)
{
	const uint8_t code[] = { 0xb0, v, 0xe6, 0xf4, 0xeb, 0xfe }; /* mov al,v; out 0xf4,al */
	vmkit_machine_exit ex = run_code(code, sizeof(code));

	cr_assert_eq(ex.reason, VMKIT_EXIT_EXIT_PORT, "reason %u: %s", ex.reason, ex.detail);
	cr_assert_eq(ex.status, (v << 1) | 1);
	teardown();
}

Test(machine, exit_port_status_is_v_shifted_or_one)
{
	exit_port_case(0);
	exit_port_case(1);
	exit_port_case(0x7f);
	exit_port_case(0xff);
}

Test(machine, exit_port_takes_a_4_byte_write_whole)
{
	static const uint8_t code[] = {
		0x66, 0xb8, 0x45, 0x23, 0x01, 0x00, /* mov eax, 0x12345 */
		0x66, 0xe7, 0xf4,                   /* out 0xf4, eax */
		0xeb, 0xfe,
	};
	vmkit_machine_exit ex = run_code(code, sizeof(code));

	cr_assert_eq(ex.reason, VMKIT_EXIT_EXIT_PORT);
	cr_assert_eq(ex.status, (0x12345 << 1) | 1);
}

Test(machine, serial_output_with_lsr_polling_and_stats)
{
	uint8_t code[64];
	size_t n = 0;
	const char *msg = "hi\n";
	vmkit_machine_stats st = { .size = sizeof(st) };
	vmkit_vcpu_stats vs = { .size = sizeof(vs) };

	for (const char *p = msg; *p; p++) {
		const uint8_t one[] = {
			0xba, 0xfd, 0x03,       /* mov dx, 0x3fd (LSR) */
			0xec,                   /* in al, dx */
			0xa8, 0x20,             /* test al, 0x20 (THRE) */
			0x74, 0xfb,             /* jz back to in */
			0xba, 0xf8, 0x03,       /* mov dx, 0x3f8 */
			0xb0, (uint8_t)*p,      /* mov al, c */
			0xee,                   /* out dx, al */
		};
		memcpy(code + n, one, sizeof(one));
		n += sizeof(one);
	}
	const uint8_t tail[] = { 0xb0, 0x00, 0xe6, 0xf4, 0xeb, 0xfe };
	memcpy(code + n, tail, sizeof(tail));
	n += sizeof(tail);
	vmkit_machine_exit ex = run_code(code, n);

	cr_assert_eq(ex.reason, VMKIT_EXIT_EXIT_PORT, "%s", ex.detail);
	cr_assert_eq(cap.len, 3);
	cr_assert_eq(memcmp(cap.buf, "hi\n", 3), 0);
	cr_assert_eq(vmkit_machine_get_stats(m, &st), 0);
	cr_assert_eq(st.serial_tx_bytes, 3);
	cr_assert_gt(st.run_ns, 0);
	cr_assert_eq(st.ncpus, 1);
	cr_assert_eq(vmkit_machine_get_vcpu_stats(m, 0, &vs), 0);
	cr_assert_geq(vs.exits_io, 7, "3 LSR reads + 3 THR writes + the exit port");
	cr_assert_eq(vmkit_machine_get_state(m), VMKIT_MACHINE_EXITED);
	cr_assert_eq(cap.nevents, 2);
	cr_assert_eq(cap.events[0], VMKIT_EVENT_STARTED);
	cr_assert_eq(cap.events[1], VMKIT_EVENT_EXITED);
}

Test(machine, acpi_power_off)
{
	static const uint8_t code[] = {
		0xba, 0x04, 0x06,       /* mov dx, 0x604 (PM1a_CNT) */
		0xb8, 0x00, 0x34,       /* mov ax, SLP_EN | SLP_TYP 5 */
		0xef,                   /* out dx, ax */
		0xeb, 0xfe,
	};
	vmkit_machine_exit ex = run_code(code, sizeof(code));

	cr_assert_eq(ex.reason, VMKIT_EXIT_POWEROFF, "reason %u: %s", ex.reason, ex.detail);
}

Test(machine, reset_register_reboots)
{
	static const uint8_t code[] = { 0xba, 0xf9, 0x0c, 0xb0, 0x06, 0xee, 0xeb, 0xfe };
	vmkit_machine_exit ex = run_code(code, sizeof(code));

	cr_assert_eq(ex.reason, VMKIT_EXIT_REBOOT, "reason %u: %s", ex.reason, ex.detail);
}

Test(machine, i8042_reset_line_reboots)
{
	static const uint8_t code[] = { 0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe };
	vmkit_machine_exit ex = run_code(code, sizeof(code));

	cr_assert_eq(ex.reason, VMKIT_EXIT_REBOOT, "reason %u: %s", ex.reason, ex.detail);
}

Test(machine, pvpanic_reports_a_panic)
{
	static const uint8_t code[] = { 0xba, 0x05, 0x05, 0xb0, 0x01, 0xee, 0xeb, 0xfe };
	vmkit_machine_exit ex = run_code(code, sizeof(code));

	cr_assert_eq(ex.reason, VMKIT_EXIT_PANIC, "reason %u: %s", ex.reason, ex.detail);
}

Test(machine, triple_fault_is_a_crash)
{
	/* 64-bit mode: with an IDT of limit 0, the #GP of a non-canonical
	 * load and the #DF after it find no gate: a triple fault. (Not int3,
	 * which kvm_pvm cannot emulate at CPL0.) */
	static const uint8_t code[] = {
		0x0f, 0x01, 0x1c, 0x25, 0x20, 0x00, 0x01, 0x00, /* lidt [0x10020] */
		0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0x80,          /* mov rax, 1 << 63 */
		0x48, 0x8b, 0x00,                               /* mov rax, [rax] */
		0xeb, 0xfe,                                     /* (not reached) */
		0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                   /* at 0x20: limit 0, base 0 */
	};
	vmkit_machine_config *cfg = flat_config(code, sizeof(code), 1);
	vmkit_machine_exit ex;

	cr_assert_eq(vmkit_machine_config_set_flat(cfg, LOAD, LOAD, VMKIT_CPU_LONG64), 0);
	ex = run_cfg(cfg);
	cr_assert_eq(ex.reason, VMKIT_EXIT_CRASH, "reason %u: %s", ex.reason, ex.detail);
}

Test(machine, strict_policy_makes_unclaimed_ports_an_error)
{
	static const uint8_t code[] = { 0xba, 0xf0, 0x02, 0xec, 0xeb, 0xfe }; /* in al, 0x2f0 */
	vmkit_machine_config *cfg = flat_config(code, sizeof(code), 1);
	vmkit_machine_exit ex;

	cr_assert_eq(vmkit_machine_config_set_unhandled_policy(cfg, VMKIT_UNHANDLED_STRICT), 0);
	ex = run_cfg(cfg);
	cr_assert_eq(ex.reason, VMKIT_EXIT_ERROR);
	cr_assert(strstr(ex.detail, "0x2f0"), "%s", ex.detail);
}

Test(machine, unclaimed_port_reads_all_ones_by_default)
{
	static const uint8_t code[] = {
		0xba, 0xf0, 0x02,       /* mov dx, 0x2f0 */
		0xec,                   /* in al, dx */
		0xe6, 0xf4,             /* out 0xf4, al -> status (0xff << 1) | 1 */
		0xeb, 0xfe,
	};
	vmkit_machine_exit ex = run_code(code, sizeof(code));
	vmkit_machine_stats st = { .size = sizeof(st) };

	cr_assert_eq(ex.reason, VMKIT_EXIT_EXIT_PORT);
	cr_assert_eq(ex.status, (0xff << 1) | 1);
	cr_assert_eq(vmkit_machine_get_stats(m, &st), 0);
	cr_assert_geq(st.vm.unhandled_reads, 1);
}

static const uint8_t counter_loop[] = {
	0x31, 0xc0,                         /* xor ax, ax */
	0x8e, 0xd8,                         /* mov ds, ax */
	0x66, 0xff, 0x06, 0x00, 0x05,       /* inc dword [0x500] */
	0xeb, 0xf9,                         /* jmp back to inc */
};

static uint32_t counter(void)
{
	uint32_t v;

	cr_assert_eq(vmkit_vm_read(vmkit_machine_vm(m), 0x500, &v, 4), 0);
	return v;
}

/* Waits (up to 30 s: the first KVM_RUN and each re-entry can be slow on a
 * loaded or emulating host) until the counter passes @old. */
static uint32_t counter_after(uint32_t old)
{
	uint32_t v = counter();

	for (int i = 0; i < 3000 && v <= old; i++) {
		usleep(10 * 1000);
		v = counter();
	}
	return v;
}

Test(machine, pause_holds_the_guest_and_resume_continues)
{
	vmkit_machine_config *cfg = flat_config(counter_loop, sizeof(counter_loop), 1);
	vmkit_machine_exit ex = { .size = sizeof(ex) };
	uint32_t a, b, c;

	host = kvmtest_host();
	cr_assert_eq(vmkit_machine_new(host, cfg, &m), 0, "%s", vmkit_last_error());
	vmkit_machine_config_free(cfg);
	cr_assert_eq(vmkit_machine_pause(m), -EINVAL, "cannot pause before start");
	cr_assert_eq(vmkit_machine_start(m), 0);
	cr_assert_gt(counter_after(0), 0, "the loop never ran");
	cr_assert_eq(vmkit_machine_pause(m), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_get_state(m), VMKIT_MACHINE_PAUSED);
	a = counter();
	usleep(200 * 1000);
	b = counter();
	cr_assert_gt(a, 0, "the loop ran before the pause");
	cr_assert_eq(a, b, "the counter moved while paused (%u -> %u)", a, b);
	cr_assert_eq(vmkit_machine_resume(m), 0);
	c = counter_after(b);
	cr_assert_gt(c, b, "the counter did not move after resume");
	cr_assert_eq(vmkit_machine_wait(m, 0, &ex), -ETIMEDOUT);
	cr_assert_eq(vmkit_machine_stop(m), 0);
	cr_assert_eq(vmkit_machine_wait(m, 10000, &ex), 0);
	cr_assert_eq(ex.reason, VMKIT_EXIT_STOPPED);
}

Test(machine, stop_while_paused_and_several_vcpus)
{
	vmkit_machine_config *cfg = flat_config(counter_loop, sizeof(counter_loop), 4);
	vmkit_machine_exit ex = { .size = sizeof(ex) };

	host = kvmtest_host();
	cr_assert_eq(vmkit_machine_new(host, cfg, &m), 0, "%s", vmkit_last_error());
	vmkit_machine_config_free(cfg);
	cr_assert_not_null(vmkit_machine_vcpu(m, 3));
	cr_assert_null(vmkit_machine_vcpu(m, 4));
	cr_assert_eq(vmkit_machine_start(m), 0);
	cr_assert_eq(vmkit_machine_pause(m), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_stop(m), 0);
	cr_assert_eq(vmkit_machine_wait(m, 10000, &ex), 0);
	cr_assert_eq(ex.reason, VMKIT_EXIT_STOPPED);
}

Test(machine, start_up_errors_are_one_clear_line)
{
	vmkit_machine_config *cfg;
	char path[] = "/tmp/vmkit-notkernel-XXXXXX";
	int fd;

	host = kvmtest_host();
	cr_assert_eq(vmkit_machine_config_new(&cfg), 0);
	cr_assert_eq(vmkit_machine_new(host, cfg, &m), -EINVAL);
	cr_assert(strstr(vmkit_last_error(), "no kernel or firmware"), "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_config_set_kernel(cfg, "/nonexistent/bzImage"), 0);
	cr_assert_eq(vmkit_machine_new(host, cfg, &m), -ENOENT);
	cr_assert(strstr(vmkit_last_error(), "/nonexistent/bzImage"), "%s", vmkit_last_error());
	fd = mkstemp(path);
	cr_assert_eq(write(fd, "just some text, not a kernel\n", 29), 29);
	close(fd);
	cr_assert_eq(vmkit_machine_config_set_kernel(cfg, path), 0);
	cr_assert_eq(vmkit_machine_new(host, cfg, &m), -ENOEXEC, "%s", vmkit_last_error());
	cr_assert(strstr(vmkit_last_error(), path), "%s", vmkit_last_error());
	cr_assert_null(strchr(vmkit_last_error(), '\n'));
	unlink(path);
	cr_assert_null(m);
	vmkit_machine_config_free(cfg);
}

/* A guest that writes to COM1 forever into a pipe nobody reads (@p,
 * made here), run until the pipe (64 KiB) is full and the vCPU waits in
 * the write. Returns how many bytes the UART took. */
static uint64_t start_stalled_writer(int p[2])
{
	static const uint8_t code[] = {
		0xba, 0xf8, 0x03,       /* mov dx, 0x3f8 */
		0xb0, 0x78,             /* mov al, 'x' */
		0xee,                   /* out dx, al */
		0xeb, 0xfd,             /* jmp back to out */
	};
	vmkit_machine_config *cfg = flat_config(code, sizeof(code), 1);
	vmkit_machine_stats st = { .size = sizeof(st) };
	uint64_t last = 0;
	bool full = false;

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(vmkit_machine_config_set_serial_fds(cfg, -1, p[1]), 0);
	host = kvmtest_host();
	cr_assert_eq(vmkit_machine_new(host, cfg, &m), 0, "%s", vmkit_last_error());
	vmkit_machine_config_free(cfg);
	cr_assert_eq(vmkit_machine_start(m), 0);
	/* Stalled: the pipe is full (not writable, by the kernel's own test)
	 * and the count stands still. A count that only pauses (the vCPU
	 * thread descheduled) is not a stall. */
	for (int i = 0; i < 100; i++) {
		usleep(300 * 1000);
		cr_assert_eq(vmkit_machine_get_stats(m, &st), 0);
		full = poll(&(struct pollfd){ .fd = p[1], .events = POLLOUT }, 1, 0) == 0;
		if (full && st.serial_tx_bytes == last)
			break;
		last = st.serial_tx_bytes;
	}
	cr_assert(full, "the guest did not fill the pipe (%llu bytes sent)",
		  (unsigned long long)st.serial_tx_bytes);
	cr_assert_eq(st.serial_tx_bytes, last, "output never stalled");
	return st.serial_tx_bytes;
}

Test(machine, stop_works_when_the_serial_reader_stops_reading)
{
	vmkit_machine_exit ex = { .size = sizeof(ex) };
	int p[2];

	start_stalled_writer(p);
	cr_assert_eq(vmkit_machine_stop(m), 0);
	cr_assert_eq(vmkit_machine_wait(m, 10000, &ex), 0, "stop did not end a vCPU blocked on output");
	cr_assert_eq(ex.reason, VMKIT_EXIT_STOPPED);
	close(p[0]);
	close(p[1]);
}

/* The same stalled reader, but a pause: the vCPU waiting on the pipe
 * runs no guest code, so pause returns; the output is not lost, it goes
 * out once the reader reads again and the machine resumes. */
Test(machine, pause_works_when_the_serial_reader_stops_reading)
{
	vmkit_machine_exit ex = { .size = sizeof(ex) };
	vmkit_machine_stats st = { .size = sizeof(st) };
	uint64_t before, after, drained = 0;
	char buf[65536];
	ssize_t n;
	int p[2];

	start_stalled_writer(p);
	cr_assert_eq(vmkit_machine_pause(m), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_get_state(m), VMKIT_MACHINE_PAUSED);
	cr_assert_eq(vmkit_machine_get_stats(m, &st), 0);
	before = st.serial_tx_bytes;
	/* Drain the pipe while paused: the byte that was waiting goes out,
	 * then nothing more (the guest is held). */
	cr_assert_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	for (int i = 0; i < 20; i++) {
		while ((n = read(p[0], buf, sizeof(buf))) > 0)
			drained += (uint64_t)n;
		usleep(50 * 1000);
	}
	cr_assert_eq(vmkit_machine_get_stats(m, &st), 0);
	after = st.serial_tx_bytes;
	cr_assert_eq(after, before, "the guest wrote %llu bytes while paused",
		     (unsigned long long)(after - before));
	cr_assert_eq(drained, after, "%llu bytes reached the pipe of %llu the UART took",
		     (unsigned long long)drained, (unsigned long long)after);
	cr_assert_eq(vmkit_machine_resume(m), 0);
	for (int i = 0; i < 3000; i++) {
		cr_assert_eq(vmkit_machine_get_stats(m, &st), 0);
		if (st.serial_tx_bytes > after)
			break;
		usleep(10 * 1000);
	}
	cr_assert_gt(st.serial_tx_bytes, after, "no output after resume");
	cr_assert_eq(vmkit_machine_stop(m), 0);
	cr_assert_eq(vmkit_machine_wait(m, 10000, &ex), 0);
	close(p[0]);
	close(p[1]);
}

/* EXITED comes when the guest ends the machine, not when somebody waits:
 * an embedder driven by the callback alone learns of it. */
static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t exit_cond = PTHREAD_COND_INITIALIZER;
static bool exit_seen;
static vmkit_machine_state state_in_callback;

static void on_exit_event(void *ud, vmkit_machine *mm, vmkit_machine_event ev)
{
	(void)ud;
	if (ev != VMKIT_EVENT_EXITED)
		return;
	state_in_callback = vmkit_machine_get_state(mm);
	pthread_mutex_lock(&exit_lock);
	exit_seen = true;
	pthread_cond_broadcast(&exit_cond);
	pthread_mutex_unlock(&exit_lock);
}

Test(machine, exited_event_comes_without_a_wait)
{
	static const uint8_t code[] = { 0xb0, 0x03, 0xe6, 0xf4, 0xeb, 0xfe }; /* exit port, 3 */
	vmkit_machine_config *cfg = flat_config(code, sizeof(code), 1);
	vmkit_machine_exit ex = { .size = sizeof(ex) };
	struct timespec until;

	host = kvmtest_host();
	cr_assert_eq(vmkit_machine_new(host, cfg, &m), 0, "%s", vmkit_last_error());
	vmkit_machine_config_free(cfg);
	cr_assert_eq(vmkit_machine_set_event_callback(m, on_exit_event, NULL), 0);
	exit_seen = false;
	cr_assert_eq(vmkit_machine_start(m), 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	pthread_mutex_lock(&exit_lock);
	while (!exit_seen && pthread_cond_timedwait(&exit_cond, &exit_lock, &until) == 0)
		;
	pthread_mutex_unlock(&exit_lock);
	cr_assert(exit_seen, "no EXITED event within 30 s without a wait");
	cr_assert_eq(state_in_callback, VMKIT_MACHINE_EXITED);
	cr_assert_eq(vmkit_machine_wait(m, 10000, &ex), 0);
	cr_assert_eq(ex.reason, VMKIT_EXIT_EXIT_PORT);
	cr_assert_eq(ex.status, 7);
}

/* An embedder's virtio device: ops->destroy runs once, when the machine
 * is freed, and never when vmkit_machine_new fails (the opaque is then
 * still the caller's, as device.h says). */
static int destroyed;
static void count_destroy(void *opaque)
{
	(void)opaque;
	destroyed++;
}
static void noop_notify(void *opaque, vmkit_virtio_dev *dev, uint16_t queue)
{
	(void)opaque;
	(void)dev;
	(void)queue;
}

Test(machine, custom_virtio_device_ownership)
{
	static const vmkit_virtio_ops ops = {
		.size = sizeof(vmkit_virtio_ops), .device_id = 63, .num_queues = 1,
		.queue_max = 64, .queue_notify = noop_notify, .destroy = count_destroy,
	};
	static const uint8_t code[] = { 0xf4 };
	vmkit_machine_config *cfg = flat_config(code, sizeof(code), 1);

	host = kvmtest_host();
	cr_assert_eq(vmkit_machine_config_add_virtio(cfg, &ops, NULL, VMKIT_VIRTIO_PCI), 0);
	cr_assert_eq(vmkit_machine_config_add_virtio(cfg, &ops, NULL, VMKIT_VIRTIO_MMIO), 0);
	/* fails after the devices are attached: the kernel file is gone */
	unlink(kpath);
	cr_assert_lt(vmkit_machine_new(host, cfg, &m), 0);
	cr_assert_null(m);
	cr_assert_eq(destroyed, 0, "destroy ran %d times for a machine never built", destroyed);
	/* a built machine owns them */
	{
		int fd;
		snprintf(kpath, sizeof(kpath), "/tmp/vmkit-flat-XXXXXX");
		fd = mkstemp(kpath);
		cr_assert_eq(write(fd, code, sizeof(code)), (ssize_t)sizeof(code));
		close(fd);
		cr_assert_eq(vmkit_machine_config_set_kernel(cfg, kpath), 0);
	}
	cr_assert_eq(vmkit_machine_new(host, cfg, &m), 0, "%s", vmkit_last_error());
	vmkit_machine_config_free(cfg);
	vmkit_machine_free(m);
	m = NULL;
	cr_assert_eq(destroyed, 2, "destroy ran %d times, want once per device", destroyed);
}

/* Guest RAM is madvise(MADV_HUGEPAGE)d unless the config says otherwise:
 * the kernel shows it as "hg" in the mapping's VmFlags (/proc/self/smaps),
 * whatever the host's THP mode. */
static bool ram_has_vmflag(const char *flag)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	void *p = NULL;
	bool in = false, found = false, seen = false;

	cr_assert_eq(vmkit_vm_translate(vmkit_machine_vm(m), 0x200000, 4096, &p), 0, "%s",
		     vmkit_last_error());
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;

		if (sscanf(line, "%lx-%lx ", &a, &b) == 2) {
			in = (uintptr_t)p >= a && (uintptr_t)p < b;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0) {
			char want[8];
			snprintf(want, sizeof(want), " %s", flag);
			seen = true;
			found = strstr(line, want) != NULL;
		}
	}
	fclose(f);
	cr_assert(seen, "no VmFlags line for guest RAM at %p", p);
	return found;
}

/* Guest RAM's THP advice for a machine with or without a balloon and
 * hugepages unset (-1), off (0) or on (1): 'h' for MADV_HUGEPAGE ("hg"
 * in VmFlags), 'n' for MADV_NOHUGEPAGE ("nh": off even where the host's
 * THP mode is "always"), '-' for neither, '!' for both. */
static bool thp_warned;

static void on_log(void *ud, vmkit_log_level level, const char *msg)
{
	(void)ud;
	if (level == VMKIT_LOG_WARN && strstr(msg, "khugepaged"))
		thp_warned = true;
}

static char ram_thp(bool balloon, int hugepages)
{
	static const uint8_t code[] = { 0xeb, 0xfe }; /* jmp $ */
	vmkit_machine_config *cfg = flat_config(code, sizeof(code), 1);
	bool hg, nh;

	if (balloon)
		cr_assert_eq(vmkit_machine_config_set_balloon(cfg, VMKIT_VIRTIO_MMIO), 0);
	if (hugepages >= 0)
		cr_assert_eq(vmkit_machine_config_set_hugepages(cfg, hugepages == 1), 0);
	host = kvmtest_host();
	thp_warned = false;
	vmkit_host_set_log(host, on_log, NULL, VMKIT_LOG_DEBUG);
	cr_assert_eq(vmkit_machine_new(host, cfg, &m), 0, "%s", vmkit_last_error());
	vmkit_machine_config_free(cfg);
	hg = ram_has_vmflag("hg");
	nh = ram_has_vmflag("nh");
	teardown();
	return hg && nh ? '!' : hg ? 'h' : nh ? 'n' : '-';
}

Test(machine, guest_ram_asks_for_huge_pages_unless_told_not_to)
{
	cr_assert_eq(ram_thp(false, -1), 'h', "hugepages unset: want MADV_HUGEPAGE");
	cr_assert_eq(ram_thp(false, 0), 'n', "hugepages off: want MADV_NOHUGEPAGE");
}

/* With a balloon, unset means off (khugepaged would refill the balloon's
 * holes); said explicitly, it is honoured. */
Test(machine, guest_ram_has_no_huge_pages_with_a_balloon_unless_asked)
{
	cr_assert_eq(ram_thp(true, -1), 'n', "balloon, hugepages unset: want MADV_NOHUGEPAGE");
	cr_assert_not(thp_warned);
	cr_assert_eq(ram_thp(true, 1), 'h', "balloon, hugepages on: want MADV_HUGEPAGE");
	cr_assert(thp_warned, "no warning for hugepages with a balloon");
}
