/* SPDX-License-Identifier: MIT */
/* The assembled machine: memory, vCPUs, platform devices, ACPI, a loaded
 * guest, and the lifecycle (vCPU threads, I/O thread, pause/resume/stop,
 * exit reasons, events).
 *
 * Threads and locks: m->lock guards the lifecycle fields (state, exit,
 * pause bookkeeping). Device models have their own locks and never call
 * back into the machine with theirs held except through the exit/reset
 * callbacks below, which take m->lock only. Lock order: device lock, then
 * m->lock. Event callbacks run without m->lock. */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "machine_internal.h"
#include "boot/boot.h"
#include "devices/legacy/legacy.h"
#include "devices/virtio/devices.h"
#include "loop/loop.h"

#define KERNEL_MAX_BYTES (512ull << 20)
#define FIRMWARE_MAX_BYTES (16ull << 20)
#define OPTION_ROM_MAX_BYTES (1ull << 20)
#define SERIAL_BUF 4096

struct file_buf {
	uint8_t *data;
	size_t len;
	int fd;
};

struct vcpu_thread {
	vmkit_machine *m;
	vmkit_vcpu *vcpu;
	pthread_t thread;
	bool started;
};

struct vmkit_machine {
	vmkit_host *host;
	struct vmkit_machine_config cfg;
	vmkit_vm *vm;
	struct vcpu_thread cpus[VMKIT_MAX_CPUS];
	uint32_t ncpus;

	/* devices */
	struct uart8250 *uart;
	struct i8042 *kbd;
	struct rtc *rtc;
	struct pm *pm;
	struct fwcfg *fwcfg;
	struct debug_exit *dbg;
	struct debugcon *dcon;
	struct x86_acpi_tables acpi;
	bool acpi_built;

	/* I/O thread: the event loop (serial input, virtio notifications and
	 * backends) */
	struct vmkit_loop *loop;
	pthread_t io_thread;
	bool io_started;
	int serial_in;            /* watched on the loop, or -1 */
	int serial_file;          /* a regular file read on the timer, or -1 */
	int rx_timer;             /* timerfd: retry input while the FIFO is full */
	uint8_t rx_buf[SERIAL_BUF];
	size_t rx_len;
	struct machine_virtio *virtio;
	_Atomic uint64_t serial_rx;

	/* lifecycle, under lock */
	pthread_mutex_t reap_lock; /* serialises joining the threads */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	vmkit_machine_state state;
	_Atomic bool exiting;
	bool pause_requested;
	uint32_t paused_cpus;
	uint32_t running_threads;
	vmkit_machine_exit exit;
	struct timespec run_start;
	uint64_t run_ns;
	vmkit_event_fn event_fn;
	void *event_userdata;
};

static void emit(vmkit_machine *m, vmkit_machine_event ev)
{
	vmkit_event_fn fn;
	void *ud;

	pthread_mutex_lock(&m->lock);
	fn = m->event_fn;
	ud = m->event_userdata;
	pthread_mutex_unlock(&m->lock);
	if (fn)
		fn(ud, m, ev);
}

/* Record the first exit reason and bring every vCPU out. Later calls (a
 * second vCPU failing while the first stops) are ignored. */
static void machine_exit(vmkit_machine *m, vmkit_exit_reason reason, int status, uint32_t vcpu,
			 const char *detail)
{
	pthread_mutex_lock(&m->lock);
	if (m->exiting) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	m->exiting = true;
	m->exit.reason = reason;
	m->exit.status = status;
	m->exit.vcpu = vcpu;
	snprintf(m->exit.detail, sizeof(m->exit.detail), "%s", detail ? detail : "");
	/* Kick under the lock: a waiter cannot reap and free the machine
	 * (and unmap the vCPUs' run areas) before this returns. */
	for (uint32_t i = 0; i < m->ncpus; i++)
		vmkit_vcpu_kick(m->cpus[i].vcpu);
	if (m->loop)
		vmkit__loop_stop(m->loop);
	vmkit__log(&m->vm->log, VMKIT_LOG_INFO, "machine exit: reason %d status %d: %s",
		   reason, status, detail ? detail : "");
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	/* Now, on the thread that ended the machine, not when someone waits:
	 * an embedder driven by events learns it without calling wait. The
	 * machine cannot be freed under us: free joins the vCPU and I/O
	 * threads, and a control thread calling stop owns it. */
	emit(m, VMKIT_EVENT_EXITED);
}

/* ---- device callbacks ---------------------------------------------------- */

static void irq_set(vmkit_machine *m, uint32_t gsi, bool level)
{
	if (vmkit_vm_set_irq(m->vm, gsi, level) < 0)
		vmkit__log(&m->vm->log, VMKIT_LOG_WARN, "irq %u: %s", gsi, vmkit_last_error());
}

static void irq_com1(void *ctx, bool level) { irq_set(ctx, X86_COM1_IRQ, level); }
static void irq_kbd(void *ctx, bool level) { irq_set(ctx, X86_I8042_IRQ, level); }
static void irq_rtc(void *ctx, bool level) { irq_set(ctx, X86_RTC_IRQ, level); }
static void irq_sci(void *ctx, bool level) { irq_set(ctx, X86_SCI_IRQ, level); }

/* A vCPU thread waiting for a reader that stopped reading runs no guest
 * code: while a pause is requested it counts as paused, so that
 * vmkit_machine_pause() returns. Once its write is done it goes back to
 * KVM_RUN, finds the kick and parks for real. */
static void hold_for_pause(vmkit_machine *m, bool *held)
{
	if (*held)
		return;
	pthread_mutex_lock(&m->lock);
	if (m->pause_requested) {
		m->paused_cpus++;
		*held = true;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
}

/* Write all of @data to @fd (on the vCPU thread that made the access)
 * without holding the vCPU past a stop or a pause: a reader that stops
 * reading makes us give up once the machine exits, and lets a pause
 * complete meanwhile. */
static void write_out(vmkit_machine *m, int fd, const uint8_t *data, size_t len)
{
	bool held = false;

	while (len > 0 && !atomic_load(&m->exiting)) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		ssize_t n;

		/* Wait in poll, not write: a kick that lands just before a
		 * blocking write() would be lost. */
		if (poll(&p, 1, 100) <= 0 || !(p.revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))) {
			hold_for_pause(m, &held);
			continue;
		}
		if (p.revents & POLLNVAL)
			break;
		n = write(fd, data, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break; /* the reader went away: output is dropped */
		data += n;
		len -= (size_t)n;
	}
	if (held) {
		pthread_mutex_lock(&m->lock);
		m->paused_cpus--;
		pthread_mutex_unlock(&m->lock);
	}
}

static void serial_out(void *ctx, const uint8_t *data, size_t len)
{
	vmkit_machine *m = ctx;

	if (m->cfg.serial_fn) {
		m->cfg.serial_fn(m->cfg.serial_userdata, data, len);
		return;
	}
	if (m->cfg.serial_out >= 0)
		write_out(m, m->cfg.serial_out, data, len);
}

static void debugcon_out(void *ctx, const uint8_t *data, size_t len)
{
	vmkit_machine *m = ctx;

	write_out(m, m->cfg.debugcon_fd, data, len);
}

