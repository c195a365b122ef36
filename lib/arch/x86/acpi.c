/* SPDX-License-Identifier: MIT */
/* ACPI tables (ACPI 6.0): RSDP, XSDT, FADT, FACS, DSDT, MADT and, with a
 * PCI host bridge, MCFG, laid out for a fixed guest address and in QEMU's
 * fw_cfg "linker/loader" form.
 *
 * Layout of the tables blob (the image puts it after the RSDP, at +64):
 * XSDT, FADT, FACS (64-byte aligned), DSDT, MADT, [MCFG], each 16-byte
 * aligned.
 * The FADT points to the FACS through X_FIRMWARE_CTRL and to the DSDT
 * through both DSDT and X_DSDT; the RSDP (revision 2) to the XSDT only
 * (RsdtAddress 0: there is no RSDT, as on QEMU's microvm). */
#include <string.h>

#include "arch/x86/aml.h"

#define OEM_ID        "VMKIT "
#define OEM_TABLE_ID  "VMKIT   "
#define CREATOR_ID    "VMKT"
#define HDR_LEN       36
#define RSDP_LEN      36
#define TABLES_OFF    64      /* the tables follow the RSDP in the image */
#define FADT_LEN      276     /* ACPI 6.0 */
#define FACS_LEN      64
#define MCFG_LEN      60      /* header, 8 reserved, one allocation */
#define ECAM_BUS_SIZE 0x100000ull
#define MAX_CPUS      1024

/* FADT field offsets (ACPI 6.0 table 5-34). */
enum {
	FADT_FIRMWARE_CTRL = 36, FADT_DSDT = 40, FADT_PM_PROFILE = 45, FADT_SCI_INT = 46,
	FADT_PM1A_EVT_BLK = 56, FADT_PM1A_CNT_BLK = 64, FADT_PM1_EVT_LEN = 88,
	FADT_PM1_CNT_LEN = 89, FADT_P_LVL2_LAT = 96, FADT_P_LVL3_LAT = 98,
	FADT_CENTURY = 108, FADT_IAPC_BOOT_ARCH = 109, FADT_FLAGS = 112,
	FADT_RESET_REG = 116, FADT_RESET_VALUE = 128, FADT_MINOR_VERSION = 131,
	FADT_X_FIRMWARE_CTRL = 132, FADT_X_DSDT = 140, FADT_X_PM1A_EVT_BLK = 148,
	FADT_X_PM1A_CNT_BLK = 172, FADT_HYPERVISOR_ID = 268,
};

/* FADT flags and IA-PC boot architecture flags. */
#define FADT_F_WBINVD        (1u << 0)
#define FADT_F_PROC_C1       (1u << 2)
#define FADT_F_SLP_BUTTON    (1u << 5)   /* no fixed sleep button */
#define FADT_F_FIX_RTC       (1u << 6)   /* no RTC wake status in PM1 */
#define FADT_F_RESET_REG_SUP (1u << 10)
#define IAPC_8042            (1u << 1)
#define IAPC_VGA_NOT_PRESENT (1u << 2)
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)

#define GAS_SYSTEM_IO 1
#define RTC_CENTURY   0x32    /* CMOS century register */

/* MADT entry types. */
enum { MADT_LAPIC = 0, MADT_IOAPIC = 1, MADT_ISO = 2, MADT_LAPIC_NMI = 4,
       MADT_X2APIC = 9, MADT_X2APIC_NMI = 10 };

/* fw_cfg linker/loader (QEMU hw/acpi/bios-linker-loader.c): 128-byte
 * little-endian commands; file names are 56-byte NUL-padded fields. */
#define LOADER_CMD_LEN      128
#define LOADER_FILESZ       56
#define LOADER_ALLOCATE     1
#define LOADER_ADD_POINTER  2
#define LOADER_ADD_CHECKSUM 3
#define LOADER_ZONE_HIGH    1
#define LOADER_ZONE_FSEG    2
#define FW_RSDP   "etc/acpi/rsdp"
#define FW_TABLES "etc/acpi/tables"

