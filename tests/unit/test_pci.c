/* SPDX-License-Identifier: MIT */
/* The PCI host bridge and device model: config mechanism #1 and ECAM,
 * read-only fields, BAR sizing and moves, capability list, MSI-X table,
 * masking and pending bits, INTx, hostile accesses, the DSDT entries
 * (through iasl), and the ranges claimed in a real KVM VM. */
#include <criterion/criterion.h>

#include "iasl.h"
#include "kvmtest.h"
#include <linux/kvm.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "pci/pci.h"

/* ---- a test device and recording hooks ---------------------------------------- */

struct region {
	uint8_t *mem;
	uint64_t size;
	unsigned reads, writes;
	uint64_t last_off;
	uint32_t last_len;
};

static void region_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct region *r = opaque;

	cr_assert_leq(off + len, r->size, "device read outside its BAR");
	memcpy(data, r->mem + off, len);
	r->reads++;
	r->last_off = off;
	r->last_len = len;
}

static void region_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct region *r = opaque;

	cr_assert_leq(off + len, r->size, "device write outside its BAR");
	memcpy(r->mem + off, data, len);
	r->writes++;
	r->last_off = off;
	r->last_len = len;
}

static const vmkit_io_ops region_ops = { sizeof(vmkit_io_ops), 0, region_read, region_write };

struct map_event {
	unsigned bar;
	uint64_t old_addr, new_addr;
};

struct tdev {
	struct pci_device pci;
	struct region bar0, bar2;
	struct map_event maps[64];
	unsigned n_maps;
};

static void tdev_map(void *opaque, struct pci_device *d, unsigned bar, uint64_t old_addr,
		     uint64_t new_addr)
{
	struct tdev *t = opaque;

	cr_assert_eq(d, &t->pci);
	if (t->n_maps < 64)
		t->maps[t->n_maps++] = (struct map_event){ bar, old_addr, new_addr };
}

#define BAR0_SIZE 0x4000u   /* 32-bit, MSI-X table at 0x2000, PBA at 0x3000 */
#define BAR2_SIZE 0x10000u  /* 64-bit prefetchable */
#define NVEC 3

/* BAR0 32-bit 16 KiB with MSI-X (3 vectors), BAR2/3 64-bit 64 KiB, a
 * vendor capability, INTx. */
static struct tdev *tdev_new(bool msix)
{
	struct tdev *t = calloc(1, sizeof(*t));
	uint8_t vcap[8] = { PCI_CAP_ID_VNDR, 0, 8, 0xa5, 1, 2, 3, 4 };

	cr_assert(t);
	t->bar0 = (struct region){ calloc(1, BAR0_SIZE), BAR0_SIZE, 0, 0, 0, 0 };
	t->bar2 = (struct region){ calloc(1, BAR2_SIZE), BAR2_SIZE, 0, 0, 0, 0 };
	cr_assert(t->bar0.mem && t->bar2.mem);
	pci_device_init(&t->pci, "tdev", 0x1af4, 0x1042, 1, 0x010000, 0x1af4, 2);
	cr_assert_eq(pci_device_add_bar(&t->pci, 0, BAR0_SIZE, false, false, &region_ops, &t->bar0), 0);
	cr_assert_eq(pci_device_add_bar(&t->pci, 2, BAR2_SIZE, true, true, &region_ops, &t->bar2), 0);
	cr_assert_eq(pci_device_add_cap(&t->pci, vcap, sizeof(vcap)), 0x40);
	if (msix)
		cr_assert_gt(pci_device_add_msix(&t->pci, NVEC, 0, 0x2000, 0x3000), 0);
	pci_device_use_intx(&t->pci);
	t->pci.bar_map = tdev_map;
	t->pci.opaque = t;
	return t;
}

static void tdev_free(struct tdev *t)
{
	pci_device_release(&t->pci);
	free(t->bar0.mem);
	free(t->bar2.mem);
	free(t);
}

struct irq_event {
	bool msi;
	uint32_t gsi_or_data;
	bool level;
	uint64_t addr;
};

static struct irq_event events[256];
static unsigned n_events;
static bool gsi_level[24];

static void hook_irq(void *ctx, uint32_t gsi, bool level)
{
	cr_assert_lt(gsi, 24);
	cr_assert_neq(gsi_level[gsi], level, "GSI %u set to %d twice in a row", gsi, level);
	gsi_level[gsi] = level;
	if (n_events < 256)
		events[n_events++] = (struct irq_event){ false, gsi, level, 0 };
}

static void hook_msi(void *ctx, uint64_t addr, uint32_t data)
{
	if (n_events < 256)
		events[n_events++] = (struct irq_event){ true, data, true, addr };
}

static struct pci_host *detached(const struct vmkit_gmem *mem)
{
	struct pci_host_hooks hooks = { mem, hook_irq, hook_msi, NULL };
	struct pci_host *h;

	n_events = 0;
	memset(gsi_level, 0, sizeof(gsi_level));
	cr_assert_eq(pci_host_new_detached(&hooks, &h), 0);
	return h;
}

/* ---- config access helpers ------------------------------------------------------- */

static void set_addr(struct pci_host *h, uint32_t v)
{
	pci_host_pio_write(h, 0, &v, 4);
}

static uint32_t cfg_rd(struct pci_host *h, unsigned slot, unsigned reg, uint32_t len)
{
	uint32_t v = 0;

	set_addr(h, 0x80000000u | slot << 11 | (reg & 0xfc));
	pci_host_pio_read(h, 4 + (reg & 3), &v, len);
	return v;
}

static void cfg_wr(struct pci_host *h, unsigned slot, unsigned reg, uint32_t v, uint32_t len)
{
	set_addr(h, 0x80000000u | slot << 11 | (reg & 0xfc));
	pci_host_pio_write(h, 4 + (reg & 3), &v, len);
}

static uint32_t ecam_rd(struct pci_host *h, unsigned slot, unsigned reg, uint32_t len)
{
	uint32_t v = 0;

	pci_host_ecam_read(h, (uint64_t)slot << 15 | reg, &v, len);
	return v;
}

static void ecam_wr(struct pci_host *h, unsigned slot, unsigned reg, uint32_t v, uint32_t len)
{
	pci_host_ecam_write(h, (uint64_t)slot << 15 | reg, &v, len);
}

static uint32_t mmio_rd(struct pci_host *h, uint64_t gpa, uint32_t len)
{
	uint32_t v = 0xdeadbeef;

	cr_assert(pci_host_mmio_read(h, gpa, &v, len), "nothing decodes 0x%llx",
		  (unsigned long long)gpa);
	return len == 4 ? v : v & ((1u << (8 * len)) - 1);
}

static uint64_t bar_addr(struct pci_host *h, unsigned slot, unsigned bar, bool is64)
{
	uint64_t a = cfg_rd(h, slot, PCI_BASE_ADDRESS_0 + 4 * bar, 4) & ~0xfull;

	if (is64)
		a |= (uint64_t)cfg_rd(h, slot, PCI_BASE_ADDRESS_0 + 4 * bar + 4, 4) << 32;
	return a;
}

/* ---- config mechanism #1 and ECAM ------------------------------------------------ */