static void on_exit_port(void *ctx, int status)
{
	char d[64];

	snprintf(d, sizeof(d), "exit port: status %d", status);
	machine_exit(ctx, VMKIT_EXIT_EXIT_PORT, status, 0, d);
}

static void on_poweroff(void *ctx)
{
	machine_exit(ctx, VMKIT_EXIT_POWEROFF, 0, 0, "ACPI power-off");
}

static void on_reset(void *ctx)
{
	machine_exit(ctx, VMKIT_EXIT_REBOOT, 0, 0, "guest reset");
}

static void on_panic(void *ctx)
{
	machine_exit(ctx, VMKIT_EXIT_PANIC, 0, 0, "guest panic (pvpanic)");
}

/* ---- vCPU threads --------------------------------------------------------- */

/* Park here while a pause is requested. Returns false when exiting. */
static bool wait_runnable(vmkit_machine *m)
{
	bool run;

	pthread_mutex_lock(&m->lock);
	while (m->pause_requested && !m->exiting) {
		m->paused_cpus++;
		pthread_cond_broadcast(&m->cond);
		pthread_cond_wait(&m->cond, &m->lock);
		m->paused_cpus--;
	}
	run = !m->exiting;
	pthread_mutex_unlock(&m->lock);
	return run;
}

static void handle_vcpu_exit(vmkit_machine *m, uint32_t idx, const vmkit_vcpu_exit *e)
{
	char d[256];

	switch (e->kind) {
	case VMKIT_VCPU_EXIT_INTERRUPTED:
	case VMKIT_VCPU_EXIT_STOP:
		return;
	case VMKIT_VCPU_EXIT_SHUTDOWN:
		machine_exit(m, VMKIT_EXIT_CRASH, 0, idx, e->detail);
		return;
	case VMKIT_VCPU_EXIT_SYSTEM_EVENT:
		switch (e->u.system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			machine_exit(m, VMKIT_EXIT_POWEROFF, 0, idx, "system event: shutdown");
			return;
		case KVM_SYSTEM_EVENT_RESET:
			machine_exit(m, VMKIT_EXIT_REBOOT, 0, idx, "system event: reset");
			return;
		case KVM_SYSTEM_EVENT_CRASH:
			machine_exit(m, VMKIT_EXIT_PANIC, 0, idx, "system event: crash");
			return;
		}
		snprintf(d, sizeof(d), "vCPU %u: unexpected system event %u", idx,
			 e->u.system_event.type);
		machine_exit(m, VMKIT_EXIT_ERROR, 0, idx, d);
		return;
	case VMKIT_VCPU_EXIT_HLT:
		/* Only without an in-kernel irqchip, which machines always have. */
		machine_exit(m, VMKIT_EXIT_ERROR, 0, idx, "vCPU halted without an interrupt controller");
		return;
	default:
		snprintf(d, sizeof(d), "vCPU %u: %s", idx, e->detail[0] ? e->detail : "unexpected exit");
		machine_exit(m, VMKIT_EXIT_ERROR, 0, idx, d);
		return;
	}
}

static void *vcpu_main(void *arg)
{
	struct vcpu_thread *t = arg;
	vmkit_machine *m = t->m;
	uint32_t idx = vmkit_vcpu_index(t->vcpu);
	vmkit_vcpu_exit e = { .size = sizeof(e) };

	while (wait_runnable(m)) {
		if (vmkit_vcpu_run(t->vcpu, &e) < 0) {
			char d[256];
			snprintf(d, sizeof(d), "%s", vmkit_last_error());
			machine_exit(m, VMKIT_EXIT_ERROR, 0, idx, d);
			break;
		}
		handle_vcpu_exit(m, idx, &e);
	}
	pthread_mutex_lock(&m->lock);
	m->running_threads--;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* ---- I/O thread: serial input ------------------------------------------------- */

/* Read what poll() reported without ever blocking: no more than FIONREAD
 * says is there (another reader of a shared terminal may have taken the
 * bytes since). Returns > 0 bytes, 0 at end of input, -1 for "nothing now". */
static ssize_t read_input(int fd, uint8_t *buf, size_t room, short revents)
{
	struct stat st;
	int avail = 0;
	ssize_t n;

	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		n = read(fd, buf, room); /* regular files never block */
	} else if (ioctl(fd, FIONREAD, &avail) == 0) {
		if (avail == 0)
			return (revents & (POLLHUP | POLLERR)) ? 0 : -1;
		n = read(fd, buf, (size_t)avail < room ? (size_t)avail : room);
	} else {
		n = read(fd, buf, room); /* devices without FIONREAD, e.g. /dev/null */
	}
	if (n < 0)
		return (errno == EINTR || errno == EAGAIN) ? -1 : 0;
	return n;
}

/* Hand buffered input to the UART; while its FIFO is full, stop reading
 * the fd and retry every 5 ms. */
static void serial_feed(vmkit_machine *m)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };

	if (m->serial_file >= 0 && m->rx_len < sizeof(m->rx_buf)) {
		ssize_t n = read_input(m->serial_file, m->rx_buf + m->rx_len,
				       sizeof(m->rx_buf) - m->rx_len, POLLIN);
		if (n > 0)
			m->rx_len += (size_t)n;
		else if (n == 0)
			m->serial_file = -1; /* end of the file */
	}
	if (m->rx_len) {
		size_t took = uart8250_receive(m->uart, m->rx_buf, m->rx_len);
		memmove(m->rx_buf, m->rx_buf + took, m->rx_len - took);
		m->rx_len -= took;
		m->serial_rx += took;
	}
	if (m->rx_len || m->serial_file >= 0)
		its.it_value.tv_nsec = its.it_interval.tv_nsec = 5000000;
	timerfd_settime(m->rx_timer, 0, &its, NULL);
	if (m->serial_in >= 0)
		vmkit__loop_mod(m->loop, m->serial_in, m->rx_len < sizeof(m->rx_buf) ? EPOLLIN : 0);
}

static void serial_input(void *opaque, int fd, uint32_t events)
{
	vmkit_machine *m = opaque;
	short rev = (short)(((events & EPOLLIN) ? POLLIN : 0) | ((events & EPOLLHUP) ? POLLHUP : 0) |
			    ((events & EPOLLERR) ? POLLERR : 0));
	ssize_t n;

	/* epoll reports a hang-up even while we watch for nothing: with the
	 * buffer full, leave what is left in the fd for later. */
	if (m->rx_len == sizeof(m->rx_buf))
		return;
	n = read_input(fd, m->rx_buf + m->rx_len, sizeof(m->rx_buf) - m->rx_len, rev);

	if (n > 0) {
		m->rx_len += (size_t)n;
	} else if (n == 0) {
		/* end of input: keep running, stop reading */
		vmkit__loop_del(m->loop, fd);
		m->serial_in = -1;
	}
	serial_feed(m);
}

static void serial_retry(void *opaque, int fd, uint32_t events)
{
	vmkit_machine *m = opaque;
	uint64_t ticks;

	(void)events;
	if (read(fd, &ticks, sizeof(ticks)) < 0) {
		/* not expired yet: nothing to do */
	}
	serial_feed(m);
}

static void *io_main(void *arg)
{
	vmkit_machine *m = arg;
	int ret = vmkit__loop_run(m->loop);

	if (ret < 0)
		machine_exit(m, VMKIT_EXIT_ERROR, 0, 0, vmkit_last_error());
	return NULL;
}

