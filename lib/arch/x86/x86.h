/* SPDX-License-Identifier: MIT */
/* x86 platform pieces: the guest-physical layout, CPUID shaping, MSRs and
 * ACPI tables. Pure functions of their inputs (no KVM calls), so the unit
 * tests check them byte by byte. */
#ifndef VMKIT_ARCH_X86_H
#define VMKIT_ARCH_X86_H

#include "internal.h"

/* ---- guest-physical layout of a vmkit machine ------------------------------
 * Everything below 1 MiB that the loaders use has a fixed place here. */
#define X86_GDT_ADDR        0x0500ull   /* boot GDT (loaders) */
#define X86_PVH_INFO_ADDR   0x6000ull   /* hvm_start_info + memory map (PVH) */
#define X86_ZERO_PAGE_ADDR  0x7000ull   /* Linux boot_params */
#define X86_MB_INFO_ADDR    0x8000ull   /* Multiboot info + mmap + module list */
#define X86_PML4_ADDR       0x9000ull   /* identity page tables: PML4, PDPT, 4 PDs */
#define X86_PDPT_ADDR       0xa000ull
#define X86_PD_ADDR         0xb000ull   /* 0xb000..0xefff: 4 GiB in 2 MiB pages */
#define X86_CMDLINE_ADDR    0x20000ull  /* kernel command line, up to X86_CMDLINE_MAX */
#define X86_CMDLINE_MAX     0x10000u
#define X86_EBDA_START      0x9fc00ull  /* RAM ends here below 640 KiB */
#define X86_ACPI_ADDR       0xe0000ull  /* RSDP then the tables, up to 1 MiB */
#define X86_ACPI_MAX        0x20000u
#define X86_HIGH_RAM        0x100000ull /* 1 MiB */
#define X86_MMIO_HOLE       0xc0000000ull /* RAM below 4 GiB stops at 3 GiB */
#define X86_4G              0x100000000ull
#define X86_IOAPIC_ADDR     0xfec00000ull
#define X86_LAPIC_ADDR      0xfee00000ull

/* Platform I/O ports and interrupts. */
#define X86_COM1_PORT       0x3f8
#define X86_COM1_IRQ        4
#define X86_I8042_DATA      0x60
#define X86_I8042_CMD       0x64
#define X86_I8042_IRQ       1
#define X86_RTC_PORT        0x70
#define X86_RTC_IRQ         8
#define X86_PM_BASE         0x600  /* PM1a event (4 bytes), PM1a control (2 bytes) */
#define X86_PM1A_EVT        (X86_PM_BASE + 0)
#define X86_PM1A_CNT        (X86_PM_BASE + 4)
#define X86_SCI_IRQ         9
#define X86_RESET_PORT      0xcf9  /* ACPI reset register, value 0x06 */
#define X86_RESET_VALUE     0x06
#define X86_PVPANIC_PORT    0x505
#define X86_FWCFG_PORT      0x510  /* selector 0x510, data 0x511, DMA 0x514 */
#define X86_EXIT_PORT       0xf4

/* PCI (lib/pci): the host bridge of bus 0. Config mechanism #1 at
 * 0xcf8/0xcfc; ECAM (MMCONFIG) for bus 0 only; BARs are pre-assigned in
 * the 32-bit window (the virtio-mmio devices sit above it, from
 * 0xd0000000); INTx pin P (0 = INTA) of slot S raises GSI
 * X86_PCI_INTX_GSI_BASE + (S + P) % 4, level-triggered. No IO BARs. */
#define X86_PCI_CONFIG_PORT   0xcf8
#define X86_PCI_ECAM_BASE     0xe0000000ull
#define X86_PCI_ECAM_SIZE     0x100000ull
#define X86_PCI_MMIO32_BASE   0xc0000000ull
#define X86_PCI_MMIO32_SIZE   0x10000000ull
#define X86_PCI_INTX_GSI_BASE 16

