/* SPDX-License-Identifier: MIT */
/* The PCI host bridge of bus 0 and the generic device model (see pci.h
 * for what is claimed where, the locks and the interrupt choices). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pci/pci.h"
#include "arch/x86/aml.h"

#define WIN_BASE X86_PCI_MMIO32_BASE
#define WIN_SIZE X86_PCI_MMIO32_SIZE
#define CF8_ENABLE 0x80000000u
/* Enable, bus, device, function and dword register: the rest reads 0. */
#define CF8_MASK 0x80fffffcu
#define CF9_PORT 0xcf9
/* The host bridge's ids: Intel 440FX (see pci.h for why). */
#define HOST_VENDOR 0x8086
#define HOST_DEVICE 0x1237
#define CLASS_HOST_BRIDGE 0x060000u
#define COMMAND_PARITY 0x0040u
#define COMMAND_SERR 0x0100u
#define INTX_PINS 4

struct pci_host {
	vmkit_vm *vm;                     /* NULL: detached */
	struct pci_host_hooks hooks;
	pthread_rwlock_t lock;
	pthread_mutex_t reg_lock;
	pthread_mutex_t irq_lock;
	uint32_t cf8;                     /* config address register */
	struct pci_device *dev[PCI_SLOTS];
	struct pci_device bridge;         /* slot 0 */
	uint64_t next_bar;                /* BAR window allocator */
	unsigned gsi_users[INTX_PINS];    /* devices asserting each INTx GSI */
	bool pio_registered, ecam_registered, window_registered;
	const vmkit_io_ops *cf9_ops;      /* the reset control register we took over */
	void *cf9_opaque;
};

/* ---- little helpers ------------------------------------------------------- */

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return rd16(p) | (uint32_t)rd16(p + 2) << 16;
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)v);
	wr16(p + 2, (uint16_t)(v >> 16));
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	/* Lengths are > 0 and neither range wraps. */
	return a <= b + (blen - 1) && b <= a + (alen - 1);
}

static void hlog(const struct pci_host *h, const char *fmt, ...) VMKIT_PRINTF(2, 3);
static void hlog(const struct pci_host *h, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (!h->vm)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vmkit__log(&h->vm->log, VMKIT_LOG_WARN, "%s", msg);
}

uint32_t pci_intx_gsi(unsigned slot, unsigned pin)
{
	return X86_PCI_INTX_GSI_BASE + (slot + pin) % INTX_PINS;
}

/* ---- building a device ------------------------------------------------------ */