Test(pci, address_register_and_host_bridge)
{
	struct pci_host *h = detached(NULL);
	uint32_t v = 0;

	set_addr(h, 0x80000000u);
	pci_host_pio_read(h, 0, &v, 4);
	cr_assert_eq(v, 0x80000000u, "SeaBIOS probes for PCI by reading this back");
	/* Reserved bits (30:24, 1:0) read as zero. */
	set_addr(h, 0xffffffffu);
	pci_host_pio_read(h, 0, &v, 4);
	cr_assert_eq(v, 0x80fffffcu);
	/* Byte and word accesses to 0xcf8-0xcfb are not the address register. */
	set_addr(h, 0x80000000u);
	v = 0x12;
	pci_host_pio_write(h, 0, &v, 1);
	pci_host_pio_write(h, 2, &v, 2);
	pci_host_pio_read(h, 0, &v, 4);
	cr_assert_eq(v, 0x80000000u);
	v = 0;
	pci_host_pio_read(h, 2, &v, 2);
	cr_assert_eq(v, 0xffff);

	/* Slot 0: the host bridge. */
	cr_assert_eq(cfg_rd(h, 0, 0, 4), 0x12378086u);
	cr_assert_eq(cfg_rd(h, 0, 0x08, 4) >> 8, 0x060000u, "class: host bridge");
	cr_assert_eq(cfg_rd(h, 0, PCI_HEADER_TYPE, 1), 0);
	cr_assert_eq(ecam_rd(h, 0, 0, 4), 0x12378086u);
	pci_host_free(h);
}

Test(pci, absent_functions_read_all_ones)
{
	struct pci_host *h = detached(NULL);
	struct tdev *t = tdev_new(true);
	uint32_t v;

	cr_assert_eq(pci_host_add(h, &t->pci, 3), 3);
	cr_assert_eq(cfg_rd(h, 3, 0, 4), 0x10421af4u);
	cr_assert_eq(cfg_rd(h, 4, 0, 4), 0xffffffffu, "empty slot");
	cr_assert_eq(cfg_rd(h, 31, 0, 4), 0xffffffffu);
	/* Function 1, bus 1: nothing there. */
	set_addr(h, 0x80000000u | 3 << 11 | 1 << 8);
	v = 0;
	pci_host_pio_read(h, 4, &v, 4);
	cr_assert_eq(v, 0xffffffffu);
	set_addr(h, 0x80000000u | 1 << 16 | 3 << 11);
	pci_host_pio_read(h, 4, &v, 4);
	cr_assert_eq(v, 0xffffffffu);
	/* Enable bit clear: no config cycle, all ones; writes dropped. */
	set_addr(h, 3 << 11 | PCI_COMMAND);
	pci_host_pio_read(h, 4, &v, 4);
	cr_assert_eq(v, 0xffffffffu);
	v = 0;
	pci_host_pio_write(h, 4, &v, 2);
	cr_assert_eq(cfg_rd(h, 3, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY);
	cr_assert_eq(ecam_rd(h, 4, 0, 4), 0xffffffffu);
	cr_assert_eq(ecam_rd(h, 3, 0x1000, 4), 0xffffffffu, "function 1 through ECAM");
	pci_host_free(h);
	tdev_free(t);
}

Test(pci, byte_word_dword_at_any_offset)
{
	struct pci_host *h = detached(NULL);
	struct tdev *t = tdev_new(true);

	cr_assert_eq(pci_host_add(h, &t->pci, -1), 1, "lowest free slot");
	cr_assert_eq(cfg_rd(h, 1, 0, 1), 0xf4);
	cr_assert_eq(cfg_rd(h, 1, 1, 1), 0x1a);
	cr_assert_eq(cfg_rd(h, 1, 2, 2), 0x1042);
	cr_assert_eq(cfg_rd(h, 1, 3, 1), 0x10);
	cr_assert_eq(cfg_rd(h, 1, 0x0b, 1), 0x01, "base class");
	cr_assert_eq(cfg_rd(h, 1, 0x08, 1), 0x01, "revision");
	cr_assert_eq(cfg_rd(h, 1, 0x2c, 4), 0x00021af4u, "subsystem");
	cr_assert_eq(cfg_rd(h, 1, PCI_INTERRUPT_PIN, 1), 1, "INTA");
	cr_assert_eq(cfg_rd(h, 1, PCI_INTERRUPT_LINE, 1), pci_intx_gsi(1, 0));
	/* The same through ECAM, at odd offsets, and an 8-byte read. */
	cr_assert_eq(ecam_rd(h, 1, 1, 1), 0x1a);
	cr_assert_eq(ecam_rd(h, 1, 2, 2), 0x1042);
	cr_assert_eq(ecam_rd(h, 1, 0x0b, 1), 0x01);
	{
		uint64_t q = 0;
		pci_host_ecam_read(h, 1 << 15, &q, 8);
		cr_assert_eq(q, (uint64_t)cfg_rd(h, 1, 4, 4) << 32 | 0x10421af4u);
	}
	/* Writes at odd offsets: interrupt line (byte 0x3c) via 0xcfc + 0. */
	cfg_wr(h, 1, PCI_INTERRUPT_LINE, 0x0b, 1);
	cr_assert_eq(cfg_rd(h, 1, PCI_INTERRUPT_LINE, 1), 0x0b);
	ecam_wr(h, 1, PCI_CACHE_LINE_SIZE, 0x10, 1);
	ecam_wr(h, 1, PCI_LATENCY_TIMER, 0x40, 1);
	cr_assert_eq(cfg_rd(h, 1, PCI_CACHE_LINE_SIZE, 2), 0x4010);
	/* Extended space through ECAM reads zero. */
	cr_assert_eq(ecam_rd(h, 1, 0x100, 4), 0, "no extended capabilities");
	cr_assert_eq(ecam_rd(h, 1, 0xffc, 4), 0);
	ecam_wr(h, 1, 0x100, 0xffffffffu, 4);
	cr_assert_eq(ecam_rd(h, 1, 0x100, 4), 0);
	pci_host_free(h);
	tdev_free(t);
}

Test(pci, read_only_fields_stay)
{
	struct pci_host *h = detached(NULL);
	struct tdev *t = tdev_new(true);
	uint8_t before[64];

	cr_assert_eq(pci_host_add(h, &t->pci, 2), 2);
	for (unsigned r = 0; r < 64; r++)
		before[r] = (uint8_t)cfg_rd(h, 2, r, 1);
	/* ids, status, revision, class, header type, cap pointer, pin */
	static const unsigned ro[] = { 0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 14, 15, 0x2c, 0x2d, 0x2e,
				       0x2f, 0x30, 0x34, 0x3d };
	for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
		cfg_wr(h, 2, ro[i], 0xff, 1);
		ecam_wr(h, 2, ro[i], 0x5a, 1);
		cr_assert_eq(cfg_rd(h, 2, ro[i], 1), before[ro[i]], "config byte 0x%x changed", ro[i]);
	}
	/* Command: only memory, bus master, parity, SERR, INTx disable. */
	cfg_wr(h, 2, PCI_COMMAND, 0xffff, 2);
	cr_assert_eq(cfg_rd(h, 2, PCI_COMMAND, 2), 0x0546);
	cfg_wr(h, 2, PCI_COMMAND, 0, 2);
	cr_assert_eq(cfg_rd(h, 2, PCI_COMMAND, 2), 0);
	/* The host bridge's command register is read-only. */
	cfg_wr(h, 0, PCI_COMMAND, 0xffff, 2);
	cr_assert_eq(cfg_rd(h, 0, PCI_COMMAND, 2), 0);
	/* The vendor capability's contents. */
	cfg_wr(h, 2, 0x44, 0xffffffffu, 4);
	cr_assert_eq(cfg_rd(h, 2, 0x44, 4), 0x04030201u);
	pci_host_free(h);
	tdev_free(t);
}

/* ---- BARs -------------------------------------------------------------------------- */

