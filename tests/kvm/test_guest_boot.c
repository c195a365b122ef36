/* SPDX-License-Identifier: MIT */
/* Guest-kit guests booted as Multiboot kernels in long mode: the exit
 * port's status for several values and access widths, the command line,
 * modules and memory map the loader hands over, CPU exceptions caught by
 * the guest, and a triple fault. */
#include <fcntl.h>
#include <libgen.h>

#include "../guest/guest_host.h"

TestSuite(guest_boot, .fini = guest_teardown, .timeout = 300);

static void hello_exit(uint32_t v, int width, uint32_t want)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "exit=0x%x width=%d", v, width);
	guest_run("hello", cmd);
	guest_expect("hello from the vmkit guest kit\n");
	guest_assert_exit(want);
}

Test(guest_boot, exit_port_status_for_several_values)
{
	static const uint32_t vals[] = { 0, 1, 0x2a, 0x7f, 0xff };

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		hello_exit(vals[i], 4, vals[i]);
		guest_teardown();
	}
}

Test(guest_boot, exit_port_write_widths)
{
	/* The value is what the access carries: a byte write of 0x1ff is 0xff. */
	hello_exit(0x1ff, 1, 0xff);
	guest_teardown();
	hello_exit(0x1abcd, 2, 0xabcd);
	guest_teardown();
	hello_exit(0x12345678, 4, 0x12345678);
}

Test(guest_boot, command_line_reaches_the_guest)
{
	guest_run("hello", "exit=3 some words key=value");
	guest_expect("exit=3 some words key=value\n");
	guest_assert_exit(3);
}

static void fault_case(const char *kind, uint32_t vector)
{
	char cmd[32];

	snprintf(cmd, sizeof(cmd), "fault=%s", kind);
	guest_run("hello", cmd);
	guest_expect("FAULT vector=%u ", vector);
	guest_expect(" cs=0x23 "); /* it happened at CPL3 */
	guest_expect_not("did not fault");
	guest_assert_exit(KIT_EXIT_FAULT_BASE + vector);
}

Test(guest_boot, cpl3_exceptions_reach_the_guest_idt)
{
	fault_case("ud", 6);
	guest_teardown();
	fault_case("gp", 13);
	guest_teardown();
	fault_case("pf", 14);
	guest_expect("cr2=0x100000000\n");
}

Test(guest_boot, triple_fault_is_a_crash)
{
	guest_run("triple", "");
	guest_expect("triple fault now\n");
	cr_assert_eq(g.exit.reason, VMKIT_EXIT_CRASH, "exit reason %u (%s); serial:\n%s",
		     g.exit.reason, g.exit.detail, g.out);
	guest_expect_not("still alive");
}

/* ---- Multiboot information ------------------------------------------------- */

struct module {
	char path[64];
	uint8_t data[6000];
	size_t len;
};

static struct module mods[2];

static void make_module(struct module *mod, size_t len, uint32_t seed)
{
	int fd;

	snprintf(mod->path, sizeof(mod->path), "/tmp/vmkit-mbmod-XXXXXX");
	fd = mkstemp(mod->path);
	cr_assert_geq(fd, 0);
	mod->len = len;
	kit_pattern(mod->data, len, seed);
	cr_assert_eq(write(fd, mod->data, len), (ssize_t)len);
	close(fd);
}

static void remove_modules(void)
{
	for (size_t i = 0; i < 2; i++)
		if (mods[i].path[0])
			unlink(mods[i].path);
	memset(mods, 0, sizeof(mods));
	guest_teardown();
}

/* The "mb mod <i> ..." line: fills start, end, size, fnv and the string. */
static void module_line(uint32_t i, uint32_t *start, uint32_t *end, uint32_t *size,
			uint32_t *fnv, char *str, size_t strsize)
{
	char key[32];
	const char *p;

	snprintf(key, sizeof(key), "mb mod %u start=", i);
	p = strstr(g.out, key);
	cr_assert(p, "no \"%s\" line:\n%s", key, g.out);
	cr_assert_eq(sscanf(p + strlen(key) - strlen("start="),
			    "start=0x%x end=0x%x size=%u fnv=0x%x string=", start, end, size, fnv),
		     4, "bad module line: %.120s", p);
	p = strstr(p, "string=") + strlen("string=");
	snprintf(str, strsize, "%.*s", (int)strcspn(p, "\n"), p);
}

/* The memory map: sorted, non-overlapping entries; low RAM [0, 0x9fc00);
 * RAM from 1 MiB whose size mem_upper gives; RAM adding up to the
 * configured size (less, at most, the 384 KiB hole below 1 MiB); every
 * RAM entry's last byte really is RAM. */
