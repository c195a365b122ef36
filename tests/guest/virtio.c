/* SPDX-License-Identifier: MIT */
/* virtio: vmkit's virtio devices driven from CPL3 by the kit's driver
 * (vdrv.c) over either transport. The command line picks the device and
 * what to do; results go to the serial console as "<dev> ..." lines that
 * the host test (tests/kvm/test_guest_virtio.c) checks, and the guest
 * exits with 0 when every step it was asked for completed (1 otherwise).
 *
 *   dev=blk|console|rng|balloon|list  transport=pci|mmio (default pci)
 *   timeout_ms=T   per-wait timeout (default 20000)
 *   ecam=A         PCI ECAM base (default 0xe0000000; QEMU's q35: 0xb0000000)
 *   irq=1          (rng) complete 3 requests by interrupt: MSI-X on pci,
 *                  the IOAPIC level line on mmio, and print the count
 *
 * blk (disk=N: the Nth disk of that transport, default 0):
 *   always: "blk info ..." (capacity, block size, features)
 *   id                   GET_ID: "blk id status=S serial=<id>"
 *   read=A count=N reqs=R  read N sectors from A in R requests in flight
 *                        (each with its data split over two descriptors):
 *                        "blk read sector=A count=N status=S fnv=0x..."
 *   write=B wcount=M wseed=X  write kit_pattern(X) over M sectors at B:
 *                        "blk write ... status=S", then read it back:
 *                        "blk readback ... match=1"
 *   flush                "blk flush status=S"
 *   discard=D dcount=K   "blk discard sector=D count=K status=S"
 *   wz=Z wzcount=K       WRITE_ZEROES: "blk write_zeroes ... status=S"
 *   expect_ro=1          a write/discard/write-zeroes status of IOERR (or
 *                        UNSUPP for the last two) is the expected outcome
 * console: writes "virtio-console hello <transport>\n" on port 0, prints
 *   "console ready", then echoes the first line that arrives as
 *   "echo: <line>\n" and prints "console echo line=<line>"
 * rng bytes=N: "rng bytes=N requests=R distinct=D zero=Z differ=1"
 * balloon mib=M stats=0|1 report=R: touches M MiB at 16 MiB, follows the
 *   host's target (num_pages) by inflating/deflating pages of that region,
 *   keeps a stats buffer queued, and once the balloon is back to 0 after
 *   having been inflated, writes and checks the whole region again. With
 *   report=R, first reports R MiB (from 16 MiB + M MiB) through the free
 *   page reporting queue. irq=1: the guest looks at the target only when a
 *   config-change interrupt arrived (MSI-X config vector / ISR bit 1).
 * list: every virtio-mmio window and PCI function, read through ECAM and
 *   checked against config mechanism #1.
 */
#include "vdrv.h"

#define VEC_MSIX 0x60

static uint64_t timeout_ms;
static const char *transport_name;

/* The value of key=... up to the next blank, compared with @w. */
static bool value_is(const char *v, const char *w)
{
	size_t n = strlen(w);

	return v && !strncmp(v, w, n) && (v[n] == ' ' || v[n] == '\0');
}

static void *alloc_or_die(size_t size, size_t align)
{
	void *p = vdrv_alloc(size, align);

	if (!p) {
		kit_printf("virtio: out of heap for %lu bytes\n", (unsigned long)size);
		kit_exit(KIT_EXIT_KIT_ERROR);
	}
	return p;
}

static int setup(struct vdrv *d, int transport, uint32_t id, uint32_t nth, uint64_t features)
{
	if (vdrv_find(d, transport, id, nth) < 0) {
		kit_printf("virtio: no device id %u #%u on %s\n", id, nth,
			   vdrv_transport_name(transport));
		return -1;
	}
	if (transport == VDRV_MMIO)
		kit_printf("virtio: id %u on mmio index %u base 0x%lx gsi %u\n", id, d->mmio_index,
			   (unsigned long)d->base, d->gsi);
	else
		kit_printf("virtio: id %u on pci slot %u common 0x%lx notify 0x%lx mul %u isr 0x%lx "
			   "devcfg 0x%lx msix %u\n", id, d->slot, (unsigned long)d->common,
			   (unsigned long)d->notify, d->notify_mul, (unsigned long)d->isr,
			   (unsigned long)d->devcfg, d->msix_size);
	return vdrv_init(d, features);
}

/* ---- interrupts ------------------------------------------------------------- */

static struct vdrv *irq_dev;
static volatile uint32_t irq_isr;

/* CPL0: acknowledge the level-triggered virtio-mmio line before the EOI. */
static void mmio_isr(uint32_t vector)
{
	(void)vector;
	irq_isr |= vdrv_isr_ack(irq_dev);
}

