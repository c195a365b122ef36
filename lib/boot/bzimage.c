/* SPDX-License-Identifier: MIT */
/* Linux bzImage through the 64-bit boot protocol (Documentation/arch/x86/
 * boot.rst, zero-page.rst): the protected-mode kernel at its preferred
 * address, boot_params at X86_ZERO_PAGE_ADDR, entry at load + 0x200 in
 * long mode with RSI = boot_params. The real-mode setup code is not run
 * and not loaded. */
#include <stdlib.h>

#include "boot/loader.h"

/* setup_header fields (offsets in the file and in boot_params) */
#define HDR_START           0x1f1
#define HDR_SETUP_SECTS     0x1f1
#define HDR_SYSSIZE         0x1f4
#define HDR_BOOT_FLAG       0x1fe
#define HDR_JUMP            0x200
#define HDR_MAGIC           0x202
#define HDR_VERSION         0x206
#define HDR_TYPE_OF_LOADER  0x210
#define HDR_LOADFLAGS       0x211
#define HDR_RAMDISK_IMAGE   0x218
#define HDR_RAMDISK_SIZE    0x21c
#define HDR_HEAP_END_PTR    0x224
#define HDR_CMD_LINE_PTR    0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGN    0x230
#define HDR_RELOCATABLE     0x234
#define HDR_XLOADFLAGS      0x236
#define HDR_CMDLINE_SIZE    0x238
#define HDR_HW_SUBARCH      0x23c
#define HDR_SETUP_DATA      0x250
#define HDR_PREF_ADDRESS    0x258
#define HDR_INIT_SIZE       0x260
#define HDR_MIN_END         0x264 /* through init_size (protocol 2.10) */
#define HDR_MAX_END         0x290 /* boot_params.edd_mbr_sig_buffer follows */

/* boot_params fields outside the setup header */
#define BP_ACPI_RSDP_ADDR   0x070
#define BP_EXT_RAMDISK_IMG  0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES     0x1e8
#define BP_E820_TABLE       0x2d0
#define BP_E820_MAX         128
#define BP_SIZE             0x1000

#define LOADFLAG_CAN_USE_HEAP 0x80
#define XLF_KERNEL_64         (1u << 0)
#define XLF_CAN_BE_LOADED_ABOVE_4G (1u << 1)
#define BZ_MIN_VERSION      0x020c /* xloadflags (the 64-bit entry flag) appeared in 2.12 */
#define BZ_ENTRY64_OFFSET   0x200
/* Traditionally the top of the setup heap relative to the setup code; the
 * 64-bit entry does not use it, but loaders set it with CAN_USE_HEAP. */
#define BZ_HEAP_END         0xfe00

struct bz {
	uint16_t version;
	uint64_t setup_size, sys_size, init_size, align, pref;
	uint32_t initrd_max, cmdline_size;
	uint16_t xloadflags;
	bool relocatable;
	size_t hdr_end;
};

/* What both ways of booting a bzImage need: the "HdrS" header, its
 * protocol version, and a setup (setup_sects + 1 sectors, 0 meaning 4)
 * with kernel bytes after it. */
static int parse_setup(const uint8_t *img, size_t len, uint16_t *version, uint64_t *setup_size)
{
	unsigned sects;

	if (len < HDR_MIN_END)
		return vmkit__err(-ENOEXEC, "bzImage: file too short (%zu bytes) for a setup header", len);
	if (memcmp(img + HDR_MAGIC, "HdrS", 4) != 0 || boot_le16(img + HDR_BOOT_FLAG) != 0xaa55)
		return vmkit__err(-ENOEXEC, "bzImage: no \"HdrS\" setup header");
	*version = boot_le16(img + HDR_VERSION);
	sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
	*setup_size = (uint64_t)(sects + 1) * 512;
	if (*setup_size >= len)
		return vmkit__err(-ENOEXEC, "bzImage: %u setup sectors but the file has %zu bytes",
				  sects, len);
	return 0;
}

