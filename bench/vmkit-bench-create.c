/* SPDX-License-Identifier: MIT */
/* vmkit-bench-create: how many VMs per second vmkit creates and destroys.
 *
 *   vmkit-bench-create [-n ITERATIONS] [-t MAX_SECONDS] [--kvm PATH] [WHAT...]
 *
 * WHAT (default: all of them, in this order):
 *   kvm          floor: the same work as "vm" in raw KVM ioctls (open VM,
 *                irqchip, PIT, 1 MiB memslot, one vCPU with its run area,
 *                close), no library
 *   vm           vmkit_vm_new (in-kernel irqchip and PIT) + a 1 MiB
 *                anonymous memory region + vmkit_vcpu_new, then vmkit_vm_free
 *   machine      vmkit_machine_new + vmkit_machine_free of a 2 MiB machine
 *                with a tiny flat guest (built, never run)
 *   machine-run  as "machine", plus vmkit_machine_start and waiting for the
 *                flat guest's exit-port write (status 0) before freeing
 *
 * The host (/dev/kvm) is opened once, outside the timed loops. Each test
 * runs ITERATIONS times (default 200) or until MAX_SECONDS (default 20)
 * have passed, whichever is first, after one untimed warm-up iteration.
 * One line per test on stdout:
 *   WHAT iterations=N seconds=S per_second=R us_each=U
 * Exit status 0, or 1 with one line on stderr when something failed. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <vmkit/vmkit.h>

#define MIB (1ull << 20)

static const char *kvm_path = "/dev/kvm";
static char flat_path[] = "/tmp/vmkit-bench-flat.XXXXXX";
static int flat_made;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, int err)
{
	fprintf(stderr, "vmkit-bench-create: %s: %s (%s)\n", what, vmkit_last_error(),
		strerror(err < 0 ? -err : err));
	return -1;
}

/* ---- raw KVM floor -------------------------------------------------------- */

static int once_kvm(void *unused)
{
	static int kvm = -1;
	static long run_size;
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	struct kvm_userspace_memory_region r = { 0 };
	int vm = -1, cpu = -1, ret = -1;
	void *mem = MAP_FAILED, *run = MAP_FAILED;

	(void)unused;
	if (kvm < 0) {
		kvm = open(kvm_path, O_RDWR | O_CLOEXEC);
		if (kvm < 0)
			return fail("open kvm", errno);
		run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
		if (run_size <= 0)
			return fail("KVM_GET_VCPU_MMAP_SIZE", errno);
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		fail("KVM_CREATE_VM", errno);
		goto out;
	}
	if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0 || ioctl(vm, KVM_CREATE_PIT2, &pit) < 0) {
		fail("KVM_CREATE_IRQCHIP/PIT2", errno);
		goto out;
	}
	mem = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	if (mem == MAP_FAILED) {
		fail("mmap", errno);
		goto out;
	}
	r.memory_size = MIB;
	r.userspace_addr = (uintptr_t)mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
		fail("KVM_SET_USER_MEMORY_REGION", errno);
		goto out;
	}
	cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (cpu < 0) {
		fail("KVM_CREATE_VCPU", errno);
		goto out;
	}
	run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
	if (run == MAP_FAILED) {
		fail("mmap vcpu", errno);
		goto out;
	}
	ret = 0;
out:
	if (run != MAP_FAILED)
		munmap(run, (size_t)run_size);
	if (cpu >= 0)
		close(cpu);
	if (vm >= 0)
		close(vm);
	if (mem != MAP_FAILED)
		munmap(mem, MIB);
	return ret;
}

/* ---- vmkit low level ------------------------------------------------------ */

static int once_vm(void *host)
{
	vmkit_memory_region region = VMKIT_MEMORY_REGION_INIT;
	vmkit_vcpu *vcpu = NULL;
	vmkit_vm *vm = NULL;
	int r;

	r = vmkit_vm_new(host, NULL, &vm);
	if (r < 0)
		return fail("vmkit_vm_new", r);
	region.gpa = 0;
	region.length = MIB;
	r = vmkit_vm_add_memory(vm, &region);
	if (r < 0) {
		fail("vmkit_vm_add_memory", r);
		goto out;
	}
	r = vmkit_vcpu_new(vm, 0, &vcpu);
	if (r < 0)
		fail("vmkit_vcpu_new", r);
out:
	vmkit_vm_free(vm);
	return r < 0 ? -1 : 0;
}

/* ---- vmkit machine -------------------------------------------------------- */

struct machine_arg {
	vmkit_host *host;
	vmkit_machine_config *cfg;
	int run;
};

static int once_machine(void *p)
{
	struct machine_arg *a = p;
	vmkit_machine_exit ex = { .size = sizeof(ex) };
	vmkit_machine *m = NULL;
	int r;

	r = vmkit_machine_new(a->host, a->cfg, &m);
	if (r < 0)
		return fail("vmkit_machine_new", r);
	if (a->run) {
		r = vmkit_machine_start(m);
		if (r < 0) {
			fail("vmkit_machine_start", r);
			goto out;
		}
		r = vmkit_machine_wait(m, 10000, &ex);
		if (r < 0) {
			fail("vmkit_machine_wait", r);
			goto out;
		}
		if (ex.reason != VMKIT_EXIT_EXIT_PORT || ex.status != 1) {
			fprintf(stderr, "vmkit-bench-create: flat guest exited with reason %u status %d: %s\n",
				ex.reason, ex.status, ex.detail);
			r = -1;
		}
	}
out:
	vmkit_machine_free(m);
	return r < 0 ? -1 : 0;
}

