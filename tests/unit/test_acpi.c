/* SPDX-License-Identifier: MIT */
/* ACPI tables: structure, checksums and pointers of the image, the fw_cfg
 * linker/loader form applied as firmware would, and Debian's iasl
 * disassembling every table. */
#include <criterion/criterion.h>

#include "iasl.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/aml.h"

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return le16(p) | (uint32_t)le16(p + 2) << 16; }
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

static struct x86_acpi_config full_config(uint32_t ncpus)
{
	struct x86_acpi_config c = { 0 };

	c.ncpus = ncpus;
	c.uart = c.rtc = c.i8042 = c.pvpanic = c.fw_cfg = true;
	return c;
}

/* The table at guest address @addr inside @t's image, checked: header
 * length inside the image, checksum 0. */
static const uint8_t *table_at(const struct x86_acpi_tables *t, uint64_t addr, const char *sig)
{
	const uint8_t *p;
	uint32_t len;

	cr_assert_geq(addr, t->base, "%s at 0x%llx is below the image", sig,
		      (unsigned long long)addr);
	cr_assert_leq(addr - t->base + 36, t->image.len, "%s header outside the image", sig);
	p = t->image.data + (addr - t->base);
	cr_assert(!memcmp(p, sig, 4), "expected %s at 0x%llx, found %.4s", sig,
		  (unsigned long long)addr, (const char *)p);
	len = le32(p + 4);
	cr_assert_leq(addr - t->base + len, t->image.len, "%s length %u outside the image", sig,
		      len);
	cr_assert_eq(addr % (strcmp(sig, "FACS") ? 4 : 64), 0, "%s misaligned", sig);
	if (strcmp(sig, "FACS")) {
		cr_assert_geq(len, 36);
		cr_assert_eq(sum8(p, len), 0, "%s checksum", sig);
		cr_assert(!memcmp(p + 10, "VMKIT ", 6), "%s OEM id", sig);
	} else {
		cr_assert_eq(len, 64);
	}
	return p;
}

struct parsed {
	const uint8_t *rsdp, *xsdt, *fadt, *facs, *dsdt, *madt, *mcfg;
};

static struct parsed parse(const struct x86_acpi_tables *t)
{
	struct parsed p = { 0 };
	const uint8_t *r = t->image.data;
	uint32_t n;

	cr_assert_eq(t->rsdp_addr, t->base);
	cr_assert_geq(t->image.len, 36);
	cr_assert(!memcmp(r, "RSD PTR ", 8));
	cr_assert_eq(sum8(r, 20), 0, "RSDP checksum");
	cr_assert_eq(r[15], 2, "RSDP revision");
	cr_assert_eq(le32(r + 20), 36);
	cr_assert_eq(sum8(r, 36), 0, "RSDP extended checksum");
	p.rsdp = r;
	p.xsdt = table_at(t, le64(r + 24), "XSDT");
	n = (le32(p.xsdt + 4) - 36) / 8;
	cr_assert_eq(le32(p.xsdt + 4), 36 + 8 * n, "XSDT length");
	for (uint32_t i = 0; i < n; i++) {
		uint64_t a = le64(p.xsdt + 36 + 8 * i);
		const uint8_t *e = t->image.data + (a - t->base);

		cr_assert_leq(a - t->base + 36, t->image.len);
		if (!memcmp(e, "FACP", 4))
			p.fadt = table_at(t, a, "FACP");
		else if (!memcmp(e, "APIC", 4))
			p.madt = table_at(t, a, "APIC");
		else if (!memcmp(e, "MCFG", 4) && !p.mcfg)
			p.mcfg = table_at(t, a, "MCFG");
		else
			cr_assert_fail("unexpected XSDT entry %.4s", (const char *)e);
	}
	cr_assert(p.fadt && p.madt, "XSDT lacks the FADT or the MADT");
	p.dsdt = table_at(t, le64(p.fadt + 140), "DSDT");
	cr_assert_eq(le32(p.fadt + 40), le64(p.fadt + 140), "DSDT and X_DSDT differ");
	p.facs = table_at(t, le64(p.fadt + 132), "FACS");
	cr_assert_eq(le32(p.fadt + 36), 0, "FIRMWARE_CTRL must be 0 with X_FIRMWARE_CTRL");
	return p;
}