static int parse(const uint8_t *img, size_t len, struct bz *b)
{
	int ret = parse_setup(img, len, &b->version, &b->setup_size);

	if (ret < 0)
		return ret;
	b->xloadflags = boot_le16(img + HDR_XLOADFLAGS);
	if (b->version < BZ_MIN_VERSION || !(b->xloadflags & XLF_KERNEL_64))
		return vmkit__err(-ENOEXEC, "bzImage: boot protocol %u.%02u has no 64-bit entry (need 2.12+ with XLF_KERNEL_64)",
				  b->version >> 8, b->version & 0xff);
	b->hdr_end = 0x202 + (size_t)img[HDR_JUMP + 1];
	if (b->hdr_end < HDR_MIN_END || b->hdr_end > HDR_MAX_END || b->hdr_end > b->setup_size)
		return vmkit__err(-ENOEXEC, "bzImage: setup header end 0x%zx is out of range",
				  b->hdr_end);
	b->sys_size = (uint64_t)boot_le32(img + HDR_SYSSIZE) * 16;
	if (b->sys_size == 0 || b->sys_size > len - b->setup_size)
		return vmkit__err(-ENOEXEC, "bzImage: kernel of 0x%llx bytes but 0x%llx follow the setup code",
				  BOOT_ULL(b->sys_size), BOOT_ULL(len - b->setup_size));
	b->init_size = boot_le32(img + HDR_INIT_SIZE);
	if (b->init_size < b->sys_size)
		b->init_size = b->sys_size;
	b->initrd_max = boot_le32(img + HDR_INITRD_ADDR_MAX);
	b->cmdline_size = boot_le32(img + HDR_CMDLINE_SIZE);
	b->relocatable = img[HDR_RELOCATABLE] != 0;
	b->align = boot_le32(img + HDR_KERNEL_ALIGN);
	b->pref = boot_le64(img + HDR_PREF_ADDRESS);
	if (b->relocatable &&
	    (b->align < BOOT_PAGE || b->align > (1ull << 30) || (b->align & (b->align - 1))))
		return vmkit__err(-ENOEXEC, "bzImage: kernel_alignment 0x%llx is not a power of two between 4 KiB and 1 GiB",
				  BOOT_ULL(b->align));
	return 0;
}

/* The kernel and its whole init_size must be identity mapped RAM. */
static bool kernel_fits(const struct boot_input *in, const struct bz *b, uint64_t at)
{
	return at >= X86_HIGH_RAM && at <= X86_4G && b->init_size <= X86_4G - at &&
	       boot_in_ram(in, at, b->init_size);
}

static int choose_load_addr(const struct boot_input *in, const struct bz *b, uint64_t *out)
{
	uint64_t at = b->pref ? b->pref : X86_HIGH_RAM;

	if (b->relocatable && (at & (b->align - 1)))
		at = boot_align_up(at, b->align);
	if (kernel_fits(in, b, at)) {
		*out = at;
		return 0;
	}
	if (b->relocatable) {
		at = boot_align_up(X86_HIGH_RAM, b->align);
		if (kernel_fits(in, b, at)) {
			*out = at;
			return 0;
		}
	}
	return vmkit__err(-ENOMEM, "bzImage: kernel needs 0x%llx bytes (init_size) of RAM at 0x%llx, guest RAM is too small",
			  BOOT_ULL(b->init_size), BOOT_ULL(at));
}

static int place_initrd(const struct boot_input *in, const struct bz *b, uint64_t load,
			uint64_t size, uint64_t *out)
{
	/* initrd_addr_max is the highest address of the initrd's last byte. */
	uint64_t limit = (uint64_t)b->initrd_max + 1;

	if (boot_place_high(in, size, BOOT_PAGE, X86_HIGH_RAM, limit, load, b->init_size, out) == 0)
		return 0;
	if ((b->xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G) &&
	    boot_place_high(in, size, BOOT_PAGE, X86_4G, UINT64_MAX, 0, 0, out) == 0)
		return 0;
	return vmkit__err(-ENOMEM, "bzImage: initrd of 0x%llx bytes does not fit in guest RAM below 0x%llx next to the kernel",
			  BOOT_ULL(size), BOOT_ULL(limit));
}

static void fill_e820(uint8_t *bp, const struct boot_input *in)
{
	for (size_t i = 0; i < in->n_e820; i++) {
		uint8_t *e = bp + BP_E820_TABLE + 20 * i;
		boot_put64(e, in->e820[i].addr);
		boot_put64(e + 8, in->e820[i].size);
		boot_put32(e + 16, in->e820[i].type);
	}
	bp[BP_E820_ENTRIES] = (uint8_t)in->n_e820;
}

/* Where the firmware puts things for a 16-bit entry (QEMU's choice for a
 * protocol 2.02+ kernel loaded high, which linuxboot and qboot expect):
 * setup at 0x10000, its heap up to the command line at 0x20000. */
