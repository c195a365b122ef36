/* SPDX-License-Identifier: MIT */
/* PVH loader: the stock Debian vmlinux loaded where its program headers
 * say, hvm_start_info as the ABI defines it, and hostile ELF files. */
#include "test_boot.h"

static struct bootfx fx;

static void fini(void)
{
	bootfx_fini(&fx);
}

TestSuite(boot_pvh, .fini = fini);

/* The PVH entry note, found independently of the loader. */
static uint64_t find_pvh_note(const uint8_t *k, size_t len)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)k;

	for (unsigned i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, k + eh->e_phoff + i * eh->e_phentsize, sizeof(ph));
		if (ph.p_type != PT_NOTE)
			continue;
		cr_assert_leq(ph.p_offset + ph.p_filesz, len);
		for (size_t off = 0; off + 12 <= ph.p_filesz;) {
			const uint8_t *n = k + ph.p_offset + off;
			uint32_t namesz = rd32(n), descsz = rd32(n + 4), type = rd32(n + 8);
			const uint8_t *desc = n + 12 + ((namesz + 3) & ~3u);
			if (type == 18 && namesz == 4 && memcmp(n + 12, "Xen", 4) == 0)
				return descsz == 8 ? rd64(desc) : rd32(desc);
			off += 12 + ((namesz + 3) & ~3u) + ((descsz + 3) & ~3u);
		}
	}
	cr_assert_fail("stock vmlinux has no PVH note");
	return 0;
}

Test(boot_pvh, stock_vmlinux_segments_start_info_and_entry)
{
	static const char cmdline[] = "console=ttyS0 earlyprintk=ttyS0 acpi=on";
	size_t klen, rd_len = 2 * MiB + 77;
	uint8_t *k = stock_kernel("vmlinux", &klen);
	uint8_t *rd = malloc(rd_len);
	struct boot_blob blob = { .data = rd, .len = rd_len, .name = "initrd" };
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)k;
	uint64_t lo = UINT64_MAX, hi = 0, entry = find_pvh_note(k, klen);
	const uint8_t *si, *mod, *mm;
	struct boot_entry *o = &fx.out;
	unsigned nload = 0;

	cr_assert_not_null(rd);
	for (size_t i = 0; i < rd_len; i++)
		rd[i] = (uint8_t)(i * 13);
	bootfx_init(&fx, 512 * MiB);
	fx.in.kernel = k;
	fx.in.kernel_len = klen;
	fx.in.cmdline = cmdline;
	fx.in.initrds = &blob;
	fx.in.n_initrds = 1;
	fx.in.rsdp_addr = 0xe0000;

	cr_assert_eq(boot_detect(k, klen), VMKIT_KERNEL_PVH, "%s", vmkit_last_error());
	cr_assert_eq(boot_pvh(&fx.in, o), 0, "%s", vmkit_last_error());

	for (unsigned i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, k + eh->e_phoff + i * eh->e_phentsize, sizeof(ph));
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		nload++;
		cr_assert_eq(memcmp(gp(&fx, ph.p_paddr, ph.p_filesz), k + ph.p_offset, ph.p_filesz), 0,
			     "segment %u not at its p_paddr 0x%llx", i, (unsigned long long)ph.p_paddr);
		for (uint64_t z = ph.p_filesz; z < ph.p_memsz; z += 4093)
			cr_assert_eq(*gp(&fx, ph.p_paddr + z, 1), 0, "bss of segment %u not zeroed", i);
		lo = ph.p_paddr < lo ? ph.p_paddr : lo;
		hi = ph.p_paddr + ph.p_memsz > hi ? ph.p_paddr + ph.p_memsz : hi;
	}
	cr_assert_geq(nload, 2);
	cr_assert_eq(o->kernel_start, lo);
	cr_assert_eq(o->kernel_end, hi);

	/* Entry state of the PVH ABI. */
	cr_assert_eq(o->regs.rip, entry);
	cr_assert_eq(o->regs.rbx, X86_PVH_INFO_ADDR);
	cr_assert_eq(o->regs.rflags, 0x2);
	cr_assert_eq(o->sregs.cr0 & 0x80000001, 1, "PE set, PG clear");
	cr_assert_eq(o->sregs.cr0 & ~0x11ull, 0, "other writable CR0 bits clear");
	cr_assert_eq(o->sregs.cr4, 0);
	cr_assert_eq(o->sregs.efer, 0);
	cr_assert_eq(o->sregs.cs.db, 1);
	cr_assert_eq(o->sregs.cs.l, 0);
	cr_assert_eq(o->sregs.cs.base, 0);
	cr_assert_eq(o->sregs.cs.limit, 0xffffffff);
	cr_assert_eq(o->sregs.ds.limit, 0xffffffff);
	cr_assert_eq(o->sregs.ss.db, 1);
	cr_assert_eq(o->sregs.tr.limit, 0x67);
	cr_assert_eq(o->sregs.tr.type, 11);
	assert_seg_matches_gdt(&fx, &o->sregs, &o->sregs.cs);
	assert_seg_matches_gdt(&fx, &o->sregs, &o->sregs.ds);

	/* hvm_start_info */
	si = gp(&fx, X86_PVH_INFO_ADDR, 56);
	cr_assert_eq(rd32(si), 0x336ec578);
	cr_assert_eq(rd32(si + 4), 1);
	cr_assert_eq(rd32(si + 12), 1, "nr_modules");
	cr_assert_str_eq((const char *)gp(&fx, rd64(si + 24), sizeof(cmdline)), cmdline);
	cr_assert_eq(rd64(si + 32), 0xe0000, "rsdp_paddr");
	mod = gp(&fx, rd64(si + 16), 32);
	cr_assert_eq(rd64(mod + 8), rd_len);
	cr_assert_eq(memcmp(gp(&fx, rd64(mod), rd_len), rd, rd_len), 0, "initrd contents");
	cr_assert_eq(rd64(mod) % 4096, 0);
	cr_assert_leq(rd64(mod) + rd_len, 3ull << 30);
	cr_assert(rd64(mod) >= hi || rd64(mod) + rd_len <= lo, "initrd overlaps the kernel");
	cr_assert_eq(rd64(mod), (fx.ram - rd_len) & ~0xfffull, "initrd not placed high");
	cr_assert_eq(o->initrd_start, rd64(mod));
	cr_assert_eq(rd32(si + 48), 3, "memmap_entries");
	mm = gp(&fx, rd64(si + 40), 3 * 24);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(rd64(mm + 24 * i), fx.e820[i].addr);
		cr_assert_eq(rd64(mm + 24 * i + 8), fx.e820[i].size);
		cr_assert_eq(rd32(mm + 24 * i + 16), fx.e820[i].type);
		cr_assert_eq(rd32(mm + 24 * i + 20), 0);
	}
	free(rd);
	free(k);
}