static void check_gas(const uint8_t *g, uint8_t bits, uint64_t port)
{
	cr_assert_eq(g[0], 1, "GAS in system I/O");
	cr_assert_eq(g[1], bits);
	cr_assert_eq(g[2], 0);
	cr_assert_eq(le64(g + 4), port);
}

Test(acpi, image_structure_and_fadt)
{
	struct x86_acpi_config c = full_config(2);
	struct x86_acpi_tables t;
	struct parsed p;
	const uint8_t *f;

	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), 0, "%s", vmkit_last_error());
	cr_assert_leq(t.image.len, X86_ACPI_MAX);
	p = parse(&t);
	f = p.fadt;
	cr_assert_eq(le32(f + 4), 276, "ACPI 6 FADT length");
	cr_assert_eq(f[8], 6, "FADT revision");
	cr_assert_eq(le16(f + 46), X86_SCI_IRQ);
	cr_assert_eq(le32(f + 48), 0, "no SMI command port: always in ACPI mode");
	cr_assert_eq(le32(f + 56), X86_PM1A_EVT);
	cr_assert_eq(le32(f + 64), X86_PM1A_CNT);
	cr_assert_eq(f[88], 4, "PM1_EVT_LEN");
	cr_assert_eq(f[89], 2, "PM1_CNT_LEN");
	check_gas(f + 148, 32, X86_PM1A_EVT);
	check_gas(f + 172, 16, X86_PM1A_CNT);
	check_gas(f + 116, 8, X86_RESET_PORT);
	cr_assert_eq(f[128], X86_RESET_VALUE);
	cr_assert(le32(f + 112) & (1u << 10), "RESET_REG_SUP");
	cr_assert(le32(f + 112) & (1u << 0), "WBINVD");
	cr_assert(le32(f + 112) & (1u << 2), "PROC_C1");
	cr_assert(le32(f + 112) & (1u << 5), "no sleep button");
	cr_assert(!(le32(f + 112) & (1u << 20)), "not hardware-reduced");
	cr_assert_eq(le16(f + 109) & 0x26, 0x06, "8042 present, VGA not present, RTC present");
	cr_assert_eq(f[108], 0x32, "century register");
	x86_acpi_free(&t);

	c.i8042 = false;
	c.rtc = false;
	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), 0);
	p = parse(&t);
	cr_assert_eq(le16(p.fadt + 109) & 0x26, 0x24, "no 8042, no RTC, no VGA");
	cr_assert_eq(p.fadt[108], 0);
	x86_acpi_free(&t);
	x86_acpi_free(&t); /* idempotent */
	x86_acpi_free(NULL);
}

