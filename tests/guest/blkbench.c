/* SPDX-License-Identifier: MIT */
/* blkbench: a virtio-blk load generator for bench/virtio. The kit's driver
 * (vdrv.c) at CPL3 issues @n requests of @size bytes (all reads or all
 * writes) with @q in flight, polling the used ring (no interrupts), and
 * times them with the TSC. The same ELF runs under vmkit-run and under
 * QEMU's q35 (`ecam=0xb0000000`), so both VMMs see the same driver.
 *
 *   transport=pci|mmio  (default pci)   disk=N   (the Nth disk, default 0)
 *   ecam=A        PCI ECAM base (default 0xe0000000; QEMU's q35: 0xb0000000)
 *   op=read|write (default read)   size=BYTES (multiple of 512, default 4096)
 *   n=N           timed requests (0: an idle baseline, see idle_ms)
 *   q=Q           requests in flight (default 1; Q * size <= 8 MiB, Q <= 32)
 *   warm=W        untimed requests before the timed ones (default 32)
 *   span_mib=M    the requests walk sequentially through the first M MiB of
 *                 the disk and wrap (default: the whole disk)
 *   idle_ms=T     after "blkbench start", spin T ms before the requests
 *                 (with n=0: the host's idle baseline over T ms; us= counts it)
 *   settle_ms=T   spin T ms after each marker line (default 200), so the host
 *                 samples its counters while the guest only spins
 *   timeout_ms=T  per-wait limit (default 20000)
 *
 * Output, in this order (the host samples its CPU counters at the two
 * marker lines; everything between them is the measured work):
 *   blkbench info transport=... capacity=SECTORS size_max=B seg_max=S qsize=Q
 *   blkbench start
 *   blkbench end n=N size=B q=Q op=read|write us=T errors=E kicks=K
 *   blkbench done rc=R
 * Writes carry a pattern; reads are not checked (tests/guest/virtio.c and
 * its tests check the data path). Exits with 0 when every request
 * completed with status OK.
 */
#include "vdrv.h"

#define BLK_F_SIZE_MAX 1
#define BLK_F_SEG_MAX  2
#define BLK_F_BLK_SIZE 6
#define BLK_F_FLUSH    9

#define BLK_T_IN  0
#define BLK_T_OUT 1

#define MAX_Q      32u
#define MAX_BYTES  (8u << 20)
#define MAX_SEGS   16u

struct blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

struct slot {
	struct blk_hdr hdr;
	volatile uint8_t status;
	uint8_t *buf;
	int head;
};

static struct vdrv dev;
static struct slot *slots;
static uint32_t *free_slots, n_free;
static int16_t slot_of_head[VDRV_QUEUE_MAX_SIZE];
static uint32_t seg_len; /* data bytes a descriptor carries (size_max) */

static bool value_is(const char *v, const char *w)
{
	size_t n = strlen(w);

	return v && !strncmp(v, w, n) && (v[n] == ' ' || v[n] == '\0');
}

/* Queue slot @s as one request at @sector: header, the data in as many
 * descriptors as size_max asks for, status. Not kicked. */
static int submit(struct vdrv_queue *q, uint32_t s, uint32_t type, uint64_t sector,
		  uint32_t size)
{
	struct vdrv_buf b[MAX_SEGS + 2];
	struct slot *sl = &slots[s];
	uint32_t n = 0, off;
	bool dev_writes = type == BLK_T_IN;

	sl->hdr.type = type;
	sl->hdr.reserved = 0;
	sl->hdr.sector = sector;
	sl->status = 0xff;
	b[n++] = (struct vdrv_buf){ &sl->hdr, sizeof(sl->hdr), false };
	for (off = 0; off < size; off += seg_len) {
		uint32_t l = size - off < seg_len ? size - off : seg_len;

		b[n++] = (struct vdrv_buf){ sl->buf + off, l, dev_writes };
	}
	b[n++] = (struct vdrv_buf){ (const void *)&sl->status, 1, true };
	sl->head = vdrv_add(q, b, n);
	if (sl->head < 0)
		return -1;
	slot_of_head[sl->head] = (int16_t)s;
	return 0;
}