void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
		     uint8_t revision, uint32_t class_code, uint16_t subsys_vendor,
		     uint16_t subsys_id)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name ? name : "pci");
	wr16(d->config + PCI_VENDOR_ID, vendor);
	wr16(d->config + PCI_DEVICE_ID, device);
	d->config[PCI_REVISION_ID] = revision;
	d->config[PCI_CLASS_PROG] = (uint8_t)class_code;
	d->config[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	d->config[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	wr16(d->config + PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
	wr16(d->config + PCI_SUBSYSTEM_ID, subsys_id);
	/* Memory decode starts ON: pci_host_add pre-assigns the BARs, and a
	 * kernel booted directly (no firmware) uses the devices as it finds
	 * them. Firmware reprograms BARs and command anyway. */
	wr16(d->config + PCI_COMMAND, PCI_COMMAND_MEMORY);
	wr16(d->wmask + PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | COMMAND_PARITY |
				      COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
	d->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	d->wmask[PCI_LATENCY_TIMER] = 0xff;
	d->wmask[PCI_INTERRUPT_LINE] = 0xff;
	d->cap_next = 0x40;
	d->slot = -1;
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		d->bar[i].addr = d->bar[i].reg = d->bar[i].refused = PCI_ADDR_NONE;
		d->bar[i].dev = d;
		d->bar[i].index = i;
	}
}

/* Is BAR register @i the upper half of a 64-bit BAR? */
static bool upper_half(const struct pci_device *d, unsigned i)
{
	return i > 0 && d->bar[i - 1].size && d->bar[i - 1].is64;
}

int pci_device_add_bar(struct pci_device *d, unsigned bar, uint64_t size, bool is64,
		       bool prefetch, const vmkit_io_ops *ops, void *opaque)
{
	uint64_t mask;
	uint32_t off;

	if (!d || d->host || bar >= PCI_NUM_BARS || (is64 && bar + 1 >= PCI_NUM_BARS) || !ops ||
	    ops->size < sizeof(*ops) || size < PCI_BAR_MIN_SIZE || (size & (size - 1)) ||
	    (!is64 && size > 0x80000000ull) || size > (1ull << 46) || d->bar[bar].size ||
	    upper_half(d, bar) || (is64 && d->bar[bar + 1].size))
		return vmkit__err(-EINVAL, "PCI %s: BAR %u (%" PRIu64 " bytes) cannot be added",
				  d ? d->name : "?", bar, size);
	d->bar[bar].size = size;
	d->bar[bar].is64 = is64;
	d->bar[bar].prefetch = prefetch;
	d->bar[bar].ops = ops;
	d->bar[bar].opaque = opaque;
	off = PCI_BASE_ADDRESS_0 + 4 * bar;
	wr32(d->config + off, (is64 ? PCI_BAR_MEM_TYPE_64 : 0) | (prefetch ? PCI_BAR_MEM_PREFETCH : 0));
	/* Address bits below the size read back as 0: that is the sizing
	 * protocol (write all ones, read ~(size - 1) | flags). */
	mask = ~(size - 1);
	wr32(d->wmask + off, (uint32_t)mask & ~0xfu);
	if (is64)
		wr32(d->wmask + off + 4, (uint32_t)(mask >> 32));
	return 0;
}

int pci_device_add_cap(struct pci_device *d, const void *cap, uint32_t len)
{
	uint32_t off;

	if (!d || d->host || !cap || len < 2)
		return vmkit__err(-EINVAL, "PCI: bad capability");
	off = (d->cap_next + 3u) & ~3u;
	if (off + len > PCI_CONFIG_SIZE)
		return vmkit__err(-ENOSPC, "PCI %s: no room for a %u-byte capability", d->name, len);
	memcpy(d->config + off, cap, len);
	d->config[off + 1] = 0;
	if (d->cap_last)
		d->config[d->cap_last + 1] = (uint8_t)off;
	else
		d->config[PCI_CAPABILITY_LIST] = (uint8_t)off;
	d->cap_last = (uint8_t)off;
	d->cap_next = (uint16_t)(off + len);
	wr16(d->config + PCI_STATUS, rd16(d->config + PCI_STATUS) | PCI_STATUS_CAP_LIST);
	return (int)off;
}

void pci_device_writable(struct pci_device *d, uint32_t off, uint32_t len)
{
	for (uint32_t i = off; i < PCI_CONFIG_SIZE && i - off < len; i++)
		d->wmask[i] = 0xff;
}

int pci_device_add_msix(struct pci_device *d, uint16_t nvec, unsigned bar, uint32_t table_off,
			uint32_t pba_off)
{
	uint64_t tlen = (uint64_t)nvec * PCI_MSIX_ENTRY_SIZE, plen = ((nvec + 63u) / 64u) * 8u;
	uint8_t cap[12] = { PCI_CAP_ID_MSIX, 0 };
	int off;

	if (!d || d->host || d->msix_cap || nvec < 1 || nvec > PCI_MSIX_MAX_VECTORS ||
	    bar >= PCI_NUM_BARS || !d->bar[bar].size || table_off % 8 || pba_off % 8 ||
	    tlen > d->bar[bar].size - table_off || table_off > d->bar[bar].size ||
	    pba_off > d->bar[bar].size || plen > d->bar[bar].size - pba_off ||
	    ranges_overlap(table_off, tlen, pba_off, plen))
		return vmkit__err(-EINVAL, "PCI %s: bad MSI-X layout", d ? d->name : "?");
	d->msix_table = calloc(nvec, 4 * sizeof(uint32_t));
	d->msix_pba = calloc(plen / 8, sizeof(uint64_t));
	if (!d->msix_table || !d->msix_pba) {
		pci_device_release(d);
		return vmkit__err(-ENOMEM, "out of memory");
	}
	for (unsigned v = 0; v < nvec; v++)
		d->msix_table[4 * v + 3] = PCI_MSIX_ENTRY_CTRL_MASKBIT;
	wr16(cap + 2, (uint16_t)(nvec - 1));
	wr32(cap + 4, table_off | bar);
	wr32(cap + 8, pba_off | bar);
	off = pci_device_add_cap(d, cap, sizeof(cap));
	if (off < 0) {
		pci_device_release(d);
		return off;
	}
	d->wmask[off + 3] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
	d->msix_cap = (uint8_t)off;
	d->msix_nvec = nvec;
	d->msix_bar = bar;
	d->msix_table_off = table_off;
	d->msix_pba_off = pba_off;
	return off;
}

void pci_device_use_intx(struct pci_device *d)
{
	d->uses_intx = true;
	d->config[PCI_INTERRUPT_PIN] = 1;
}

void pci_device_release(struct pci_device *d)
{
	if (!d)
		return;
	free(d->msix_table);
	free(d->msix_pba);
	d->msix_table = NULL;
	d->msix_pba = NULL;
}

/* ---- interrupts (irq_lock) --------------------------------------------------- */

static void set_gsi(struct pci_host *h, uint32_t gsi, bool level)
{
	if (h->vm)
		vmkit_vm_set_irq(h->vm, gsi, level); /* fails only without an irqchip */
	else if (h->hooks.set_irq)
		h->hooks.set_irq(h->hooks.ctx, gsi, level);
}

/* Drive the device's INTx line from its level, Interrupt Disable and MSI-X
 * enable; GSIs shared by several devices stay up while any asserts. */
static void intx_eval(struct pci_host *h, struct pci_device *d)
{
	bool want = d->uses_intx && d->intx_level && !d->intx_disabled && !d->msix_enabled;
	unsigned g = (d->gsi - X86_PCI_INTX_GSI_BASE) % INTX_PINS;

	if (want == d->intx_asserted)
		return;
	d->intx_asserted = want;
	if (want) {
		if (h->gsi_users[g]++ == 0)
			set_gsi(h, d->gsi, true);
	} else if (h->gsi_users[g] && --h->gsi_users[g] == 0) {
		set_gsi(h, d->gsi, false);
	}
}

static void msi_send(struct pci_host *h, struct pci_device *d, unsigned v)
{
	const uint32_t *e = d->msix_table + 4 * v;
	uint64_t addr = e[0] | (uint64_t)e[1] << 32;

	/* A message the guest aimed nowhere is its own business: KVM drops
	 * it, and there is nobody to tell. */
	if (h->vm)
		vmkit__vm_signal_msi(h->vm, addr, e[2]);
	else if (h->hooks.msi)
		h->hooks.msi(h->hooks.ctx, addr, e[2]);
}

static bool pending(const struct pci_device *d, unsigned v)
{
	return d->msix_pba[v / 64] >> (v % 64) & 1;
}

static void set_pending(struct pci_device *d, unsigned v, bool on)
{
	if (on)
		d->msix_pba[v / 64] |= 1ull << (v % 64);
	else
		d->msix_pba[v / 64] &= ~(1ull << (v % 64));
}

static bool vector_masked(const struct pci_device *d, unsigned v)
{
	return d->msix_table[4 * v + 3] & PCI_MSIX_ENTRY_CTRL_MASKBIT;
}

/* Send vector @v if it is pending and nothing masks it any more. */
static void msix_flush(struct pci_host *h, struct pci_device *d, unsigned v)
{
	if (d->msix_enabled && !d->msix_fmask && !vector_masked(d, v) && pending(d, v)) {
		set_pending(d, v, false);
		msi_send(h, d, v);
	}
}

/* The command or MSI-X control register changed. */
static void irq_config_changed(struct pci_host *h, struct pci_device *d)
{
	pthread_mutex_lock(&h->irq_lock);
	d->intx_disabled = rd16(d->config + PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;
	if (d->msix_cap) {
		uint16_t ctrl = rd16(d->config + d->msix_cap + 2);

		d->msix_enabled = ctrl & PCI_MSIX_FLAGS_ENABLE;
		d->msix_fmask = ctrl & PCI_MSIX_FLAGS_MASKALL;
		for (unsigned v = 0; v < d->msix_nvec; v++)
			msix_flush(h, d, v);
	}
	intx_eval(h, d);
	pthread_mutex_unlock(&h->irq_lock);
}

bool pci_msix_enabled(struct pci_device *d)
{
	bool on;

	if (!d || !d->host || !d->msix_cap)
		return false;
	pthread_mutex_lock(&d->host->irq_lock);
	on = d->msix_enabled;
	pthread_mutex_unlock(&d->host->irq_lock);
	return on;
}

int pci_msix_notify(struct pci_device *d, uint16_t vector)
{
	struct pci_host *h;
	int ret;

	if (!d || !(h = d->host) || !d->msix_cap || vector >= d->msix_nvec)
		return -EINVAL;
	pthread_mutex_lock(&h->irq_lock);
	if (!d->msix_enabled) {
		ret = -EINVAL;
	} else if (d->msix_fmask || vector_masked(d, vector)) {
		set_pending(d, vector, true);
		ret = 0;
	} else {
		msi_send(h, d, vector);
		ret = 1;
	}
	pthread_mutex_unlock(&h->irq_lock);
	return ret;
}

void pci_intx_set(struct pci_device *d, bool level)
{
	struct pci_host *h;

	if (!d || !(h = d->host))
		return;
	pthread_mutex_lock(&h->irq_lock);
	d->intx_level = level;
	intx_eval(h, d);
	pthread_mutex_unlock(&h->irq_lock);
}

/* ---- BAR accesses (host lock held) ---------------------------------------------- */

/* Write masks of the four words of a table entry: the address is dword
 * aligned, only the mask bit of vector control is implemented. */
static const uint32_t msix_word_mask[4] = { 0xfffffffcu, 0xffffffffu, 0xffffffffu,
					     PCI_MSIX_ENTRY_CTRL_MASKBIT };

static void msix_table_rw(struct pci_host *h, struct pci_device *d, uint32_t off, uint8_t *p,
			  uint32_t len, bool write)
{
	unsigned first = off / PCI_MSIX_ENTRY_SIZE, last = (off + len - 1) / PCI_MSIX_ENTRY_SIZE;
	bool was_masked[2];

	pthread_mutex_lock(&h->irq_lock);
	for (unsigned v = first; v <= last; v++)
		was_masked[v - first] = vector_masked(d, v);
	for (uint32_t k = 0; k < len; k++) {
		uint32_t pos = off + k, w = pos / 4, shift = 8 * (pos % 4);
		uint32_t *word = &d->msix_table[w];

		if (write) {
			uint32_t m = (msix_word_mask[w % 4] >> shift & 0xff) << shift;
			*word = (*word & ~m) | ((uint32_t)p[k] << shift & m);
		} else {
			p[k] = (uint8_t)(*word >> shift);
		}
	}
	/* A vector unmasked with its pending bit set goes out now. */
	for (unsigned v = first; write && v <= last; v++)
		if (was_masked[v - first])
			msix_flush(h, d, v);
	pthread_mutex_unlock(&h->irq_lock);
}

static void msix_pba_read(struct pci_host *h, struct pci_device *d, uint32_t off, uint8_t *p,
			  uint32_t len)
{
	pthread_mutex_lock(&h->irq_lock);
	for (uint32_t k = 0; k < len; k++)
		p[k] = (uint8_t)(d->msix_pba[(off + k) / 8] >> (8 * ((off + k) % 8)));
	pthread_mutex_unlock(&h->irq_lock);
}

/* @off and @len are inside BAR @i. */
static void bar_access(struct pci_device *d, unsigned i, uint64_t off, uint8_t *p, uint32_t len,
		       bool write)
{
	const struct pci_bar *b = &d->bar[i];

	if (d->msix_cap && i == d->msix_bar) {
		uint64_t t = d->msix_table_off, tl = (uint64_t)d->msix_nvec * PCI_MSIX_ENTRY_SIZE;
		uint64_t pb = d->msix_pba_off, pl = ((d->msix_nvec + 63u) / 64u) * 8u;

		if (off >= t && off - t + len <= tl) {
			msix_table_rw(d->host, d, (uint32_t)(off - t), p, len, write);
			return;
		}
		if (off >= pb && off - pb + len <= pl) {
			if (!write)
				msix_pba_read(d->host, d, (uint32_t)(off - pb), p, len);
			return;
		}
		if (len > 1 && (ranges_overlap(off, len, t, tl) || ranges_overlap(off, len, pb, pl))) {
			/* Straddles a boundary: byte by byte. */
			for (uint32_t k = 0; k < len; k++)
				bar_access(d, i, off + k, p + k, 1, write);
			return;
		}
	}
	if (write) {
		if (b->ops->write)
			b->ops->write(b->opaque, off, p, len);
	} else {
		memset(p, 0, len);
		if (b->ops->read)
			b->ops->read(b->opaque, off, p, len);
	}
}

void pci_device_bar_rw(struct pci_device *d, unsigned bar, uint64_t off, void *data,
		       uint32_t len, bool write)
{
	if (!d || !data || len < 1 || len > 8)
		return;
	if (bar >= PCI_NUM_BARS || !d->bar[bar].size || off >= d->bar[bar].size ||
	    len > d->bar[bar].size - off) {
		if (!write)
			memset(data, 0xff, len);
		return;
	}
	bar_access(d, bar, off, data, len, write);
}

/* The device and BAR decoding @gpa. */
static bool lookup(struct pci_host *h, uint64_t gpa, struct pci_device **dp, unsigned *ip)
{
	for (unsigned s = 0; s < PCI_SLOTS; s++) {
		struct pci_device *d = h->dev[s];

		for (unsigned i = 0; d && i < PCI_NUM_BARS; i++) {
			const struct pci_bar *b = &d->bar[i];

			if (b->addr != PCI_ADDR_NONE && gpa >= b->addr && gpa - b->addr < b->size) {
				*dp = d;
				*ip = i;
				return true;
			}
		}
	}
	return false;
}

static bool mmio_access(struct pci_host *h, uint64_t gpa, uint8_t *p, uint32_t len, bool write)
{
	struct pci_device *d;
	unsigned i;
	uint64_t off;

	if (!lookup(h, gpa, &d, &i))
		return false;
	off = gpa - d->bar[i].addr;
	if (len <= d->bar[i].size - off) {
		bar_access(d, i, off, p, len, write);
		return true;
	}
	for (uint32_t k = 0; k < len; k++)
		if (!mmio_access(h, gpa + k, p + k, 1, write) && !write)
			p[k] = 0xff;
	return true;
}

bool pci_host_mmio_read(struct pci_host *h, uint64_t gpa, void *data, uint32_t len)
{
	bool found;

	if (!h || !data || len < 1 || len > 8)
		return false;
	pthread_rwlock_rdlock(&h->lock);
	found = mmio_access(h, gpa, data, len, false);
	pthread_rwlock_unlock(&h->lock);
	return found;
}

bool pci_host_mmio_write(struct pci_host *h, uint64_t gpa, const void *data, uint32_t len)
{
	uint8_t buf[8];
	bool found;

	if (!h || !data || len < 1 || len > 8)
		return false;
	memcpy(buf, data, len);
	pthread_rwlock_rdlock(&h->lock);
	found = mmio_access(h, gpa, buf, len, true);
	pthread_rwlock_unlock(&h->lock);
	return found;
}

/* The BAR window: one range; what no BAR decodes reads as all ones. */
static void window_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	if (!pci_host_mmio_read(opaque, WIN_BASE + off, data, len))
		memset(data, 0xff, len);
}

static void window_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	pci_host_mmio_write(opaque, WIN_BASE + off, data, len);
}

static const vmkit_io_ops window_ops = { sizeof(vmkit_io_ops), 0, window_read, window_write };

/* A BAR's own range outside the window; stale (the BAR moved or stopped
 * decoding through ECAM since) until the ports path catches up. */
static void outside_rw(struct pci_bar *b, uint64_t off, uint8_t *p, uint32_t len, bool write)
{
	struct pci_host *h = b->dev->host;

	pthread_rwlock_rdlock(&h->lock);
	if (b->reg != PCI_ADDR_NONE && b->addr == b->reg && len <= b->size && off <= b->size - len)
		bar_access(b->dev, b->index, off, p, len, write);
	else if (!write)
		memset(p, 0xff, len);
	pthread_rwlock_unlock(&h->lock);
}

static void outside_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	outside_rw(opaque, off, data, len, false);
}

