/* SPDX-License-Identifier: MIT */
/* bzImage loader: the stock Debian kernel's real header placed in a fake
 * guest RAM, and hostile headers that must fail cleanly. */
#include "test_boot.h"

static struct bootfx fx;

static void fini(void)
{
	bootfx_fini(&fx);
}

TestSuite(boot_bzimage, .fini = fini);

/* ---- a small synthetic bzImage ---------------------------------------------- */

#define SYN_SETUP_SECTS 4
#define SYN_SETUP_SIZE ((SYN_SETUP_SECTS + 1) * 512)
#define SYN_KERNEL_SIZE 0x2000

static uint8_t syn[SYN_SETUP_SIZE + SYN_KERNEL_SIZE];

static void syn_build(void)
{
	memset(syn, 0, sizeof(syn));
	syn[0x1f1] = SYN_SETUP_SECTS;
	wr32(syn + 0x1f4, SYN_KERNEL_SIZE / 16);
	wr16(syn + 0x1fe, 0xaa55);
	syn[0x200] = 0xeb;
	syn[0x201] = 0x6a; /* header ends at 0x26c */
	memcpy(syn + 0x202, "HdrS", 4);
	wr16(syn + 0x206, 0x020f);
	syn[0x211] = 0x01;                 /* LOADED_HIGH */
	wr32(syn + 0x22c, 0x7fffffff);     /* initrd_addr_max */
	wr32(syn + 0x230, 0x200000);       /* kernel_alignment */
	syn[0x234] = 1;                    /* relocatable */
	wr16(syn + 0x236, 0x3);            /* XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G */
	wr32(syn + 0x238, 0x7ff);          /* cmdline_size */
	wr64(syn + 0x250, 0x12345678);     /* setup_data: must not reach the guest */
	wr64(syn + 0x258, 0x1000000);      /* pref_address */
	wr32(syn + 0x260, 0x800000);       /* init_size */
	for (size_t i = 0; i < SYN_KERNEL_SIZE; i++)
		syn[SYN_SETUP_SIZE + i] = (uint8_t)(i * 7 + 1);
}

static void syn_input(uint64_t ram)
{
	bootfx_init(&fx, ram);
	syn_build();
	fx.in.kernel = syn;
	fx.in.kernel_len = sizeof(syn);
}

/* ---- the stock kernel --------------------------------------------------------- */

