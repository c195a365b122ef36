/* SPDX-License-Identifier: MIT */
/* Stock-kernel early boot on this host's own KVM: the unmodified Debian
 * cloud kernel (uncompressed vmlinux, PVH entry) prints its banner, our
 * command line, an e820 map equal to the one vmkit built, finds the
 * RSDP/XSDT/FACP/DSDT/APIC tables and counts every configured CPU from the
 * MADT. On kvm_pvm hosts the kernel cannot finish booting in useful time
 * (see TEST-ENVIRONMENT.md), so the test stops the VM once the last marker
 * is seen; full boots run in the nested test host. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "kvmtest.h"
#include "arch/x86/x86.h"

#define MEM_MIB 512
#define LOG_MAX (1 << 20)

struct log {
	pthread_mutex_t lock;
	char *buf;
	size_t len;
};

static void on_serial(void *ud, const uint8_t *data, size_t len)
{
	struct log *l = ud;

	pthread_mutex_lock(&l->lock);
	if (l->len + len < LOG_MAX) {
		memcpy(l->buf + l->len, data, len);
		l->len += len;
		l->buf[l->len] = 0;
	}
	pthread_mutex_unlock(&l->lock);
}

static bool log_has(struct log *l, const char *s)
{
	bool r;

	pthread_mutex_lock(&l->lock);
	r = strstr(l->buf, s) != NULL;
	pthread_mutex_unlock(&l->lock);
	return r;
}

static const char *kernel_dir(void)
{
	static char path[512];
	const char *d = getenv("VMKIT_KERNEL_DIR");

	if (d)
		return d;
	snprintf(path, sizeof(path), "%s/.cache/vmkit/kernels/cloud",
		 getenv("HOME") ? getenv("HOME") : "/root");
	return path;
}

static const char *e820_name(uint32_t type)
{
	switch (type) {
	case E820_RAM: return "usable";
	case E820_ACPI: return "ACPI data";
	default: return "reserved";
	}
}

/* With @devices, a virtio-blk disk on PCI and a virtio-rng on virtio-mmio:
 * the kernel must also find the MCFG table, and the DSDT (now with the PCI
 * root bridge and an LNRO0005 device) must not upset its early boot. */