static void outside_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	uint8_t buf[8];

	if (len > sizeof(buf))
		return;
	memcpy(buf, data, len);
	outside_rw(opaque, off, buf, len, true);
}

static const vmkit_io_ops outside_ops = { sizeof(vmkit_io_ops), 0, outside_read, outside_write };

/* ---- BAR mapping (host lock held for writing) ------------------------------------- */

/* Where BAR @i asks to decode: memory decode on and a programmed address
 * (0 counts as unprogrammed), or PCI_ADDR_NONE. */
static uint64_t bar_target(const struct pci_device *d, unsigned i)
{
	const struct pci_bar *b = &d->bar[i];
	uint64_t a;

	if (!b->size || !(rd16(d->config + PCI_COMMAND) & PCI_COMMAND_MEMORY))
		return PCI_ADDR_NONE;
	a = rd32(d->config + PCI_BASE_ADDRESS_0 + 4 * i) & ~0xfull;
	if (b->is64)
		a |= (uint64_t)rd32(d->config + PCI_BASE_ADDRESS_0 + 4 * (i + 1)) << 32;
	if (a == 0 || a + (b->size - 1) < a)
		return PCI_ADDR_NONE;
	return a;
}

static bool in_window(uint64_t a, uint64_t size)
{
	return a >= WIN_BASE && size <= WIN_SIZE && a - WIN_BASE <= WIN_SIZE - size;
}