Test(boot_bzimage, stock_kernel_boot_params_and_placement)
{
	static const char cmdline[] = "console=ttyS0 earlyprintk=serial root=/dev/vda ro";
	size_t klen;
	uint8_t *k = stock_kernel("vmlinuz", &klen);
	size_t rd_a_len = 3 * MiB + 123, rd_b_len = 4567;
	uint8_t *rd_a = malloc(rd_a_len), *rd_b = malloc(rd_b_len);
	struct boot_blob rds[2] = { { .data = rd_a, .len = rd_a_len, .name = "a.img" }, { .data = rd_b, .len = rd_b_len, .name = "b.img" } };
	unsigned sects = k[0x1f1] ? k[0x1f1] : 4;
	size_t setup = (sects + 1) * 512, hdr_end = 0x202 + k[0x201];
	uint64_t pref = rd64(k + 0x258), init_size = rd32(k + 0x260);
	uint64_t sys = (uint64_t)rd32(k + 0x1f4) * 16, initrd_max = rd32(k + 0x22c);
	uint64_t rd_addr, rd_size, rd_total = rd_a_len + rd_b_len;
	const uint8_t *bp;
	struct boot_entry *o = &fx.out;

	cr_assert_not_null(rd_a);
	cr_assert_not_null(rd_b);
	for (size_t i = 0; i < rd_a_len; i++)
		rd_a[i] = (uint8_t)(i ^ (i >> 9));
	memset(rd_b, 0x5c, rd_b_len);
	bootfx_init(&fx, 256 * MiB);
	fx.in.kernel = k;
	fx.in.kernel_len = klen;
	fx.in.cmdline = cmdline;
	fx.in.initrds = rds;
	fx.in.n_initrds = 2;
	fx.in.rsdp_addr = 0xe0000;

	cr_assert_eq(boot_detect(k, klen), VMKIT_KERNEL_BZIMAGE, "%s", vmkit_last_error());
	cr_assert_eq(boot_bzimage(&fx.in, o), 0, "%s", vmkit_last_error());
	bp = gp(&fx, X86_ZERO_PAGE_ADDR, 4096);

	/* The setup header is the file's, bar the fields a loader writes. */
	cr_assert_eq(hdr_end, 0x26c);
	cr_assert_eq(memcmp(bp + 0x1f1, k + 0x1f1, 0x210 - 0x1f1), 0, "header before type_of_loader differs");
	cr_assert_eq(memcmp(bp + 0x22c, k + 0x22c, 0x23c - 0x22c), 0, "initrd_addr_max..cmdline_size differ");
	cr_assert_eq(memcmp(bp + 0x258, k + 0x258, hdr_end - 0x258), 0, "pref_address..end differ");
	cr_assert_eq(bp[0x210], 0xff, "type_of_loader");
	cr_assert_eq(bp[0x211], k[0x211] | 0x80, "loadflags keep LOADED_HIGH and add CAN_USE_HEAP");
	cr_assert_neq(rd16(bp + 0x224), 0, "heap_end_ptr");
	cr_assert_eq(rd64(bp + 0x250), 0, "setup_data");
	cr_assert_eq(bp[0x1ef], 0, "sentinel");
	cr_assert_eq(bp[0x1e8], 3, "e820_entries");
	for (int i = 0; i < 3; i++) {
		const uint8_t *e = bp + 0x2d0 + 20 * i;
		cr_assert_eq(rd64(e), fx.e820[i].addr);
		cr_assert_eq(rd64(e + 8), fx.e820[i].size);
		cr_assert_eq(rd32(e + 16), fx.e820[i].type);
	}
	cr_assert_eq(rd64(bp + 0x70), 0xe0000, "acpi_rsdp_addr");

	cr_assert_eq(rd32(bp + 0x228), X86_CMDLINE_ADDR, "cmd_line_ptr");
	cr_assert_str_eq((const char *)gp(&fx, X86_CMDLINE_ADDR, sizeof(cmdline)), cmdline);

	/* Kernel at its preferred address, the whole image in place. */
	cr_assert_eq(o->kernel_start, pref);
	cr_assert_eq(o->kernel_end, pref + init_size);
	cr_assert_eq(memcmp(gp(&fx, pref, sys), k + setup, sys), 0, "kernel bytes");

	/* initrd: concatenated, page aligned, as high as possible below the
	 * limit and RAM, clear of the kernel's init_size. */
	rd_addr = rd32(bp + 0x218) | (uint64_t)rd32(bp + 0xc0) << 32;
	rd_size = rd32(bp + 0x21c) | (uint64_t)rd32(bp + 0xc4) << 32;
	cr_assert_eq(rd_size, rd_total);
	cr_assert_eq(rd_addr % 4096, 0);
	cr_assert_leq(rd_addr + rd_size, initrd_max + 1);
	cr_assert_leq(rd_addr + rd_size, fx.ram);
	cr_assert(rd_addr >= pref + init_size || rd_addr + rd_size <= pref, "initrd overlaps the kernel");
	cr_assert_eq(rd_addr, (fx.ram - rd_total) & ~0xfffull, "initrd is not at the top of RAM");
	cr_assert_eq(memcmp(gp(&fx, rd_addr, rd_a_len), rd_a, rd_a_len), 0);
	cr_assert_eq(memcmp(gp(&fx, rd_addr + rd_a_len, rd_b_len), rd_b, rd_b_len), 0);
	cr_assert_eq(o->initrd_start, rd_addr);
	cr_assert_eq(o->initrd_end, rd_addr + rd_total);

	/* 64-bit entry, RSI = boot_params, long mode, flat __BOOT_CS/DS. */
	cr_assert_eq(o->regs.rip, pref + 0x200);
	cr_assert_eq(o->regs.rsi, X86_ZERO_PAGE_ADDR);
	cr_assert_eq(o->regs.rflags & 0x200, 0, "interrupts must be off");
	cr_assert_eq(o->sregs.cr0 & 0x80000001, 0x80000001, "CR0.PG|PE");
	cr_assert(o->sregs.cr4 & 0x20, "CR4.PAE");
	cr_assert_eq(o->sregs.efer & 0x500, 0x500, "EFER.LME|LMA");
	cr_assert_eq(o->sregs.cs.l, 1);
	cr_assert_eq(o->sregs.cs.db, 0);
	cr_assert_eq(o->sregs.cs.selector, 0x10);
	cr_assert_eq(o->sregs.ds.selector, 0x18);
	cr_assert_eq(o->sregs.ss.selector, 0x18);
	assert_seg_matches_gdt(&fx, &o->sregs, &o->sregs.cs);
	assert_seg_matches_gdt(&fx, &o->sregs, &o->sregs.ds);
	/* The kernel, boot_params and the command line are identity mapped. */
	for (uint64_t va = pref; va < pref + init_size; va += 2 * MiB) {
		bool urw;
		cr_assert_eq(walk(&fx, o->sregs.cr3, va, &urw), va);
	}
	free(k);
	free(rd_a);
	free(rd_b);
}