static long run(int transport)
{
	const uint64_t want = VDRV_BIT(BLK_F_SIZE_MAX) | VDRV_BIT(BLK_F_SEG_MAX) |
			      VDRV_BIT(BLK_F_BLK_SIZE) | VDRV_BIT(BLK_F_FLUSH);
	uint32_t type = value_is(kit_cmdline_value("op"), "write") ? BLK_T_OUT : BLK_T_IN;
	uint64_t size = kit_cmdline_uint("size", 4096);
	uint64_t n = kit_cmdline_uint("n", 1000);
	uint64_t qd = kit_cmdline_uint("q", 1);
	uint64_t warm = kit_cmdline_uint("warm", 32);
	uint64_t idle_ms = kit_cmdline_uint("idle_ms", 0);
	uint64_t timeout_ms = kit_cmdline_uint("timeout_ms", 20000);
	uint64_t settle_ms = kit_cmdline_uint("settle_ms", 200);
	uint64_t capacity, span, next = 0, submitted = 0, done = 0, total, t0 = 0, t1;
	uint32_t size_max = 0, seg_max = 0, i, len;
	uint64_t errors = 0, kicks = 0;
	struct vdrv *d = &dev;
	struct vdrv_queue *q;

	if (vdrv_find(d, transport, 2, (uint32_t)kit_cmdline_uint("disk", 0)) < 0) {
		kit_printf("blkbench: no virtio-blk disk on %s\n", vdrv_transport_name(transport));
		return 1;
	}
	if (vdrv_init(d, want) < 0 || vdrv_queue_setup(d, 0, 128, VDRV_NO_VECTOR) < 0 ||
	    vdrv_driver_ok(d) < 0)
		return 1;
	q = &d->q[0];
	capacity = vdrv_cfg64(d, 0);
	if (d->features & VDRV_BIT(BLK_F_SIZE_MAX))
		size_max = vdrv_cfg32(d, 8);
	if (d->features & VDRV_BIT(BLK_F_SEG_MAX))
		seg_max = vdrv_cfg32(d, 12);
	kit_printf("blkbench info transport=%s capacity=%lu size_max=%u seg_max=%u qsize=%u\n",
		   vdrv_transport_name(transport), (unsigned long)capacity, size_max, seg_max,
		   q->size);
	if (!size || size % 512 || size > MAX_BYTES || !qd || qd > MAX_Q ||
	    qd * size > MAX_BYTES) {
		kit_printf("blkbench: size must be a multiple of 512, q in 1..%u, q * size "
			   "<= %u\n", MAX_Q, MAX_BYTES);
		return 1;
	}
	/* Descriptors per request: as few as the device's limits allow. */
	seg_len = size_max >= 512 ? size_max & ~511u : (uint32_t)size;
	if (seg_len > size)
		seg_len = (uint32_t)size;
	if ((size + seg_len - 1) / seg_len > MAX_SEGS ||
	    (seg_max && (size + seg_len - 1) / seg_len > seg_max) ||
	    qd * ((size + seg_len - 1) / seg_len + 2) > q->size) {
		kit_printf("blkbench: %lu bytes x %lu do not fit the queue (size_max %u seg_max %u)\n",
			   (unsigned long)size, (unsigned long)qd, size_max, seg_max);
		return 1;
	}
	span = kit_cmdline_uint("span_mib", 0) * 2048;
	if (!span || span > capacity)
		span = capacity;
	span -= span % (size / 512);
	if (span < size / 512) {
		kit_printf("blkbench: the disk (%lu sectors) is smaller than one request\n",
			   (unsigned long)capacity);
		return 1;
	}
	slots = vdrv_alloc(sizeof(*slots) * qd, 64);
	free_slots = vdrv_alloc(sizeof(*free_slots) * qd, 64);
	if (!slots || !free_slots)
		return 1;
	for (i = 0; i < qd; i++) {
		free_slots[n_free++] = i;
		slots[i].buf = vdrv_alloc(size, 4096);
		if (!slots[i].buf) {
			kit_printf("blkbench: out of heap\n");
			return 1;
		}
		kit_pattern(slots[i].buf, size, i + 1);
	}

	/* Warm-up (untimed), then the timed run: keep @qd in flight, refill
	 * every completed slot and kick once per batch. */
	for (int phase = 0; phase < 2; phase++) {
		total = phase ? n : warm;
		submitted = done = 0;
		if (phase) {
			/* Give the host time to sample its counters before the work
			 * (and, below, after it), by spinning in the guest. */
			kit_printf("blkbench start\n");
			vdrv_delay_us(settle_ms * 1000);
			t0 = vdrv_now_us();
			while (vdrv_now_us() - t0 < idle_ms * 1000)
				cpu_relax();
			kicks = 0;
		}
		while (done < total) {
			bool added = false;

			while (submitted < total && n_free) {
				uint32_t s = free_slots[--n_free];

				if (submit(q, s, type, next, (uint32_t)size) < 0) {
					kit_printf("blkbench: queue full\n");
					return 1;
				}
				next += size / 512;
				if (next >= span)
					next = 0;
				submitted++;
				added = true;
			}
			if (added) {
				vdrv_kick(d, q);
				kicks++;
			}
			/* Wait for one completion, then take every other ready one. */
			int head = vdrv_wait(q, &len, timeout_ms);

			if (head < 0) {
				kit_printf("blkbench: timeout with %lu of %lu done\n",
					   (unsigned long)done, (unsigned long)total);
				return 1;
			}
			do {
				int16_t s = slot_of_head[head];

				errors += slots[s].status != 0;
				free_slots[n_free++] = (uint32_t)s;
				done++;
			} while ((head = vdrv_poll(q, &len)) >= 0);
		}
	}
	t1 = vdrv_now_us();
	kit_printf("blkbench end n=%lu size=%lu q=%lu op=%s us=%lu errors=%lu kicks=%lu\n",
		   (unsigned long)n, (unsigned long)size, (unsigned long)qd,
		   type == BLK_T_IN ? "read" : "write", (unsigned long)(t1 - t0),
		   (unsigned long)errors, (unsigned long)kicks);
	vdrv_delay_us(settle_ms * 1000);
	return errors ? 1 : 0;
}

long guest_main(const char *cmdline)
{
	int transport = value_is(kit_cmdline_value("transport"), "mmio") ? VDRV_MMIO : VDRV_PCI;
	long r;

	(void)cmdline;
	vdrv_ecam_base = kit_cmdline_uint("ecam", VDRV_ECAM_BASE);
	vdrv_time_init();
	r = run(transport);
	kit_printf("blkbench done rc=%ld\n", r);
	return r;
}
