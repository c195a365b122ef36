/* SPDX-License-Identifier: MIT */
/* Multiboot v1 kernels (Multiboot Specification 0.6.96): ELF or the
 * a.out kludge (header flag 16), modules page-aligned above the kernel,
 * multiboot_info with memory sizes, command line, modules, memory map and
 * boot loader name at X86_MB_INFO_ADDR; entry in 32-bit protected mode
 * without paging, EAX = 0x2BADB002, EBX = info. */
#include <elf.h>

#include "boot/loader.h"

/* header flags */
#define MBH_PAGE_ALIGN  (1u << 0)
#define MBH_MEMORY_INFO (1u << 1)
#define MBH_VIDEO_MODE  (1u << 2)
#define MBH_AOUT_KLUDGE (1u << 16)
#define MBH_SUPPORTED   (MBH_PAGE_ALIGN | MBH_MEMORY_INFO)

/* multiboot_info flags and offsets */
#define MBI_MEMORY      (1u << 0)
#define MBI_CMDLINE     (1u << 2)
#define MBI_MODS        (1u << 3)
#define MBI_MMAP        (1u << 6)
#define MBI_LOADER_NAME (1u << 9)
#define MBI_FLAGS       0
#define MBI_MEM_LOWER   4
#define MBI_MEM_UPPER   8
#define MBI_CMDLINE_P   16
#define MBI_MODS_COUNT  20
#define MBI_MODS_ADDR   24
#define MBI_MMAP_LENGTH 44
#define MBI_MMAP_ADDR   48
#define MBI_LOADER_P    64
#define MBI_SIZE        116 /* through the framebuffer fields */

/* Where the pieces go inside [X86_MB_INFO_ADDR, X86_PML4_ADDR): info,
 * loader name, memory map, module list. Module strings follow the
 * command line in the command-line area. */
#define MB_NAME_ADDR    (X86_MB_INFO_ADDR + 0x80)
#define MB_MMAP_ADDR    (X86_MB_INFO_ADDR + 0x90)
#define MB_MMAP_ENTRY   24 /* size field + 20-byte entry */
#define MB_MMAP_MAX     64
#define MB_MODS_ADDR    (MB_MMAP_ADDR + MB_MMAP_MAX * MB_MMAP_ENTRY)
#define MB_MOD_ENTRY    16
#define MB_AREA_END     X86_PML4_ADDR
#define MB_MODS_MAX     ((MB_AREA_END - MB_MODS_ADDR) / MB_MOD_ENTRY)
#define MB_LOADER_NAME  "vmkit"

long boot_mb_find(const uint8_t *img, size_t len)
{
	size_t end = len < BOOT_MB_SEARCH ? len : BOOT_MB_SEARCH;

	for (size_t off = 0; off + 12 <= end; off += 4) {
		uint32_t magic = boot_le32(img + off);
		if (magic == BOOT_MB_MAGIC &&
		    (uint32_t)(magic + boot_le32(img + off + 4) + boot_le32(img + off + 8)) == 0)
			return (long)off;
	}
	return -ENOENT;
}

struct mb_image {
	uint64_t lo, hi;         /* loaded range */
	uint32_t entry;
	uint64_t mod_lo, mod_hi; /* modules' range, 0 for none */
};

/* The a.out kludge: the header's address fields say which part of the
 * file goes where. */