Test(boot_bzimage, stock_kernel_relocates_when_preferred_address_does_not_fit)
{
	size_t klen;
	uint8_t *k = stock_kernel("vmlinuz", &klen);
	uint64_t pref = rd64(k + 0x258), init_size = rd32(k + 0x260), align = rd32(k + 0x230);
	uint64_t ram = (pref + init_size - 1) & ~(MiB - 1); /* just too small at pref */

	if (ram < init_size + 2 * align)
		cr_skip_test("kernel layout (init_size 0x%llx) leaves no room to relocate", (unsigned long long)init_size);
	bootfx_init(&fx, ram);
	fx.in.kernel = k;
	fx.in.kernel_len = klen;
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(fx.out.kernel_start, (MiB + align - 1) & ~(align - 1));
	cr_assert_eq(fx.out.regs.rip, fx.out.kernel_start + 0x200);
	free(k);
}

Test(boot_bzimage, stock_kernel_command_line_longer_than_cmdline_size)
{
	size_t klen;
	uint8_t *k = stock_kernel("vmlinuz", &klen);
	uint32_t max = rd32(k + 0x238);
	char *cmd = malloc(max + 2);

	memset(cmd, 'a', max + 1);
	cmd[max + 1] = 0;
	bootfx_init(&fx, 256 * MiB);
	fx.in.kernel = k;
	fx.in.kernel_len = klen;
	fx.in.cmdline = cmd;
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -E2BIG);
	cr_assert(strstr(vmkit_last_error(), "command line"), "%s", vmkit_last_error());
	cmd[max] = 0; /* exactly cmdline_size bytes is fine */
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(strlen((const char *)gp(&fx, X86_CMDLINE_ADDR, max + 1)), max);
	free(cmd);
	free(k);
}

Test(boot_bzimage, stock_kernel_ram_smaller_than_init_size)
{
	size_t klen;
	uint8_t *k = stock_kernel("vmlinuz", &klen);

	bootfx_init(&fx, 16 * MiB);
	fx.in.kernel = k;
	fx.in.kernel_len = klen;
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOMEM);
	cr_assert(strstr(vmkit_last_error(), "init_size"), "%s", vmkit_last_error());
	free(k);
}

/* ---- synthetic images ---------------------------------------------------------- */

Test(boot_bzimage, synthetic_image_loads_at_pref_address)
{
	syn_input(64 * MiB);
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(fx.out.regs.rip, 0x1000200);
	cr_assert_eq(memcmp(gp(&fx, 0x1000000, SYN_KERNEL_SIZE), syn + SYN_SETUP_SIZE, SYN_KERNEL_SIZE), 0);
	cr_assert_eq(fx.out.initrd_start, 0);
	cr_assert_eq(rd32(gp(&fx, X86_ZERO_PAGE_ADDR + 0x218, 4)), 0, "no ramdisk");
	cr_assert_eq(rd64(gp(&fx, X86_ZERO_PAGE_ADDR + 0x250, 8)), 0, "setup_data from the file is dropped");
	cr_assert_eq(rd64(gp(&fx, X86_ZERO_PAGE_ADDR + 0x70, 8)), 0, "no RSDP without ACPI");
}

