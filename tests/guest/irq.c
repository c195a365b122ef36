/* SPDX-License-Identifier: MIT */
/* irq: interrupts from legacy devices through the IOAPIC, with the LAPIC
 * timer (10 ms) as a watchdog.
 *   mode=uart (default): COM1 THR-empty interrupts (IER bit 1, MCR OUT2,
 *     IOAPIC pin 4). Writes bytes=N '*' characters (default 8) one at a
 *     time, waiting for the interrupt after each, then prints
 *     "irq uart interrupts=<n> bytes=<N> iir=0x<last IIR>".
 *   mode=rx: COM1 received-data interrupts (IER bit 0): collects bytes=N
 *     bytes (default 4) and prints "irq rx interrupts=<n> data=<bytes>".
 *   mode=pit: PIT channel 0 at 100 Hz (IRQ0, which vmkit routes to IOAPIC pin 2
 *     as the MADT override says), waits for bytes=N interrupts (default 5), prints
 *     "irq pit interrupts=<n>".
 *   mode=timer: waits for bytes=N LAPIC timer interrupts (default 20, at
 *     10 ms; no watchdog but the host's) and prints "irq timer ticks=<n>".
 *   timeout_ms=T  watchdog (default 10000)
 * Exits with the interrupt count (at most 255). */
#include "kit.h"

#define COM1_IRQ 4
#define VEC_COM1 (KIT_VEC_IRQ_BASE + COM1_IRQ)

static volatile uint8_t last_iir;
static char rx_buf[64];
static volatile uint32_t rx_len;

static void com1_isr(uint32_t vector)
{
	uint8_t iir;

	(void)vector;
	/* Reading IIR acknowledges a THR-empty interrupt; reading RBR until
	 * LSR.DR is clear acknowledges received data. */
	while (!((iir = inb(KIT_COM1 + 2)) & 1)) {
		last_iir = iir;
		while (inb(KIT_COM1 + 5) & 1) {
			uint8_t c = inb(KIT_COM1);

			if (rx_len < sizeof(rx_buf) - 1)
				rx_buf[rx_len++] = (char)c;
		}
		if ((iir & 0x0e) == 0x02)
			break;
	}
}

static bool timed_out(uint64_t ticks)
{
	return kit_irq_count(KIT_VEC_TIMER) >= ticks;
}

static uint32_t uart_tx(uint32_t n, uint64_t ticks)
{
	uint32_t base, i;

	outb(KIT_COM1 + 4, 0x0b); /* MCR: DTR, RTS, OUT2 */
	base = kit_irq_count(VEC_COM1);
	outb(KIT_COM1 + 1, 0x02); /* IER: THR empty */
	for (i = 0; i < n && !timed_out(ticks); i++) {
		uint32_t before = kit_irq_count(VEC_COM1);

		outb(KIT_COM1, '*');
		while (kit_irq_count(VEC_COM1) == before && !timed_out(ticks))
			kit_halt();
	}
	outb(KIT_COM1 + 1, 0);
	kit_printf("\nirq uart interrupts=%u bytes=%u iir=0x%x\n",
		   kit_irq_count(VEC_COM1) - base, i, last_iir);
	return kit_irq_count(VEC_COM1) - base;
}

static uint32_t uart_rx(uint32_t n, uint64_t ticks)
{
	uint32_t base;

	if (n > sizeof(rx_buf) - 1)
		n = sizeof(rx_buf) - 1;
	outb(KIT_COM1 + 4, 0x0b);
	base = kit_irq_count(VEC_COM1);
	outb(KIT_COM1 + 1, 0x01); /* IER: received data */
	kit_printf("irq rx ready\n");
	while (rx_len < n && !timed_out(ticks))
		kit_halt();
	outb(KIT_COM1 + 1, 0);
	rx_buf[rx_len] = '\0';
	kit_printf("irq rx interrupts=%u data=%s\n", kit_irq_count(VEC_COM1) - base, rx_buf);
	return kit_irq_count(VEC_COM1) - base;
}

static uint32_t pit_count(void)
{
	return kit_irq_count(KIT_VEC_IRQ_BASE + 2);
}

static uint32_t pit(uint32_t n, uint64_t ticks)
{
	const uint16_t div = 11932; /* 1193182 Hz / 100 */

	/* IRQ0 arrives on IOAPIC pin 2, as the MADT's override says */
	kit_ioapic_route(2, false);
	outb(0x43, 0x34); /* channel 0, lo/hi, mode 2 */
	outb(0x40, div & 0xff);
	outb(0x40, div >> 8);
	while (pit_count() < n && !timed_out(ticks))
		kit_halt();
	outb(0x43, 0x30); /* mode 0: one more count and it stops */
	outb(0x40, 0);
	outb(0x40, 0);
	kit_ioapic_mask(2);
	kit_printf("irq pit interrupts=%u\n", pit_count());
	return pit_count();
}

static uint32_t lapic_timer(uint32_t n)
{
	while (kit_irq_count(KIT_VEC_TIMER) < n)
		kit_halt();
	kit_printf("irq timer ticks=%u\n", kit_irq_count(KIT_VEC_TIMER));
	return kit_irq_count(KIT_VEC_TIMER);
}

long guest_main(const char *cmdline)
{
	const char *mode = kit_cmdline_value("mode");
	uint64_t ticks = kit_cmdline_uint("timeout_ms", 10000) / 10;
	uint32_t got;

	(void)cmdline;
	if (!mode || !*mode)
		mode = "uart";
	kit_irq_init();
	kit_set_handler(VEC_COM1, com1_isr);
	kit_ioapic_route(COM1_IRQ, false);
	kit_timer_periodic(625000);
	kit_printf("irq mode=%s\n", mode);
	if (!strncmp(mode, "uart", 4))
		got = uart_tx((uint32_t)kit_cmdline_uint("bytes", 8), ticks);
	else if (!strncmp(mode, "rx", 2))
		got = uart_rx((uint32_t)kit_cmdline_uint("bytes", 4), ticks);
	else if (!strncmp(mode, "timer", 5))
		got = lapic_timer((uint32_t)kit_cmdline_uint("bytes", 20));
	else if (!strncmp(mode, "pit", 3))
		got = pit((uint32_t)kit_cmdline_uint("bytes", 5), ticks);
	else
		got = 0;
	kit_timer_periodic(0);
	kit_printf("irq timer=%u\n", kit_irq_count(KIT_VEC_TIMER));
	return got > 255 ? 255 : got;
}