#define FW_SETUP_ADDR   0x10000u
#define FW_CMDLINE_ADDR 0x20000u
#define FW_KERNEL_ADDR  0x100000u
#define HDR_VERSION_MIN_FW 0x0202
#define LOADFLAG_LOADED_HIGH 0x01
#define OLD_INITRD_MAX  0x37ffffffu /* before protocol 2.03 */
#define OLD_CMDLINE_MAX 255u        /* before protocol 2.06 */

int boot_bzimage_fwcfg(const struct boot_input *in, struct boot_fwcfg_kernel *out)
{
	const uint8_t *img = in ? in->kernel : NULL;
	size_t len = in ? in->kernel_len : 0;
	uint64_t setup_size, kernel_size, init_size, rd_size = 0, rd_addr = 0, limit;
	uint32_t cmdline_max;
	uint16_t version;
	size_t cmd_len;
	uint8_t *setup;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = boot_check_input(in, "bzImage");
	if (ret == 0)
		ret = parse_setup(img, len, &version, &setup_size);
	if (ret < 0)
		return ret;
	if (version < HDR_VERSION_MIN_FW || !(img[HDR_LOADFLAGS] & LOADFLAG_LOADED_HIGH))
		return vmkit__err(-ENOEXEC, "bzImage: boot protocol %u.%02u%s: firmware needs 2.02+ loaded high",
				  version >> 8, version & 0xff,
				  img[HDR_LOADFLAGS] & LOADFLAG_LOADED_HIGH ? "" : " (zImage)");
	/* The setup and its heap live below the command line. */
	if (setup_size > FW_CMDLINE_ADDR - FW_SETUP_ADDR - 0x200)
		return vmkit__err(-ENOEXEC, "bzImage: %llu bytes of setup code do not fit below the command line",
				  BOOT_ULL(setup_size));
	kernel_size = len - setup_size;
	init_size = version >= 0x020a ? boot_le32(img + HDR_INIT_SIZE) : 0;
	if (init_size < kernel_size)
		init_size = kernel_size;
	if (!boot_in_ram(in, FW_SETUP_ADDR, FW_CMDLINE_ADDR - FW_SETUP_ADDR + X86_CMDLINE_MAX) ||
	    init_size > X86_4G - FW_KERNEL_ADDR || !boot_in_ram(in, FW_KERNEL_ADDR, init_size))
		return vmkit__err(-ENOMEM, "bzImage: kernel needs 0x%llx bytes (init_size) of RAM at 0x%x, guest RAM is too small",
				  BOOT_ULL(init_size), FW_KERNEL_ADDR);
	cmdline_max = version >= 0x0206 ? boot_le32(img + HDR_CMDLINE_SIZE) : OLD_CMDLINE_MAX;
	cmd_len = strnlen(in->cmdline, X86_CMDLINE_MAX);
	if (cmd_len > cmdline_max || cmd_len >= X86_CMDLINE_MAX)
		return vmkit__err(-E2BIG, "bzImage: command line is %zu bytes, the kernel takes at most %u",
				  cmd_len, cmdline_max);
	ret = boot_initrd_size(in, &rd_size);
	if (ret < 0)
		return ret;
	if (rd_size) {
		limit = (version >= 0x0203 ? boot_le32(img + HDR_INITRD_ADDR_MAX) : OLD_INITRD_MAX);
		if (boot_place_high(in, rd_size, BOOT_PAGE, X86_HIGH_RAM, limit + 1, FW_KERNEL_ADDR,
				    init_size, &rd_addr) < 0 || rd_size > UINT32_MAX)
			return vmkit__err(-ENOMEM, "bzImage: initrd of 0x%llx bytes does not fit in guest RAM below 0x%llx next to the kernel",
					  BOOT_ULL(rd_size), BOOT_ULL(limit + 1));
	}
	setup = malloc(setup_size);
	if (!setup)
		return vmkit__err(-ENOMEM, "bzImage: out of memory for the setup code");
	memcpy(setup, img, setup_size);
	/* What a boot loader fills in (boot.rst, "the real-mode kernel
	 * header"), each only where this protocol version has the field. */
	setup[HDR_TYPE_OF_LOADER] = 0xff;
	setup[HDR_LOADFLAGS] |= LOADFLAG_CAN_USE_HEAP;
	boot_put16(setup + HDR_HEAP_END_PTR, (uint16_t)(FW_CMDLINE_ADDR - FW_SETUP_ADDR - 0x200));
	boot_put32(setup + HDR_CMD_LINE_PTR, FW_CMDLINE_ADDR);
	boot_put32(setup + HDR_RAMDISK_IMAGE, (uint32_t)rd_addr);
	boot_put32(setup + HDR_RAMDISK_SIZE, (uint32_t)rd_size);
	if (version >= 0x0207)
		boot_put32(setup + HDR_HW_SUBARCH, 0);
	if (version >= 0x0209)
		boot_put64(setup + HDR_SETUP_DATA, 0);
	out->setup = setup;
	out->setup_addr = FW_SETUP_ADDR;
	out->setup_size = (uint32_t)setup_size;
	out->kernel = img + setup_size;
	out->kernel_addr = FW_KERNEL_ADDR;
	out->kernel_size = (uint32_t)kernel_size;
	out->cmdline_addr = FW_CMDLINE_ADDR;
	out->initrd_addr = (uint32_t)rd_addr;
	return 0;
}