struct layout {
	size_t xsdt, fadt, facs, dsdt, madt, mcfg, end; /* offsets in the tables blob */
	size_t xsdt_len, dsdt_len, madt_len;
	uint32_t xsdt_entries;
	bool mcfg_present;
};

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

static void header(struct x86_buf *b, const char sig[4], uint8_t rev)
{
	x86_buf_put(b, sig, 4);
	x86_buf_u32(b, 0);              /* length, set by finish() */
	x86_buf_u8(b, rev);
	x86_buf_u8(b, 0);               /* checksum */
	x86_buf_put(b, OEM_ID, 6);
	x86_buf_put(b, OEM_TABLE_ID, 8);
	x86_buf_u32(b, 1);              /* OEM revision */
	x86_buf_put(b, CREATOR_ID, 4);
	x86_buf_u32(b, 1);              /* creator revision */
}

/* Set the length of the table at @start (to the end of @b) and, unless
 * @zero, its checksum; with @zero the checksum byte is left 0 for the
 * loader's ADD_CHECKSUM. */
static void finish(struct x86_buf *b, size_t start, bool zero)
{
	uint8_t *t;
	size_t len;

	if (b->oom || start + HDR_LEN > b->len)
		return;
	t = b->data + start;
	len = b->len - start;
	put_le(t + 4, len, 4);
	t[9] = 0;
	if (!zero)
		t[9] = (uint8_t)-sum8(t, len);
}

static void gas(uint8_t *p, uint8_t bits, uint8_t access, uint64_t port)
{
	p[0] = GAS_SYSTEM_IO;
	p[1] = bits;
	p[2] = 0;          /* bit offset */
	p[3] = access;     /* 1 byte, 2 word, 3 dword, 4 qword */
	put_le(p + 4, port, 8);
}

/* ---- DSDT ------------------------------------------------------------------------- */

/* Name(_HID, EISAID(eisa)) or, for ids that are not EISA ids, a string. */
static void hid(struct x86_buf *b, const char *eisa, const char *str)
{
	aml_name(b, "_HID");
	if (eisa)
		aml_eisaid(b, eisa);
	else
		aml_string(b, str);
}

static void dsdt_devices(const struct x86_acpi_config *cfg, struct x86_buf *b)
{
	size_t dev, res;

	for (uint32_t i = 0; i < cfg->ncpus; i++) {
		char name[5];
		static const char hex[] = "0123456789ABCDEF";

		name[0] = 'C';
		name[1] = hex[(i >> 8) & 0xf];
		name[2] = hex[(i >> 4) & 0xf];
		name[3] = hex[i & 0xf];
		name[4] = 0;
		dev = aml_device_begin(b, name);
		aml_name(b, "_HID");
		aml_string(b, "ACPI0007");
		aml_name(b, "_UID");   /* the MADT's ACPI processor UID */
		aml_integer(b, i);
		aml_end(b, dev);
	}
	if (cfg->uart) {
		dev = aml_device_begin(b, "COM1");
		hid(b, "PNP0501", NULL);
		aml_name(b, "_UID");
		aml_integer(b, 1);
		aml_name(b, "_CRS");
		res = aml_restemplate_begin(b);
		aml_res_io(b, X86_COM1_PORT, 8);
		aml_res_irq_noflags(b, X86_COM1_IRQ);
		aml_restemplate_end(b, res);
		aml_end(b, dev);
	}
	if (cfg->rtc) {
		dev = aml_device_begin(b, "RTC");
		hid(b, "PNP0B00", NULL);
		aml_name(b, "_CRS");
		res = aml_restemplate_begin(b);
		aml_res_io(b, X86_RTC_PORT, 2);
		aml_res_irq_noflags(b, X86_RTC_IRQ);
		aml_restemplate_end(b, res);
		aml_end(b, dev);
	}
	if (cfg->i8042) {
		dev = aml_device_begin(b, "KBD");
		hid(b, "PNP0303", NULL);
		aml_name(b, "_CRS");
		res = aml_restemplate_begin(b);
		aml_res_io(b, X86_I8042_DATA, 1);
		aml_res_io(b, X86_I8042_CMD, 1);
		aml_res_irq_noflags(b, X86_I8042_IRQ);
		aml_restemplate_end(b, res);
		aml_end(b, dev);
	}
	if (cfg->pvpanic) {
		dev = aml_device_begin(b, "PEVT");
		hid(b, NULL, "QEMU0001");
		aml_name(b, "_CRS");
		res = aml_restemplate_begin(b);
		aml_res_io(b, X86_PVPANIC_PORT, 1);
		aml_restemplate_end(b, res);
		aml_end(b, dev);
	}
	if (cfg->fw_cfg) {
		dev = aml_device_begin(b, "FWCF");
		hid(b, NULL, "QEMU0002");
		/* Present, enabled, not shown in the UI (as QEMU). */
		aml_name(b, "_STA");
		aml_integer(b, 0x0b);
		aml_name(b, "_CRS");
		res = aml_restemplate_begin(b);
		aml_res_io(b, X86_FWCFG_PORT, 0x0c);   /* selector, data, DMA */
		aml_restemplate_end(b, res);
		aml_end(b, dev);
	}
}