static void check_madt(uint32_t ncpus)
{
	struct x86_acpi_config c = full_config(ncpus);
	struct x86_acpi_tables t;
	struct parsed p;
	uint32_t len, lapics = 0, x2apics = 0, ioapics = 0, nmis = 0;
	bool iso0 = false, iso9 = false;
	uint8_t seen[512] = { 0 };

	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), 0, "%s", vmkit_last_error());
	p = parse(&t);
	len = le32(p.madt + 4);
	cr_assert_eq(le32(p.madt + 36), X86_LAPIC_ADDR);
	cr_assert_eq(le32(p.madt + 40) & 1, 1, "PCAT_COMPAT");
	for (uint32_t off = 44; off < len;) {
		const uint8_t *e = p.madt + off;

		cr_assert_geq(e[1], 2);
		cr_assert_leq(off + e[1], len, "entry overruns the MADT");
		switch (e[0]) {
		case 0:
			cr_assert_eq(e[1], 8);
			cr_assert_eq(e[2], e[3], "UID == APIC id");
			cr_assert_lt(e[3], ncpus);
			cr_assert_eq(le32(e + 4) & 1, 1, "enabled");
			cr_assert(!seen[e[3]]++, "APIC id %u twice", e[3]);
			lapics++;
			break;
		case 9:
			cr_assert_eq(e[1], 16);
			cr_assert_geq(le32(e + 4), 255);
			cr_assert_lt(le32(e + 4), ncpus);
			cr_assert_eq(le32(e + 12), le32(e + 4));
			cr_assert(!seen[le32(e + 4)]++);
			x2apics++;
			break;
		case 1:
			cr_assert_eq(e[1], 12);
			cr_assert_eq(le32(e + 4), X86_IOAPIC_ADDR);
			cr_assert_eq(le32(e + 8), 0, "GSI base");
			ioapics++;
			break;
		case 2:
			cr_assert_eq(e[1], 10);
			if (e[3] == 0) {
				cr_assert_eq(le32(e + 4), 2);
				iso0 = true;
			} else if (e[3] == X86_SCI_IRQ) {
				cr_assert_eq(le32(e + 4), X86_SCI_IRQ);
				cr_assert_eq(le16(e + 8), 0x000d, "SCI level, active high");
				iso9 = true;
			}
			break;
		case 4:
			cr_assert_eq(e[1], 6);
			cr_assert_eq(e[2], 0xff);
			cr_assert_eq(e[5], 1, "LINT1");
			nmis++;
			break;
		case 10:
			cr_assert_eq(e[1], 12);
			break;
		default:
			cr_assert_fail("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	cr_assert_eq(lapics + x2apics, ncpus);
	cr_assert_eq(lapics, ncpus < 255 ? ncpus : 255);
	for (uint32_t i = 0; i < ncpus; i++)
		cr_assert(seen[i], "no entry for CPU %u", i);
	cr_assert_eq(ioapics, 1);
	cr_assert_eq(nmis, 1);
	cr_assert(iso0 && iso9, "interrupt source overrides");
	x86_acpi_free(&t);
}

Test(acpi, madt_cpus)
{
	check_madt(1);
	check_madt(2);
	check_madt(4);
	check_madt(64);
	check_madt(255);
	check_madt(300);
}

static void extra(void *ctx, struct x86_buf *sb)
{
	size_t dev = aml_device_begin(sb, "XTRA");

	(*(int *)ctx)++;
	aml_name(sb, "_HID");
	aml_string(sb, "LNRO0005");
	aml_end(sb, dev);
}

static void bad_extra(void *ctx, struct x86_buf *sb)
{
	aml_device_begin(sb, "bad name");
}

Test(acpi, bad_arguments)
{
	struct x86_acpi_config c = full_config(0);
	struct x86_acpi_tables t;

	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), -EINVAL);
	cr_assert_null(t.image.data);
	c.ncpus = 2;
	cr_assert_eq(x86_acpi_build(NULL, X86_ACPI_ADDR, &t), -EINVAL);
	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR + 16, &t), -EINVAL);
	cr_assert_eq(x86_acpi_build(&c, X86_4G - 256, &t), -E2BIG);
	c.dsdt_extra = bad_extra;
	cr_assert_lt(x86_acpi_build(&c, X86_ACPI_ADDR, &t), 0);
	cr_assert_null(t.image.data);
	cr_assert_null(t.fw_loader.data);
}

Test(acpi, mcfg_only_with_pci)
{
	struct x86_acpi_config c = full_config(2);
	struct x86_acpi_tables t;
	struct parsed p;

	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), 0);
	p = parse(&t);
	cr_assert_null(p.mcfg, "MCFG without a PCI host bridge");
	cr_assert_eq(le32(p.xsdt + 4), 36 + 2 * 8);
	x86_acpi_free(&t);

	c.pci = true;
	c.pci_ecam_base = X86_PCI_ECAM_BASE;
	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), 0, "%s", vmkit_last_error());
	p = parse(&t);
	cr_assert_not_null(p.mcfg, "no MCFG in the XSDT");
	cr_assert_eq(le32(p.xsdt + 4), 36 + 3 * 8);
	cr_assert_eq(le32(p.mcfg + 4), 60, "one allocation structure");
	cr_assert_eq(p.mcfg[8], 1, "MCFG revision");
	for (int i = 36; i < 44; i++)
		cr_assert_eq(p.mcfg[i], 0, "reserved byte %d", i);
	cr_assert_eq(le64(p.mcfg + 44), X86_PCI_ECAM_BASE);
	cr_assert_eq(le16(p.mcfg + 52), 0, "segment");
	cr_assert_eq(p.mcfg[54], 0, "start bus");
	cr_assert_eq(p.mcfg[55], 0, "end bus");
	cr_assert_eq(le32(p.mcfg + 56), 0);
	x86_acpi_free(&t);

	c.pci_ecam_base = X86_PCI_ECAM_BASE + 0x1000;
	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), -EINVAL, "a misaligned ECAM base");
	c.pci_ecam_base = 0;
	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), -EINVAL, "ECAM at 0");
}