Test(boot_bzimage, initrd_goes_below_the_kernel_when_it_does_not_fit_above)
{
	/* 32 MiB RAM, kernel 16..24 MiB: 10 MiB fit only below it. */
	size_t n = 10 * MiB;
	uint8_t *rd = calloc(1, n);
	struct boot_blob blob = { .data = rd, .len = n, .name = "rd" };

	syn_input(32 * MiB);
	fx.in.initrds = &blob;
	fx.in.n_initrds = 1;
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_leq(fx.out.initrd_end, 0x1000000);
	cr_assert_eq(fx.out.initrd_start, (0x1000000 - n) & ~0xfffull);
	free(rd);
}

Test(boot_bzimage, initrd_too_large_for_ram)
{
	size_t n = 60 * MiB;
	uint8_t *rd = calloc(1, n);
	struct boot_blob blob = { .data = rd, .len = n, .name = "big" };

	syn_input(64 * MiB);
	fx.in.initrds = &blob;
	fx.in.n_initrds = 1;
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOMEM);
	cr_assert(strstr(vmkit_last_error(), "initrd"), "%s", vmkit_last_error());
	free(rd);
}

Test(boot_bzimage, initrd_above_initrd_addr_max_is_refused)
{
	uint8_t rd[4096] = { 0 };
	struct boot_blob blob = { .data = rd, .len = sizeof(rd), .name = "rd" };

	syn_input(64 * MiB);
	wr32(syn + 0x22c, 0xfffff);   /* initrd must end below 1 MiB */
	wr16(syn + 0x236, 0x1);       /* and not above 4 GiB */
	fx.in.initrds = &blob;
	fx.in.n_initrds = 1;
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOMEM);
	wr32(syn + 0x22c, 0x17fffff); /* below 24 MiB: fits between 1 and 16 MiB... */
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_leq(fx.out.initrd_end, 0x1000000, "...not over the kernel at 16..24 MiB");
}

Test(boot_bzimage, truncated_header)
{
	syn_input(64 * MiB);
	for (size_t n = 0; n < 0x270; n += 0x10) {
		fx.in.kernel_len = n;
		cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOEXEC, "length %zu", n);
	}
}

Test(boot_bzimage, setup_sects_beyond_the_file)
{
	syn_input(64 * MiB);
	syn[0x1f1] = 0xff;
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOEXEC);
	cr_assert(strstr(vmkit_last_error(), "setup sectors"), "%s", vmkit_last_error());
}

Test(boot_bzimage, syssize_beyond_the_file)
{
	syn_input(64 * MiB);
	wr32(syn + 0x1f4, SYN_KERNEL_SIZE / 16 + 1);
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOEXEC);
	wr32(syn + 0x1f4, 0xffffffff);
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOEXEC);
	wr32(syn + 0x1f4, 0);
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOEXEC);
}

Test(boot_bzimage, old_protocol_or_no_64bit_entry)
{
	syn_input(64 * MiB);
	wr16(syn + 0x206, 0x0206);
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOEXEC);
	cr_assert(strstr(vmkit_last_error(), "2.06"), "%s", vmkit_last_error());
	cr_assert_eq(boot_detect(syn, sizeof(syn)), -ENOEXEC);
	syn_build();
	wr16(syn + 0x236, 0x2);
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOEXEC);
	cr_assert_eq(boot_detect(syn, sizeof(syn)), -ENOEXEC);
}

Test(boot_bzimage, header_length_byte_out_of_range)
{
	syn_input(64 * MiB);
	syn[0x201] = 0x10; /* ends before init_size */
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOEXEC);
	syn[0x201] = 0xff; /* past boot_params' setup header space */
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOEXEC);
}

Test(boot_bzimage, bad_kernel_alignment)
{
	syn_input(64 * MiB);
	wr32(syn + 0x230, 0x300000);
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOEXEC);
	wr32(syn + 0x230, 0);
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOEXEC);
}

Test(boot_bzimage, non_relocatable_kernel_beyond_ram)
{
	syn_input(64 * MiB);
	syn[0x234] = 0;
	wr64(syn + 0x258, 0x8000000);
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOMEM);
}

Test(boot_bzimage, wild_pref_address_falls_back_to_low_aligned_address)
{
	syn_input(64 * MiB);
	wr64(syn + 0x258, 0xffffffffffe00000ull);
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), 0, "%s", vmkit_last_error());
	cr_assert_eq(fx.out.kernel_start, 0x200000);
}