static void build_dsdt(const struct x86_acpi_config *cfg, struct x86_buf *b)
{
	size_t pkg, sb;

	header(b, "DSDT", 2);   /* revision 2: 64-bit integers */
	/* \_S5: SLP_TYPa 5, SLP_TYPb 5 — what the PM device powers off on. */
	aml_name(b, "\\_S5");
	pkg = aml_package_begin(b, 4);
	aml_integer(b, 5);
	aml_integer(b, 5);
	aml_integer(b, 0);
	aml_integer(b, 0);
	aml_end(b, pkg);

	sb = aml_scope_begin(b, "\\_SB");
	dsdt_devices(cfg, b);
	if (cfg->dsdt_extra)
		cfg->dsdt_extra(cfg->dsdt_extra_ctx, b);
	aml_end(b, sb);
	finish(b, 0, false);
}

/* ---- MADT ------------------------------------------------------------------------- */

static void build_madt(const struct x86_acpi_config *cfg, struct x86_buf *b)
{
	header(b, "APIC", 4);
	x86_buf_u32(b, (uint32_t)X86_LAPIC_ADDR);
	x86_buf_u32(b, 1);          /* PCAT_COMPAT: there are 8259s to mask */
	for (uint32_t i = 0; i < cfg->ncpus; i++) {
		if (i < 255) {
			x86_buf_u8(b, MADT_LAPIC);
			x86_buf_u8(b, 8);
			x86_buf_u8(b, (uint8_t)i);      /* ACPI processor UID */
			x86_buf_u8(b, (uint8_t)i);      /* APIC id */
			x86_buf_u32(b, 1);              /* enabled */
		} else {
			/* 255 is the xAPIC broadcast id: x2APIC entries from there. */
			x86_buf_u8(b, MADT_X2APIC);
			x86_buf_u8(b, 16);
			x86_buf_u16(b, 0);
			x86_buf_u32(b, i);              /* x2APIC id */
			x86_buf_u32(b, 1);              /* enabled */
			x86_buf_u32(b, i);              /* ACPI processor UID */
		}
	}
	/* IOAPIC id 0: the reset value of KVM's IOAPIC id register (and QEMU's
	 * choice); Linux on x86-64 does not require it to differ from the
	 * LAPIC ids. */
	x86_buf_u8(b, MADT_IOAPIC);
	x86_buf_u8(b, 12);
	x86_buf_u8(b, 0);
	x86_buf_u8(b, 0);
	x86_buf_u32(b, (uint32_t)X86_IOAPIC_ADDR);
	x86_buf_u32(b, 0);              /* GSI base */
	/* ISA IRQ 0 (PIT) is wired to IOAPIC pin 2. */
	x86_buf_u8(b, MADT_ISO);
	x86_buf_u8(b, 10);
	x86_buf_u8(b, 0);               /* ISA */
	x86_buf_u8(b, 0);
	x86_buf_u32(b, 2);
	x86_buf_u16(b, 0);              /* conforms to the bus: edge, high */
	/* The SCI: level-triggered, active high. */
	x86_buf_u8(b, MADT_ISO);
	x86_buf_u8(b, 10);
	x86_buf_u8(b, 0);
	x86_buf_u8(b, X86_SCI_IRQ);
	x86_buf_u32(b, X86_SCI_IRQ);
	x86_buf_u16(b, 0x000d);         /* polarity 01 high, trigger 11 level */
	/* NMI on every processor's LINT1. */
	x86_buf_u8(b, MADT_LAPIC_NMI);
	x86_buf_u8(b, 6);
	x86_buf_u8(b, 0xff);            /* all processors */
	x86_buf_u16(b, 0);
	x86_buf_u8(b, 1);
	if (cfg->ncpus > 255) {
		x86_buf_u8(b, MADT_X2APIC_NMI);
		x86_buf_u8(b, 12);
		x86_buf_u16(b, 0);
		x86_buf_u32(b, 0xffffffffu);
		x86_buf_u8(b, 1);
		x86_buf_zero(b, 3);
	}
	finish(b, 0, false);
}