/* ---- the fw_cfg form, applied the way SeaBIOS's romfile loader does ---------------- */

struct blob {
	const char *name;
	uint8_t *data;
	size_t len;
	uint64_t addr;
	bool allocated;
};

static struct blob *find_blob(struct blob *b, size_t n, const uint8_t *name)
{
	cr_assert(memchr(name, 0, 56), "file name not terminated");
	for (size_t i = 0; i < n; i++)
		if (!strcmp(b[i].name, (const char *)name))
			return &b[i];
	cr_assert_fail("loader names unknown file '%s'", (const char *)name);
	return NULL;
}

static void run_loader(const struct x86_buf *loader, struct blob *b, size_t n, int *counts)
{
	cr_assert_eq(loader->len % 128, 0, "commands are 128 bytes");
	for (size_t off = 0; off < loader->len; off += 128) {
		const uint8_t *c = loader->data + off;
		uint32_t cmd = le32(c);
		struct blob *d, *s;
		uint32_t o, start, len;
		uint64_t v = 0;
		uint8_t size;

		cr_assert(cmd >= 1 && cmd <= 3, "command %u", cmd);
		counts[cmd]++;
		switch (cmd) {
		case 1: /* ALLOCATE file[56] align zone */
			d = find_blob(b, n, c + 4);
			cr_assert(!d->allocated, "allocated twice");
			cr_assert_eq(d->addr % le32(c + 60), 0, "test address breaks alignment");
			if (!strcmp(d->name, "etc/acpi/rsdp")) {
				cr_assert_eq(c[64], 2, "RSDP in the FSEG zone");
				cr_assert_eq(le32(c + 60), 16);
			} else {
				cr_assert_eq(c[64], 1, "tables in the HIGH zone");
				cr_assert_eq(le32(c + 60), 64);
			}
			d->allocated = true;
			break;
		case 2: /* ADD_POINTER dest[56] src[56] offset size */
			d = find_blob(b, n, c + 4);
			s = find_blob(b, n, c + 60);
			cr_assert(d->allocated && s->allocated, "pointer before ALLOCATE");
			o = le32(c + 116);
			size = c[120];
			cr_assert(size == 1 || size == 2 || size == 4 || size == 8);
			cr_assert_leq(o + size, d->len);
			memcpy(&v, d->data + o, size);
			cr_assert_lt(v, s->len, "pointer field does not hold an offset in %s",
				     s->name);
			v += s->addr;
			memcpy(d->data + o, &v, size);
			break;
		case 3: /* ADD_CHECKSUM file[56] offset start length */
			d = find_blob(b, n, c + 4);
			o = le32(c + 60);
			start = le32(c + 64);
			len = le32(c + 68);
			cr_assert(d->allocated);
			cr_assert_lt(o, d->len);
			cr_assert_leq(start + len, d->len);
			cr_assert(o >= start && o < start + len, "checksum outside its range");
			d->data[o] = (uint8_t)(d->data[o] - sum8(d->data + start, len));
			break;
		}
		for (size_t i = 4 + 56 * (cmd == 2 ? 2 : 1) + (cmd == 1 ? 5 : cmd == 2 ? 5 : 12);
		     i < 128; i++)
			cr_assert_eq(c[i], 0, "padding byte %zu of command %u", i, cmd);
	}
}