static void check_mmap(uint64_t mem)
{
	uint64_t ram = 0, prev_end = 0, upper = 0;
	unsigned lower, mem_upper, count = 0, listed = 0;
	bool low_ok = false;
	const char *p;

	p = strstr(g.out, "mb mem_lower=");
	cr_assert(p, "no memory sizes:\n%s", g.out);
	cr_assert_eq(sscanf(p, "mb mem_lower=%u mem_upper=%u", &lower, &mem_upper), 2);
	cr_assert_eq(lower, 639, "mem_lower %u KiB", lower);
	for (p = g.out; (p = strstr(p, "mb mmap addr=")) != NULL; p++) {
		unsigned long long addr, len;
		unsigned type;

		cr_assert_eq(sscanf(p, "mb mmap addr=0x%llx len=0x%llx type=%u", &addr, &len, &type),
			     3, "bad line %.80s", p);
		cr_assert_geq(addr, prev_end, "entry at 0x%llx overlaps or is out of order", addr);
		prev_end = addr + len;
		if (type == 1) {
			ram += len;
			cr_assert(!strncmp(strchr(p, '\n') - 9, " probe=ok", 9),
				  "RAM entry is not all RAM: %.100s", p);
		}
		if (addr == 0 && type == 1 && len == 0x9fc00)
			low_ok = true;
		if (addr == 0x100000 && type == 1)
			upper = len;
		count++;
	}
	cr_assert(low_ok, "no low RAM entry [0, 0x9fc00):\n%s", g.out);
	cr_assert_eq((uint64_t)mem_upper, upper >> 10, "mem_upper %u KiB, the 1 MiB entry 0x%llx",
		     mem_upper, (unsigned long long)upper);
	cr_assert(ram <= mem && ram >= mem - (0x100000 - 0x9fc00),
		  "0x%llx bytes of RAM in the map for 0x%llx configured:\n%s",
		  (unsigned long long)ram, (unsigned long long)mem, g.out);
	p = strstr(g.out, "mb mmap entries=");
	cr_assert(p && sscanf(p, "mb mmap entries=%u", &listed) == 1);
	cr_assert_eq(listed, count);
}

Test(guest_boot, multiboot_cmdline_modules_and_memory_map, .fini = remove_modules)
{
	const uint64_t mem = 96ull << 20;
	unsigned long kstart, kend;
	uint32_t prev_end = 0;
	const char *p;

	make_module(&mods[0], 5000, 0x1234);
	make_module(&mods[1], 17, 0xbeef);
	guest_config("mbinfo", "mbinfo-test alpha=1 beta");
	cr_assert_eq(vmkit_machine_config_set_memory(g.cfg, mem), 0);
	for (size_t i = 0; i < 2; i++)
		cr_assert_eq(vmkit_machine_config_add_initrd(g.cfg, mods[i].path), 0, "%s",
			     vmkit_last_error());
	guest_start();
	guest_wait(GUEST_TIMEOUT_MS);
	guest_assert_exit(0);
	guest_expect("mb magic=0x2badb002\n");
	guest_expect("mb cmdline=");
	guest_expect("mbinfo-test alpha=1 beta\n");
	p = strstr(g.out, "mb kernel start=");
	cr_assert(p && sscanf(p, "mb kernel start=0x%lx end=0x%lx", &kstart, &kend) == 2);
	cr_assert_eq(kstart, KIT_LOAD_ADDR);
	guest_expect("mb mods=2\n");
	for (uint32_t i = 0; i < 2; i++) {
		uint32_t start, end, size, fnv;
		char str[256], base[64];

		module_line(i, &start, &end, &size, &fnv, str, sizeof(str));
		cr_assert_eq(size, mods[i].len, "module %u size %u", i, size);
		cr_assert_eq(fnv, kit_fnv1a(mods[i].data, mods[i].len), "module %u contents", i);
		cr_assert_eq(start & 0xfff, 0, "module %u at 0x%x: not page aligned", i, start);
		cr_assert_geq(start, prev_end, "module %u overlaps what precedes it", i);
		cr_assert(start >= kend || end <= kstart,
			  "module %u [0x%x,0x%x) overlaps the kernel [0x%lx,0x%lx)", i, start, end,
			  kstart, kend);
		cr_assert_leq((uint64_t)end, mem);
		snprintf(base, sizeof(base), "%s", mods[i].path);
		cr_assert(strstr(str, basename(base)), "module %u string \"%s\" does not name %s",
			  i, str, mods[i].path);
		prev_end = end;
	}
	check_mmap(mem);
	guest_expect("mb done\n");
}

Test(guest_boot, multiboot_without_modules)
{
	guest_run("mbinfo", "");
	guest_assert_exit(0);
	guest_expect("mb mods=0\n");
	check_mmap(64ull << 20);
}

/* virtio-mmio devices on the kernel command line, when asked for (the
 * rng is mmio device 0, the console device 1: 0xd0001000, GSI 21). */
Test(guest_boot, virtio_mmio_devices_on_the_command_line)
{
	guest_config("mbinfo", "mbinfo-test");
	cr_assert_eq(vmkit_machine_config_set_rng(g.cfg, VMKIT_VIRTIO_MMIO, 0), 0);
	cr_assert_eq(vmkit_machine_config_set_virtio_console(g.cfg, VMKIT_VIRTIO_MMIO, -1, -1), 0);
	cr_assert_eq(vmkit_machine_config_set_balloon(g.cfg, VMKIT_VIRTIO_PCI), 0);
	cr_assert_eq(vmkit_machine_config_set_virtio_mmio_cmdline(g.cfg, true), 0);
	guest_start();
	guest_wait(GUEST_TIMEOUT_MS);
	guest_assert_exit(0);
	guest_expect("mbinfo-test virtio_mmio.device=4K@0xd0000000:20 "
		     "virtio_mmio.device=4K@0xd0001000:21\n");
}