Test(boot_bzimage, huge_init_size)
{
	syn_input(64 * MiB);
	wr32(syn + 0x260, 0xffffffff);
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -ENOMEM);
}

Test(boot_bzimage, too_many_e820_entries)
{
	static struct x86_e820 many[129];

	syn_input(64 * MiB);
	for (int i = 0; i < 129; i++)
		many[i] = (struct x86_e820){ (uint64_t)i * MiB, MiB, E820_RAM };
	fx.in.e820 = many;
	fx.in.n_e820 = 129;
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -E2BIG);
}

Test(boot_bzimage, e820_claiming_unbacked_ram_gives_efault)
{
	uint8_t rd[4096] = { 1 };
	struct boot_blob blob = { .data = rd, .len = sizeof(rd), .name = "rd" };

	syn_input(64 * MiB);
	fx.e820[2].size = 512 * MiB; /* the map says more RAM than exists */
	fx.in.initrds = &blob;
	fx.in.n_initrds = 1;
	cr_assert_eq(boot_bzimage(&fx.in, &fx.out), -EFAULT);
	cr_assert(strstr(vmkit_last_error(), "outside guest memory"), "%s", vmkit_last_error());
}

/* ---- a kernel handed to firmware through fw_cfg ------------------------------ */

/* The stock kernel for firmware: setup patched as a boot loader must,
 * kernel and initrd placed, nothing written to guest memory. */
Test(boot_bzimage, fwcfg_stock_kernel_setup_patched_and_initrd_placed)
{
	static const char cmdline[] = "console=ttyS0 quiet";
	size_t klen, rd_len = 5 * MiB + 17;
	uint8_t *k = stock_kernel("vmlinuz", &klen);
	uint8_t *rd = calloc(1, rd_len);
	struct boot_blob blob = { .data = rd, .len = rd_len, .name = "rd" };
	unsigned sects = k[0x1f1] ? k[0x1f1] : 4;
	size_t setup = (sects + 1) * 512;
	uint64_t initrd_max = rd32(k + 0x22c);
	struct boot_fwcfg_kernel o;

	cr_assert_not_null(rd);
	/* fields the loader must clear, made non-zero so that clearing shows */
	wr32(k + 0x23c, 0x5a5a);
	memset(k + 0x250, 0xa5, 8);
	bootfx_init(&fx, 256 * MiB);
	fx.in.kernel = k;
	fx.in.kernel_len = klen;
	fx.in.cmdline = cmdline;
	fx.in.initrds = &blob;
	fx.in.n_initrds = 1;
	cr_assert_eq(boot_bzimage_fwcfg(&fx.in, &o), 0, "%s", vmkit_last_error());
	cr_assert_eq(o.setup_addr, 0x10000);
	cr_assert_eq(o.setup_size, setup);
	cr_assert_eq(o.kernel, k + setup);
	cr_assert_eq(o.kernel_size, klen - setup);
	cr_assert_eq(o.kernel_addr, 0x100000);
	cr_assert_eq(o.cmdline_addr, 0x20000);
	cr_assert_eq(o.initrd_addr % 4096, 0);
	cr_assert_leq(o.initrd_addr + rd_len - 1, initrd_max);
	cr_assert_leq(o.initrd_addr + rd_len, 256 * MiB, "initrd beyond RAM");
	cr_assert_geq(o.initrd_addr, 0x100000 + rd32(k + 0x260), "initrd over the kernel's init_size");
	/* the file's setup, byte for byte, but the loader's fields */
	{
		uint8_t *want = malloc(setup);
		size_t diff = setup;

		cr_assert_not_null(want);
		memcpy(want, k, setup);
		want[0x210] = 0xff;                    /* type_of_loader */
		want[0x211] |= 0x80;                   /* CAN_USE_HEAP */
		wr32(want + 0x218, o.initrd_addr);     /* ramdisk_image */
		wr32(want + 0x21c, (uint32_t)rd_len);  /* ramdisk_size */
		want[0x224] = 0x00;                    /* heap_end_ptr 0xfe00 */
		want[0x225] = 0xfe;
		wr32(want + 0x228, 0x20000);           /* cmd_line_ptr */
		wr32(want + 0x23c, 0);                 /* hardware_subarch */
		memset(want + 0x250, 0, 8);            /* setup_data */
		for (size_t i = 0; i < setup && diff == setup; i++)
			if (o.setup[i] != want[i])
				diff = i;
		cr_assert_eq(diff, setup, "setup byte 0x%zx is 0x%02x, want 0x%02x", diff,
			     diff < setup ? o.setup[diff] : 0, diff < setup ? want[diff] : 0);
		free(want);
	}
	/* nothing went into guest memory */
	{
		static const uint8_t zero[4096];
		const uint8_t *ram = vmkit__gmem_ptr(&fx.gm, 0, 256 * MiB);
		size_t nz = 0;

		cr_assert_not_null(ram);
		for (size_t i = 0; i < 256 * MiB; i += sizeof(zero))
			nz += memcmp(ram + i, zero, sizeof(zero)) != 0;
		cr_assert_eq(nz, 0, "guest memory was written (%zu pages)", nz);
	}
	free(o.setup);
	free(rd);
	free(k);
}

