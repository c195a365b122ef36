/* SPDX-License-Identifier: MIT */
/* What the test-guest kit and the host-side tests agree on: fixed guest
 * addresses, exit values, interrupt vectors, and the two pure helpers
 * (a pattern generator and a checksum) both sides compute. Plain C with
 * only <stdint.h>/<stddef.h>, so it builds freestanding and hosted. */
#ifndef VMKIT_GUEST_KIT_ABI_H
#define VMKIT_GUEST_KIT_ABI_H

#ifndef __ASSEMBLER__
#include <stddef.h>
#include <stdint.h>
#endif

/* ---- guest-physical memory the kit uses --------------------------------
 * The kit is linked at 1 MiB (KIT_LOAD_ADDR); its image, page tables,
 * stacks and BSS end below ~2 MiB. Below 1 MiB it uses only:
 *   KIT_LOOP_COUNTER_ADDR  the 'loop' guest's 64-bit counter (one page)
 *   KIT_AP_TRAMPOLINE_ADDR the real-mode AP start page (SIPI vector 0x70)
 * Both are RAM in every vmkit and QEMU memory map and clear of what the
 * loaders use (0x500 GDT, 0x6000-0xefff boot structures, 0x20000 command
 * line, 0x9fc00+ EBDA/BIOS/ACPI). */
#define KIT_LOAD_ADDR          0x100000ull
#define KIT_LOOP_COUNTER_ADDR  0x60000ull
#define KIT_AP_TRAMPOLINE_ADDR 0x70000ull

/* ---- exit port ------------------------------------------------------------
 * outl(KIT_EXIT_PORT, v): the VM exits with status (v << 1) | 1. */
#define KIT_EXIT_PORT 0xf4
/* An unexpected CPU exception exits with v = KIT_EXIT_FAULT_BASE + vector
 * after printing "FAULT vector=<n> rip=0x<rip> err=0x<code>". */
#define KIT_EXIT_FAULT_BASE 0x7f00u
/* guest_main returned a negative value or the kit itself failed. */
#define KIT_EXIT_KIT_ERROR 0x7e00u

/* ---- interrupt vectors ------------------------------------------------------ */
#define KIT_VEC_IRQ_BASE   0x20 /* IOAPIC pin n -> 0x20 + n (kit_ioapic_route) */
#define KIT_VEC_TIMER      0x40 /* LAPIC timer */
#define KIT_VEC_IPI        0x50 /* wake-up IPI between CPUs */
#define KIT_VEC_SPURIOUS   0xff

#define KIT_MAX_CPUS 16

#ifndef __ASSEMBLER__
/* ---- helpers both sides compute ------------------------------------------- */

/* FNV-1a, 32 bits. */
static inline uint32_t kit_fnv1a(const void *data, size_t len)
{
	const uint8_t *p = (const uint8_t *)data;
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

/* xorshift32 pattern bytes: kit_pattern(buf, len, seed) fills @buf the
 * same way on both sides (a zero seed is replaced by 1). */
static inline void kit_pattern(void *buf, size_t len, uint32_t seed)
{
	uint8_t *p = (uint8_t *)buf;
	uint32_t x = seed ? seed : 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)(x >> 24);
	}
}
#endif /* __ASSEMBLER__ */

#endif
