/* SPDX-License-Identifier: MIT */
/* The split virtqueue engine over a fake guest memory: normal, indirect,
 * zero-length and region-crossing chains, notification suppression, and a
 * hostile driver (loops, bad indices, addresses and lengths, bad indirect
 * tables, ring indices) that must never harm the host: pop refuses, the
 * queue is dead afterwards, nothing is published. Runs under ASan/UBSan
 * in the sanitizer build. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>

#include "vqdriver.h"

static struct vqd_mem m;
static struct vqd_queue q;
static struct virtq vq;

static void fini(void)
{
	vqd_mem_destroy(&m);
}

TestSuite(virtqueue, .fini = fini);

/* Rings of @size entries in a fresh 4 MiB memory, the engine started on them. */
static void start_q(uint16_t size, bool event_idx, bool indirect)
{
	vqd_mem_init(&m, 0, 0);
	vqd_queue_init(&q, &m, size);
	virtq_reset(&vq);
	vq.size = size;
	vq.desc_gpa = q.desc;
	vq.avail_gpa = q.avail;
	vq.used_gpa = q.used;
	vq.ready = true;
	vq.event_idx = event_idx;
	vq.indirect = indirect;
	cr_assert_eq(virtq_start(&vq, &m.gm), 0, "%s", vmkit_last_error());
}

static vmkit_virtq_elem *pop_ok(void)
{
	vmkit_virtq_elem *e = NULL;
	int r = virtq_pop(&vq, &m.gm, 3, &e);

	cr_assert_eq(r, 1, "pop returned %d: %s", r, vmkit_last_error());
	cr_assert_not_null(e);
	cr_assert_eq(e->queue, 3);
	return e;
}

static void assert_iov(const struct iovec *iov, uint64_t gpa, size_t len)
{
	cr_assert_eq(iov->iov_base, vqd_hva(&m, gpa, len ? len : 1));
	cr_assert_eq(iov->iov_len, len);
}

/* ---- normal operation ---------------------------------------------------------- */

Test(virtqueue, direct_chain_readable_then_writable)
{
	vmkit_virtq_elem *e;
	uint64_t a, b, c;
	uint32_t id, len;
	int head;

	start_q(16, false, false);
	a = vqd_alloc(&m, 100, 0);
	b = vqd_alloc(&m, 200, 0);
	c = vqd_alloc(&m, 300, 0);
	cr_assert_not(virtq_has_work(&vq));
	head = vqd_add_chain(&q, (struct vqd_buf[]){ { a, 100, false }, { b, 200, false },
						     { c, 300, true } }, 3);
	vqd_publish(&q, (uint16_t)head);
	cr_assert(virtq_has_work(&vq));

	e = pop_ok();
	cr_assert_eq(e->head, head);
	cr_assert_eq(e->n_out, 2);
	cr_assert_eq(e->n_in, 1);
	cr_assert_eq(e->out_len, 300);
	cr_assert_eq(e->in_len, 300);
	assert_iov(&e->out[0], a, 100);
	assert_iov(&e->out[1], b, 200);
	assert_iov(&e->in[0], c, 300);
	cr_assert_not(virtq_has_work(&vq));
	cr_assert_eq(vq.inflight, 1);

	cr_assert_eq(virtq_push(&vq, e->head, 123), 0);
	virtq_elem_free(e);
	cr_assert(vqd_get_used(&q, &id, &len));
	cr_assert_eq(id, (uint32_t)head);
	cr_assert_eq(len, 123);
	cr_assert_eq(vqd_used_idx(&q), 1);
	cr_assert_eq(vq.inflight, 0);
	/* Nothing more: pop says so and leaves *out NULL. */
	e = (vmkit_virtq_elem *)&vq;
	cr_assert_eq(virtq_pop(&vq, &m.gm, 3, &e), 0);
	cr_assert_null(e);
	cr_assert_not(vq.broken);
}

Test(virtqueue, many_chains_wrap_the_rings_and_the_16bit_indices)
{
	uint64_t buf;
	uint32_t id, len;

	start_q(4, false, false);
	buf = vqd_alloc(&m, 64, 0);
	/* Start just below the 16-bit wrap on both sides. */
	vq.last_avail = vq.used_idx = 65530;
	q.avail_idx = q.last_used = 65530;
	vqd_set_avail_idx(&q, 65530);
	*(volatile uint16_t *)vqd_hva(&m, q.used + 2, 2) = 65530;
	for (unsigned round = 0; round < 5; round++) {
		int heads[3];

		for (unsigned k = 0; k < 3; k++) {
			heads[k] = vqd_add_chain(&q, (struct vqd_buf[]){ { buf, (uint32_t)(k + 1), true } }, 1);
			vqd_publish(&q, (uint16_t)heads[k]);
		}
		for (unsigned k = 0; k < 3; k++) {
			vmkit_virtq_elem *e = pop_ok();

			cr_assert_eq(e->head, heads[k]);
			cr_assert_eq(e->in_len, k + 1);
			cr_assert_eq(virtq_push(&vq, e->head, (uint32_t)k), 0);
			virtq_elem_free(e);
		}
		for (unsigned k = 0; k < 3; k++) {
			cr_assert(vqd_get_used(&q, &id, &len));
			cr_assert_eq(id, (uint32_t)heads[k]);
			cr_assert_eq(len, k);
		}
		cr_assert_not(virtq_has_work(&vq));
	}
	cr_assert_eq(vqd_used_idx(&q), (uint16_t)(65530 + 15));
	cr_assert_not(vq.broken);
}

