/* SPDX-License-Identifier: MIT */
/* vdrv: the kit's minimal virtio driver (see vdrv.h). Everything here runs
 * at CPL3 except vdrv_isr_ack, which interrupt handlers call at CPL0. */
#include "vdrv.h"

/* ---- time ------------------------------------------------------------------ */

static uint64_t tsc_per_us;

/* One reading of the LAPIC timer's count with the TSC at that moment:
 * the read is an exit to the hypervisor, and the vCPU may be preempted
 * around it, so the TSC is read on both sides and the tightest of three
 * tries is kept (its midpoint). */
static void lapic_sample(uint32_t *count, uint64_t *tsc)
{
	uint64_t best = ~0ull;

	for (int i = 0; i < 3; i++) {
		uint64_t a = rdtsc();
		uint32_t c = kit_lapic_read(0x390);
		uint64_t b = rdtsc();

		if (b - a < best) {
			best = b - a;
			*count = c;
			*tsc = a + (b - a) / 2;
		}
	}
}

static int cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

void vdrv_time_init(void)
{
	uint64_t est[5];
	int n = 0;

	if (tsc_per_us)
		return;
	kit_irq_init(); /* the LAPIC software-enabled */
	/* LAPIC timer: divide by 16 on KVM's 1 GHz APIC bus = 62.5 ticks/us,
	 * one-shot, masked, counting down from the top. Five 5 ms intervals;
	 * the median survives one spoiled by a preemption of the vCPU. */
	kit_lapic_write(0x3e0, 0x3);
	kit_lapic_write(0x320, 1u << 16);
	for (int k = 0; k < 5; k++) {
		uint32_t c0, c;
		uint64_t t0, t1;

		kit_lapic_write(0x380, 0xffffffffu);
		lapic_sample(&c0, &t0);
		do
			lapic_sample(&c, &t1);
		while (c0 - c < 62500u * 5 && t1 - t0 < 50000000000ull); /* 5 ms */
		if (c0 - c >= 62500u * 5)
			est[n++] = (t1 - t0) * 125 / (2 * (uint64_t)(c0 - c)); /* cycles / (ticks / 62.5) */
	}
	kit_lapic_write(0x380, 0);
	for (int i = 1; i < n; i++) /* insertion sort */
		for (int j = i; j > 0 && cmp_u64(est[j - 1], est[j]) > 0; j--) {
			uint64_t x = est[j];
			est[j] = est[j - 1];
			est[j - 1] = x;
		}
	if (n)
		tsc_per_us = est[n / 2];
	if (tsc_per_us < 100 || tsc_per_us > 20000) {
		kit_printf("vdrv: TSC calibration gave %lu cycles/us (%d intervals); assuming 3000\n",
			   (unsigned long)tsc_per_us, n);
		tsc_per_us = 3000;
	}
}

uint64_t vdrv_now_us(void)
{
	if (!tsc_per_us)
		vdrv_time_init();
	return rdtsc() / tsc_per_us;
}

void vdrv_delay_us(uint64_t us)
{
	uint64_t t0 = vdrv_now_us();

	while (vdrv_now_us() - t0 < us)
		cpu_relax();
}

/* ---- memory ------------------------------------------------------------------ */

static uint64_t heap_next = VDRV_HEAP_BASE;

void *vdrv_alloc(size_t size, size_t align)
{
	uint64_t a = (heap_next + align - 1) & ~(uint64_t)(align - 1);

	if (a + size > VDRV_HEAP_END || a + size < a)
		return NULL;
	heap_next = a + size;
	memset((void *)(uintptr_t)a, 0, size);
	return (void *)(uintptr_t)a;
}

/* ---- PCI config space ------------------------------------------------------------ */

uint64_t vdrv_ecam_base = VDRV_ECAM_BASE;

static uint64_t ecam(uint32_t slot, uint32_t off)
{
	return vdrv_ecam_base + ((uint64_t)slot << 15) + (off & 0xfff);
}