/* ---- synthetic ELF ------------------------------------------------------------ */

static const uint8_t code[] = { 0xf4, 0xeb, 0xfd, 0x90, 1, 2, 3, 4 };
static uint8_t *img;
static size_t img_len;

static void build(bool is64, uint64_t paddr, uint64_t bss, uint64_t entry, unsigned note_bytes)
{
	struct synth_elf s = {
		.is64 = is64, .paddr = paddr, .vaddr = paddr, .entry = paddr, .bss = bss,
		.code = code, .code_len = sizeof(code), .pvh_entry = entry, .note_bytes = note_bytes,
	};
	free(img);
	img = synth_elf_build(&s, &img_len);
	bootfx_init(&fx, 64 * MiB);
	fx.in.kernel = img;
	fx.in.kernel_len = img_len;
}

/* Program header field offsets of the first (PT_LOAD) header. */
#define PH64 64
#define PH32 52

Test(boot_pvh, elf32_with_4_byte_note_and_bss)
{
	build(false, 0x200000, 0x3000, 0x200001, 4);
	memset(gp(&fx, 0x200000, 0x4000), 0xee, 0x4000);
	cr_assert_eq(boot_detect(img, img_len), VMKIT_KERNEL_PVH);
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(fx.out.regs.rip, 0x200001);
	cr_assert_eq(memcmp(gp(&fx, 0x200000, sizeof(code)), code, sizeof(code)), 0);
	for (size_t i = sizeof(code); i < sizeof(code) + 0x3000; i++)
		cr_assert_eq(*gp(&fx, 0x200000 + i, 1), 0, "bss byte %zu", i);
	cr_assert_eq(*gp(&fx, 0x200000 + sizeof(code) + 0x3000, 1), 0xee, "zeroed past memsz");
	cr_assert_eq(fx.out.kernel_end, 0x200000 + sizeof(code) + 0x3000);
	cr_assert_eq(rd32(gp(&fx, X86_PVH_INFO_ADDR + 12, 4)), 0, "no modules without initrd");
}

