/* SPDX-License-Identifier: MIT */
/* The virtio device core with a toy device (an echo: what the driver puts
 * in the readable buffers comes back in the writable ones): feature
 * negotiation, the status handshake, queue registers, config space, kick
 * dispatch, reset, NEEDS_RESET on a malformed chain, save/restore. */
#include <criterion/criterion.h>
#include <string.h>

#include "devices/legacy/legacy.h"
#include "vqdriver.h"

#define ECHO_F_UPPER 0 /* a device feature bit: echo in upper case */
#define ECHO_MAGIC 0x4f484345u

struct echo {
	unsigned activates, resets, notifies, destroys, config_reads, config_writes;
	uint64_t features;
	int activate_ret;
	uint32_t handled;      /* requests echoed: the device state saved */
	uint32_t cfg_value;    /* config offset 4 (writable) */
	uint32_t last_cfg_off, last_cfg_len;
	int last_pop;
};

static void echo_config_read(void *opaque, uint32_t off, void *data, uint32_t len)
{
	struct echo *d = opaque;
	uint8_t cfg[8];
	uint32_t magic = ECHO_MAGIC;

	memcpy(cfg, &magic, 4);
	memcpy(cfg + 4, &d->cfg_value, 4);
	cr_assert_leq((uint64_t)off + len, sizeof(cfg), "core passed an out-of-range read");
	d->config_reads++;
	d->last_cfg_off = off;
	d->last_cfg_len = len;
	memcpy(data, cfg + off, len);
}

static void echo_config_write(void *opaque, uint32_t off, const void *data, uint32_t len)
{
	struct echo *d = opaque;
	uint8_t cfg[8];

	cr_assert_leq((uint64_t)off + len, sizeof(cfg), "core passed an out-of-range write");
	d->config_writes++;
	d->last_cfg_off = off;
	d->last_cfg_len = len;
	if (off + len <= 4)
		return; /* the magic is read-only */
	memcpy(cfg + 4, &d->cfg_value, 4);
	if (off < 4) {
		data = (const uint8_t *)data + (4 - off);
		len -= 4 - off;
		off = 4;
	}
	memcpy(cfg + off, data, len);
	memcpy(&d->cfg_value, cfg + 4, 4);
}

static int echo_activate(void *opaque, vmkit_virtio_dev *dev, uint64_t features)
{
	struct echo *d = opaque;

	d->activates++;
	d->features = features;
	return d->activate_ret;
}

static void echo_notify(void *opaque, vmkit_virtio_dev *dev, uint16_t queue)
{
	struct echo *d = opaque;
	vmkit_virtq_elem *e;
	int r;

	d->notifies++;
	while ((r = vmkit_virtq_pop(dev, queue, &e)) == 1) {
		uint64_t n = e->out_len < e->in_len ? e->out_len : e->in_len;
		uint8_t *tmp = malloc(n ? n : 1);
		uint64_t done = 0;

		cr_assert_not_null(tmp);
		for (uint32_t i = 0; i < e->n_out && done < n; i++) {
			uint64_t c = e->out[i].iov_len < n - done ? e->out[i].iov_len : n - done;

			memcpy(tmp + done, e->out[i].iov_base, c);
			done += c;
		}
		if (d->features & VIRTIO_BIT(ECHO_F_UPPER))
			for (uint64_t i = 0; i < n; i++)
				if (tmp[i] >= 'a' && tmp[i] <= 'z')
					tmp[i] = (uint8_t)(tmp[i] - 32);
		done = 0;
		for (uint32_t i = 0; i < e->n_in && done < n; i++) {
			uint64_t c = e->in[i].iov_len < n - done ? e->in[i].iov_len : n - done;

			memcpy(e->in[i].iov_base, tmp + done, c);
			done += c;
		}
		free(tmp);
		d->handled++;
		cr_assert_eq(vmkit_virtq_push(dev, e, (uint32_t)n), 0, "%s", vmkit_last_error());
	}
	d->last_pop = r;
	vmkit_virtq_notify(dev, queue);
}

static void echo_reset(void *opaque, vmkit_virtio_dev *dev)
{
	struct echo *d = opaque;

	d->resets++;
	d->features = 0;
}

#define ECHO_BLOB 20
static long echo_save(void *opaque, void *buf, size_t cap)
{
	struct echo *d = opaque;
	uint8_t b[ECHO_BLOB];

	memcpy(b, "ECHO", 4);
	memcpy(b + 4, &d->handled, 4);
	memcpy(b + 8, &d->cfg_value, 4);
	memcpy(b + 12, &d->features, 8);
	if (cap < sizeof(b))
		return sizeof(b);
	memcpy(buf, b, sizeof(b));
	return sizeof(b);
}

static int echo_restore(void *opaque, const void *buf, size_t len)
{
	struct echo *d = opaque;
	uint32_t handled, cfg;
	uint64_t features;

	if (len != ECHO_BLOB || memcmp(buf, "ECHO", 4) != 0)
		return -EINVAL;
	memcpy(&handled, (const uint8_t *)buf + 4, 4);
	memcpy(&cfg, (const uint8_t *)buf + 8, 4);
	memcpy(&features, (const uint8_t *)buf + 12, 8);
	if (handled > 1000000)
		return -EINVAL;
	d->handled = handled;
	d->cfg_value = cfg;
	d->features = features;
	return 0;
}