Test(acpi, fw_cfg_loader_reproduces_the_image)
{
	struct x86_acpi_config c = full_config(4);
	struct x86_acpi_tables img, t;
	/* Where firmware might place them: tables high, RSDP in the F segment. */
	const uint64_t tables_addr = 0x7ffd0000, rsdp_addr = 0xf5a40;
	struct blob b[2];
	int counts[4] = { 0 };

	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), 0);
	/* An image whose tables land at tables_addr: it is what the firmware
	 * must end up with. */
	cr_assert_eq(x86_acpi_build(&c, tables_addr - 64, &img), 0);
	cr_assert_eq(t.fw_tables.len, img.image.len - 64);
	cr_assert_eq(t.fw_rsdp.len, 36);

	b[0] = (struct blob){ "etc/acpi/rsdp", malloc(t.fw_rsdp.len), t.fw_rsdp.len, rsdp_addr,
			      false };
	b[1] = (struct blob){ "etc/acpi/tables", malloc(t.fw_tables.len), t.fw_tables.len,
			      tables_addr, false };
	cr_assert(b[0].data && b[1].data);
	memcpy(b[0].data, t.fw_rsdp.data, b[0].len);
	memcpy(b[1].data, t.fw_tables.data, b[1].len);
	run_loader(&t.fw_loader, b, 2, counts);
	cr_assert_eq(counts[1], 2, "two ALLOCATEs");
	cr_assert_eq(counts[2], 6, "XSDT x2, DSDT, X_DSDT, X_FIRMWARE_CTRL, RSDP->XSDT");
	cr_assert_eq(counts[3], 6, "XSDT, FADT, DSDT, MADT, RSDP x2");
	/* The first two commands allocate, before anything refers to them. */
	cr_assert_eq(le32(t.fw_loader.data), 1);
	cr_assert_eq(le32(t.fw_loader.data + 128), 1);

	cr_assert(!memcmp(b[1].data, img.image.data + 64, b[1].len),
		  "linked tables differ from the image built for their address");
	cr_assert(!memcmp(b[0].data, img.image.data, 36), "linked RSDP differs");

	free(b[0].data);
	free(b[1].data);
	x86_acpi_free(&img);
	x86_acpi_free(&t);
}

Test(acpi, fw_cfg_loader_with_mcfg)
{
	struct x86_acpi_config c = full_config(2);
	struct x86_acpi_tables img, t;
	const uint64_t tables_addr = 0x7ffd0000, rsdp_addr = 0xf5a40;
	struct blob b[2];
	int counts[4] = { 0 };

	c.pci = true;
	c.pci_ecam_base = X86_PCI_ECAM_BASE;
	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), 0);
	cr_assert_eq(x86_acpi_build(&c, tables_addr - 64, &img), 0);
	cr_assert_eq(t.fw_tables.len, img.image.len - 64);
	b[0] = (struct blob){ "etc/acpi/rsdp", malloc(t.fw_rsdp.len), t.fw_rsdp.len, rsdp_addr,
			      false };
	b[1] = (struct blob){ "etc/acpi/tables", malloc(t.fw_tables.len), t.fw_tables.len,
			      tables_addr, false };
	cr_assert(b[0].data && b[1].data);
	memcpy(b[0].data, t.fw_rsdp.data, b[0].len);
	memcpy(b[1].data, t.fw_tables.data, b[1].len);
	run_loader(&t.fw_loader, b, 2, counts);
	cr_assert_eq(counts[2], 7, "three XSDT entries, DSDT, X_DSDT, X_FIRMWARE_CTRL, RSDP");
	cr_assert_eq(counts[3], 7, "XSDT, FADT, DSDT, MADT, MCFG, RSDP x2");
	cr_assert(!memcmp(b[1].data, img.image.data + 64, b[1].len),
		  "linked tables differ from the image built for their address");
	cr_assert(!memcmp(b[0].data, img.image.data, 36), "linked RSDP differs");
	free(b[0].data);
	free(b[1].data);
	x86_acpi_free(&img);
	x86_acpi_free(&t);
}

/* ---- iasl ---------------------------------------------------------------------------- */