Test(pci, bar_sizing_protocol)
{
	struct pci_host *h = detached(NULL);
	struct tdev *t = tdev_new(true);
	uint32_t lo, hi;

	cr_assert_eq(pci_host_add(h, &t->pci, 1), 1);
	/* 32-bit BAR0, 16 KiB, non-prefetchable. */
	lo = cfg_rd(h, 1, 0x10, 4);
	cr_assert_eq(lo & 0xf, 0, "32-bit memory BAR flags");
	cr_assert(lo >= X86_PCI_MMIO32_BASE && lo < X86_PCI_MMIO32_BASE + X86_PCI_MMIO32_SIZE,
		  "pre-assigned in the window: 0x%x", lo);
	cr_assert_eq(lo % BAR0_SIZE, 0, "naturally aligned");
	cfg_wr(h, 1, 0x10, 0xffffffffu, 4);
	cr_assert_eq(cfg_rd(h, 1, 0x10, 4), ~(BAR0_SIZE - 1));
	cfg_wr(h, 1, 0x10, lo, 4);
	cr_assert_eq(cfg_rd(h, 1, 0x10, 4), lo);

	/* 64-bit prefetchable BAR2/3, 64 KiB. */
	lo = cfg_rd(h, 1, 0x18, 4);
	hi = cfg_rd(h, 1, 0x1c, 4);
	cr_assert_eq(lo & 0xf, 0xc, "64-bit prefetchable");
	cr_assert_eq(hi, 0);
	ecam_wr(h, 1, 0x18, 0xffffffffu, 4);
	ecam_wr(h, 1, 0x1c, 0xffffffffu, 4);
	cr_assert_eq(ecam_rd(h, 1, 0x18, 4), (~(BAR2_SIZE - 1)) | 0xcu);
	cr_assert_eq(ecam_rd(h, 1, 0x1c, 4), 0xffffffffu);
	cfg_wr(h, 1, 0x18, lo, 4);
	cfg_wr(h, 1, 0x1c, hi, 4);

	/* Unimplemented BARs and the ROM BAR size to 0: not there. */
	for (unsigned r = 0x14; r <= 0x30; r += 4) {
		if (r == 0x18 || r == 0x1c || r == PCI_SUBSYSTEM_VENDOR_ID)
			continue;
		cfg_wr(h, 1, r, 0xffffffffu, 4);
		cr_assert_eq(cfg_rd(h, 1, r, 4), 0, "register 0x%x", r);
	}
	/* A byte write: bits 13:8 (below the 16 KiB size) stay 0. */
	lo = cfg_rd(h, 1, 0x10, 4);
	cfg_wr(h, 1, 0x11, 0xff, 1);
	cr_assert_eq(cfg_rd(h, 1, 0x10, 4), (lo & 0xffff00ffu) | 0xc000u);
	cfg_wr(h, 1, 0x10, lo, 4);
	pci_host_free(h);
	tdev_free(t);
}

static const struct map_event *last_map(const struct tdev *t, unsigned bar)
{
	for (unsigned i = t->n_maps; i-- > 0;)
		if (t->maps[i].bar == bar)
			return &t->maps[i];
	return NULL;
}