static void echo_destroy(void *opaque)
{
	((struct echo *)opaque)->destroys++;
}

static const vmkit_virtio_ops echo_ops = {
	.size = sizeof(vmkit_virtio_ops),
	.device_id = 0x7e,
	.num_queues = 2,
	.queue_max = 64,
	.config_size = 8,
	.features = VIRTIO_BIT(ECHO_F_UPPER),
	.config_read = echo_config_read,
	.config_write = echo_config_write,
	.activate = echo_activate,
	.queue_notify = echo_notify,
	.reset = echo_reset,
	.save = echo_save,
	.restore = echo_restore,
	.destroy = echo_destroy,
};

static struct vqd_mem m;
static struct vqd_queue q0, q1;
static struct vqd_transport t;
static struct vmkit_virtio_dev dev;
static struct echo echo;

static void setup(void)
{
	vqd_mem_init(&m, 0, 0);
	vqd_queue_init(&q0, &m, 16);
	vqd_queue_init(&q1, &m, 8);
	vqd_transport_init(&t);
	memset(&echo, 0, sizeof(echo));
	cr_assert_eq(virtio_dev_init(&dev, &echo_ops, &echo, &m.gm, &t.tr, &t, "echo0"), 0, "%s",
		     vmkit_last_error());
}

static void teardown(void)
{
	virtio_dev_destroy(&dev);
	vqd_mem_destroy(&m);
}

TestSuite(virtio_core, .init = setup, .fini = teardown);

static void handshake(void)
{
	uint8_t s = vqd_handshake(&dev, VQD_FEATURES_ALL, (struct vqd_queue *[]){ &q0, &q1 }, 2);

	cr_assert(vqd_status_live(s), "status 0x%x: %s", s, vmkit_last_error());
}

/* Send @text through queue 0 and return the head. */
static uint16_t send(struct vqd_queue *q, const char *text, uint64_t *reply)
{
	size_t n = strlen(text);
	uint64_t out = vqd_alloc(&m, n, 0);
	int head;

	*reply = vqd_alloc(&m, 64, 0);
	memcpy(vqd_hva(&m, out, n), text, n);
	head = vqd_add_chain(q, (struct vqd_buf[]){ { out, (uint32_t)n, false },
						    { *reply, 64, true } }, 2);
	vqd_publish(q, (uint16_t)head);
	return (uint16_t)head;
}

static void expect_reply(struct vqd_queue *q, uint16_t head, uint64_t reply, const char *text)
{
	uint32_t id, len;

	cr_assert(vqd_get_used(q, &id, &len), "no used entry");
	cr_assert_eq(id, head);
	cr_assert_eq(len, strlen(text));
	cr_assert_eq(memcmp(vqd_hva(&m, reply, len), text, len), 0);
}

/* ---- handshake and features -------------------------------------------------------- */

Test(virtio_core, init_refuses_bad_ops)
{
	struct vmkit_virtio_dev d2;
	vmkit_virtio_ops o = echo_ops;

	o.queue_max = 48;
	cr_assert_eq(virtio_dev_init(&d2, &o, NULL, &m.gm, &t.tr, &t, "x"), -EINVAL);
	o = echo_ops;
	o.num_queues = 0;
	cr_assert_eq(virtio_dev_init(&d2, &o, NULL, &m.gm, &t.tr, &t, "x"), -EINVAL);
	o.num_queues = VMKIT_VIRTIO_MAX_QUEUES + 1;
	cr_assert_eq(virtio_dev_init(&d2, &o, NULL, &m.gm, &t.tr, &t, "x"), -EINVAL);
	o = echo_ops;
	o.features |= VIRTIO_BIT(VIRTIO_F_VERSION_1);  /* transport bits are the core's */
	cr_assert_eq(virtio_dev_init(&d2, &o, NULL, &m.gm, &t.tr, &t, "x"), -EINVAL);
	o = echo_ops;
	o.config_size = 4097;
	cr_assert_eq(virtio_dev_init(&d2, &o, NULL, &m.gm, &t.tr, &t, "x"), -EINVAL);
	o = echo_ops;
	o.size = 8;
	cr_assert_eq(virtio_dev_init(&d2, &o, NULL, &m.gm, &t.tr, &t, "x"), -EINVAL);
	cr_assert_eq(virtio_dev_init(&d2, NULL, NULL, &m.gm, &t.tr, &t, "x"), -EINVAL);
}

