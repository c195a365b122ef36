/* SPDX-License-Identifier: MIT */
/* virtio-balloon over the unit-test driver: queue indices follow the
 * negotiated features, inflated and reported pages really go back to the
 * host (memfd and anonymous memory: not resident, read back as zeros),
 * hostile page numbers touch nothing outside guest RAM, stats arrive and
 * are re-requested, the target is announced with a config interrupt, and
 * the state round-trips while corrupted blobs are refused. */
#include <criterion/criterion.h>
#include <sys/mman.h>

#include "devices/legacy/legacy.h"
#include "devices/virtio/devices.h"
#include "loopthread.h"
#include "vqdriver.h"

#define F_STATS (1ull << 1)
#define F_DEFLATE_ON_OOM (1ull << 2)
#define F_REPORTING (1ull << 5)
#define PAGE 4096u

#define MEMFD_GPA 0x10000000ull
#define ANON_GPA 0x20000000ull
#define RO_GPA 0x30000000ull
#define PART_GPA 0x40000000ull
#define RAM_LEN (1u << 20)
#define PART_LEN 0x1800u

struct bal {
	struct vqd_mem m;
	struct vqd_queue q[4];
	struct vqd_transport t;
	struct vmkit_virtio_dev dev;
	const vmkit_virtio_ops *ops;
	void *opaque;
	struct loop_thread lt;
	bool with_loop;
	uint8_t *memfd_ram, *anon_ram, *ro, *part;
};

/* Guest memory: the driver's 4 MiB (rings, buffers), 1 MiB of memfd RAM,
 * 1 MiB of anonymous RAM, a read-only page, and a region of a page and a
 * half whose host buffer goes on past its end. */
static void bal_mem(struct bal *b)
{
	vqd_mem_init(&b->m, 0, 0);
	cr_assert_geq(vmkit__gmem_add(&b->m.gm, MEMFD_GPA, RAM_LEN, VMKIT_MEMORY_MEMFD, 0), 0);
	cr_assert_geq(vmkit__gmem_add(&b->m.gm, ANON_GPA, RAM_LEN, VMKIT_MEMORY_ANONYMOUS, 0), 0);
	b->ro = aligned_alloc(PAGE, PAGE);
	b->part = aligned_alloc(PAGE, 2 * PAGE);
	cr_assert(b->ro && b->part);
	memset(b->ro, 0x5a, PAGE);
	memset(b->part, 0x6b, 2 * PAGE);
	cr_assert_geq(vmkit__gmem_add_host(&b->m.gm, RO_GPA, PAGE, b->ro, VMKIT_MEMORY_READONLY), 0);
	cr_assert_geq(vmkit__gmem_add_host(&b->m.gm, PART_GPA, PART_LEN, b->part, 0), 0);
	b->memfd_ram = vqd_hva(&b->m, MEMFD_GPA, RAM_LEN);
	b->anon_ram = vqd_hva(&b->m, ANON_GPA, RAM_LEN);
}

static void bal_up_features(struct bal *b, bool with_loop, uint64_t features)
{
	struct vqd_queue *qs[4] = { &b->q[0], &b->q[1], NULL, NULL };
	unsigned n = 2;

	memset(b, 0, sizeof(*b));
	b->with_loop = with_loop;
	if (with_loop)
		loop_thread_new(&b->lt);
	bal_mem(b);
	vqd_transport_init(&b->t);
	cr_assert_eq(virtio_balloon_create(&b->m.gm, with_loop ? b->lt.loop : NULL, &b->ops,
					   &b->opaque),
		     0, "%s", vmkit_last_error());
	cr_assert_eq(b->ops->device_id, VMKIT_VIRTIO_ID_BALLOON);
	cr_assert_eq(virtio_dev_init(&b->dev, b->ops, b->opaque, &b->m.gm, &b->t.tr, &b->t,
				     "balloon0"),
		     0);
	if (with_loop)
		loop_thread_start(&b->lt);
	for (unsigned i = 0; i < 4; i++)
		vqd_queue_init(&b->q[i], &b->m, 64);
	if (features == VQD_FEATURES_ALL)
		features = vqd_device_features(&b->dev);
	if (features & F_STATS)
		qs[n] = &b->q[n], n++;
	if (features & F_REPORTING)
		qs[n] = &b->q[n], n++;
	cr_assert(vqd_status_live(vqd_handshake(&b->dev, features, qs, n)));
}

