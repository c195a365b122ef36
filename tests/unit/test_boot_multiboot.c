/* SPDX-License-Identifier: MIT */
/* Multiboot v1 loader: synthetic ELF32 and a.out-kludge kernels, the
 * multiboot_info a kernel reads, and headers we must refuse. */
#include "test_boot.h"

static struct bootfx fx;
static uint8_t *img;
static size_t img_len;

static void fini(void)
{
	bootfx_fini(&fx);
	free(img);
	img = NULL;
}

TestSuite(boot_multiboot, .fini = fini);

static const uint8_t code[] = { 0xfa, 0xf4, 0xeb, 0xfd, 9, 8, 7, 6, 5, 4, 3, 2, 1 };

static void build_elf(uint32_t flags, uint64_t paddr, uint64_t vaddr, uint64_t entry, uint64_t bss)
{
	struct synth_elf s = {
		.is64 = false, .paddr = paddr, .vaddr = vaddr, .entry = entry, .bss = bss,
		.code = code, .code_len = sizeof(code), .with_mb = true, .mb_flags = flags,
	};
	free(img);
	img = synth_elf_build(&s, &img_len);
	bootfx_init(&fx, 128 * MiB);
	fx.in.kernel = img;
	fx.in.kernel_len = img_len;
}

/* An a.out-kludge kernel: header at file offset @hoff, loaded at 2 MiB. */
#define K_LOAD 0x200000u
#define K_HOFF 0x40u
#define K_FILE 0x1000u
#define K_BSS  0x3000u

static void build_kludge(uint32_t extra_flags)
{
	uint32_t flags = (1u << 16) | extra_flags;
	uint8_t *h;

	free(img);
	img_len = K_FILE;
	img = malloc(img_len);
	cr_assert_not_null(img);
	for (size_t i = 0; i < img_len; i++)
		img[i] = (uint8_t)(i * 3 + 1);
	h = img + K_HOFF;
	wr32(h, BOOT_MB_MAGIC);
	wr32(h + 4, flags);
	wr32(h + 8, 0u - BOOT_MB_MAGIC - flags);
	wr32(h + 12, K_LOAD + K_HOFF);          /* header_addr */
	wr32(h + 16, K_LOAD);                   /* load_addr */
	wr32(h + 20, K_LOAD + K_FILE);          /* load_end_addr */
	wr32(h + 24, K_LOAD + K_FILE + K_BSS);  /* bss_end_addr */
	wr32(h + 28, K_LOAD + 0x100);           /* entry_addr */
	bootfx_init(&fx, 128 * MiB);
	fx.in.kernel = img;
	fx.in.kernel_len = img_len;
}

static void assert_entry_state(uint64_t entry)
{
	const vmkit_sregs *s = &fx.out.sregs;

	cr_assert_eq(fx.out.regs.rax, 0x2BADB002);
	cr_assert_eq(fx.out.regs.rbx, X86_MB_INFO_ADDR);
	cr_assert_eq(fx.out.regs.rip, entry);
	cr_assert_eq(fx.out.regs.rflags & (1u << 9 | 1u << 17), 0, "IF and VM clear");
	cr_assert_eq(s->cr0 & 0x80000001, 1, "PE set, PG clear");
	cr_assert_eq(s->cs.base, 0);
	cr_assert_eq(s->cs.limit, 0xffffffff);
	cr_assert_eq(s->cs.db, 1);
	cr_assert_eq(s->cs.l, 0);
	cr_assert_eq(s->cs.type & 0xa, 0xa, "execute/read");
	const vmkit_segment *data[] = { &s->ds, &s->es, &s->fs, &s->gs, &s->ss };
	for (size_t i = 0; i < ARRAY_SIZE(data); i++) {
		cr_assert_eq(data[i]->base, 0);
		cr_assert_eq(data[i]->limit, 0xffffffff);
		cr_assert_eq(data[i]->type & 0xa, 0x2, "read/write data");
		assert_seg_matches_gdt(&fx, s, data[i]);
	}
	assert_seg_matches_gdt(&fx, s, &s->cs);
}