/* Route the device's interrupt: MSI-X entry 0 -> VEC_MSIX (pci) or its
 * GSI, level-triggered, -> KIT_VEC_IRQ_BASE + gsi (mmio). The vector. */
static int irq_route(struct vdrv *d, uint8_t *vector)
{
	kit_irq_init();
	irq_dev = d;
	if (d->transport == VDRV_PCI) {
		if (vdrv_msix_setup(d, 0, kit_lapic_id(), VEC_MSIX) < 0) {
			kit_printf("irq: no MSI-X\n");
			return -1;
		}
		*vector = VEC_MSIX;
		return 0;
	}
	*vector = (uint8_t)(KIT_VEC_IRQ_BASE + d->gsi);
	kit_set_handler(*vector, mmio_isr);
	kit_ioapic_route(d->gsi, true);
	return 0;
}

/* Wait in kit_halt (the 10 ms LAPIC timer bounds each wait) until the
 * count of @vector passes @before. */
static bool irq_wait(uint8_t vector, uint32_t before)
{
	uint32_t ticks0 = kit_irq_count(KIT_VEC_TIMER);

	while (kit_irq_count(vector) == before) {
		if (kit_irq_count(KIT_VEC_TIMER) - ticks0 > timeout_ms / 10)
			return false;
		kit_halt();
	}
	return true;
}

/* ---- blk ---------------------------------------------------------------------- */

#define BLK_F_SIZE_MAX     1
#define BLK_F_SEG_MAX      2
#define BLK_F_RO           5
#define BLK_F_BLK_SIZE     6
#define BLK_F_FLUSH        9
#define BLK_F_DISCARD      13
#define BLK_F_WRITE_ZEROES 14

#define BLK_T_IN           0
#define BLK_T_OUT          1
#define BLK_T_FLUSH        4
#define BLK_T_GET_ID       8
#define BLK_T_DISCARD      11
#define BLK_T_WRITE_ZEROES 13

#define BLK_S_OK     0
#define BLK_S_IOERR  1
#define BLK_S_UNSUPP 2

struct blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

struct blk_seg {
	uint64_t sector;
	uint32_t num_sectors, flags;
};

struct blk_req {
	struct blk_hdr hdr;
	struct blk_seg seg;
	volatile uint8_t status;
	int head;
};

/* One request: header, optional data (split in two descriptors when it
 * is at least two sectors), optional segment, status. Added, not kicked. */
static int blk_add(struct vdrv_queue *q, struct blk_req *r, uint32_t type, uint64_t sector,
		   void *data, uint32_t len, bool seg)
{
	struct vdrv_buf b[5];
	uint32_t n = 0;
	bool dev_writes = type == BLK_T_IN || type == BLK_T_GET_ID;

	r->hdr.type = type;
	r->hdr.reserved = 0;
	r->hdr.sector = sector;
	r->status = 0xff;
	b[n++] = (struct vdrv_buf){ &r->hdr, sizeof(r->hdr), false };
	if (seg)
		b[n++] = (struct vdrv_buf){ &r->seg, sizeof(r->seg), false };
	if (len >= 1024) {
		uint32_t half = (len / 512 / 2) * 512;

		b[n++] = (struct vdrv_buf){ data, half, dev_writes };
		b[n++] = (struct vdrv_buf){ (uint8_t *)data + half, len - half, dev_writes };
	} else if (len) {
		b[n++] = (struct vdrv_buf){ data, len, dev_writes };
	}
	b[n++] = (struct vdrv_buf){ (const void *)&r->status, 1, true };
	r->head = vdrv_add(q, b, n);
	return r->head;
}

/* Submit @n requests at once and wait for all; -1 on timeout. */
static int blk_wait_all(struct vdrv *d, struct vdrv_queue *q, struct blk_req *r, uint32_t n)
{
	uint32_t done = 0, i, len;
	int head;

	vdrv_kick(d, q);
	while (done < n) {
		if ((head = vdrv_wait(q, &len, timeout_ms)) < 0) {
			kit_printf("blk: timeout with %u of %u requests done\n", done, n);
			return -1;
		}
		for (i = 0; i < n; i++)
			if (r[i].head == head)
				done++;
	}
	return 0;
}

/* One request of @type; its status, or -1. */
static int blk_one(struct vdrv *d, struct vdrv_queue *q, uint32_t type, uint64_t sector,
		   void *data, uint32_t len, const struct blk_seg *seg)
{
	struct blk_req *r = alloc_or_die(sizeof(*r), 64);

	if (seg)
		r->seg = *seg;
	if (blk_add(q, r, type, sector, data, len, seg != NULL) < 0)
		return -1;
	if (blk_wait_all(d, q, r, 1) < 0)
		return -1;
	return r->status;
}

