/* SPDX-License-Identifier: MIT */
/* The AML writer: byte sequences of known constructs, PkgLength at its
 * boundaries, and a comparison with what Debian's iasl compiles from the
 * same ASL. */
#include <criterion/criterion.h>

#include "iasl.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/aml.h"

#define BYTES(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

static void expect(const struct x86_buf *b, const uint8_t *want, size_t n)
{
	cr_assert(!b->oom, "buffer poisoned");
	cr_assert_eq(b->len, n, "length %zu, want %zu", b->len, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(b->data[i], want[i], "byte %zu: 0x%02x, want 0x%02x", i, b->data[i],
			     want[i]);
}

static void expect_int(uint64_t v, const uint8_t *want, size_t n)
{
	struct x86_buf b = { 0 };

	aml_integer(&b, v);
	expect(&b, want, n);
	x86_buf_free(&b);
}

Test(aml, integers_use_the_shortest_encoding)
{
	expect_int(0, BYTES(0x00));
	expect_int(1, BYTES(0x01));
	expect_int(2, BYTES(0x0a, 0x02));
	expect_int(0xff, BYTES(0x0a, 0xff)); /* not OnesOp: that is all bits set */
	expect_int(0x100, BYTES(0x0b, 0x00, 0x01));
	expect_int(0xffff, BYTES(0x0b, 0xff, 0xff));
	expect_int(0x10000, BYTES(0x0c, 0x00, 0x00, 0x01, 0x00));
	expect_int(0xffffffffull, BYTES(0x0c, 0xff, 0xff, 0xff, 0xff));
	expect_int(1ull << 32, BYTES(0x0e, 0, 0, 0, 0, 1, 0, 0, 0));
	expect_int(~0ull, BYTES(0xff));
}

static void expect_pkglen(size_t body, const uint8_t *want, size_t n)
{
	struct x86_buf b = { 0 };

	cr_assert_eq(aml_pkglength_size(body), n, "body %zu", body);
	aml_pkglength(&b, body);
	expect(&b, want, n);
	x86_buf_free(&b);
}

Test(aml, pkglength_boundaries)
{
	/* The value counts its own bytes: 62 + 1 = 63 is the largest 1-byte
	 * one; 64 needs 2 bytes (0x41 = 65 total). */
	expect_pkglen(62, BYTES(0x3f));
	expect_pkglen(63, BYTES(0x41, 0x04));
	/* 4095 is the largest 2-byte value; 4096 and up take 3. */
	expect_pkglen(4093, BYTES(0x4f, 0xff));
	expect_pkglen(4094, BYTES(0x81, 0x00, 0x01));
	expect_pkglen(4095, BYTES(0x82, 0x00, 0x01));
	expect_pkglen(0xffffc, BYTES(0x8f, 0xff, 0xff));
	expect_pkglen(0xffffd, BYTES(0xc1, 0x00, 0x00, 0x01));
	expect_pkglen(0xffffffb, BYTES(0xcf, 0xff, 0xff, 0xff));
	cr_assert_eq(aml_pkglength_size(0xffffffc), 0);
}

/* Decode a PkgLength independently: returns its byte count, sets *v. */
static size_t decode_pkglen(const uint8_t *p, size_t *v)
{
	size_t n = (p[0] >> 6) + 1;

	if (n == 1) {
		*v = p[0] & 0x3f;
		return 1;
	}
	*v = p[0] & 0xf;
	for (size_t i = 1; i < n; i++)
		*v |= (size_t)p[i] << (4 + 8 * (i - 1));
	return n;
}

Test(aml, scope_pkglength_covers_exactly_the_body_for_any_size)
{
	static const size_t sizes[] = { 0, 1, 57, 58, 59, 60, 61, 62, 63, 64, 4000, 4088, 4089,
					4090, 4091, 4092, 4093, 4094, 4095, 4096, 70000,
					0xffff8, 0xffff9, 0xffffa, 0xffffb, 0xffffc };
	uint8_t *fill = calloc(1, 0x100000);

	cr_assert(fill);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct x86_buf b = { 0 };
		size_t mark, v, n, minimal;

		mark = aml_scope_begin(&b, "\\_SB");
		x86_buf_put(&b, fill, sizes[i]);
		aml_end(&b, mark);
		cr_assert(!b.oom);
		cr_assert_eq(b.data[0], 0x10);
		n = decode_pkglen(b.data + 1, &v);
		cr_assert_eq(v, b.len - 1, "size %zu: PkgLength %zu, construct %zu", sizes[i], v,
			     b.len - 1);
		cr_assert_eq(b.data[1 + n], '\\');
		/* Minimal: one byte fewer could not hold the value. */
		minimal = v <= 0x3f ? 1 : v <= 0xfff ? 2 : v <= 0xfffff ? 3 : 4;
		cr_assert_eq(n, minimal, "size %zu: %zu bytes, want %zu", sizes[i], n, minimal);
		x86_buf_free(&b);
	}
	free(fill);
}

