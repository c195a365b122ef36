/* SPDX-License-Identifier: MIT */
/* The guest-physical memory map (e820) of a vmkit machine. */
#include "arch/x86/x86.h"

#define PAGE_UP(x) (((x) + 0xfffull) & ~0xfffull)

/* RAM split: @low0 bytes below 640 KiB, @mid bytes from 1 MiB, @high
 * bytes from 4 GiB; low0 + mid + high == ram. */
static void split(uint64_t ram, uint64_t *low0, uint64_t *mid, uint64_t *high)
{
	uint64_t rest;

	*low0 = ram < X86_EBDA_START ? ram : X86_EBDA_START;
	rest = ram - *low0;
	*mid = rest < X86_MMIO_HOLE - X86_HIGH_RAM ? rest : X86_MMIO_HOLE - X86_HIGH_RAM;
	*high = rest - *mid;
}

static void put(struct x86_e820 *out, size_t max, size_t *n, uint64_t addr, uint64_t size,
		uint32_t type)
{
	if (!size || *n >= max)
		return;
	out[*n].addr = addr;
	out[*n].size = size;
	out[*n].type = type;
	(*n)++;
}

size_t x86_e820_build(uint64_t ram, struct x86_e820 *out, size_t max)
{
	uint64_t low0, mid, high;
	size_t n = 0;

	if (!out)
		return 0;
	split(ram, &low0, &mid, &high);
	put(out, max, &n, 0, low0, E820_RAM);
	put(out, max, &n, X86_EBDA_START, 0xa0000 - X86_EBDA_START, E820_RESERVED);
	put(out, max, &n, X86_ACPI_ADDR, X86_HIGH_RAM - X86_ACPI_ADDR, E820_RESERVED);
	put(out, max, &n, X86_HIGH_RAM, mid, E820_RAM);
	put(out, max, &n, X86_4G, high, E820_RAM);
	return n;
}

void x86_ram_layout(uint64_t ram, uint64_t *low, uint64_t *high)
{
	uint64_t low0, mid, hi;

	split(ram, &low0, &mid, &hi);
	/* Always at least 1 MiB: the ACPI tables sit below it. mid ends at
	 * most at 3 GiB, a page boundary, so rounding never crosses it. */
	*low = X86_HIGH_RAM + PAGE_UP(mid);
	*high = PAGE_UP(hi);
}
