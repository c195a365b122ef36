/* SPDX-License-Identifier: MIT */
/* triple: load an empty IDT and load from a non-canonical address: #GP
 * and then #DF miss the IDT, and the CPU shuts down (triple fault). (Not
 * int3: some KVMs cannot emulate it at CPL0.) */
#include "kit.h"

static long boom(long unused)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) empty = { 0, 0 };

	(void)unused;
	__asm__ volatile("lidt %0; movq %1, %%rax; movq (%%rax), %%rax"
			 : : "m"(empty), "i"(0x8000000000000000ull) : "rax", "memory");
	return 0;
}

long guest_main(const char *cmdline)
{
	(void)cmdline;
	kit_printf("triple fault now\n");
	kit_kcall(boom, 0);
	kit_printf("still alive after triple fault\n");
	return 1;
}