Test(pci, bar_decode_enable_and_move)
{
	struct pci_host *h = detached(NULL);
	struct tdev *t = tdev_new(true);
	uint64_t a0, a2, na;
	uint32_t v = 0;

	cr_assert_eq(pci_host_add(h, &t->pci, 5), 5);
	a0 = bar_addr(h, 5, 0, false);
	a2 = bar_addr(h, 5, 2, true);
	/* Pre-assigned and decoding: the owner heard of both before add returned. */
	cr_assert_eq(t->n_maps, 2);
	cr_assert_eq(last_map(t, 0)->old_addr, PCI_ADDR_NONE);
	cr_assert_eq(last_map(t, 0)->new_addr, a0);
	cr_assert_eq(last_map(t, 2)->new_addr, a2);
	memcpy(t->bar0.mem + 0x10, "\x11\x22\x33\x44", 4);
	cr_assert_eq(mmio_rd(h, a0 + 0x10, 4), 0x44332211u);
	cr_assert_eq(t->bar0.last_off, 0x10, "the device sees offsets, not addresses");
	cr_assert(pci_host_mmio_write(h, a2 + 0xfff0, "\xaa\xbb", 2));
	cr_assert_eq(t->bar2.mem[0xfff1], 0xbb);

	/* Memory decode off: both stop decoding, the owner is told. */
	cfg_wr(h, 5, PCI_COMMAND, 0, 2);
	cr_assert_eq(last_map(t, 0)->new_addr, PCI_ADDR_NONE);
	cr_assert_eq(last_map(t, 2)->new_addr, PCI_ADDR_NONE);
	cr_assert_not(pci_host_mmio_read(h, a0 + 0x10, &v, 4));
	/* Sizing while decode is off does not map anything. */
	t->n_maps = 0;
	cfg_wr(h, 5, 0x10, 0xffffffffu, 4);
	cfg_wr(h, 5, 0x10, (uint32_t)a0, 4);
	cr_assert_eq(t->n_maps, 0);
	cfg_wr(h, 5, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	cr_assert_eq(last_map(t, 0)->new_addr, a0);
	cr_assert_eq(mmio_rd(h, a0 + 0x10, 4), 0x44332211u);

	/* Move BAR0 inside the window through the ports, then through ECAM. */
	na = X86_PCI_MMIO32_BASE + 0x8000000;
	cfg_wr(h, 5, 0x10, (uint32_t)na, 4);
	cr_assert_eq(last_map(t, 0)->old_addr, a0);
	cr_assert_eq(last_map(t, 0)->new_addr, na);
	cr_assert_not(pci_host_mmio_read(h, a0 + 0x10, &v, 4), "old address still decodes");
	cr_assert_eq(mmio_rd(h, na + 0x10, 4), 0x44332211u);
	ecam_wr(h, 5, 0x10, (uint32_t)(na + 0x100000), 4);
	cr_assert_eq(last_map(t, 0)->new_addr, na + 0x100000, "an ECAM move inside the window");
	cr_assert_eq(mmio_rd(h, na + 0x100010, 4), 0x44332211u);

	/* Move the 64-bit BAR above 4 GiB (outside the window): through
	 * the ports it gets a range of its own and decodes. */
	cfg_wr(h, 5, 0x1c, 0x1, 4);
	cfg_wr(h, 5, 0x18, 0x0, 4);
	cr_assert_eq(bar_addr(h, 5, 2, true), 0x100000000ull);
	cr_assert_eq(last_map(t, 2)->new_addr, 0x100000000ull);
	cr_assert_eq(mmio_rd(h, 0x10000fff0ull, 2), 0xbbaa);
	/* Through ECAM, an outside move does not decode (see pci.h) ... */
	ecam_wr(h, 5, 0x18, 0x00200000, 4);
	cr_assert_eq(last_map(t, 2)->new_addr, PCI_ADDR_NONE);
	cr_assert_not(pci_host_mmio_read(h, 0x100200000ull, &v, 4));
	/* ... until written again through the ports. */
	cfg_wr(h, 5, 0x18, 0x00200000, 4);
	cr_assert_eq(last_map(t, 2)->new_addr, 0x100200000ull);
	cr_assert_eq(mmio_rd(h, 0x10020fff0ull, 2), 0xbbaa);
	pci_host_free(h);
	/* Removal stopped every BAR. */
	cr_assert_eq(last_map(t, 0)->new_addr, PCI_ADDR_NONE);
	cr_assert_eq(last_map(t, 2)->new_addr, PCI_ADDR_NONE);
	tdev_free(t);
}

Test(pci, bars_never_overlap_ram_or_each_other)
{
	static uint8_t ram[0x100000];
	struct vmkit_gmem mem;
	struct pci_host *h;
	struct tdev *a = tdev_new(false), *b = tdev_new(false);
	uint64_t a0, b0;
	uint32_t v;

	vmkit__gmem_init(&mem);
	cr_assert_geq(vmkit__gmem_add_host(&mem, 0x100000, sizeof(ram), ram, 0), 0);
	h = detached(&mem);
	cr_assert_eq(pci_host_add(h, &a->pci, 1), 1);
	cr_assert_eq(pci_host_add(h, &b->pci, 2), 2);
	a0 = bar_addr(h, 1, 0, false);
	b0 = bar_addr(h, 2, 0, false);
	cr_assert_neq(a0, b0);

	/* Over guest RAM: refused, and RAM is not touched through the BAR. */
	cfg_wr(h, 2, 0x10, 0x100000, 4);
	cr_assert_eq(last_map(b, 0)->new_addr, PCI_ADDR_NONE);
	cr_assert_not(pci_host_mmio_read(h, 0x100000, &v, 4));
	/* Over BAR0 of slot 1: slot 2's copy does not decode, slot 1 keeps it. */
	cfg_wr(h, 2, 0x10, (uint32_t)a0, 4);
	cr_assert_eq(last_map(b, 0)->new_addr, PCI_ADDR_NONE);
	a->bar0.reads = b->bar0.reads = 0;
	mmio_rd(h, a0, 4);
	cr_assert_eq(a->bar0.reads, 1);
	cr_assert_eq(b->bar0.reads, 0);
	/* Away from it again: decodes. */
	cfg_wr(h, 2, 0x10, (uint32_t)b0, 4);
	cr_assert_eq(last_map(b, 0)->new_addr, b0);
	/* Outside the window, just below RAM: its own range (granted when
	 * detached); then over RAM: refused. */
	cfg_wr(h, 2, 0x18, 0x0f8000u, 4);
	cr_assert_eq(bar_addr(h, 2, 2, true), 0xf0000, "address bits below the size drop");
	cr_assert_eq(last_map(b, 2)->new_addr, 0xf0000);
	cfg_wr(h, 2, 0x18, 0x118000u, 4);
	cr_assert_eq(bar_addr(h, 2, 2, true), 0x110000);
	cr_assert_eq(last_map(b, 2)->new_addr, PCI_ADDR_NONE, "a BAR inside RAM decodes");
	/* The top of the 64-bit space: no wrap. */
	cfg_wr(h, 2, 0x1c, 0xffffffffu, 4);
	cfg_wr(h, 2, 0x18, 0xffff0000u, 4);
	cr_assert_eq(last_map(b, 2)->new_addr, 0xffffffffffff0000ull);
	cr_assert_eq(mmio_rd(h, 0xfffffffffffffffcull, 4), 0);
	v = 0;
	cr_assert(pci_host_mmio_read(h, 0xfffffffffffffffeull, &v, 2));
	pci_host_free(h);
	vmkit__gmem_destroy(&mem);
	tdev_free(a);
	tdev_free(b);
}

/* ---- capabilities and MSI-X ------------------------------------------------------------ */

Test(pci, capability_list_walk)
{
	struct pci_host *h = detached(NULL);
	struct tdev *t = tdev_new(true);
	unsigned ids[8], n = 0;
	uint8_t big[200] = { 0x09 };

	cr_assert_eq(pci_device_add_cap(&t->pci, big, sizeof(big)), -ENOSPC, "header overflow");
	cr_assert_eq(pci_host_add(h, &t->pci, 7), 7);
	cr_assert(cfg_rd(h, 7, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	for (unsigned p = cfg_rd(h, 7, PCI_CAPABILITY_LIST, 1); p; p = cfg_rd(h, 7, p + 1, 1)) {
		cr_assert_lt(n, 8, "capability list loops");
		cr_assert_geq(p, 0x40);
		cr_assert_leq(p, 0xfc);
		cr_assert_eq(p % 4, 0, "capability at 0x%x not dword aligned", p);
		ids[n++] = cfg_rd(h, 7, p, 1);
		if (ids[n - 1] == PCI_CAP_ID_MSIX) {
			cr_assert_eq(cfg_rd(h, 7, p + 2, 2), NVEC - 1, "table size N-1");
			cr_assert_eq(cfg_rd(h, 7, p + 4, 4), 0x2000u | 0, "table in BAR0 at 0x2000");
			cr_assert_eq(cfg_rd(h, 7, p + 8, 4), 0x3000u | 0, "PBA in BAR0 at 0x3000");
		}
	}
	cr_assert_eq(n, 2);
	cr_assert_eq(ids[0], PCI_CAP_ID_VNDR);
	cr_assert_eq(ids[1], PCI_CAP_ID_MSIX);
	pci_host_free(h);
	tdev_free(t);
}

static unsigned msix_cap(struct pci_host *h, unsigned slot)
{
	for (unsigned p = cfg_rd(h, slot, PCI_CAPABILITY_LIST, 1); p; p = cfg_rd(h, slot, p + 1, 1))
		if (cfg_rd(h, slot, p, 1) == PCI_CAP_ID_MSIX)
			return p;
	cr_assert_fail("no MSI-X capability");
	return 0;
}

static void msix_entry(struct pci_host *h, uint64_t table, unsigned v, uint64_t addr,
		       uint32_t data)
{
	uint32_t w;

	w = (uint32_t)addr;
	cr_assert(pci_host_mmio_write(h, table + 16 * v, &w, 4));
	w = (uint32_t)(addr >> 32);
	cr_assert(pci_host_mmio_write(h, table + 16 * v + 4, &w, 4));
	cr_assert(pci_host_mmio_write(h, table + 16 * v + 8, &data, 4));
}

static void msix_mask(struct pci_host *h, uint64_t table, unsigned v, bool masked)
{
	uint32_t w = masked ? 1 : 0;

	cr_assert(pci_host_mmio_write(h, table + 16 * v + 12, &w, 4));
}

Test(pci, msix_table_reads_and_writes)
{
	struct pci_host *h = detached(NULL);
	struct tdev *t = tdev_new(true);
	uint64_t table, q;

	cr_assert_eq(pci_host_add(h, &t->pci, 1), 1);
	table = bar_addr(h, 1, 0, false) + 0x2000;
	for (unsigned v = 0; v < NVEC; v++) {
		cr_assert_eq(mmio_rd(h, table + 16 * v, 4), 0);
		cr_assert_eq(mmio_rd(h, table + 16 * v + 12, 4), 1, "vectors start masked");
	}
	msix_entry(h, table, 1, 0xfee01003ull, 0x4041);
	cr_assert_eq(mmio_rd(h, table + 16, 4), 0xfee01000u, "address bits 1:0 are read-only 0");
	cr_assert_eq(mmio_rd(h, table + 24, 4), 0x4041);
	/* Vector control: only the mask bit. */
	q = 0xfffffffeu;
	cr_assert(pci_host_mmio_write(h, table + 28, &q, 4));
	cr_assert_eq(mmio_rd(h, table + 28, 4), 0);
	/* 8-byte access to address low/high, and bytes. */
	q = 0x00000001fee02000ull;
	cr_assert(pci_host_mmio_write(h, table + 32, &q, 8));
	q = 0;
	cr_assert(pci_host_mmio_read(h, table + 32, &q, 8));
	cr_assert_eq(q, 0x00000001fee02000ull);
	cr_assert_eq(mmio_rd(h, table + 33, 1), 0x20);
	/* The table and PBA never reach the device's own handler. */
	cr_assert_eq(t->bar0.reads + t->bar0.writes, 0);
	/* The PBA is read-only. */
	q = ~0ull;
	cr_assert(pci_host_mmio_write(h, table + 0x1000, &q, 8));
	cr_assert_eq(mmio_rd(h, table + 0x1000, 4), 0);
	/* Past the table (vector 3 does not exist): the device's own bytes. */
	mmio_rd(h, table + 16 * NVEC, 4);
	cr_assert_eq(t->bar0.reads, 1);
	/* A read straddling the table's end: table part, device part. */
	t->bar0.mem[0x2000 + 16 * NVEC] = 0x77;
	cr_assert_eq(mmio_rd(h, table + 16 * NVEC - 2, 4), 0x00770000u);
	pci_host_free(h);
	tdev_free(t);
}

Test(pci, msix_masking_and_pending_bits)
{
	struct pci_host *h = detached(NULL);
	struct tdev *t = tdev_new(true);
	uint64_t table, pba;
	unsigned cap;

	cr_assert_eq(pci_host_add(h, &t->pci, 1), 1);
	cap = msix_cap(h, 1);
	table = bar_addr(h, 1, 0, false) + 0x2000;
	pba = table + 0x1000;
	msix_entry(h, table, 0, 0xfee00000u, 0x30);
	msix_entry(h, table, 2, 0xfee01000u, 0x32);

	cr_assert_eq(pci_msix_notify(&t->pci, 0), -EINVAL, "MSI-X not enabled");
	cr_assert_not(pci_msix_enabled(&t->pci));
	/* Enable with the function masked. */
	cfg_wr(h, 1, cap + 3, 0xc0, 1);
	cr_assert(pci_msix_enabled(&t->pci));
	msix_mask(h, table, 0, false);
	n_events = 0;
	cr_assert_eq(pci_msix_notify(&t->pci, 0), 0, "function masked: pending");
	cr_assert_eq(n_events, 0);
	cr_assert_eq(mmio_rd(h, pba, 4), 1, "pending bit 0");
	/* Function unmask: the pending vector goes out. */
	cfg_wr(h, 1, cap + 3, 0x80, 1);
	cr_assert_eq(n_events, 1);
	cr_assert(events[0].msi);
	cr_assert_eq(events[0].addr, 0xfee00000u);
	cr_assert_eq(events[0].gsi_or_data, 0x30);
	cr_assert_eq(mmio_rd(h, pba, 4), 0);
	/* Unmasked: straight out. */
	cr_assert_eq(pci_msix_notify(&t->pci, 0), 1);
	cr_assert_eq(n_events, 2);
	/* Vector 2 is still masked: pending until its mask bit clears. */
	cr_assert_eq(pci_msix_notify(&t->pci, 2), 0);
	cr_assert_eq(pci_msix_notify(&t->pci, 2), 0, "a second event while pending stays one");
	cr_assert_eq(mmio_rd(h, pba, 4), 4);
	msix_mask(h, table, 2, false);
	cr_assert_eq(n_events, 3);
	cr_assert_eq(events[2].gsi_or_data, 0x32);
	cr_assert_eq(events[2].addr, 0xfee01000u);
	cr_assert_eq(mmio_rd(h, pba, 4), 0);
	/* The message is read when it is sent: a reprogrammed entry counts. */
	msix_mask(h, table, 2, true);
	cr_assert_eq(pci_msix_notify(&t->pci, 2), 0);
	msix_entry(h, table, 2, 0xfee03000u, 0x99);
	msix_mask(h, table, 2, false);
	cr_assert_eq(events[n_events - 1].gsi_or_data, 0x99);
	/* No such vector. */
	cr_assert_eq(pci_msix_notify(&t->pci, NVEC), -EINVAL);
	cr_assert_eq(pci_msix_notify(&t->pci, 0xffff), -EINVAL);
	/* Disabled again: nothing goes out, and the vector is not lost as a
	 * pending bit either (MSI-X off means "use INTx"). */
	cfg_wr(h, 1, cap + 3, 0x00, 1);
	n_events = 0;
	cr_assert_eq(pci_msix_notify(&t->pci, 0), -EINVAL);
	cr_assert_eq(n_events, 0);
	pci_host_free(h);
	tdev_free(t);
}

/* ---- INTx --------------------------------------------------------------------------------- */

Test(pci, intx_level_status_bit_and_disable)
{
	struct pci_host *h = detached(NULL);
	struct tdev *a = tdev_new(true), *b = tdev_new(false);
	unsigned gsi;

	cr_assert_eq(pci_host_add(h, &a->pci, 2), 2);
	cr_assert_eq(pci_host_add(h, &b->pci, 6), 6);
	gsi = pci_intx_gsi(2, 0);
	cr_assert_eq(gsi, 16 + (2 + 0) % 4);
	cr_assert_eq(pci_intx_gsi(6, 0), gsi, "slots 2 and 6 share INTA's GSI");
	cr_assert_eq(pci_intx_gsi(1, 3), 16, "swizzle");

	pci_intx_set(&a->pci, true);
	cr_assert(gsi_level[gsi]);
	cr_assert(cfg_rd(h, 2, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	cr_assert_not(cfg_rd(h, 6, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	/* Interrupt Disable: the line drops, the status bit stays. */
	cfg_wr(h, 2, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_INTX_DISABLE, 2);
	cr_assert_not(gsi_level[gsi]);
	cr_assert(cfg_rd(h, 2, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	cfg_wr(h, 2, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	cr_assert(gsi_level[gsi], "re-asserted when Interrupt Disable clears");
	/* A shared line stays up while either device asserts it. */
	pci_intx_set(&b->pci, true);
	pci_intx_set(&a->pci, false);
	cr_assert(gsi_level[gsi], "slot 6 still asserts");
	cr_assert_not(cfg_rd(h, 2, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	pci_intx_set(&b->pci, false);
	cr_assert_not(gsi_level[gsi]);
	/* With MSI-X enabled the device does not use INTx. */
	cfg_wr(h, 2, msix_cap(h, 2) + 3, 0x80, 1);
	pci_intx_set(&a->pci, true);
	cr_assert_not(gsi_level[gsi]);
	cfg_wr(h, 2, msix_cap(h, 2) + 3, 0x00, 1);
	cr_assert(gsi_level[gsi]);
	/* Removing the device drops its line. */
	pci_host_remove(h, &a->pci);
	cr_assert_not(gsi_level[gsi]);
	pci_host_free(h);
	tdev_free(a);
	tdev_free(b);
}

/* ---- building and attaching ------------------------------------------------------------ */

Test(pci, slots_and_bad_devices)
{
	struct pci_host *h = detached(NULL);
	struct tdev *t[4];
	struct pci_device d;

	for (int i = 0; i < 4; i++)
		t[i] = tdev_new(true);
	cr_assert_eq(pci_host_add(h, &t[0]->pci, 0), -EINVAL, "slot 0 is the host bridge");
	cr_assert_eq(pci_host_add(h, &t[0]->pci, 32), -EINVAL);
	cr_assert_eq(pci_host_add(h, &t[0]->pci, 31), 31);
	cr_assert_eq(pci_host_add(h, &t[0]->pci, 30), -EINVAL, "added twice");
	cr_assert_eq(pci_host_add(h, &t[1]->pci, 31), -EBUSY);
	cr_assert_eq(pci_host_add(h, &t[1]->pci, -1), 1);
	pci_host_remove(h, &t[1]->pci);
	cr_assert_eq(cfg_rd(h, 1, 0, 4), 0xffffffffu, "removed");
	cr_assert_eq(pci_host_add(h, &t[2]->pci, -1), 1, "slot 1 free again");
	pci_host_free(h);

	pci_device_init(&d, "bad", 1, 2, 0, 0, 0, 0);
	cr_assert_eq(pci_device_add_bar(&d, 0, 0x800, false, false, &region_ops, NULL), -EINVAL,
		     "below 4 KiB");
	cr_assert_eq(pci_device_add_bar(&d, 0, 0x3000, false, false, &region_ops, NULL), -EINVAL,
		     "not a power of two");
	cr_assert_eq(pci_device_add_bar(&d, 5, 0x1000, true, false, &region_ops, NULL), -EINVAL,
		     "64-bit BAR needs two registers");
	cr_assert_eq(pci_device_add_bar(&d, 6, 0x1000, false, false, &region_ops, NULL), -EINVAL);
	cr_assert_eq(pci_device_add_bar(&d, 0, 0x1000, false, false, NULL, NULL), -EINVAL);
	cr_assert_eq(pci_device_add_bar(&d, 0, 1ull << 32, false, false, &region_ops, NULL),
		     -EINVAL, "4 GiB in a 32-bit BAR");
	cr_assert_eq(pci_device_add_bar(&d, 1, 0x1000, true, false, &region_ops, NULL), 0);
	cr_assert_eq(pci_device_add_bar(&d, 2, 0x1000, false, false, &region_ops, NULL), -EINVAL,
		     "upper half of BAR1");
	cr_assert_eq(pci_device_add_msix(&d, 0, 1, 0, 0x800), -EINVAL);
	cr_assert_eq(pci_device_add_msix(&d, 4, 0, 0, 0x800), -EINVAL, "no BAR0");
	cr_assert_eq(pci_device_add_msix(&d, 4, 1, 4, 0x800), -EINVAL, "misaligned table");
	cr_assert_eq(pci_device_add_msix(&d, 4, 1, 0, 0x20), -EINVAL, "PBA inside the table");
	cr_assert_eq(pci_device_add_msix(&d, 256, 1, 0, 0xff8), -EINVAL, "table past the BAR");
	cr_assert_gt(pci_device_add_msix(&d, 4, 1, 0, 0x800), 0);
	pci_device_release(&d);

	/* The window fills up: 128 MiB BARs, two fit in 256 MiB. */
	h = detached(NULL);
	for (int i = 0; i < 3; i++) {
		struct pci_device *p = &t[i]->pci;
		pci_device_release(p);
		pci_device_init(p, "big", 1, 2, 0, 0, 0, 0);
		cr_assert_eq(pci_device_add_bar(p, 0, 128u << 20, false, false, &region_ops, NULL), 0);
		cr_assert_eq(pci_host_add(h, p, -1), i < 2 ? i + 1 : -ENOSPC, "device %d", i);
	}
	pci_host_free(h);
	for (int i = 0; i < 4; i++)
		tdev_free(t[i]);
}

/* ---- hostile guest -------------------------------------------------------------------- */

Test(pci, hostile_config_and_bar_accesses)
{
	static uint8_t ram[0x10000];
	struct vmkit_gmem mem;
	struct pci_host *h;
	struct tdev *t = tdev_new(true);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	uint8_t buf[16];

	vmkit__gmem_init(&mem);
	cr_assert_geq(vmkit__gmem_add_host(&mem, 0, sizeof(ram), ram, 0), 0);
	h = detached(&mem);
	cr_assert_eq(pci_host_add(h, &t->pci, 9), 9);
	/* Out-of-range calls are ignored (reads: all ones). */
	memset(buf, 0, sizeof(buf));
	pci_host_pio_read(h, 7, buf, 4);
	cr_assert_eq(buf[0], 0xff);
	pci_host_pio_read(h, 100, buf, 1);
	pci_host_pio_write(h, 6, buf, 4);
	pci_host_ecam_read(h, X86_PCI_ECAM_SIZE - 2, buf, 4);
	cr_assert_eq(buf[0], 0xff);
	pci_host_ecam_write(h, X86_PCI_ECAM_SIZE, buf, 4);
	pci_host_ecam_read(h, 0, buf, 9);
	pci_device_bar_rw(&t->pci, 0, BAR0_SIZE - 2, buf, 4, false);
	cr_assert_eq(buf[0], 0xff);
	pci_device_bar_rw(&t->pci, 4, 0, buf, 4, true);
	pci_device_bar_rw(&t->pci, 0, 0, buf, 4, false);
	cr_assert(!pci_host_mmio_read(h, 0, buf, 4));

	/* Random config writes of every width at every offset of every
	 * slot, through both mechanisms, interleaved with BAR and interrupt
	 * traffic: no crash, and the read-only identity stays. */
	for (unsigned i = 0; i < 200000; i++) {
		uint32_t v, len, reg, slot, r;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v = (uint32_t)(x >> 32);
		len = 1u << (x % 3);
		reg = (uint32_t)(x >> 8) % 4096;
		slot = (x >> 60) ? 9 : (uint32_t)(x >> 20) % 32; /* mostly the device */
		r = (uint32_t)(x >> 28) % 8;
		if (r == 0) {
			ecam_wr(h, slot, reg & ~(len - 1), v, len);
		} else if (r == 1) {
			cfg_wr(h, slot, reg % 256 & ~(len - 1), v, len);
		} else if (r == 2) {
			pci_host_pio_write(h, 0, &v, 4); /* any address, enable or not */
			pci_host_pio_write(h, 4 + (reg & 3), &v, len > 4 - (reg & 3) ? 1 : len);
		} else if (r == 3) {
			uint64_t a = t->pci.bar[0].addr;
			if (a != PCI_ADDR_NONE)
				pci_host_mmio_write(h, a + (x >> 40) % (BAR0_SIZE + 8), &v, len);
		} else if (r == 4) {
			pci_msix_notify(&t->pci, (uint16_t)(x >> 48));
		} else if (r == 5) {
			pci_intx_set(&t->pci, x & 1);
		} else {
			uint64_t a = (x >> 16) % 4 ? t->pci.bar[0].addr : (x >> 12);
			pci_host_mmio_read(h, a == PCI_ADDR_NONE ? 0 : a + (x >> 44) % 0x5000, buf,
					   (uint32_t)(1 + (x >> 56) % 8));
		}
		if (i % 1000 == 0)
			cr_assert_eq(cfg_rd(h, 9, 0, 4), 0x10421af4u);
	}
	for (size_t i = 0; i < sizeof(ram); i++)
		cr_assert_eq(ram[i], 0, "RAM byte 0x%zx written through a BAR", i);
	pci_host_free(h);
	vmkit__gmem_destroy(&mem);
	tdev_free(t);
}

/* ---- the DSDT entries, through iasl ---------------------------------------------------- */

/* One AML integer as iasl prints it. */
static uint64_t dsl_int(const char *tok)
{
	if (!strncmp(tok, "Zero", 4))
		return 0;
	if (!strncmp(tok, "One", 3))
		return 1;
	return strtoull(tok, NULL, 16);
}

/* Read the _PRT back from iasl's disassembly: 128 entries, each slot's
 * pins 0-3 on GSI 16 + (slot + pin) % 4, no link device. */
static void check_prt(const char *dsl)
{
	const char *p = strstr(dsl, "Name (_PRT, Package (0x80)");
	bool seen[32][4] = { { false } };

	cr_assert(p, "no 128-entry _PRT");
	for (unsigned n = 0; n < 128; n++) {
		uint64_t v[4];
		char *end;

		p = strstr(p, "Package (0x04)");
		cr_assert(p, "_PRT entry %u missing", n);
		p = strchr(p, '{') + 1;
		for (unsigned k = 0; k < 4; k++) {
			while (*p == ' ' || *p == '\n' || *p == ',')
				p++;
			v[k] = dsl_int(p);
			end = strpbrk((char *)p, ",}");
			cr_assert(end);
			p = end;
		}
		cr_assert_eq(v[0] & 0xffff, 0xffff, "entry %u: address 0x%llx names a function", n,
			     (unsigned long long)v[0]);
		cr_assert_lt(v[0] >> 16, 32);
		cr_assert_lt(v[1], 4);
		cr_assert_eq(v[2], 0, "entry %u uses a link device", n);
		cr_assert_eq(v[3], 16 + ((v[0] >> 16) + v[1]) % 4, "slot %llu pin %llu: GSI %llu",
			     (unsigned long long)(v[0] >> 16), (unsigned long long)v[1],
			     (unsigned long long)v[3]);
		cr_assert_not(seen[v[0] >> 16][v[1]], "duplicate _PRT entry");
		seen[v[0] >> 16][v[1]] = true;
	}
}

static void dsdt_hook(void *ctx, struct x86_buf *sb)
{
	pci_host_dsdt(ctx, sb);
}


Test(pci, dsdt_root_bridge_through_iasl)
{
	struct x86_acpi_config c = { 0 };
	struct x86_acpi_tables t;
	struct pci_host *h = detached(NULL);
	char dir[] = "/tmp/vmkit-pci-XXXXXX", cmd[700], path[600];
	const uint8_t *dsdt;
	uint64_t xsdt, fadt;
	char *dsl;
	FILE *f;

	if (!have_iasl())
		return;
	c.ncpus = 1;
	c.dsdt_extra = dsdt_hook;
	c.dsdt_extra_ctx = h;
	c.pci = true;
	c.pci_ecam_base = X86_PCI_ECAM_BASE;
	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &t), 0, "%s", vmkit_last_error());
	memcpy(&xsdt, t.image.data + 24, 8);
	memcpy(&fadt, t.image.data + (xsdt - t.base) + 36, 8);
	memcpy(&xsdt, t.image.data + (fadt - t.base) + 140, 8); /* X_DSDT */
	dsdt = t.image.data + (xsdt - t.base);
	cr_assert(!memcmp(dsdt, "DSDT", 4));
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/dsdt.dat", dir);
	f = fopen(path, "wb");
	cr_assert(f);
	cr_assert_eq(fwrite(dsdt, 1, (size_t)(dsdt[4] | dsdt[5] << 8 | dsdt[6] << 16), f),
		     (size_t)(dsdt[4] | dsdt[5] << 8 | dsdt[6] << 16));
	fclose(f);
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -d dsdt.dat >log 2>&1", dir);
	cr_assert_eq(system(cmd), 0, "iasl -d failed (%s/log)", dir);
	snprintf(path, sizeof(path), "%s/dsdt.dsl", dir);
	dsl = slurp(path);
	cr_assert(strstr(dsl, "Device (PCI0)"), "%s", dsl);
	cr_assert(strstr(dsl, "EisaId (\"PNP0A08\")"));
	cr_assert(strstr(dsl, "EisaId (\"PNP0A03\")"));
	cr_assert(strstr(dsl, "Name (_SEG, Zero)"));
	cr_assert(strstr(dsl, "Name (_BBN, Zero)"));
	cr_assert(strstr(dsl, "Name (_UID, Zero)"));
	cr_assert(strstr(dsl, "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode"));
	cr_assert(strstr(dsl, "0x0CF7"), "I/O below the config ports");
	cr_assert(strstr(dsl, "0x0D00"));
	cr_assert(strstr(dsl, "0xC0000000,"), "BAR window start");
	cr_assert(strstr(dsl, "0xCFFFFFFF,"), "BAR window end");
	check_prt(dsl);
	cr_assert(strstr(dsl, "EisaId (\"PNP0C02\")"));
	cr_assert(strstr(strstr(dsl, "PNP0C02"), "Memory32Fixed (ReadWrite,"));
	cr_assert(strstr(strstr(dsl, "PNP0C02"), "0xE0000000,         // Address Base"),
		  "ECAM reservation:\n%s", strstr(dsl, "PNP0C02"));
	cr_assert(strstr(strstr(dsl, "PNP0C02"), "0x00100000,         // Address Length"));
	free(dsl);
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -p re dsdt.dsl >re.log 2>&1", dir);
	cr_assert_eq(system(cmd), 0, "the DSDT does not recompile (see %s/re.log)", dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
	x86_acpi_free(&t);
	pci_host_free(h);
}

/* ---- in a real VM --------------------------------------------------------------------- */

static unsigned cf9_reads, cf9_writes;
static uint8_t cf9_value;

static void cf9_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	cr_assert_eq(off, 0);
	cr_assert_eq(len, 1);
	*(uint8_t *)data = 0x42;
	cf9_reads++;
}

static void cf9_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	cr_assert_eq(off, 0);
	cr_assert_eq(len, 1);
	cf9_value = *(const uint8_t *)data;
	cf9_writes++;
}

static const vmkit_io_ops cf9_ops = { sizeof(vmkit_io_ops), 0, cf9_read, cf9_write };

Test(pci, vm_ports_ecam_window_and_outside_bars)
{
	vmkit_host *host = kvmtest_host();
	vmkit_memory_region r = VMKIT_MEMORY_REGION_INIT;
	struct pci_host *h;
	struct tdev *t = tdev_new(true);
	vmkit_vm *vm;
	uint32_t v;
	uint8_t b;

	cr_assert_eq(vmkit_vm_new(host, NULL, &vm), 0, "%s", vmkit_last_error());
	r.gpa = 0;
	r.length = 16 << 20;
	cr_assert_geq(vmkit_vm_add_memory(vm, &r), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vm_register_pio(vm, 0xcf9, 1, &cf9_ops, NULL, 0), 0);
	cr_assert_eq(pci_host_new(vm, &h), 0, "%s", vmkit_last_error());
	cr_assert_eq(pci_host_add(h, &t->pci, 1), 1);

	/* A dword at 0xcf8 is the address register, a byte at 0xcf9 the
	 * reset control register's. */
	v = 0x80000800u;
	cr_assert(vmkit__bus_write(&vm->pio, 0xcf8, &v, 4));
	cr_assert_eq(cf9_writes, 0, "address bits reached the reset register");
	v = 0;
	cr_assert(vmkit__bus_read(&vm->pio, 0xcfc, &v, 4));
	cr_assert_eq(v, 0x10421af4u);
	b = 0x06;
	cr_assert(vmkit__bus_write(&vm->pio, 0xcf9, &b, 1));
	cr_assert_eq(cf9_writes, 1);
	cr_assert_eq(cf9_value, 0x06);
	cr_assert(vmkit__bus_read(&vm->pio, 0xcf9, &b, 1));
	cr_assert_eq(b, 0x42);
	/* ECAM and the window on the MMIO bus. */
	v = 0;
	cr_assert(vmkit__bus_read(&vm->mmio, X86_PCI_ECAM_BASE + (1 << 15), &v, 4));
	cr_assert_eq(v, 0x10421af4u);
	t->bar0.mem[0] = 0x5a;
	v = 0;
	cr_assert(vmkit__bus_read(&vm->mmio, t->pci.bar[0].addr, &v, 1));
	cr_assert_eq(v, 0x5a);
	/* SeaBIOS-style placement below the IOAPIC: its own MMIO range. */
	v = 0xfebfc000u;
	cr_assert(vmkit__bus_write(&vm->pio, 0xcf8, &(uint32_t){ 0x80000810u }, 4));
	cr_assert(vmkit__bus_write(&vm->pio, 0xcfc, &v, 4));
	cr_assert_eq(t->pci.bar[0].addr, 0xfebfc000u);
	v = 0;
	cr_assert(vmkit__bus_read(&vm->mmio, 0xfebfc000u, &v, 1));
	cr_assert_eq(v, 0x5a);
	/* Over guest RAM, or over the ECAM range: refused, nothing claimed. */
	v = 0x00100000u;
	cr_assert(vmkit__bus_write(&vm->pio, 0xcfc, &v, 4));
	cr_assert_eq(t->pci.bar[0].addr, PCI_ADDR_NONE);
	cr_assert_not(vmkit__bus_read(&vm->mmio, 0xfebfc000u, &v, 4), "stale range left behind");
	v = (uint32_t)X86_PCI_ECAM_BASE;
	cr_assert(vmkit__bus_write(&vm->pio, 0xcfc, &v, 4));
	cr_assert_eq(t->pci.bar[0].addr, PCI_ADDR_NONE);
	v = 0;
	cr_assert(vmkit__bus_read(&vm->mmio, X86_PCI_ECAM_BASE + (1 << 15), &v, 4));
	cr_assert_eq(v, 0x10421af4u, "ECAM still answers");
	/* An ECAM write moving it outside the window: no deadlock, no decode. */
	v = 0xfeb00000u;
	cr_assert(vmkit__bus_write(&vm->mmio, X86_PCI_ECAM_BASE + (1 << 15) + 0x10, &v, 4));
	cr_assert_eq(t->pci.bar[0].addr, PCI_ADDR_NONE);
	/* Back into the window through ECAM: decodes at once. */
	v = (uint32_t)X86_PCI_MMIO32_BASE + 0x100000;
	cr_assert(vmkit__bus_write(&vm->mmio, X86_PCI_ECAM_BASE + (1 << 15) + 0x10, &v, 4));
	cr_assert_eq(t->pci.bar[0].addr, X86_PCI_MMIO32_BASE + 0x100000);
	v = 0;
	cr_assert(vmkit__bus_read(&vm->mmio, X86_PCI_MMIO32_BASE + 0x100000, &v, 1));
	cr_assert_eq(v, 0x5a);

	pci_host_free(h);
	/* Everything given back, the reset register restored. */
	cr_assert_not(vmkit__bus_read(&vm->mmio, X86_PCI_ECAM_BASE, &v, 4));
	cr_assert_not(vmkit__bus_read(&vm->mmio, X86_PCI_MMIO32_BASE, &v, 4));
	cr_assert_not(vmkit__bus_read(&vm->pio, 0xcfc, &v, 4));
	cr_assert(vmkit__bus_write(&vm->pio, 0xcf9, &b, 1));
	cr_assert_eq(cf9_writes, 2);
	cr_assert_eq(vmkit_vm_register_mmio(vm, 0xfeb00000u, 0x1000, &cf9_ops, NULL, 0), 0,
		     "an outside range left registered");
	vmkit_vm_free(vm);
	vmkit_host_free(host);
	tdev_free(t);
}

/* The polarity finding of pci.h, checked on this host's KVM: the _PRT's
 * static GSIs make Linux program the IOAPIC pin level-triggered and
 * ACTIVE-LOW; KVM_IRQ_LINE level 1 (what pci_intx_set sends) must still
 * deliver the vector, and level 0 must drop the pin. And an MSI-X vector
 * reaches the LAPIC through KVM_SIGNAL_MSI. Observed in the LAPIC's IRR
 * and the IOAPIC's IRR, no guest code needed. */
static bool lapic_irr(vmkit_vcpu *v, unsigned vector)
{
	vmkit_lapic l;
	uint32_t w;

	cr_assert_eq(vmkit_vcpu_get_lapic(v, &l), 0, "%s", vmkit_last_error());
	memcpy(&w, &l.regs[0x200 + 0x10 * (vector / 32)], 4);
	return w >> (vector % 32) & 1;
}

Test(pci, vm_intx_active_low_and_msi_reach_the_lapic)
{
	vmkit_host *host = kvmtest_host();
	struct pci_host *h;
	struct tdev *t = tdev_new(true);
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };
	vmkit_vcpu *cpu;
	vmkit_lapic l;
	vmkit_vm *vm;
	uint64_t table;
	uint32_t svr, gsi;

	cr_assert_eq(vmkit_vm_new(host, NULL, &vm), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_new(vm, 0, &cpu), 0, "%s", vmkit_last_error());
	/* Software-enable the LAPIC (APIC id 0). */
	cr_assert_eq(vmkit_vcpu_get_lapic(cpu, &l), 0);
	memcpy(&svr, &l.regs[0xf0], 4);
	svr |= 0x100;
	memcpy(&l.regs[0xf0], &svr, 4);
	cr_assert_eq(vmkit_vcpu_set_lapic(cpu, &l), 0);
	cr_assert_eq(pci_host_new(vm, &h), 0, "%s", vmkit_last_error());
	cr_assert_eq(pci_host_add(h, &t->pci, 1), 1);
	gsi = pci_intx_gsi(1, 0);

	/* The pin as Linux programs it for a static _PRT entry. */
	cr_assert_eq(ioctl(vm->fd, KVM_GET_IRQCHIP, &chip), 0);
	/* vector 0x70, fixed, physical to APIC 0, polarity (bit 13) low,
	 * trigger (bit 15) level, unmasked */
	chip.chip.ioapic.redirtbl[gsi].bits = 0x70 | 1u << 13 | 1u << 15;
	cr_assert_eq(ioctl(vm->fd, KVM_SET_IRQCHIP, &chip), 0);
	cr_assert_not(lapic_irr(cpu, 0x70));

	pci_intx_set(&t->pci, true);
	cr_assert(lapic_irr(cpu, 0x70), "an asserted INTx on an active-low pin was not delivered");
	cr_assert_eq(ioctl(vm->fd, KVM_GET_IRQCHIP, &chip), 0);
	cr_assert(chip.chip.ioapic.irr >> gsi & 1, "IOAPIC pin %u not asserted", gsi);
	pci_intx_set(&t->pci, false);
	cr_assert_eq(ioctl(vm->fd, KVM_GET_IRQCHIP, &chip), 0);
	cr_assert_not(chip.chip.ioapic.irr >> gsi & 1, "IOAPIC pin %u still asserted", gsi);

	/* MSI-X vector 1 -> LAPIC vector 0x71. */
	table = t->pci.bar[0].addr + 0x2000;
	cr_assert(pci_host_mmio_write(h, table + 16, &(uint32_t){ 0xfee00000u }, 4));
	cr_assert(pci_host_mmio_write(h, table + 24, &(uint32_t){ 0x71 }, 4));
	cr_assert(pci_host_mmio_write(h, table + 28, &(uint32_t){ 0 }, 4));
	cfg_wr(h, 1, t->pci.msix_cap + 3, 0x80, 1);
	cr_assert_not(lapic_irr(cpu, 0x71));
	cr_assert_eq(pci_msix_notify(&t->pci, 1), 1);
	cr_assert(lapic_irr(cpu, 0x71), "MSI-X vector 1 did not reach the LAPIC");

	pci_host_free(h);
	vmkit_vm_free(vm);
	vmkit_host_free(host);
	tdev_free(t);
}