/* The loop's first registrations: serial input. epoll cannot watch
 * regular files (they never block): those are read on the retry timer. */
static int setup_io(vmkit_machine *m)
{
	int ret;

	m->rx_timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (m->rx_timer < 0)
		return vmkit__err(-errno, "timerfd: %s", strerror(errno));
	if ((ret = vmkit__loop_add(m->loop, m->rx_timer, EPOLLIN, serial_retry, m)) < 0)
		return ret;
	m->serial_in = m->serial_file = -1;
	/* A virtio console on the same input takes it all: two readers of
	 * one fd would each get part of what is typed. */
	if (m->cfg.console && (m->cfg.console_in == MACHINE_FD_SERIAL ||
			       m->cfg.console_in == m->cfg.serial_in))
		return 0;
	if (m->cfg.serial_in >= 0) {
		struct stat st;
		if (fcntl(m->cfg.serial_in, F_GETFD) < 0)
			return 0; /* not an open fd: no input */
		if (fstat(m->cfg.serial_in, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) ||
							 S_ISBLK(st.st_mode))) {
			m->serial_file = m->cfg.serial_in;
			serial_feed(m); /* arms the timer */
			return 0;
		}
		ret = vmkit__loop_add(m->loop, m->cfg.serial_in, EPOLLIN, serial_input, m);
		if (ret == -EPERM)
			return 0; /* an fd epoll cannot watch (e.g. /dev/null): no input */
		if (ret < 0)
			return ret;
		m->serial_in = m->cfg.serial_in;
	}
	return 0;
}

/* ---- assembly -------------------------------------------------------------- */

/* Map a guest file read-only. The loaders parse headers through the
 * mapping and pread() bulk data straight into guest RAM, so the VMM's own
 * memory never holds a copy of a kernel or initrd. */