/* Read @count sectors at @sector into @buf in @reqs requests in flight. */
static int blk_read(struct vdrv *d, struct vdrv_queue *q, uint64_t sector, uint32_t count,
		    uint32_t reqs, uint8_t *buf)
{
	struct blk_req *r;
	uint32_t i, per, worst = 0;

	if (!reqs)
		reqs = 1;
	if (reqs > count)
		reqs = count;
	if (reqs > 16)
		reqs = 16;
	per = (count + reqs - 1) / reqs;
	r = alloc_or_die(sizeof(*r) * reqs, 64);
	for (i = 0; i < reqs; i++) {
		uint32_t first = i * per, n = count - first < per ? count - first : per;

		if (blk_add(q, &r[i], BLK_T_IN, sector + first, buf + (uint64_t)first * 512,
			    n * 512, false) < 0) {
			kit_printf("blk: queue full at request %u\n", i);
			return -1;
		}
	}
	if (blk_wait_all(d, q, r, reqs) < 0)
		return -1;
	for (i = 0; i < reqs; i++)
		if (r[i].status > worst)
			worst = r[i].status;
	return (int)worst;
}

static bool status_ok(int st, bool expect_fail, bool unsupp_ok)
{
	if (!expect_fail)
		return st == BLK_S_OK;
	return st == BLK_S_IOERR || (unsupp_ok && st == BLK_S_UNSUPP);
}

static long run_blk(int transport)
{
	const uint64_t want = VDRV_BIT(BLK_F_SIZE_MAX) | VDRV_BIT(BLK_F_SEG_MAX) |
			      VDRV_BIT(BLK_F_RO) | VDRV_BIT(BLK_F_BLK_SIZE) | VDRV_BIT(BLK_F_FLUSH) |
			      VDRV_BIT(BLK_F_DISCARD) | VDRV_BIT(BLK_F_WRITE_ZEROES);
	bool expect_ro = kit_cmdline_uint("expect_ro", 0) != 0;
	static struct vdrv dev;
	struct vdrv *d = &dev;
	struct vdrv_queue *q;
	uint64_t capacity;
	uint32_t blk_size = 512;
	long fails = 0;
	int st;

	if (setup(d, transport, 2, (uint32_t)kit_cmdline_uint("disk", 0), want) < 0 ||
	    vdrv_queue_setup(d, 0, 128, VDRV_NO_VECTOR) < 0 || vdrv_driver_ok(d) < 0)
		return 1;
	q = &d->q[0];
	capacity = vdrv_cfg64(d, 0);
	if (d->features & VDRV_BIT(BLK_F_BLK_SIZE))
		blk_size = vdrv_cfg32(d, 20);
	kit_printf("blk info transport=%s capacity=%lu blk_size=%u ro=%u flush=%u discard=%u "
		   "wz=%u qsize=%u\n", transport_name, (unsigned long)capacity, blk_size,
		   !!(d->features & VDRV_BIT(BLK_F_RO)), !!(d->features & VDRV_BIT(BLK_F_FLUSH)),
		   !!(d->features & VDRV_BIT(BLK_F_DISCARD)),
		   !!(d->features & VDRV_BIT(BLK_F_WRITE_ZEROES)), q->size);
	if (d->features & VDRV_BIT(BLK_F_DISCARD))
		kit_printf("blk discard-config max_sectors=%u max_seg=%u align=%u\n",
			   vdrv_cfg32(d, 36), vdrv_cfg32(d, 40), vdrv_cfg32(d, 44));

	if (kit_cmdline_has("id")) {
		char *id = alloc_or_die(21, 8);

		st = blk_one(d, q, BLK_T_GET_ID, 0, id, 20, NULL);
		id[20] = '\0';
		kit_printf("blk id status=%d serial=%s\n", st, id);
		fails += st != BLK_S_OK;
	}
	if (kit_cmdline_has("read")) {
		uint64_t sector = kit_cmdline_uint("read", 0);
		uint32_t count = (uint32_t)kit_cmdline_uint("count", 8);
		uint8_t *buf;

		if (count > 8192)
			count = 8192;
		buf = alloc_or_die((size_t)count * 512, 4096);
		st = blk_read(d, q, sector, count, (uint32_t)kit_cmdline_uint("reqs", 1), buf);
		kit_printf("blk read sector=%lu count=%u status=%d fnv=0x%08x\n",
			   (unsigned long)sector, count, st, kit_fnv1a(buf, (size_t)count * 512));
		fails += st != BLK_S_OK;
	}
	if (kit_cmdline_has("write")) {
		uint64_t sector = kit_cmdline_uint("write", 0);
		uint32_t count = (uint32_t)kit_cmdline_uint("wcount", 8);
		uint32_t seed = (uint32_t)kit_cmdline_uint("wseed", 1);
		uint8_t *buf, *back;

		if (count > 4096)
			count = 4096;
		buf = alloc_or_die((size_t)count * 512, 4096);
		back = alloc_or_die((size_t)count * 512, 4096);
		kit_pattern(buf, (size_t)count * 512, seed);
		st = blk_one(d, q, BLK_T_OUT, sector, buf, count * 512, NULL);
		kit_printf("blk write sector=%lu count=%u status=%d\n", (unsigned long)sector,
			   count, st);
		fails += !status_ok(st, expect_ro, false);
		st = blk_read(d, q, sector, count, 1, back);
		kit_printf("blk readback sector=%lu count=%u status=%d match=%d\n",
			   (unsigned long)sector, count, st,
			   memcmp(buf, back, (size_t)count * 512) == 0);
		fails += st != BLK_S_OK || (!expect_ro && memcmp(buf, back, (size_t)count * 512));
	}
	if (kit_cmdline_has("flush")) {
		st = blk_one(d, q, BLK_T_FLUSH, 0, NULL, 0, NULL);
		kit_printf("blk flush status=%d\n", st);
		fails += st != BLK_S_OK;
	}
	if (kit_cmdline_has("discard")) {
		struct blk_seg seg = { kit_cmdline_uint("discard", 0),
				       (uint32_t)kit_cmdline_uint("dcount", 8), 0 };

		st = blk_one(d, q, BLK_T_DISCARD, 0, NULL, 0, &seg);
		kit_printf("blk discard sector=%lu count=%u status=%d\n",
			   (unsigned long)seg.sector, seg.num_sectors, st);
		fails += !status_ok(st, expect_ro, true);
	}
	if (kit_cmdline_has("wz")) {
		struct blk_seg seg = { kit_cmdline_uint("wz", 0),
				       (uint32_t)kit_cmdline_uint("wzcount", 8), 0 };

		st = blk_one(d, q, BLK_T_WRITE_ZEROES, 0, NULL, 0, &seg);
		kit_printf("blk write_zeroes sector=%lu count=%u status=%d\n",
			   (unsigned long)seg.sector, seg.num_sectors, st);
		fails += !status_ok(st, expect_ro, true);
	}
	kit_printf("blk status=0x%x\n", vdrv_status(d));
	return fails ? 1 : 0;
}

