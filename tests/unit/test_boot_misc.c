/* SPDX-License-Identifier: MIT */
/* Format detection, flat binaries in each CPU mode, firmware reset state,
 * and the shared GDT and identity page tables. */
#include <sys/mman.h>
#include <unistd.h>

#include "test_boot.h"

static struct bootfx fx;
static bool fx_up;

static void fini(void)
{
	if (fx_up)
		bootfx_fini(&fx);
	fx_up = false;
}

static void fx_init(uint64_t ram)
{
	bootfx_init(&fx, ram);
	fx_up = true;
}

TestSuite(boot_detect, .fini = fini);
TestSuite(boot_flat, .fini = fini);
TestSuite(boot_firmware, .fini = fini);

/* ---- boot_detect ---------------------------------------------------------------- */

Test(boot_detect, stock_kernels)
{
	size_t n;
	uint8_t *k = stock_kernel("vmlinuz", &n);

	cr_assert_eq(boot_detect(k, n), VMKIT_KERNEL_BZIMAGE, "%s", vmkit_last_error());
	free(k);
	k = stock_kernel("vmlinux", &n);
	cr_assert_eq(boot_detect(k, n), VMKIT_KERNEL_PVH, "%s", vmkit_last_error());
	free(k);
}

Test(boot_detect, synthetic_formats)
{
	static const uint8_t code[] = { 0xf4 };
	struct synth_elf s = { .paddr = 0x100000, .vaddr = 0x100000, .entry = 0x100000,
			       .code = code, .code_len = 1 };
	size_t n;
	uint8_t *img;

	s.note_bytes = 4;
	img = synth_elf_build(&s, &n);
	cr_assert_eq(boot_detect(img, n), VMKIT_KERNEL_PVH);
	free(img);

	s.note_bytes = 0;
	s.with_mb = true;
	img = synth_elf_build(&s, &n);
	cr_assert_eq(boot_detect(img, n), VMKIT_KERNEL_MULTIBOOT);
	free(img);

	/* Both: PVH wins in AUTO (documented rule). */
	s.note_bytes = 8;
	s.is64 = true;
	img = synth_elf_build(&s, &n);
	cr_assert_eq(boot_detect(img, n), VMKIT_KERNEL_PVH);
	free(img);

	s.note_bytes = 0;
	s.with_mb = false;
	img = synth_elf_build(&s, &n);
	cr_assert_eq(boot_detect(img, n), -ENOEXEC);
	cr_assert(strstr(vmkit_last_error(), "neither a PVH entry note nor a Multiboot header"), "%s",
		  vmkit_last_error());
	free(img);
}

Test(boot_detect, garbage_and_truncated)
{
	uint8_t buf[9000];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	buf[0] = 0x4d;
	buf[1] = 0x5a;
	cr_assert_eq(boot_detect(buf, sizeof(buf)), -ENOEXEC);
	cr_assert(strstr(vmkit_last_error(), "not a bzImage, ELF (PVH) or Multiboot image"), "%s",
		  vmkit_last_error());
	cr_assert(strstr(vmkit_last_error(), "4d 5a"), "%s", vmkit_last_error());
	cr_assert_eq(boot_detect(buf, 0), -ENOEXEC);
	cr_assert_eq(boot_detect(NULL, 0), -ENOEXEC);
	memcpy(buf, "\177ELF", 4);
	for (size_t n = 0; n < 80; n++)
		cr_assert_eq(boot_detect(buf, n), -ENOEXEC, "length %zu", n);
	memcpy(buf + 0x202, "HdrS", 4);
	wr16(buf + 0x1fe, 0xaa55);
	wr16(buf + 0x206, 0x020f);
	wr16(buf + 0x236, 0x0001);
	for (size_t n = 0x206; n < 0x238; n++)
		cr_assert_eq(boot_detect(buf, n), -ENOEXEC, "length %zu", n);
	/* Detection looks only at the signature; the loader refuses the rest. */
	cr_assert_eq(boot_detect(buf, 0x238), VMKIT_KERNEL_BZIMAGE);
}

/* ---- boot_flat ------------------------------------------------------------------- */

static const uint8_t prog[] = { 0xb0, 0x41, 0xe6, 0xf4, 0xf4 };

static void flat_input(uint64_t load, uint64_t entry, vmkit_cpu_mode mode)
{
	fx_init(16 * MiB);
	fx.in.kernel = prog;
	fx.in.kernel_len = sizeof(prog);
	fx.in.flat_load = load;
	fx.in.flat_entry = entry;
	fx.in.flat_mode = mode;
}