static bool overlaps_ram(const struct pci_host *h, uint64_t a, uint64_t size)
{
	const struct vmkit_gmem *m = pci_host_mem(h);

	for (unsigned i = 0; m && i < m->n; i++)
		if (m->r[i].len && ranges_overlap(a, size, m->r[i].gpa, m->r[i].len))
			return true;
	return false;
}

/* Recompute where every BAR decodes and tell the owners what changed. A
 * BAR decodes at its target if that lies in the window, or has its own
 * range there, and overlaps neither RAM nor a BAR of a lower slot/index. */
static void update_mappings(struct pci_host *h)
{
	uint64_t next[PCI_SLOTS][PCI_NUM_BARS];

	for (unsigned s = 0; s < PCI_SLOTS; s++) {
		struct pci_device *d = h->dev[s];

		for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
			uint64_t t, size;

			next[s][i] = PCI_ADDR_NONE;
			if (!d || (t = bar_target(d, i)) == PCI_ADDR_NONE)
				continue;
			size = d->bar[i].size;
			if (!in_window(t, size) && d->bar[i].reg != t)
				continue;
			if (overlaps_ram(h, t, size))
				continue;
			for (unsigned s2 = 0; s2 <= s && t != PCI_ADDR_NONE; s2++)
				for (unsigned i2 = 0; i2 < (s2 == s ? i : PCI_NUM_BARS); i2++)
					if (next[s2][i2] != PCI_ADDR_NONE &&
					    ranges_overlap(t, size, next[s2][i2],
							   h->dev[s2]->bar[i2].size)) {
						t = PCI_ADDR_NONE;
						break;
					}
			next[s][i] = t;
		}
	}
	for (unsigned s = 0; s < PCI_SLOTS; s++) {
		struct pci_device *d = h->dev[s];

		for (unsigned i = 0; d && i < PCI_NUM_BARS; i++) {
			uint64_t old = d->bar[i].addr;

			if (old == next[s][i])
				continue;
			d->bar[i].addr = next[s][i];
			if (d->bar_map)
				d->bar_map(d->opaque, d, i, old, next[s][i]);
		}
	}
}