/* ---- console ------------------------------------------------------------------ */

#define CON_RX_BUFS 8
#define CON_RX_LEN  128

static long con_send(struct vdrv *d, const char *s, uint32_t len)
{
	char *b = alloc_or_die(len, 8);
	struct vdrv_buf buf = { b, len, false };

	memcpy(b, s, len);
	return vdrv_call(d, &d->q[1], &buf, 1, timeout_ms);
}

static long run_console(int transport)
{
	static struct vdrv dev;
	struct vdrv *d = &dev;
	char *rx, line[CON_RX_LEN + 1], out[CON_RX_LEN + 16], hello[64];
	uint32_t i, got = 0, len;
	uint64_t t0;
	int n;

	if (setup(d, transport, 3, 0, 0) < 0 || vdrv_queue_setup(d, 0, 16, VDRV_NO_VECTOR) < 0 ||
	    vdrv_queue_setup(d, 1, 16, VDRV_NO_VECTOR) < 0)
		return 1;
	rx = alloc_or_die(CON_RX_BUFS * CON_RX_LEN, 64);
	for (i = 0; i < CON_RX_BUFS; i++) {
		struct vdrv_buf b = { rx + i * CON_RX_LEN, CON_RX_LEN, true };

		vdrv_add(&d->q[0], &b, 1);
	}
	if (vdrv_driver_ok(d) < 0)
		return 1;
	vdrv_kick(d, &d->q[0]);
	n = kit_snprintf(hello, sizeof(hello), "virtio-console hello %s\n", transport_name);
	if (con_send(d, hello, (uint32_t)n) < 0) {
		kit_printf("console: transmit timed out\n");
		return 1;
	}
	kit_printf("console ready\n");
	t0 = vdrv_now_us();
	while (!(got && line[got - 1] == '\n')) {
		int head = vdrv_poll(&d->q[0], &len);
		struct vdrv_buf b;

		if (head < 0) {
			if (vdrv_now_us() - t0 > timeout_ms * 1000) {
				line[got] = '\0';
				kit_printf("console: timeout waiting for input (have %u bytes)\n",
					   got);
				return 1;
			}
			cpu_relax();
			continue;
		}
		/* The descriptor at @head is the buffer it filled. */
		b.addr = (const void *)(uintptr_t)d->q[0].desc[head].addr;
		b.len = CON_RX_LEN;
		b.write = true;
		if (len > CON_RX_LEN)
			len = CON_RX_LEN;
		for (i = 0; i < len && got < CON_RX_LEN; i++)
			line[got++] = ((const char *)b.addr)[i];
		vdrv_add(&d->q[0], &b, 1);
		vdrv_kick(d, &d->q[0]);
	}
	line[got - 1] = '\0';
	n = kit_snprintf(out, sizeof(out), "echo: %s\n", line);
	if (con_send(d, out, (uint32_t)n) < 0) {
		kit_printf("console: echo transmit timed out\n");
		return 1;
	}
	kit_printf("console echo line=%s\n", line);
	return 0;
}

