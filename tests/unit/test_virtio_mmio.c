/* SPDX-License-Identifier: MIT */
/* The virtio-mmio transport (version 2) driven through its registers as a
 * guest driver would, over a toy device: identification, feature windows,
 * the handshake, queue registers and their rules, notifications (direct
 * and through the loop's eventfds), InterruptStatus/ACK and the line
 * level (alone and shared), reset, the config space, bad accesses, the
 * DSDT entry (checked with iasl and for what SeaBIOS parses) and the
 * kernel command-line entry. No KVM: vm == NULL, or a stand-in VM that
 * has only its MMIO bus and guest memory. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "iasl.h"
#include "vqdriver.h"
#include "arch/x86/aml.h"
#include "devices/virtio/mmio_test.h"
#include "loop/loop.h"

/* Register offsets (VIRTIO 1.2, 4.2.2), written out here independently of
 * mmio.c. */
enum {
	MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, VENDOR_ID = 0x00c,
	DEV_FEAT = 0x010, DEV_FEAT_SEL = 0x014, DRV_FEAT = 0x020, DRV_FEAT_SEL = 0x024,
	QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038, QUEUE_READY = 0x044,
	QUEUE_NOTIFY = 0x050, INT_STATUS = 0x060, INT_ACK = 0x064, STATUS = 0x070,
	DESC_LO = 0x080, DESC_HI = 0x084, DRIVER_LO = 0x090, DRIVER_HI = 0x094,
	DEVICE_LO = 0x0a0, DEVICE_HI = 0x0a4, SHM_SEL = 0x0ac, SHM_LEN_LO = 0x0b0,
	SHM_LEN_HI = 0x0b4, SHM_BASE_LO = 0x0b8, SHM_BASE_HI = 0x0bc, QUEUE_RESET = 0x0c0,
	CONFIG_GEN = 0x0fc, CONFIG = 0x100,
};

#define S_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRV VIRTIO_STATUS_DRIVER
#define S_FOK VIRTIO_STATUS_FEATURES_OK
#define S_DOK VIRTIO_STATUS_DRIVER_OK

/* ---- the toy device ------------------------------------------------------------ */

#define TOY_ID 0x2a
#define TOY_QUEUES 2
#define TOY_QMAX 256
#define TOY_CONFIG 12
#define TOY_FEATURES (VIRTIO_BIT(0) | VIRTIO_BIT(51))

struct toy {
	uint8_t config[TOY_CONFIG];
	unsigned config_writes;
	unsigned activations, resets, destroyed;
	uint64_t activated_features;
	unsigned notified[TOY_QUEUES];
	unsigned completed;
	struct vmkit_loop *stop_loop; /* stop this loop after a notification */
};

static void toy_config_read(void *opaque, uint32_t off, void *data, uint32_t len)
{
	struct toy *t = opaque;

	cr_assert_leq(off + len, TOY_CONFIG, "the core let a config read past the end");
	memcpy(data, t->config + off, len);
}

static void toy_config_write(void *opaque, uint32_t off, const void *data, uint32_t len)
{
	struct toy *t = opaque;

	cr_assert_leq(off + len, TOY_CONFIG, "the core let a config write past the end");
	memcpy(t->config + off, data, len);
	t->config_writes++;
}

static int toy_activate(void *opaque, vmkit_virtio_dev *dev, uint64_t features)
{
	struct toy *t = opaque;

	(void)dev;
	t->activations++;
	t->activated_features = features;
	return 0;
}

/* Complete every request with 4 bytes written, then interrupt. */
static void toy_queue_notify(void *opaque, vmkit_virtio_dev *dev, uint16_t queue)
{
	struct toy *t = opaque;
	vmkit_virtq_elem *e;

	cr_assert_lt(queue, TOY_QUEUES);
	t->notified[queue]++;
	while (vmkit_virtq_pop(dev, queue, &e) == 1) {
		cr_assert_eq(vmkit_virtq_push(dev, e, 4), 0);
		t->completed++;
	}
	vmkit_virtq_notify(dev, queue);
	if (t->stop_loop)
		vmkit__loop_stop(t->stop_loop);
}

static void toy_reset(void *opaque, vmkit_virtio_dev *dev)
{
	(void)dev;
	((struct toy *)opaque)->resets++;
}

static void toy_destroy(void *opaque)
{
	((struct toy *)opaque)->destroyed++;
}

static const vmkit_virtio_ops toy_ops = {
	.size = sizeof(vmkit_virtio_ops),
	.device_id = TOY_ID,
	.num_queues = TOY_QUEUES,
	.queue_max = TOY_QMAX,
	.config_size = TOY_CONFIG,
	.features = TOY_FEATURES,
	.config_read = toy_config_read,
	.config_write = toy_config_write,
	.activate = toy_activate,
	.queue_notify = toy_queue_notify,
	.reset = toy_reset,
	.destroy = toy_destroy,
};

/* ---- a transport over the toy, and register access --------------------------------- */

struct rig {
	struct toy toy;
	struct vqd_mem m;
	struct vqd_queue q[TOY_QUEUES];
	struct virtio_mmio *t;
	struct vmkit_virtio_dev *dev;
};

static void rig_init(struct rig *r, struct vmkit_loop *loop)
{
	memset(r, 0, sizeof(*r));
	for (unsigned i = 0; i < TOY_CONFIG; i++)
		r->toy.config[i] = (uint8_t)(0xa0 + i);
	vqd_mem_init(&r->m, 0, 0);
	for (unsigned i = 0; i < TOY_QUEUES; i++)
		vqd_queue_init(&r->q[i], &r->m, 64);
	cr_assert_eq(virtio_mmio_new(NULL, loop, 0xd0000000ull, 20, &toy_ops, &r->toy, "toy0",
				     NULL, &r->t),
		     0, "%s", vmkit_last_error());
	r->dev = virtio_mmio_dev(r->t);
	cr_assert_not_null(r->dev);
	/* No VM: the queues live in the fake guest memory. */
	r->dev->mem = &r->m.gm;
}

static void rig_fini(struct rig *r)
{
	virtio_mmio_free(r->t);
	cr_assert_eq(r->toy.destroyed, 1, "the transport must destroy the device once");
	vqd_mem_destroy(&r->m);
}

static uint32_t rd(struct virtio_mmio *t, uint32_t off)
{
	uint32_t v = 0xdeadbeef;

	virtio_mmio_test_read(t, off, &v, 4);
	return v;
}