Test(boot_multiboot, elf32_info_modules_mmap_cmdline)
{
	static const char cmdline[] = "root=none quiet";
	uint8_t mod_a[5000], mod_b[300];
	struct boot_blob mods[2] = { { .data = mod_a, .len = sizeof(mod_a), .name = "mod-a.bin arg=1" },
				     { .data = mod_b, .len = sizeof(mod_b), .name = "b" } };
	const uint8_t *info, *mm, *ml;
	uint32_t flags, kernel_end = 0x100000 + sizeof(code) + 0x5000;

	memset(mod_a, 0xa1, sizeof(mod_a));
	memset(mod_b, 0xb2, sizeof(mod_b));
	build_elf(0x3, 0x100000, 0x100000, 0x100001, 0x5000);
	fx.in.cmdline = cmdline;
	fx.in.initrds = mods;
	fx.in.n_initrds = 2;
	cr_assert_eq(boot_detect(img, img_len), VMKIT_KERNEL_MULTIBOOT);
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	assert_entry_state(0x100001);
	cr_assert_eq(memcmp(gp(&fx, 0x100000, sizeof(code)), code, sizeof(code)), 0);
	cr_assert_eq(fx.out.kernel_end, kernel_end);

	info = gp(&fx, X86_MB_INFO_ADDR, 116);
	flags = rd32(info);
	cr_assert_eq(flags & (1u << 0 | 1u << 2 | 1u << 3 | 1u << 6 | 1u << 9),
		     1u << 0 | 1u << 2 | 1u << 3 | 1u << 6 | 1u << 9, "flags 0x%x", flags);
	cr_assert_eq(rd32(info + 4), 639, "mem_lower KiB");
	cr_assert_eq(rd32(info + 8), (128 * MiB - MiB) / 1024, "mem_upper KiB");
	cr_assert_str_eq((const char *)gp(&fx, rd32(info + 16), sizeof(cmdline)), cmdline);
	cr_assert_str_eq((const char *)gp(&fx, rd32(info + 64), 6), "vmkit");

	cr_assert_eq(rd32(info + 44), 3 * 24, "mmap_length");
	mm = gp(&fx, rd32(info + 48), 3 * 24);
	for (int i = 0; i < 3; i++) {
		const uint8_t *e = mm + 24 * i;
		cr_assert_eq(rd32(e), 20, "size field");
		cr_assert_eq(rd64(e + 4), fx.e820[i].addr);
		cr_assert_eq(rd64(e + 12), fx.e820[i].size);
		cr_assert_eq(rd32(e + 20), fx.e820[i].type == E820_RAM ? 1 : 2);
	}

	cr_assert_eq(rd32(info + 20), 2, "mods_count");
	ml = gp(&fx, rd32(info + 24), 32);
	for (int i = 0; i < 2; i++) {
		uint32_t start = rd32(ml + 16 * i), end = rd32(ml + 16 * i + 4);
		cr_assert_eq(start % 4096, 0, "module %d not page aligned", i);
		cr_assert_geq(start, kernel_end, "module %d overlaps the kernel", i);
		cr_assert_eq(end - start, mods[i].len);
		cr_assert_eq(memcmp(gp(&fx, start, mods[i].len), mods[i].data, mods[i].len), 0);
		cr_assert_str_eq((const char *)gp(&fx, rd32(ml + 16 * i + 8), 1), mods[i].name);
	}
	cr_assert_geq(rd32(ml + 16), rd32(ml + 4), "modules overlap");
	cr_assert_eq(fx.out.initrd_start, rd32(ml));
	cr_assert_eq(fx.out.initrd_end, rd32(ml + 16 + 4));
}

Test(boot_multiboot, elf_entry_given_as_virtual_address)
{
	build_elf(0, 0x100000, 0xc0100000, 0xc0100002, 0);
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(fx.out.regs.rip, 0x100002);
	cr_assert_eq(rd32(gp(&fx, X86_MB_INFO_ADDR + 20, 4)), 0, "no modules");
	cr_assert_eq(rd32(gp(&fx, X86_MB_INFO_ADDR, 4)) & (1u << 3), 0, "no mods flag");
}

Test(boot_multiboot, aout_kludge_loads_by_header_addresses)
{
	build_kludge(1u << 1);
	memset(gp(&fx, K_LOAD, K_FILE + K_BSS + 0x1000), 0xcc, K_FILE + K_BSS + 0x1000);
	cr_assert_eq(boot_detect(img, img_len), VMKIT_KERNEL_MULTIBOOT);
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	assert_entry_state(K_LOAD + 0x100);
	cr_assert_eq(memcmp(gp(&fx, K_LOAD, K_FILE), img, K_FILE), 0);
	for (uint32_t i = 0; i < K_BSS; i++)
		cr_assert_eq(*gp(&fx, K_LOAD + K_FILE + i, 1), 0, "bss byte %u", i);
	cr_assert_eq(*gp(&fx, K_LOAD + K_FILE + K_BSS, 1), 0xcc, "zeroed past bss_end_addr");
	cr_assert_eq(fx.out.kernel_start, K_LOAD);
	cr_assert_eq(fx.out.kernel_end, K_LOAD + K_FILE + K_BSS);
}