/* ---- rng ------------------------------------------------------------------------- */

/* Fill @buf with @n bytes from the device; the number of requests, or -1. */
static long rng_fill(struct vdrv *d, uint8_t *buf, uint32_t n)
{
	uint32_t have = 0, reqs = 0;

	while (have < n) {
		uint32_t want = n - have < 1024 ? n - have : 1024;
		struct vdrv_buf b = { buf + have, want, true };
		long got = vdrv_call(d, &d->q[0], &b, 1, timeout_ms);

		reqs++;
		if (got < 0 || (uint64_t)got > want) {
			kit_printf("rng: request %u failed (%ld)\n", reqs, got);
			return -1;
		}
		have += (uint32_t)got;
	}
	return reqs;
}

static long rng_irq(struct vdrv *d, uint8_t vector)
{
	uint32_t i, before = 0, n = 3;
	uint8_t *buf = alloc_or_die(64, 64);

	kit_timer_periodic(625000); /* 10 ms watchdog for kit_halt */
	before = kit_irq_count(vector);
	for (i = 0; i < n; i++) {
		struct vdrv_buf b = { buf, 64, true };
		uint32_t c = kit_irq_count(vector), len;

		vdrv_add(&d->q[0], &b, 1);
		vdrv_kick(d, &d->q[0]);
		if (!irq_wait(vector, c)) {
			kit_printf("irq: no interrupt for request %u (count %u, used %d)\n", i,
				   kit_irq_count(vector), vdrv_poll(&d->q[0], &len));
			break;
		}
		if (vdrv_wait(&d->q[0], &len, timeout_ms) < 0) {
			kit_printf("irq: interrupt but no used buffer\n");
			break;
		}
	}
	kit_timer_periodic(0);
	if (d->transport == VDRV_MMIO)
		kit_ioapic_mask(d->gsi);
	kit_printf("irq transport=%s vector=0x%x requests=%u interrupts=%u isr=0x%x\n",
		   transport_name, vector, i, kit_irq_count(vector) - before, irq_isr);
	return i == n ? 0 : 1;
}

static long run_rng(int transport)
{
	static struct vdrv dev;
	struct vdrv *d = &dev;
	bool irq = kit_cmdline_uint("irq", 0) != 0;
	uint32_t n = (uint32_t)kit_cmdline_uint("bytes", 4096);
	uint32_t i, distinct = 0, zero = 0;
	static bool seen[256];
	uint8_t *buf, *a, *b;
	uint8_t vector = 0;
	long reqs;

	if (setup(d, transport, 4, 0, 0) < 0)
		return 1;
	/* MSI-X is enabled before the queue's vector is set. */
	if (irq && irq_route(d, &vector) < 0)
		return 1;
	if (vdrv_queue_setup(d, 0, 8, irq && transport == VDRV_PCI ? 0 : VDRV_NO_VECTOR) < 0)
		return 1;
	if (irq)
		vdrv_queue_interrupts(&d->q[0], true);
	if (vdrv_driver_ok(d) < 0)
		return 1;
	if (irq)
		return rng_irq(d, vector);
	if (n > 1u << 20)
		n = 1u << 20;
	buf = alloc_or_die(n, 4096);
	a = alloc_or_die(32, 64);
	b = alloc_or_die(32, 64);
	if ((reqs = rng_fill(d, buf, n)) < 0 || rng_fill(d, a, 32) < 0 || rng_fill(d, b, 32) < 0)
		return 1;
	for (i = 0; i < n; i++) {
		if (!seen[buf[i]]) {
			seen[buf[i]] = true;
			distinct++;
		}
		zero += buf[i] == 0;
	}
	kit_printf("rng bytes=%u requests=%ld distinct=%u zero=%u differ=%d first=%02x%02x%02x%02x\n",
		   n, reqs, distinct, zero, memcmp(a, b, 32) != 0, buf[0], buf[1], buf[2], buf[3]);
	return 0;
}

/* ---- balloon -------------------------------------------------------------------- */

#define BAL_F_MUST_TELL_HOST 0
#define BAL_F_STATS_VQ       1
#define BAL_F_DEFLATE_ON_OOM 2
#define BAL_F_FREE_PAGE_HINT 3
#define BAL_F_PAGE_POISON    4
#define BAL_F_REPORTING      5