static int load_kludge(const struct boot_input *in, size_t hoff, struct mb_image *im)
{
	const uint8_t *h = in->kernel + hoff;
	uint32_t header_addr, load_addr, load_end, bss_end, entry;
	uint64_t file_off, filesz, memsz;

	if (in->kernel_len - hoff < 32)
		return vmkit__err(-ENOEXEC, "Multiboot: header with address fields is truncated");
	header_addr = boot_le32(h + 12);
	load_addr = boot_le32(h + 16);
	load_end = boot_le32(h + 20);
	bss_end = boot_le32(h + 24);
	entry = boot_le32(h + 28);
	if (header_addr < load_addr || header_addr - load_addr > hoff)
		return vmkit__err(-ENOEXEC, "Multiboot: header_addr 0x%x and load_addr 0x%x do not match the header's file offset 0x%zx",
				  header_addr, load_addr, hoff);
	file_off = hoff - (header_addr - load_addr);
	if (load_end == 0) {
		filesz = in->kernel_len - file_off;
	} else {
		if (load_end <= load_addr)
			return vmkit__err(-ENOEXEC, "Multiboot: load_end_addr 0x%x is not above load_addr 0x%x",
					  load_end, load_addr);
		filesz = load_end - load_addr;
		if (filesz > in->kernel_len - file_off)
			return vmkit__err(-ENOEXEC, "Multiboot: load range 0x%x..0x%x runs past the end of the file",
					  load_addr, load_end);
	}
	memsz = filesz;
	if (bss_end) {
		if (bss_end < load_addr + filesz)
			return vmkit__err(-ENOEXEC, "Multiboot: bss_end_addr 0x%x is below the loaded data",
					  bss_end);
		memsz = bss_end - load_addr;
	}
	if (load_addr + memsz > X86_4G)
		return vmkit__err(-ENOEXEC, "Multiboot: image at 0x%x (0x%llx bytes) crosses 4 GiB",
				  load_addr, BOOT_ULL(memsz));
	if (load_addr < X86_HIGH_RAM)
		return vmkit__err(-ENOEXEC, "Multiboot: load_addr 0x%x overlaps the boot area below 1 MiB",
				  load_addr);
	if (entry < load_addr || entry - load_addr >= memsz)
		return vmkit__err(-ENOEXEC, "Multiboot: entry_addr 0x%x is outside the image 0x%x..0x%llx",
				  entry, load_addr, BOOT_ULL(load_addr + memsz));
	if (!boot_in_ram(in, load_addr, memsz))
		return vmkit__err(-ENOMEM, "Multiboot: image at 0x%x..0x%llx is not in guest RAM",
				  load_addr, BOOT_ULL(load_addr + memsz));
	im->lo = load_addr;
	im->hi = load_addr + memsz;
	im->entry = entry;
	return boot_load(in, load_addr, in->kernel + file_off, filesz, memsz, "Multiboot kernel");
}

static int load_elf(const struct boot_input *in, struct mb_image *im)
{
	struct boot_elf e;
	uint64_t entry;
	int ret;

	ret = boot_elf_parse(in->kernel, in->kernel_len, &e);
	if (ret < 0)
		return vmkit__err(ret, "Multiboot: no address fields (flag 16) and not a valid ELF file");
	ret = boot_elf_load(in, in->kernel, in->kernel_len, &e, X86_4G, "Multiboot", &im->lo, &im->hi);
	if (ret < 0)
		return ret;
	/* An entry given as a virtual address inside a segment is moved to
	 * that segment's physical address, as kernels linked high expect. */
	entry = e.entry;
	for (uint32_t i = 0; i < e.phnum; i++) {
		struct boot_elf_phdr ph;
		boot_elf_phdr(in->kernel, &e, i, &ph);
		if (ph.type == PT_LOAD && e.entry >= ph.vaddr && e.entry - ph.vaddr < ph.memsz) {
			entry = e.entry - ph.vaddr + ph.paddr;
			break;
		}
	}
	if (entry < im->lo || entry >= im->hi)
		return vmkit__err(-ENOEXEC, "Multiboot: ELF entry 0x%llx is outside the loaded image",
				  BOOT_ULL(e.entry));
	im->entry = (uint32_t)entry;
	return 0;
}

