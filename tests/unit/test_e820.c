/* SPDX-License-Identifier: MIT */
/* The e820 memory map and the RAM layout the machine maps for it. */
#include <criterion/criterion.h>

#include "arch/x86/x86.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static void check_map(uint64_t ram)
{
	struct x86_e820 e[X86_E820_MAX];
	size_t n = x86_e820_build(ram, e, X86_E820_MAX);
	uint64_t sum = 0, low, high;
	bool ebda = false, bios = false;

	x86_ram_layout(ram, &low, &high);
	cr_assert_gt(n, 0);
	cr_assert_leq(n, 5);
	for (size_t i = 0; i < n; i++) {
		uint64_t end = e[i].addr + e[i].size;

		cr_assert_gt(e[i].size, 0, "ram %llu: empty entry %zu", (unsigned long long)ram, i);
		if (i)
			cr_assert_geq(e[i].addr, e[i - 1].addr + e[i - 1].size,
				      "entries overlap or are unsorted");
		if (e[i].type == E820_RAM) {
			sum += e[i].size;
			/* Never in the legacy hole nor the MMIO hole below 4 GiB. */
			cr_assert(end <= X86_EBDA_START || e[i].addr >= X86_HIGH_RAM);
			cr_assert(end <= X86_MMIO_HOLE || e[i].addr >= X86_4G);
			/* Backed by what the machine maps. */
			if (e[i].addr < X86_4G)
				cr_assert_leq(end, low, "RAM entry ends at 0x%llx past 0x%llx",
					      (unsigned long long)end, (unsigned long long)low);
			else
				cr_assert_leq(end, X86_4G + high);
		} else {
			cr_assert_eq(e[i].type, E820_RESERVED);
			ebda |= e[i].addr <= X86_EBDA_START && end >= 0xa0000;
			bios |= e[i].addr <= X86_ACPI_ADDR && end >= X86_HIGH_RAM;
		}
	}
	cr_assert_eq(sum, ram, "RAM entries add up to %llu, not %llu", (unsigned long long)sum,
		     (unsigned long long)ram);
	cr_assert(ebda && bios, "EBDA or BIOS area (ACPI tables) not reserved");
	cr_assert_eq(low % 4096, 0);
	cr_assert_eq(high % 4096, 0);
	cr_assert_geq(low, X86_HIGH_RAM, "the ACPI area below 1 MiB must be mapped");
	cr_assert_leq(low, X86_MMIO_HOLE);
}

Test(e820, ram_adds_up_for_many_sizes)
{
	static const uint64_t sizes[] = { 1 * MiB, 2 * MiB, 64 * MiB, 256 * MiB, 3 * GiB - MiB,
					  3 * GiB, 3 * GiB + MiB, 4 * GiB, 8 * GiB, 64 * GiB,
					  1024 * GiB };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		check_map(sizes[i]);
}

Test(e820, layout_256m)
{
	struct x86_e820 e[X86_E820_MAX];
	uint64_t low, high;

	cr_assert_eq(x86_e820_build(256 * MiB, e, X86_E820_MAX), 4);
	cr_assert(e[0].addr == 0 && e[0].size == 0x9fc00 && e[0].type == E820_RAM);
	cr_assert(e[1].addr == 0x9fc00 && e[1].size == 0x400 && e[1].type == E820_RESERVED);
	cr_assert(e[2].addr == 0xe0000 && e[2].size == 0x20000 && e[2].type == E820_RESERVED);
	cr_assert(e[3].addr == MiB && e[3].size == 256 * MiB - 0x9fc00 && e[3].type == E820_RAM);
	x86_ram_layout(256 * MiB, &low, &high);
	cr_assert_eq(low, 256 * MiB + 0x61000);
	cr_assert_eq(high, 0);
}

Test(e820, layout_above_4g)
{
	struct x86_e820 e[X86_E820_MAX];
	uint64_t low, high;

	cr_assert_eq(x86_e820_build(4 * GiB, e, X86_E820_MAX), 5);
	cr_assert(e[3].addr == MiB && e[3].size == 3 * GiB - MiB);
	cr_assert(e[4].addr == X86_4G && e[4].size == GiB + 0x60400 && e[4].type == E820_RAM);
	x86_ram_layout(4 * GiB, &low, &high);
	cr_assert_eq(low, 3 * GiB);
	cr_assert_eq(high, GiB + 0x61000);
}

Test(e820, truncates_to_max)
{
	struct x86_e820 e[2];

	cr_assert_eq(x86_e820_build(8 * GiB, e, 2), 2);
	cr_assert_eq(e[1].addr, X86_EBDA_START);
	cr_assert_eq(x86_e820_build(8 * GiB, NULL, 2), 0);
}
