/* SPDX-License-Identifier: MIT */
/* mmio: memory-mapped I/O from CPL3: the in-kernel LAPIC's ID and version
 * registers, then reads of every width and a write at an unclaimed
 * address.
 *   addr=A   the unclaimed address (default 0xd0000000, below 4 GiB)
 *   exit=N   exit value (default 0) */
#include "kit.h"

long guest_main(const char *cmdline)
{
	uint64_t a = kit_cmdline_uint("addr", 0xd0000000ull);

	(void)cmdline;
	kit_printf("lapic id=%u version=0x%x\n", kit_lapic_id(), kit_lapic_read(0x30));
	kit_printf("unclaimed addr=0x%lx b=0x%x w=0x%x l=0x%x q=0x%lx\n", (unsigned long)a,
		   mmio_read8(a), mmio_read16(a), mmio_read32(a), (unsigned long)mmio_read64(a));
	mmio_write32(a, 0x12345678);
	mmio_write64(a, 0);
	kit_printf("unclaimed after-write l=0x%x\n", mmio_read32(a));
	kit_printf("mmio done\n");
	return (long)kit_cmdline_uint("exit", 0);
}