Test(boot_flat, real_mode_cs_ip_from_load_address)
{
	flat_input(0x7c00, 0x7c02, VMKIT_CPU_REAL);
	cr_assert_eq(boot_flat(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(memcmp(gp(&fx, 0x7c00, sizeof(prog)), prog, sizeof(prog)), 0);
	cr_assert_eq(fx.out.sregs.cs.selector, 0x7c0);
	cr_assert_eq(fx.out.sregs.cs.base, 0x7c00);
	cr_assert_eq(fx.out.sregs.cs.limit, 0xffff);
	cr_assert_eq(fx.out.sregs.cs.base + fx.out.regs.rip, 0x7c02);
	cr_assert_eq(fx.out.regs.rip, 2);
	cr_assert_eq(fx.out.sregs.cr0 & 0x80000001, 0, "PE and PG clear");
	cr_assert_eq(fx.out.sregs.efer, 0);
	cr_assert_eq(fx.out.regs.rsp, 0);
}

Test(boot_flat, real_mode_limits)
{
	flat_input(0x100000, 0x100000, VMKIT_CPU_REAL);
	cr_assert_eq(boot_flat(&fx.in, &fx.out), -EINVAL);
	fini();
	flat_input(0xffffe, 0xffffe, VMKIT_CPU_REAL); /* runs past 1 MiB */
	cr_assert_eq(boot_flat(&fx.in, &fx.out), -EINVAL);
	fini();
	flat_input(0x1000, 0x1004, (vmkit_cpu_mode)7);
	cr_assert_eq(boot_flat(&fx.in, &fx.out), -EINVAL);
	fini();
	flat_input(0x1000, 0x1005, VMKIT_CPU_REAL); /* entry outside the image */
	cr_assert_eq(boot_flat(&fx.in, &fx.out), -EINVAL);
}

Test(boot_flat, prot32_flat_segments)
{
	flat_input(0x100000, 0x100001, VMKIT_CPU_PROT32);
	cr_assert_eq(boot_flat(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(fx.out.regs.rip, 0x100001);
	cr_assert_eq(fx.out.sregs.cr0 & 0x80000001, 1);
	cr_assert_eq(fx.out.sregs.cs.db, 1);
	cr_assert_eq(fx.out.sregs.cs.l, 0);
	assert_seg_matches_gdt(&fx, &fx.out.sregs, &fx.out.sregs.cs);
	assert_seg_matches_gdt(&fx, &fx.out.sregs, &fx.out.sregs.ss);
}

Test(boot_flat, long64_identity_paging_user_accessible)
{
	bool urw;
	uint64_t probes[] = { 0, 0x1000, 0x200000, 0x12345678, 0xbfffffff, 0xfee00000, 0xffffffff };

	flat_input(0x200000, 0x200000, VMKIT_CPU_LONG64);
	cr_assert_eq(boot_flat(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(fx.out.regs.rip, 0x200000);
	cr_assert_eq(fx.out.sregs.cs.l, 1);
	cr_assert_eq(fx.out.sregs.cr3, X86_PML4_ADDR);
	cr_assert_eq(fx.out.sregs.efer & 0x500, 0x500);
	assert_seg_matches_gdt(&fx, &fx.out.sregs, &fx.out.sregs.cs);
	for (size_t i = 0; i < ARRAY_SIZE(probes); i++) {
		cr_assert_eq(walk(&fx, fx.out.sregs.cr3, probes[i], &urw), probes[i]);
		cr_assert(urw, "0x%llx not user read/write", (unsigned long long)probes[i]);
	}
	/* The CPL3 segments: user data and 64-bit code in SYSRET order. */
	struct gdt_desc ucode = gdt_read(&fx, X86_GDT_ADDR, BOOT_SEL_UCODE64);
	struct gdt_desc udata = gdt_read(&fx, X86_GDT_ADDR, BOOT_SEL_UDATA);
	cr_assert_eq(ucode.dpl, 3);
	cr_assert_eq(ucode.l, 1);
	cr_assert_eq(udata.dpl, 3);
	cr_assert_eq(udata.type & 0xa, 0x2);
}

Test(boot_flat, image_over_boot_structures_is_refused)
{
	flat_input(0x9800, 0x9800, VMKIT_CPU_LONG64);
	cr_assert_eq(boot_flat(&fx.in, &fx.out), -EINVAL);
	cr_assert(strstr(vmkit_last_error(), "page tables"), "%s", vmkit_last_error());
	fini();
	flat_input(0x500, 0x500, VMKIT_CPU_PROT32);
	cr_assert_eq(boot_flat(&fx.in, &fx.out), -EINVAL);
	fini();
	/* Real mode uses neither: fine there. */
	flat_input(0x9800, 0x9800, VMKIT_CPU_REAL);
	cr_assert_eq(boot_flat(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
}

Test(boot_flat, image_outside_ram)
{
	flat_input(16 * MiB - 2, 16 * MiB - 2, VMKIT_CPU_PROT32);
	cr_assert_eq(boot_flat(&fx.in, &fx.out), -ENOMEM);
	fini();
	flat_input(0xa0000, 0xa0000, VMKIT_CPU_REAL); /* reserved, not RAM */
	cr_assert_eq(boot_flat(&fx.in, &fx.out), -ENOMEM);
}

/* ---- boot_firmware ----------------------------------------------------------------- */

Test(boot_firmware, legacy_window_and_reset_state)
{
	size_t n = 256 * 1024;
	uint8_t *bios = malloc(n);

	for (size_t i = 0; i < n; i++)
		bios[i] = (uint8_t)(i * 11 + (i >> 12));
	fx_init(16 * MiB);
	cr_assert_eq(boot_firmware(&fx.in, bios, n, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(memcmp(gp(&fx, 0xe0000, 0x20000), bios + n - 0x20000, 0x20000), 0);
	cr_assert_eq(fx.out.sregs.cs.selector, 0xf000);
	cr_assert_eq(fx.out.sregs.cs.base, 0xffff0000);
	cr_assert_eq(fx.out.sregs.cs.limit, 0xffff);
	cr_assert_eq(fx.out.regs.rip, 0xfff0);
	cr_assert_eq(fx.out.sregs.cr0 & 1, 0);
	cr_assert_eq(fx.out.sregs.efer, 0);
	free(bios);
}

Test(boot_firmware, small_image_ends_at_1mib)
{
	uint8_t bios[65536];

	memset(bios, 0x3c, sizeof(bios));
	bios[sizeof(bios) - 16] = 0xea; /* the reset vector's far jump */
	fx_init(16 * MiB);
	cr_assert_eq(boot_firmware(&fx.in, bios, sizeof(bios), &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(*gp(&fx, 0xffff0, 1), 0xea);
	cr_assert_eq(*gp(&fx, 0xf0000, 1), 0x3c);
	cr_assert_eq(*gp(&fx, 0xeffff, 1), 0, "nothing below the image");
}

Test(boot_firmware, bad_sizes)
{
	static uint8_t bios[0x20000];

	fx_init(16 * MiB);
	cr_assert_eq(boot_firmware(&fx.in, bios, 1000, &fx.out), -EINVAL);
	cr_assert_eq(boot_firmware(&fx.in, bios, 0, &fx.out), -EINVAL);
	cr_assert_eq(boot_firmware(&fx.in, bios, 0x10000 + 512, &fx.out), -EINVAL);
	cr_assert_eq(boot_firmware(&fx.in, bios, (size_t)32 << 20, &fx.out), -EINVAL);
	cr_assert(strstr(vmkit_last_error(), "64 KiB"), "%s", vmkit_last_error());
}

Test(boot_flat, file_backed_image_is_read_into_guest_memory)
{
	/* The machine maps kernel files and the loaders pread() bulk data
	 * into guest RAM; the result must equal a copy of the file. */
	char path[] = "/tmp/vmkit-boot-fd-XXXXXX";
	size_t len = 300 * 1024 + 123;
	uint8_t *img = malloc(len), *back = malloc(len);
	const uint8_t *map;
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	for (size_t i = 0; i < len; i++)
		img[i] = (uint8_t)(i * 7 + (i >> 9));
	cr_assert_eq(write(fd, img, len), (ssize_t)len);
	map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	cr_assert_neq(map, MAP_FAILED);
	fx_init(16 << 20);
	fx.in.kernel = map;
	fx.in.kernel_len = len;
	fx.in.kernel_from_fd = true;
	fx.in.kernel_fd = fd;
	fx.in.flat_load = 0x100000;
	fx.in.flat_entry = 0x100000;
	fx.in.flat_mode = VMKIT_CPU_LONG64;
	cr_assert_eq(boot_flat(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit__gmem_read(&fx.gm, 0x100000, back, len), 0);
	cr_assert_eq(memcmp(back, img, len), 0);
	/* a file that shrank under us is a clean error, not a short copy */
	cr_assert_eq(ftruncate(fd, 4096), 0);
	cr_assert_lt(boot_flat(&fx.in, &fx.out), 0);
	munmap((void *)map, len);
	close(fd);
	unlink(path);
	free(img);
	free(back);
}