uint32_t vdrv_pci_read32(uint32_t slot, uint32_t off) { return mmio_read32(ecam(slot, off)); }
uint16_t vdrv_pci_read16(uint32_t slot, uint32_t off) { return mmio_read16(ecam(slot, off)); }
uint8_t vdrv_pci_read8(uint32_t slot, uint32_t off) { return mmio_read8(ecam(slot, off)); }
void vdrv_pci_write16(uint32_t slot, uint32_t off, uint16_t v) { mmio_write16(ecam(slot, off), v); }
void vdrv_pci_write32(uint32_t slot, uint32_t off, uint32_t v) { mmio_write32(ecam(slot, off), v); }

uint32_t vdrv_pci_cf8_read32(uint32_t slot, uint32_t off)
{
	outl(0xcf8, 0x80000000u | (slot << 11) | (off & 0xfc));
	return inl(0xcfc);
}

/* ---- transport registers ------------------------------------------------------------ */

/* virtio-mmio v2 (4.2.2) */
#define MMIO_MAGIC          0x000
#define MMIO_VERSION        0x004
#define MMIO_DEVICE_ID      0x008
#define MMIO_DEV_FEATURES   0x010
#define MMIO_DEV_FEAT_SEL   0x014
#define MMIO_DRV_FEATURES   0x020
#define MMIO_DRV_FEAT_SEL   0x024
#define MMIO_QUEUE_SEL      0x030
#define MMIO_QUEUE_NUM_MAX  0x034
#define MMIO_QUEUE_NUM      0x038
#define MMIO_QUEUE_READY    0x044
#define MMIO_QUEUE_NOTIFY   0x050
#define MMIO_INT_STATUS     0x060
#define MMIO_INT_ACK        0x064
#define MMIO_STATUS         0x070
#define MMIO_QUEUE_DESC     0x080
#define MMIO_QUEUE_DRIVER   0x090
#define MMIO_QUEUE_DEVICE   0x0a0
#define MMIO_CONFIG_GEN     0x0fc
#define MMIO_CONFIG         0x100

/* virtio-pci common configuration (4.1.4.3) */
#define PCI_DEV_FEAT_SEL    0
#define PCI_DEV_FEATURES    4
#define PCI_DRV_FEAT_SEL    8
#define PCI_DRV_FEATURES    12
#define PCI_MSIX_CONFIG     16
#define PCI_NUM_QUEUES      18
#define PCI_STATUS          20
#define PCI_CONFIG_GEN      21
#define PCI_QUEUE_SEL       22
#define PCI_QUEUE_SIZE      24
#define PCI_QUEUE_MSIX      26
#define PCI_QUEUE_ENABLE    28
#define PCI_QUEUE_NOTIFY_OFF 30
#define PCI_QUEUE_DESC      32
#define PCI_QUEUE_DRIVER    40
#define PCI_QUEUE_DEVICE    48

#define PCI_CAP_VENDOR 0x09
#define PCI_CAP_MSIX   0x11
#define VIRTIO_PCI_CAP_COMMON 1
#define VIRTIO_PCI_CAP_NOTIFY 2
#define VIRTIO_PCI_CAP_ISR    3
#define VIRTIO_PCI_CAP_DEVICE 4

const char *vdrv_transport_name(int transport)
{
	return transport == VDRV_PCI ? "pci" : "mmio";
}

static void set_status(struct vdrv *d, uint8_t s)
{
	if (d->transport == VDRV_MMIO)
		mmio_write32(d->base + MMIO_STATUS, s);
	else
		mmio_write8(d->common + PCI_STATUS, s);
}

uint8_t vdrv_status(struct vdrv *d)
{
	if (d->transport == VDRV_MMIO)
		return (uint8_t)mmio_read32(d->base + MMIO_STATUS);
	return mmio_read8(d->common + PCI_STATUS);
}

static uint32_t read_dev_features(struct vdrv *d, uint32_t sel)
{
	if (d->transport == VDRV_MMIO) {
		mmio_write32(d->base + MMIO_DEV_FEAT_SEL, sel);
		return mmio_read32(d->base + MMIO_DEV_FEATURES);
	}
	mmio_write32(d->common + PCI_DEV_FEAT_SEL, sel);
	return mmio_read32(d->common + PCI_DEV_FEATURES);
}

