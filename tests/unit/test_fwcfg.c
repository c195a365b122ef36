/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <string.h>

#include "devices/legacy/legacy.h"

#define MEM_GPA 0x10000u
#define MEM_LEN 0x4000u
#define GUARD_GPA 0x20000u /* a second region with a hole before it */

static struct vmkit_gmem gm;
static uint8_t mem[MEM_LEN], guard[0x1000];
static struct fwcfg *f;

static void setup(void)
{
	vmkit__gmem_init(&gm);
	memset(mem, 0xaa, sizeof(mem));
	memset(guard, 0x55, sizeof(guard));
	cr_assert_geq(vmkit__gmem_add_host(&gm, MEM_GPA, sizeof(mem), mem, 0), 0);
	cr_assert_geq(vmkit__gmem_add_host(&gm, GUARD_GPA, sizeof(guard), guard, 0), 0);
	cr_assert_eq(fwcfg_new(&gm, &f), 0);
}

static void teardown(void)
{
	fwcfg_free(f);
}

TestSuite(fwcfg, .init = setup, .fini = teardown);

static void sel(uint16_t key)
{
	uint8_t b[2] = { (uint8_t)key, (uint8_t)(key >> 8) };
	fwcfg_ops.write(f, 0, b, 2);
}

static void read_data(void *out, size_t n)
{
	uint8_t *p = out;
	for (size_t i = 0; i < n; i++)
		fwcfg_ops.read(f, 1, &p[i], 1);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* Write a FWCfgDmaAccess at @desc and start it the way Linux and SeaBIOS
 * do: outl of the byte-swapped high half, then the low half. */
static uint32_t dma(uint64_t desc, uint32_t control, uint32_t length, uint64_t addr)
{
	uint8_t d[16], hi[4], lo[4];

	put_be32(d, control);
	put_be32(d + 4, length);
	put_be32(d + 8, (uint32_t)(addr >> 32));
	put_be32(d + 12, (uint32_t)addr);
	if (desc >= MEM_GPA && desc + 16 <= MEM_GPA + MEM_LEN)
		memcpy(mem + (desc - MEM_GPA), d, 16);
	put_be32(hi, (uint32_t)(desc >> 32));
	put_be32(lo, (uint32_t)desc);
	fwcfg_ops.write(f, 4, hi, 4);
	fwcfg_ops.write(f, 8, lo, 4);
	if (desc >= MEM_GPA && desc + 4 <= MEM_GPA + MEM_LEN)
		return be32(mem + (desc - MEM_GPA));
	return 0xdeadbeef;
}

#define CTL_ERROR 0x01
#define CTL_READ 0x02
#define CTL_SKIP 0x04
#define CTL_SELECT 0x08
#define CTL_WRITE 0x10
#define SELECT(k) ((uint32_t)(k) << 16 | CTL_SELECT)

Test(fwcfg, signature_and_id_through_the_data_port)
{
	char sig[5] = { 0 };
	uint8_t id[4], past;

	sel(FW_CFG_SIGNATURE);
	read_data(sig, 4);
	cr_assert_str_eq(sig, "QEMU");
	read_data(&past, 1);
	cr_assert_eq(past, 0, "past the end reads 0");
	sel(FW_CFG_ID);
	read_data(id, 4);
	cr_assert_eq(id[0], 0x03, "traditional and DMA interfaces");
	cr_assert_eq(id[1] | id[2] | id[3], 0);
	uint8_t v = 0;
	fwcfg_ops.read(f, 0, &v, 1);
	cr_assert_eq(v, 0xff, "the selector is write-only");
}

Test(fwcfg, dma_register_reads_its_signature)
{
	uint8_t b[8];

	fwcfg_ops.read(f, 4, b, 4);
	fwcfg_ops.read(f, 8, b + 4, 4);
	cr_assert_eq(memcmp(b, "QEMU CFG", 8), 0);
	memset(b, 0, sizeof(b));
	fwcfg_ops.read(f, 4, b, 8);
	cr_assert_eq(memcmp(b, "QEMU CFG", 8), 0);
}

Test(fwcfg, numbered_items)
{
	uint8_t b[8];

	cr_assert_eq(fwcfg_add_u16(f, FW_CFG_NB_CPUS, 4), 0);
	cr_assert_eq(fwcfg_add_u64(f, FW_CFG_RAM_SIZE, 0x123456789ull), 0);
	sel(FW_CFG_NB_CPUS);
	read_data(b, 2);
	cr_assert_eq(b[0] | b[1] << 8, 4);
	sel(FW_CFG_RAM_SIZE);
	read_data(b, 8);
	uint64_t ram = 0;
	for (int i = 7; i >= 0; i--)
		ram = ram << 8 | b[i];
	cr_assert_eq(ram, 0x123456789ull);
	cr_assert_eq(fwcfg_add_u16(f, FW_CFG_NB_CPUS, 8), 0, "items can be replaced");
	sel(FW_CFG_NB_CPUS);
	read_data(b, 2);
	cr_assert_eq(b[0], 8);
	cr_assert_eq(fwcfg_add_u32(f, FW_CFG_SIGNATURE, 1), -EINVAL);
	cr_assert_eq(fwcfg_add_u32(f, FW_CFG_FILE_DIR, 1), -EINVAL);
	cr_assert_eq(fwcfg_add_u32(f, 0x20, 1), -EINVAL, "file keys come from add_file");
	cr_assert_eq(fwcfg_add_u32(f, 0x8003, 1), 0, "arch-local keys are items");
}

Test(fwcfg, kernel_data_key_reads_zero)
{
	uint8_t b[8];

	sel(FW_CFG_KERNEL_DATA);
	memset(b, 0x77, sizeof(b));
	read_data(b, 8);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(b[i], 0);
	memset(mem + 0x100, 0x77, 8);
	cr_assert_eq(dma(MEM_GPA, SELECT(FW_CFG_KERNEL_DATA) | CTL_READ, 8, MEM_GPA + 0x100), 0);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(mem[0x100 + i], 0);
}

Test(fwcfg, file_directory_is_sorted_with_keys_from_0x20)
{
	uint8_t hdr[4], e[64];
	char name55[56], name56[57];
	const char *want[3] = { "alpha", "etc/x", "zeta" };
	const uint32_t sizes[3] = { 5, 0, 3 };

	cr_assert_eq(fwcfg_add_file(f, "zeta", "ZZZ", 3), 0);
	cr_assert_eq(fwcfg_add_file(f, "alpha", "AAAAA", 5), 0);
	cr_assert_eq(fwcfg_add_file(f, "etc/x", "", 0), 0);
	cr_assert_eq(fwcfg_add_file(f, "zeta", "Z", 1), -EEXIST);
	memset(name55, 'n', 55);
	name55[55] = 0;
	memset(name56, 'n', 56);
	name56[56] = 0;
	cr_assert_eq(fwcfg_add_file(f, name56, "x", 1), -EINVAL);
	cr_assert_eq(fwcfg_add_file(f, "", "x", 1), -EINVAL);

	sel(FW_CFG_FILE_DIR);
	read_data(hdr, 4);
	cr_assert_eq(be32(hdr), 3);
	for (int i = 0; i < 3; i++) {
		read_data(e, 64);
		cr_assert_eq(be32(e), sizes[i]);
		cr_assert_eq(e[4] << 8 | e[5], 0x20 + i);
		cr_assert_eq(e[6] | e[7], 0);
		cr_assert_str_eq((char *)e + 8, want[i]);
		for (int j = 8 + (int)strlen(want[i]); j < 64; j++)
			cr_assert_eq(e[j], 0);
	}
	sel(0x22);
	char z[4] = { 0 };
	read_data(z, 3);
	cr_assert_str_eq(z, "ZZZ");

	cr_assert_eq(fwcfg_add_file(f, name55, "x", 1), 0);
	sel(FW_CFG_FILE_DIR);
	read_data(hdr, 4);
	cr_assert_eq(be32(hdr), 4);
}

Test(fwcfg, dma_read_select_skip)
{
	uint8_t *dst = mem + 0x800;

	cr_assert_eq(fwcfg_add_file(f, "etc/hello", "hello world", 11), 0);
	cr_assert_eq(dma(MEM_GPA, SELECT(0x20) | CTL_READ, 5, MEM_GPA + 0x800), 0);
	cr_assert_eq(memcmp(dst, "hello", 5), 0);
	cr_assert_eq(dst[5], 0xaa, "nothing beyond the length");
	cr_assert_eq(dma(MEM_GPA, CTL_SKIP, 1, 0), 0);
	cr_assert_eq(dma(MEM_GPA, CTL_READ, 3, MEM_GPA + 0x800), 0, "continues at the offset");
	cr_assert_eq(memcmp(dst, "wor", 3), 0);
	/* past the end: the rest is zeros */
	memset(dst, 0xaa, 16);
	cr_assert_eq(dma(MEM_GPA, SELECT(0x20) | CTL_READ, 16, MEM_GPA + 0x800), 0);
	cr_assert_eq(memcmp(dst, "hello world\0\0\0\0\0", 16), 0);
	cr_assert_eq(dst[16], 0xaa);
	/* select only */
	cr_assert_eq(dma(MEM_GPA, SELECT(FW_CFG_SIGNATURE), 0, 0), 0);
	char sig[5] = { 0 };
	read_data(sig, 4);
	cr_assert_str_eq(sig, "QEMU");
	/* one 64-bit write starts a transfer as well */
	uint8_t d[16], a[8] = { 0 };
	put_be32(d, SELECT(FW_CFG_SIGNATURE) | CTL_READ);
	put_be32(d + 4, 4);
	put_be32(d + 8, 0);
	put_be32(d + 12, MEM_GPA + 0x900);
	memcpy(mem + 0x40, d, 16);
	put_be32(a + 4, MEM_GPA + 0x40);
	fwcfg_ops.write(f, 4, a, 8);
	cr_assert_eq(be32(mem + 0x40), 0);
	cr_assert_eq(memcmp(mem + 0x900, "QEMU", 4), 0);
}

Test(fwcfg, dma_hostile_requests_fail_without_stray_writes)
{
	static uint8_t mem_copy[MEM_LEN];

	cr_assert_eq(fwcfg_add_file(f, "etc/blob", "0123456789", 10), 0);
	/* destination in the hole between the regions */
	cr_assert_eq(dma(MEM_GPA, SELECT(0x20) | CTL_READ, 10, MEM_GPA + MEM_LEN + 0x10),
		     CTL_ERROR);
	/* destination straddling the end of memory */
	cr_assert_eq(dma(MEM_GPA, SELECT(0x20) | CTL_READ, 10, MEM_GPA + MEM_LEN - 4), CTL_ERROR);
	cr_assert_eq(mem[MEM_LEN - 4], 0xaa, "a refused copy writes nothing");
	/* address + length wraps around */
	cr_assert_eq(dma(MEM_GPA, SELECT(0x20) | CTL_READ, 0x100, UINT64_MAX - 0x10), CTL_ERROR);
	/* huge length: the data, then zeros until memory runs out, then ERROR */
	cr_assert_eq(dma(MEM_GPA, SELECT(0x20) | CTL_READ, 0xffffffffu, MEM_GPA + 0x1000),
		     CTL_ERROR);
	cr_assert_eq(memcmp(mem + 0x1000, "0123456789", 10), 0);
	for (size_t i = 0; i < sizeof(guard); i++)
		cr_assert_eq(guard[i], 0x55, "guard region touched at %zu", i);
	/* writes are refused */
	cr_assert_eq(dma(MEM_GPA, SELECT(0x20) | CTL_WRITE, 4, MEM_GPA + 0x100), CTL_ERROR);
	sel(0x20);
	char c = 0;
	read_data(&c, 1);
	cr_assert_eq(c, '0');
	/* descriptor outside memory, or running off its end: nothing moves */
	memcpy(mem_copy, mem, sizeof(mem));
	dma(MEM_GPA + MEM_LEN + 0x100, SELECT(0x20) | CTL_READ, 4, MEM_GPA);
	dma((uint64_t)1 << 40, SELECT(0x20) | CTL_READ, 4, MEM_GPA);
	uint8_t hi[4] = { 0xff, 0xff, 0xff, 0xff }, lo[4] = { 0xff, 0xff, 0xff, 0xf8 };
	fwcfg_ops.write(f, 4, hi, 4);
	fwcfg_ops.write(f, 8, lo, 4);
	cr_assert_eq(memcmp(mem_copy, mem, sizeof(mem)), 0);
	/* a descriptor cut off by the end of memory: only its control word,
	 * which is memory, reports the error */
	put_be32(hi, 0);
	put_be32(lo, MEM_GPA + MEM_LEN - 8);
	fwcfg_ops.write(f, 4, hi, 4);
	fwcfg_ops.write(f, 8, lo, 4);
	cr_assert_eq(be32(mem + MEM_LEN - 8), CTL_ERROR);
	put_be32(mem_copy + MEM_LEN - 8, CTL_ERROR);
	cr_assert_eq(memcmp(mem_copy, mem, sizeof(mem)), 0);
}

/* Read-only guest memory (a firmware ROM) is read-only to DMA as well. */
Test(fwcfg, dma_into_read_only_memory_is_refused)
{
	static uint8_t rom[0x1000];

	memset(rom, 0x33, sizeof(rom));
	cr_assert_geq(vmkit__gmem_add_host(&gm, 0x40000, sizeof(rom), rom, VMKIT_MEMORY_READONLY), 0);
	cr_assert_eq(fwcfg_add_file(f, "etc/blob", "0123456789", 10), 0);
	cr_assert_eq(dma(MEM_GPA, SELECT(0x20) | CTL_READ, 10, 0x40000 + 0x10), CTL_ERROR);
	/* zeros past the item's end too */
	cr_assert_eq(dma(MEM_GPA, SELECT(0x20) | CTL_READ, 64, 0x40000 + 0x100), CTL_ERROR);
	for (size_t i = 0; i < sizeof(rom); i++)
		cr_assert_eq(rom[i], 0x33, "ROM written at %zu", i);
	/* the same request into RAM works */
	cr_assert_eq(dma(MEM_GPA, SELECT(0x20) | CTL_READ, 10, MEM_GPA + 0x100), 0);
	cr_assert_eq(memcmp(mem + 0x100, "0123456789", 10), 0);
}

Test(fwcfg, without_guest_memory_there_is_no_dma)
{
	struct fwcfg *g;
	uint8_t id[4], b[4];

	cr_assert_eq(fwcfg_new(NULL, &g), 0);
	uint8_t k[2] = { FW_CFG_ID, 0 };
	fwcfg_ops.write(g, 0, k, 2);
	for (int i = 0; i < 4; i++)
		fwcfg_ops.read(g, 1, &id[i], 1);
	cr_assert_eq(id[0], 0x01);
	fwcfg_ops.read(g, 4, b, 4);
	cr_assert_eq(be32(b), 0xffffffffu);
	fwcfg_free(g);
}

Test(fwcfg, save_restore_cursor_and_bad_blobs)
{
	struct dev_state s = { 0 }, before = { 0 }, after = { 0 };
	struct fwcfg *g;
	uint8_t buf[64];
	char c[3] = { 0 };

	cr_assert_eq(fwcfg_add_file(f, "opt/a", "abcdef", 6), 0);
	sel(0x20);
	read_data(c, 2);
	cr_assert_eq(fwcfg_save(f, &s), 0);

	cr_assert_eq(fwcfg_new(&gm, &g), 0);
	cr_assert_eq(fwcfg_add_file(g, "opt/a", "abcdef", 6), 0);
	cr_assert_eq(fwcfg_restore(g, s.data, s.len), 0);
	fwcfg_free(f);
	f = g;
	read_data(c, 2);
	cr_assert_str_eq(c, "cd");

	cr_assert_eq(fwcfg_save(f, &before), 0);
	cr_assert_leq(s.len, sizeof(buf));
	for (size_t l = 0; l < s.len; l++)
		cr_assert_eq(fwcfg_restore(f, s.data, l), -EINVAL);
	for (size_t i = 0; i < s.len; i++) {
		memcpy(buf, s.data, s.len);
		buf[i] ^= 0x40;
		cr_assert_eq(fwcfg_restore(f, buf, s.len), -EINVAL, "byte %zu", i);
	}
	cr_assert_eq(fwcfg_save(f, &after), 0);
	cr_assert_eq(memcmp(before.data, after.data, before.len), 0);
	dev_state_free(&s);
	dev_state_free(&before);
	dev_state_free(&after);
}