/* Modules one after another, page aligned, above the kernel, below 3 GiB. */
static int place_modules(const struct boot_input *in, struct mb_image *im, uint8_t *list,
			 uint64_t *strings, uint64_t strings_end)
{
	uint64_t at = boot_align_up(im->hi, BOOT_PAGE);

	im->mod_lo = at;
	for (size_t i = 0; i < in->n_initrds; i++) {
		const struct boot_blob *m = &in->initrds[i];
		const char *name = m->name ? m->name : "";
		size_t nlen = strnlen(name, X86_CMDLINE_MAX) + 1;
		uint64_t len = m->len;

		if (m->len && !m->data)
			return vmkit__err(-EINVAL, "Multiboot: module %zu has no data", i);
		if (len > X86_MMIO_HOLE || at > X86_MMIO_HOLE - len ||
		    (len && !boot_in_ram(in, at, len)))
			return vmkit__err(-ENOMEM, "Multiboot: module %zu (%s, 0x%llx bytes) does not fit in guest RAM below 3 GiB",
					  i, name, BOOT_ULL(len));
		if (nlen > strings_end - *strings)
			return vmkit__err(-E2BIG, "Multiboot: command line and module names exceed %u bytes",
					  X86_CMDLINE_MAX);
		if (boot_write(in, at, m->data, (size_t)len, "Multiboot module") < 0 ||
		    boot_write(in, *strings, name, nlen - 1, "module name") < 0 ||
		    boot_write(in, *strings + nlen - 1, "", 1, "module name") < 0)
			return -EFAULT;
		boot_put32(list + MB_MOD_ENTRY * i, (uint32_t)at);
		boot_put32(list + MB_MOD_ENTRY * i + 4, (uint32_t)(at + len));
		boot_put32(list + MB_MOD_ENTRY * i + 8, (uint32_t)*strings);
		*strings += nlen;
		im->mod_hi = at + len;
		at = boot_align_up(at + len, BOOT_PAGE);
	}
	return 0;
}

/* KiB of RAM from 0 (at most 640) and of contiguous RAM from 1 MiB. */
static void mem_sizes(const struct boot_input *in, uint32_t *lower, uint32_t *upper)
{
	uint64_t end = 0;

	while (end < 640 * 1024 && boot_in_ram(in, end, 1024))
		end += 1024;
	*lower = (uint32_t)(end / 1024);
	end = X86_HIGH_RAM;
	for (size_t i = 0; i <= in->n_e820; i++) {
		bool grew = false;
		for (size_t j = 0; j < in->n_e820; j++) {
			const struct x86_e820 *e = &in->e820[j];
			if (e->type == E820_RAM && e->addr <= end && e->addr + e->size > end) {
				end = e->addr + e->size;
				grew = true;
			}
		}
		if (!grew)
			break;
	}
	end = (end - X86_HIGH_RAM) / 1024;
	*upper = end > UINT32_MAX ? UINT32_MAX : (uint32_t)end;
}