/* ---- MCFG (PCI Firmware Specification 3.0, 4.1.2) -------------------------------- */

/* One allocation: segment 0, buses 0..0, ECAM at @ecam. */
static void build_mcfg(struct x86_buf *b, uint64_t ecam)
{
	size_t start = b->len;

	header(b, "MCFG", 1);
	x86_buf_zero(b, 8);
	x86_buf_u64(b, ecam);
	x86_buf_u16(b, 0);      /* PCI segment group */
	x86_buf_u8(b, 0);       /* start bus */
	x86_buf_u8(b, 0);       /* end bus */
	x86_buf_u32(b, 0);
	finish(b, start, false);
}

/* ---- FADT, FACS, XSDT, RSDP ---------------------------------------------------------- */

static void build_fadt(const struct x86_acpi_config *cfg, struct x86_buf *b, uint64_t dsdt,
		       uint64_t facs)
{
	uint8_t f[FADT_LEN] = { 0 };
	uint16_t iapc = IAPC_VGA_NOT_PRESENT;

	if (cfg->i8042)
		iapc |= IAPC_8042;
	if (!cfg->rtc)
		iapc |= IAPC_CMOS_RTC_NOT_PRESENT;
	/* SMI_CMD stays 0: the machine is always in ACPI mode (SCI_EN set). */
	put_le(f + FADT_FIRMWARE_CTRL, 0, 4);   /* X_FIRMWARE_CTRL is used */
	put_le(f + FADT_DSDT, dsdt, 4);
	f[FADT_PM_PROFILE] = 0;                 /* unspecified */
	put_le(f + FADT_SCI_INT, X86_SCI_IRQ, 2);
	put_le(f + FADT_PM1A_EVT_BLK, X86_PM1A_EVT, 4);
	put_le(f + FADT_PM1A_CNT_BLK, X86_PM1A_CNT, 4);
	f[FADT_PM1_EVT_LEN] = 4;
	f[FADT_PM1_CNT_LEN] = 2;
	/* No C2/C3 (latencies above 100 and 1000 us mean "not supported"). */
	put_le(f + FADT_P_LVL2_LAT, 0x0fff, 2);
	put_le(f + FADT_P_LVL3_LAT, 0x0fff, 2);
	f[FADT_CENTURY] = cfg->rtc ? RTC_CENTURY : 0;
	put_le(f + FADT_IAPC_BOOT_ARCH, iapc, 2);
	put_le(f + FADT_FLAGS, FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON |
			       FADT_F_FIX_RTC | FADT_F_RESET_REG_SUP, 4);
	gas(f + FADT_RESET_REG, 8, 1, X86_RESET_PORT);
	f[FADT_RESET_VALUE] = X86_RESET_VALUE;
	f[FADT_MINOR_VERSION] = 0;
	put_le(f + FADT_X_FIRMWARE_CTRL, facs, 8);
	put_le(f + FADT_X_DSDT, dsdt, 8);
	gas(f + FADT_X_PM1A_EVT_BLK, 32, 2, X86_PM1A_EVT);
	gas(f + FADT_X_PM1A_CNT_BLK, 16, 2, X86_PM1A_CNT);
	memcpy(f + FADT_HYPERVISOR_ID, "VMKIT   ", 8);

	header(b, "FACP", 6);
	x86_buf_put(b, f + HDR_LEN, FADT_LEN - HDR_LEN);
}