static void wr(struct virtio_mmio *t, uint32_t off, uint32_t v)
{
	virtio_mmio_test_write(t, off, &v, 4);
}

static void wr64(struct virtio_mmio *t, uint32_t lo, uint64_t v)
{
	wr(t, lo, (uint32_t)v);
	wr(t, lo + 4, (uint32_t)(v >> 32));
}

static uint64_t device_features(struct virtio_mmio *t)
{
	uint64_t f;

	wr(t, DEV_FEAT_SEL, 0);
	f = rd(t, DEV_FEAT);
	wr(t, DEV_FEAT_SEL, 1);
	return f | (uint64_t)rd(t, DEV_FEAT) << 32;
}

/* Program queue @i from @q as Linux's vm_setup_vq does. */
static void setup_queue(struct virtio_mmio *t, uint32_t i, const struct vqd_queue *q)
{
	wr(t, QUEUE_SEL, i);
	cr_assert_eq(rd(t, QUEUE_READY), 0, "queue %u already set up", i);
	cr_assert_geq(rd(t, QUEUE_NUM_MAX), q->size);
	wr(t, QUEUE_NUM, q->size);
	wr64(t, DESC_LO, q->desc);
	wr64(t, DRIVER_LO, q->avail);
	wr64(t, DEVICE_LO, q->used);
	wr(t, QUEUE_READY, 1);
	cr_assert_eq(rd(t, QUEUE_READY), 1);
}

/* The whole driver handshake (3.1.1) through registers: all offered
 * features but EVENT_IDX (so that every completion interrupts), both
 * queues. Returns the final status. */