static int map_file(const char *what, const char *path, uint64_t max, struct file_buf *out)
{
	struct stat st;
	void *p;
	int fd, r;

	out->data = NULL;
	out->fd = -1;
	/* O_NONBLOCK: a FIFO without a writer must fail below, not block. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return vmkit__err(-errno, "%s %s: %s", what, path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return vmkit__err(-EINVAL, "%s %s: not a regular file", what, path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return vmkit__err(-EFBIG, "%s %s: %lld bytes is too large (maximum %llu MiB)", what,
				  path, (long long)st.st_size, (unsigned long long)(max >> 20));
	}
	if (st.st_size == 0) {
		close(fd);
		return vmkit__err(-EINVAL, "%s %s: empty file", what, path);
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		r = vmkit__err(-errno, "%s %s: mmap: %s", what, path, strerror(errno));
		close(fd);
		return r;
	}
	out->data = p;
	out->len = (size_t)st.st_size;
	out->fd = fd;
	return 0;
}

static void unmap_file(struct file_buf *f)
{
	if (f->data)
		munmap(f->data, f->len);
	if (f->fd >= 0)
		close(f->fd);
	f->data = NULL;
	f->fd = -1;
}

/* RAM as x86_ram_layout() lays it out: the e820 map gives the guest
 * exactly cfg.memory bytes of RAM around the 640 KiB-1 MiB hole, so a
 * little more than that is mapped. */
static int add_ram(vmkit_machine *m)
{
	vmkit_memory_region r = VMKIT_MEMORY_REGION_INIT;
	uint64_t low, high;
	bool thp;
	int ret;

	x86_ram_layout(m->cfg.memory, &low, &high);
	/* With a balloon, THP is off unless the embedder asked for it: the
	 * balloon frees 4 KiB pages, and khugepaged (max_ptes_none 511 by
	 * default) collapses a 2 MiB range with any page left in it back into
	 * a whole huge page, so ballooned memory returns to the host's RSS
	 * within minutes (measured: 64 MiB of holes refilled in 70 s). */
	thp = m->cfg.hugepages_set ? m->cfg.hugepages : !m->cfg.balloon;
	if (thp && m->cfg.balloon)
		vmkit__log(&m->vm->log, VMKIT_LOG_WARN,
			   "hugepages with a balloon: khugepaged may refill the pages the balloon frees");
	r.gpa = 0;
	r.length = low;
	r.flags = VMKIT_MEMORY_NODUMP | (thp ? VMKIT_MEMORY_HUGEPAGES : VMKIT_MEMORY_NOHUGEPAGES);
	ret = vmkit_vm_add_memory(m->vm, &r);
	if (ret < 0 || high == 0)
		return ret < 0 ? ret : 0;
	r.gpa = X86_4G;
	r.length = high;
	ret = vmkit_vm_add_memory(m->vm, &r);
	return ret < 0 ? ret : 0;
}

/* KVM emulates the LAPIC's TSC-deadline timer but leaves the CPUID bit
 * (leaf 1 ECX[24]) out of its supported table; without it a guest
 * calibrates the LAPIC timer against the PIT and may give up on it. */
static void offer_tsc_deadline(vmkit_machine *m, vmkit_cpuid_entry *e, size_t n)
{
	if (vmkit_host_check_capability(m->host, KVM_CAP_TSC_DEADLINE_TIMER) <= 0)
		return;
	for (uint32_t i = 0; i < m->cfg.cpu.n_masked; i++)
		if (strcmp(m->cfg.cpu.masked[i], "tsc_deadline_timer") == 0)
			return;
	for (size_t i = 0; i < n; i++)
		if (e[i].function == 1)
			e[i].ecx |= 1u << 24;
}

/* Invariant TSC (0x80000007 EDX[8]) promises a TSC that is constant and
 * in step across CPUs and hosts; vCPU threads that are descheduled, nested
 * hosts and snapshots restored elsewhere break that promise. Like QEMU's
 * default CPU models, vmkit does not offer it: the guest then keeps its
 * clocksource watchdog and prefers kvm-clock. */
static void hide_invariant_tsc(vmkit_cpuid_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (e[i].function == 0x80000007)
			e[i].edx &= ~(1u << 8);
}

static int setup_cpuid_and_msrs(vmkit_machine *m, vmkit_vcpu *v, uint32_t idx)
{
	vmkit_cpuid_entry sup[256], out[256];
	vmkit_msr msrs[32];
	int n, ret;
	size_t nm;

	n = vmkit_host_supported_cpuid(m->host, sup, ARRAY_SIZE(sup));
	if (n < 0)
		return n;
	if ((size_t)n > ARRAY_SIZE(sup))
		n = ARRAY_SIZE(sup);
	n = x86_cpuid_build(sup, (size_t)n, idx, m->ncpus, &m->cfg.cpu, out, ARRAY_SIZE(out));
	if (n < 0)
		return vmkit__err(n, "CPUID for vCPU %u: %s", idx, vmkit_last_error());
	offer_tsc_deadline(m, out, (size_t)n);
	hide_invariant_tsc(out, (size_t)n);
	ret = vmkit_vcpu_set_cpuid(v, out, (size_t)n);
	if (ret < 0)
		return ret;
	nm = x86_boot_msrs(msrs, ARRAY_SIZE(msrs));
	ret = vmkit_vcpu_set_msrs(v, msrs, nm);
	if (ret < 0)
		return ret;
	if ((size_t)ret != nm)
		vmkit__log(&m->vm->log, VMKIT_LOG_WARN, "vCPU %u: KVM refused MSR 0x%x", idx,
			   msrs[ret].index);
	return 0;
}

/* LINT0 delivers the PIC's ExtINT, LINT1 NMI: the wiring firmware sets up
 * on a PC, which kernels that start without firmware expect. */
static int setup_lapic(vmkit_vcpu *v)
{
	vmkit_lapic l;
	uint32_t lvt0 = 0x700, lvt1 = 0x400;
	int ret = vmkit_vcpu_get_lapic(v, &l);

	if (ret < 0)
		return ret;
	memcpy(&l.regs[0x350], &lvt0, 4);
	memcpy(&l.regs[0x360], &lvt1, 4);
	return vmkit_vcpu_set_lapic(v, &l);
}

static int setup_acpi(vmkit_machine *m)
{
	struct x86_acpi_config ac = {
		.ncpus = m->ncpus, .uart = true, .rtc = true, .i8042 = true,
		.pvpanic = true, .fw_cfg = true,
		.dsdt_extra = vmkit__machine_virtio_dsdt, .dsdt_extra_ctx = m->virtio,
		.pci = vmkit__machine_virtio_has_pci(m->virtio), .pci_ecam_base = X86_PCI_ECAM_BASE,
	};
	int ret;

	ret = x86_acpi_build(&ac, X86_ACPI_ADDR, &m->acpi);
	if (ret < 0)
		return ret;
	m->acpi_built = true;
	if (m->acpi.image.len > X86_ACPI_MAX)
		return vmkit__err(-E2BIG, "ACPI tables too large (%zu bytes)", m->acpi.image.len);
	ret = vmkit_vm_write(m->vm, X86_ACPI_ADDR, m->acpi.image.data, m->acpi.image.len);
	if (ret < 0)
		return ret;
	if ((ret = fwcfg_add_file(m->fwcfg, "etc/acpi/tables", m->acpi.fw_tables.data,
				  m->acpi.fw_tables.len)) < 0 ||
	    (ret = fwcfg_add_file(m->fwcfg, "etc/acpi/rsdp", m->acpi.fw_rsdp.data,
				  m->acpi.fw_rsdp.len)) < 0 ||
	    (ret = fwcfg_add_file(m->fwcfg, "etc/table-loader", m->acpi.fw_loader.data,
				  m->acpi.fw_loader.len)) < 0)
		return ret;
	return 0;
}

/* CMOS memory size bytes, as PC firmware and old kernels read them. */
static void setup_rtc_nvram(vmkit_machine *m)
{
	uint64_t mem = m->cfg.memory;
	uint64_t low = mem < X86_MMIO_HOLE ? mem : X86_MMIO_HOLE;
	uint64_t ext_kib = low > (1 << 20) ? (low - (1 << 20)) >> 10 : 0;
	uint64_t above16 = low > (16 << 20) ? (low - (16 << 20)) >> 16 : 0;
	uint64_t above4g = mem > low ? (mem - low) >> 16 : 0;

	if (ext_kib > 0xffff)
		ext_kib = 0xffff;
	if (above16 > 0xffff)
		above16 = 0xffff;
	rtc_set_nvram(m->rtc, 0x15, 0x80); /* base memory 640 KiB */
	rtc_set_nvram(m->rtc, 0x16, 0x02);
	rtc_set_nvram(m->rtc, 0x17, (uint8_t)ext_kib);
	rtc_set_nvram(m->rtc, 0x18, (uint8_t)(ext_kib >> 8));
	rtc_set_nvram(m->rtc, 0x30, (uint8_t)ext_kib);
	rtc_set_nvram(m->rtc, 0x31, (uint8_t)(ext_kib >> 8));
	rtc_set_nvram(m->rtc, 0x34, (uint8_t)above16);
	rtc_set_nvram(m->rtc, 0x35, (uint8_t)(above16 >> 8));
	rtc_set_nvram(m->rtc, 0x5b, (uint8_t)above4g);
	rtc_set_nvram(m->rtc, 0x5c, (uint8_t)(above4g >> 8));
	rtc_set_nvram(m->rtc, 0x5d, (uint8_t)(above4g >> 16));
	rtc_set_nvram(m->rtc, 0x5f, (uint8_t)(m->ncpus - 1));
}

static int setup_fwcfg_items(vmkit_machine *m, const struct x86_e820 *e820, size_t n_e820)
{
	uint8_t raw[X86_E820_MAX * 20];
	const char *cmd = m->cfg.cmdline ? m->cfg.cmdline : "";
	int ret;

	for (size_t i = 0; i < n_e820; i++) {
		memcpy(raw + i * 20, &e820[i].addr, 8);
		memcpy(raw + i * 20 + 8, &e820[i].size, 8);
		memcpy(raw + i * 20 + 16, &e820[i].type, 4);
	}
	if ((ret = fwcfg_add_u16(m->fwcfg, FW_CFG_NB_CPUS, (uint16_t)m->ncpus)) < 0 ||
	    (ret = fwcfg_add_u16(m->fwcfg, FW_CFG_MAX_CPUS, (uint16_t)m->ncpus)) < 0 ||
	    (ret = fwcfg_add_u64(m->fwcfg, FW_CFG_RAM_SIZE, m->cfg.memory)) < 0 ||
	    (ret = fwcfg_add_u16(m->fwcfg, FW_CFG_NOGRAPHIC, 1)) < 0 ||
	    (ret = fwcfg_add_u32(m->fwcfg, FW_CFG_CMDLINE_SIZE, (uint32_t)strlen(cmd) + 1)) < 0 ||
	    (ret = fwcfg_add_item(m->fwcfg, FW_CFG_CMDLINE_DATA, cmd, strlen(cmd) + 1)) < 0 ||
	    (ret = fwcfg_add_file(m->fwcfg, "etc/e820", raw, n_e820 * 20)) < 0 ||
	    (ret = fwcfg_add_file(m->fwcfg, "bootorder", "", 0)) < 0)
		return ret;
	return 0;
}

struct pio_dev {
	uint16_t port;
	uint32_t len;
	const vmkit_io_ops *ops;
	void *opaque;
};

static int setup_devices(vmkit_machine *m)
{
	struct dev_irq com1 = { irq_com1, m }, kbd = { irq_kbd, m }, rtc = { irq_rtc, m },
		       sci = { irq_sci, m };
	struct dev_sink out = { serial_out, m };
	struct pm_callbacks pmcb = { on_poweroff, on_reset, on_panic, m };
	int ret;

	if ((ret = uart8250_new(&com1, &out, &m->uart)) < 0 ||
	    (ret = i8042_new(&kbd, on_reset, m, &m->kbd)) < 0 ||
	    (ret = rtc_new(&rtc, &m->rtc)) < 0 ||
	    (ret = pm_new(&sci, &pmcb, &m->pm)) < 0 ||
	    (ret = fwcfg_new(&m->vm->mem, &m->fwcfg)) < 0)
		return ret;
	if (m->cfg.exit_port_enabled && (ret = debug_exit_new(on_exit_port, m, &m->dbg)) < 0)
		return ret;

	const struct pio_dev devs[] = {
		{ X86_COM1_PORT, 8, &uart8250_ops, m->uart },
		{ X86_I8042_DATA, 1, &i8042_data_ops, m->kbd },
		{ X86_I8042_CMD, 1, &i8042_cmd_ops, m->kbd },
		{ X86_RTC_PORT, 2, &rtc_ops, m->rtc },
		{ X86_PM_BASE, 8, &pm_ops, m->pm },
		{ X86_RESET_PORT, 1, &pm_reset_ops, m->pm },
		{ X86_PVPANIC_PORT, 1, &pvpanic_ops, m->pm },
		{ X86_FWCFG_PORT, 12, &fwcfg_ops, m->fwcfg },
	};
	for (size_t i = 0; i < ARRAY_SIZE(devs); i++) {
		ret = vmkit_vm_register_pio(m->vm, devs[i].port, devs[i].len, devs[i].ops,
					    devs[i].opaque, 0);
		if (ret < 0)
			return ret;
	}
	if (m->cfg.debugcon_fd >= 0) {
		struct dev_sink dout = { debugcon_out, m };
		if ((ret = debugcon_new(&dout, DEBUGCON_READBACK, &m->dcon)) < 0)
			return ret;
		ret = vmkit_vm_register_pio(m->vm, m->cfg.debugcon_port, 1, &debugcon_ops, m->dcon, 0);
		if (ret < 0)
			return vmkit__err(ret, "debug console port 0x%x: %s", m->cfg.debugcon_port,
					  vmkit_last_error());
	}
	if (m->dbg) {
		/* 4 ports so that a 4-byte write arrives whole, as QEMU's iosize=4 */
		ret = vmkit_vm_register_pio(m->vm, m->cfg.exit_port, 4, &debug_exit_ops, m->dbg, 0);
		if (ret < 0)
			return vmkit__err(ret, "exit port 0x%x: %s", m->cfg.exit_port, vmkit_last_error());
	}
	setup_rtc_nvram(m);
	return 0;
}

static int map_firmware(vmkit_machine *m, const struct file_buf *fw)
{
	vmkit_memory_region r = VMKIT_MEMORY_REGION_INIT;
	void *hva;
	int ret;

	if (fw->len % 0x10000 || fw->len > FIRMWARE_MAX_BYTES)
		return vmkit__err(-EINVAL, "firmware %s: size %zu is not a multiple of 64 KiB up to 16 MiB",
				  m->cfg.firmware, fw->len);
	r.gpa = X86_4G - fw->len;
	r.length = fw->len;
	ret = vmkit_vm_add_memory(m->vm, &r);
	if (ret < 0 || (ret = vmkit_vm_translate(m->vm, r.gpa, fw->len, &hva)) < 0)
		return ret;
	if (pread(fw->fd, hva, fw->len, 0) != (ssize_t)fw->len)
		return vmkit__err(-EIO, "firmware %s: read error", m->cfg.firmware);
	return 0;
}

/* Option ROMs for the firmware: fw_cfg files genroms/<file name>. */
static int add_option_roms(vmkit_machine *m)
{
	for (size_t i = 0; i < m->cfg.n_option_roms; i++) {
		const char *path = m->cfg.option_roms[i], *base = strrchr(path, '/');
		struct file_buf f = { .fd = -1 };
		char name[64];
		int ret;

		ret = map_file("option ROM", path, OPTION_ROM_MAX_BYTES, &f);
		if (ret < 0)
			return ret;
		snprintf(name, sizeof(name), "genroms/%s", base ? base + 1 : path);
		ret = fwcfg_add_file(m->fwcfg, name, f.data, f.len);
		unmap_file(&f);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* The initrds as one fw_cfg item (FW_CFG_INITRD_DATA): the firmware
 * copies it whole to the address the boot protocol chose. */
static int fwcfg_initrd(vmkit_machine *m, const struct boot_blob *rd, size_t n, uint64_t total)
{
	uint8_t *all;
	size_t off = 0;
	int ret;

	if (n == 1)
		return fwcfg_add_item(m->fwcfg, FW_CFG_INITRD_DATA, rd[0].data, rd[0].len);
	all = malloc(total);
	if (!all)
		return vmkit__err(-ENOMEM, "out of memory for %llu bytes of initrds",
				  (unsigned long long)total);
	for (size_t i = 0; i < n; i++) {
		memcpy(all + off, rd[i].data, rd[i].len);
		off += rd[i].len;
	}
	ret = fwcfg_add_item(m->fwcfg, FW_CFG_INITRD_DATA, all, total);
	free(all);
	return ret;
}

/* Firmware with a kernel: nothing goes into guest memory here. The
 * bzImage (real-mode setup, protected-mode kernel), the initrds and the
 * command line's address go to fw_cfg under QEMU's kernel items, for the
 * firmware (SeaBIOS with linuxboot_dma.bin, qboot) to load and enter. */
static int kernel_to_firmware(vmkit_machine *m, struct boot_input *in)
{
	struct file_buf kernel = { .fd = -1 }, initrds[MACHINE_MAX_INITRDS];
	struct boot_blob blobs[MACHINE_MAX_INITRDS];
	struct boot_fwcfg_kernel k = { 0 };
	uint64_t rd_size = 0;
	int ret;

	if (m->cfg.kernel_format != VMKIT_KERNEL_AUTO && m->cfg.kernel_format != VMKIT_KERNEL_BZIMAGE)
		return vmkit__err(-EINVAL, "firmware + kernel: only a bzImage can be handed to the firmware (fw_cfg); the configured kernel format is another");
	for (size_t i = 0; i < MACHINE_MAX_INITRDS; i++)
		initrds[i] = (struct file_buf){ .fd = -1 };
	ret = map_file("kernel", m->cfg.kernel, KERNEL_MAX_BYTES, &kernel);
	for (size_t i = 0; i < m->cfg.n_initrds && ret == 0; i++) {
		ret = map_file("initrd", m->cfg.initrds[i], m->cfg.memory, &initrds[i]);
		blobs[i] = (struct boot_blob){ initrds[i].data, initrds[i].len, m->cfg.initrds[i],
					       false, -1 };
		rd_size += initrds[i].len;
	}
	if (ret < 0)
		goto out;
	in->kernel = kernel.data;
	in->kernel_len = kernel.len;
	in->initrds = blobs;
	in->n_initrds = m->cfg.n_initrds;
	ret = boot_bzimage_fwcfg(in, &k);
	if (ret < 0) {
		const char *msg = vmkit_last_error();
		ret = vmkit__err(ret, "kernel %s: %s%s", m->cfg.kernel,
				 strncmp(msg, "bzImage: ", 9) == 0 ? msg + 9 : msg,
				 ret == -ENOEXEC ? " (firmware boots only a bzImage)" : "");
		goto out;
	}
	if ((ret = fwcfg_add_u32(m->fwcfg, FW_CFG_SETUP_ADDR, k.setup_addr)) < 0 ||
	    (ret = fwcfg_add_u32(m->fwcfg, FW_CFG_SETUP_SIZE, k.setup_size)) < 0 ||
	    (ret = fwcfg_add_item(m->fwcfg, FW_CFG_SETUP_DATA, k.setup, k.setup_size)) < 0 ||
	    (ret = fwcfg_add_u32(m->fwcfg, FW_CFG_KERNEL_ADDR, k.kernel_addr)) < 0 ||
	    (ret = fwcfg_add_u32(m->fwcfg, FW_CFG_KERNEL_SIZE, k.kernel_size)) < 0 ||
	    (ret = fwcfg_add_item(m->fwcfg, FW_CFG_KERNEL_DATA, k.kernel, k.kernel_size)) < 0 ||
	    (ret = fwcfg_add_u32(m->fwcfg, FW_CFG_CMDLINE_ADDR, k.cmdline_addr)) < 0)
		goto out;
	if (rd_size &&
	    ((ret = fwcfg_add_u32(m->fwcfg, FW_CFG_INITRD_ADDR, k.initrd_addr)) < 0 ||
	     (ret = fwcfg_add_u32(m->fwcfg, FW_CFG_INITRD_SIZE, (uint32_t)rd_size)) < 0 ||
	     (ret = fwcfg_initrd(m, blobs, m->cfg.n_initrds, rd_size)) < 0))
		goto out;
out:
	free(k.setup);
	unmap_file(&kernel);
	for (size_t i = 0; i < m->cfg.n_initrds; i++)
		unmap_file(&initrds[i]);
	return ret;
}

static int load_guest(vmkit_machine *m, const struct x86_e820 *e820, size_t n_e820)
{
	struct file_buf kernel = { .fd = -1 }, fw = { .fd = -1 };
	struct file_buf initrds[MACHINE_MAX_INITRDS];
	struct boot_blob blobs[MACHINE_MAX_INITRDS];
	struct boot_input in = {
		.mem = &m->vm->mem, .ram_size = m->cfg.memory, .e820 = e820, .n_e820 = n_e820,
		.cmdline = m->cfg.cmdline ? m->cfg.cmdline : "",
		.rsdp_addr = m->acpi_built ? m->acpi.rsdp_addr : 0,
		.flat_load = m->cfg.flat_load, .flat_entry = m->cfg.flat_entry,
		.flat_mode = m->cfg.flat_mode,
	};
	struct boot_entry entry;
	vmkit_vcpu *bsp = m->cpus[0].vcpu;
	int ret, fmt;

	memset(&entry, 0, sizeof(entry));
	for (size_t i = 0; i < MACHINE_MAX_INITRDS; i++)
		initrds[i] = (struct file_buf){ .fd = -1 };
	ret = vmkit_vcpu_get_sregs(bsp, &entry.sregs);
	if (ret < 0)
		return ret;
	if (m->cfg.firmware) {
		ret = map_file("firmware", m->cfg.firmware, FIRMWARE_MAX_BYTES, &fw);
		if (ret == 0)
			ret = map_firmware(m, &fw);
		if (ret == 0)
			ret = boot_firmware(&in, fw.data, fw.len, &entry);
		unmap_file(&fw);
		if (ret == 0)
			ret = add_option_roms(m);
		if (ret == 0 && m->cfg.kernel)
			ret = kernel_to_firmware(m, &in);
		goto set_state;
	}
	if (m->cfg.n_option_roms)
		return vmkit__err(-EINVAL, "option ROMs are for firmware, and no firmware is configured");
	if (!m->cfg.kernel)
		return vmkit__err(-EINVAL, "no kernel or firmware configured");
	ret = map_file("kernel", m->cfg.kernel, KERNEL_MAX_BYTES, &kernel);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < m->cfg.n_initrds && ret == 0; i++) {
		ret = map_file("initrd", m->cfg.initrds[i], m->cfg.memory, &initrds[i]);
		blobs[i] = (struct boot_blob){ initrds[i].data, initrds[i].len, m->cfg.initrds[i],
					       true, initrds[i].fd };
	}
	if (ret < 0)
		goto out;
	in.kernel = kernel.data;
	in.kernel_len = kernel.len;
	in.kernel_from_fd = true;
	in.kernel_fd = kernel.fd;
	in.initrds = blobs;
	in.n_initrds = m->cfg.n_initrds;
	fmt = (int)m->cfg.kernel_format;
	if (fmt == VMKIT_KERNEL_AUTO) {
		fmt = boot_detect(kernel.data, kernel.len);
		if (fmt < 0) {
			ret = fmt;
			goto fail_kernel;
		}
	}
	switch (fmt) {
	case VMKIT_KERNEL_BZIMAGE: ret = boot_bzimage(&in, &entry); break;
	case VMKIT_KERNEL_PVH: ret = boot_pvh(&in, &entry); break;
	case VMKIT_KERNEL_MULTIBOOT: ret = boot_multiboot(&in, &entry); break;
	case VMKIT_KERNEL_FLAT: ret = boot_flat(&in, &entry); break;
	default: ret = vmkit__err(-EINVAL, "kernel format %d unknown", fmt); break;
	}
fail_kernel:
	if (ret < 0) {
		/* the loaders' messages start "kernel: "; put the path there */
		const char *msg = vmkit_last_error();
		if (strncmp(msg, "kernel: ", 8) == 0)
			msg += 8;
		ret = vmkit__err(ret, "kernel %s: %s", m->cfg.kernel, msg);
	}
out:
	unmap_file(&kernel);
	for (size_t i = 0; i < m->cfg.n_initrds; i++)
		unmap_file(&initrds[i]);
set_state:
	if (ret < 0)
		return ret;
	ret = vmkit_vcpu_set_sregs(bsp, &entry.sregs);
	if (ret == 0)
		ret = vmkit_vcpu_set_regs(bsp, &entry.regs);
	return ret;
}

int vmkit_machine_new(vmkit_host *host, const vmkit_machine_config *cfg, vmkit_machine **out)
{
	vmkit_vm_config vc = VMKIT_VM_CONFIG_INIT;
	struct x86_e820 e820[X86_E820_MAX];
	size_t n_e820;
	vmkit_machine *m;
	int ret;

	if (!host || !cfg || !out)
		return vmkit__err(-EINVAL, "vmkit_machine_new: NULL argument");
	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return vmkit__err(-ENOMEM, "out of memory");
	m->host = host;
	m->rx_timer = -1;
	m->serial_in = m->serial_file = -1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_mutex_init(&m->reap_lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	ret = vmkit__machine_config_copy(&m->cfg, cfg);
	if (ret < 0) {
		free(m);
		return ret;
	}
	m->ncpus = m->cfg.ncpus;
	vc.unhandled_policy = m->cfg.unhandled_policy;
	if ((ret = vmkit_vm_new(host, &vc, &m->vm)) < 0 || (ret = add_ram(m)) < 0)
		goto fail;
	for (uint32_t i = 0; i < m->ncpus; i++) {
		m->cpus[i].m = m;
		if ((ret = vmkit_vcpu_new(m->vm, i, &m->cpus[i].vcpu)) < 0 ||
		    (ret = setup_cpuid_and_msrs(m, m->cpus[i].vcpu, i)) < 0 ||
		    (ret = setup_lapic(m->cpus[i].vcpu)) < 0)
			goto fail;
	}
	if ((ret = vmkit__loop_new(&m->loop)) < 0 || (ret = setup_devices(m)) < 0 ||
	    (ret = setup_io(m)) < 0)
		goto fail;
	if ((ret = vmkit__machine_virtio_new(m, m->vm, m->loop, &m->cfg, &m->virtio)) < 0)
		goto fail;
	if (m->cfg.mmio_cmdline && (ret = vmkit__machine_virtio_cmdline(m->virtio, &m->cfg.cmdline)) < 0)
		goto fail;
	n_e820 = x86_e820_build(m->cfg.memory, e820, ARRAY_SIZE(e820));
	if ((ret = setup_fwcfg_items(m, e820, n_e820)) < 0)
		goto fail;
	if (m->cfg.acpi && (ret = setup_acpi(m)) < 0)
		goto fail;
	if ((ret = load_guest(m, e820, n_e820)) < 0)
		goto fail;
	m->state = VMKIT_MACHINE_CREATED;
	*out = m;
	return 0;
fail:
	{
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", vmkit_last_error());
		vmkit__machine_virtio_disown(m->virtio);
		vmkit_machine_free(m);
		return vmkit__err(ret, "%s", msg);
	}
}

/* Threads get every signal blocked but the kick signal. */
static int spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	sigdelset(&all, vmkit__kick_signal());
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -r;
}

static int start_threads(vmkit_machine *m);

int vmkit_machine_start(vmkit_machine *m)
{
	int ret;

	if (!m)
		return vmkit__err(-EINVAL, "NULL machine");
	pthread_mutex_lock(&m->lock);
	if (m->state != VMKIT_MACHINE_CREATED) {
		pthread_mutex_unlock(&m->lock);
		return vmkit__err(-EBUSY, "machine already started");
	}
	m->state = VMKIT_MACHINE_RUNNING;
	clock_gettime(CLOCK_MONOTONIC, &m->run_start);
	pthread_mutex_unlock(&m->lock);
	/* A wait() on another thread reaps only once every thread is spawned. */
	pthread_mutex_lock(&m->reap_lock);
	ret = start_threads(m);
	pthread_mutex_unlock(&m->reap_lock);
	if (ret == 0)
		emit(m, VMKIT_EVENT_STARTED);
	return ret;
}

static int start_threads(vmkit_machine *m)
{
	int ret;

	{
		ret = spawn(&m->io_thread, io_main, m);
		if (ret < 0) {
			machine_exit(m, VMKIT_EXIT_ERROR, 0, 0, "cannot start the I/O thread");
			return vmkit__err(ret, "cannot start the I/O thread: %s", strerror(-ret));
		}
		m->io_started = true;
	}
	for (uint32_t i = 0; i < m->ncpus; i++) {
		pthread_mutex_lock(&m->lock);
		m->running_threads++;
		pthread_mutex_unlock(&m->lock);
		ret = spawn(&m->cpus[i].thread, vcpu_main, &m->cpus[i]);
		if (ret < 0) {
			pthread_mutex_lock(&m->lock);
			m->running_threads--;
			pthread_mutex_unlock(&m->lock);
			machine_exit(m, VMKIT_EXIT_ERROR, 0, i, "cannot start a vCPU thread");
			return vmkit__err(ret, "cannot start vCPU thread %u: %s", i, strerror(-ret));
		}
		m->cpus[i].started = true;
	}
	return 0;
}

static void account_run_time(vmkit_machine *m)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	m->run_ns += (uint64_t)(now.tv_sec - m->run_start.tv_sec) * 1000000000ull +
		     (uint64_t)now.tv_nsec - (uint64_t)m->run_start.tv_nsec;
}

int vmkit_machine_pause(vmkit_machine *m)
{
	if (!m)
		return vmkit__err(-EINVAL, "NULL machine");
	pthread_mutex_lock(&m->lock);
	if (m->state != VMKIT_MACHINE_RUNNING || m->exiting) {
		pthread_mutex_unlock(&m->lock);
		return vmkit__err(-EINVAL, "machine is not running");
	}
	m->pause_requested = true;
	for (uint32_t i = 0; i < m->ncpus; i++)
		vmkit_vcpu_kick(m->cpus[i].vcpu);
	while (m->paused_cpus < m->running_threads && !m->exiting)
		pthread_cond_wait(&m->cond, &m->lock);
	if (m->exiting) {
		m->pause_requested = false;
		pthread_mutex_unlock(&m->lock);
		return vmkit__err(-ESRCH, "machine exited while pausing");
	}
	m->state = VMKIT_MACHINE_PAUSED;
	account_run_time(m);
	pthread_mutex_unlock(&m->lock);
	emit(m, VMKIT_EVENT_PAUSED);
	return 0;
}

int vmkit_machine_resume(vmkit_machine *m)
{
	if (!m)
		return vmkit__err(-EINVAL, "NULL machine");
	pthread_mutex_lock(&m->lock);
	if (m->state != VMKIT_MACHINE_PAUSED) {
		pthread_mutex_unlock(&m->lock);
		return vmkit__err(-EINVAL, "machine is not paused");
	}
	m->pause_requested = false;
	m->state = VMKIT_MACHINE_RUNNING;
	clock_gettime(CLOCK_MONOTONIC, &m->run_start);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	emit(m, VMKIT_EVENT_RESUMED);
	return 0;
}

int vmkit_machine_stop(vmkit_machine *m)
{
	if (!m)
		return vmkit__err(-EINVAL, "NULL machine");
	machine_exit(m, VMKIT_EXIT_STOPPED, 0, 0, "stopped by the embedder");
	return 0;
}

/* Join the threads once the machine is exiting; only the first caller joins. */
static void reap(vmkit_machine *m)
{
	bool was_running;

	pthread_mutex_lock(&m->reap_lock);
	for (uint32_t i = 0; i < m->ncpus; i++) {
		if (m->cpus[i].started) {
			pthread_join(m->cpus[i].thread, NULL);
			m->cpus[i].started = false;
		}
	}
	if (m->io_started) {
		vmkit__loop_stop(m->loop);
		pthread_join(m->io_thread, NULL);
		m->io_started = false;
	}
	pthread_mutex_unlock(&m->reap_lock);
	pthread_mutex_lock(&m->lock);
	was_running = m->state == VMKIT_MACHINE_RUNNING;
	if (was_running)
		account_run_time(m);
	if (m->state != VMKIT_MACHINE_CREATED)
		m->state = VMKIT_MACHINE_EXITED;
	pthread_mutex_unlock(&m->lock);
}

int vmkit_machine_wait(vmkit_machine *m, int timeout_ms, vmkit_machine_exit *exit)
{
	struct timespec deadline;

	if (!m || (exit && exit->size < sizeof(*exit)))
		return vmkit__err(-EINVAL, "vmkit_machine_wait: bad arguments");
	clock_gettime(CLOCK_REALTIME, &deadline);
	if (timeout_ms > 0) {
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&m->lock);
	if (m->state == VMKIT_MACHINE_CREATED) {
		pthread_mutex_unlock(&m->lock);
		return vmkit__err(-EINVAL, "machine was not started");
	}
	while (!m->exiting) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&m->cond, &m->lock);
		} else if (timeout_ms == 0 ||
			   pthread_cond_timedwait(&m->cond, &m->lock, &deadline) == ETIMEDOUT) {
			if (!m->exiting) {
				pthread_mutex_unlock(&m->lock);
				return vmkit__err(-ETIMEDOUT, "machine still running after %d ms", timeout_ms);
			}
		}
	}
	pthread_mutex_unlock(&m->lock);
	reap(m);
	if (exit) {
		pthread_mutex_lock(&m->lock);
		uint32_t size = exit->size;
		*exit = m->exit;
		exit->size = size;
		pthread_mutex_unlock(&m->lock);
	}
	return 0;
}