static void expect_name(const char *path, const uint8_t *want, size_t n)
{
	struct x86_buf b = { 0 };

	aml_namestring(&b, path);
	expect(&b, want, n);
	x86_buf_free(&b);
}

static void expect_bad_name(const char *path)
{
	struct x86_buf b = { 0 };

	aml_namestring(&b, path);
	cr_assert(b.oom, "'%s' accepted", path);
	/* Poisoned: later writes are ignored. */
	aml_integer(&b, 5);
	cr_assert(b.oom);
	x86_buf_free(&b);
}

Test(aml, namestrings)
{
	expect_name("_HID", BYTES('_', 'H', 'I', 'D'));
	expect_name("RTC", BYTES('R', 'T', 'C', '_'));
	expect_name("\\_SB", BYTES('\\', '_', 'S', 'B', '_'));
	expect_name("\\_SB.COM1", BYTES('\\', 0x2e, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'));
	expect_name("\\_SB.PCI0.ISA", BYTES('\\', 0x2f, 3, '_', 'S', 'B', '_', 'P', 'C', 'I',
					    '0', 'I', 'S', 'A', '_'));
	expect_name("^^FOO", BYTES('^', '^', 'F', 'O', 'O', '_'));
	expect_name("\\", BYTES('\\', 0x00));
	expect_bad_name("com1");
	expect_bad_name("TOOLONG");
	expect_bad_name("1ABC");
	expect_bad_name("\\_SB..COM1");
	expect_bad_name("\\_SB.");
	expect_bad_name("");
	expect_bad_name("A-B");
}

Test(aml, eisaid)
{
	struct x86_buf b = { 0 };
	bool ok;

	cr_assert_eq(aml_eisaid_value("PNP0501", &ok), 0x0105D041u);
	cr_assert(ok);
	cr_assert_eq(aml_eisaid_value("PNP0B00", &ok), 0x000BD041u);
	cr_assert_eq(aml_eisaid_value("PNP0303", &ok), 0x0303D041u);
	cr_assert_eq(aml_eisaid_value("PNP0F13", &ok), 0x130FD041u);
	aml_eisaid_value("PNP050", &ok);
	cr_assert(!ok);
	aml_eisaid_value("pnp0501", &ok);
	cr_assert(!ok);
	aml_eisaid_value("PNP05G1", &ok);
	cr_assert(!ok);
	aml_eisaid(&b, "PNP0501");
	expect(&b, BYTES(0x0c, 0x41, 0xd0, 0x05, 0x01));
	x86_buf_free(&b);
}

Test(aml, s5_package_and_method)
{
	struct x86_buf b = { 0 };
	size_t m;

	aml_name(&b, "\\_S5");
	m = aml_package_begin(&b, 4);
	aml_integer(&b, 5);
	aml_integer(&b, 5);
	aml_integer(&b, 0);
	aml_integer(&b, 0);
	aml_end(&b, m);
	expect(&b, BYTES(0x08, '\\', '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05,
			 0x00, 0x00));
	x86_buf_free(&b);

	m = aml_method_begin(&b, "_STA", 0, false);
	aml_return_integer(&b, 0x0f);
	aml_end(&b, m);
	expect(&b, BYTES(0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f));
	x86_buf_free(&b);

	m = aml_method_begin(&b, "_DSM", 4, true);
	aml_end(&b, m);
	expect(&b, BYTES(0x14, 0x06, '_', 'D', 'S', 'M', 0x0c));
	x86_buf_free(&b);
}

Test(aml, string_and_buffer)
{
	struct x86_buf b = { 0 };

	aml_string(&b, "QEMU0001");
	expect(&b, BYTES(0x0d, 'Q', 'E', 'M', 'U', '0', '0', '0', '1', 0x00));
	x86_buf_free(&b);
	aml_buffer(&b, "\x01\x02\x03", 3);
	expect(&b, BYTES(0x11, 0x06, 0x0a, 0x03, 0x01, 0x02, 0x03));
	x86_buf_free(&b);
	aml_buffer(&b, NULL, 0);
	expect(&b, BYTES(0x11, 0x02, 0x00));
	x86_buf_free(&b);
}

Test(aml, resource_templates)
{
	struct x86_buf b = { 0 };
	size_t m;

	m = aml_restemplate_begin(&b);
	aml_res_io(&b, 0x3f8, 8);
	aml_res_irq_noflags(&b, 4);
	aml_restemplate_end(&b, m);
	expect(&b, BYTES(0x11, 0x10, 0x0a, 0x0d, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,
			 0x22, 0x10, 0x00, 0x79, 0x00));
	x86_buf_free(&b);

	m = aml_restemplate_begin(&b);
	aml_res_memory32_fixed(&b, 0xd0000000u, 0x1000, true);
	aml_res_interrupt(&b, 5, true, false, false);
	aml_restemplate_end(&b, m);
	expect(&b, BYTES(0x11, 0x1a, 0x0a, 0x17,
			 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00,
			 0x89, 0x06, 0x00, 0x01, 0x01, 0x05, 0x00, 0x00, 0x00,
			 0x79, 0x00));
	x86_buf_free(&b);

	aml_res_irq_noflags(&b, 16);
	cr_assert(b.oom, "IRQ 16 accepted in an IRQNoFlags descriptor");
	x86_buf_free(&b);
}

Test(aml, pci_root_bridge_descriptors)
{
	struct x86_buf b = { 0 };

	aml_res_word_bus_number(&b, 0, 0);
	expect(&b, BYTES(0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00));
	x86_buf_free(&b);
	aml_res_word_io(&b, 0x0d00, 0xffff);
	expect(&b, BYTES(0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x0d, 0xff, 0xff, 0, 0,
			 0x00, 0xf3));
	x86_buf_free(&b);
	aml_res_dword_memory(&b, 0xc0000000u, 0x10000000u, false, true);
	expect(&b, BYTES(0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xc0,
			 0xff, 0xff, 0xff, 0xcf, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x10));
	x86_buf_free(&b);

	/* Ranges a 16-bit length or the bus numbers cannot describe. */
	aml_res_word_io(&b, 0, 0xffff);
	cr_assert(b.oom, "a 64 KiB WordIO length wrapped to 0");
	x86_buf_free(&b);
	aml_res_word_io(&b, 0x100, 0xff);
	cr_assert(b.oom);
	x86_buf_free(&b);
	aml_res_word_bus_number(&b, 0, 256);
	cr_assert(b.oom);
	x86_buf_free(&b);
	aml_res_dword_memory(&b, 0xfffff000u, 0x2000, false, true);
	cr_assert(b.oom, "a DWordMemory range past 4 GiB accepted");
	x86_buf_free(&b);
	aml_res_dword_memory(&b, 0, 0, false, true);
	cr_assert(b.oom);
	x86_buf_free(&b);
}

/* ---- against iasl ---------------------------------------------------------------------- */


static const char asl[] =
	"DefinitionBlock (\"\", \"SSDT\", 2, \"VMKIT \", \"VMKIT   \", 1)\n"
	"{\n"
	"  Name (\\_S5, Package (0x04) { 0x05, 0x05, Zero, Zero })\n"
	"  Scope (\\_SB)\n"
	"  {\n"
	"    Device (COM1)\n"
	"    {\n"
	"      Name (_HID, EisaId (\"PNP0501\"))\n"
	"      Name (_UID, One)\n"
	"      Name (_CRS, ResourceTemplate () {\n"
	"        IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08, )\n"
	"        IRQNoFlags () {4}\n"
	"      })\n"
	"      Method (_STA, 0, NotSerialized) { Return (0x0F) }\n"
	"    }\n"
	"    Device (MEM0)\n"
	"    {\n"
	"      Name (_HID, \"QEMU0001\")\n"
	"      Name (BIG, 0x123456789A)\n"
	"      Name (WRD, 0x1234)\n"
	"      Name (DWD, 0x12345678)\n"
	"      Name (_CRS, ResourceTemplate () {\n"
	"        Memory32Fixed (ReadWrite, 0xD0000000, 0x00001000, )\n"
	"        Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, ) {5}\n"
	"        Interrupt (ResourceConsumer, Edge, ActiveLow, Shared, ,, ) {33}\n"
	"        QWordMemory (ResourceConsumer, PosDecode, MinFixed, MaxFixed, Cacheable,"
	" ReadWrite, 0x0, 0x100000000, 0x1FFFFFFFF, 0x0, 0x100000000, ,, ,"
	" AddressRangeMemory, TypeStatic)\n"
	"        QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,"
	" ReadWrite, 0x0, 0x8000000000, 0x80000FFFFF, 0x0, 0x100000, ,, ,"
	" AddressRangeMemory, TypeStatic)\n"
	"      })\n"
	"    }\n"
	"    Device (PCI0)\n"
	"    {\n"
	"      Name (_HID, EisaId (\"PNP0A08\"))\n"
	"      Name (_CID, EisaId (\"PNP0A03\"))\n"
	"      Name (_CRS, ResourceTemplate () {\n"
	"        WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,"
	" 0x0000, 0x0000, 0x0000, 0x0000, 0x0001, ,, )\n"
	"        WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,"
	" 0x0000, 0x0000, 0x0CF7, 0x0000, 0x0CF8, ,, , TypeStatic, DenseTranslation)\n"
	"        WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,"
	" 0x0000, 0x0D00, 0xFFFF, 0x0000, 0xF300, ,, , TypeStatic, DenseTranslation)\n"
	"        DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,"
	" ReadWrite, 0x00000000, 0xC0000000, 0xCFFFFFFF, 0x00000000, 0x10000000, ,, ,"
	" AddressRangeMemory, TypeStatic)\n"
	"        DWordMemory (ResourceConsumer, PosDecode, MinFixed, MaxFixed, Cacheable,"
	" ReadWrite, 0x00000000, 0x00001000, 0x00001FFF, 0x00000000, 0x00001000, ,, ,"
	" AddressRangeMemory, TypeStatic)\n"
	"      })\n"
	"      Name (_PRT, Package (0x02) {\n"
	"        Package (0x04) { 0x0001FFFF, Zero, Zero, 0x11 },\n"
	"        Package (0x04) { 0x0001FFFF, 0x03, Zero, 0x10 }\n"
	"      })\n"
	"    }\n"
	"  }\n"
	"}\n";

static void ours(struct x86_buf *b)
{
	size_t pkg, sb, dev, res, m;

	aml_name(b, "\\_S5");
	pkg = aml_package_begin(b, 4);
	aml_integer(b, 5);
	aml_integer(b, 5);
	aml_integer(b, 0);
	aml_integer(b, 0);
	aml_end(b, pkg);
	sb = aml_scope_begin(b, "\\_SB");
	dev = aml_device_begin(b, "COM1");
	aml_name(b, "_HID");
	aml_eisaid(b, "PNP0501");
	aml_name(b, "_UID");
	aml_integer(b, 1);
	aml_name(b, "_CRS");
	res = aml_restemplate_begin(b);
	aml_res_io(b, 0x3f8, 8);
	aml_res_irq_noflags(b, 4);
	aml_restemplate_end(b, res);
	m = aml_method_begin(b, "_STA", 0, false);
	aml_return_integer(b, 0x0f);
	aml_end(b, m);
	aml_end(b, dev);
	dev = aml_device_begin(b, "MEM0");
	aml_name(b, "_HID");
	aml_string(b, "QEMU0001");
	aml_name(b, "BIG");
	aml_integer(b, 0x123456789aull);
	aml_name(b, "WRD");
	aml_integer(b, 0x1234);
	aml_name(b, "DWD");
	aml_integer(b, 0x12345678);
	aml_name(b, "_CRS");
	res = aml_restemplate_begin(b);
	aml_res_memory32_fixed(b, 0xd0000000u, 0x1000, true);
	aml_res_interrupt(b, 5, true, false, false);
	aml_res_interrupt(b, 33, false, true, true);
	aml_res_qword_memory(b, 1ull << 32, 1ull << 32, true, false);
	aml_res_qword_memory(b, 0x8000000000ull, 0x100000, false, true);
	aml_restemplate_end(b, res);
	aml_end(b, dev);
	dev = aml_device_begin(b, "PCI0");
	aml_name(b, "_HID");
	aml_eisaid(b, "PNP0A08");
	aml_name(b, "_CID");
	aml_eisaid(b, "PNP0A03");
	aml_name(b, "_CRS");
	res = aml_restemplate_begin(b);
	aml_res_word_bus_number(b, 0, 0);
	aml_res_word_io(b, 0, 0x0cf7);
	aml_res_word_io(b, 0x0d00, 0xffff);
	aml_res_dword_memory(b, 0xc0000000u, 0x10000000u, false, true);
	aml_res_dword_memory(b, 0x1000, 0x1000, true, false);
	aml_restemplate_end(b, res);
	aml_name(b, "_PRT");
	pkg = aml_package_begin(b, 2);
	m = aml_package_begin(b, 4);
	aml_integer(b, 0x1ffff);
	aml_integer(b, 0);
	aml_integer(b, 0);
	aml_integer(b, 0x11);
	aml_end(b, m);
	m = aml_package_begin(b, 4);
	aml_integer(b, 0x1ffff);
	aml_integer(b, 3);
	aml_integer(b, 0);
	aml_integer(b, 0x10);
	aml_end(b, m);
	aml_end(b, pkg);
	aml_end(b, dev);
	aml_end(b, sb);
}

Test(aml, matches_what_iasl_compiles)
{
	char dir[] = "/tmp/vmkit-aml-XXXXXX", cmd[512], path[300];
	struct x86_buf b = { 0 };
	uint8_t aml[4096];
	size_t n;
	FILE *f;

	if (!have_iasl())
		return;
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/t.asl", dir);
	f = fopen(path, "w");
	cr_assert(f);
	fputs(asl, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -p out t.asl >log 2>&1", dir);
	cr_assert_eq(system(cmd), 0, "iasl failed to compile the reference ASL (see %s/log)", dir);
	snprintf(path, sizeof(path), "%s/out.aml", dir);
	f = fopen(path, "rb");
	cr_assert(f);
	n = fread(aml, 1, sizeof(aml), f);
	fclose(f);
	cr_assert_gt(n, 36);

	ours(&b);
	cr_assert(!b.oom);
	/* Past the table header, the AML must be identical. */
	cr_assert_eq(b.len, n - 36, "our AML is %zu bytes, iasl's %zu", b.len, n - 36);
	for (size_t i = 0; i < b.len; i++)
		cr_assert_eq(b.data[i], aml[36 + i], "AML byte %zu: 0x%02x, iasl 0x%02x", i,
			     b.data[i], aml[36 + i]);
	x86_buf_free(&b);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}