static void write_drv_features(struct vdrv *d, uint32_t sel, uint32_t v)
{
	if (d->transport == VDRV_MMIO) {
		mmio_write32(d->base + MMIO_DRV_FEAT_SEL, sel);
		mmio_write32(d->base + MMIO_DRV_FEATURES, v);
		return;
	}
	mmio_write32(d->common + PCI_DRV_FEAT_SEL, sel);
	mmio_write32(d->common + PCI_DRV_FEATURES, v);
}

/* ---- discovery ---------------------------------------------------------------------- */

static uint64_t pci_bar(uint32_t slot, uint32_t bar)
{
	uint32_t lo, hi = 0;

	if (bar > 5)
		return 0;
	lo = vdrv_pci_read32(slot, 0x10 + 4 * bar);
	if (lo & 1)
		return 0; /* I/O BAR: vmkit has none */
	if (((lo >> 1) & 3) == 2 && bar < 5)
		hi = vdrv_pci_read32(slot, 0x14 + 4 * bar);
	return ((uint64_t)hi << 32) | (lo & ~0xfu);
}

static int pci_probe(struct vdrv *d, uint32_t slot)
{
	uint8_t cap;
	int guard;

	d->slot = slot;
	d->cfg = ecam(slot, 0);
	if (!(vdrv_pci_read16(slot, 0x06) & 0x10)) {
		kit_printf("vdrv: pci slot %u has no capability list\n", slot);
		return -1;
	}
	/* Memory space and bus mastering on (vmkit pre-enables memory). */
	vdrv_pci_write16(slot, 0x04, vdrv_pci_read16(slot, 0x04) | 0x6);
	cap = vdrv_pci_read8(slot, 0x34) & 0xfc;
	for (guard = 0; cap && guard < 48; guard++) {
		uint8_t id = vdrv_pci_read8(slot, cap);

		if (id == PCI_CAP_VENDOR) {
			uint8_t type = vdrv_pci_read8(slot, cap + 3);
			uint8_t bar = vdrv_pci_read8(slot, cap + 4);
			uint32_t off = vdrv_pci_read32(slot, cap + 8);
			uint32_t len = vdrv_pci_read32(slot, cap + 12);
			uint64_t base = pci_bar(slot, bar);

			if (base && type == VIRTIO_PCI_CAP_COMMON && !d->common)
				d->common = base + off;
			else if (base && type == VIRTIO_PCI_CAP_NOTIFY && !d->notify) {
				d->notify = base + off;
				d->notify_mul = vdrv_pci_read32(slot, cap + 16);
			} else if (base && type == VIRTIO_PCI_CAP_ISR && !d->isr)
				d->isr = base + off;
			else if (base && type == VIRTIO_PCI_CAP_DEVICE && !d->devcfg) {
				d->devcfg = base + off;
				d->devcfg_len = len;
			}
		} else if (id == PCI_CAP_MSIX) {
			uint32_t table = vdrv_pci_read32(slot, cap + 4);

			d->msix_cap = cap;
			d->msix_size = (uint16_t)((vdrv_pci_read16(slot, cap + 2) & 0x7ff) + 1);
			d->msix_table = pci_bar(slot, table & 7) + (table & ~7u);
		}
		cap = vdrv_pci_read8(slot, cap + 1) & 0xfc;
	}
	if (!d->common || !d->notify || !d->isr) {
		kit_printf("vdrv: pci slot %u lacks a virtio capability (common=%lx notify=%lx "
			   "isr=%lx)\n", slot, (unsigned long)d->common, (unsigned long)d->notify,
			   (unsigned long)d->isr);
		return -1;
	}
	return 0;
}