static void early_boot(uint32_t ncpus, bool devices)
{
	struct log l = { .lock = PTHREAD_MUTEX_INITIALIZER };
	char vmlinux[600], cmdline[128], want[256];
	vmkit_machine_config *cfg;
	vmkit_machine_exit ex = { .size = sizeof(ex) };
	vmkit_machine *m;
	vmkit_host *host = kvmtest_host();
	struct x86_e820 map[X86_E820_MAX];
	size_t n;
	time_t start;

	snprintf(vmlinux, sizeof(vmlinux), "%s/vmlinux", kernel_dir());
	if (access(vmlinux, R_OK) != 0) {
		if (getenv("CI") && strcmp(getenv("CI"), "true") == 0)
			cr_assert_fail("CI=true but %s is missing (tests/linux/fetch-kernel)", vmlinux);
		cr_skip_test("skipped, needs the Debian kernel: run tests/linux/fetch-kernel");
	}
	l.buf = calloc(1, LOG_MAX + 1);
	snprintf(cmdline, sizeof(cmdline),
		 "console=ttyS0 earlyprintk=ttyS0 vmkit.test=early-%u loglevel=8", ncpus);
	cr_assert_eq(vmkit_machine_config_new(&cfg), 0);
	cr_assert_eq(vmkit_machine_config_set_kernel(cfg, vmlinux), 0);
	cr_assert_eq(vmkit_machine_config_set_cmdline(cfg, cmdline), 0);
	cr_assert_eq(vmkit_machine_config_set_memory(cfg, (uint64_t)MEM_MIB << 20), 0);
	cr_assert_eq(vmkit_machine_config_set_cpus(cfg, ncpus), 0);
	cr_assert_eq(vmkit_machine_config_set_serial_callback(cfg, on_serial, &l), 0);
	if (devices) {
		vmkit_disk_config d = VMKIT_DISK_CONFIG_INIT;
		char img[] = "/tmp/vmkit-early-disk.XXXXXX";
		int fd = mkstemp(img);
		cr_assert_geq(fd, 0);
		cr_assert_eq(ftruncate(fd, 8 << 20), 0);
		close(fd);
		d.path = img;
		cr_assert_eq(vmkit_machine_config_add_disk(cfg, &d), 0, "%s", vmkit_last_error());
		cr_assert_eq(vmkit_machine_config_set_rng(cfg, VMKIT_VIRTIO_MMIO, 0), 0);
		cr_assert_eq(vmkit_machine_new(host, cfg, &m), 0, "%s", vmkit_last_error());
		unlink(img); /* the machine holds it open */
	} else {
		cr_assert_eq(vmkit_machine_new(host, cfg, &m), 0, "%s", vmkit_last_error());
	}
	vmkit_machine_config_free(cfg);
	cr_assert_eq(vmkit_machine_start(m), 0);

	snprintf(want, sizeof(want), "Allowing %u CPUs", ncpus);
	start = time(NULL);
	while (!log_has(&l, want) && time(NULL) - start < 240) {
		if (vmkit_machine_wait(m, 500, &ex) == 0)
			break; /* exited early: the asserts below say what is missing */
	}
	vmkit_machine_stop(m);
	vmkit_machine_wait(m, 30000, &ex);
	cr_log_info("%u vCPUs: %ld s to \"%s\"", ncpus, (long)(time(NULL) - start), want);

	cr_assert(log_has(&l, "Linux version 6."), "no kernel banner; serial: %.2000s", l.buf);
	snprintf(want, sizeof(want), "Command line: %s", cmdline);
	cr_assert(log_has(&l, want), "kernel did not print our command line");
	n = x86_e820_build((uint64_t)MEM_MIB << 20, map, X86_E820_MAX);
	/* A PVH-booted kernel adds the ISA hole [0xa0000, 1 MiB) as reserved
	 * (arch/x86/platform/pvh/enlighten.c), then prints the map sorted with
	 * overlapping and adjacent entries of a type merged. Model both. */
	cr_assert_lt(n, X86_E820_MAX);
	map[n++] = (struct x86_e820){ 0xa0000, 0x60000, E820_RESERVED };
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && map[j].addr < map[j - 1].addr; j--) {
			struct x86_e820 t = map[j];
			map[j] = map[j - 1];
			map[j - 1] = t;
		}
	for (size_t i = 1; i < n; i++) {
		uint64_t prev_end = map[i - 1].addr + map[i - 1].size;
		if (map[i].type == map[i - 1].type && prev_end >= map[i].addr) {
			uint64_t end = map[i].addr + map[i].size;
			if (end > prev_end)
				map[i - 1].size = end - map[i - 1].addr;
			memmove(&map[i], &map[i + 1], (n - i - 1) * sizeof(map[0]));
			n--;
			i--;
		}
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "BIOS-e820: [mem 0x%016llx-0x%016llx] %s",
			 (unsigned long long)map[i].addr,
			 (unsigned long long)(map[i].addr + map[i].size - 1), e820_name(map[i].type));
		cr_assert(log_has(&l, want), "e820 entry missing from the kernel's map: %s", want);
	}
	static const char *const tables[] = { "ACPI: RSDP", "ACPI: XSDT", "ACPI: FACP",
					       "ACPI: DSDT", "ACPI: APIC" };
	for (size_t i = 0; i < ARRAY_SIZE(tables); i++)
		cr_assert(log_has(&l, tables[i]), "kernel did not find %s", tables[i]);
	if (devices)
		cr_assert(log_has(&l, "ACPI: MCFG"), "kernel did not find the MCFG table");
	snprintf(want, sizeof(want), "Allowing %u CPUs", ncpus);
	cr_assert(log_has(&l, want), "MADT CPUs not all found (%s); serial tail: %s", want,
		  l.buf + (l.len > 1500 ? l.len - 1500 : 0));
	vmkit_machine_free(m);
	vmkit_host_free(host);
	free(l.buf);
}

TestSuite(linux_early, .timeout = 400);

Test(linux_early, one_vcpu) { early_boot(1, false); }
Test(linux_early, two_vcpus_with_virtio_devices) { early_boot(2, true); }
Test(linux_early, four_vcpus) { early_boot(4, false); }