/* Is @t the all-ones pattern of the sizing protocol in the BAR's low
 * dword? Firmware sizes BARs with memory decode on (SeaBIOS does), so the
 * BAR briefly asks to decode there: refused, as any overlap, but not worth
 * a warning. */
static bool sizing(const struct pci_bar *b, uint64_t t)
{
	return (uint32_t)t == ((uint32_t)~(b->size - 1) & ~0xfu);
}

/* The ports path, after a config write (reg_lock held, host lock not):
 * give each BAR that asks to decode outside the window its own MMIO range
 * and drop stale ones, then recompute the mappings. The VM's MMIO bus is
 * changed with no host lock held: a vCPU inside an MMIO access holds that
 * bus and may be waiting for the host lock. */
static void reconcile(struct pci_host *h)
{
	for (unsigned s = 1; s < PCI_SLOTS; s++) {
		for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
			struct pci_device *d;
			struct pci_bar *b;
			uint64_t t, old, size;
			int ret = 0;

			pthread_rwlock_wrlock(&h->lock);
			d = h->dev[s];
			if (!d || !d->bar[i].size) {
				pthread_rwlock_unlock(&h->lock);
				continue;
			}
			b = &d->bar[i];
			size = b->size;
			t = bar_target(d, i);
			if (t == PCI_ADDR_NONE) {
				b->refused = PCI_ADDR_NONE; /* a new attempt may succeed */
			} else if (in_window(t, size) || t == b->refused) {
				t = PCI_ADDR_NONE;
			} else if (overlaps_ram(h, t, size)) {
				if (!sizing(b, t))
					hlog(h, "PCI %s: BAR %u at 0x%" PRIx64 " overlaps guest RAM; "
					     "it does not decode", d->name, i, t);
				b->refused = t;
				t = PCI_ADDR_NONE;
			}
			old = b->reg;
			pthread_rwlock_unlock(&h->lock);
			if (t == old)
				continue;
			if (old != PCI_ADDR_NONE) {
				if (h->vm)
					vmkit_vm_unregister_mmio(h->vm, old);
				pthread_rwlock_wrlock(&h->lock);
				b->reg = PCI_ADDR_NONE;
				pthread_rwlock_unlock(&h->lock);
			}
			if (t == PCI_ADDR_NONE)
				continue;
			if (h->vm)
				ret = vmkit_vm_register_mmio(h->vm, t, size, &outside_ops, b, 0);
			pthread_rwlock_wrlock(&h->lock);
			if (ret == 0) {
				b->reg = t;
			} else {
				b->refused = t;
				if (!sizing(b, t))
					hlog(h, "PCI %s: BAR %u at 0x%" PRIx64 " does not decode: %s",
					     d->name, i, t, vmkit_last_error());
			}
			pthread_rwlock_unlock(&h->lock);
		}
	}
	pthread_rwlock_wrlock(&h->lock);
	update_mappings(h);
	pthread_rwlock_unlock(&h->lock);
}

/* ---- configuration space (host lock held for writing) --------------------------- */

static bool hooked(const struct pci_device *d, uint32_t off, uint32_t len)
{
	return d->cfg_hook && d->hook_len && ranges_overlap(off, len, d->hook_off, d->hook_len);
}

/* @reg + @len <= 4096 (one function's ECAM space). */
static void cfg_read(struct pci_host *h, struct pci_device *d, uint32_t reg, uint8_t *out,
		     uint32_t len)
{
	if (hooked(d, reg, len))
		d->cfg_hook(d->opaque, d, reg, len, false);
	for (uint32_t k = 0; k < len; k++)
		out[k] = reg + k < PCI_CONFIG_SIZE ? d->config[reg + k] : 0;
	if (reg <= PCI_STATUS && PCI_STATUS < reg + len) {
		pthread_mutex_lock(&h->irq_lock);
		if (d->intx_level)
			out[PCI_STATUS - reg] |= PCI_STATUS_INTERRUPT;
		pthread_mutex_unlock(&h->irq_lock);
	}
}

/* Returns true if the write may have changed where BARs decode. */
static bool cfg_write(struct pci_host *h, struct pci_device *d, uint32_t reg, const uint8_t *in,
		      uint32_t len)
{
	bool command = false, bars = false, msix = false;

	for (uint32_t k = 0; k < len; k++) {
		uint32_t r = reg + k;

		if (r >= PCI_CONFIG_SIZE)
			break;
		d->config[r] = (uint8_t)((d->config[r] & ~d->wmask[r]) | (in[k] & d->wmask[r]));
		if (r == PCI_COMMAND || r == PCI_COMMAND + 1)
			command = true;
		else if (r >= PCI_BASE_ADDRESS_0 && r < PCI_BASE_ADDRESS_0 + 4 * PCI_NUM_BARS)
			bars = true;
		else if (d->msix_cap && (r == d->msix_cap + 2u || r == d->msix_cap + 3u))
			msix = true;
	}
	if (command || msix)
		irq_config_changed(h, d);
	if (hooked(d, reg, len))
		d->cfg_hook(d->opaque, d, reg, len, true);
	return command || bars;
}