int vdrv_find(struct vdrv *d, int transport, uint32_t device_id, uint32_t nth)
{
	uint32_t i, seen = 0;

	memset(d, 0, sizeof(*d));
	d->transport = transport;
	d->device_id = device_id;
	if (transport == VDRV_MMIO) {
		for (i = 0; i < VDRV_MMIO_MAX; i++) {
			uint64_t base = VDRV_MMIO_BASE + i * VDRV_MMIO_SIZE;

			if (mmio_read32(base + MMIO_MAGIC) != 0x74726976u) /* "virt" */
				break; /* devices are placed from index 0 without gaps */
			if (mmio_read32(base + MMIO_VERSION) != 2) {
				kit_printf("vdrv: mmio device %u is version %u\n", i,
					   mmio_read32(base + MMIO_VERSION));
				continue;
			}
			if (mmio_read32(base + MMIO_DEVICE_ID) != device_id || seen++ != nth)
				continue;
			d->base = base;
			d->mmio_index = i;
			d->gsi = VDRV_MMIO_GSI_BASE + i % 4;
			return 0;
		}
		return -1;
	}
	for (i = 0; i < 32; i++) {
		uint32_t id = vdrv_pci_read32(i, 0);

		if ((id & 0xffff) != VDRV_PCI_VENDOR || (id >> 16) != VDRV_PCI_DEVICE(device_id))
			continue;
		if (seen++ != nth)
			continue;
		return pci_probe(d, i);
	}
	return -1;
}

/* ---- set-up ------------------------------------------------------------------------- */

void vdrv_reset(struct vdrv *d)
{
	uint64_t t0;

	set_status(d, 0);
	/* A reset is complete when status reads 0 (4.1.4.3.2, 4.2.3.1). */
	t0 = vdrv_now_us();
	while (vdrv_status(d) != 0 && vdrv_now_us() - t0 < 1000000)
		cpu_relax();
	memset(d->q, 0, sizeof(d->q));
}

int vdrv_init(struct vdrv *d, uint64_t wanted)
{
	uint8_t st;

	vdrv_time_init();
	vdrv_reset(d);
	if (vdrv_status(d) != 0) {
		kit_printf("vdrv: reset did not complete (status 0x%x)\n", vdrv_status(d));
		return -1;
	}
	set_status(d, VDRV_S_ACKNOWLEDGE);
	set_status(d, VDRV_S_ACKNOWLEDGE | VDRV_S_DRIVER);
	d->offered = read_dev_features(d, 0) | ((uint64_t)read_dev_features(d, 1) << 32);
	if (!(d->offered & VDRV_BIT(VDRV_F_VERSION_1))) {
		kit_printf("vdrv: device does not offer VERSION_1 (0x%lx)\n",
			   (unsigned long)d->offered);
		set_status(d, VDRV_S_FAILED);
		return -1;
	}
	d->features = d->offered & (wanted | VDRV_BIT(VDRV_F_VERSION_1));
	write_drv_features(d, 0, (uint32_t)d->features);
	write_drv_features(d, 1, (uint32_t)(d->features >> 32));
	set_status(d, VDRV_S_ACKNOWLEDGE | VDRV_S_DRIVER | VDRV_S_FEATURES_OK);
	st = vdrv_status(d);
	if (!(st & VDRV_S_FEATURES_OK)) {
		kit_printf("vdrv: FEATURES_OK not accepted (status 0x%x, features 0x%lx)\n", st,
			   (unsigned long)d->features);
		set_status(d, VDRV_S_FAILED);
		return -1;
	}
	if (d->transport == VDRV_PCI)
		d->num_queues = mmio_read16(d->common + PCI_NUM_QUEUES);
	return 0;
}