static void bal_up(struct bal *b, bool with_loop)
{
	bal_up_features(b, with_loop, VQD_FEATURES_ALL);
}

static void bal_down(struct bal *b)
{
	if (b->with_loop)
		loop_thread_stop(&b->lt);
	virtio_dev_destroy(&b->dev);
	if (b->with_loop)
		loop_thread_free(&b->lt);
	vqd_mem_destroy(&b->m);
	free(b->ro);
	free(b->part);
}

/* Post the page numbers as one device-readable buffer on @q. */
static void post_pfns(struct bal *b, unsigned q, const uint32_t *pfns, size_t n)
{
	size_t bytes = n ? n * 4 : 4;
	uint64_t g = vqd_alloc(&b->m, bytes, 16);

	memcpy(vqd_hva(&b->m, g, bytes), pfns, n * 4);
	vqd_publish(&b->q[q], (uint16_t)vqd_add_chain(&b->q[q],
						      &(struct vqd_buf){ g, (uint32_t)(n * 4), false },
						      1));
	vqd_kick(&b->dev, (uint16_t)q);
}

static unsigned resident(const void *p, size_t len)
{
	unsigned char vec[512];
	unsigned n = 0;

	cr_assert_leq(len / PAGE, sizeof(vec));
	cr_assert_eq(mincore((void *)p, len, vec), 0);
	for (size_t i = 0; i < len / PAGE; i++)
		n += vec[i] & 1;
	return n;
}