vmkit_machine_state vmkit_machine_get_state(vmkit_machine *m)
{
	vmkit_machine_state s;

	if (!m)
		return VMKIT_MACHINE_EXITED;
	pthread_mutex_lock(&m->lock);
	s = m->exiting ? VMKIT_MACHINE_EXITED : m->state;
	pthread_mutex_unlock(&m->lock);
	return s;
}

int vmkit_machine_set_event_callback(vmkit_machine *m, vmkit_event_fn fn, void *userdata)
{
	if (!m)
		return vmkit__err(-EINVAL, "NULL machine");
	pthread_mutex_lock(&m->lock);
	m->event_fn = fn;
	m->event_userdata = userdata;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int vmkit_machine_get_stats(vmkit_machine *m, vmkit_machine_stats *st)
{
	int ret;

	if (!m || !st || st->size < sizeof(*st))
		return vmkit__err(-EINVAL, "vmkit_machine_get_stats: bad arguments");
	st->ncpus = m->ncpus;
	st->vm.size = sizeof(st->vm);
	ret = vmkit_vm_get_stats(m->vm, &st->vm);
	if (ret < 0)
		return ret;
	st->serial_tx_bytes = uart8250_tx_bytes(m->uart);
	st->serial_rx_bytes = m->serial_rx;
	pthread_mutex_lock(&m->lock);
	st->run_ns = m->run_ns;
	if (m->state == VMKIT_MACHINE_RUNNING && !m->exiting) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		st->run_ns += (uint64_t)(now.tv_sec - m->run_start.tv_sec) * 1000000000ull +
			      (uint64_t)now.tv_nsec - (uint64_t)m->run_start.tv_nsec;
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int vmkit_machine_get_vcpu_stats(vmkit_machine *m, uint32_t index, vmkit_vcpu_stats *st)
{
	if (!m || index >= m->ncpus)
		return vmkit__err(-EINVAL, "vmkit_machine_get_vcpu_stats: bad vCPU index");
	return vmkit_vcpu_get_stats(m->cpus[index].vcpu, st);
}

vmkit_vm *vmkit_machine_vm(vmkit_machine *m)
{
	return m ? m->vm : NULL;
}

vmkit_vcpu *vmkit_machine_vcpu(vmkit_machine *m, uint32_t index)
{
	return m && index < m->ncpus ? m->cpus[index].vcpu : NULL;
}

void vmkit_machine_free(vmkit_machine *m)
{
	if (!m)
		return;
	if (m->state == VMKIT_MACHINE_RUNNING || m->state == VMKIT_MACHINE_PAUSED) {
		machine_exit(m, VMKIT_EXIT_STOPPED, 0, 0, "machine freed");
		reap(m);
	}
	/* wait until no other thread is inside machine_exit()/pause() */
	pthread_mutex_lock(&m->lock);
	pthread_mutex_unlock(&m->lock);
	/* virtio transports unregister their ioeventfds from the VM */
	vmkit__machine_virtio_free(m->virtio);
	vmkit_vm_free(m->vm); /* frees the vCPUs; no device is called after this */
	uart8250_free(m->uart);
	i8042_free(m->kbd);
	rtc_free(m->rtc);
	pm_free(m->pm);
	fwcfg_free(m->fwcfg);
	debug_exit_free(m->dbg);
	debugcon_free(m->dcon);
	if (m->acpi_built)
		x86_acpi_free(&m->acpi);
	vmkit__loop_free(m->loop);
	if (m->rx_timer >= 0)
		close(m->rx_timer);
	vmkit__machine_config_clear(&m->cfg);
	pthread_mutex_destroy(&m->lock);
	pthread_mutex_destroy(&m->reap_lock);
	pthread_cond_destroy(&m->cond);
	free(m);
}

/* ---- balloon ---------------------------------------------------------------- */

int vmkit_machine_balloon_set_target(vmkit_machine *m, uint64_t target_bytes)
{
	vmkit_virtio_dev *dev;
	void *b;
	int ret;

	if (!m)
		return vmkit__err(-EINVAL, "NULL machine");
	if ((ret = vmkit__machine_virtio_balloon(m->virtio, &b, &dev)) < 0)
		return ret;
	if (target_bytes > m->cfg.memory)
		return vmkit__err(-EINVAL, "balloon target %" PRIu64 " MiB is more than the guest's %" PRIu64 " MiB",
				  target_bytes >> 20, m->cfg.memory >> 20);
	return virtio_balloon_set_target(b, dev, target_bytes);
}

int vmkit_machine_balloon_get_actual(vmkit_machine *m, uint64_t *bytes)
{
	vmkit_virtio_dev *dev;
	void *b;
	int ret;

	if (!m || !bytes)
		return vmkit__err(-EINVAL, "vmkit_machine_balloon_get_actual: NULL argument");
	if ((ret = vmkit__machine_virtio_balloon(m->virtio, &b, &dev)) < 0)
		return ret;
	return virtio_balloon_get_actual(b, dev, bytes);
}

int vmkit_machine_balloon_get_stats(vmkit_machine *m, vmkit_balloon_stats *st)
{
	vmkit_virtio_dev *dev;
	void *b;
	int ret;

	if (!m || !st || st->size < sizeof(*st))
		return vmkit__err(-EINVAL, "vmkit_machine_balloon_get_stats: bad arguments");
	if ((ret = vmkit__machine_virtio_balloon(m->virtio, &b, &dev)) < 0)
		return ret;
	return virtio_balloon_get_stats(b, dev, st);
}

int vmkit_machine_net_get_stats(vmkit_machine *m, uint32_t index, vmkit_net_stats *st)
{
	vmkit_virtio_dev *dev;
	void *n;
	int ret;

	if (!m || !st || st->size < sizeof(*st))
		return vmkit__err(-EINVAL, "vmkit_machine_net_get_stats: bad arguments");
	if ((ret = vmkit__machine_virtio_net(m->virtio, index, &n, &dev)) < 0)
		return ret;
	return virtio_net_get_stats(n, dev, st);
}

int vmkit_machine_net_set_rate_limit(vmkit_machine *m, uint32_t index, const vmkit_rate_limit *rx,
				     const vmkit_rate_limit *tx)
{
	vmkit_virtio_dev *dev;
	void *n;
	int ret;

	if (!m)
		return vmkit__err(-EINVAL, "NULL machine");
	if ((ret = vmkit__machine_virtio_net(m->virtio, index, &n, &dev)) < 0)
		return ret;
	return virtio_net_set_rate_limit(n, dev, rx, tx);
}

int vmkit_machine_net_receive(vmkit_machine *m, uint32_t index, const void *frame, size_t len)
{
	vmkit_virtio_dev *dev;
	void *n;
	int ret;

	if (!m || (!frame && len))
		return vmkit__err(-EINVAL, "vmkit_machine_net_receive: NULL argument");
	if ((ret = vmkit__machine_virtio_net(m->virtio, index, &n, &dev)) < 0)
		return ret;
	return virtio_net_receive(n, dev, frame, len);
}

int vmkit_machine_net_kick(vmkit_machine *m, uint32_t index)
{
	vmkit_virtio_dev *dev;
	void *n;
	int ret;

	if (!m)
		return vmkit__err(-EINVAL, "NULL machine");
	if ((ret = vmkit__machine_virtio_net(m->virtio, index, &n, &dev)) < 0)
		return ret;
	return virtio_net_kick(n, dev);
}