/* A 64-bit flat guest at 1 MiB: out 0xf4 with AL = 0 (exit status 1), hlt. */
static int make_flat_config(vmkit_machine_config **out)
{
	static const uint8_t code[] = { 0xb0, 0x00, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd };
	vmkit_machine_config *cfg;
	int fd, r;

	fd = mkstemp(flat_path);
	if (fd < 0)
		return fail("mkstemp", errno);
	flat_made = 1;
	if (write(fd, code, sizeof(code)) != (ssize_t)sizeof(code)) {
		close(fd);
		return fail("write flat image", errno);
	}
	close(fd);
	r = vmkit_machine_config_new(&cfg);
	if (r < 0)
		return fail("vmkit_machine_config_new", r);
	if ((r = vmkit_machine_config_set_memory(cfg, 2 * MIB)) < 0 ||
	    (r = vmkit_machine_config_set_kernel(cfg, flat_path)) < 0 ||
	    (r = vmkit_machine_config_set_kernel_format(cfg, VMKIT_KERNEL_FLAT)) < 0 ||
	    (r = vmkit_machine_config_set_flat(cfg, MIB, MIB, VMKIT_CPU_LONG64)) < 0) {
		fail("flat machine configuration", r);
		vmkit_machine_config_free(cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}

/* ---- driver --------------------------------------------------------------- */

static int measure(const char *name, int (*once)(void *), void *arg, long iterations,
		   double max_s)
{
	double t0, t;
	long n = 0;

	if (once(arg) < 0) /* warm-up, untimed */
		return -1;
	t0 = now_s();
	do {
		if (once(arg) < 0)
			return -1;
		n++;
		t = now_s() - t0;
	} while (n < iterations && t < max_s);
	printf("%s iterations=%ld seconds=%.3f per_second=%.1f us_each=%.1f\n", name, n, t,
	       (double)n / t, t * 1e6 / (double)n);
	fflush(stdout);
	return 0;
}

static int parse_num(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return (!*s || *end || errno || *out <= 0 || *out > 1e9) ? -1 : 0;
}

int main(int argc, char **argv)
{
	static const char *const all[] = { "kvm", "vm", "machine", "machine-run" };
	const char *which[8];
	size_t nwhich = 0;
	double iterations = 200, max_s = 20, v;
	vmkit_machine_config *cfg = NULL;
	vmkit_host *host = NULL;
	int rc = 1, r;

	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "-n") || !strcmp(argv[i], "-t")) && i + 1 < argc) {
			if (parse_num(argv[i + 1], &v) < 0) {
				fprintf(stderr, "vmkit-bench-create: bad number '%s'\n", argv[i + 1]);
				return 2;
			}
			if (argv[i][1] == 'n')
				iterations = v;
			else
				max_s = v;
			i++;
		} else if (!strcmp(argv[i], "--kvm") && i + 1 < argc) {
			kvm_path = argv[++i];
		} else if (argv[i][0] != '-' && nwhich < sizeof(which) / sizeof(which[0])) {
			size_t k;
			for (k = 0; k < sizeof(all) / sizeof(all[0]); k++)
				if (!strcmp(argv[i], all[k]))
					break;
			if (k == sizeof(all) / sizeof(all[0])) {
				fprintf(stderr, "vmkit-bench-create: unknown test '%s'\n", argv[i]);
				return 2;
			}
			which[nwhich++] = all[k];
		} else {
			fprintf(stderr, "usage: vmkit-bench-create [-n N] [-t SECONDS] [--kvm PATH] "
					"[kvm|vm|machine|machine-run]...\n");
			return 2;
		}
	}
	if (!nwhich)
		for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
			which[nwhich++] = all[k];

	r = vmkit_host_open(kvm_path, 0, &host);
	if (r < 0) {
		fail("vmkit_host_open", r);
		return 1;
	}
	if (make_flat_config(&cfg) < 0)
		goto out;
	for (size_t i = 0; i < nwhich; i++) {
		struct machine_arg ma = { host, cfg, 0 };
		const char *w = which[i];

		if (!strcmp(w, "kvm"))
			r = measure(w, once_kvm, NULL, (long)iterations, max_s);
		else if (!strcmp(w, "vm"))
			r = measure(w, once_vm, host, (long)iterations, max_s);
		else {
			ma.run = !strcmp(w, "machine-run");
			r = measure(w, once_machine, &ma, (long)iterations, max_s);
		}
		if (r < 0)
			goto out;
	}
	rc = 0;
out:
	vmkit_machine_config_free(cfg);
	vmkit_host_free(host);
	if (flat_made)
		unlink(flat_path);
	return rc;
}
