/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <string.h>
#include <stdio.h>

#include "internal.h"

static struct vmkit_gmem gm;
static uint8_t lo[0x2000], hi[0x1000];

static void setup(void)
{
	vmkit__gmem_init(&gm);
	memset(lo, 0, sizeof(lo));
	memset(hi, 0, sizeof(hi));
	cr_assert_geq(vmkit__gmem_add_host(&gm, 0x10000, sizeof(hi), hi, 0), 0);
	cr_assert_geq(vmkit__gmem_add_host(&gm, 0x0, sizeof(lo), lo, 0), 0);
}

TestSuite(gmem, .init = setup);

Test(gmem, read_write_inside_region)
{
	uint32_t v = 0xdeadbeef, r = 0;

	cr_assert_eq(vmkit__gmem_write(&gm, 0x1ffc, &v, 4), 0);
	cr_assert_eq(memcmp(lo + 0x1ffc, &v, 4), 0);
	cr_assert_eq(vmkit__gmem_read(&gm, 0x1ffc, &r, 4), 0);
	cr_assert_eq(r, v);
}

Test(gmem, access_past_region_end_is_refused_whole)
{
	uint8_t buf[8];

	memset(buf, 0xaa, sizeof(buf));
	cr_assert_eq(vmkit__gmem_write(&gm, 0x1ffc, buf, 8), -EFAULT);
	/* nothing was written, not even the part that fitted */
	cr_assert_eq(lo[0x1ffc], 0);
	cr_assert_eq(vmkit__gmem_read(&gm, 0x3000, buf, 1), -EFAULT);
}

Test(gmem, wraparound_is_refused)
{
	uint8_t b;

	cr_assert_eq(vmkit__gmem_read(&gm, UINT64_MAX, &b, 2), -EFAULT);
	cr_assert_null(vmkit__gmem_ptr(&gm, 0x1000, SIZE_MAX));
}

Test(gmem, adjacent_regions_are_crossed)
{
	static uint8_t next[0x1000];
	uint8_t in[16], out[16];

	cr_assert_geq(vmkit__gmem_add_host(&gm, 0x2000, sizeof(next), next, 0), 0);
	for (int i = 0; i < 16; i++)
		in[i] = (uint8_t)i;
	cr_assert_eq(vmkit__gmem_write(&gm, 0x1ff8, in, 16), 0);
	cr_assert_eq(lo[0x1fff], 7);
	cr_assert_eq(next[0], 8);
	cr_assert_eq(vmkit__gmem_read(&gm, 0x1ff8, out, 16), 0);
	cr_assert_eq(memcmp(in, out, 16), 0);
	/* one host pointer cannot span two regions */
	cr_assert_null(vmkit__gmem_ptr(&gm, 0x1ff8, 16));
	cr_assert_not_null(vmkit__gmem_ptr(&gm, 0x1ff8, 8));
}

Test(gmem, overlap_is_rejected)
{
	static uint8_t x[0x1000];

	cr_assert_eq(vmkit__gmem_add_host(&gm, 0x1000, sizeof(x), x, 0), -EEXIST);
}

Test(gmem, anonymous_and_memfd_regions)
{
	struct vmkit_gmem g2;
	int a, b;
	uint64_t v = 0x1122334455667788ull, r = 0;

	vmkit__gmem_init(&g2);
	a = vmkit__gmem_add(&g2, 0, 1 << 20, VMKIT_MEMORY_ANONYMOUS, 0);
	b = vmkit__gmem_add(&g2, 1 << 20, 1 << 20, VMKIT_MEMORY_MEMFD, 0);
	cr_assert_geq(a, 0);
	cr_assert_geq(b, 0);
	cr_assert_neq(a, b);
	cr_assert_eq(vmkit__gmem_write(&g2, (1 << 20) - 4, &v, 8), 0);
	cr_assert_eq(vmkit__gmem_read(&g2, (1 << 20) - 4, &r, 8), 0);
	cr_assert_eq(r, v);
	cr_assert_eq(vmkit__gmem_total(&g2), 2 << 20);
	cr_assert_eq(vmkit__gmem_add(&g2, 0x800, 0x1000, 0, 0), -EINVAL); /* unaligned */
	cr_assert_eq(vmkit__gmem_remove(&g2, a), 0);
	cr_assert_eq(vmkit__gmem_read(&g2, 0, &r, 8), -EFAULT);
	/* the freed id is reused: ids are KVM slot numbers */
	cr_assert_eq(vmkit__gmem_add(&g2, 0, 1 << 20, VMKIT_MEMORY_ANONYMOUS, 0), a);
	vmkit__gmem_destroy(&g2);
}

/* Guest RAM of any size is mapped at host addresses congruent to its
 * guest-physical ones modulo 2 MiB (what KVM needs to map it with huge
 * pages), anonymous and memfd alike, and the 2 MiB of slack reserved to
 * get there is given back: the mapping is the region, no more. */
static void vma_of(const void *p, uintptr_t *start, uintptr_t *end)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];

	*start = *end = 0;
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;

		if (sscanf(line, "%lx-%lx", &a, &b) == 2 && (uintptr_t)p >= a && (uintptr_t)p < b) {
			*start = a;
			*end = b;
			break;
		}
	}
	fclose(f);
}

Test(gmem, regions_are_2mib_congruent_to_their_gpa)
{
	static const struct { uint64_t gpa, len; uint32_t backing; } cases[] = {
		{ 0, (1 << 20) + (255ull << 20) - (636 << 10), VMKIT_MEMORY_ANONYMOUS },
		{ 1ull << 32, (3ull << 20) + 4096, VMKIT_MEMORY_ANONYMOUS },
		{ 0x40001000, 5ull << 20, VMKIT_MEMORY_MEMFD },
	};
	/* One region at a time, the previous one unmapped: two of ours side
	 * by side could merge into one mapping and blur the bounds. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vmkit_gmem g2;
		uintptr_t start, end;
		uint8_t *p;
		int id;

		vmkit__gmem_init(&g2);
		id = vmkit__gmem_add(&g2, cases[i].gpa, cases[i].len, cases[i].backing, 0);
		cr_assert_geq(id, 0, "%s", vmkit_last_error());
		p = vmkit__gmem_ptr(&g2, cases[i].gpa, 1);
		cr_assert_eq(((uintptr_t)p - cases[i].gpa) % (2u << 20), 0,
			     "case %zu: hva %p for gpa 0x%llx", i, (void *)p,
			     (unsigned long long)cases[i].gpa);
		vma_of(p, &start, &end);
		cr_assert_eq(start, (uintptr_t)p, "case %zu: the mapping starts at 0x%lx, not %p", i,
			     (unsigned long)start, (void *)p);
		cr_assert_eq(end - start, cases[i].len, "case %zu: %lu bytes mapped for %llu", i,
			     (unsigned long)(end - start), (unsigned long long)cases[i].len);
		vmkit__gmem_destroy(&g2);
	}
}