Test(virtio_core, handshake_and_echo)
{
	uint64_t reply;
	uint16_t head;

	cr_assert_eq(vqd_device_features(&dev),
		     VIRTIO_BIT(ECHO_F_UPPER) | VIRTIO_TRANSPORT_FEATURES);
	handshake();
	cr_assert_eq(echo.activates, 1);
	cr_assert_eq(echo.features, VIRTIO_BIT(ECHO_F_UPPER) | VIRTIO_TRANSPORT_FEATURES);
	cr_assert(dev.vq[0].event_idx && dev.vq[0].indirect);
	cr_assert_null(vmkit_virtio_machine(&dev));

	head = send(&q0, "hello", &reply);
	vqd_kick(&dev, 0);
	expect_reply(&q0, head, reply, "HELLO");
	cr_assert_eq(t.queue_irqs[0], 1);
	cr_assert_eq(t.config_irqs, 0);
	cr_assert(dev.isr & VIRTIO_ISR_QUEUE);
	/* Queue 1 works too, independently. */
	head = send(&q1, "abc", &reply);
	vqd_kick(&dev, 1);
	expect_reply(&q1, head, reply, "ABC");
	cr_assert_eq(t.queue_irqs[1], 1);
}

Test(virtio_core, negotiating_a_subset)
{
	uint64_t reply;
	uint16_t head;
	uint8_t s;

	cr_assert(vqd_negotiate(&dev, VIRTIO_BIT(VIRTIO_F_VERSION_1)));
	cr_assert(vqd_setup_queue(&dev, 0, &q0));
	s = vqd_driver_ok(&dev);
	cr_assert(vqd_status_live(s));
	cr_assert_eq(echo.features, VIRTIO_BIT(VIRTIO_F_VERSION_1));
	cr_assert_not(dev.vq[0].event_idx);
	cr_assert_not(dev.vq[0].indirect);
	head = send(&q0, "hello", &reply);
	vqd_kick(&dev, 0);
	expect_reply(&q0, head, reply, "hello");
}