int boot_bzimage(const struct boot_input *in, struct boot_entry *out)
{
	uint8_t bp[BP_SIZE];
	uint64_t load = 0, rd_size = 0, rd_addr = 0;
	size_t cmd_len;
	struct bz b = { 0 };
	int ret;

	ret = boot_check_input(in, "bzImage");
	if (ret < 0)
		return ret;
	ret = parse(in->kernel, in->kernel_len, &b);
	if (ret < 0)
		return ret;
	if (in->n_e820 > BP_E820_MAX)
		return vmkit__err(-E2BIG, "bzImage: %zu e820 entries, boot_params holds %d",
				  in->n_e820, BP_E820_MAX);
	ret = choose_load_addr(in, &b, &load);
	if (ret < 0)
		return ret;
	ret = boot_initrd_size(in, &rd_size);
	if (ret < 0)
		return ret;
	if (rd_size) {
		ret = place_initrd(in, &b, load, rd_size, &rd_addr);
		if (ret < 0)
			return ret;
	}
	ret = boot_write_cmdline(in, b.cmdline_size, "bzImage", &cmd_len);
	if (ret < 0)
		return ret;
	ret = boot_load(in, load, in->kernel + b.setup_size, b.sys_size, b.sys_size, "bzImage kernel");
	if (ret < 0)
		return ret;
	if (rd_size && (ret = boot_write_initrds(in, rd_addr)) < 0)
		return ret;

	memset(bp, 0, sizeof(bp));
	memcpy(bp + HDR_START, in->kernel + HDR_START, b.hdr_end - HDR_START);
	bp[HDR_TYPE_OF_LOADER] = 0xff;
	bp[HDR_LOADFLAGS] |= LOADFLAG_CAN_USE_HEAP;
	boot_put16(bp + HDR_HEAP_END_PTR, BZ_HEAP_END);
	boot_put32(bp + HDR_CMD_LINE_PTR, (uint32_t)X86_CMDLINE_ADDR);
	boot_put32(bp + BP_EXT_CMD_LINE_PTR, 0);
	boot_put32(bp + HDR_RAMDISK_IMAGE, (uint32_t)rd_addr);
	boot_put32(bp + HDR_RAMDISK_SIZE, (uint32_t)rd_size);
	boot_put32(bp + BP_EXT_RAMDISK_IMG, (uint32_t)(rd_addr >> 32));
	boot_put32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)(rd_size >> 32));
	/* Pointers the file could otherwise plant: no setup_data list, PC subarch. */
	boot_put32(bp + HDR_HW_SUBARCH, 0);
	boot_put64(bp + HDR_SETUP_DATA, 0);
	/* boot_params.acpi_rsdp_addr; kernels before 5.0 ignore the field. */
	boot_put64(bp + BP_ACPI_RSDP_ADDR, in->rsdp_addr);
	fill_e820(bp, in);
	ret = boot_write(in, X86_ZERO_PAGE_ADDR, bp, sizeof(bp), "bzImage boot_params");
	if (ret < 0)
		return ret;
	ret = boot_setup_gdt(in->mem);
	if (ret < 0)
		return ret;
	ret = boot_setup_identity_paging(in->mem);
	if (ret < 0)
		return ret;

	memset(&out->regs, 0, sizeof(out->regs));
	out->regs.rip = load + BZ_ENTRY64_OFFSET;
	out->regs.rsi = X86_ZERO_PAGE_ADDR;
	out->regs.rflags = 0x2;
	boot_set_mode(&out->sregs, VMKIT_CPU_LONG64);
	out->kernel_start = load;
	out->kernel_end = load + b.init_size;
	out->initrd_start = rd_addr;
	out->initrd_end = rd_size ? rd_addr + rd_size : 0;
	return 0;
}