static void build_facs(struct x86_buf *b)
{
	x86_buf_put(b, "FACS", 4);
	x86_buf_u32(b, FACS_LEN);
	x86_buf_u32(b, 0);      /* hardware signature */
	x86_buf_u32(b, 0);      /* firmware waking vector */
	x86_buf_u32(b, 0);      /* global lock */
	x86_buf_u32(b, 0);      /* flags: no S4BIOS, no 64-bit wake */
	x86_buf_u64(b, 0);      /* X firmware waking vector */
	x86_buf_u8(b, 2);       /* version */
	x86_buf_zero(b, 3);
	x86_buf_u32(b, 0);      /* OSPM flags */
	x86_buf_zero(b, 24);
}

static void build_rsdp(struct x86_buf *b, uint64_t xsdt, bool zero)
{
	uint8_t r[RSDP_LEN] = { 0 };

	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, OEM_ID, 6);
	r[15] = 2;                       /* ACPI 2.0+ */
	put_le(r + 16, 0, 4);            /* no RSDT */
	put_le(r + 20, RSDP_LEN, 4);
	put_le(r + 24, xsdt, 8);
	if (!zero) {
		r[8] = (uint8_t)-sum8(r, 20);
		r[32] = (uint8_t)-sum8(r, RSDP_LEN);
	}
	x86_buf_put(b, r, sizeof(r));
}

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static void plan(struct layout *l, size_t dsdt_len, size_t madt_len, bool mcfg)
{
	l->mcfg_present = mcfg;
	l->xsdt_entries = mcfg ? 3 : 2;
	l->xsdt_len = HDR_LEN + 8 * l->xsdt_entries;
	l->dsdt_len = dsdt_len;
	l->madt_len = madt_len;
	l->xsdt = 0;
	l->fadt = align_up(l->xsdt + l->xsdt_len, 16);
	l->facs = align_up(l->fadt + FADT_LEN, 64);
	l->dsdt = align_up(l->facs + FACS_LEN, 16);
	l->madt = align_up(l->dsdt + dsdt_len, 16);
	l->mcfg = align_up(l->madt + madt_len, 16);
	l->end = mcfg ? l->mcfg + MCFG_LEN : l->madt + madt_len;
}

/* The tables blob with pointers relative to @tbase (the guest address of
 * its first byte; 0 for the fw_cfg form, where the loader adds it).
 * @zero leaves the checksums of tables that contain pointers at 0. */
static void build_tables(const struct x86_acpi_config *cfg, const struct layout *l,
			 const struct x86_buf *dsdt, const struct x86_buf *madt, uint64_t tbase,
			 bool zero, struct x86_buf *b)
{
	header(b, "XSDT", 1);
	x86_buf_u64(b, tbase + l->fadt);
	x86_buf_u64(b, tbase + l->madt);
	if (l->mcfg_present)
		x86_buf_u64(b, tbase + l->mcfg);
	finish(b, l->xsdt, zero);

	x86_buf_align(b, 16);
	build_fadt(cfg, b, tbase + l->dsdt, tbase + l->facs);
	finish(b, l->fadt, zero);

	x86_buf_align(b, 64);
	build_facs(b);

	x86_buf_align(b, 16);
	x86_buf_put(b, dsdt->data, dsdt->len);
	if (zero && !b->oom)
		b->data[l->dsdt + 9] = 0;

	x86_buf_align(b, 16);
	x86_buf_put(b, madt->data, madt->len);
	if (zero && !b->oom)
		b->data[l->madt + 9] = 0;

	if (l->mcfg_present) {
		x86_buf_align(b, 16);
		build_mcfg(b, cfg->pci_ecam_base);
		if (zero && !b->oom)
			b->data[l->mcfg + 9] = 0;
	}
}