/* The firmware path takes what the 64-bit entry cannot: a 2.02 kernel
 * without XLF_KERNEL_64, not relocatable. Old header: only 2.02 fields. */
Test(boot_bzimage, fwcfg_old_protocol_kernel_only_its_fields)
{
	struct boot_fwcfg_kernel o;

	syn_input(64 * MiB);
	wr16(syn + 0x206, 0x0202);
	wr16(syn + 0x236, 0);
	syn[0x234] = 0;
	wr32(syn + 0x23c, 0xabcd);
	cr_assert_eq(boot_bzimage_fwcfg(&fx.in, &o), 0, "%s", vmkit_last_error());
	cr_assert_eq(rd32(o.setup + 0x228), 0x20000);
	cr_assert_eq(rd64(o.setup + 0x250), 0x12345678, "setup_data is not a 2.02 field");
	cr_assert_eq(rd32(o.setup + 0x23c), 0xabcd, "hardware_subarch is not a 2.02 field");
	cr_assert_eq(o.initrd_addr, 0);
	free(o.setup);
}

Test(boot_bzimage, fwcfg_refuses_what_firmware_cannot_boot)
{
	struct boot_fwcfg_kernel o;
	static char longcmd[300];
	struct boot_blob big = { .data = syn, .len = 0, .name = "big" };

	syn_input(64 * MiB);
	syn[0x211] = 0;                           /* zImage: loaded low */
	cr_assert_eq(boot_bzimage_fwcfg(&fx.in, &o), -ENOEXEC);
	cr_assert(strstr(vmkit_last_error(), "zImage"), "%s", vmkit_last_error());
	cr_assert_null(o.setup);
	syn_build();
	wr16(syn + 0x206, 0x0201);                /* before cmd_line_ptr */
	cr_assert_eq(boot_bzimage_fwcfg(&fx.in, &o), -ENOEXEC);
	syn_build();
	memcpy(syn + 0x202, "HdrX", 4);
	cr_assert_eq(boot_bzimage_fwcfg(&fx.in, &o), -ENOEXEC);
	syn_build();
	syn[0x1f1] = 200;                         /* setup beyond the file */
	cr_assert_eq(boot_bzimage_fwcfg(&fx.in, &o), -ENOEXEC);
	syn_build();
	wr16(syn + 0x206, 0x0205);                /* 255-byte command lines */
	memset(longcmd, 'x', sizeof(longcmd) - 1);
	fx.in.cmdline = longcmd;
	cr_assert_eq(boot_bzimage_fwcfg(&fx.in, &o), -E2BIG);
	fx.in.cmdline = "";
	syn_build();
	wr32(syn + 0x260, 0x7fffffff);            /* init_size beyond RAM */
	cr_assert_eq(boot_bzimage_fwcfg(&fx.in, &o), -ENOMEM);
	syn_build();
	big.len = 63 * MiB;                       /* initrd larger than RAM */
	fx.in.initrds = &big;
	fx.in.n_initrds = 1;
	cr_assert_eq(boot_bzimage_fwcfg(&fx.in, &o), -ENOMEM);
	cr_assert_null(o.setup);
}