int vdrv_queue_setup(struct vdrv *d, uint16_t index, uint16_t max_size, uint16_t msix_entry)
{
	struct vdrv_queue *q;
	uint32_t dev_max, size, i;
	uint64_t desc, avail, used;

	if (index >= VDRV_MAX_QUEUES)
		return -1;
	q = &d->q[index];
	if (d->transport == VDRV_MMIO) {
		mmio_write32(d->base + MMIO_QUEUE_SEL, index);
		if (mmio_read32(d->base + MMIO_QUEUE_READY)) {
			kit_printf("vdrv: queue %u already ready\n", index);
			return -1;
		}
		dev_max = mmio_read32(d->base + MMIO_QUEUE_NUM_MAX);
	} else {
		if (index >= d->num_queues) {
			kit_printf("vdrv: queue %u beyond num_queues %u\n", index, d->num_queues);
			return -1;
		}
		mmio_write16(d->common + PCI_QUEUE_SEL, index);
		dev_max = mmio_read16(d->common + PCI_QUEUE_SIZE);
	}
	if (!dev_max) {
		kit_printf("vdrv: queue %u is not available\n", index);
		return -1;
	}
	size = max_size < VDRV_QUEUE_MAX_SIZE ? max_size : VDRV_QUEUE_MAX_SIZE;
	if (dev_max < size)
		size = dev_max;
	while (size & (size - 1)) /* a power of two */
		size &= size - 1;
	q->index = index;
	q->size = (uint16_t)size;
	q->desc = vdrv_alloc(16 * size, 4096);
	q->avail = vdrv_alloc(6 + 2 * size, 4096);
	q->used = vdrv_alloc(6 + 8 * size, 4096);
	if (!q->desc || !q->avail || !q->used) {
		kit_printf("vdrv: out of ring memory\n");
		return -1;
	}
	for (i = 0; i < size; i++)
		q->desc[i].next = (uint16_t)(i + 1);
	q->free_head = 0;
	q->num_free = (uint16_t)size;
	q->interrupts = msix_entry != VDRV_NO_VECTOR;
	q->avail[0] = q->interrupts ? 0 : VDRV_AVAIL_F_NO_INTERRUPT;
	desc = (uintptr_t)q->desc;
	avail = (uintptr_t)q->avail;
	used = (uintptr_t)q->used;
	if (d->transport == VDRV_MMIO) {
		mmio_write32(d->base + MMIO_QUEUE_NUM, size);
		mmio_write32(d->base + MMIO_QUEUE_DESC, (uint32_t)desc);
		mmio_write32(d->base + MMIO_QUEUE_DESC + 4, (uint32_t)(desc >> 32));
		mmio_write32(d->base + MMIO_QUEUE_DRIVER, (uint32_t)avail);
		mmio_write32(d->base + MMIO_QUEUE_DRIVER + 4, (uint32_t)(avail >> 32));
		mmio_write32(d->base + MMIO_QUEUE_DEVICE, (uint32_t)used);
		mmio_write32(d->base + MMIO_QUEUE_DEVICE + 4, (uint32_t)(used >> 32));
		mmio_write32(d->base + MMIO_QUEUE_READY, 1);
		q->notify_addr = d->base + MMIO_QUEUE_NOTIFY;
		q->notify_width = 4;
	} else {
		uint16_t off;

		mmio_write16(d->common + PCI_QUEUE_SIZE, (uint16_t)size);
		if (msix_entry != VDRV_NO_VECTOR) {
			mmio_write16(d->common + PCI_QUEUE_MSIX, msix_entry);
			if (mmio_read16(d->common + PCI_QUEUE_MSIX) != msix_entry) {
				kit_printf("vdrv: queue %u refused MSI-X entry %u\n", index,
					   msix_entry);
				return -1;
			}
		} else {
			mmio_write16(d->common + PCI_QUEUE_MSIX, VDRV_NO_VECTOR);
		}
		/* 64-bit fields as two 32-bit halves (4.1.3.1) */
		mmio_write32(d->common + PCI_QUEUE_DESC, (uint32_t)desc);
		mmio_write32(d->common + PCI_QUEUE_DESC + 4, (uint32_t)(desc >> 32));
		mmio_write32(d->common + PCI_QUEUE_DRIVER, (uint32_t)avail);
		mmio_write32(d->common + PCI_QUEUE_DRIVER + 4, (uint32_t)(avail >> 32));
		mmio_write32(d->common + PCI_QUEUE_DEVICE, (uint32_t)used);
		mmio_write32(d->common + PCI_QUEUE_DEVICE + 4, (uint32_t)(used >> 32));
		off = mmio_read16(d->common + PCI_QUEUE_NOTIFY_OFF);
		mmio_write16(d->common + PCI_QUEUE_ENABLE, 1);
		q->notify_addr = d->notify + (uint64_t)off * d->notify_mul;
		q->notify_width = 2;
	}
	q->ready = true;
	return 0;
}