Test(boot_multiboot, aout_kludge_with_zero_end_addresses_loads_the_rest_of_the_file)
{
	build_kludge(0);
	wr32(img + K_HOFF + 20, 0);
	wr32(img + K_HOFF + 24, 0);
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(fx.out.kernel_end, K_LOAD + K_FILE);
}

Test(boot_multiboot, optional_unknown_flags_are_ignored)
{
	build_kludge(1u << 17 | 1u << 31);
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
}

Test(boot_multiboot, required_video_mode_is_refused)
{
	build_kludge(1u << 2);
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOTSUP);
	cr_assert(strstr(vmkit_last_error(), "video"), "%s", vmkit_last_error());
	build_kludge(1u << 9);
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOTSUP);
}

Test(boot_multiboot, bad_checksum_or_header_too_far)
{
	build_kludge(0);
	wr32(img + K_HOFF + 8, rd32(img + K_HOFF + 8) + 1);
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
	cr_assert_eq(boot_detect(img, img_len), -ENOEXEC);

	/* A valid header at 8192 is outside the search window. */
	free(img);
	img_len = 8192 + 64;
	img = calloc(1, img_len);
	wr32(img + 8192, BOOT_MB_MAGIC);
	wr32(img + 8196, 0);
	wr32(img + 8200, 0u - BOOT_MB_MAGIC);
	fx.in.kernel = img;
	fx.in.kernel_len = img_len;
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
	/* ...and one that is not 4-byte aligned is not a header. */
	memmove(img + 0x101, img + 8192, 12);
	cr_assert_eq(boot_detect(img, img_len), -ENOEXEC);
}

Test(boot_multiboot, hostile_kludge_addresses)
{
	build_kludge(0);
	wr32(img + K_HOFF + 20, K_LOAD + K_FILE + 1); /* load_end past the file */
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
	build_kludge(0);
	wr32(img + K_HOFF + 16, K_LOAD + K_HOFF + 4); /* load_addr above header_addr */
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
	build_kludge(0);
	wr32(img + K_HOFF + 16, K_LOAD - 0x1000); /* header_addr - load_addr > offset */
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
	build_kludge(0);
	wr32(img + K_HOFF + 24, K_LOAD + 4); /* bss_end below load_end */
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
	build_kludge(0);
	wr32(img + K_HOFF + 28, 0x12345678); /* entry outside */
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
	build_kludge(0);
	wr32(img + K_HOFF + 24, 0xfffff000); /* bss up to 4 GiB: not RAM */
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOMEM);
	build_kludge(0);
	img_len = K_HOFF + 20; /* address fields cut off */
	fx.in.kernel_len = img_len;
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
}

Test(boot_multiboot, hostile_elf)
{
	build_elf(0, 0x100000, 0x100000, 0x100000, 0);
	wr32(img + 52 + 4, 0x7ffffff0); /* p_offset past the file */
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
	build_elf(0, 0x100000, 0x100000, 0x100000, 0);
	wr32(img + 52 + 12, 0xfffffff8); /* p_paddr: crosses 4 GiB */
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
	build_elf(0, 0x100000, 0x100000, 0x5000000, 0); /* entry outside */
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
	build_elf(0, 0x100000, 0x100000, 0x100000, 0);
	img[0] = 0; /* no longer ELF, no kludge flag */
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOEXEC);
}

Test(boot_multiboot, module_too_large_for_ram)
{
	size_t n = 200 * MiB;
	uint8_t *m = calloc(1, n);
	struct boot_blob blob = { .data = m, .len = n, .name = "huge" };

	build_kludge(0);
	fx.in.initrds = &blob;
	fx.in.n_initrds = 1;
	cr_assert_eq(boot_multiboot(&fx.in, &fx.out), -ENOMEM);
	cr_assert(strstr(vmkit_last_error(), "huge"), "%s", vmkit_last_error());
	free(m);
}