/* ---- fw_cfg loader commands ---------------------------------------------------------- */

static void cmd_name(uint8_t *p, const char *name)
{
	strncpy((char *)p, name, LOADER_FILESZ - 1);
}

static void cmd_allocate(struct x86_buf *b, const char *file, uint32_t align, uint8_t zone)
{
	uint8_t c[LOADER_CMD_LEN] = { 0 };

	put_le(c, LOADER_ALLOCATE, 4);
	cmd_name(c + 4, file);
	put_le(c + 4 + LOADER_FILESZ, align, 4);
	c[8 + LOADER_FILESZ] = zone;
	x86_buf_put(b, c, sizeof(c));
}

static void cmd_pointer(struct x86_buf *b, const char *dest, const char *src, uint32_t offset,
			uint8_t size)
{
	uint8_t c[LOADER_CMD_LEN] = { 0 };

	put_le(c, LOADER_ADD_POINTER, 4);
	cmd_name(c + 4, dest);
	cmd_name(c + 4 + LOADER_FILESZ, src);
	put_le(c + 4 + 2 * LOADER_FILESZ, offset, 4);
	c[8 + 2 * LOADER_FILESZ] = size;
	x86_buf_put(b, c, sizeof(c));
}

static void cmd_checksum(struct x86_buf *b, const char *file, uint32_t offset, uint32_t start,
			 uint32_t len)
{
	uint8_t c[LOADER_CMD_LEN] = { 0 };

	put_le(c, LOADER_ADD_CHECKSUM, 4);
	cmd_name(c + 4, file);
	put_le(c + 4 + LOADER_FILESZ, offset, 4);
	put_le(c + 8 + LOADER_FILESZ, start, 4);
	put_le(c + 12 + LOADER_FILESZ, len, 4);
	x86_buf_put(b, c, sizeof(c));
}

static void build_loader(const struct layout *l, struct x86_buf *b)
{
	cmd_allocate(b, FW_RSDP, 16, LOADER_ZONE_FSEG);
	cmd_allocate(b, FW_TABLES, 64, LOADER_ZONE_HIGH);

	for (uint32_t i = 0; i < l->xsdt_entries; i++)
		cmd_pointer(b, FW_TABLES, FW_TABLES, (uint32_t)(l->xsdt + HDR_LEN + 8 * i), 8);
	cmd_pointer(b, FW_TABLES, FW_TABLES, (uint32_t)(l->fadt + FADT_DSDT), 4);
	cmd_pointer(b, FW_TABLES, FW_TABLES, (uint32_t)(l->fadt + FADT_X_DSDT), 8);
	cmd_pointer(b, FW_TABLES, FW_TABLES, (uint32_t)(l->fadt + FADT_X_FIRMWARE_CTRL), 8);
	cmd_pointer(b, FW_RSDP, FW_TABLES, 24, 8);

	/* After the pointers they cover. */
	cmd_checksum(b, FW_TABLES, (uint32_t)(l->xsdt + 9), (uint32_t)l->xsdt,
		     (uint32_t)l->xsdt_len);
	cmd_checksum(b, FW_TABLES, (uint32_t)(l->fadt + 9), (uint32_t)l->fadt, FADT_LEN);
	cmd_checksum(b, FW_TABLES, (uint32_t)(l->dsdt + 9), (uint32_t)l->dsdt,
		     (uint32_t)l->dsdt_len);
	cmd_checksum(b, FW_TABLES, (uint32_t)(l->madt + 9), (uint32_t)l->madt,
		     (uint32_t)l->madt_len);
	if (l->mcfg_present)
		cmd_checksum(b, FW_TABLES, (uint32_t)(l->mcfg + 9), (uint32_t)l->mcfg, MCFG_LEN);
	cmd_checksum(b, FW_RSDP, 8, 0, 20);
	cmd_checksum(b, FW_RSDP, 32, 0, RSDP_LEN);
}

