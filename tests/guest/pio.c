/* SPDX-License-Identifier: MIT */
/* pio: port I/O from CPL3 (IOPL=3) against the machine's devices: the
 * fw_cfg signature, CPU count and RAM size, then reads and a write of an
 * unclaimed port.
 *   port=P   the unclaimed port (default 0x2f0)
 *   exit=N   exit value (default 0) */
#include "kit.h"

long guest_main(const char *cmdline)
{
	uint16_t port = (uint16_t)kit_cmdline_uint("port", 0x2f0);
	char sig[5] = { 0 };
	uint16_t cpus = 0;
	uint64_t ram = 0;
	uint8_t b;
	uint16_t w;
	uint32_t l;

	(void)cmdline;
	kit_fwcfg_read(KIT_FWCFG_SIGNATURE, sig, 4);
	kit_printf("fwcfg signature=%s\n", sig);
	kit_fwcfg_read(KIT_FWCFG_NB_CPUS, &cpus, sizeof(cpus));
	kit_printf("fwcfg cpus=%u\n", cpus);
	kit_fwcfg_read(KIT_FWCFG_RAM_SIZE, &ram, sizeof(ram));
	kit_printf("fwcfg ram=0x%lx\n", (unsigned long)ram);
	b = inb(port);
	w = inw(port);
	l = inl(port);
	kit_printf("unclaimed port=0x%x inb=0x%x inw=0x%x inl=0x%x\n", port, b, w, l);
	outb(port, 0x5a);
	outl(port, 0);
	kit_printf("unclaimed after-write inb=0x%x\n", inb(port));
	kit_printf("pio done\n");
	return (long)kit_cmdline_uint("exit", 0);
}