static int write_info(const struct boot_input *in, struct mb_image *im, size_t cmd_len)
{
	uint8_t buf[MB_AREA_END - X86_MB_INFO_ADDR];
	uint8_t *mmap = buf + (MB_MMAP_ADDR - X86_MB_INFO_ADDR);
	uint64_t strings = X86_CMDLINE_ADDR + cmd_len + 1;
	uint32_t flags = MBI_MEMORY | MBI_CMDLINE | MBI_MMAP | MBI_LOADER_NAME;
	uint32_t lower, upper;
	int ret;

	memset(buf, 0, sizeof(buf));
	mem_sizes(in, &lower, &upper);
	boot_put32(buf + MBI_MEM_LOWER, lower);
	boot_put32(buf + MBI_MEM_UPPER, upper);
	boot_put32(buf + MBI_CMDLINE_P, (uint32_t)X86_CMDLINE_ADDR);
	memcpy(buf + (MB_NAME_ADDR - X86_MB_INFO_ADDR), MB_LOADER_NAME, sizeof(MB_LOADER_NAME));
	boot_put32(buf + MBI_LOADER_P, (uint32_t)MB_NAME_ADDR);
	for (size_t i = 0; i < in->n_e820; i++) {
		uint8_t *e = mmap + MB_MMAP_ENTRY * i;
		boot_put32(e, 20);
		boot_put64(e + 4, in->e820[i].addr);
		boot_put64(e + 12, in->e820[i].size);
		/* 1 is RAM; the spec reads every other type as reserved. */
		boot_put32(e + 20, in->e820[i].type);
	}
	boot_put32(buf + MBI_MMAP_LENGTH, (uint32_t)(in->n_e820 * MB_MMAP_ENTRY));
	boot_put32(buf + MBI_MMAP_ADDR, (uint32_t)MB_MMAP_ADDR);
	if (in->n_initrds) {
		flags |= MBI_MODS;
		boot_put32(buf + MBI_MODS_COUNT, (uint32_t)in->n_initrds);
		boot_put32(buf + MBI_MODS_ADDR, (uint32_t)MB_MODS_ADDR);
		ret = place_modules(in, im, buf + (MB_MODS_ADDR - X86_MB_INFO_ADDR), &strings,
				    X86_CMDLINE_ADDR + X86_CMDLINE_MAX);
		if (ret < 0)
			return ret;
	}
	boot_put32(buf + MBI_FLAGS, flags);
	return boot_write(in, X86_MB_INFO_ADDR, buf, sizeof(buf), "Multiboot info");
}

int boot_multiboot(const struct boot_input *in, struct boot_entry *out)
{
	struct mb_image im = { 0 };
	uint32_t flags;
	size_t cmd_len;
	long hoff;
	int ret;

	ret = boot_check_input(in, "Multiboot");
	if (ret < 0)
		return ret;
	hoff = boot_mb_find(in->kernel, in->kernel_len);
	if (hoff < 0)
		return vmkit__err(-ENOEXEC, "Multiboot: no valid header in the first 8 KiB");
	flags = boot_le32(in->kernel + hoff + 4);
	/* Bits 0-15 are requirements: refuse what we cannot honour. */
	if (flags & 0xffff & ~MBH_SUPPORTED)
		return vmkit__err(-ENOTSUP, "Multiboot: kernel requires unsupported features (flags 0x%x%s)",
				  flags & 0xffff & ~MBH_SUPPORTED,
				  flags & MBH_VIDEO_MODE ? ", video mode" : "");
	if (in->n_e820 > MB_MMAP_MAX)
		return vmkit__err(-E2BIG, "Multiboot: %zu e820 entries, at most %d fit", in->n_e820,
				  MB_MMAP_MAX);
	if (in->n_initrds > MB_MODS_MAX)
		return vmkit__err(-E2BIG, "Multiboot: %zu modules, at most %llu", in->n_initrds,
				  BOOT_ULL(MB_MODS_MAX));
	ret = boot_write_cmdline(in, X86_CMDLINE_MAX - 1, "Multiboot", &cmd_len);
	if (ret < 0)
		return ret;
	if (flags & MBH_AOUT_KLUDGE)
		ret = load_kludge(in, (size_t)hoff, &im);
	else
		ret = load_elf(in, &im);
	if (ret < 0)
		return ret;
	ret = write_info(in, &im, cmd_len);
	if (ret < 0)
		return ret;
	ret = boot_setup_gdt(in->mem);
	if (ret < 0)
		return ret;

	memset(&out->regs, 0, sizeof(out->regs));
	out->regs.rip = im.entry;
	out->regs.rax = BOOT_MB_BOOTLOADER;
	out->regs.rbx = X86_MB_INFO_ADDR;
	out->regs.rflags = 0x2;
	boot_set_mode(&out->sregs, VMKIT_CPU_PROT32);
	out->kernel_start = im.lo;
	out->kernel_end = im.hi;
	out->initrd_start = im.mod_lo;
	out->initrd_end = im.mod_hi;
	return 0;
}