/* Disassemble @len bytes as @name.dat; returns the .dsl text. */
static char *disassemble(const char *dir, const char *name, const uint8_t *p, size_t len)
{
	char path[512], cmd[1024];
	FILE *f;
	char *dsl;

	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	f = fopen(path, "wb");
	cr_assert(f);
	cr_assert_eq(fwrite(p, 1, len, f), len);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -d %s.dat >%s.log 2>&1", dir, name, name);
	cr_assert_eq(system(cmd), 0, "iasl -d %s failed (see %s/%s.log)", name, dir, name);
	snprintf(path, sizeof(path), "%s/%s.dsl", dir, name);
	dsl = slurp(path);
	cr_assert_null(strstr(dsl, "Incorrect"), "iasl flags %s: %s", name, strstr(dsl, "Incorrect"));
	cr_assert_null(strstr(dsl, "**** "), "iasl flags %s", name);
	return dsl;
}

Test(acpi, iasl_disassembles_every_table)
{
	struct x86_acpi_config c = full_config(2);
	struct x86_acpi_tables t;
	struct parsed p;
	char dir[] = "/tmp/vmkit-acpi-XXXXXX", cmd[600];
	char *dsl;
	int calls = 0;

	if (!have_iasl())
		return;
	c.dsdt_extra = extra;
	c.dsdt_extra_ctx = &calls;
	c.pci = true;
	c.pci_ecam_base = X86_PCI_ECAM_BASE;
	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), 0, "%s", vmkit_last_error());
	cr_assert_eq(calls, 1);
	p = parse(&t);
	cr_assert(mkdtemp(dir));

	/* (iasl does not take a bare RSDP; parse() checked it.) */
	dsl = disassemble(dir, "xsdt", p.xsdt, le32(p.xsdt + 4));
	cr_assert(strstr(dsl, "ACPI Table Address"));
	free(dsl);
	dsl = disassemble(dir, "facp", p.fadt, le32(p.fadt + 4));
	cr_assert(strstr(dsl, "Fixed ACPI Description Table"));
	cr_assert(strstr(dsl, "Reset Register Supported (V2) : 1"), "%s", dsl);
	free(dsl);
	dsl = disassemble(dir, "facs", p.facs, 64);
	free(dsl);
	dsl = disassemble(dir, "apic", p.madt, le32(p.madt + 4));
	cr_assert(strstr(dsl, "Processor Local APIC"));
	cr_assert(strstr(dsl, "I/O APIC"));
	free(dsl);
	cr_assert_not_null(p.mcfg);
	dsl = disassemble(dir, "mcfg", p.mcfg, le32(p.mcfg + 4));
	cr_assert(strstr(dsl, "Memory Mapped Configuration table"), "%s", dsl);
	cr_assert(strstr(dsl, "Base Address : 00000000E0000000"), "%s", dsl);
	cr_assert(strstr(dsl, "End Bus Number : 00"), "%s", dsl);
	free(dsl);

	dsl = disassemble(dir, "dsdt", p.dsdt, le32(p.dsdt + 4));
	cr_assert(strstr(dsl, "Name (\\_S5, Package (0x04)"), "no \\_S5 in:\n%s", dsl);
	cr_assert(strstr(dsl, "Scope (\\_SB)"));
	cr_assert(strstr(dsl, "Device (COM1)") > strstr(dsl, "Scope (\\_SB)"), "COM1 not in \\_SB");
	cr_assert(strstr(dsl, "EisaId (\"PNP0501\")"));
	cr_assert(strstr(dsl, "IO (Decode16,\n                    0x03F8,"), "COM1 _CRS:\n%s", dsl);
	cr_assert(strstr(dsl, "EisaId (\"PNP0B00\")"));
	cr_assert(strstr(dsl, "EisaId (\"PNP0303\")"));
	cr_assert(strstr(dsl, "\"QEMU0001\""));
	cr_assert(strstr(dsl, "\"QEMU0002\""));
	cr_assert(strstr(dsl, "\"ACPI0007\""));
	cr_assert(strstr(dsl, "Device (XTRA)"), "dsdt_extra's device missing");
	free(dsl);

	/* The disassembly compiles back without errors. */
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -p re dsdt.dsl >re.log 2>&1", dir);
	cr_assert_eq(system(cmd), 0, "the DSDT does not recompile (see %s/re.log)", dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
	x86_acpi_free(&t);
}