static uint32_t handshake(struct rig *r)
{
	struct virtio_mmio *t = r->t;
	uint64_t f;

	wr(t, STATUS, 0);
	cr_assert_eq(rd(t, STATUS), 0);
	wr(t, STATUS, S_ACK);
	wr(t, STATUS, S_ACK | S_DRV);
	f = device_features(t) & ~VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	wr(t, DRV_FEAT_SEL, 0);
	wr(t, DRV_FEAT, (uint32_t)f);
	wr(t, DRV_FEAT_SEL, 1);
	wr(t, DRV_FEAT, (uint32_t)(f >> 32));
	wr(t, STATUS, S_ACK | S_DRV | S_FOK);
	cr_assert_eq(rd(t, STATUS), S_ACK | S_DRV | S_FOK, "FEATURES_OK refused");
	for (uint32_t i = 0; i < TOY_QUEUES; i++)
		setup_queue(t, i, &r->q[i]);
	wr(t, STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	return rd(t, STATUS);
}

/* Put a one-buffer request on queue @qi (not notified). */
static void put_request(struct rig *r, unsigned qi)
{
	uint64_t buf = vqd_alloc(&r->m, 64, 16);
	int head = vqd_add_chain(&r->q[qi], (struct vqd_buf[]){ { buf, 64, true } }, 1);

	vqd_publish(&r->q[qi], (uint16_t)head);
}

/* ---- identification ------------------------------------------------------------- */

Test(virtio_mmio, identifies_itself)
{
	struct rig r;
	uint32_t v;

	rig_init(&r, NULL);
	cr_assert_eq(rd(r.t, MAGIC), 0x74726976, "magic \"virt\"");
	cr_assert_eq(rd(r.t, VERSION), 2, "virtio-mmio version 2 (modern)");
	cr_assert_eq(rd(r.t, DEVICE_ID), TOY_ID);
	v = rd(r.t, VENDOR_ID);
	cr_assert(!memcmp(&v, "VMKT", 4), "vendor id 0x%08x", v);
	cr_assert_eq(rd(r.t, CONFIG_GEN), 0);
	cr_assert_eq(rd(r.t, STATUS), 0);
	cr_assert_eq(rd(r.t, INT_STATUS), 0);
	/* No shared memory regions: every selector reads length -1. */
	for (uint32_t sel = 0; sel < 3; sel++) {
		wr(r.t, SHM_SEL, sel);
		cr_assert_eq(rd(r.t, SHM_LEN_LO), 0xffffffffu);
		cr_assert_eq(rd(r.t, SHM_LEN_HI), 0xffffffffu);
		cr_assert_eq(rd(r.t, SHM_BASE_LO), 0xffffffffu);
		cr_assert_eq(rd(r.t, SHM_BASE_HI), 0xffffffffu);
	}
	/* Write-only and reserved registers read 0 (not all ones). */
	cr_assert_eq(rd(r.t, QUEUE_NUM), 0);
	cr_assert_eq(rd(r.t, DESC_LO), 0);
	cr_assert_eq(rd(r.t, QUEUE_NOTIFY), 0);
	cr_assert_eq(rd(r.t, 0x018), 0);
	cr_assert_eq(rd(r.t, QUEUE_RESET), 0);
	cr_assert_eq(rd(r.t, 0x0f8), 0);
	cr_assert_eq(virtio_mmio_test_bad_accesses(r.t), 0);
	rig_fini(&r);
}

Test(virtio_mmio, feature_select_windows)
{
	struct rig r;
	uint64_t want = TOY_FEATURES | VIRTIO_TRANSPORT_FEATURES;

	rig_init(&r, NULL);
	wr(r.t, DEV_FEAT_SEL, 0);
	cr_assert_eq(rd(r.t, DEV_FEAT), (uint32_t)want);
	wr(r.t, DEV_FEAT_SEL, 1);
	cr_assert_eq(rd(r.t, DEV_FEAT), (uint32_t)(want >> 32));
	cr_assert(rd(r.t, DEV_FEAT) & 1, "VIRTIO_F_VERSION_1 (bit 32) offered");
	wr(r.t, DEV_FEAT_SEL, 2);
	cr_assert_eq(rd(r.t, DEV_FEAT), 0);
	wr(r.t, DEV_FEAT_SEL, 0xffffffff);
	cr_assert_eq(rd(r.t, DEV_FEAT), 0);

	/* Driver features land in the selected half. */
	wr(r.t, STATUS, S_ACK | S_DRV);
	wr(r.t, DRV_FEAT_SEL, 1);
	wr(r.t, DRV_FEAT, 1);
	wr(r.t, DRV_FEAT_SEL, 0);
	wr(r.t, DRV_FEAT, 1);
	wr(r.t, DRV_FEAT_SEL, 7);
	wr(r.t, DRV_FEAT, 0xffffffff); /* no such window: dropped */
	cr_assert_eq(r.dev->driver_features, VIRTIO_BIT(32) | VIRTIO_BIT(0));
	wr(r.t, STATUS, S_ACK | S_DRV | S_FOK);
	cr_assert_eq(rd(r.t, STATUS), S_ACK | S_DRV | S_FOK);
	/* Fixed once FEATURES_OK is accepted. */
	wr(r.t, DRV_FEAT_SEL, 0);
	wr(r.t, DRV_FEAT, 0);
	cr_assert_eq(r.dev->driver_features, VIRTIO_BIT(32) | VIRTIO_BIT(0));
	rig_fini(&r);
}

Test(virtio_mmio, features_without_version_1_refused)
{
	struct rig r;

	rig_init(&r, NULL);
	wr(r.t, STATUS, S_ACK | S_DRV);
	wr(r.t, DRV_FEAT_SEL, 0);
	wr(r.t, DRV_FEAT, 1);
	wr(r.t, STATUS, S_ACK | S_DRV | S_FOK);
	cr_assert_eq(rd(r.t, STATUS) & S_FOK, 0, "FEATURES_OK kept without VERSION_1");
	rig_fini(&r);
}

/* ---- the handshake and queues ------------------------------------------------------ */

Test(virtio_mmio, handshake_and_notify)
{
	struct rig r;
	uint32_t id, len;

	rig_init(&r, NULL);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	cr_assert_eq(r.toy.activations, 1);
	cr_assert_eq(r.toy.activated_features,
		     (TOY_FEATURES | VIRTIO_TRANSPORT_FEATURES) & ~VIRTIO_BIT(VIRTIO_F_EVENT_IDX));

	/* A notification of queue 1 reaches the device for queue 1 only. */
	put_request(&r, 1);
	wr(r.t, QUEUE_NOTIFY, 1);
	cr_assert_eq(r.toy.notified[1], 1);
	cr_assert_eq(r.toy.notified[0], 0);
	cr_assert(vqd_get_used(&r.q[1], &id, &len), "no used entry on queue 1");
	cr_assert_eq(len, 4);
	cr_assert_eq(rd(r.t, INT_STATUS), VIRTIO_ISR_QUEUE);
	cr_assert(virtio_mmio_test_line(r.t), "line not raised for a used buffer");

	/* InterruptACK clears the bit and lowers the line. */
	wr(r.t, INT_ACK, VIRTIO_ISR_QUEUE);
	cr_assert_eq(rd(r.t, INT_STATUS), 0);
	cr_assert_not(virtio_mmio_test_line(r.t));

	put_request(&r, 0);
	wr(r.t, QUEUE_NOTIFY, 0);
	cr_assert_eq(r.toy.notified[0], 1);
	cr_assert(vqd_get_used(&r.q[0], &id, &len));

	/* A queue that does not exist, and values that would alias one. */
	wr(r.t, QUEUE_NOTIFY, 2);
	wr(r.t, QUEUE_NOTIFY, 0x10000);
	wr(r.t, QUEUE_NOTIFY, 0xffffffff);
	cr_assert_eq(r.toy.notified[0] + r.toy.notified[1], 2);
	rig_fini(&r);
}

Test(virtio_mmio, notify_before_driver_ok_ignored)
{
	struct rig r;

	rig_init(&r, NULL);
	wr(r.t, STATUS, S_ACK | S_DRV);
	setup_queue(r.t, 0, &r.q[0]);
	put_request(&r, 0);
	wr(r.t, QUEUE_NOTIFY, 0);
	cr_assert_eq(r.toy.notified[0], 0);
	cr_assert_eq(vqd_used_pending(&r.q[0]), 0);
	rig_fini(&r);
}

Test(virtio_mmio, queue_num_max_and_queue_num_rules)
{
	struct rig r;

	rig_init(&r, NULL);
	wr(r.t, STATUS, S_ACK | S_DRV);
	for (uint32_t i = 0; i < TOY_QUEUES; i++) {
		wr(r.t, QUEUE_SEL, i);
		cr_assert_eq(rd(r.t, QUEUE_NUM_MAX), TOY_QMAX);
	}
	wr(r.t, QUEUE_SEL, TOY_QUEUES);
	cr_assert_eq(rd(r.t, QUEUE_NUM_MAX), 0, "queue %u does not exist", TOY_QUEUES);
	cr_assert_eq(rd(r.t, QUEUE_READY), 0);
	wr(r.t, QUEUE_NUM, 16);   /* harmless */
	wr(r.t, QUEUE_READY, 1);
	cr_assert_eq(rd(r.t, QUEUE_READY), 0);
	wr(r.t, QUEUE_SEL, 0x10000); /* must not alias queue 0 */
	cr_assert_eq(rd(r.t, QUEUE_NUM_MAX), 0);
	wr(r.t, QUEUE_SEL, 0xffffffff);
	cr_assert_eq(rd(r.t, QUEUE_NUM_MAX), 0);

	wr(r.t, QUEUE_SEL, 0);
	wr(r.t, QUEUE_NUM, 64);
	cr_assert_eq(r.dev->vq[0].size, 64);
	wr(r.t, QUEUE_NUM, 100);              /* not a power of two */
	cr_assert_eq(r.dev->vq[0].size, 64);
	wr(r.t, QUEUE_NUM, 2 * TOY_QMAX);     /* above QueueNumMax */
	cr_assert_eq(r.dev->vq[0].size, 64);
	wr(r.t, QUEUE_NUM, 0);
	cr_assert_eq(r.dev->vq[0].size, 64);
	wr(r.t, QUEUE_NUM, 0x10040);          /* would truncate to 64 */
	cr_assert_eq(r.dev->vq[0].size, 64);
	wr(r.t, QUEUE_NUM, TOY_QMAX);
	cr_assert_eq(r.dev->vq[0].size, TOY_QMAX);
	wr(r.t, QUEUE_NUM, 1);
	cr_assert_eq(r.dev->vq[0].size, 1);
	/* Nothing leaked into the other queue. */
	cr_assert_eq(r.dev->vq[1].size, TOY_QMAX);
	rig_fini(&r);
}

Test(virtio_mmio, queue_registers_frozen_once_ready)
{
	struct rig r;
	struct virtq *vq;

	rig_init(&r, NULL);
	vq = &r.dev->vq[0];
	wr(r.t, STATUS, S_ACK | S_DRV);
	wr(r.t, QUEUE_SEL, 0);
	wr(r.t, QUEUE_NUM, 64);
	wr64(r.t, DESC_LO, 0x123456789000ull);
	wr64(r.t, DRIVER_LO, 0x2000);
	wr64(r.t, DEVICE_LO, 0xfedcba9876543000ull);
	cr_assert_eq(vq->desc_gpa, 0x123456789000ull);
	cr_assert_eq(vq->avail_gpa, 0x2000);
	cr_assert_eq(vq->used_gpa, 0xfedcba9876543000ull, "high halves are kept");
	wr(r.t, QUEUE_READY, 2); /* only 0 and 1 mean anything */
	cr_assert_eq(rd(r.t, QUEUE_READY), 0);
	wr(r.t, QUEUE_READY, 1);
	cr_assert_eq(rd(r.t, QUEUE_READY), 1);

	wr(r.t, QUEUE_NUM, 32);
	wr(r.t, DESC_LO, 0x5000);
	wr(r.t, DRIVER_HI, 1);
	wr(r.t, DEVICE_LO, 0);
	cr_assert_eq(vq->size, 64);
	cr_assert_eq(vq->desc_gpa, 0x123456789000ull);
	cr_assert_eq(vq->avail_gpa, 0x2000);
	cr_assert_eq(vq->used_gpa, 0xfedcba9876543000ull);

	/* Before DRIVER_OK the driver may take the queue back (Linux does on
	 * an error path and checks that QueueReady reads 0)... */
	wr(r.t, QUEUE_READY, 0);
	cr_assert_eq(rd(r.t, QUEUE_READY), 0);
	wr(r.t, DESC_LO, 0x5000);
	cr_assert_eq(vq->desc_gpa, 0x123400005000ull);
	rig_fini(&r);
}

Test(virtio_mmio, queue_registers_frozen_after_driver_ok)
{
	struct rig r;
	uint64_t desc;

	rig_init(&r, NULL);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	desc = r.dev->vq[1].desc_gpa;
	wr(r.t, QUEUE_SEL, 1);
	wr(r.t, QUEUE_READY, 0);
	cr_assert_eq(rd(r.t, QUEUE_READY), 1, "a started queue cannot be disabled");
	wr(r.t, DESC_LO, 0x9000);
	wr(r.t, QUEUE_NUM, 8);
	cr_assert_eq(r.dev->vq[1].desc_gpa, desc);
	cr_assert_eq(r.dev->vq[1].size, 64);
	/* and still works */
	put_request(&r, 1);
	wr(r.t, QUEUE_NOTIFY, 1);
	cr_assert_eq(vqd_used_pending(&r.q[1]), 1);
	rig_fini(&r);
}

Test(virtio_mmio, bad_ring_sets_needs_reset)
{
	struct rig r;

	rig_init(&r, NULL);
	wr(r.t, STATUS, S_ACK | S_DRV);
	wr(r.t, DRV_FEAT_SEL, 1);
	wr(r.t, DRV_FEAT, 1);
	wr(r.t, STATUS, S_ACK | S_DRV | S_FOK);
	wr(r.t, QUEUE_SEL, 0);
	wr(r.t, QUEUE_NUM, 64);
	wr64(r.t, DESC_LO, 0x7fff00000000ull); /* not guest memory */
	wr64(r.t, DRIVER_LO, r.q[0].avail);
	wr64(r.t, DEVICE_LO, r.q[0].used);
	wr(r.t, QUEUE_READY, 1);
	wr(r.t, STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	cr_assert(rd(r.t, STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(r.toy.activations, 0);
	wr(r.t, QUEUE_NOTIFY, 0);
	cr_assert_eq(r.toy.notified[0], 0);
	rig_fini(&r);
}

/* ---- interrupts, reset --------------------------------------------------------------- */

Test(virtio_mmio, interrupt_status_and_ack)
{
	struct rig r;
	uint32_t gen;

	rig_init(&r, NULL);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	gen = rd(r.t, CONFIG_GEN);
	vmkit_virtio_lock(r.dev);
	vmkit_virtio_config_changed(r.dev);
	vmkit_virtio_unlock(r.dev);
	cr_assert_neq(rd(r.t, CONFIG_GEN), gen, "ConfigGeneration must change");
	cr_assert_eq(rd(r.t, INT_STATUS), VIRTIO_ISR_CONFIG);
	cr_assert(virtio_mmio_test_line(r.t));

	put_request(&r, 0);
	wr(r.t, QUEUE_NOTIFY, 0);
	cr_assert_eq(rd(r.t, INT_STATUS), VIRTIO_ISR_CONFIG | VIRTIO_ISR_QUEUE);
	/* ACK one bit: the other keeps the line up. */
	wr(r.t, INT_ACK, VIRTIO_ISR_QUEUE);
	cr_assert_eq(rd(r.t, INT_STATUS), VIRTIO_ISR_CONFIG);
	cr_assert(virtio_mmio_test_line(r.t));
	/* ACK of a bit not set changes nothing. */
	wr(r.t, INT_ACK, VIRTIO_ISR_QUEUE);
	cr_assert(virtio_mmio_test_line(r.t));
	wr(r.t, INT_ACK, 0xffffffff);
	cr_assert_eq(rd(r.t, INT_STATUS), 0);
	cr_assert_not(virtio_mmio_test_line(r.t));
	rig_fini(&r);
}

Test(virtio_mmio, config_generation_without_interrupt_before_driver_ok)
{
	struct rig r;

	rig_init(&r, NULL);
	vmkit_virtio_lock(r.dev);
	vmkit_virtio_config_changed(r.dev);
	vmkit_virtio_config_changed(r.dev);
	vmkit_virtio_unlock(r.dev);
	cr_assert_eq(rd(r.t, CONFIG_GEN), 2);
	cr_assert_eq(rd(r.t, INT_STATUS), 0);
	cr_assert_not(virtio_mmio_test_line(r.t));
	rig_fini(&r);
}

Test(virtio_mmio, status_zero_resets)
{
	struct rig r;
	unsigned resets;

	rig_init(&r, NULL);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	put_request(&r, 0);
	wr(r.t, QUEUE_NOTIFY, 0);
	cr_assert(virtio_mmio_test_line(r.t));
	wr(r.t, QUEUE_SEL, 1);
	resets = r.toy.resets;

	wr(r.t, STATUS, 0);
	cr_assert_eq(r.toy.resets, resets + 1, "the device's reset was not called");
	cr_assert_eq(rd(r.t, STATUS), 0);
	cr_assert_eq(rd(r.t, INT_STATUS), 0);
	cr_assert_not(virtio_mmio_test_line(r.t), "a reset must lower the line");
	for (uint32_t i = 0; i < TOY_QUEUES; i++) {
		wr(r.t, QUEUE_SEL, i);
		cr_assert_eq(rd(r.t, QUEUE_READY), 0, "queue %u still ready", i);
		cr_assert_eq(r.dev->vq[i].desc_gpa, 0);
		cr_assert_eq(r.dev->vq[i].avail_gpa, 0);
		cr_assert_eq(r.dev->vq[i].used_gpa, 0);
		cr_assert_eq(r.dev->vq[i].size, TOY_QMAX, "size back to its maximum");
	}
	cr_assert_eq(r.dev->driver_features, 0);
	/* A notification after the reset reaches nothing. */
	put_request(&r, 0);
	wr(r.t, QUEUE_NOTIFY, 0);
	cr_assert_eq(r.toy.notified[0], 1);

	/* A status of 0x100 is not a reset (the byte is all that counts). */
	wr(r.t, STATUS, S_ACK);
	wr(r.t, STATUS, 0x100);
	cr_assert_eq(rd(r.t, STATUS), S_ACK);
	cr_assert_eq(r.toy.resets, resets + 1);

	/* And the device can be brought up again. */
	for (unsigned i = 0; i < TOY_QUEUES; i++)
		vqd_queue_init(&r.q[i], &r.m, 64);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	cr_assert_eq(r.toy.activations, 2);
	put_request(&r, 1);
	wr(r.t, QUEUE_NOTIFY, 1);
	cr_assert_eq(vqd_used_pending(&r.q[1]), 1);
	rig_fini(&r);
}

/* ---- config space, bad accesses ------------------------------------------------------- */

Test(virtio_mmio, config_space_any_width)
{
	struct rig r;
	uint8_t b = 0;
	uint16_t h = 0;
	uint32_t w = 0;
	uint64_t q = 0, want;

	rig_init(&r, NULL);
	virtio_mmio_test_read(r.t, CONFIG + 1, &b, 1);
	cr_assert_eq(b, 0xa1);
	virtio_mmio_test_read(r.t, CONFIG + 2, &h, 2);
	cr_assert_eq(h, 0xa3a2);
	virtio_mmio_test_read(r.t, CONFIG + 4, &w, 4);
	cr_assert_eq(w, 0xa7a6a5a4);
	virtio_mmio_test_read(r.t, CONFIG, &q, 8);
	memcpy(&want, r.toy.config, 8);
	cr_assert_eq(q, want);
	/* Unaligned is fine in config space. */
	virtio_mmio_test_read(r.t, CONFIG + 3, &w, 4);
	cr_assert_eq(w, 0xa6a5a4a3);

	h = 0x1234;
	virtio_mmio_test_write(r.t, CONFIG + 8, &h, 2);
	cr_assert_eq(r.toy.config[8], 0x34);
	cr_assert_eq(r.toy.config[9], 0x12);
	b = 0x77;
	virtio_mmio_test_write(r.t, CONFIG + 11, &b, 1);
	cr_assert_eq(r.toy.config[11], 0x77);
	cr_assert_eq(r.toy.config_writes, 2);
	cr_assert_eq(virtio_mmio_test_bad_accesses(r.t), 0);
	rig_fini(&r);
}

Test(virtio_mmio, config_space_bounds)
{
	struct rig r;
	uint8_t before[TOY_CONFIG];
	uint32_t w = 0xffffffff;
	uint64_t q = ~0ull;

	rig_init(&r, NULL);
	memcpy(before, r.toy.config, sizeof(before));
	/* Beyond config_size: zeros. Straddling the end: the real part, then zeros. */
	virtio_mmio_test_read(r.t, CONFIG + TOY_CONFIG, &w, 4);
	cr_assert_eq(w, 0);
	virtio_mmio_test_read(r.t, CONFIG + TOY_CONFIG - 2, &w, 4);
	cr_assert_eq(w, 0x0000abaau, "got 0x%08x", w);
	virtio_mmio_test_read(r.t, VIRTIO_MMIO_SIZE - 8, &q, 8);
	cr_assert_eq(q, 0);
	/* Writes beyond are dropped; a straddling one keeps only its in-range part. */
	w = 0x55555555;
	virtio_mmio_test_write(r.t, CONFIG + TOY_CONFIG, &w, 4);
	virtio_mmio_test_write(r.t, VIRTIO_MMIO_SIZE - 4, &w, 4);
	cr_assert(!memcmp(r.toy.config, before, sizeof(before)));
	cr_assert_eq(r.toy.config_writes, 0);
	virtio_mmio_test_write(r.t, CONFIG + TOY_CONFIG - 1, &w, 4);
	cr_assert_eq(r.toy.config[TOY_CONFIG - 1], 0x55);
	cr_assert(!memcmp(r.toy.config, before, TOY_CONFIG - 1));
	/* Past the window (a bus never sends these): ignored, not crashed. */
	virtio_mmio_test_read(r.t, VIRTIO_MMIO_SIZE - 2, &w, 4);
	cr_assert_eq(w, 0);
	virtio_mmio_test_write(r.t, VIRTIO_MMIO_SIZE + 0x100, &w, 4);
	rig_fini(&r);
}

Test(virtio_mmio, non_32_bit_register_accesses_are_harmless)
{
	struct rig r;
	uint8_t b = 0xff;
	uint16_t h = 0xffff;
	uint64_t q = ~0ull;
	uint32_t w = 0xffffffff;
	unsigned bad, resets;

	rig_init(&r, NULL);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	/* Reads of other widths, or misaligned, read 0. */
	virtio_mmio_test_read(r.t, MAGIC, &b, 1);
	cr_assert_eq(b, 0);
	virtio_mmio_test_read(r.t, MAGIC, &h, 2);
	cr_assert_eq(h, 0);
	virtio_mmio_test_read(r.t, MAGIC, &q, 8);
	cr_assert_eq(q, 0);
	virtio_mmio_test_read(r.t, MAGIC + 2, &w, 4);
	cr_assert_eq(w, 0);
	virtio_mmio_test_read(r.t, CONFIG - 2, &w, 4); /* straddles into config */
	cr_assert_eq(w, 0);
	/* Writes of other widths change nothing: no reset, no notify, no ACK. */
	resets = r.toy.resets;
	h = 0;
	virtio_mmio_test_write(r.t, STATUS, &h, 2);
	b = 0;
	virtio_mmio_test_write(r.t, STATUS, &b, 1);
	cr_assert_eq(rd(r.t, STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
	cr_assert_eq(r.toy.resets, resets);
	put_request(&r, 0);
	b = 0;
	virtio_mmio_test_write(r.t, QUEUE_NOTIFY, &b, 1);
	q = 0;
	virtio_mmio_test_write(r.t, QUEUE_NOTIFY, &q, 8);
	w = 0;
	virtio_mmio_test_write(r.t, QUEUE_NOTIFY + 1, &w, 4);
	cr_assert_eq(r.toy.notified[0], 0);
	wr(r.t, QUEUE_NOTIFY, 0);
	cr_assert_eq(r.toy.notified[0], 1);
	cr_assert(virtio_mmio_test_line(r.t));
	h = 1;
	virtio_mmio_test_write(r.t, INT_ACK, &h, 2);
	cr_assert_eq(rd(r.t, INT_STATUS), VIRTIO_ISR_QUEUE);
	bad = virtio_mmio_test_bad_accesses(r.t);
	cr_assert_eq(bad, 11, "%u bad accesses counted", bad);
	/* Writes to read-only registers are ignored. */
	wr(r.t, MAGIC, 0);
	wr(r.t, DEVICE_ID, 7);
	wr(r.t, INT_STATUS, 0);
	wr(r.t, CONFIG_GEN, 9);
	cr_assert_eq(rd(r.t, MAGIC), 0x74726976);
	cr_assert_eq(rd(r.t, DEVICE_ID), TOY_ID);
	cr_assert_eq(rd(r.t, INT_STATUS), VIRTIO_ISR_QUEUE);
	cr_assert_eq(rd(r.t, CONFIG_GEN), 0);
	rig_fini(&r);
}

struct locker {
	struct virtio_mmio *t;
	_Atomic bool done;
};

static void *write_status(void *arg)
{
	struct locker *l = arg;

	wr(l->t, STATUS, S_ACK);
	l->done = true;
	return NULL;
}

Test(virtio_mmio, register_access_takes_the_device_lock)
{
	struct rig r;
	struct locker l;
	pthread_t th;

	rig_init(&r, NULL);
	l.t = r.t;
	l.done = false;
	vmkit_virtio_lock(r.dev);
	cr_assert_eq(pthread_create(&th, NULL, write_status, &l), 0);
	usleep(100 * 1000);
	cr_assert_not(l.done, "a register write went through while the device lock was held");
	cr_assert_eq(r.dev->status, 0);
	vmkit_virtio_unlock(r.dev);
	pthread_join(th, NULL);
	cr_assert(l.done);
	cr_assert_eq(rd(r.t, STATUS), S_ACK);
	rig_fini(&r);
}

/* ---- notifications through the loop ---------------------------------------------------- */

static void on_timeout(void *opaque, int fd, uint32_t events)
{
	bool *timed_out = opaque;
	uint64_t v;

	(void)events;
	if (read(fd, &v, sizeof(v)) < 0)
		return;
	*timed_out = true;
}

Test(virtio_mmio, eventfd_notifications_on_the_loop)
{
	struct vmkit_loop *loop;
	struct rig r;
	struct itimerspec its = { .it_value = { .tv_sec = 10 } };
	bool timed_out = false;
	uint64_t one = 1;
	int tfd, fd;

	cr_assert_eq(vmkit__loop_new(&loop), 0);
	rig_init(&r, loop);
	cr_assert_geq(virtio_mmio_test_notify_fd(r.t, 0), 0);
	cr_assert_geq(virtio_mmio_test_notify_fd(r.t, 1), 0);
	cr_assert_neq(virtio_mmio_test_notify_fd(r.t, 0), virtio_mmio_test_notify_fd(r.t, 1));
	cr_assert_eq(virtio_mmio_test_notify_fd(r.t, TOY_QUEUES), -1);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);

	/* What KVM does on a QueueNotify write of 1: signal queue 1's eventfd. */
	put_request(&r, 1);
	r.toy.stop_loop = loop;
	fd = virtio_mmio_test_notify_fd(r.t, 1);
	cr_assert_eq(write(fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	cr_assert_geq(tfd, 0);
	cr_assert_eq(timerfd_settime(tfd, 0, &its, NULL), 0);
	cr_assert_eq(vmkit__loop_add(loop, tfd, EPOLLIN, on_timeout, &timed_out), 0);
	cr_assert_eq(vmkit__loop_run(loop), 0);
	cr_assert_not(timed_out, "the eventfd did not reach the device");
	cr_assert_eq(r.toy.notified[1], 1);
	cr_assert_eq(r.toy.notified[0], 0);
	cr_assert_eq(vqd_used_pending(&r.q[1]), 1);
	cr_assert(virtio_mmio_test_line(r.t));

	/* The register path still works with a loop (no ioeventfd without a VM). */
	r.toy.stop_loop = NULL;
	put_request(&r, 0);
	wr(r.t, QUEUE_NOTIFY, 0);
	cr_assert_eq(r.toy.notified[0], 1);

	vmkit__loop_del(loop, tfd);
	close(tfd);
	rig_fini(&r);
	vmkit__loop_free(loop);
}

/* ---- a stand-in VM: the MMIO bus and a shared GSI ------------------------------------------- */

/* Just enough of a VM for the transport: its MMIO bus and guest memory.
 * No KVM fd and no irqchip, so KVM calls fail and the transport must cope
 * (it records the line level itself). */
static vmkit_vm *fake_vm(void)
{
	vmkit_vm *vm = calloc(1, sizeof(*vm));

	cr_assert_not_null(vm);
	vm->fd = -1;
	vmkit__bus_init(&vm->mmio);
	vmkit__gmem_init(&vm->mem);
	return vm;
}

static void fake_vm_free(vmkit_vm *vm)
{
	cr_assert_eq(vm->mmio.n, 0, "a transport left its window on the bus");
	vmkit__bus_destroy(&vm->mmio);
	vmkit__gmem_destroy(&vm->mem);
	free(vm);
}

/* Through the registers: features, then DRIVER_OK with no queue (config
 * interrupts need DRIVER_OK). */
static void bring_up(struct virtio_mmio *t)
{
	wr(t, STATUS, 0);
	wr(t, STATUS, S_ACK | S_DRV);
	wr(t, DRV_FEAT_SEL, 1);
	wr(t, DRV_FEAT, 1);
	wr(t, STATUS, S_ACK | S_DRV | S_FOK);
	wr(t, STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	cr_assert_eq(rd(t, STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
}

/* A config-change interrupt from the device. */
static void raise_irq(struct virtio_mmio *t)
{
	struct vmkit_virtio_dev *dev = virtio_mmio_dev(t);

	vmkit_virtio_lock(dev);
	vmkit_virtio_config_changed(dev);
	vmkit_virtio_unlock(dev);
	cr_assert_eq(rd(t, INT_STATUS), VIRTIO_ISR_CONFIG);
}

Test(virtio_mmio, window_on_the_vm_bus)
{
	vmkit_vm *vm = fake_vm();
	struct toy toy = { 0 };
	struct virtio_mmio *t, *t2 = NULL;
	uint32_t v = 0;
	uint64_t base = X86_VIRTIO_MMIO_BASE + 3 * VIRTIO_MMIO_SIZE;

	cr_assert_eq(virtio_mmio_new(vm, NULL, base, 23, &toy_ops, &toy, "toy", NULL, &t), 0,
		     "%s", vmkit_last_error());
	cr_assert(vmkit__bus_read(&vm->mmio, base + MAGIC, &v, 4));
	cr_assert_eq(v, 0x74726976);
	cr_assert(vmkit__bus_read(&vm->mmio, base + DEVICE_ID, &v, 4));
	cr_assert_eq(v, TOY_ID);
	cr_assert_not(vmkit__bus_read(&vm->mmio, base + VIRTIO_MMIO_SIZE, &v, 4));
	v = S_ACK;
	cr_assert(vmkit__bus_write(&vm->mmio, base + STATUS, &v, 4));
	cr_assert_eq(rd(t, STATUS), S_ACK);
	cr_assert_eq(virtio_mmio_dev(t)->mem, &vm->mem, "queues must live in the VM's memory");

	/* The same window twice: refused, and the device stays the caller's. */
	cr_assert_eq(virtio_mmio_new(vm, NULL, base, 20, &toy_ops, &toy, "toy", NULL, &t2),
		     -EEXIST);
	cr_assert_null(t2);
	cr_assert_eq(toy.destroyed, 0);
	virtio_mmio_free(t);
	cr_assert_eq(toy.destroyed, 1);
	cr_assert_not(vmkit__bus_read(&vm->mmio, base + MAGIC, &v, 4));
	fake_vm_free(vm);
}

Test(virtio_mmio, shared_gsi_stays_up_while_any_device_asserts)
{
	vmkit_vm *vm = fake_vm();
	struct toy ta = { 0 }, tb = { 0 }, tc = { 0 };
	struct virtio_mmio *a, *b, *c;
	uint64_t base = X86_VIRTIO_MMIO_BASE;

	cr_assert_eq(virtio_mmio_new(vm, NULL, base, 20, &toy_ops, &ta, "a", NULL, &a), 0);
	cr_assert_eq(virtio_mmio_new(vm, NULL, base + 0x1000, 21, &toy_ops, &tc, "c", NULL, &c),
		     0);
	cr_assert_eq(virtio_mmio_new(vm, NULL, base + 0x4000, 20, &toy_ops, &tb, "b", NULL, &b),
		     0);
	bring_up(a);
	bring_up(b);
	bring_up(c);

	raise_irq(a);
	cr_assert(virtio_mmio_test_line(a));
	cr_assert(virtio_mmio_test_line(b), "b shares a's GSI");
	cr_assert_not(virtio_mmio_test_line(c), "c is on another GSI");
	raise_irq(b);
	wr(a, INT_ACK, 0xffffffff);
	cr_assert_eq(rd(a, INT_STATUS), 0);
	cr_assert(virtio_mmio_test_line(b), "b's interrupt lost when a acknowledged");
	wr(b, INT_ACK, 0xffffffff);
	cr_assert_not(virtio_mmio_test_line(a));

	/* A device freed while asserting takes its share with it. */
	raise_irq(a);
	raise_irq(b);
	virtio_mmio_free(a);
	cr_assert(virtio_mmio_test_line(b));
	wr(b, INT_ACK, 0xffffffff);
	cr_assert_not(virtio_mmio_test_line(b));
	raise_irq(b);
	virtio_mmio_free(b);
	virtio_mmio_free(c);
	cr_assert_eq(ta.destroyed + tb.destroyed + tc.destroyed, 3);
	fake_vm_free(vm);
}

/* ---- creation errors -------------------------------------------------------------------------- */

Test(virtio_mmio, bad_arguments_refused_without_destroying)
{
	struct toy toy = { 0 };
	vmkit_virtio_ops ops = toy_ops;
	struct virtio_mmio *t = NULL;

	ops.num_queues = 0;
	cr_assert_eq(virtio_mmio_new(NULL, NULL, 0xd0000000, 20, &ops, &toy, "x", NULL, &t),
		     -EINVAL);
	ops = toy_ops;
	ops.num_queues = VMKIT_VIRTIO_MAX_QUEUES + 1;
	cr_assert_eq(virtio_mmio_new(NULL, NULL, 0xd0000000, 20, &ops, &toy, "x", NULL, &t),
		     -EINVAL);
	ops = toy_ops;
	ops.queue_max = 100;
	cr_assert_eq(virtio_mmio_new(NULL, NULL, 0xd0000000, 20, &ops, &toy, "x", NULL, &t),
		     -EINVAL);
	cr_assert_eq(virtio_mmio_new(NULL, NULL, 0xd0000800, 20, &toy_ops, &toy, "x", NULL, &t),
		     -EINVAL, "a misaligned window");
	cr_assert_eq(virtio_mmio_new(NULL, NULL, 0xfffffffffffff000ull, 20, &toy_ops, &toy, "x",
				     NULL, &t),
		     -EINVAL, "a window that wraps");
	cr_assert_eq(virtio_mmio_new(NULL, NULL, 0xd0000000, 20, NULL, &toy, "x", NULL, &t),
		     -EINVAL);
	cr_assert_null(t);
	cr_assert_eq(toy.destroyed, 0, "a failed creation must leave the device to the caller");
	virtio_mmio_free(NULL);
}

/* ---- ACPI and the command line ------------------------------------------------------------------ */

struct dsdt_ctx {
	struct virtio_mmio *t[2];
	uint32_t uid[2];
};

static void add_devices(void *ctx, struct x86_buf *sb)
{
	struct dsdt_ctx *c = ctx;

	for (int i = 0; i < 2; i++)
		virtio_mmio_dsdt(c->t[i], c->uid[i], sb);
}

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }


/* The DSDT inside the built image. */
static const uint8_t *find_dsdt(const struct x86_acpi_tables *t)
{
	for (size_t off = 64; off + 36 <= t->image.len; off += 4)
		if (!memcmp(t->image.data + off, "DSDT", 4) &&
		    off + le32(t->image.data + off + 4) <= t->image.len)
			return t->image.data + off;
	cr_assert_fail("no DSDT in the image");
	return NULL;
}

/* The text of device @name's block in @dsl (up to the next Device). */
static char *device_block(const char *dsl, const char *name)
{
	char head[32];
	const char *s, *e;

	snprintf(head, sizeof(head), "Device (%s)", name);
	s = strstr(dsl, head);
	cr_assert_not_null(s, "%s missing in:\n%s", head, dsl);
	e = strstr(s + 1, "Device (");
	return strndup(s, e ? (size_t)(e - s) : strlen(s));
}

Test(virtio_mmio, dsdt_device_for_linux_and_seabios)
{
	struct toy toy[2];
	struct dsdt_ctx ctx = { .uid = { 0, 5 } };
	struct x86_acpi_config c = { .ncpus = 1 };
	struct x86_acpi_tables tabs;
	char dir[] = "/tmp/vmkit-mmio-XXXXXX", path[300], cmd[700];
	const uint8_t *dsdt;
	char *dsl, *blk;
	uint32_t dlen;
	FILE *f;

	if (!have_iasl())
		return;
	memset(toy, 0, sizeof(toy));
	cr_assert_eq(virtio_mmio_new(NULL, NULL, 0xd0000000, 20, &toy_ops, &toy[0], "a", NULL,
				     &ctx.t[0]),
		     0);
	cr_assert_eq(virtio_mmio_new(NULL, NULL, 0xd0005000, 21, &toy_ops, &toy[1], "b", NULL,
				     &ctx.t[1]),
		     0);
	c.dsdt_extra = add_devices;
	c.dsdt_extra_ctx = &ctx;
	cr_assert_eq(x86_acpi_build(&c, X86_ACPI_ADDR, &tabs), 0, "%s", vmkit_last_error());
	dsdt = find_dsdt(&tabs);
	dlen = le32(dsdt + 4);

	/* What SeaBIOS's DSDT parser needs: Name(_HID, String) it compares
	 * byte for byte, and a static Name(_CRS, Buffer). */
	cr_assert_not_null(memmem(dsdt, dlen, "\x08_HID\x0dLNRO0005", 14));
	cr_assert_not_null(memmem(dsdt, dlen, "\x08_CRS\x11", 6));

	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/dsdt.dat", dir);
	f = fopen(path, "wb");
	cr_assert(f);
	cr_assert_eq(fwrite(dsdt, 1, dlen, f), dlen);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -d dsdt.dat >log 2>&1", dir);
	cr_assert_eq(system(cmd), 0, "iasl -d failed (see %s/log)", dir);
	snprintf(path, sizeof(path), "%s/dsdt.dsl", dir);
	dsl = slurp(path);
	cr_assert_null(strstr(dsl, "**** "), "iasl flags the DSDT:\n%s", dsl);

	blk = device_block(dsl, "VR00");
	cr_assert(strstr(blk, "Name (_HID, \"LNRO0005\")"), "%s", blk);
	cr_assert(strstr(blk, "Name (_UID, Zero)"), "%s", blk);
	cr_assert(strstr(blk, "Name (_CCA, One)"), "%s", blk);
	cr_assert(strstr(blk, "Memory32Fixed (ReadWrite,\n"
			      "                    0xD0000000,         // Address Base\n"
			      "                    0x00001000,         // Address Length"),
		  "%s", blk);
	cr_assert(strstr(blk, "Interrupt (ResourceConsumer, Level, ActiveHigh, Shared, ,, )\n"
			      "                {\n"
			      "                    0x00000014,\n"),
		  "%s", blk);
	free(blk);
	blk = device_block(dsl, "VR05");
	cr_assert(strstr(blk, "Name (_HID, \"LNRO0005\")"), "%s", blk);
	cr_assert(strstr(blk, "Name (_UID, 0x05)"), "%s", blk);
	cr_assert(strstr(blk, "0xD0005000,         // Address Base"), "%s", blk);
	cr_assert(strstr(blk, "0x00000015,\n"), "%s", blk);
	free(blk);
	free(dsl);

	/* The disassembly compiles back cleanly. */
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -p re dsdt.dsl >re.log 2>&1", dir);
	cr_assert_eq(system(cmd), 0, "the disassembly does not compile (see %s/re.log)", dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);

	x86_acpi_free(&tabs);
	virtio_mmio_free(ctx.t[0]);
	virtio_mmio_free(ctx.t[1]);
}

Test(virtio_mmio, dsdt_uid_too_large_poisons)
{
	struct toy toy = { 0 };
	struct virtio_mmio *t;
	struct x86_buf b = { 0 };

	cr_assert_eq(virtio_mmio_new(NULL, NULL, 0xd0000000, 20, &toy_ops, &toy, "a", NULL, &t),
		     0);
	virtio_mmio_dsdt(t, 0xff, &b);
	cr_assert_not(b.oom);
	cr_assert_not_null(memmem(b.data, b.len, "VRFF", 4));
	virtio_mmio_dsdt(t, 0x100, &b);
	cr_assert(b.oom, "uid 256 would collide with uid 0's name");
	x86_buf_free(&b);
	virtio_mmio_free(t);
}

Test(virtio_mmio, kernel_command_line_entry)
{
	struct toy toy = { 0 };
	struct virtio_mmio *t;
	char buf[64], small[20];

	cr_assert_eq(virtio_mmio_new(NULL, NULL, X86_VIRTIO_MMIO_BASE + 2 * VIRTIO_MMIO_SIZE,
				     X86_VIRTIO_MMIO_GSI_BASE + 2, &toy_ops, &toy, "a", NULL, &t),
		     0);
	cr_assert_gt(virtio_mmio_cmdline(t, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "virtio_mmio.device=4K@0xd0002000:22");
	cr_assert_eq(virtio_mmio_cmdline(t, buf, sizeof(buf)), (int)strlen(buf));
	cr_assert_lt(virtio_mmio_cmdline(t, small, sizeof(small)), 0);
	virtio_mmio_free(t);
}
