/* SPDX-License-Identifier: MIT */
/* mem: guest memory seen from both sides. Prints the FNV-1a of @len
 * bytes at @in (which the host filled with kit_pattern(seed)) and fills
 * @len bytes at @out with kit_pattern(seed ^ 0xa5a5a5a5) for the host to
 * read back.
 *   in=A out=A len=N seed=S  (defaults 0x400000 0x500000 65536 1) */
#include "kit.h"

long guest_main(const char *cmdline)
{
	uint64_t in = kit_cmdline_uint("in", 0x400000);
	uint64_t out = kit_cmdline_uint("out", 0x500000);
	uint64_t len = kit_cmdline_uint("len", 65536);
	uint32_t seed = (uint32_t)kit_cmdline_uint("seed", 1);

	(void)cmdline;
	kit_printf("mem in=0x%lx len=%lu fnv=0x%08x\n", (unsigned long)in, (unsigned long)len,
		   kit_fnv1a((const void *)(uintptr_t)in, len));
	kit_pattern((void *)(uintptr_t)out, len, seed ^ 0xa5a5a5a5u);
	kit_printf("mem out=0x%lx written\n", (unsigned long)out);
	return 0;
}