#define BAL_S_MAJFLT  2
#define BAL_S_MINFLT  3
#define BAL_S_MEMFREE 4
#define BAL_S_MEMTOT  5
#define BAL_S_AVAIL   6

#define BAL_BASE 0x1000000ull /* 16 MiB */
#define BAL_PFNS_PER_BUF 256u

struct bal_stat {
	uint16_t tag;
	uint64_t val;
} __attribute__((packed));

static struct {
	struct vdrv dev;
	uint32_t pages;          /* of the region */
	uint32_t actual;         /* pages in the balloon: region pages [0, actual) */
	uint32_t *pfns;
	int statsq;
	struct bal_stat *stats;
	uint32_t stats_seq;
	uint64_t total, free;
} bal;

static void bal_stats_fill(void)
{
	struct bal_stat *s = bal.stats;

	s[0] = (struct bal_stat){ BAL_S_MEMTOT, bal.total };
	s[1] = (struct bal_stat){ BAL_S_MEMFREE, bal.free };
	s[2] = (struct bal_stat){ BAL_S_AVAIL, bal.free };
	s[3] = (struct bal_stat){ BAL_S_MAJFLT, 7 };
	s[4] = (struct bal_stat){ BAL_S_MINFLT, 1000 + bal.stats_seq };
}

static void bal_stats_send(void)
{
	struct vdrv_buf b = { bal.stats, 5 * sizeof(struct bal_stat), false };

	bal_stats_fill();
	vdrv_add(&bal.dev.q[bal.statsq], &b, 1);
	vdrv_kick(&bal.dev, &bal.dev.q[bal.statsq]);
	if (bal.stats_seq == 0)
		kit_printf("balloon stats sent total=%lu free=%lu majflt=7 minflt=%u\n",
			   (unsigned long)bal.total, (unsigned long)bal.free, 1000 + bal.stats_seq);
}

/* The device took our stats buffer back: refill it. */
static void bal_stats_poll(void)
{
	uint32_t len;

	if (bal.statsq < 0)
		return;
	while (vdrv_poll(&bal.dev.q[bal.statsq], &len) >= 0) {
		bal.stats_seq++;
		bal_stats_send();
	}
}

/* Send pages [first, first + n) of the region on queue @qi. */
static int bal_send_pfns(int qi, uint32_t first, uint32_t n)
{
	struct vdrv_queue *q = &bal.dev.q[qi];
	uint32_t i, done = 0, inflight = 0, len;

	for (i = 0; i < n; i++)
		bal.pfns[first + i] = (uint32_t)((BAL_BASE >> 12) + first + i);
	while (done < n || inflight) {
		while (done < n && q->num_free) {
			uint32_t k = n - done < BAL_PFNS_PER_BUF ? n - done : BAL_PFNS_PER_BUF;
			struct vdrv_buf b = { &bal.pfns[first + done], 4 * k, false };

			vdrv_add(q, &b, 1);
			done += k;
			inflight++;
		}
		vdrv_kick(&bal.dev, q);
		while (inflight) {
			if (vdrv_wait(q, &len, timeout_ms) < 0) {
				kit_printf("balloon: queue %d timed out\n", qi);
				return -1;
			}
			inflight--;
			if (done < n && q->num_free)
				break;
		}
	}
	return 0;
}

static uint32_t bal_touch(uint32_t seed)
{
	uint64_t *p = (uint64_t *)(uintptr_t)BAL_BASE;
	uint64_t i, n = (uint64_t)bal.pages * 4096 / 8;
	uint32_t bad = 0;

	for (i = 0; i < n; i++)
		p[i] = i * 0x9e3779b97f4a7c15ull + seed;
	for (i = 0; i < n; i++)
		bad += p[i] != i * 0x9e3779b97f4a7c15ull + seed;
	return bad;
}

/* The @mib MiB after the region, which free page reporting hands back. */
static uint64_t bal_report_start(void)
{
	return BAL_BASE + (uint64_t)bal.pages * 4096;
}

static void bal_report_touch(uint32_t mib)
{
	uint64_t start = bal_report_start(), i;

	for (i = 0; i < (uint64_t)mib << 20; i += 8)
		*(volatile uint64_t *)(uintptr_t)(start + i) = i + 1;
	kit_printf("balloon report touched mib=%u\n", mib);
}

/* Report those pages as free on queue @qi: 1 MiB a descriptor (device-
 * writable, as the spec has it), up to 16 a request. */