/* The function that config address @cf8 selects: bus 0, function 0 of an
 * occupied slot. */
static struct pci_device *cf8_target(struct pci_host *h, uint32_t cf8)
{
	if (!(cf8 & CF8_ENABLE) || (cf8 >> 16 & 0xff) != 0 || (cf8 >> 8 & 7) != 0)
		return NULL;
	return h->dev[cf8 >> 11 & 0x1f];
}

void pci_host_pio_read(struct pci_host *h, uint32_t off, void *data, uint32_t len)
{
	uint8_t *p = data;
	struct pci_device *d;

	if (!h || !data || len < 1 || len > 4)
		return;
	memset(p, 0xff, len);
	if (off > 7 || len > 8 - off)
		return;
	if (off == 1 && len == 1) {
		if (h->cf9_ops && h->cf9_ops->read)
			h->cf9_ops->read(h->cf9_opaque, 0, p, 1);
		return;
	}
	pthread_rwlock_wrlock(&h->lock);
	if (off == 0 && len == 4)
		wr32(p, h->cf8);
	else if (off >= 4 && (d = cf8_target(h, h->cf8)))
		cfg_read(h, d, (h->cf8 & 0xfc) + (off - 4), p, len);
	pthread_rwlock_unlock(&h->lock);
}

void pci_host_pio_write(struct pci_host *h, uint32_t off, const void *data, uint32_t len)
{
	const uint8_t *p = data;
	struct pci_device *d;
	bool moved = false;

	if (!h || !data || len < 1 || len > 4 || off > 7 || len > 8 - off)
		return;
	if (off == 1 && len == 1) {
		if (h->cf9_ops && h->cf9_ops->write)
			h->cf9_ops->write(h->cf9_opaque, 0, p, 1);
		return;
	}
	if (off == 0 && len == 4) {
		pthread_rwlock_wrlock(&h->lock);
		h->cf8 = rd32(p) & CF8_MASK;
		pthread_rwlock_unlock(&h->lock);
		return;
	}
	if (off < 4)
		return; /* byte/word accesses to 0xcf8-0xcfb are not config cycles */
	pthread_mutex_lock(&h->reg_lock);
	pthread_rwlock_wrlock(&h->lock);
	if ((d = cf8_target(h, h->cf8))) {
		moved = cfg_write(h, d, (h->cf8 & 0xfc) + (off - 4), p, len);
		if (moved)
			update_mappings(h);
	}
	pthread_rwlock_unlock(&h->lock);
	if (moved)
		reconcile(h);
	pthread_mutex_unlock(&h->reg_lock);
}

/* ECAM offset: device << 15 | function << 12 | register (bus 0 only). */
static struct pci_device *ecam_target(struct pci_host *h, uint64_t off)
{
	if (off >> 12 & 7)
		return NULL;
	return h->dev[off >> 15 & 0x1f];
}

static void ecam_access(struct pci_host *h, uint64_t off, uint8_t *p, uint32_t len, bool write)
{
	bool moved = false;

	pthread_rwlock_wrlock(&h->lock);
	while (len) {
		uint32_t reg = (uint32_t)(off & (PCI_ECAM_FUNC_SIZE - 1));
		uint32_t n = PCI_ECAM_FUNC_SIZE - reg < len ? PCI_ECAM_FUNC_SIZE - reg : len;
		struct pci_device *d = ecam_target(h, off);

		if (!d) {
			if (!write)
				memset(p, 0xff, n);
		} else if (write) {
			moved |= cfg_write(h, d, reg, p, n);
		} else {
			cfg_read(h, d, reg, p, n);
		}
		off += n;
		p += n;
		len -= n;
	}
	/* No reconcile(): this runs inside an MMIO access (see pci.h). */
	if (moved)
		update_mappings(h);
	pthread_rwlock_unlock(&h->lock);
}

void pci_host_ecam_read(struct pci_host *h, uint64_t off, void *data, uint32_t len)
{
	if (!h || !data || len < 1 || len > 8)
		return;
	if (off >= X86_PCI_ECAM_SIZE || len > X86_PCI_ECAM_SIZE - off) {
		memset(data, 0xff, len);
		return;
	}
	ecam_access(h, off, data, len, false);
}

void pci_host_ecam_write(struct pci_host *h, uint64_t off, const void *data, uint32_t len)
{
	uint8_t buf[8];

	if (!h || !data || len < 1 || len > 8 || off >= X86_PCI_ECAM_SIZE ||
	    len > X86_PCI_ECAM_SIZE - off)
		return;
	memcpy(buf, data, len);
	ecam_access(h, off, buf, len, true);
}

static void cf8_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	pci_host_pio_read(opaque, (uint32_t)off, data, len);
}

static void cf8_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	pci_host_pio_write(opaque, (uint32_t)off, data, len);
}

static const vmkit_io_ops cf8_ops = { sizeof(vmkit_io_ops), 0, cf8_read, cf8_write };

static void ecam_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	pci_host_ecam_read(opaque, off, data, len);
}

static void ecam_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	pci_host_ecam_write(opaque, off, data, len);
}

static const vmkit_io_ops ecam_ops = { sizeof(vmkit_io_ops), 0, ecam_read, ecam_write };

/* ---- the host --------------------------------------------------------------------- */

static struct pci_host *host_alloc(void)
{
	struct pci_host *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	pthread_rwlock_init(&h->lock, NULL);
	pthread_mutex_init(&h->reg_lock, NULL);
	pthread_mutex_init(&h->irq_lock, NULL);
	pci_device_init(&h->bridge, "host-bridge", HOST_VENDOR, HOST_DEVICE, 0, CLASS_HOST_BRIDGE,
			0, 0);
	/* No BARs, no interrupts: nothing in the command register to set. */
	wr16(h->bridge.config + PCI_COMMAND, 0);
	wr16(h->bridge.wmask + PCI_COMMAND, 0);
	h->bridge.host = h;
	h->bridge.slot = 0;
	h->dev[0] = &h->bridge;
	h->next_bar = WIN_BASE;
	return h;
}