Test(virtio_core, features_ok_refused_without_version_1)
{
	cr_assert_not(vqd_negotiate(&dev, VIRTIO_BIT(ECHO_F_UPPER)));
	cr_assert_eq(vqd_status(&dev), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	/* DRIVER_OK without FEATURES_OK: the device does not go live. */
	cr_assert(vqd_setup_queue(&dev, 0, &q0));
	cr_assert(vqd_driver_ok(&dev) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(echo.activates, 0);
}

Test(virtio_core, features_ok_refused_with_unoffered_bits)
{
	cr_assert_not(vqd_negotiate(&dev, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(5)));
	cr_assert_not(vqd_negotiate(&dev, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
					  VIRTIO_BIT(VIRTIO_F_RING_PACKED)));
	/* The driver may try again with what was offered. */
	cr_assert(vqd_negotiate(&dev, VIRTIO_BIT(VIRTIO_F_VERSION_1)));
}

Test(virtio_core, feature_writes_after_features_ok_are_ignored)
{
	cr_assert(vqd_negotiate(&dev, VIRTIO_BIT(VIRTIO_F_VERSION_1)));
	vqd_write_driver_features(&dev, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(ECHO_F_UPPER));
	cr_assert_eq(dev.driver_features, VIRTIO_BIT(VIRTIO_F_VERSION_1));
	dev.device_features_sel = 2;
	cr_assert_eq(virtio_dev_read_device_features(&dev), 0);
}

Test(virtio_core, status_bits_are_only_cleared_by_reset)
{
	handshake();
	vqd_write_status(&dev, VIRTIO_STATUS_ACKNOWLEDGE);
	cr_assert(vqd_status_live(vqd_status(&dev)));
	/* The driver cannot set NEEDS_RESET itself. */
	vqd_write_status(&dev, (uint8_t)(vqd_status(&dev) | VIRTIO_STATUS_NEEDS_RESET));
	cr_assert_not(vqd_status(&dev) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(echo.activates, 1);
}

/* ---- queue registers ---------------------------------------------------------------------- */

Test(virtio_core, queue_registers_frozen_after_enable_and_driver_ok)
{
	struct vqd_queue other;

	vqd_queue_init(&other, &m, 32);
	cr_assert(vqd_negotiate(&dev, VQD_FEATURES_ALL));
	/* Reset value of the size register is the maximum. */
	dev.queue_sel = 1;
	cr_assert_eq(virtio_dev_selected_queue(&dev)->size, 64);
	cr_assert_eq(virtio_dev_queue_max(&dev), 64);
	cr_assert(vqd_setup_queue(&dev, 0, &q0));
	/* Enabled: further writes are ignored. */
	cr_assert_not(vqd_setup_queue(&dev, 0, &other));
	cr_assert_eq(dev.vq[0].size, 16);
	cr_assert_eq(dev.vq[0].desc_gpa, q0.desc);
	cr_assert_eq(dev.vq[0].used_gpa, q0.used);
	/* Out of range selector: no queue, maximum 0. */
	dev.queue_sel = 2;
	cr_assert_null(virtio_dev_selected_queue(&dev));
	cr_assert_null(virtio_dev_queue_for_write(&dev));
	cr_assert_eq(virtio_dev_queue_max(&dev), 0);
	dev.queue_sel = 0xffff;
	cr_assert_null(virtio_dev_selected_queue(&dev));
	cr_assert(vqd_status_live(vqd_driver_ok(&dev)));
	/* After DRIVER_OK even a disabled queue is frozen. */
	cr_assert_not(vqd_setup_queue(&dev, 1, &q1));
	cr_assert_not(dev.vq[1].ready);
	cr_assert_null(dev.vq[1].desc);
}

Test(virtio_core, driver_ok_with_a_bad_ring_needs_reset)
{
	struct vqd_queue bad = q0;

	bad.desc = m.size + 0x1000;             /* not guest memory */
	cr_assert(vqd_negotiate(&dev, VQD_FEATURES_ALL));
	cr_assert(vqd_setup_queue(&dev, 0, &bad));
	cr_assert(vqd_driver_ok(&dev) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(echo.activates, 0);
	cr_assert_eq(t.config_irqs, 1);
	cr_assert(dev.isr & VIRTIO_ISR_CONFIG);
	/* Nothing is dispatched. */
	vqd_kick(&dev, 0);
	cr_assert_eq(echo.notifies, 0);
	/* A reset and a correct set-up recover. */
	handshake();
	cr_assert_eq(echo.activates, 1);
}

Test(virtio_core, driver_ok_with_a_queue_above_the_maximum_needs_reset)
{
	struct vqd_queue big;

	vqd_queue_init(&big, &m, 128);          /* queue_max is 64 */
	cr_assert(vqd_negotiate(&dev, VQD_FEATURES_ALL));
	cr_assert(vqd_setup_queue(&dev, 0, &big));
	cr_assert(vqd_driver_ok(&dev) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(echo.activates, 0);
}

Test(virtio_core, activate_failure_needs_reset)
{
	uint8_t s;

	echo.activate_ret = -EIO;
	cr_assert(vqd_negotiate(&dev, VQD_FEATURES_ALL));
	cr_assert(vqd_setup_queue(&dev, 0, &q0));
	s = vqd_driver_ok(&dev);
	cr_assert(s & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert(s & VIRTIO_STATUS_DRIVER_OK);
	cr_assert_eq(echo.activates, 1);
	cr_assert_eq(t.config_irqs, 1);
	cr_assert_not(dev.activated);
}

/* ---- reset ---------------------------------------------------------------------------------- */

Test(virtio_core, reset_clears_everything)
{
	uint64_t reply;
	unsigned resets;
	uint16_t head;

	handshake();
	head = send(&q0, "x", &reply);
	vqd_kick(&dev, 0);
	expect_reply(&q0, head, reply, "X");
	vqd_lock(&dev);
	dev.queue_sel = 1;
	dev.vq[0].msix_vector = 3;
	dev.config_msix_vector = 4;
	dev.device_features_sel = 1;
	vqd_unlock(&dev);
	resets = echo.resets;

	vqd_write_status(&dev, 0);
	cr_assert_eq(echo.resets, resets + 1);
	cr_assert_eq(dev.status, 0);
	cr_assert_eq(dev.isr, 0);
	cr_assert_eq(dev.driver_features, 0);
	cr_assert_eq(dev.device_features_sel, 0);
	cr_assert_eq(dev.queue_sel, 0);
	cr_assert_eq(dev.config_msix_vector, VIRTIO_MSI_NO_VECTOR);
	cr_assert_not(dev.activated);
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_not(dev.vq[i].ready);
		cr_assert_null(dev.vq[i].desc);
		cr_assert_eq(dev.vq[i].size, 64);
		cr_assert_eq(dev.vq[i].last_avail, 0);
		cr_assert_eq(dev.vq[i].used_idx, 0);
		cr_assert_eq(dev.vq[i].msix_vector, VIRTIO_MSI_NO_VECTOR);
		cr_assert_not(dev.vq[i].broken);
	}
	/* Kicks after reset go nowhere. */
	vqd_kick(&dev, 0);
	cr_assert_eq(echo.notifies, 1);
	/* And the device comes up again on fresh rings. */
	vqd_queue_init(&q0, &m, 16);
	vqd_queue_init(&q1, &m, 8);
	handshake();
	head = send(&q0, "again", &reply);
	vqd_kick(&dev, 0);
	expect_reply(&q0, head, reply, "AGAIN");
	cr_assert_eq(echo.activates, 2);
}

/* ---- config space ------------------------------------------------------------------------------ */

Test(virtio_core, config_read_write_bounds)
{
	uint8_t b[8];
	uint32_t v;

	vqd_lock(&dev);
	virtio_dev_config_read(&dev, 0, &v, 4);
	cr_assert_eq(v, ECHO_MAGIC);
	v = 0x11223344;
	virtio_dev_config_write(&dev, 4, &v, 4);
	cr_assert_eq(echo.cfg_value, 0x11223344);
	/* Straddling the end: the in-range part only; the rest reads 0. */
	memset(b, 0xaa, sizeof(b));
	virtio_dev_config_read(&dev, 6, b, 4);
	cr_assert_eq(echo.last_cfg_off, 6);
	cr_assert_eq(echo.last_cfg_len, 2);
	cr_assert_eq(b[0], 0x22);
	cr_assert_eq(b[1], 0x11);
	cr_assert_eq(b[2], 0);
	cr_assert_eq(b[3], 0);
	/* Wholly outside, including offsets that would wrap: zeros, no call. */
	echo.config_reads = 0;
	memset(b, 0xaa, sizeof(b));
	virtio_dev_config_read(&dev, 8, b, 4);
	virtio_dev_config_read(&dev, UINT32_MAX - 1, b + 4, 4);
	cr_assert_eq(echo.config_reads, 0);
	for (unsigned i = 0; i < 8; i++)
		cr_assert_eq(b[i], 0);
	v = 0x55667788;
	virtio_dev_config_write(&dev, 6, &v, 4);
	cr_assert_eq(echo.last_cfg_len, 2);
	cr_assert_eq(echo.cfg_value, 0x77883344);
	echo.config_writes = 0;
	virtio_dev_config_write(&dev, 8, &v, 4);
	virtio_dev_config_write(&dev, UINT32_MAX, &v, 4);
	cr_assert_eq(echo.config_writes, 0);
	cr_assert_eq(echo.cfg_value, 0x77883344);
	vqd_unlock(&dev);
}

Test(virtio_core, config_changed_bumps_generation_and_interrupts_when_live)
{
	uint32_t g = dev.config_generation;

	vmkit_virtio_config_changed(&dev);
	cr_assert_eq(dev.config_generation, g + 1);
	cr_assert_eq(t.config_irqs, 0, "no interrupt before DRIVER_OK");
	handshake();
	vmkit_virtio_config_changed(&dev);
	cr_assert_eq(dev.config_generation, g + 2);
	cr_assert_eq(t.config_irqs, 1);
	cr_assert(dev.isr & VIRTIO_ISR_CONFIG);
}

/* ---- kicks --------------------------------------------------------------------------------------- */

Test(virtio_core, kick_dispatch_rules)
{
	uint64_t reply;

	/* Before DRIVER_OK. */
	cr_assert(vqd_negotiate(&dev, VQD_FEATURES_ALL));
	cr_assert(vqd_setup_queue(&dev, 0, &q0));
	vqd_kick(&dev, 0);
	cr_assert_eq(echo.notifies, 0);
	cr_assert(vqd_status_live(vqd_driver_ok(&dev)));
	/* Live queue: yes. */
	vqd_kick(&dev, 0);
	cr_assert_eq(echo.notifies, 1);
	/* Queue 1 never enabled; queue 2 and 0xffff do not exist. */
	vqd_kick(&dev, 1);
	vqd_kick(&dev, 2);
	vqd_kick(&dev, 0xffff);
	cr_assert_eq(echo.notifies, 1);
	/* NEEDS_RESET: no. */
	vqd_lock(&dev);
	vmkit_virtio_set_needs_reset(&dev);
	vqd_unlock(&dev);
	cr_assert_eq(t.config_irqs, 1);
	send(&q0, "x", &reply);
	vqd_kick(&dev, 0);
	cr_assert_eq(echo.notifies, 1);
	cr_assert_eq(vqd_used_pending(&q0), 0);
}

Test(virtio_core, kick_on_a_broken_queue_does_nothing)
{
	handshake();
	vqd_lock(&dev);
	dev.vq[0].broken = true;
	vqd_unlock(&dev);
	vqd_kick(&dev, 0);
	cr_assert_eq(echo.notifies, 0);
}

Test(virtio_core, malformed_chain_sets_needs_reset_and_config_interrupt)
{
	uint64_t reply;
	uint16_t head;

	handshake();
	head = send(&q0, "ok", &reply);
	/* Followed by a chain that loops on itself. */
	vqd_set_desc(&q0, 9, 0x2000, 4, VIRTQ_DESC_F_NEXT, 9);
	vqd_publish(&q0, 9);
	vqd_kick(&dev, 0);
	expect_reply(&q0, head, reply, "OK");   /* the good one before it went through */
	cr_assert_lt(echo.last_pop, 0);
	cr_assert(vqd_status(&dev) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(t.config_irqs, 1);
	cr_assert(dev.isr & VIRTIO_ISR_CONFIG);
	cr_assert(dev.vq[0].broken);
	/* Further kicks are not dispatched; a direct pop finds nothing. */
	vqd_kick(&dev, 0);
	cr_assert_eq(echo.notifies, 1);
	{
		vmkit_virtq_elem *e = NULL;

		vqd_lock(&dev);
		cr_assert_eq(vmkit_virtq_pop(&dev, 0, &e), 0);
		vqd_unlock(&dev);
		cr_assert_null(e);
	}
	/* The interrupt was raised once, not per attempt. */
	cr_assert_eq(t.config_irqs, 1);
	/* Reset recovers the device. */
	vqd_queue_init(&q0, &m, 16);
	vqd_queue_init(&q1, &m, 8);
	handshake();
	head = send(&q0, "back", &reply);
	vqd_kick(&dev, 0);
	expect_reply(&q0, head, reply, "BACK");
}

Test(virtio_core, public_calls_refuse_bad_arguments)
{
	vmkit_virtq_elem *e = NULL;

	handshake();
	vqd_lock(&dev);
	cr_assert_eq(vmkit_virtq_pop(&dev, 2, &e), -EINVAL);
	cr_assert_eq(vmkit_virtq_pop(&dev, 0, NULL), -EINVAL);
	cr_assert_eq(vmkit_virtq_notify(&dev, 7), -EINVAL);
	cr_assert_eq(vmkit_virtq_push(&dev, NULL, 0), -EINVAL);
	vqd_unlock(&dev);
	vmkit_virtq_elem_free(NULL);
	vmkit_virtio_lock(NULL);
	vmkit_virtio_unlock(NULL);
}

Test(virtio_core, push_never_claims_more_than_the_buffers)
{
	vmkit_virtq_elem *e = NULL;
	uint64_t reply;
	uint32_t id, len;

	handshake();
	send(&q0, "abc", &reply);
	vqd_lock(&dev);
	cr_assert_eq(vmkit_virtq_pop(&dev, 0, &e), 1);
	cr_assert_eq(vmkit_virtq_push(&dev, e, 1000), 0);
	vqd_unlock(&dev);
	cr_assert(vqd_get_used(&q0, &id, &len));
	cr_assert_eq(len, 64);
}

/* ---- vmkit_virtq_unpop ------------------------------------------------------------------------------ */

Test(virtio_core, unpop_gives_chains_back_last_in_first_out)
{
	vmkit_virtq_elem *a, *b, *c, *again;
	uint64_t r1, r2, r3;
	uint16_t h1, h2, h3, event;

	handshake();
	h1 = send(&q0, "one", &r1);
	h2 = send(&q0, "two", &r2);
	h3 = send(&q0, "six", &r3);
	vqd_lock(&dev);
	cr_assert_eq(vmkit_virtq_pop(&dev, 0, &a), 1);
	cr_assert_eq(vmkit_virtq_pop(&dev, 0, &b), 1);
	cr_assert_eq(vmkit_virtq_pop(&dev, 0, &c), 1);
	cr_assert_eq(vmkit_virtq_pop(&dev, 0, &again), 0, "the ring is empty");
	event = vqd_avail_event(&q0);
	cr_assert_eq(a->head, h1);
	cr_assert_eq(c->head, h3);
	cr_assert_eq(vmkit_virtq_unpop(&dev, b), -EINVAL, "b is not the latest");
	cr_assert_eq(vmkit_virtq_unpop(&dev, a), -EINVAL, "a is not the latest");
	cr_assert_eq(vmkit_virtq_unpop(&dev, c), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_virtq_unpop(&dev, b), 0, "%s", vmkit_last_error());
	/* the driver is still asked to notify only for chains beyond these */
	cr_assert_eq(vqd_avail_event(&q0), event);
	cr_assert_eq(event, 3);
	/* the same chain comes back, untouched */
	cr_assert_eq(vmkit_virtq_pop(&dev, 0, &again), 1);
	cr_assert_eq(again->head, h2);
	cr_assert_eq(again->out_len, 3);
	cr_assert_eq(vmkit_virtq_unpop(&dev, again), 0);
	cr_assert_eq(vmkit_virtq_unpop(&dev, a), 0);
	cr_assert_eq(dev.vq[0].inflight, 0);
	cr_assert_eq(dev.vq[0].last_avail, 0);
	vqd_unlock(&dev);
	cr_assert_eq(vqd_used_pending(&q0), 0, "nothing was returned to the driver");
	/* the device serves all three, in order */
	vqd_kick(&dev, 0);
	expect_reply(&q0, h1, r1, "ONE");
	expect_reply(&q0, h2, r2, "TWO");
	expect_reply(&q0, h3, r3, "SIX");
}

Test(virtio_core, unpop_after_a_later_pop_or_push_is_refused)
{
	vmkit_virtq_elem *a, *b, fake;
	uint64_t r1, r2;

	handshake();
	send(&q0, "one", &r1);
	send(&q0, "two", &r2);
	vqd_lock(&dev);
	cr_assert_eq(vmkit_virtq_unpop(&dev, NULL), -EINVAL);
	memset(&fake, 0, sizeof(fake));
	cr_assert_eq(vmkit_virtq_unpop(&dev, &fake), -EINVAL, "nothing is in flight");
	cr_assert_eq(vmkit_virtq_pop(&dev, 0, &a), 1);
	cr_assert_eq(vmkit_virtq_pop(&dev, 0, &b), 1);
	cr_assert_eq(vmkit_virtq_push(&dev, b, 0), 0);
	/* b went to the driver: a is still not the latest taken */
	cr_assert_eq(vmkit_virtq_unpop(&dev, a), -EINVAL);
	fake = *a;
	fake.queue = 9;
	cr_assert_eq(vmkit_virtq_unpop(&dev, &fake), -EINVAL, "no such queue");
	fake.queue = 1;
	cr_assert_eq(vmkit_virtq_unpop(&dev, &fake), -EINVAL, "not taken from that queue");
	fake.queue = 0;
	fake.reserved = UINT32_MAX;
	cr_assert_eq(vmkit_virtq_unpop(&dev, &fake), -EINVAL);
	cr_assert_eq(dev.vq[0].inflight, 1, "refused calls changed nothing");
	cr_assert_eq(dev.vq[0].last_avail, 2);
	cr_assert_eq(vmkit_virtq_push(&dev, a, 0), 0, "a is still the caller's");
	vqd_unlock(&dev);
}

/* ---- save / restore -------------------------------------------------------------------------------- */

static void save(struct vmkit_virtio_dev *d, uint8_t **b, size_t *n)
{
	cr_assert_eq(virtio_dev_save(d, b, n), 0, "%s", vmkit_last_error());
	cr_assert_not_null(*b);
}

Test(virtio_core, save_restore_round_trip_continues_the_ring)
{
	struct vmkit_virtio_dev d2;
	struct vqd_transport t2;
	struct echo e2 = { 0 };
	uint64_t r1, r2, r3;
	uint16_t h1, h2, h3;
	uint8_t *blob, *blob2;
	size_t n, n2;

	handshake();
	h1 = send(&q0, "one", &r1);
	h2 = send(&q0, "two", &r2);
	vqd_kick(&dev, 0);
	expect_reply(&q0, h1, r1, "ONE");
	expect_reply(&q0, h2, r2, "TWO");
	echo.cfg_value = 77;
	vqd_lock(&dev);
	vmkit_virtio_config_changed(&dev);
	vqd_unlock(&dev);
	/* A third request is waiting when the snapshot is taken. */
	h3 = send(&q0, "three", &r3);
	save(&dev, &blob, &n);

	/* A new device of the same type over the same memory. */
	vqd_transport_init(&t2);
	cr_assert_eq(virtio_dev_init(&d2, &echo_ops, &e2, &m.gm, &t2.tr, &t2, "echo1"), 0);
	cr_assert_eq(virtio_dev_restore(&d2, blob, n), 0, "%s", vmkit_last_error());
	cr_assert_eq(d2.status, dev.status);
	cr_assert_eq(d2.driver_features, dev.driver_features);
	cr_assert_eq(d2.config_generation, dev.config_generation);
	cr_assert_eq(d2.isr, dev.isr);
	cr_assert(d2.activated);
	cr_assert_eq(e2.handled, 2);
	cr_assert_eq(e2.cfg_value, 77);
	cr_assert_eq(e2.features, echo.features);
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_eq(d2.vq[i].size, dev.vq[i].size);
		cr_assert_eq(d2.vq[i].last_avail, dev.vq[i].last_avail);
		cr_assert_eq(d2.vq[i].used_idx, dev.vq[i].used_idx);
		cr_assert_eq(d2.vq[i].desc, dev.vq[i].desc, "rings resolved against memory");
		cr_assert_eq(d2.vq[i].used, dev.vq[i].used);
	}
	/* Its own save is the same bytes. */
	save(&d2, &blob2, &n2);
	cr_assert_eq(n2, n);
	cr_assert_eq(memcmp(blob, blob2, n), 0);
	/* The restored device continues where the first left off (the
	 * driver asks for an interrupt at the next used entry). */
	vqd_set_used_event(&q0, 2);
	vqd_kick(&d2, 0);
	expect_reply(&q0, h3, r3, "THREE");
	cr_assert_eq(vqd_used_idx(&q0), 3);
	cr_assert_eq(e2.handled, 3);
	cr_assert_eq(t2.queue_irqs[0], 1);
	free(blob);
	free(blob2);
	virtio_dev_destroy(&d2);
	cr_assert_eq(e2.destroys, 1);
}

Test(virtio_core, save_restore_of_a_fresh_device)
{
	struct vmkit_virtio_dev d2;
	struct echo e2 = { 0 };
	uint8_t *blob;
	size_t n;

	save(&dev, &blob, &n);
	cr_assert_eq(virtio_dev_init(&d2, &echo_ops, &e2, &m.gm, &t.tr, &t, "echo1"), 0);
	cr_assert_eq(virtio_dev_restore(&d2, blob, n), 0, "%s", vmkit_last_error());
	cr_assert_eq(d2.status, 0);
	cr_assert_eq(d2.vq[0].size, 64);
	free(blob);
	virtio_dev_destroy(&d2);
}

/* Compare the device with a reference snapshot: unchanged means the same
 * save bytes and the same device-side state. */
static void assert_unchanged(const uint8_t *ref, size_t ref_len, uint32_t handled)
{
	uint8_t *now;
	size_t n;

	save(&dev, &now, &n);
	cr_assert_eq(n, ref_len);
	cr_assert_eq(memcmp(now, ref, n), 0, "device state changed by a refused restore");
	cr_assert_eq(echo.handled, handled);
	free(now);
}

static void refix_crc(uint8_t *b)
{
	uint32_t plen, crc;

	memcpy(&plen, b + 8, 4);
	crc = dev_crc32(b + 16, plen);
	memcpy(b + 12, &crc, 4);
}

/* Payload offsets in the saved blob (see core.c's format comment). */
#define OFF_STATUS (16 + 4 + 4 + 2 + 8 + 8)
#define OFF_DRV_FEATURES (16 + 4 + 4 + 2 + 8)
#define OFF_ACTIVATED (OFF_STATUS + 1 + 4 + 4 + 2 + 4 + 1 + 2)
#define OFF_Q0 (OFF_ACTIVATED + 1)
#define Q_SIZE 0
#define Q_FLAGS 2
#define Q_DESC 3
#define Q_USED 19
#define Q_LAST_AVAIL 29
#define Q_INFLIGHT 35
#define Q_BYTES 39

Test(virtio_core, corrupted_and_truncated_blobs_are_refused)
{
	struct vmkit_virtio_dev other;
	struct echo e3 = { 0 };
	uint8_t *good, *ref, *b;
	size_t n, ref_n;
	uint64_t reply;
	uint32_t handled;

	/* The state to restore: a live device that did some work. */
	handshake();
	send(&q0, "a", &reply);
	vqd_kick(&dev, 0);
	save(&dev, &good, &n);
	/* The device we try to overwrite has a different state. */
	send(&q0, "b", &reply);
	vqd_kick(&dev, 0);
	handled = echo.handled;
	save(&dev, &ref, &ref_n);
	cr_assert_eq(ref_n, n);
	cr_assert_neq(memcmp(ref, good, n), 0);
	b = malloc(n + 1);
	cr_assert_not_null(b);

	/* Truncated anywhere, or one byte too long. */
	for (size_t len = 0; len < n; len++)
		cr_assert_lt(virtio_dev_restore(&dev, good, len), 0, "truncated to %zu accepted", len);
	memcpy(b, good, n);
	b[n] = 0;
	cr_assert_lt(virtio_dev_restore(&dev, b, n + 1), 0);
	cr_assert_lt(virtio_dev_restore(&dev, NULL, n), 0);
	assert_unchanged(ref, ref_n, handled);

	/* Any flipped bit in the core or device part is caught by a CRC. */
	for (size_t i = 0; i < n; i++) {
		memcpy(b, good, n);
		b[i] ^= 0x10;
		cr_assert_lt(virtio_dev_restore(&dev, b, n), 0, "corruption at byte %zu accepted", i);
	}
	assert_unchanged(ref, ref_n, handled);

	/* Well-formed blobs (CRC fixed) with invalid contents. */
	{
		struct { size_t off; unsigned len; uint64_t v; const char *what; } cases[] = {
			{ OFF_STATUS, 1, 0x7f, "unknown status bit" },
			{ OFF_DRV_FEATURES, 8, VIRTIO_BIT(5) | VIRTIO_BIT(VIRTIO_F_VERSION_1), "unoffered feature" },
			{ OFF_DRV_FEATURES, 8, VIRTIO_BIT(VIRTIO_F_EVENT_IDX), "no VERSION_1" },
			{ OFF_ACTIVATED, 1, 2, "activated not a boolean" },
			{ OFF_Q0 + Q_SIZE, 2, 12, "queue size not a power of two" },
			{ OFF_Q0 + Q_SIZE, 2, 128, "queue size above queue_max" },
			{ OFF_Q0 + Q_FLAGS, 1, 0x80, "unknown queue flag" },
			{ OFF_Q0 + Q_DESC, 8, 0x4010000, "desc ring outside memory" },
			{ OFF_Q0 + Q_DESC, 8, 0x1008, "desc ring misaligned" },
			{ OFF_Q0 + Q_USED, 8, UINT64_MAX - 3, "used ring wraps" },
			{ OFF_Q0 + Q_LAST_AVAIL, 2, 77, "indices inconsistent" },
			{ OFF_Q0 + Q_INFLIGHT, 4, 100, "inflight above queue size" },
			{ OFF_Q0 + Q_BYTES + Q_LAST_AVAIL, 2, 1, "queue 1 indices inconsistent" },
		};

		for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
			memcpy(b, good, n);
			for (unsigned j = 0; j < cases[k].len; j++)
				b[cases[k].off + j] = (uint8_t)(cases[k].v >> (8 * j));
			refix_crc(b);
			cr_assert_lt(virtio_dev_restore(&dev, b, n), 0, "%s accepted", cases[k].what);
		}
		/* Sanity of the offsets: the untouched blob with a fixed CRC restores. */
		memcpy(b, good, n);
		refix_crc(b);
		cr_assert_eq(virtio_dev_restore(&dev, b, n), 0, "%s",
			     vmkit_last_error());
		cr_assert_eq(echo.handled, 1);
		/* Back to the reference state for the remaining checks. */
		cr_assert_eq(virtio_dev_restore(&dev, ref, ref_n), 0);
	}
	assert_unchanged(ref, ref_n, handled);

	/* The device refusing its own blob leaves the core unchanged too. */
	{
		size_t dev_off = n - ECHO_BLOB;

		memcpy(b, good, n);
		memcpy(b + dev_off + 4, &(uint32_t){ 2000000 }, 4);
		/* fix the device blob CRC stored at the end of the core payload */
		{
			uint32_t crc = dev_crc32(b + dev_off, ECHO_BLOB);

			memcpy(b + dev_off - 4, &crc, 4);
			refix_crc(b);
		}
		cr_assert_lt(virtio_dev_restore(&dev, b, n), 0);
		assert_unchanged(ref, ref_n, handled);
	}

	/* A blob of another device type is refused. */
	{
		vmkit_virtio_ops o = echo_ops;

		o.device_id = 0x7f;
		cr_assert_eq(virtio_dev_init(&other, &o, &e3, &m.gm, &t.tr, &t, "other"), 0);
		cr_assert_lt(virtio_dev_restore(&other, good, n), 0);
		cr_assert_eq(other.status, 0);
		virtio_dev_destroy(&other);
	}
	free(b);
	free(good);
	free(ref);
}
