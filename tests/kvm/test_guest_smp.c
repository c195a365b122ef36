/* SPDX-License-Identifier: MIT */
/* Guest-kit guests using several CPUs and interrupts: APs started with
 * INIT-SIPI-SIPI each reporting its APIC id, interrupts from legacy
 * devices (8250 UART transmit and receive, PIT) through the IOAPIC, the
 * LAPIC timer, and
 * pause/resume of a guest running at CPL3. */
#include "../guest/guest_host.h"

TestSuite(guest_smp, .fini = guest_teardown, .timeout = 300);

static void smp_case(uint32_t n)
{
	uint32_t seen[KIT_MAX_CPUS] = { 0 };
	const char *p;

	guest_config("smp", "timeout_ms=30000");
	cr_assert_eq(vmkit_machine_config_set_cpus(g.cfg, n), 0);
	guest_start();
	guest_wait(GUEST_TIMEOUT_MS);
	guest_assert_exit(n);
	guest_expect("smp cpus=%u\n", n);
	for (p = g.out; (p = strstr(p, "cpu ")) != NULL; p++) {
		unsigned id, slot, cpuid;

		if (p != g.out && p[-1] != '\n')
			continue;
		cr_assert_eq(sscanf(p, "cpu %u slot=%u cpuid=%u", &id, &slot, &cpuid), 3,
			     "bad line: %.60s", p);
		cr_assert_lt(id, n, "APIC id %u with %u CPUs:\n%s", id, n, g.out);
		cr_assert_eq(cpuid, id, "CPUID APIC id %u differs from the LAPIC's %u:\n%s", cpuid, id, g.out);
		seen[id]++;
	}
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(seen[i], 1, "APIC id %u reported %u times:\n%s", i, seen[i], g.out);
	guest_expect("smp started=%u reported=%u of %u\n", n - 1, n, n);
}

Test(guest_smp, two_cpus_report_their_apic_ids)
{
	smp_case(2);
}

Test(guest_smp, four_cpus_report_their_apic_ids)
{
	smp_case(4);
}

Test(guest_smp, uart_transmit_interrupts)
{
	unsigned n = 0, bytes = 0;
	const char *p;

	guest_run("irq", "mode=uart bytes=8");
	p = strstr(g.out, "irq uart interrupts=");
	cr_assert(p, "no result line:\n%s", g.out);
	cr_assert_eq(sscanf(p, "irq uart interrupts=%u bytes=%u", &n, &bytes), 2);
	/* One THR-empty interrupt per byte sent (plus one when enabled). */
	cr_assert_eq(bytes, 8);
	cr_assert_geq(n, 8, "%u interrupts for 8 bytes:\n%s", n, g.out);
	cr_assert_leq(n, 9);
	guest_expect("********\n");
	guest_expect("iir=0x2\n"); /* the last cause was THR empty */
	guest_assert_exit(n);
}

Test(guest_smp, uart_receive_interrupts)
{
	int fds[2];

	cr_assert_eq(pipe(fds), 0);
	cr_assert_eq(write(fds[1], "ping", 4), 4);
	guest_config("irq", "mode=rx bytes=4");
	cr_assert_eq(vmkit_machine_config_set_serial_fds(g.cfg, fds[0], -1), 0);
	cr_assert_eq(vmkit_machine_config_set_serial_callback(g.cfg, guest_on_serial, &g), 0);
	guest_start();
	guest_wait(GUEST_TIMEOUT_MS);
	close(fds[0]);
	close(fds[1]);
	guest_expect("irq rx interrupts=");
	guest_expect(" data=ping\n");
	cr_assert_eq(g.exit.reason, VMKIT_EXIT_EXIT_PORT, "%s", g.exit.detail);
	cr_assert_gt(g.exit.status, guest_status(0), "no receive interrupt:\n%s", g.out);
}

Test(guest_smp, pit_interrupts)
{
	unsigned n = 0;
	const char *p;

	guest_run("irq", "mode=pit bytes=5");
	p = strstr(g.out, "irq pit interrupts=");
	cr_assert(p, "no result line:\n%s", g.out);
	cr_assert_eq(sscanf(p, "irq pit interrupts=%u", &n), 1);
	cr_assert_geq(n, 5, "%u PIT interrupts:\n%s", n, g.out);
	guest_assert_exit(n > 255 ? 255 : n);
}

Test(guest_smp, lapic_timer_ticks_at_the_programmed_rate)
{
	struct timespec t0, t1;
	double ms;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	guest_run("irq", "mode=timer bytes=20");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	guest_expect("irq timer ticks=20\n");
	guest_assert_exit(20);
	/* 20 periods of 10 ms cannot pass sooner than 190 ms. */
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	cr_assert_geq(ms, 190.0, "20 ticks in %.1f ms", ms);
}

static uint64_t loop_counter(void)
{
	uint64_t c = 0;

	cr_assert_eq(vmkit_vm_read(vmkit_machine_vm(g.m), KIT_LOOP_COUNTER_ADDR, &c, sizeof(c)), 0,
		     "%s", vmkit_last_error());
	return c;
}

Test(guest_smp, pause_holds_a_cpl3_loop_and_resume_continues)
{
	struct timespec delay = { 0, 200 * 1000 * 1000 };
	uint64_t a, b, c;
	int i;

	guest_config("loop", "");
	cr_assert_eq(vmkit_machine_config_set_cpus(g.cfg, 2), 0);
	guest_start();
	for (i = 0; i < 6000 && loop_counter() == 0; i++)
		nanosleep(&(struct timespec){ 0, 5 * 1000 * 1000 }, NULL);
	cr_assert_neq(loop_counter(), 0, "the loop never ran:\n%s", g.out);

	cr_assert_eq(vmkit_machine_pause(g.m), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_get_state(g.m), VMKIT_MACHINE_PAUSED);
	a = loop_counter();
	nanosleep(&delay, NULL);
	b = loop_counter();
	cr_assert_eq(a, b, "counter moved while paused: %llu -> %llu", (unsigned long long)a,
		     (unsigned long long)b);

	cr_assert_eq(vmkit_machine_resume(g.m), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_get_state(g.m), VMKIT_MACHINE_RUNNING);
	nanosleep(&delay, NULL);
	c = loop_counter();
	cr_assert_gt(c, b, "counter did not move after resume");

	cr_assert_eq(vmkit_machine_stop(g.m), 0);
	guest_wait(GUEST_TIMEOUT_MS);
	cr_assert_eq(g.exit.reason, VMKIT_EXIT_STOPPED, "%s", g.exit.detail);
}