Test(virtqueue, indirect_table)
{
	vmkit_virtq_elem *e;
	uint64_t a, b, c;
	int head;

	start_q(8, false, true);
	a = vqd_alloc(&m, 16, 0);
	b = vqd_alloc(&m, 512, 0);
	c = vqd_alloc(&m, 1, 0);
	head = vqd_add_indirect(&q, (struct vqd_buf[]){ { a, 16, false }, { b, 512, true },
							{ c, 1, true } }, 3, NULL);
	vqd_publish(&q, (uint16_t)head);
	e = pop_ok();
	cr_assert_eq(e->head, head);
	cr_assert_eq(e->n_out, 1);
	cr_assert_eq(e->n_in, 2);
	assert_iov(&e->out[0], a, 16);
	assert_iov(&e->in[0], b, 512);
	assert_iov(&e->in[1], c, 1);
	cr_assert_eq(e->in_len, 513);
	virtq_elem_free(e);
}

Test(virtqueue, direct_descriptors_then_an_indirect_one)
{
	/* 2.7.5.3.2: zero or more direct descriptors followed by one indirect. */
	vmkit_virtq_elem *e;
	uint64_t hdr = 0, t, data, st;

	start_q(8, false, true);
	hdr = vqd_alloc(&m, 16, 0);
	data = vqd_alloc(&m, 4096, 0);
	st = vqd_alloc(&m, 1, 0);
	t = vqd_alloc(&m, 32, 16);
	vqd_set_indirect_desc(&m, t, 0, data, 4096, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	vqd_set_indirect_desc(&m, t, 1, st, 1, VIRTQ_DESC_F_WRITE, 0);
	vqd_set_desc(&q, 5, hdr, 16, VIRTQ_DESC_F_NEXT, 2);
	/* The WRITE flag on the descriptor that refers to a table is ignored. */
	vqd_set_desc(&q, 2, t, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	vqd_publish(&q, 5);
	e = pop_ok();
	cr_assert_eq(e->head, 5);
	cr_assert_eq(e->n_out, 1);
	cr_assert_eq(e->n_in, 2);
	assert_iov(&e->out[0], hdr, 16);
	assert_iov(&e->in[0], data, 4096);
	assert_iov(&e->in[1], st, 1);
	virtq_elem_free(e);
}

Test(virtqueue, indirect_table_of_the_maximum_length)
{
	vmkit_virtq_elem *e;
	uint64_t t, buf;

	start_q(2, false, true);
	buf = vqd_alloc(&m, 8, 0);
	t = vqd_alloc(&m, VIRTQ_MAX_INDIRECT_BYTES, 16);
	for (unsigned i = 0; i < VIRTQ_MAX_CHAIN; i++)
		vqd_set_indirect_desc(&m, t, (uint16_t)i, buf, 8,
				      i + 1 < VIRTQ_MAX_CHAIN ? VIRTQ_DESC_F_NEXT : 0,
				      (uint16_t)(i + 1));
	vqd_set_desc(&q, 0, t, VIRTQ_MAX_INDIRECT_BYTES, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	e = pop_ok();
	cr_assert_eq(e->n_out, VIRTQ_MAX_CHAIN);
	cr_assert_eq(e->out_len, 8u * VIRTQ_MAX_CHAIN);
	virtq_elem_free(e);
}

Test(virtqueue, zero_length_buffers_give_no_iovec)
{
	vmkit_virtq_elem *e;
	uint64_t a;
	int head;

	start_q(8, false, false);
	a = vqd_alloc(&m, 16, 0);
	head = vqd_add_chain(&q, (struct vqd_buf[]){ { a, 0, false }, { a, 16, false },
						     { a, 0, true } }, 3);
	vqd_publish(&q, (uint16_t)head);
	e = pop_ok();
	cr_assert_eq(e->n_out, 1);
	cr_assert_eq(e->n_in, 0);
	cr_assert_eq(e->out_len, 16);
	cr_assert_eq(e->in_len, 0);
	assert_iov(&e->out[0], a, 16);
	virtq_elem_free(e);

	/* A chain of nothing but an empty buffer, even at an address that is
	 * not memory (its address is never used), is a valid empty request. */
	head = vqd_add_chain(&q, (struct vqd_buf[]){ { 0xdead0000000ull, 0, true } }, 1);
	vqd_publish(&q, (uint16_t)head);
	e = pop_ok();
	cr_assert_eq(e->n_out + e->n_in, 0);
	cr_assert_eq(virtq_push(&vq, e->head, 0), 0);
	virtq_elem_free(e);
}

Test(virtqueue, buffer_across_two_regions_is_split)
{
	vmkit_virtq_elem *e;
	uint8_t *second;
	uint64_t t;
	int head;

	start_q(8, false, true);
	/* A second region right after the first in guest-physical space, with
	 * its own (non-adjacent) host memory. */
	second = vqd_mem_add(&m, m.gpa + m.size, 0x10000);
	head = vqd_add_chain(&q, (struct vqd_buf[]){ { m.size - 100, 300, true } }, 1);
	vqd_publish(&q, (uint16_t)head);
	e = pop_ok();
	cr_assert_eq(e->n_in, 2);
	cr_assert_eq(e->in_len, 300);
	assert_iov(&e->in[0], m.size - 100, 100);
	cr_assert_eq(e->in[1].iov_base, second);
	cr_assert_eq(e->in[1].iov_len, 200);
	virtq_elem_free(e);

	/* An indirect table that itself straddles the boundary is read whole. */
	t = m.size - 16;
	vqd_set_indirect_desc(&m, t, 0, 0x3000, 10, VIRTQ_DESC_F_NEXT, 1);
	{
		struct virtq_desc d = { 0x4000, 20, VIRTQ_DESC_F_WRITE, 0 };

		memcpy(second, &d, 16);
	}
	head = q.next_desc;
	vqd_set_desc(&q, (uint16_t)head, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, (uint16_t)head);
	e = pop_ok();
	cr_assert_eq(e->n_out, 1);
	cr_assert_eq(e->n_in, 1);
	assert_iov(&e->out[0], 0x3000, 10);
	assert_iov(&e->in[0], 0x4000, 20);
	virtq_elem_free(e);
}

Test(virtqueue, one_buffer_of_3_gib_but_not_two)
{
	/* Lengths add up in 64 bits: a chain over 4 GiB in total is refused
	 * (2.7.5.2), one of 3 GiB is fine. The memory is reserved, never touched. */
	const uint64_t gpa = 1ull << 32, big = 3ull << 30;
	vmkit_virtq_elem *e;
	void *p;
	int head;

	start_q(8, false, false);
	p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	cr_assert_neq(p, MAP_FAILED);
	cr_assert_geq(vmkit__gmem_add_host(&m.gm, gpa, big, p, 0), 0);
	head = vqd_add_chain(&q, (struct vqd_buf[]){ { gpa, (uint32_t)big, false } }, 1);
	vqd_publish(&q, (uint16_t)head);
	e = pop_ok();
	cr_assert_eq(e->out_len, big);
	cr_assert_eq(e->n_out, 1);
	cr_assert_eq(e->out[0].iov_base, p);
	virtq_elem_free(e);

	head = vqd_add_chain(&q, (struct vqd_buf[]){ { gpa, (uint32_t)big, false },
						     { gpa, (uint32_t)big, true } }, 2);
	vqd_publish(&q, (uint16_t)head);
	e = NULL;
	cr_assert_lt(virtq_pop(&vq, &m.gm, 3, &e), 0);
	cr_assert_null(e);
	cr_assert(vq.broken);
	munmap(p, big);
}

/* ---- notification suppression (2.7.7, 2.7.10) -------------------------------------- */

static void pop_push_one(uint64_t buf)
{
	vmkit_virtq_elem *e;
	int head = vqd_add_chain(&q, (struct vqd_buf[]){ { buf, 8, true } }, 1);

	vqd_publish(&q, (uint16_t)head);
	e = pop_ok();
	cr_assert_eq(virtq_push(&vq, e->head, 8), 0);
	virtq_elem_free(e);
}

Test(virtqueue, no_interrupt_flag_without_event_idx)
{
	uint64_t buf;

	start_q(8, false, false);
	buf = vqd_alloc(&m, 8, 0);
	pop_push_one(buf);
	cr_assert(virtq_should_notify(&vq));
	vqd_set_avail_flags(&q, VIRTQ_AVAIL_F_NO_INTERRUPT);
	pop_push_one(buf);
	cr_assert_not(virtq_should_notify(&vq));
	vqd_set_avail_flags(&q, 0);
	pop_push_one(buf);
	cr_assert(virtq_should_notify(&vq));
	/* used_event means nothing without EVENT_IDX. */
	vqd_set_used_event(&q, 100);
	pop_push_one(buf);
	cr_assert(virtq_should_notify(&vq));
}

Test(virtqueue, event_idx_suppression)
{
	uint64_t buf;

	start_q(8, true, false);
	buf = vqd_alloc(&m, 8, 0);
	/* The first interrupt always goes (nothing signalled yet). */
	pop_push_one(buf);                      /* used idx 1 */
	cr_assert(virtq_should_notify(&vq));
	/* Driver: interrupt me once the entry at index 3 is used (idx 3 -> 4). */
	vqd_set_used_event(&q, 3);
	pop_push_one(buf);                      /* used idx 2 */
	cr_assert_not(virtq_should_notify(&vq));
	pop_push_one(buf);                      /* used idx 3 */
	cr_assert_not(virtq_should_notify(&vq));
	pop_push_one(buf);                      /* used idx 4: entry 3 written */
	cr_assert(virtq_should_notify(&vq));
	/* Nothing new since: no interrupt. */
	cr_assert_not(virtq_should_notify(&vq));
	/* Several pushes in one batch that cross used_event: one interrupt. */
	vqd_set_used_event(&q, 5);
	pop_push_one(buf);                      /* 5 */
	pop_push_one(buf);                      /* 6: entry 5 written */
	pop_push_one(buf);                      /* 7 */
	cr_assert(virtq_should_notify(&vq));
	/* The NO_INTERRUPT flag is ignored with EVENT_IDX. */
	vqd_set_avail_flags(&q, VIRTQ_AVAIL_F_NO_INTERRUPT);
	vqd_set_used_event(&q, 7);
	pop_push_one(buf);                      /* 8: entry 7 written */
	cr_assert(virtq_should_notify(&vq));
	/* used_event behind us: not until it comes round again. */
	vqd_set_used_event(&q, 2);
	pop_push_one(buf);
	cr_assert_not(virtq_should_notify(&vq));
}

Test(virtqueue, event_idx_pop_moves_avail_event)
{
	uint64_t buf;

	start_q(8, true, false);
	buf = vqd_alloc(&m, 8, 0);
	for (unsigned i = 1; i <= 3; i++) {
		pop_push_one(buf);
		cr_assert_eq(vqd_avail_event(&q), i);
	}
	cr_assert_eq(vqd_used_flags(&q), 0);
}

/* Going idle re-arms the notification: an empty pop publishes
 * avail_event = last_avail (and fences before its last look at avail->idx),
 * whatever the field held, so the driver's next request is announced. */
Test(virtqueue, event_idx_empty_pop_rearms_avail_event)
{
	vmkit_virtq_elem *e = NULL;
	uint64_t buf;

	start_q(8, true, false);
	buf = vqd_alloc(&m, 8, 0);
	pop_push_one(buf);
	pop_push_one(buf);
	*(volatile uint16_t *)vqd_hva(&m, q.used + 4 + 8 * 8, 2) = 0;
	cr_assert_eq(virtq_pop(&vq, &m.gm, 3, &e), 0);
	cr_assert_null(e);
	cr_assert_eq(vqd_avail_event(&q), 2);
}

Test(virtqueue, set_notification_without_event_idx)
{
	start_q(8, false, false);
	virtq_set_notification(&vq, false);
	cr_assert_eq(vqd_used_flags(&q), VIRTQ_USED_F_NO_NOTIFY);
	virtq_set_notification(&vq, true);
	cr_assert_eq(vqd_used_flags(&q), 0);
}

Test(virtqueue, set_notification_with_event_idx)
{
	uint64_t buf;

	start_q(8, true, false);
	buf = vqd_alloc(&m, 8, 0);
	pop_push_one(buf);
	pop_push_one(buf);
	*(volatile uint16_t *)vqd_hva(&m, q.used + 4 + 8 * 8, 2) = 0;
	virtq_set_notification(&vq, false);
	cr_assert_eq(vqd_used_flags(&q), 0, "flags must stay 0 with EVENT_IDX");
	virtq_set_notification(&vq, true);
	cr_assert_eq(vqd_avail_event(&q), 2);
	cr_assert_eq(vqd_used_flags(&q), 0);
	/* The race the caller closes after enabling: work added meanwhile. */
	vqd_publish(&q, (uint16_t)vqd_add_chain(&q, (struct vqd_buf[]){ { buf, 8, true } }, 1));
	cr_assert(virtq_has_work(&vq));
}

/* ---- ring set-up ---------------------------------------------------------------------- */

Test(virtqueue, start_refuses_bad_rings)
{
	start_q(8, false, false);
	vq.size = 6;
	cr_assert_lt(virtq_start(&vq, &m.gm), 0);
	vq.size = 0;
	cr_assert_lt(virtq_start(&vq, &m.gm), 0);
	vq.size = 8;
	vq.desc_gpa = q.desc + 8;               /* not 16-byte aligned */
	cr_assert_lt(virtq_start(&vq, &m.gm), 0);
	vq.desc_gpa = q.desc;
	vq.avail_gpa = q.avail + 1;             /* not 2-byte aligned */
	cr_assert_lt(virtq_start(&vq, &m.gm), 0);
	vq.avail_gpa = q.avail;
	vq.used_gpa = q.used + 2;               /* not 4-byte aligned */
	cr_assert_lt(virtq_start(&vq, &m.gm), 0);
	vq.used_gpa = m.size - 16;              /* runs off the end of memory */
	cr_assert_lt(virtq_start(&vq, &m.gm), 0);
	vq.used_gpa = UINT64_MAX - 3;
	cr_assert_lt(virtq_start(&vq, &m.gm), 0);
	vq.used_gpa = q.used;
	cr_assert_eq(virtq_start(&vq, &m.gm), 0);
}

Test(virtqueue, reset_forgets_everything)
{
	uint64_t buf;

	start_q(8, true, true);
	buf = vqd_alloc(&m, 8, 0);
	pop_push_one(buf);
	virtq_reset(&vq);
	cr_assert_eq(vq.size, 0);
	cr_assert_not(vq.ready);
	cr_assert_null(vq.desc);
	cr_assert_eq(vq.last_avail, 0);
	cr_assert_eq(vq.used_idx, 0);
	cr_assert_eq(vq.msix_vector, VIRTIO_MSI_NO_VECTOR);
	cr_assert_not(virtq_has_work(&vq));
	cr_assert_lt(virtq_push(&vq, 0, 0), 0);
	cr_assert_not(virtq_should_notify(&vq));
}

/* ---- the hostile table ------------------------------------------------------------------ */

/* Pop must refuse, return nothing, break the queue for good, and publish
 * nothing. */
static void expect_malformed(void)
{
	vmkit_virtq_elem *e = (vmkit_virtq_elem *)&vq;
	uint16_t used_before = vqd_used_idx(&q), avail_before = vq.last_avail;
	uint32_t inflight_before = vq.inflight;
	int r;

	vmkit__clear_error();
	r = virtq_pop(&vq, &m.gm, 3, &e);
	cr_assert_lt(r, 0, "pop returned %d", r);
	cr_assert_null(e);
	cr_assert(vq.broken);
	cr_assert_neq(vmkit_last_error()[0], '\0', "no error message");
	cr_assert_eq(vq.last_avail, avail_before);
	cr_assert_eq(vq.inflight, inflight_before);
	/* Dead until reset, whatever the driver adds now. */
	vqd_publish(&q, (uint16_t)vqd_add_chain(&q, (struct vqd_buf[]){ { 0x2000, 8, true } }, 1));
	cr_assert_not(virtq_has_work(&vq));
	e = NULL;
	cr_assert_eq(virtq_pop(&vq, &m.gm, 3, &e), 0);
	cr_assert_null(e);
	cr_assert_eq(vqd_used_idx(&q), used_before);
}

Test(virtqueue, hostile_self_loop)
{
	start_q(16, false, false);
	vqd_set_desc(&q, 0, 0x2000, 8, VIRTQ_DESC_F_NEXT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_two_cycle)
{
	start_q(16, false, false);
	vqd_set_desc(&q, 3, 0x2000, 8, VIRTQ_DESC_F_NEXT, 9);
	vqd_set_desc(&q, 9, 0x3000, 8, VIRTQ_DESC_F_NEXT, 3);
	vqd_publish(&q, 3);
	expect_malformed();
}

Test(virtqueue, hostile_loop_of_writable_zero_length)
{
	/* Zero-length descriptors cost nothing in bytes: the count still stops it. */
	start_q(32768, false, false);
	for (unsigned i = 0; i < 32768; i++)
		vqd_set_desc(&q, (uint16_t)i, 0, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
			     (uint16_t)((i + 1) & 32767));
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_next_out_of_range)
{
	start_q(16, false, false);
	vqd_set_desc(&q, 0, 0x2000, 8, VIRTQ_DESC_F_NEXT, 16);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_addr_outside_memory)
{
	start_q(16, false, false);
	vqd_set_desc(&q, 0, m.size + 0x1000, 8, 0, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_buffer_runs_off_the_end_of_memory)
{
	start_q(16, false, false);
	vqd_set_desc(&q, 0, m.size - 8, 16, VIRTQ_DESC_F_WRITE, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_addr_plus_len_wraps_2_64)
{
	start_q(16, false, false);
	vqd_set_desc(&q, 0, UINT64_MAX - 8, 16, 0, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_huge_len)
{
	start_q(16, false, false);
	vqd_set_desc(&q, 0, 0x2000, UINT32_MAX, VIRTQ_DESC_F_WRITE, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_indirect_len_zero)
{
	start_q(16, false, true);
	vqd_set_desc(&q, 0, 0x2000, 0, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_indirect_len_not_multiple_of_16)
{
	start_q(16, false, true);
	vqd_set_indirect_desc(&m, 0x2000, 0, 0x3000, 8, 0, 0);
	vqd_set_desc(&q, 0, 0x2000, 24, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_indirect_table_too_large)
{
	start_q(16, false, true);
	vqd_set_indirect_desc(&m, 0x10000, 0, 0x3000, 8, 0, 0);
	vqd_set_desc(&q, 0, 0x10000, VIRTQ_MAX_INDIRECT_BYTES + 16, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_indirect_table_huge_len)
{
	start_q(16, false, true);
	vqd_set_desc(&q, 0, 0x10000, 0xfffffff0u, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_indirect_nested)
{
	start_q(16, false, true);
	vqd_set_indirect_desc(&m, 0x2000, 0, 0x3000, 8, VIRTQ_DESC_F_NEXT, 1);
	vqd_set_indirect_desc(&m, 0x2000, 1, 0x2000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_set_desc(&q, 0, 0x2000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_indirect_table_outside_memory)
{
	start_q(16, false, true);
	vqd_set_desc(&q, 0, m.size + 0x10000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_indirect_table_partly_outside_memory)
{
	start_q(16, false, true);
	vqd_set_indirect_desc(&m, m.size - 16, 0, 0x3000, 8, VIRTQ_DESC_F_NEXT, 1);
	vqd_set_desc(&q, 0, m.size - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_indirect_with_next)
{
	start_q(16, false, true);
	vqd_set_indirect_desc(&m, 0x2000, 0, 0x3000, 8, 0, 0);
	vqd_set_desc(&q, 0, 0x2000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	vqd_set_desc(&q, 1, 0x3000, 8, 0, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_indirect_without_the_feature)
{
	start_q(16, false, false);
	vqd_set_indirect_desc(&m, 0x2000, 0, 0x3000, 8, 0, 0);
	vqd_set_desc(&q, 0, 0x2000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_indirect_loop)
{
	start_q(16, false, true);
	vqd_set_indirect_desc(&m, 0x2000, 0, 0x3000, 8, VIRTQ_DESC_F_NEXT, 1);
	vqd_set_indirect_desc(&m, 0x2000, 1, 0x3000, 8, VIRTQ_DESC_F_NEXT, 0);
	vqd_set_desc(&q, 0, 0x2000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_indirect_next_beyond_table)
{
	start_q(16, false, true);
	vqd_set_indirect_desc(&m, 0x2000, 0, 0x3000, 8, VIRTQ_DESC_F_NEXT, 2);
	vqd_set_indirect_desc(&m, 0x2000, 1, 0x3000, 8, 0, 0);
	vqd_set_indirect_desc(&m, 0x2000, 2, 0x3000, 8, 0, 0); /* exists, but outside len */
	vqd_set_desc(&q, 0, 0x2000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_direct_plus_indirect_over_the_chain_limit)
{
	uint64_t t;

	start_q(16, false, true);
	t = vqd_alloc(&m, VIRTQ_MAX_INDIRECT_BYTES, 16);
	for (unsigned i = 0; i < VIRTQ_MAX_CHAIN; i++)
		vqd_set_indirect_desc(&m, t, (uint16_t)i, 0x3000, 8,
				      i + 1 < VIRTQ_MAX_CHAIN ? VIRTQ_DESC_F_NEXT : 0,
				      (uint16_t)(i + 1));
	vqd_set_desc(&q, 0, 0x2000, 8, VIRTQ_DESC_F_NEXT, 1);
	vqd_set_desc(&q, 1, t, VIRTQ_MAX_INDIRECT_BYTES, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_readable_after_writable)
{
	start_q(16, false, false);
	vqd_set_desc(&q, 0, 0x2000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	vqd_set_desc(&q, 1, 0x3000, 8, 0, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_readable_after_writable_across_indirect)
{
	start_q(16, false, true);
	vqd_set_indirect_desc(&m, 0x4000, 0, 0x3000, 8, 0, 0);
	vqd_set_desc(&q, 0, 0x2000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	vqd_set_desc(&q, 1, 0x4000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	vqd_publish(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_avail_idx_jumps_ahead)
{
	start_q(16, false, false);
	vqd_set_desc(&q, 0, 0x2000, 8, 0, 0);
	vqd_set_avail_idx(&q, 17);
	expect_malformed();
}

Test(virtqueue, hostile_avail_idx_goes_backwards)
{
	/* A decrement looks like 65535 new entries: far more than the size. */
	vmkit_virtq_elem *e;

	start_q(16, false, false);
	vqd_set_desc(&q, 0, 0x2000, 8, 0, 0);
	vqd_publish(&q, 0);
	e = pop_ok();
	virtq_elem_free(e);
	vqd_set_avail_idx(&q, 0);
	expect_malformed();
}

Test(virtqueue, hostile_avail_head_out_of_range)
{
	start_q(16, false, false);
	vqd_set_avail_ring(&q, 0, 16);
	vqd_set_avail_idx(&q, 1);
	expect_malformed();
}

Test(virtqueue, push_of_an_unknown_head_is_refused)
{
	vmkit_virtq_elem *e;

	start_q(16, false, false);
	/* Nothing in flight: nothing can be returned. */
	cr_assert_eq(virtq_push(&vq, 0, 0), -EINVAL);
	vqd_set_desc(&q, 0, 0x2000, 8, VIRTQ_DESC_F_WRITE, 0);
	vqd_publish(&q, 0);
	e = pop_ok();
	cr_assert_eq(virtq_push(&vq, 16, 0), -EINVAL);
	cr_assert_eq(virtq_push(&vq, UINT16_MAX, 0), -EINVAL);
	cr_assert_eq(vqd_used_idx(&q), 0);
	cr_assert_eq(virtq_push(&vq, e->head, 8), 0);
	cr_assert_eq(virtq_push(&vq, e->head, 8), -EINVAL, "pushed twice");
	cr_assert_eq(vqd_used_idx(&q), 1);
	virtq_elem_free(e);
}

/* ---- randomized tables ------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64*: deterministic for a given seed. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint64_t rnd_addr(uint64_t mem_end)
{
	switch (rnd() % 8) {
	case 0: return rnd();
	case 1: return UINT64_MAX - rnd() % 64;
	case 2: return mem_end - rnd() % 256;                /* near the end of memory */
	case 3: return 0x200000 + 16 * (rnd() % 64);         /* the indirect-table area */
	case 4: return (4u << 20) - rnd() % 128;             /* the region boundary */
	default: return rnd() % mem_end;
	}
}

static uint32_t rnd_len(void)
{
	switch (rnd() % 8) {
	case 0: return 0;
	case 1: return (uint32_t)rnd();
	case 2: return 16u * (uint32_t)(rnd() % 80);
	case 3: return UINT32_MAX - (uint32_t)(rnd() % 16);
	default: return (uint32_t)(rnd() % 4096);
	}
}

static uint16_t rnd_flags(void)
{
	uint16_t f = (uint16_t)(rnd() % 8);

	if (rnd() % 16 == 0)
		f |= (uint16_t)rnd();
	return f;
}

static void rnd_desc(uint8_t *p, uint16_t next_range, uint64_t mem_end)
{
	struct virtq_desc d = {
		.addr = rnd_addr(mem_end),
		.len = rnd_len(),
		.flags = rnd_flags(),
		.next = (uint16_t)(rnd() % 32 == 0 ? rnd() : rnd() % next_range),
	};

	memcpy(p, &d, 16);
}

Test(virtqueue, random_tables_never_escape_guest_memory, .timeout = 60)
{
	const uint16_t size = 16;
	const uint64_t table_area = 0x200000, mem_end = (4u << 20) + 0x10000;
	unsigned ok = 0, bad = 0, empty = 0, split = 0;

	rng_state = 0x9e3779b97f4a7c15ull;
	start_q(size, false, false);
	vqd_mem_add(&m, 4u << 20, 0x10000);
	for (unsigned iter = 0; iter < 4000; iter++) {
		bool ei = rnd() & 1, ind = rnd() % 4 != 0;

		/* Fresh rings, random descriptors and indirect-table area. */
		vqd_queue_init_at(&q, &m, size, q.desc, q.avail, q.used);
		for (uint16_t i = 0; i < size; i++)
			rnd_desc(vqd_hva(&m, q.desc + 16u * i, 16), size + 2, mem_end);
		for (unsigned i = 0; i < 64; i++)
			rnd_desc(vqd_hva(&m, table_area + 16u * i, 16), 8, mem_end);
		virtq_reset(&vq);
		vq.size = size;
		vq.desc_gpa = q.desc;
		vq.avail_gpa = q.avail;
		vq.used_gpa = q.used;
		vq.event_idx = ei;
		vq.indirect = ind;
		cr_assert_eq(virtq_start(&vq, &m.gm), 0);
		for (uint16_t s = 0; s < size; s++)
			vqd_set_avail_ring(&q, s, (uint16_t)(rnd() % 16 == 0 ? rnd() : rnd() % size));
		vqd_set_avail_idx(&q, (uint16_t)(rnd() % 16 == 0 ? rnd() : 1 + rnd() % 4));

		for (unsigned k = 0; k < 6; k++) {
			vmkit_virtq_elem *e = NULL;
			uint64_t o = 0, in = 0;
			int r = virtq_pop(&vq, &m.gm, 0, &e);

			if (r <= 0) {
				cr_assert_null(e);
				if (r < 0) {
					cr_assert(vq.broken);
					bad++;
				} else {
					empty++;
				}
				break;
			}
			ok++;
			cr_assert_leq(e->n_out + e->n_in, (uint32_t)VIRTQ_MAX_CHAIN * VQD_MAX_REGIONS);
			for (uint32_t i = 0; i < e->n_out; i++) {
				cr_assert(vqd_mem_contains(&m, e->out[i].iov_base, e->out[i].iov_len),
					  "iteration %u: out iovec %u outside memory", iter, i);
				cr_assert_gt(e->out[i].iov_len, 0);
				o += e->out[i].iov_len;
			}
			for (uint32_t i = 0; i < e->n_in; i++) {
				cr_assert(vqd_mem_contains(&m, e->in[i].iov_base, e->in[i].iov_len),
					  "iteration %u: in iovec %u outside memory", iter, i);
				cr_assert_gt(e->in[i].iov_len, 0);
				in += e->in[i].iov_len;
			}
			split += (e->n_out + e->n_in) > 1;
			cr_assert_eq(o, e->out_len);
			cr_assert_eq(in, e->in_len);
			cr_assert_leq(o + in, UINT32_MAX);
			cr_assert_lt(e->head, size);
			cr_assert_eq(virtq_push(&vq, e->head, (uint32_t)(rnd() % (in + 1))), 0);
			virtq_elem_free(e);
			(void)virtq_should_notify(&vq);
		}
	}
	/* The generator must exercise both outcomes, or the test proves nothing. */
	cr_assert_gt(ok, 300, "only %u chains accepted", ok);
	cr_assert_gt(bad, 300, "only %u chains refused", bad);
	cr_assert_gt(split, 20, "only %u multi-iovec elements", split);
	cr_log_info("random tables: %u accepted, %u refused, %u empty, %u multi-iovec", ok, bad,
		    empty, split);
}

/* A read-only region (a firmware ROM) is read-only to devices too: a
 * device-writable buffer there is malformed (the device would otherwise
 * overwrite the ROM behind the guest's back), a readable one is fine,
 * and the used ring, which the device writes, cannot live there. */
#define ROM_GPA 0x10000000ull
static void *add_rom(void)
{
	static uint8_t rom[0x2000] __attribute__((aligned(4096)));

	memset(rom, 0x5a, sizeof(rom));
	cr_assert_geq(vmkit__gmem_add_host(&m.gm, ROM_GPA, sizeof(rom), rom,
					   VMKIT_MEMORY_READONLY), 0);
	return rom;
}

Test(virtqueue, readable_buffer_in_rom_is_fine)
{
	vmkit_virtq_elem *e;

	start_q(16, false, false);
	add_rom();
	vqd_publish(&q, (uint16_t)vqd_add_chain(&q, (struct vqd_buf[]){ { ROM_GPA, 64, false } }, 1));
	e = pop_ok();
	cr_assert_eq(e->n_out, 1);
	cr_assert_eq(((uint8_t *)e->out[0].iov_base)[0], 0x5a);
	virtq_elem_free(e);
}

Test(virtqueue, hostile_writable_buffer_in_rom)
{
	uint8_t *rom;

	start_q(16, false, false);
	rom = add_rom();
	vqd_publish(&q, (uint16_t)vqd_add_chain(&q, (struct vqd_buf[]){ { 0x2000, 16, false },
									 { ROM_GPA + 0x100, 64, true } },
						2));
	expect_malformed();
	cr_assert(strstr(vmkit_last_error(), "ROM"), "%s", vmkit_last_error());
	/* and the helpers devices write through refuse ROM as well */
	cr_assert_null(vmkit__gmem_ptr_rw(&m.gm, ROM_GPA + 0x100, 64));
	cr_assert_eq(rom[0x100], 0x5a);
}

Test(virtqueue, used_ring_in_rom_is_refused)
{
	start_q(8, false, false);
	add_rom();
	vq.used_gpa = ROM_GPA;
	cr_assert_lt(virtq_start(&vq, &m.gm), 0);
	cr_assert(strstr(vmkit_last_error(), "writable"), "%s", vmkit_last_error());
	vq.desc_gpa = ROM_GPA;                  /* descriptors in ROM: only read */
	vq.used_gpa = q.used;
	cr_assert_eq(virtq_start(&vq, &m.gm), 0, "%s", vmkit_last_error());
}
