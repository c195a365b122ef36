/* SPDX-License-Identifier: MIT */
/* Which loader a kernel file needs. Order: bzImage (the "HdrS" setup
 * header), then an ELF with the PVH note, then a Multiboot v1 header.
 * An ELF that has both a PVH note and a Multiboot header (Xen itself, for
 * one) boots through PVH: it is the richer ABI (ACPI RSDP, 64-bit-capable
 * memory map); a caller that wants Multiboot names the format. */
#include "boot/loader.h"

#define BZ_BOOTFLAG_OFF 0x1fe
#define BZ_MAGIC_OFF   0x202
#define BZ_VERSION_OFF 0x206
#define BZ_XLF_OFF     0x236

static int detect_bzimage(const uint8_t *img, size_t len)
{
	uint16_t version;

	if (len < BZ_XLF_OFF + 2)
		return vmkit__err(-ENOEXEC, "kernel: bzImage header is truncated (%zu bytes)", len);
	version = boot_le16(img + BZ_VERSION_OFF);
	if (version < 0x020c || !(boot_le16(img + BZ_XLF_OFF) & 1))
		return vmkit__err(-ENOEXEC, "kernel: bzImage boot protocol %u.%02u has no 64-bit entry (need 2.12+ with XLF_KERNEL_64)",
				  version >> 8, version & 0xff);
	return VMKIT_KERNEL_BZIMAGE;
}

int boot_detect(const uint8_t *img, size_t len)
{
	struct boot_elf e;
	uint32_t entry;
	bool elf = false;

	if (!img)
		len = 0;
	if (len >= BZ_MAGIC_OFF + 4 && memcmp(img + BZ_MAGIC_OFF, "HdrS", 4) == 0 &&
	    boot_le16(img + BZ_BOOTFLAG_OFF) == 0xaa55)
		return detect_bzimage(img, len);
	if (len >= 4 && memcmp(img, "\177ELF", 4) == 0) {
		elf = boot_elf_parse(img, len, &e) == 0;
		if (elf && boot_elf_pvh_entry(img, len, &e, &entry) == 0)
			return VMKIT_KERNEL_PVH;
	}
	if (boot_mb_find(img, len) >= 0)
		return VMKIT_KERNEL_MULTIBOOT;
	if (elf)
		return vmkit__err(-ENOEXEC, "kernel: ELF file has neither a PVH entry note nor a Multiboot header");
	if (len == 0)
		return vmkit__err(-ENOEXEC, "kernel: the file is empty");
	return vmkit__err(-ENOEXEC, "kernel: not a bzImage, ELF (PVH) or Multiboot image (starts with %02x %02x %02x %02x)",
			  img[0], len > 1 ? img[1] : 0, len > 2 ? img[2] : 0, len > 3 ? img[3] : 0);
}