/* Ports 0xcf8-0xcff, taking over the 1-byte handler at 0xcf9 (see pci.h):
 * the bus cannot nest ranges, and a dword at 0xcf8 split around 0xcf9
 * would feed address bits to the reset register. */
static int claim_ports(struct pci_host *h)
{
	struct vmkit_bus *bus = &h->vm->pio;
	const vmkit_io_ops *ops = NULL;
	void *opaque = NULL;
	char msg[256];
	int ret;

	pthread_rwlock_rdlock(&bus->lock);
	for (size_t i = 0; i < bus->n; i++) {
		if (bus->r[i].base == CF9_PORT && bus->r[i].len == 1) {
			ops = bus->r[i].ops;
			opaque = bus->r[i].opaque;
		}
	}
	pthread_rwlock_unlock(&bus->lock);
	if (ops && (ret = vmkit_vm_unregister_pio(h->vm, CF9_PORT)) < 0)
		return ret;
	ret = vmkit_vm_register_pio(h->vm, X86_PCI_CONFIG_PORT, 8, &cf8_ops, h, 0);
	if (ret < 0) {
		snprintf(msg, sizeof(msg), "%s", vmkit_last_error());
		if (ops)
			vmkit_vm_register_pio(h->vm, CF9_PORT, 1, ops, opaque, 0);
		return vmkit__err(ret, "PCI config ports 0xcf8-0xcff: %s", msg);
	}
	h->cf9_ops = ops;
	h->cf9_opaque = opaque;
	h->pio_registered = true;
	return 0;
}

int pci_host_new(vmkit_vm *vm, struct pci_host **out)
{
	struct pci_host *h;
	int ret;

	if (!vm || !out)
		return vmkit__err(-EINVAL, "pci_host_new: NULL argument");
	*out = NULL;
	h = host_alloc();
	if (!h)
		return vmkit__err(-ENOMEM, "out of memory");
	h->vm = vm;
	if ((ret = claim_ports(h)) < 0)
		goto fail;
	ret = vmkit_vm_register_mmio(vm, X86_PCI_ECAM_BASE, X86_PCI_ECAM_SIZE, &ecam_ops, h, 0);
	if (ret < 0)
		goto fail;
	h->ecam_registered = true;
	ret = vmkit_vm_register_mmio(vm, WIN_BASE, WIN_SIZE, &window_ops, h, 0);
	if (ret < 0)
		goto fail;
	h->window_registered = true;
	*out = h;
	return 0;
fail:
	pci_host_free(h);
	return ret;
}

int pci_host_new_detached(const struct pci_host_hooks *hooks, struct pci_host **out)
{
	struct pci_host *h;

	if (!out)
		return vmkit__err(-EINVAL, "pci_host_new_detached: NULL argument");
	h = host_alloc();
	if (!h)
		return vmkit__err(-ENOMEM, "out of memory");
	if (hooks)
		h->hooks = *hooks;
	*out = h;
	return 0;
}

void pci_host_free(struct pci_host *h)
{
	if (!h)
		return;
	for (unsigned s = 1; s < PCI_SLOTS; s++)
		if (h->dev[s])
			pci_host_remove(h, h->dev[s]);
	if (h->window_registered)
		vmkit_vm_unregister_mmio(h->vm, WIN_BASE);
	if (h->ecam_registered)
		vmkit_vm_unregister_mmio(h->vm, X86_PCI_ECAM_BASE);
	if (h->pio_registered) {
		vmkit_vm_unregister_pio(h->vm, X86_PCI_CONFIG_PORT);
		if (h->cf9_ops)
			vmkit_vm_register_pio(h->vm, CF9_PORT, 1, h->cf9_ops, h->cf9_opaque, 0);
	}
	pthread_rwlock_destroy(&h->lock);
	pthread_mutex_destroy(&h->reg_lock);
	pthread_mutex_destroy(&h->irq_lock);
	free(h);
}

vmkit_vm *pci_host_vm(const struct pci_host *h)
{
	return h ? h->vm : NULL;
}

const struct vmkit_gmem *pci_host_mem(const struct pci_host *h)
{
	if (!h)
		return NULL;
	return h->vm ? &h->vm->mem : h->hooks.mem;
}

/* Natural alignment for each BAR, from the bottom of the window up. */
static int assign_bars(struct pci_host *h, struct pci_device *d)
{
	uint64_t next = h->next_bar, addr[PCI_NUM_BARS];

	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		uint64_t size = d->bar[i].size;

		if (!size)
			continue;
		addr[i] = (next + size - 1) & ~(size - 1);
		if (addr[i] < next || !in_window(addr[i], size))
			return vmkit__err(-ENOSPC, "PCI %s: the BAR window is full", d->name);
		next = addr[i] + size;
	}
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		uint8_t *r = d->config + PCI_BASE_ADDRESS_0 + 4 * i;

		if (!d->bar[i].size)
			continue;
		wr32(r, (uint32_t)addr[i] | (rd32(r) & 0xfu));
		if (d->bar[i].is64)
			wr32(r + 4, (uint32_t)(addr[i] >> 32));
	}
	h->next_bar = next;
	return 0;
}

