/* SPDX-License-Identifier: MIT */
/* loop: increment the 64-bit counter at KIT_LOOP_COUNTER_ADDR at CPL3,
 * forever (the host reads it to see whether the guest runs). */
#include "kit.h"

long guest_main(const char *cmdline)
{
	volatile uint64_t *c = (volatile uint64_t *)(uintptr_t)KIT_LOOP_COUNTER_ADDR;

	(void)cmdline;
	kit_printf("loop counter=0x%lx\n", (unsigned long)KIT_LOOP_COUNTER_ADDR);
	*c = 0;
	for (;;)
		(*c)++;
}