static bool is_filled(const uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

static uint32_t cfg32(struct bal *b, uint32_t off)
{
	uint32_t v;

	vqd_lock(&b->dev);
	virtio_dev_config_read(&b->dev, off, &v, 4);
	vqd_unlock(&b->dev);
	return v;
}

static void cfg32_write(struct bal *b, uint32_t off, uint32_t v)
{
	vqd_lock(&b->dev);
	virtio_dev_config_write(&b->dev, off, &v, 4);
	vqd_unlock(&b->dev);
}

static bool used_one(struct bal *b, unsigned q)
{
	uint32_t id, len;

	return vqd_get_used(&b->q[q], &id, &len);
}

Test(virtio_balloon, offers_the_right_features)
{
	struct bal b;
	uint64_t f;

	bal_up(&b, false);
	f = vqd_device_features(&b.dev);
	cr_assert(f & F_STATS);
	cr_assert(f & F_DEFLATE_ON_OOM);
	cr_assert(f & F_REPORTING);
	cr_assert_not(f & 1ull, "MUST_TELL_HOST must not be offered");
	cr_assert_not(f & (1ull << 3), "FREE_PAGE_HINT is not implemented");
	cr_assert_not(f & (1ull << 4), "PAGE_POISON is not offered");
	bal_down(&b);
}

static void check_inflate(struct bal *b, uint8_t *ram, uint64_t gpa)
{
	uint32_t pfns[16];

	memset(ram, 0xab, 32 * PAGE);
	cr_assert_eq(resident(ram, 32 * PAGE), 32);
	/* pages 0..7 and 10..17 (two runs), page 8, 9 and 18+ stay */
	for (unsigned i = 0; i < 8; i++) {
		pfns[i] = (uint32_t)(gpa / PAGE) + i;
		pfns[8 + i] = (uint32_t)(gpa / PAGE) + 10 + i;
	}
	post_pfns(b, 0, pfns, 16);
	cr_assert(used_one(b, 0), "inflate buffer not returned");
	cr_assert_eq(resident(ram, 8 * PAGE), 0, "inflated pages still resident");
	cr_assert_eq(resident(ram + 10 * PAGE, 8 * PAGE), 0);
	cr_assert_eq(resident(ram + 8 * PAGE, 2 * PAGE), 2, "a page not inflated was released");
	cr_assert(is_filled(ram, 8 * PAGE, 0), "inflated pages did not read back as zeros");
	cr_assert(is_filled(ram + 8 * PAGE, 2 * PAGE, 0xab));
	cr_assert(is_filled(ram + 18 * PAGE, 14 * PAGE, 0xab));
	/* deflate: returned, and the guest uses the pages again */
	post_pfns(b, 1, pfns, 16);
	cr_assert(used_one(b, 1), "deflate buffer not returned");
	memset(ram, 0xcd, PAGE);
	cr_assert(is_filled(ram, PAGE, 0xcd));
}

Test(virtio_balloon, inflate_releases_memfd_pages)
{
	struct bal b;

	bal_up(&b, false);
	check_inflate(&b, b.memfd_ram, MEMFD_GPA);
	cr_assert(vqd_status_live(vqd_status(&b.dev)));
	bal_down(&b);
}

Test(virtio_balloon, inflate_releases_anonymous_pages)
{
	struct bal b;

	bal_up(&b, false);
	check_inflate(&b, b.anon_ram, ANON_GPA);
	bal_down(&b);
}

Test(virtio_balloon, hostile_page_numbers_touch_nothing_else)
{
	struct bal b;
	uint32_t pfns[] = {
		0xffffffffu,                         /* far beyond memory */
		(uint32_t)(0x5000000 / PAGE),        /* a hole in the map */
		(uint32_t)(RO_GPA / PAGE),           /* read-only memory */
		(uint32_t)(PART_GPA / PAGE) + 1,     /* a page running past its region */
		(uint32_t)(ANON_GPA / PAGE) + 200,   /* a good one among them */
	};
	uint64_t big_gpa;
	uint32_t *big;
	uint32_t id, len;

	bal_up(&b, false);
	memset(b.anon_ram + 200 * PAGE, 0xee, PAGE);
	post_pfns(&b, 0, pfns, ARRAY_SIZE(pfns));
	cr_assert(used_one(&b, 0));
	cr_assert(is_filled(b.ro, PAGE, 0x5a), "read-only memory was released");
	cr_assert(is_filled(b.part, 2 * PAGE, 0x6b), "memory past a region's end was released");
	cr_assert(is_filled(b.anon_ram + 200 * PAGE, PAGE, 0), "the valid page was not released");

	/* an odd length: the 3 trailing bytes are ignored */
	big_gpa = vqd_alloc(&b.m, 11, 16);
	memcpy(vqd_hva(&b.m, big_gpa, 4), &pfns[4], 4);
	vqd_publish(&b.q[0], (uint16_t)vqd_add_chain(&b.q[0], &(struct vqd_buf){ big_gpa, 11, false },
						     1));
	vqd_kick(&b.dev, 0);
	cr_assert(used_one(&b, 0));

	/* a page number split across two descriptors still counts */
	{
		uint32_t pfn = (uint32_t)(ANON_GPA / PAGE) + 201;
		uint64_t g1 = vqd_alloc(&b.m, 2, 2), g2 = vqd_alloc(&b.m, 2, 64);

		memset(b.anon_ram + 201 * PAGE, 0xee, PAGE);
		memcpy(vqd_hva(&b.m, g1, 2), &pfn, 2);
		memcpy(vqd_hva(&b.m, g2, 2), (uint8_t *)&pfn + 2, 2);
		struct vqd_buf two[] = { { g1, 2, false }, { g2, 2, false } };

		vqd_publish(&b.q[0], (uint16_t)vqd_add_chain(&b.q[0], two, 2));
		vqd_kick(&b.dev, 0);
		cr_assert(used_one(&b, 0));
		cr_assert(is_filled(b.anon_ram + 201 * PAGE, PAGE, 0));
	}

	/* a huge buffer of bad numbers: handled, returned, nothing harmed */
	big_gpa = vqd_alloc(&b.m, 100000 * 4, 16);
	big = vqd_hva(&b.m, big_gpa, 100000 * 4);
	for (unsigned i = 0; i < 100000; i++)
		big[i] = (uint32_t)(RO_GPA / PAGE) + (i & 1);
	vqd_publish(&b.q[0], (uint16_t)vqd_add_chain(&b.q[0],
						     &(struct vqd_buf){ big_gpa, 100000 * 4, false }, 1));
	vqd_kick(&b.dev, 0);
	cr_assert(vqd_get_used(&b.q[0], &id, &len));
	cr_assert_eq(len, 0);
	cr_assert(is_filled(b.ro, PAGE, 0x5a));

	/* an empty buffer and a write-only one */
	post_pfns(&b, 0, pfns, 0);
	cr_assert(used_one(&b, 0));
	big_gpa = vqd_alloc(&b.m, 64, 16);
	vqd_publish(&b.q[1], (uint16_t)vqd_add_chain(&b.q[1], &(struct vqd_buf){ big_gpa, 64, true },
						     1));
	vqd_kick(&b.dev, 1);
	cr_assert(used_one(&b, 1));
	cr_assert(vqd_status_live(vqd_status(&b.dev)));
	bal_down(&b);
}

/* Post a free page report of [gpa, gpa + len) on queue @q. */
static void post_report(struct bal *b, unsigned q, uint64_t gpa, uint32_t len)
{
	vqd_publish(&b->q[q], (uint16_t)vqd_add_chain(&b->q[q], &(struct vqd_buf){ gpa, len, true },
						      1));
	vqd_kick(&b->dev, (uint16_t)q);
}

Test(virtio_balloon, reporting_releases_the_range)
{
	struct bal b;

	bal_up(&b, false); /* stats and reporting: reporting is queue 3 */
	memset(b.memfd_ram, 0x77, 64 * PAGE);
	post_report(&b, 3, MEMFD_GPA + 16 * PAGE, 32 * PAGE);
	cr_assert(used_one(&b, 3), "report not returned");
	cr_assert_eq(resident(b.memfd_ram + 16 * PAGE, 32 * PAGE), 0);
	cr_assert(is_filled(b.memfd_ram + 16 * PAGE, 32 * PAGE, 0));
	cr_assert(is_filled(b.memfd_ram, 16 * PAGE, 0x77));
	cr_assert(is_filled(b.memfd_ram + 48 * PAGE, 16 * PAGE, 0x77));
	/* an unaligned range: only the whole pages inside it go */
	memset(b.anon_ram, 0x77, 8 * PAGE);
	post_report(&b, 3, ANON_GPA + 100, 3 * PAGE);
	cr_assert(used_one(&b, 3));
	cr_assert(is_filled(b.anon_ram, PAGE, 0x77));
	cr_assert(is_filled(b.anon_ram + PAGE, 2 * PAGE, 0));
	cr_assert(is_filled(b.anon_ram + 3 * PAGE, PAGE, 0x77));
	/* a device-readable report buffer is the driver's promise that the
	 * memory stays as it is: not released */
	memset(b.anon_ram, 0x66, PAGE);
	vqd_publish(&b.q[3], (uint16_t)vqd_add_chain(&b.q[3], &(struct vqd_buf){ ANON_GPA, PAGE,
									      false },
						     1));
	vqd_kick(&b.dev, 3);
	cr_assert(used_one(&b, 3));
	cr_assert(is_filled(b.anon_ram, PAGE, 0x66));
	/* read-only memory is never released: a report that would have the
	 * device write it is a malformed chain (the queue stops, NEEDS_RESET) */
	post_report(&b, 3, RO_GPA, PAGE);
	cr_assert_not(used_one(&b, 3));
	cr_assert(vqd_status(&b.dev) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert(is_filled(b.ro, PAGE, 0x5a));
	bal_down(&b);
}

/* Queue indices follow the features the driver accepted (5.5.2). */
Test(virtio_balloon, reporting_is_queue_2_without_stats)
{
	struct bal b;

	bal_up_features(&b, false, (1ull << 32) | F_REPORTING | F_DEFLATE_ON_OOM);
	memset(b.anon_ram, 0x11, 4 * PAGE);
	post_report(&b, 2, ANON_GPA, 4 * PAGE);
	cr_assert(used_one(&b, 2), "queue 2 is the reporting queue and must return the buffer");
	cr_assert(is_filled(b.anon_ram, 4 * PAGE, 0));
	bal_down(&b);
}

static uint64_t post_stats(struct bal *b, unsigned q, uint64_t free_b, uint64_t total_b)
{
	/* MEMFREE, MEMTOT, an unknown tag, and 3 stray trailing bytes */
	uint8_t s[33] = { 0 };
	uint64_t g = vqd_alloc(&b->m, sizeof(s), 16);

	s[0] = 4;
	memcpy(s + 2, &free_b, 8);
	s[10] = 5;
	memcpy(s + 12, &total_b, 8);
	s[20] = 42;
	memset(s + 22, 0xff, 8);
	memcpy(vqd_hva(&b->m, g, sizeof(s)), s, sizeof(s));
	vqd_publish(&b->q[q], (uint16_t)vqd_add_chain(&b->q[q],
						      &(struct vqd_buf){ g, sizeof(s), false }, 1));
	vqd_kick(&b->dev, (uint16_t)q);
	return g;
}

static vmkit_balloon_stats get_stats(struct bal *b)
{
	vmkit_balloon_stats st = { .size = sizeof(st) };

	cr_assert_eq(virtio_balloon_get_stats(b->opaque, &b->dev, &st), 0);
	return st;
}

Test(virtio_balloon, stats_without_reporting_use_queue_2)
{
	struct bal b;
	vmkit_balloon_stats st;

	bal_up_features(&b, false, (1ull << 32) | F_STATS);
	st = get_stats(&b);
	cr_assert_eq(st.updates, 0);
	cr_assert_eq(st.free_memory, UINT64_MAX);
	post_stats(&b, 2, 1000, 2000);
	st = get_stats(&b);
	cr_assert_eq(st.updates, 1);
	cr_assert_eq(st.free_memory, 1000);
	cr_assert_eq(st.total_memory, 2000);
	cr_assert_eq(st.swap_in, UINT64_MAX, "a tag never sent must read UINT64_MAX");
	cr_assert_eq(st.available_memory, UINT64_MAX);
	/* the device keeps the buffer (no loop here: nobody asks again) */
	cr_assert_eq(vqd_used_pending(&b.q[2]), 0);
	/* queue 3 does not exist with these features: kicking it does nothing */
	vqd_kick(&b.dev, 3);
	cr_assert(vqd_status_live(vqd_status(&b.dev)));
	bal_down(&b);
}

Test(virtio_balloon, stats_arrive_and_are_requested_again)
{
	struct bal b;
	vmkit_balloon_stats st;

	bal_up(&b, true);
	post_stats(&b, 2, 111, 222);
	st = get_stats(&b);
	cr_assert_eq(st.updates, 1);
	cr_assert_eq(st.free_memory, 111);
	/* the device gives the buffer back to ask for fresh numbers */
	cr_assert(LT_WAIT(vqd_used_pending(&b.q[2]) == 1, 5000), "stats never requested again");
	cr_assert(used_one(&b, 2));
	post_stats(&b, 2, 333, 444);
	st = get_stats(&b);
	cr_assert_eq(st.updates, 2);
	cr_assert_eq(st.free_memory, 333);
	cr_assert_eq(st.total_memory, 444);
	{
		vmkit_balloon_stats small = { .size = 8 };
		cr_assert_eq(virtio_balloon_get_stats(b.opaque, &b.dev, &small), -EINVAL);
	}
	bal_down(&b);
}

Test(virtio_balloon, no_optional_queues)
{
	struct bal b;

	bal_up_features(&b, false, 1ull << 32);
	memset(b.anon_ram, 0x22, PAGE);
	{
		uint32_t pfn = (uint32_t)(ANON_GPA / PAGE);
		post_pfns(&b, 0, &pfn, 1);
	}
	cr_assert(used_one(&b, 0));
	cr_assert(is_filled(b.anon_ram, PAGE, 0));
	/* queue 2 was never set up: a kick is ignored, nothing breaks */
	vqd_kick(&b.dev, 2);
	cr_assert(vqd_status_live(vqd_status(&b.dev)));
	bal_down(&b);
}

Test(virtio_balloon, target_actual_and_config_interrupt)
{
	struct bal b;
	const vmkit_virtio_ops *ops;
	void *opaque;
	struct vmkit_virtio_dev dev;
	struct vqd_transport t;
	uint64_t actual;
	unsigned irqs;

	/* before the driver is live: stored, no interrupt */
	bal_mem(&b);
	vqd_transport_init(&t);
	cr_assert_eq(virtio_balloon_create(&b.m.gm, NULL, &ops, &opaque), 0);
	cr_assert_eq(virtio_dev_init(&dev, ops, opaque, &b.m.gm, &t.tr, &t, "balloon1"), 0);
	cr_assert_eq(virtio_balloon_set_target(opaque, &dev, 1u << 20), 0);
	cr_assert_eq(t.config_irqs, 0);
	virtio_dev_destroy(&dev);
	vqd_mem_destroy(&b.m);
	free(b.ro);
	free(b.part);

	bal_up(&b, false);
	cr_assert_eq(cfg32(&b, 0), 0);
	irqs = b.t.config_irqs;
	cr_assert_eq(virtio_balloon_set_target(b.opaque, &b.dev, (2u << 20) + 100), 0);
	cr_assert_eq(b.t.config_irqs, irqs + 1, "no config interrupt for a new target");
	cr_assert_eq(cfg32(&b, 0), 512, "num_pages reads %u", cfg32(&b, 0));
	/* more than the guest has: refused, nothing changes */
	cr_assert_eq(virtio_balloon_set_target(b.opaque, &b.dev, 1ull << 40), -EINVAL);
	cr_assert_eq(cfg32(&b, 0), 512);
	/* the driver reports actual; it cannot change the target */
	cfg32_write(&b, 4, 300);
	cfg32_write(&b, 0, 7);
	cr_assert_eq(cfg32(&b, 0), 512);
	cr_assert_eq(virtio_balloon_get_actual(b.opaque, &b.dev, &actual), 0);
	cr_assert_eq(actual, 300ull * PAGE);
	/* a byte-wide write of actual's low byte */
	{
		uint8_t v = 1;
		vqd_lock(&b.dev);
		virtio_dev_config_write(&b.dev, 4, &v, 1);
		vqd_unlock(&b.dev);
	}
	cr_assert_eq(cfg32(&b, 4), 257);
	/* a reset empties the balloon from the driver's view, keeps the target */
	vqd_write_status(&b.dev, 0);
	cr_assert_eq(virtio_balloon_get_actual(b.opaque, &b.dev, &actual), 0);
	cr_assert_eq(actual, 0);
	cr_assert_eq(cfg32(&b, 0), 512);
	bal_down(&b);
}

Test(virtio_balloon, save_restore_round_trip_and_corruption)
{
	struct bal b;
	struct vqd_transport t2;
	struct vmkit_virtio_dev dev2;
	const vmkit_virtio_ops *ops2;
	void *op2;
	uint8_t *data = NULL, *bad;
	size_t len = 0;
	vmkit_balloon_stats st = { .size = sizeof(st) };
	uint64_t actual;
	uint16_t used_before;

	bal_up(&b, false);
	cr_assert_eq(virtio_balloon_set_target(b.opaque, &b.dev, 64 * PAGE), 0);
	cfg32_write(&b, 4, 40);
	post_stats(&b, 2, 5555, 6666);
	cr_assert_eq(vqd_used_pending(&b.q[2]), 0);
	used_before = vqd_used_idx(&b.q[2]);
	cr_assert_eq(virtio_dev_save(&b.dev, &data, &len), 0, "%s", vmkit_last_error());

	/* into a fresh device on the same memory */
	vqd_transport_init(&t2);
	cr_assert_eq(virtio_balloon_create(&b.m.gm, NULL, &ops2, &op2), 0);
	cr_assert_eq(virtio_dev_init(&dev2, ops2, op2, &b.m.gm, &t2.tr, &t2, "balloon2"), 0);
	bad = malloc(len);
	for (size_t i = 0; i < len; i += 7) {
		memcpy(bad, data, len);
		bad[i] ^= 0x01;
		cr_assert_lt(virtio_dev_restore(&dev2, bad, len), 0, "byte %zu flipped was accepted", i);
	}
	cr_assert_lt(virtio_dev_restore(&dev2, data, len - 1), 0);
	free(bad);
	cr_assert_eq(virtio_dev_restore(&dev2, data, len), 0, "%s", vmkit_last_error());
	cr_assert_eq(virtio_balloon_get_stats(op2, &dev2, &st), 0);
	cr_assert_eq(st.updates, 1);
	cr_assert_eq(st.free_memory, 5555);
	cr_assert_eq(st.total_memory, 6666);
	cr_assert_eq(virtio_balloon_get_actual(op2, &dev2, &actual), 0);
	cr_assert_eq(actual, 40ull * PAGE);
	vqd_lock(&dev2);
	{
		uint32_t v;
		virtio_dev_config_read(&dev2, 0, &v, 4);
		cr_assert_eq(v, 64);
	}
	vqd_unlock(&dev2);
	/* the stats buffer the old device kept comes back as a request */
	cr_assert_eq((uint16_t)(vqd_used_idx(&b.q[2]) - used_before), 1,
		     "the kept stats buffer was lost across the restore");
	virtio_dev_destroy(&dev2);
	free(data);
	bal_down(&b);
}

Test(virtio_balloon, device_blob_is_validated)
{
	struct bal b;
	uint8_t blob[1024], other[256];
	long n;
	struct dev_state_writer *w = malloc(sizeof(*w));
	struct dev_state st;
	const vmkit_virtio_ops *rops;
	void *rng;

	bal_mem(&b);
	cr_assert_eq(virtio_balloon_create(&b.m.gm, NULL, &b.ops, &b.opaque), 0);
	n = b.ops->save(b.opaque, blob, sizeof(blob));
	cr_assert(n > 0 && n <= (long)sizeof(blob));
	cr_assert_eq(b.ops->restore(b.opaque, blob, (size_t)n), 0);
	for (long i = 0; i < n; i++) {
		uint8_t c[1024];
		memcpy(c, blob, (size_t)n);
		c[i] ^= 0x80;
		cr_assert_lt(b.ops->restore(b.opaque, c, (size_t)n), 0, "byte %ld flipped accepted", i);
	}
	/* another device's blob */
	cr_assert_eq(virtio_rng_create(0, NULL, &rops, &rng), 0);
	n = rops->save(rng, other, sizeof(other));
	cr_assert_lt(b.ops->restore(b.opaque, other, (size_t)n), 0);
	rops->destroy(rng);
	/* a well-formed blob with a target above guest RAM */
	dev_state_begin(w, "VBAL");
	dev_state_put_u64(w, 0);
	dev_state_put_u8(w, 0);
	dev_state_put_bytes(w, (uint8_t[16]){ 0xff, 0xff, 0xff, 0x7f }, 16);
	dev_state_put_u8(w, 0);
	dev_state_put_u16(w, 0);
	dev_state_put_u64(w, 0);
	dev_state_put_u16(w, 0);
	for (int i = 0; i < 10; i++)
		dev_state_put_u64(w, 0);
	cr_assert_eq(dev_state_finish(w, 1, &st), 0);
	cr_assert_eq(b.ops->restore(b.opaque, st.data, st.len), -EINVAL);
	/* the same blob with a sane target is accepted (so the check above
	 * is what refused it) */
	st.data[16 + 4 + 8 + 1] = 0x10;
	st.data[16 + 4 + 8 + 1 + 1] = 0;
	st.data[16 + 4 + 8 + 1 + 2] = 0;
	st.data[16 + 4 + 8 + 1 + 3] = 0;
	{
		uint32_t crc = dev_crc32(st.data + 16, st.len - 16);
		memcpy(st.data + 12, &crc, 4);
	}
	cr_assert_eq(b.ops->restore(b.opaque, st.data, st.len), 0, "%s", vmkit_last_error());
	dev_state_free(&st);
	free(w);
	b.ops->destroy(b.opaque);
	vqd_mem_destroy(&b.m);
	free(b.ro);
	free(b.part);
}

/* Linux fills the stats queue and kicks it before DRIVER_OK, when the
 * kick cannot reach the device: the buffer must still be taken. */
Test(virtio_balloon, stats_buffer_queued_before_driver_ok)
{
	struct bal b;
	struct vmkit_virtio_dev *d = &b.dev;
	vmkit_balloon_stats st;

	memset(&b, 0, sizeof(b));
	bal_mem(&b);
	vqd_transport_init(&b.t);
	cr_assert_eq(virtio_balloon_create(&b.m.gm, NULL, &b.ops, &b.opaque), 0);
	cr_assert_eq(virtio_dev_init(d, b.ops, b.opaque, &b.m.gm, &b.t.tr, &b.t, "balloon3"), 0);
	for (unsigned i = 0; i < 3; i++)
		vqd_queue_init(&b.q[i], &b.m, 64);
	cr_assert(vqd_negotiate(d, (1ull << 32) | F_STATS));
	for (unsigned i = 0; i < 3; i++)
		cr_assert(vqd_setup_queue(d, (uint16_t)i, &b.q[i]));
	post_stats(&b, 2, 777, 888);
	st = get_stats(&b);
	cr_assert_eq(st.updates, 0, "stats taken before DRIVER_OK");
	cr_assert(vqd_status_live(vqd_driver_ok(d)));
	st = get_stats(&b);
	cr_assert_eq(st.updates, 1, "the stats buffer queued before DRIVER_OK was not taken");
	cr_assert_eq(st.free_memory, 777);
	virtio_dev_destroy(d);
	vqd_mem_destroy(&b.m);
	free(b.ro);
	free(b.part);
}