int pci_host_add(struct pci_host *h, struct pci_device *d, int slot)
{
	int ret;

	if (!h || !d || d->host)
		return vmkit__err(-EINVAL, "pci_host_add: bad arguments");
	pthread_mutex_lock(&h->reg_lock);
	pthread_rwlock_wrlock(&h->lock);
	if (slot < 0) {
		for (slot = 1; slot < PCI_SLOTS && h->dev[slot]; slot++)
			;
		if (slot == PCI_SLOTS) {
			ret = vmkit__err(-ENOSPC, "PCI %s: all 31 slots are taken", d->name);
			goto out;
		}
	} else if (slot < 1 || slot >= PCI_SLOTS) {
		ret = vmkit__err(-EINVAL, "PCI %s: slot %d is not 1..31", d->name, slot);
		goto out;
	} else if (h->dev[slot]) {
		ret = vmkit__err(-EBUSY, "PCI %s: slot %d is taken", d->name, slot);
		goto out;
	}
	if ((ret = assign_bars(h, d)) < 0)
		goto out;
	d->host = h;
	d->slot = slot;
	if (d->uses_intx) {
		d->gsi = pci_intx_gsi((unsigned)slot, 0);
		d->config[PCI_INTERRUPT_LINE] = (uint8_t)d->gsi;
	}
	h->dev[slot] = d;
	irq_config_changed(h, d);
	update_mappings(h);
	ret = slot;
out:
	pthread_rwlock_unlock(&h->lock);
	pthread_mutex_unlock(&h->reg_lock);
	return ret;
}

void pci_host_remove(struct pci_host *h, struct pci_device *d)
{
	if (!h || !d || d->host != h || d == &h->bridge)
		return;
	pthread_mutex_lock(&h->reg_lock);
	pthread_rwlock_wrlock(&h->lock);
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		uint64_t old = d->bar[i].addr;

		if (old == PCI_ADDR_NONE)
			continue;
		d->bar[i].addr = PCI_ADDR_NONE;
		if (d->bar_map)
			d->bar_map(d->opaque, d, i, old, PCI_ADDR_NONE);
	}
	h->dev[d->slot] = NULL;
	pthread_mutex_lock(&h->irq_lock);
	d->intx_level = false;
	d->msix_enabled = false;
	intx_eval(h, d);
	pthread_mutex_unlock(&h->irq_lock);
	pthread_rwlock_unlock(&h->lock);
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		if (d->bar[i].reg == PCI_ADDR_NONE)
			continue;
		if (h->vm)
			vmkit_vm_unregister_mmio(h->vm, d->bar[i].reg);
		d->bar[i].reg = PCI_ADDR_NONE;
	}
	d->host = NULL;
	d->slot = -1;
	pthread_mutex_unlock(&h->reg_lock);
}

/* ---- ACPI ---------------------------------------------------------------------------- */

/* _PRT: every slot's INTA-D on its GSI. The GSIs are static (no link
 * devices). For such an entry Linux (acpi_pci_irq_enable) assumes a
 * level-triggered, active-low line, as the ACPI spec says, and programs
 * the IOAPIC pin that way. KVM's in-kernel IOAPIC ignores the polarity
 * bit: ioapic_set_irq() looks only at the trigger mode (early KVM XORed
 * the level with the polarity; current kernels do not), so KVM_IRQ_LINE
 * level 1 asserts the pin whatever polarity the guest programmed, and
 * level 0 deasserts it. Static active-low entries therefore work, and
 * link devices (what QEMU's q35 DSDT uses: LNKx/GSIx with Interrupt(
 * ResourceConsumer, Level, ActiveHigh, Shared)) are not needed.
 * tests/unit/test_pci.c checks it on the host's KVM: a pin programmed
 * level/active-low delivers its vector on level 1. */
static void dsdt_prt(struct x86_buf *sb)
{
	size_t prt, e;

	aml_name(sb, "_PRT");
	prt = aml_package_begin(sb, PCI_SLOTS * INTX_PINS);
	for (unsigned s = 0; s < PCI_SLOTS; s++) {
		for (unsigned pin = 0; pin < INTX_PINS; pin++) {
			e = aml_package_begin(sb, 4);
			aml_integer(sb, (uint64_t)s << 16 | 0xffff); /* any function of slot s */
			aml_integer(sb, pin);
			aml_integer(sb, 0);                        /* no link device: a GSI */
			aml_integer(sb, pci_intx_gsi(s, pin));
			aml_end(sb, e);
		}
	}
	aml_end(sb, prt);
}

void pci_host_dsdt(const struct pci_host *h, struct x86_buf *sb)
{
	size_t dev, res;

	if (!h)
		return;
	dev = aml_device_begin(sb, "PCI0");
	aml_name(sb, "_HID");
	aml_eisaid(sb, "PNP0A08");
	aml_name(sb, "_CID");
	aml_eisaid(sb, "PNP0A03");
	aml_name(sb, "_SEG");
	aml_integer(sb, 0);
	aml_name(sb, "_BBN");
	aml_integer(sb, 0);
	aml_name(sb, "_UID");
	aml_integer(sb, 0);
	aml_name(sb, "_CRS");
	res = aml_restemplate_begin(sb);
	aml_res_word_bus_number(sb, 0, 0);
	aml_res_io(sb, X86_PCI_CONFIG_PORT, 8);
	/* All other ports go down the bridge, so legacy devices keep decoding. */
	aml_res_word_io(sb, 0x0000, X86_PCI_CONFIG_PORT - 1);
	aml_res_word_io(sb, 0x0d00, 0xffff);
	aml_res_dword_memory(sb, (uint32_t)WIN_BASE, (uint32_t)WIN_SIZE, false, true);
	aml_restemplate_end(sb, res);
	dsdt_prt(sb);
	aml_end(sb, dev);

	/* Motherboard resources: the ECAM range, so Linux accepts the MCFG. */
	dev = aml_device_begin(sb, "PRES");
	aml_name(sb, "_HID");
	aml_eisaid(sb, "PNP0C02");
	aml_name(sb, "_UID");
	aml_integer(sb, 1);
	aml_name(sb, "_CRS");
	res = aml_restemplate_begin(sb);
	aml_res_memory32_fixed(sb, (uint32_t)X86_PCI_ECAM_BASE, (uint32_t)X86_PCI_ECAM_SIZE, true);
	aml_restemplate_end(sb, res);
	aml_end(sb, dev);
}
