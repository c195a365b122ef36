/* SPDX-License-Identifier: MIT */
/* Guest loaders. Each writes its image and boot structures into guest
 * memory through the bounds-checked gmem helpers and describes the boot
 * vCPU's entry state; none calls KVM, so unit tests run them on a fake
 * guest memory. Every value read from an image file is untrusted. */
#ifndef VMKIT_BOOT_H
#define VMKIT_BOOT_H

#include "internal.h"
#include "arch/x86/x86.h"

struct boot_blob {
	const uint8_t *data;
	size_t len;
	const char *name;   /* file name: Multiboot module string is "name" */
	/* When from_fd, @data is a read-only mapping of file @fd and bulk
	 * copies into guest memory pread() the file instead of reading the
	 * mapping, so the VMM never holds the file's pages. */
	bool from_fd;
	int fd;
};

struct boot_input {
	const struct vmkit_gmem *mem;
	uint64_t ram_size;                 /* guest RAM bytes */
	const struct x86_e820 *e820;       /* the machine's memory map */
	size_t n_e820;
	const char *cmdline;               /* never NULL ("" for none) */
	const uint8_t *kernel;             /* whole kernel file */
	size_t kernel_len;
	bool kernel_from_fd;               /* as boot_blob.from_fd */
	int kernel_fd;
	const struct boot_blob *initrds;   /* Linux: concatenated; Multiboot: modules */
	size_t n_initrds;
	uint64_t rsdp_addr;                /* 0 when ACPI is off */
	/* VMKIT_KERNEL_FLAT */
	uint64_t flat_load, flat_entry;
	vmkit_cpu_mode flat_mode;
};

/* The boot vCPU's starting state. The caller fills @sregs with the vCPU's
 * current special registers first (KVM_GET_SREGS); loaders change only
 * what the boot protocol defines. */
struct boot_entry {
	vmkit_regs regs;
	vmkit_sregs sregs;
	uint64_t kernel_start, kernel_end; /* guest range the image occupies */
	uint64_t initrd_start, initrd_end; /* 0 if none */
};

/* What format a kernel file is: VMKIT_KERNEL_BZIMAGE, _PVH (ELF with the
 * Xen PVH note), _MULTIBOOT (Multiboot v1 header in the first 8 KiB), or
 * -ENOEXEC with a one-line error naming the file's first bytes. Checked
 * in that order: an ELF with both a PVH note and a Multiboot header is
 * PVH (name VMKIT_KERNEL_MULTIBOOT to boot it the other way). A bzImage
 * needs boot protocol 2.12+ with XLF_KERNEL_64 (the 64-bit entry). */
int boot_detect(const uint8_t *img, size_t len);

int boot_bzimage(const struct boot_input *in, struct boot_entry *out);
int boot_pvh(const struct boot_input *in, struct boot_entry *out);
int boot_multiboot(const struct boot_input *in, struct boot_entry *out);
/* Flat: REAL starts at CS:IP = (load >> 4):(entry - (load & ~15)) with
 * every segment register = CS; PROT32 and LONG64 as above. RSP is 0 in
 * every mode: the program sets up its own stack. */
int boot_flat(const struct boot_input *in, struct boot_entry *out);

/* A bzImage for firmware to load, through QEMU's fw_cfg kernel items
 * (FW_CFG_SETUP_*, _KERNEL_*, _INITRD_*, _CMDLINE_ADDR) that its
 * linuxboot option ROM and qboot read: the firmware copies the real-mode
 * setup to @setup_addr, the protected-mode kernel to @kernel_addr, the
 * command line to @cmdline_addr and the initrds (ramdisk_size bytes in
 * all) to @initrd_addr, then enters the setup code in real mode (boot
 * protocol 2.02+, loaded high). @setup is a patched copy of the file's
 * setup (the header's loader fields filled in as a boot loader must),
 * malloc'd, the caller's to free; @kernel points into in->kernel. Nothing
 * is written to guest memory. Any bzImage with "HdrS" 2.02+ qualifies:
 * the 64-bit entry that boot_bzimage() needs is not used here. */
struct boot_fwcfg_kernel {
	uint8_t *setup;
	uint32_t setup_addr, setup_size;
	const uint8_t *kernel;
	uint32_t kernel_addr, kernel_size;
	uint32_t cmdline_addr;
	uint32_t initrd_addr; /* 0 without initrds */
};
int boot_bzimage_fwcfg(const struct boot_input *in, struct boot_fwcfg_kernel *out);

/* Firmware: the caller maps @len bytes (a multiple of 64 KiB, <= 16 MiB)
 * ending at 4 GiB read-only and copies the image there; this copies the
 * image's last 128 KiB to 0xe0000 (the legacy BIOS window) and sets the
 * reset state (CS 0xf000 base 0xffff0000, IP 0xfff0). */
int boot_firmware(const struct boot_input *in, const uint8_t *image, size_t len,
		  struct boot_entry *out);

/* Shared helpers for the loaders: flat 64-bit / 32-bit GDT at
 * X86_GDT_ADDR, identity page tables for the first 4 GiB at X86_PML4_ADDR,
 * and the segment/CR setup for each mode.
 *
 * The one boot GDT serves every mode. 0x10/0x18 are Linux's __BOOT_CS and
 * __BOOT_DS (the 64-bit boot protocol names them), so the 32-bit code
 * segment that PVH, Multiboot and flat PROT32 entries use (their specs
 * leave the selector open) is 0x08. 0x20/0x28 are DPL3 data and 64-bit
 * code in the SYSRET order (STAR[63:48] = 0x10) for CPL3 test guests.
 * The identity page tables map 0..4 GiB with 2 MiB pages, all entries
 * present, writable and user-accessible (U/S set). */
#define BOOT_SEL_CODE32   0x08
#define BOOT_SEL_CODE64   0x10
#define BOOT_SEL_DATA     0x18
#define BOOT_SEL_UDATA    0x23 /* 0x20 | RPL 3 */
#define BOOT_SEL_UCODE64  0x2b /* 0x28 | RPL 3 */
#define BOOT_GDT_ENTRIES  6
#define BOOT_PAGING_END   (X86_PD_ADDR + 4 * 0x1000ull) /* page tables end */

/* Multiboot v1 (boot_multiboot) and PVH (boot_pvh) constants. */
#define BOOT_MB_MAGIC       0x1BADB002u /* in the image header */
#define BOOT_MB_BOOTLOADER  0x2BADB002u /* in EAX at entry */
#define BOOT_MB_SEARCH      8192u       /* header within the first 8 KiB */
#define BOOT_PVH_MAGIC      0x336ec578u /* hvm_start_info.magic */
#define BOOT_XEN_NOTE_PHYS32_ENTRY 18
int boot_setup_gdt(const struct vmkit_gmem *mem);
int boot_setup_identity_paging(const struct vmkit_gmem *mem);
void boot_set_mode(vmkit_sregs *s, vmkit_cpu_mode mode);

#endif
