/* SPDX-License-Identifier: MIT */
/* hello: print a line and exit through the exit port.
 *   exit=N   the value written (default 0)
 *   width=W  write it with an access of W bytes: 1, 2 or 4 (default 4)
 *   fault=ud|pf|gp  raise that exception at CPL3 instead (the kit reports
 *            it and exits with KIT_EXIT_FAULT_BASE + vector) */
#include "kit.h"

long guest_main(const char *cmdline)
{
	uint32_t v = (uint32_t)kit_cmdline_uint("exit", 0);
	uint64_t width = kit_cmdline_uint("width", 4);

	kit_printf("hello from the vmkit guest kit\n");
	kit_printf("cmdline=%s\n", cmdline);
	kit_printf("port I/O %s\n", kit_pio_direct ? "at CPL3" : "through CPL0");
	if (kit_cmdline_has("fault")) {
		const char *p = kit_cmdline_value("fault");

		if (!strncmp(p, "ud", 2))
			__asm__ volatile("ud2");
		else if (!strncmp(p, "pf", 2))
			(void)mmio_read32(0x100000000ull); /* beyond the identity map */
		else if (!strncmp(p, "gp", 2))
			__asm__ volatile("hlt"); /* privileged at CPL3 */
		kit_printf("fault %s did not fault\n", p);
		return 1;
	}
	if (width == 1)
		outb(KIT_EXIT_PORT, (uint8_t)v);
	else if (width == 2)
		outw(KIT_EXIT_PORT, (uint16_t)v);
	return v;
}