static int bal_report(int qi, uint32_t mib)
{
	struct vdrv_queue *q = &bal.dev.q[qi];
	uint64_t start = bal_report_start();
	uint32_t sent = 0;

	while (sent < mib) {
		struct vdrv_buf b[16];
		uint32_t k = mib - sent < 16 ? mib - sent : 16, j;

		for (j = 0; j < k; j++)
			b[j] = (struct vdrv_buf){ (const void *)(uintptr_t)(start +
					((uint64_t)(sent + j) << 20)), 1u << 20, true };
		if (vdrv_call(&bal.dev, q, b, k, timeout_ms) < 0) {
			kit_printf("balloon: report timed out\n");
			return -1;
		}
		sent += k;
	}
	kit_printf("balloon reported mib=%u queue=%d\n", mib, qi);
	return 0;
}

static long run_balloon(int transport)
{
	struct vdrv *d = &bal.dev;
	uint32_t mib = (uint32_t)kit_cmdline_uint("mib", 32);
	uint32_t report = (uint32_t)kit_cmdline_uint("report", 0);
	bool want_stats = kit_cmdline_uint("stats", 1) != 0;
	uint64_t want = VDRV_BIT(BAL_F_MUST_TELL_HOST) | VDRV_BIT(BAL_F_DEFLATE_ON_OOM) |
			(want_stats ? VDRV_BIT(BAL_F_STATS_VQ) : 0) |
			(report ? VDRV_BIT(BAL_F_REPORTING) : 0);
	const struct kit_mb_info *mb = kit_mb();
	bool inflated = false, reported = false;
	bool irq = kit_cmdline_uint("irq", 0) != 0;
	uint32_t seen = 0, first = 0, waits = 0;
	uint8_t vector = 0;
	uint64_t t0;
	int qi, reportq = -1;

	bal.pages = mib * 256;
	bal.statsq = -1;
	bal.pfns = alloc_or_die((size_t)bal.pages * 4, 4096);
	bal.stats = alloc_or_die(5 * sizeof(struct bal_stat), 64);
	/* vmkit moves the RAM of the legacy hole above 1 MiB: lower + upper
	 * is all of it. */
	bal.total = mb ? ((uint64_t)mb->mem_lower + mb->mem_upper) * 1024 : 0;
	bal.free = bal.total - ((uint64_t)mib << 20);
	if (setup(d, transport, 5, 0, want) < 0)
		return 1;
	kit_printf("balloon features=0x%lx\n", (unsigned long)d->features);
	if (report && !(d->features & VDRV_BIT(BAL_F_REPORTING))) {
		kit_printf("balloon: REPORTING not offered\n");
		return 1;
	}
	/* Queue indices follow the negotiated features (5.5.2). */
	qi = 2;
	if (d->features & VDRV_BIT(BAL_F_STATS_VQ))
		bal.statsq = qi++;
	if (d->features & VDRV_BIT(BAL_F_FREE_PAGE_HINT))
		qi++;
	if (d->features & VDRV_BIT(BAL_F_REPORTING))
		reportq = qi++;
	/* irq=1: act on config-change interrupts only (MSI-X entry 0 as the
	 * config vector on pci, the GSI with ISR bit 1 on mmio). */
	if (irq) {
		if (irq_route(d, &vector) < 0)
			return 1;
		if (transport == VDRV_PCI && vdrv_msix_config(d, 0) != 0) {
			kit_printf("balloon: config MSI-X vector refused\n");
			return 1;
		}
	}
	if (vdrv_queue_setup(d, 0, 64, VDRV_NO_VECTOR) < 0 ||
	    vdrv_queue_setup(d, 1, 64, VDRV_NO_VECTOR) < 0 ||
	    (bal.statsq >= 0 && vdrv_queue_setup(d, (uint16_t)bal.statsq, 4, VDRV_NO_VECTOR) < 0) ||
	    (reportq >= 0 && vdrv_queue_setup(d, (uint16_t)reportq, 32, VDRV_NO_VECTOR) < 0) ||
	    vdrv_driver_ok(d) < 0)
		return 1;
	if (bal.statsq >= 0)
		bal_stats_send();
	kit_printf("balloon touch bad=%u\n", bal_touch(0x1234));
	if (reportq >= 0)
		bal_report_touch(report);
	kit_printf("balloon touched mib=%u pages=%u base=0x%lx\n", mib, bal.pages,
		   (unsigned long)BAL_BASE);

	t0 = vdrv_now_us();
	if (irq) {
		seen = first = kit_irq_count(vector);
		kit_timer_periodic(625000); /* 10 ms watchdog for kit_halt */
	}
	for (;;) {
		uint32_t target;

		if (irq) {
			if (!irq_wait(vector, seen)) {
				kit_printf("balloon: no config interrupt (actual %u)\n", bal.actual);
				return 1;
			}
			seen = kit_irq_count(vector);
			waits++;
		}
		target = vdrv_cfg32(d, 0);
		bal_stats_poll();
		/* The first non-zero target starts the work: report first. */
		if (reportq >= 0 && !reported && target) {
			if (bal_report(reportq, report) < 0)
				return 1;
			reported = true;
		}
		if (target > bal.pages)
			target = bal.pages;
		if (target > bal.actual) {
			if (bal_send_pfns(0, bal.actual, target - bal.actual) < 0)
				return 1;
			bal.actual = target;
			vdrv_cfg_write32(d, 4, bal.actual);
			inflated = true;
			kit_printf("balloon inflated pages=%u\n", bal.actual);
		} else if (target < bal.actual) {
			if (bal_send_pfns(1, target, bal.actual - target) < 0)
				return 1;
			bal.actual = target;
			vdrv_cfg_write32(d, 4, bal.actual);
			kit_printf("balloon deflated pages=%u\n", bal.actual);
		}
		if (inflated && bal.actual == 0)
			break;
		if (vdrv_now_us() - t0 > 3 * timeout_ms * 1000) {
			kit_printf("balloon: timeout (target %u actual %u)\n", target, bal.actual);
			return 1;
		}
		if (!irq)
			vdrv_delay_us(2000);
	}
	if (irq) {
		kit_timer_periodic(0);
		if (transport == VDRV_MMIO)
			kit_ioapic_mask(d->gsi);
		kit_printf("balloon config-irq vector=0x%x wakeups=%u interrupts=%u isr=0x%x\n",
			   vector, waits, seen - first, irq_isr);
	}
	kit_printf("balloon retouch bad=%u mib=%u\n", bal_touch(0x5678), mib);
	bal_stats_poll();
	kit_printf("balloon stats refills=%u status=0x%x\n", bal.stats_seq, vdrv_status(d));
	return 0;
}