void vdrv_queue_interrupts(struct vdrv_queue *q, bool on)
{
	q->interrupts = on;
	__atomic_store_n(&q->avail[0], on ? 0 : VDRV_AVAIL_F_NO_INTERRUPT, __ATOMIC_RELEASE);
}

int vdrv_driver_ok(struct vdrv *d)
{
	uint8_t st;

	set_status(d, VDRV_S_ACKNOWLEDGE | VDRV_S_DRIVER | VDRV_S_FEATURES_OK | VDRV_S_DRIVER_OK);
	st = vdrv_status(d);
	if (st & (VDRV_S_NEEDS_RESET | VDRV_S_FAILED) || !(st & VDRV_S_DRIVER_OK)) {
		kit_printf("vdrv: DRIVER_OK failed (status 0x%x)\n", st);
		return -1;
	}
	return 0;
}

/* ---- config space ------------------------------------------------------------------- */

static uint32_t cfg_gen(struct vdrv *d)
{
	if (d->transport == VDRV_MMIO)
		return mmio_read32(d->base + MMIO_CONFIG_GEN);
	return mmio_read8(d->common + PCI_CONFIG_GEN);
}

static uint64_t cfg_addr(struct vdrv *d, uint32_t off)
{
	return d->transport == VDRV_MMIO ? d->base + MMIO_CONFIG + off : d->devcfg + off;
}

uint8_t vdrv_cfg8(struct vdrv *d, uint32_t off) { return mmio_read8(cfg_addr(d, off)); }
uint16_t vdrv_cfg16(struct vdrv *d, uint32_t off) { return mmio_read16(cfg_addr(d, off)); }
uint32_t vdrv_cfg32(struct vdrv *d, uint32_t off) { return mmio_read32(cfg_addr(d, off)); }

uint64_t vdrv_cfg64(struct vdrv *d, uint32_t off)
{
	uint32_t g, lo, hi;
	int tries = 0;

	do {
		g = cfg_gen(d);
		lo = mmio_read32(cfg_addr(d, off));
		hi = mmio_read32(cfg_addr(d, off + 4));
	} while (cfg_gen(d) != g && ++tries < 100);
	return ((uint64_t)hi << 32) | lo;
}

void vdrv_cfg_write32(struct vdrv *d, uint32_t off, uint32_t v)
{
	mmio_write32(cfg_addr(d, off), v);
}

/* ---- requests ------------------------------------------------------------------------ */

int vdrv_add(struct vdrv_queue *q, const struct vdrv_buf *bufs, uint32_t n)
{
	uint16_t head, idx;
	uint32_t i;

	if (!q->ready || !n || n > q->num_free)
		return -1;
	head = idx = q->free_head;
	for (i = 0; i < n; i++) {
		volatile struct vdrv_desc *dd = &q->desc[idx];

		dd->addr = (uintptr_t)bufs[i].addr;
		dd->len = bufs[i].len;
		dd->flags = (uint16_t)((bufs[i].write ? VDRV_DESC_F_WRITE : 0) |
				       (i + 1 < n ? VDRV_DESC_F_NEXT : 0));
		idx = dd->next;
	}
	/* idx is the first descriptor not used: the new free head (the last
	 * one's next still points at it, harmless without F_NEXT). */
	q->free_head = idx;
	q->num_free = (uint16_t)(q->num_free - n);
	q->chain_len[head] = (uint16_t)n;
	q->avail[2 + (q->avail_idx & (q->size - 1))] = head;
	q->avail_idx++;
	return head;
}

void vdrv_kick(struct vdrv *d, struct vdrv_queue *q)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	__atomic_store_n(&q->avail[1], q->avail_idx, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	(void)d;
	if (q->notify_width == 4)
		mmio_write32(q->notify_addr, q->index);
	else
		mmio_write16(q->notify_addr, q->index);
}

