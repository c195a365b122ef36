/* SPDX-License-Identifier: MIT */
/* Firmware (SeaBIOS and the like) at the top of 4 GiB: the legacy BIOS
 * window copy below 1 MiB and the x86 reset state. */
#include "boot/loader.h"

#define FW_UNIT        0x10000ull    /* 64 KiB */
#define FW_MAX         (16ull << 20)
#define FW_ISA_MAX     0x20000ull    /* the part visible below 1 MiB */
#define RESET_CR0      0x60000010ull /* CD, NW, ET */
#define RESET_RDX      0x600         /* family 6 signature, as KVM resets it */

int boot_firmware(const struct boot_input *in, const uint8_t *image, size_t len,
		  struct boot_entry *out)
{
	uint64_t isa;
	vmkit_sregs *s = &out->sregs;

	if (!in || !in->mem || !image)
		return vmkit__err(-EINVAL, "firmware: no guest memory or image given");
	if (len == 0 || len % FW_UNIT || len > FW_MAX)
		return vmkit__err(-EINVAL, "firmware: image is %zu bytes; it must be a non-zero multiple of 64 KiB up to 16 MiB",
				  len);
	/* The last 128 KiB (or the whole image) end at 1 MiB, where legacy
	 * code expects the BIOS; skipped when no memory backs that window. */
	isa = len < FW_ISA_MAX ? len : FW_ISA_MAX;
	(void)vmkit__gmem_write(in->mem, X86_HIGH_RAM - isa, image + len - isa, (size_t)isa);

	memset(&out->regs, 0, sizeof(out->regs));
	out->regs.rip = 0xfff0;
	out->regs.rdx = RESET_RDX;
	out->regs.rflags = 0x2;
	boot_set_mode(s, VMKIT_CPU_REAL);
	s->cr0 = RESET_CR0;
	s->cs.selector = 0xf000;
	s->cs.base = 0xffff0000;
	s->gdt.base = 0;
	s->gdt.limit = 0xffff;
	s->idt.base = 0;
	s->idt.limit = 0xffff;
	out->kernel_start = X86_4G - len;
	out->kernel_end = X86_4G;
	out->initrd_start = out->initrd_end = 0;
	return 0;
}
