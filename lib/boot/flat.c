/* SPDX-License-Identifier: MIT */
/* Raw binaries copied to a given address and started in a given mode:
 * real mode (CS:IP from the load address), 32-bit flat protected mode, or
 * 64-bit long mode on the identity-mapped first 4 GiB. Test guests and
 * small freestanding programs boot this way. RSP is left 0: a flat
 * program sets up its own stack. */
#include "boot/loader.h"

#define REAL_LIMIT 0x100000ull

/* The boot structures a mode needs must not be overwritten by the image. */
static int check_clash(const struct boot_input *in, vmkit_cpu_mode mode)
{
	uint64_t load = in->flat_load, len = in->kernel_len;

	if (mode == VMKIT_CPU_REAL)
		return 0;
	if (boot_overlaps(load, len, X86_GDT_ADDR, BOOT_GDT_ENTRIES * 8))
		return vmkit__err(-EINVAL, "flat: image at 0x%llx..0x%llx overlaps the boot GDT at 0x%llx",
				  BOOT_ULL(load), BOOT_ULL(load + len), BOOT_ULL(X86_GDT_ADDR));
	if (mode == VMKIT_CPU_LONG64 &&
	    boot_overlaps(load, len, X86_PML4_ADDR, BOOT_PAGING_END - X86_PML4_ADDR))
		return vmkit__err(-EINVAL, "flat: image at 0x%llx..0x%llx overlaps the page tables at 0x%llx..0x%llx",
				  BOOT_ULL(load), BOOT_ULL(load + len), BOOT_ULL(X86_PML4_ADDR),
				  BOOT_ULL(BOOT_PAGING_END));
	return 0;
}

static int check_image(const struct boot_input *in, vmkit_cpu_mode mode)
{
	uint64_t load = in->flat_load, len = in->kernel_len, entry = in->flat_entry;
	uint64_t top = mode == VMKIT_CPU_REAL ? REAL_LIMIT : X86_4G;

	if (mode != VMKIT_CPU_REAL && mode != VMKIT_CPU_PROT32 && mode != VMKIT_CPU_LONG64)
		return vmkit__err(-EINVAL, "flat: unknown CPU mode %d", (int)mode);
	if (len == 0)
		return vmkit__err(-EINVAL, "flat: the image is empty");
	if (load >= top || len > top - load)
		return vmkit__err(-EINVAL, "flat: image at 0x%llx (0x%llx bytes) must lie below 0x%llx in this mode",
				  BOOT_ULL(load), BOOT_ULL(len), BOOT_ULL(top));
	if (entry < load || entry - load >= len)
		return vmkit__err(-EINVAL, "flat: entry 0x%llx is outside the image 0x%llx..0x%llx",
				  BOOT_ULL(entry), BOOT_ULL(load), BOOT_ULL(load + len));
	/* Real mode: CS = load >> 4, so IP = entry - CS * 16 must fit 16 bits. */
	if (mode == VMKIT_CPU_REAL && entry - (load & ~0xfull) > 0xffff)
		return vmkit__err(-EINVAL, "flat: real-mode entry 0x%llx is more than 64 KiB past the load segment 0x%llx",
				  BOOT_ULL(entry), BOOT_ULL(load >> 4));
	if (!boot_in_ram(in, load, len))
		return vmkit__err(-ENOMEM, "flat: image at 0x%llx..0x%llx is not in guest RAM",
				  BOOT_ULL(load), BOOT_ULL(load + len));
	return check_clash(in, mode);
}

int boot_flat(const struct boot_input *in, struct boot_entry *out)
{
	vmkit_cpu_mode mode;
	int ret;

	ret = boot_check_input(in, "flat");
	if (ret < 0)
		return ret;
	mode = in->flat_mode;
	ret = check_image(in, mode);
	if (ret < 0)
		return ret;
	ret = boot_write(in, in->flat_load, in->kernel, in->kernel_len, "flat image");
	if (ret < 0)
		return ret;
	if (mode != VMKIT_CPU_REAL && (ret = boot_setup_gdt(in->mem)) < 0)
		return ret;
	if (mode == VMKIT_CPU_LONG64 && (ret = boot_setup_identity_paging(in->mem)) < 0)
		return ret;

	memset(&out->regs, 0, sizeof(out->regs));
	out->regs.rflags = 0x2;
	out->regs.rip = in->flat_entry;
	boot_set_mode(&out->sregs, mode);
	if (mode == VMKIT_CPU_REAL) {
		uint16_t seg = (uint16_t)(in->flat_load >> 4);
		vmkit_segment *all[] = { &out->sregs.cs, &out->sregs.ds, &out->sregs.es,
					 &out->sregs.fs, &out->sregs.gs, &out->sregs.ss };
		/* Like a .com program: every segment register at the load segment. */
		for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
			all[i]->selector = seg;
			all[i]->base = (uint64_t)seg << 4;
		}
		out->regs.rip = in->flat_entry - ((uint64_t)seg << 4);
	}
	out->kernel_start = in->flat_load;
	out->kernel_end = in->flat_load + in->kernel_len;
	out->initrd_start = out->initrd_end = 0;
	return 0;
}
