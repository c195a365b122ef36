/* SPDX-License-Identifier: MIT */
/* smp: the boot CPU starts the others (INIT-SIPI-SIPI); every CPU prints
 * "cpu <LAPIC id> slot=<n> cpuid=<CPUID.1 APIC id at CPL0> cpl3-cpuid=<the
 * same at CPL3, informational: host-dependent>" once; the boot CPU
 * waits for all (fw_cfg CPU count) and exits with how many reported.
 *   timeout_ms=N  give up waiting after N ms of LAPIC timer (default 20000) */
#include "kit.h"

static volatile uint32_t reported;
static uint32_t bsp_apic;

static void report(uint32_t slot)
{
	uint32_t r[4];

	cpuid(1, 0, r);
	kit_printf("cpu %u slot=%u cpuid=%u cpl3-cpuid=%u\n", kit_lapic_id(), slot,
		   kit_cpuid_apic_id(), r[1] >> 24);
}

static void ap_main(uint32_t slot)
{
	kit_irq_init();
	report(slot);
	__atomic_add_fetch(&reported, 1, __ATOMIC_SEQ_CST);
	kit_send_ipi(bsp_apic, KIT_VEC_IPI);
}

long guest_main(const char *cmdline)
{
	uint32_t n = kit_cpu_count();
	uint64_t ticks = kit_cmdline_uint("timeout_ms", 20000) / 10;

	(void)cmdline;
	bsp_apic = kit_lapic_id();
	kit_printf("smp cpus=%u\n", n);
	report(0);
	if (n > 1) {
		kit_irq_init();
		kit_timer_periodic(625000); /* 10 ms */
		kit_smp_start(ap_main);
		while (__atomic_load_n(&reported, __ATOMIC_SEQ_CST) < n - 1 &&
		       kit_irq_count(KIT_VEC_TIMER) < ticks)
			kit_halt();
		kit_timer_periodic(0);
	}
	kit_printf("smp started=%u reported=%u of %u\n", kit_cpus_started(), reported + 1, n);
	return reported + 1;
}