/* ---- list ------------------------------------------------------------------------- */

static long run_list(void)
{
	static uint32_t nth[64];
	uint32_t i, bad = 0;

	for (i = 0; i < VDRV_MMIO_MAX; i++) {
		uint64_t base = VDRV_MMIO_BASE + i * VDRV_MMIO_SIZE;

		if (mmio_read32(base) != 0x74726976u)
			break;
		kit_printf("list mmio index=%u version=%u id=%u vendor=0x%x\n", i,
			   mmio_read32(base + 4), mmio_read32(base + 8), mmio_read32(base + 12));
	}
	kit_printf("list mmio count=%u\n", i);
	for (i = 0; i < 32; i++) {
		uint32_t id = vdrv_pci_read32(i, 0), cf8 = vdrv_pci_cf8_read32(i, 0);
		uint32_t class = vdrv_pci_read32(i, 8) >> 8;

		if (id != cf8) {
			kit_printf("list pci slot=%u ecam=0x%08x cf8=0x%08x MISMATCH\n", i, id, cf8);
			bad++;
		}
		if ((id & 0xffff) == 0xffff)
			continue;
		kit_printf("list pci slot=%u vendor=0x%04x device=0x%04x class=0x%06x\n", i,
			   id & 0xffff, id >> 16, class);
		if ((id & 0xffff) == VDRV_PCI_VENDOR && (id >> 16) >= 0x1040 &&
		    (id >> 16) < 0x1040 + 64) {
			static struct vdrv d;
			uint32_t dev_id = (id >> 16) - 0x1040;

			/* Probe it as a driver would: the virtio capabilities resolve. */
			if (vdrv_find(&d, VDRV_PCI, dev_id, nth[dev_id]++) == 0 && d.slot == i)
				kit_printf("list pci slot=%u caps=ok msix=%u\n", i, d.msix_size);
			else
				bad++;
		}
	}
	kit_printf("list mismatches=%u\n", bad);
	return bad ? 1 : 0;
}

long guest_main(const char *cmdline)
{
	const char *dev = kit_cmdline_value("dev");
	int transport = value_is(kit_cmdline_value("transport"), "mmio") ? VDRV_MMIO : VDRV_PCI;
	long r;

	(void)cmdline;
	timeout_ms = kit_cmdline_uint("timeout_ms", 20000);
	vdrv_ecam_base = kit_cmdline_uint("ecam", VDRV_ECAM_BASE);
	transport_name = vdrv_transport_name(transport);
	vdrv_time_init();
	if (value_is(dev, "blk"))
		r = run_blk(transport);
	else if (value_is(dev, "console"))
		r = run_console(transport);
	else if (value_is(dev, "rng"))
		r = run_rng(transport);
	else if (value_is(dev, "balloon"))
		r = run_balloon(transport);
	else if (value_is(dev, "list"))
		r = run_list();
	else {
		kit_printf("virtio: dev=blk|console|rng|balloon|list\n");
		r = 2;
	}
	kit_printf("virtio done rc=%ld\n", r);
	return r;
}