/* ---- entry points -------------------------------------------------------------------- */

void x86_acpi_free(struct x86_acpi_tables *t)
{
	if (!t)
		return;
	x86_buf_free(&t->image);
	x86_buf_free(&t->fw_tables);
	x86_buf_free(&t->fw_rsdp);
	x86_buf_free(&t->fw_loader);
	memset(t, 0, sizeof(*t));
}

int x86_acpi_build(const struct x86_acpi_config *cfg, uint64_t base, struct x86_acpi_tables *out)
{
	struct x86_buf dsdt = { 0 }, madt = { 0 }, tables = { 0 };
	struct layout l;
	int r = 0;

	if (!out)
		return vmkit__err(-EINVAL, "acpi: no output");
	memset(out, 0, sizeof(*out));
	if (!cfg || cfg->ncpus < 1 || cfg->ncpus > MAX_CPUS)
		return vmkit__err(-EINVAL, "acpi: %u CPUs is out of range (1..%d)",
				  cfg ? cfg->ncpus : 0, MAX_CPUS);
	if (base % 64)
		return vmkit__err(-EINVAL, "acpi: base 0x%llx is not 64-byte aligned",
				  (unsigned long long)base);
	if (cfg->pci && (!cfg->pci_ecam_base || cfg->pci_ecam_base % ECAM_BUS_SIZE ||
			 cfg->pci_ecam_base > UINT64_MAX - ECAM_BUS_SIZE))
		return vmkit__err(-EINVAL, "acpi: ECAM base 0x%llx is not a 1 MiB aligned address",
				  (unsigned long long)cfg->pci_ecam_base);

	build_dsdt(cfg, &dsdt);
	build_madt(cfg, &madt);
	if (dsdt.oom || madt.oom) {
		r = vmkit__err(-ENOMEM, "acpi: building the DSDT failed (out of memory or "
				"malformed AML from a device)");
		goto out;
	}
	plan(&l, dsdt.len, madt.len, cfg->pci);
	if (TABLES_OFF + l.end > X86_ACPI_MAX || base > X86_4G - TABLES_OFF - l.end) {
		r = vmkit__err(-E2BIG, "acpi: %zu bytes of tables do not fit at 0x%llx "
				"(limit %u bytes, below 4 GiB)", TABLES_OFF + l.end,
				(unsigned long long)base, X86_ACPI_MAX);
		goto out;
	}

	out->base = base;
	out->rsdp_addr = base;
	build_rsdp(&out->image, base + TABLES_OFF + l.xsdt, false);
	x86_buf_align(&out->image, TABLES_OFF);
	build_tables(cfg, &l, &dsdt, &madt, base + TABLES_OFF, false, &tables);
	x86_buf_put(&out->image, tables.data, tables.len);
	if (tables.oom)
		out->image.oom = true;

	build_tables(cfg, &l, &dsdt, &madt, 0, true, &out->fw_tables);
	build_rsdp(&out->fw_rsdp, l.xsdt, true);
	build_loader(&l, &out->fw_loader);

	if (out->image.oom || out->fw_tables.oom || out->fw_rsdp.oom || out->fw_loader.oom)
		r = vmkit__err(-ENOMEM, "acpi: out of memory");
out:
	x86_buf_free(&dsdt);
	x86_buf_free(&madt);
	x86_buf_free(&tables);
	if (r < 0)
		x86_acpi_free(out);
	return r;
}
