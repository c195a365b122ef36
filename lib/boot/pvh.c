/* SPDX-License-Identifier: MIT */
/* ELF kernels with the Xen PVH entry note (xen docs/misc/pvh.pandoc,
 * public/arch-x86/hvm/start_info.h): PT_LOAD segments at their physical
 * addresses, hvm_start_info version 1 at X86_PVH_INFO_ADDR, entry in
 * 32-bit protected mode without paging and EBX = start_info. */
#include "boot/loader.h"

/* hvm_start_info (version 1) */
#define SI_MAGIC          0
#define SI_VERSION        4
#define SI_FLAGS          8
#define SI_NR_MODULES     12
#define SI_MODLIST_PADDR  16
#define SI_CMDLINE_PADDR  24
#define SI_RSDP_PADDR     32
#define SI_MEMMAP_PADDR   40
#define SI_MEMMAP_ENTRIES 48
#define SI_SIZE           56
/* hvm_modlist_entry: paddr, size, cmdline_paddr, reserved */
#define MOD_SIZE          32
/* hvm_memmap_table_entry: addr, size, type, reserved */
#define MEMMAP_SIZE       24

#define PVH_MODLIST_ADDR  (X86_PVH_INFO_ADDR + 0x40)
#define PVH_MEMMAP_ADDR   (PVH_MODLIST_ADDR + MOD_SIZE)
#define PVH_AREA_END      X86_ZERO_PAGE_ADDR
#define PVH_MEMMAP_MAX    ((PVH_AREA_END - PVH_MEMMAP_ADDR) / MEMMAP_SIZE)

static int write_start_info(const struct boot_input *in, uint64_t rd_addr, uint64_t rd_size)
{
	uint8_t buf[PVH_AREA_END - X86_PVH_INFO_ADDR];
	uint8_t *si = buf, *mod = buf + (PVH_MODLIST_ADDR - X86_PVH_INFO_ADDR);
	uint8_t *mm = buf + (PVH_MEMMAP_ADDR - X86_PVH_INFO_ADDR);

	memset(buf, 0, sizeof(buf));
	boot_put32(si + SI_MAGIC, BOOT_PVH_MAGIC);
	boot_put32(si + SI_VERSION, 1);
	boot_put64(si + SI_CMDLINE_PADDR, X86_CMDLINE_ADDR);
	boot_put64(si + SI_RSDP_PADDR, in->rsdp_addr);
	if (rd_size) {
		boot_put32(si + SI_NR_MODULES, 1);
		boot_put64(si + SI_MODLIST_PADDR, PVH_MODLIST_ADDR);
		boot_put64(mod, rd_addr);
		boot_put64(mod + 8, rd_size);
	}
	boot_put64(si + SI_MEMMAP_PADDR, PVH_MEMMAP_ADDR);
	boot_put32(si + SI_MEMMAP_ENTRIES, (uint32_t)in->n_e820);
	for (size_t i = 0; i < in->n_e820; i++) {
		uint8_t *e = mm + MEMMAP_SIZE * i;
		boot_put64(e, in->e820[i].addr);
		boot_put64(e + 8, in->e820[i].size);
		boot_put32(e + 16, in->e820[i].type);
	}
	return boot_write(in, X86_PVH_INFO_ADDR, buf, sizeof(buf), "PVH start_info");
}

int boot_pvh(const struct boot_input *in, struct boot_entry *out)
{
	uint64_t lo = 0, hi = 0, rd_size = 0, rd_addr = 0;
	struct boot_elf e;
	uint32_t entry = 0;
	size_t cmd_len;
	int ret;

	ret = boot_check_input(in, "PVH");
	if (ret < 0)
		return ret;
	if (in->n_e820 > PVH_MEMMAP_MAX)
		return vmkit__err(-E2BIG, "PVH: %zu e820 entries, at most %llu fit", in->n_e820,
				  BOOT_ULL(PVH_MEMMAP_MAX));
	ret = boot_elf_parse(in->kernel, in->kernel_len, &e);
	if (ret < 0)
		return ret;
	ret = boot_elf_pvh_entry(in->kernel, in->kernel_len, &e, &entry);
	if (ret == -ENOENT)
		return vmkit__err(-ENOEXEC, "PVH: ELF has no XEN_ELFNOTE_PHYS32_ENTRY note");
	if (ret < 0)
		return ret;
	ret = boot_elf_load(in, in->kernel, in->kernel_len, &e, UINT64_MAX, "PVH", &lo, &hi);
	if (ret < 0)
		return ret;
	if (entry < lo || entry >= hi)
		return vmkit__err(-ENOEXEC, "PVH: entry 0x%x is outside the loaded image 0x%llx..0x%llx",
				  entry, BOOT_ULL(lo), BOOT_ULL(hi));
	ret = boot_initrd_size(in, &rd_size);
	if (ret < 0)
		return ret;
	if (rd_size &&
	    boot_place_high(in, rd_size, BOOT_PAGE, X86_HIGH_RAM, X86_MMIO_HOLE, lo, hi - lo, &rd_addr) < 0)
		return vmkit__err(-ENOMEM, "PVH: initrd of 0x%llx bytes does not fit in guest RAM below 3 GiB next to the kernel",
				  BOOT_ULL(rd_size));
	if (rd_size && (ret = boot_write_initrds(in, rd_addr)) < 0)
		return ret;
	ret = boot_write_cmdline(in, X86_CMDLINE_MAX - 1, "PVH", &cmd_len);
	if (ret < 0)
		return ret;
	ret = write_start_info(in, rd_addr, rd_size);
	if (ret < 0)
		return ret;
	ret = boot_setup_gdt(in->mem);
	if (ret < 0)
		return ret;

	memset(&out->regs, 0, sizeof(out->regs));
	out->regs.rip = entry;
	out->regs.rbx = X86_PVH_INFO_ADDR;
	out->regs.rflags = 0x2;
	boot_set_mode(&out->sregs, VMKIT_CPU_PROT32);
	out->kernel_start = lo;
	out->kernel_end = hi;
	out->initrd_start = rd_addr;
	out->initrd_end = rd_size ? rd_addr + rd_size : 0;
	return 0;
}