Test(boot_pvh, no_note_is_refused)
{
	build(true, 0x200000, 0, 0, 0);
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
	cr_assert(strstr(vmkit_last_error(), "PHYS32_ENTRY"), "%s", vmkit_last_error());
}

Test(boot_pvh, entry_outside_the_image)
{
	build(true, 0x200000, 0, 0x900000, 8);
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
	build(true, 0x200000, 0, 0x100000000ull, 8);
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
}

Test(boot_pvh, segment_beyond_the_file)
{
	build(true, 0x200000, 0, 0x200000, 8);
	wr64(img + PH64 + 32, img_len); /* p_filesz: offset + filesz past the end */
	wr64(img + PH64 + 40, img_len);
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
	cr_assert(strstr(vmkit_last_error(), "past the end"), "%s", vmkit_last_error());
	build(true, 0x200000, 0, 0x200000, 8);
	wr64(img + PH64 + 8, 0xfffffffffffffff0ull); /* p_offset wraps */
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
}

Test(boot_pvh, filesz_larger_than_memsz)
{
	build(true, 0x200000, 0, 0x200000, 8);
	wr64(img + PH64 + 40, 2);
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
}

Test(boot_pvh, segment_beyond_ram)
{
	build(true, 0x200000, 0, 0x200000, 8);
	wr64(img + PH64 + 24, 0x10000000); /* p_paddr 256 MiB, RAM is 64 */
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOMEM);
	cr_assert(strstr(vmkit_last_error(), "not in guest RAM"), "%s", vmkit_last_error());
	build(true, 0x200000, 0, 0x200000, 8);
	wr64(img + PH64 + 24, 0xfffffffffffffff8ull); /* p_paddr + p_memsz wraps */
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
	build(true, 0x200000, 0, 0x200000, 8);
	wr64(img + PH64 + 40, 0x7fffffffffffffffull); /* huge bss */
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOMEM);
}

Test(boot_pvh, segment_over_the_boot_area)
{
	build(false, 0x6000, 0, 0x6000, 4);
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
	cr_assert(strstr(vmkit_last_error(), "below 1 MiB"), "%s", vmkit_last_error());
}

Test(boot_pvh, program_headers_beyond_the_file)
{
	build(true, 0x200000, 0, 0x200000, 8);
	wr64(img + 32, img_len - 8); /* e_phoff */
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
	build(true, 0x200000, 0, 0x200000, 8);
	wr16(img + 56, 0xfffe); /* e_phnum */
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
	build(true, 0x200000, 0, 0x200000, 8);
	wr16(img + 54, 8); /* e_phentsize too small */
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
}

Test(boot_pvh, malformed_notes)
{
	size_t note = 64 + 2 * 56;

	build(true, 0x200000, 0, 0x200000, 8);
	wr32(img + note, 0xfffffffc); /* namesz runs past the segment */
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
	build(true, 0x200000, 0, 0x200000, 8);
	wr32(img + note + 4, 0xffffffff); /* descsz */
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
	build(true, 0x200000, 0, 0x200000, 8);
	wr64(img + PH64 + 56 + 32, 0x7fffffff); /* note p_filesz past the file */
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOEXEC);
}

Test(boot_pvh, truncated_files)
{
	build(true, 0x200000, 0, 0x200000, 8);
	for (size_t n = 0; n < 0x100; n += 3) {
		fx.in.kernel_len = n;
		cr_assert_lt(boot_pvh(&fx.in, &fx.out), 0, "length %zu", n);
	}
}

Test(boot_pvh, initrd_too_large_for_ram)
{
	size_t n = 70 * MiB;
	uint8_t *rd = calloc(1, n);
	struct boot_blob blob = { .data = rd, .len = n, .name = "big" };

	build(true, 0x200000, 0, 0x200000, 8);
	fx.in.initrds = &blob;
	fx.in.n_initrds = 1;
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -ENOMEM);
	cr_assert(strstr(vmkit_last_error(), "initrd"), "%s", vmkit_last_error());
	free(rd);
}

Test(boot_pvh, command_line_too_long)
{
	char *cmd = malloc(X86_CMDLINE_MAX + 1);

	memset(cmd, 'x', X86_CMDLINE_MAX);
	cmd[X86_CMDLINE_MAX] = 0;
	build(true, 0x200000, 0, 0x200000, 8);
	fx.in.cmdline = cmd;
	cr_assert_eq(boot_pvh(&fx.in, &fx.out), -E2BIG);
	free(cmd);
}
