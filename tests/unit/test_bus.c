/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <string.h>

#include "internal.h"

struct rec {
	uint64_t off;
	uint32_t len;
	uint32_t calls;
	uint8_t last[8];
};

static void rd(void *o, uint64_t off, void *data, uint32_t len)
{
	struct rec *r = o;
	r->off = off;
	r->len = len;
	r->calls++;
	memset(data, 0x5a, len);
}

static void wr(void *o, uint64_t off, const void *data, uint32_t len)
{
	struct rec *r = o;
	r->off = off;
	r->len = len;
	r->calls++;
	memcpy(r->last, data, len);
}

static const vmkit_io_ops ops = { sizeof(vmkit_io_ops), 0, rd, wr };

Test(bus, dispatch_sees_offsets)
{
	struct vmkit_bus bus;
	struct rec a = { 0 }, b = { 0 };
	uint32_t v = 0x11223344, out = 0;

	vmkit__bus_init(&bus);
	cr_assert_eq(vmkit__bus_register(&bus, 0x3f8, 8, &ops, &a), 0);
	cr_assert_eq(vmkit__bus_register(&bus, 0x60, 1, &ops, &b), 0);
	cr_assert(vmkit__bus_write(&bus, 0x3fb, &v, 1));
	cr_assert_eq(a.off, 3);
	cr_assert_eq(a.last[0], 0x44);
	cr_assert(vmkit__bus_read(&bus, 0x60, &out, 1));
	cr_assert_eq(b.off, 0);
	cr_assert_eq(out & 0xff, 0x5a);
	vmkit__bus_destroy(&bus);
}

Test(bus, unclaimed_is_reported_and_reads_all_ones)
{
	struct vmkit_bus bus;
	struct rec a = { 0 };
	uint32_t out = 0x12345678;

	vmkit__bus_init(&bus);
	cr_assert_eq(vmkit__bus_register(&bus, 0x100, 4, &ops, &a), 0);
	cr_assert_not(vmkit__bus_read(&bus, 0x104, &out, 4));
	cr_assert_eq(out, 0xffffffff);
	cr_assert_eq(a.calls, 0);
	vmkit__bus_destroy(&bus);
}

Test(bus, overlap_rejected_and_unregister)
{
	struct vmkit_bus bus;
	struct rec a = { 0 };

	vmkit__bus_init(&bus);
	cr_assert_eq(vmkit__bus_register(&bus, 0x100, 0x10, &ops, &a), 0);
	cr_assert_eq(vmkit__bus_register(&bus, 0x10f, 1, &ops, &a), -EEXIST);
	cr_assert_eq(vmkit__bus_register(&bus, 0xf0, 0x11, &ops, &a), -EEXIST);
	cr_assert_eq(vmkit__bus_register(&bus, 0x110, 1, &ops, &a), 0);
	cr_assert_eq(vmkit__bus_unregister(&bus, 0x100), 0);
	cr_assert_eq(vmkit__bus_unregister(&bus, 0x100), -ENOENT);
	cr_assert_eq(vmkit__bus_register(&bus, 0x100, 0x10, &ops, &a), 0);
	vmkit__bus_destroy(&bus);
}

Test(bus, straddling_access_never_exceeds_the_range)
{
	struct vmkit_bus bus;
	struct rec a = { 0 };
	uint32_t v = 0xaabbccdd;

	vmkit__bus_init(&bus);
	cr_assert_eq(vmkit__bus_register(&bus, 0x1000, 2, &ops, &a), 0);
	/* 4-byte write at offset 1 of a 2-byte device: only the byte inside goes */
	cr_assert(vmkit__bus_write(&bus, 0x1001, &v, 4));
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(a.off, 1);
	cr_assert_eq(a.len, 1);
	cr_assert_eq(a.last[0], 0xdd);
	vmkit__bus_destroy(&bus);
}

Test(bus, many_ranges_binary_search)
{
	struct vmkit_bus bus;
	static struct rec r[200];

	vmkit__bus_init(&bus);
	for (int i = 199; i >= 0; i--)
		cr_assert_eq(vmkit__bus_register(&bus, (uint64_t)i * 16, 8, &ops, &r[i]), 0);
	for (int i = 0; i < 200; i++) {
		uint8_t d = 0;
		cr_assert(vmkit__bus_read(&bus, (uint64_t)i * 16 + 7, &d, 1));
		cr_assert_eq(r[i].off, 7);
		cr_assert_not(vmkit__bus_read(&bus, (uint64_t)i * 16 + 8, &d, 1));
	}
	vmkit__bus_destroy(&bus);
}

static void rd_half(void *o, uint64_t off, void *data, uint32_t len)
{
	(void)o;
	(void)off;
	if (len > 1)
		memset(data, 0x00, len / 2);
}

/* What a handler does not fill, and bytes of a straddling read that no
 * range claims, read as all ones (vmkit_io_ops's promise), never as
 * whatever the buffer held before. */
Test(bus, unfilled_and_unclaimed_bytes_read_as_ones)
{
	static const vmkit_io_ops no_read = { sizeof(vmkit_io_ops), 0, NULL, wr };
	static const vmkit_io_ops half = { sizeof(vmkit_io_ops), 0, rd_half, wr };
	struct vmkit_bus bus;
	struct rec a = { 0 }, b = { 0 };
	uint32_t out = 0;

	vmkit__bus_init(&bus);
	cr_assert_eq(vmkit__bus_register(&bus, 0x200, 4, &no_read, &a), 0);
	cr_assert_eq(vmkit__bus_register(&bus, 0x300, 4, &half, &b), 0);
	cr_assert(vmkit__bus_read(&bus, 0x200, &out, 4));
	cr_assert_eq(out, 0xffffffff, "a NULL read handler gave 0x%x", out);
	out = 0;
	cr_assert(vmkit__bus_read(&bus, 0x300, &out, 4));
	cr_assert_eq(out, 0xffff0000, "a handler filling half gave 0x%x", out);
	out = 0;
	/* offset 1 of a 2-byte range: one byte claimed (0x5a), three beyond it */
	cr_assert_eq(vmkit__bus_register(&bus, 0x400, 2, &ops, &a), 0);
	out = 0;
	cr_assert(vmkit__bus_read(&bus, 0x401, &out, 4));
	cr_assert_eq(out, 0xffffff5a, "straddling read gave 0x%x", out);
	vmkit__bus_destroy(&bus);
}