int vdrv_poll(struct vdrv_queue *q, uint32_t *len)
{
	volatile uint16_t *used_idx = (volatile uint16_t *)(q->used + 2);
	volatile uint32_t *elem;
	uint32_t id, n, i;
	uint16_t tail;

	if (__atomic_load_n(used_idx, __ATOMIC_ACQUIRE) == q->last_used)
		return -1;
	elem = (volatile uint32_t *)(q->used + 4 + 8 * (q->last_used & (q->size - 1)));
	id = elem[0];
	if (len)
		*len = elem[1];
	q->last_used++;
	if (id >= q->size || !q->chain_len[id]) {
		kit_printf("vdrv: queue %u: device returned bad id %u\n", q->index, id);
		return -1;
	}
	/* Give the chain back: its descriptors are linked through next. */
	n = q->chain_len[id];
	q->chain_len[id] = 0;
	tail = (uint16_t)id;
	for (i = 1; i < n; i++)
		tail = q->desc[tail].next;
	q->desc[tail].next = q->free_head;
	q->free_head = (uint16_t)id;
	q->num_free = (uint16_t)(q->num_free + n);
	return (int)id;
}

int vdrv_wait(struct vdrv_queue *q, uint32_t *len, uint64_t timeout_ms)
{
	uint64_t t0 = vdrv_now_us();
	int r;

	while ((r = vdrv_poll(q, len)) < 0) {
		if (vdrv_now_us() - t0 > timeout_ms * 1000)
			return -1;
		cpu_relax();
	}
	return r;
}

long vdrv_call(struct vdrv *d, struct vdrv_queue *q, const struct vdrv_buf *bufs, uint32_t n,
	       uint64_t timeout_ms)
{
	uint32_t len = 0;
	int head = vdrv_add(q, bufs, n);

	if (head < 0)
		return -1;
	vdrv_kick(d, q);
	if (vdrv_wait(q, &len, timeout_ms) != head)
		return -1;
	return len;
}

/* ---- interrupts ------------------------------------------------------------------------ */

uint32_t vdrv_isr_ack(struct vdrv *d)
{
	uint32_t s;

	if (d->transport == VDRV_MMIO) {
		s = mmio_read32(d->base + MMIO_INT_STATUS);
		if (s)
			mmio_write32(d->base + MMIO_INT_ACK, s);
		return s;
	}
	return mmio_read8(d->isr);
}

int vdrv_msix_setup(struct vdrv *d, uint16_t entry, uint32_t apic_id, uint8_t vector)
{
	uint64_t e;
	uint16_t ctl;

	if (d->transport != VDRV_PCI || !d->msix_cap || entry >= d->msix_size || !d->msix_table)
		return -1;
	ctl = vdrv_pci_read16(d->slot, d->msix_cap + 2);
	/* Enable with the function masked while the entry is written. */
	vdrv_pci_write16(d->slot, d->msix_cap + 2, (uint16_t)(ctl | 0xc000));
	e = d->msix_table + 16ull * entry;
	mmio_write32(e + 0, 0xfee00000u | (apic_id << 12));
	mmio_write32(e + 4, 0);
	mmio_write32(e + 8, vector);
	mmio_write32(e + 12, 0); /* unmasked */
	vdrv_pci_write16(d->slot, d->msix_cap + 2, (uint16_t)((ctl | 0x8000) & ~0x4000));
	if (!(vdrv_pci_read16(d->slot, d->msix_cap + 2) & 0x8000)) {
		kit_printf("vdrv: MSI-X enable did not stick\n");
		return -1;
	}
	return 0;
}

uint16_t vdrv_msix_config(struct vdrv *d, uint16_t entry)
{
	if (d->transport != VDRV_PCI)
		return VDRV_NO_VECTOR;
	mmio_write16(d->common + PCI_MSIX_CONFIG, entry);
	return mmio_read16(d->common + PCI_MSIX_CONFIG);
}
