/* SPDX-License-Identifier: MIT */
/* Guest-kit guests doing I/O from CPL3 (IOPL=3): port I/O to fw_cfg and to
 * unclaimed ports, MMIO to the in-kernel LAPIC and to unclaimed addresses,
 * the strict unhandled-access policy, and guest memory read and written
 * from both sides. */
#include "../guest/guest_host.h"

TestSuite(guest_io, .fini = guest_teardown, .timeout = 300);

static void fwcfg_case(uint32_t cpus, uint64_t mem)
{
	guest_config("pio", "exit=5");
	cr_assert_eq(vmkit_machine_config_set_cpus(g.cfg, cpus), 0);
	cr_assert_eq(vmkit_machine_config_set_memory(g.cfg, mem), 0);
	guest_start();
	guest_wait(GUEST_TIMEOUT_MS);
	guest_assert_exit(5);
	guest_expect("fwcfg signature=QEMU\n");
	guest_expect("fwcfg cpus=%u\n", cpus);
	guest_expect("fwcfg ram=0x%llx\n", (unsigned long long)mem);
}

Test(guest_io, fw_cfg_cpu_count_and_ram_size_match_the_config)
{
	fwcfg_case(1, 64ull << 20);
	guest_teardown();
	fwcfg_case(3, 200ull << 20);
}

Test(guest_io, unclaimed_ports_read_all_ones_and_drop_writes)
{
	guest_run("pio", "port=0x2f0");
	guest_assert_exit(0);
	guest_expect("unclaimed port=0x2f0 inb=0xff inw=0xffff inl=0xffffffff\n");
	guest_expect("unclaimed after-write inb=0xff\n");
	guest_expect("pio done\n");
}

Test(guest_io, strict_policy_makes_an_unclaimed_port_an_error)
{
	guest_config("pio", "port=0x2f0");
	cr_assert_eq(vmkit_machine_config_set_unhandled_policy(g.cfg, VMKIT_UNHANDLED_STRICT), 0);
	guest_start();
	guest_wait(GUEST_TIMEOUT_MS);
	cr_assert_eq(g.exit.reason, VMKIT_EXIT_ERROR, "exit reason %u (%s); serial:\n%s",
		     g.exit.reason, g.exit.detail, g.out);
	cr_assert(g.exit.detail[0], "an error exit says what happened");
	/* Claimed ports kept working up to the unclaimed access. */
	guest_expect("fwcfg signature=QEMU\n");
	guest_expect_not("unclaimed port=");
}

Test(guest_io, mmio_to_lapic_and_unclaimed_addresses)
{
	guest_run("mmio", "addr=0xd0000000 exit=9");
	guest_assert_exit(9);
	guest_expect("lapic id=0 version=0x");
	guest_expect("unclaimed addr=0xd0000000 b=0xff w=0xffff l=0xffffffff q=0xffffffffffffffff\n");
	guest_expect("unclaimed after-write l=0xffffffff\n");
	guest_expect("mmio done\n");
}

Test(guest_io, strict_policy_makes_an_unclaimed_address_an_error)
{
	guest_config("mmio", "addr=0xd0000000");
	cr_assert_eq(vmkit_machine_config_set_unhandled_policy(g.cfg, VMKIT_UNHANDLED_STRICT), 0);
	guest_start();
	guest_wait(GUEST_TIMEOUT_MS);
	cr_assert_eq(g.exit.reason, VMKIT_EXIT_ERROR, "exit reason %u (%s); serial:\n%s",
		     g.exit.reason, g.exit.detail, g.out);
	guest_expect("lapic id=0 "); /* the in-kernel LAPIC is claimed */
	guest_expect_not("unclaimed addr=");
}

Test(guest_io, memory_written_by_host_and_by_guest)
{
	enum { LEN = 65536 };
	const uint64_t in = 0x400000, out = 0x500000;
	uint32_t seed = (uint32_t)time(NULL) ^ (uint32_t)getpid();
	static uint8_t pat[LEN], want[LEN], got[LEN];
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "in=0x%llx out=0x%llx len=%d seed=%u",
		 (unsigned long long)in, (unsigned long long)out, LEN, seed);
	guest_config("mem", cmd);
	guest_create();
	kit_pattern(pat, LEN, seed);
	cr_assert_eq(vmkit_vm_write(vmkit_machine_vm(g.m), in, pat, LEN), 0, "%s",
		     vmkit_last_error());
	guest_start();
	guest_wait(GUEST_TIMEOUT_MS);
	guest_assert_exit(0);
	/* The guest saw what the host wrote... */
	guest_expect("mem in=0x%llx len=%d fnv=0x%08x\n", (unsigned long long)in, LEN,
		     kit_fnv1a(pat, LEN));
	/* ...and the host sees what the guest wrote. */
	kit_pattern(want, LEN, seed ^ 0xa5a5a5a5u);
	cr_assert_eq(vmkit_vm_read(vmkit_machine_vm(g.m), out, got, LEN), 0, "%s",
		     vmkit_last_error());
	cr_assert(memcmp(got, want, LEN) == 0, "guest-written memory differs");
}