/* virtio-mmio: device i has the 4 KiB window X86_VIRTIO_MMIO_BASE +
 * i * 0x1000 and GSI X86_VIRTIO_MMIO_GSI_BASE + i % 4 (level-triggered,
 * active high, shared), announced in the DSDT as LNRO0005. */
#define X86_VIRTIO_MMIO_BASE     0xd0000000ull
#define X86_VIRTIO_MMIO_MAX      64u
#define X86_VIRTIO_MMIO_GSI_BASE 20

/* ---- e820 ----------------------------------------------------------------- */
#define E820_RAM      1
#define E820_RESERVED 2
#define E820_ACPI     3

struct x86_e820 {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

#define X86_E820_MAX 16

/* The memory map of a machine with @ram bytes: RAM [0, 0x9fc00), reserved
 * EBDA [0x9fc00, 0xa0000) and BIOS area [0xe0000, 0x100000) (the ACPI
 * tables live there), RAM from 1 MiB up to at most 3 GiB, the rest of RAM
 * from 4 GiB. The RAM entries add up to exactly @ram: the 0x9fc00 bytes
 * below 640 KiB count toward it, so RAM from 1 MiB is @ram - 0x9fc00 (see
 * x86_ram_layout for what the machine maps). Entries are sorted by address.
 * Writes at most @max entries (5 at most are needed) and returns how many
 * it wrote. */
size_t x86_e820_build(uint64_t ram, struct x86_e820 *out, size_t max);

/* The legacy area [X86_EBDA_START, X86_HIGH_RAM) that the map reports as
 * not RAM. */
#define X86_LOW_HOLE (X86_HIGH_RAM - X86_EBDA_START)

/* The guest-physical memory a machine with @ram bytes must map so that
 * every RAM byte of x86_e820_build(@ram) and the legacy area below 1 MiB
 * (ACPI tables at X86_ACPI_ADDR) are backed: [0, *low) and, when *high is
 * not 0, [X86_4G, X86_4G + *high). Both sizes are multiples of 4 KiB.
 * Because the map's RAM adds up to exactly @ram, this is @ram plus the
 * legacy hole rounded up to a page (*low + *high == @ram + 0x61000 for a
 * whole number of MiB of at least 1 MiB). */
void x86_ram_layout(uint64_t ram, uint64_t *low, uint64_t *high);

/* ---- CPUID (cpuid.c) -------------------------------------------------------- */

#define X86_MAX_MASKED 32

struct x86_cpu_model {
	char vendor[13];                   /* "" keeps the host's */
	uint32_t n_masked;
	char masked[X86_MAX_MASKED][24];   /* /proc/cpuinfo feature names */
};

/* Look up a feature by its /proc/cpuinfo name (lower case, as Linux
 * prints it; "sse3" is accepted for "pni"). Covers leaf 1 ECX/EDX, 6 EAX,
 * 7.0 EBX/ECX/EDX, 7.1 EAX, 0xd.1 EAX, 0x80000001 ECX/EDX, 0x80000008 EBX
 * and 0x8000000a EDX. Returns 0 and the leaf, subleaf, register (0 eax,
 * 1 ebx, 2 ecx, 3 edx) and bit (any out pointer may be NULL), or -ENOENT. */
int x86_cpuid_feature(const char *name, uint32_t *leaf, uint32_t *subleaf, int *reg, int *bit);

/* The CPUID table vCPU @index of @ncpus sees: KVM's supported table with
 * the APIC id in leaf 1 EBX[31:24], leaf 0xb/0x1f topology (one package,
 * one core per vCPU, no SMT; 0xb whenever the max basic leaf reaches it,
 * 0x1f only if the host table has it), leaf 4, 0x80000008 ECX, 0x8000001d
 * and 0x8000001e adjusted wherever present, the hypervisor bit, and
 * @model's (may be NULL) vendor override (leaf 0; 0x80000000 gets the
 * vendor on AMD/Hygon and zeros otherwise) and masked features. Masking
 * clears exactly the named bit: masking "xsave" does not clear "avx" —
 * mask the dependent features too. KVM's 0x4000000x leaves pass through.
 * Writes at most @max entries to @out; returns the count, or -EINVAL (bad
 * index/count, vendor not 12 characters), -ENOENT (unknown feature name),
 * -ENOSPC (@max too small). */
int x86_cpuid_build(const vmkit_cpuid_entry *supported, size_t n, uint32_t index,
		    uint32_t ncpus, const struct x86_cpu_model *model, vmkit_cpuid_entry *out,
		    size_t max);

/* ---- MSRs (msr.c) --------------------------------------------------------------- */

/* The MSR values a vCPU starts with: MISC_ENABLE fast strings, the
 * power-on PAT, MTRRdefType 0x806 (enabled, write-back, no fixed ranges),
 * SYSENTER_* / STAR / LSTAR / CSTAR / SFMASK / KERNEL_GS_BASE 0; not the
 * TSC. Writes at most @max and returns the count written to @out. */
size_t x86_boot_msrs(vmkit_msr *out, size_t max);

/* ---- ACPI (acpi.c, aml.c) -------------------------------------------------------- */

/* A growable byte buffer for AML and tables (writers in arch/x86/aml.h).
 * @oom: a write failed, or malformed AML was written; the contents are
 * unusable and further writes are ignored. */
struct x86_buf {
	uint8_t *data;
	size_t len, cap;
	bool oom;
};
void x86_buf_free(struct x86_buf *b);

struct x86_acpi_config {
	uint32_t ncpus;
	bool uart;            /* COM1 in DSDT */
	bool rtc;             /* PNP0B00 */
	bool i8042;           /* PNP0303 */
	bool pvpanic;         /* QEMU0001 at X86_PVPANIC_PORT */
	bool fw_cfg;          /* QEMU0002 at X86_FWCFG_PORT */
	/* Later devices (virtio-mmio) append AML into \_SB through this,
	 * with the writer in arch/x86/aml.h. */
	void (*dsdt_extra)(void *ctx, struct x86_buf *sb_scope);
	void *dsdt_extra_ctx;
	/* A PCI host bridge: an MCFG table for its ECAM (segment 0, bus 0). */
	bool pci;
	uint64_t pci_ecam_base;
};

/* The built tables. @image is meant to be copied to guest @base: RSDP at
 * offset 0, then from offset 64 XSDT, FADT, FACS, DSDT, MADT (and MCFG
 * when @pci). @tables/
 * @rsdp/@loader are the same tables in QEMU's fw_cfg form ("etc/acpi/
 * tables" = image bytes from 64 on with pointers as offsets into it and
 * checksums 0, "etc/acpi/rsdp", "etc/table-loader" with ALLOCATE/
 * ADD_POINTER/ADD_CHECKSUM commands) for firmware that installs them
 * itself. The DSDT also has one ACPI0007 processor device per vCPU
 * (_UID = MADT processor UID = index); the MADT's IOAPIC has id 0. The
 * SCI (X86_SCI_IRQ) is level-triggered, active high. The FADT has no
 * SMI_CMD (always in ACPI mode: the PM device should read SCI_EN as 1),
 * keeps the fixed power button, and points CENTURY at CMOS 0x32 when
 * @rtc. */
struct x86_acpi_tables {
	struct x86_buf image;
	uint64_t base;
	uint64_t rsdp_addr;
	struct x86_buf fw_tables, fw_rsdp, fw_loader;
};

/* @base must be 64-byte aligned and the image must end below 4 GiB and
 * be at most X86_ACPI_MAX bytes. Returns 0, or -EINVAL (bad config: 1..1024
 * CPUs; misaligned base), -E2BIG, -ENOMEM (also when dsdt_extra wrote
 * malformed AML, see aml.h). On error @out is empty. Free with
 * x86_acpi_free (accepts NULL and freed tables). */
int x86_acpi_build(const struct x86_acpi_config *cfg, uint64_t base, struct x86_acpi_tables *out);
void x86_acpi_free(struct x86_acpi_tables *t);

#endif
