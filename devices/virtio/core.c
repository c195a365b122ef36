/* SPDX-License-Identifier: MIT */
/* The virtio device core (VIRTIO 1.2, 2 and 3): what both transports
 * share. Feature negotiation, the status handshake, the queue registers,
 * the config space, interrupts through the transport, reset, NEEDS_RESET
 * and save/restore; and the public vmkit_virtq_* / vmkit_virtio_* calls a
 * device makes from its callbacks.
 *
 * Locking: dev->lock (recursive, so that a transport holding it for a
 * register access may call virtio_dev_kick) is held around every entry
 * from a transport; the public calls expect it held (they are made from
 * device callbacks or between vmkit_virtio_lock/unlock). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/legacy/legacy.h"
#include "devices/virtio/virtio.h"

#define DRIVER_STATUS_BITS \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK | \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED)
#define KNOWN_STATUS_BITS (DRIVER_STATUS_BITS | VIRTIO_STATUS_NEEDS_RESET)

#define MAX_CONFIG_SIZE 4096u
/* Largest device blob (ops->save) accepted in a snapshot. */
#define MAX_DEVICE_BLOB (1u << 20)
#define SAVE_FIRST_CAP 4096u
#define STATE_VERSION 1u
#define STATE_HDR 16u   /* dev_state header: magic, version, length, crc */

/* ---- helpers ----------------------------------------------------------------- */

static bool is_pow2(uint32_t v) { return v && !(v & (v - 1)); }

static void raise_interrupt(struct vmkit_virtio_dev *dev, bool config, uint16_t queue)
{
	dev->isr |= config ? VIRTIO_ISR_CONFIG : VIRTIO_ISR_QUEUE;
	if (dev->tr && dev->tr->interrupt)
		dev->tr->interrupt(dev->tr_ctx, dev, config, queue);
}

/* 2.1.2: set DEVICE_NEEDS_RESET; once DRIVER_OK is set the driver is told
 * through a configuration change notification. */
static void needs_reset(struct vmkit_virtio_dev *dev)
{
	if (dev->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	dev->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (dev->status & VIRTIO_STATUS_DRIVER_OK)
		raise_interrupt(dev, true, 0);
}

static void reset_state(struct vmkit_virtio_dev *dev)
{
	dev->status = 0;
	dev->driver_features = 0;
	dev->device_features_sel = 0;
	dev->driver_features_sel = 0;
	dev->queue_sel = 0;
	dev->isr = 0;
	dev->config_msix_vector = VIRTIO_MSI_NO_VECTOR;
	dev->activated = false;
	for (unsigned i = 0; i < VMKIT_VIRTIO_MAX_QUEUES; i++) {
		virtq_reset(&dev->vq[i]);
		if (i < dev->num_queues)
			dev->vq[i].size = dev->ops->queue_max;
	}
}

static bool features_ok(const struct vmkit_virtio_dev *dev, uint64_t f)
{
	return !(f & ~dev->device_features) && (f & VIRTIO_BIT(VIRTIO_F_VERSION_1));
}

static struct virtq *live_queue(struct vmkit_virtio_dev *dev, uint16_t queue)
{
	if (!dev || queue >= dev->num_queues)
		return NULL;
	return &dev->vq[queue];
}

static bool vq_started(const struct virtq *vq) { return vq->desc != NULL; }

/* ---- set-up ------------------------------------------------------------------ */

int virtio_dev_init(struct vmkit_virtio_dev *dev, const vmkit_virtio_ops *ops, void *opaque,
		    const struct vmkit_gmem *mem, const struct virtio_transport *tr, void *tr_ctx,
		    const char *name)
{
	pthread_mutexattr_t a;

	memset(dev, 0, sizeof(*dev));
	if (!ops)
		return vmkit__err(-EINVAL, "virtio device: no ops table");
	if (ops->size < sizeof(vmkit_virtio_ops))
		return vmkit__err(-EINVAL, "virtio device: ops table size %u, expected %zu",
				  ops->size, sizeof(vmkit_virtio_ops));
	if (ops->num_queues == 0 || ops->num_queues > VMKIT_VIRTIO_MAX_QUEUES)
		return vmkit__err(-EINVAL, "virtio device: %u queues (1..%d)", ops->num_queues,
				  VMKIT_VIRTIO_MAX_QUEUES);
	if (!is_pow2(ops->queue_max) || ops->queue_max > VMKIT_VIRTQ_MAX_SIZE)
		return vmkit__err(-EINVAL, "virtio device: queue_max %u is not a power of two <= %u",
				  ops->queue_max, VMKIT_VIRTQ_MAX_SIZE);
	if (ops->config_size > MAX_CONFIG_SIZE)
		return vmkit__err(-EINVAL, "virtio device: config_size %u > %u", ops->config_size,
				  MAX_CONFIG_SIZE);
	if (ops->features & ~VIRTIO_DEVICE_FEATURE_MASK)
		return vmkit__err(-EINVAL,
				  "virtio device: features 0x%llx include reserved bits (24-49)",
				  (unsigned long long)ops->features);
	if (!ops->queue_notify)
		return vmkit__err(-EINVAL, "virtio device: no queue_notify callback");
	if (!mem)
		return vmkit__err(-EINVAL, "virtio device: no guest memory");
	if (pthread_mutexattr_init(&a) != 0)
		return vmkit__err(-ENOMEM, "virtio device: mutex attributes");
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	if (pthread_mutex_init(&dev->lock, &a) != 0) {
		pthread_mutexattr_destroy(&a);
		return vmkit__err(-ENOMEM, "virtio device: mutex");
	}
	pthread_mutexattr_destroy(&a);
	dev->ops = ops;
	dev->opaque = opaque;
	dev->mem = mem;
	dev->tr = tr;
	dev->tr_ctx = tr_ctx;
	snprintf(dev->name, sizeof(dev->name), "%s", name ? name : "virtio");
	dev->device_features = ops->features | VIRTIO_TRANSPORT_FEATURES;
	dev->num_queues = ops->num_queues;
	reset_state(dev);
	return 0;
}

void virtio_dev_destroy(struct vmkit_virtio_dev *dev)
{
	if (!dev || !dev->ops)
		return;
	if (dev->ops->destroy && !dev->keep_opaque)
		dev->ops->destroy(dev->opaque);
	dev->ops = NULL;
	pthread_mutex_destroy(&dev->lock);
}

/* ---- registers ----------------------------------------------------------------- */

uint32_t virtio_dev_read_device_features(struct vmkit_virtio_dev *dev)
{
	if (dev->device_features_sel > 1)
		return 0;
	return (uint32_t)(dev->device_features >> (32 * dev->device_features_sel));
}

void virtio_dev_write_driver_features(struct vmkit_virtio_dev *dev, uint32_t v)
{
	unsigned sh;

	/* Features are fixed once FEATURES_OK was accepted (3.1.1). */
	if (dev->driver_features_sel > 1 ||
	    (dev->status & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK)))
		return;
	sh = 32 * dev->driver_features_sel;
	dev->driver_features = (dev->driver_features & ~(0xffffffffull << sh)) | ((uint64_t)v << sh);
}

uint32_t virtio_dev_read_driver_features(struct vmkit_virtio_dev *dev)
{
	if (dev->driver_features_sel > 1)
		return 0;
	return (uint32_t)(dev->driver_features >> (32 * dev->driver_features_sel));
}

/* DRIVER_OK was just set: start the enabled queues, then activate. */
static void driver_ok(struct vmkit_virtio_dev *dev)
{
	uint64_t f = dev->driver_features;
	int ret;

	if (dev->status & VIRTIO_STATUS_NEEDS_RESET) {
		/* Set before DRIVER_OK: the driver is told now (2.1.2). */
		raise_interrupt(dev, true, 0);
		return;
	}
	if (!(dev->status & VIRTIO_STATUS_FEATURES_OK)) {
		needs_reset(dev);
		return;
	}
	for (unsigned i = 0; i < dev->num_queues; i++) {
		struct virtq *vq = &dev->vq[i];

		if (!vq->ready)
			continue;
		vq->event_idx = (f & VIRTIO_BIT(VIRTIO_F_EVENT_IDX)) != 0;
		vq->indirect = (f & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC)) != 0;
		if (vq->size > dev->ops->queue_max) {
			vmkit__err(-EINVAL, "%s: queue %u size %u above the maximum %u", dev->name, i,
				   vq->size, dev->ops->queue_max);
			needs_reset(dev);
			return;
		}
		if (virtq_start(vq, dev->mem) < 0) {
			needs_reset(dev);
			return;
		}
	}
	ret = dev->ops->activate ? dev->ops->activate(dev->opaque, dev, f) : 0;
	if (ret < 0) {
		needs_reset(dev);
		return;
	}
	dev->activated = true;
}

void virtio_dev_write_status(struct vmkit_virtio_dev *dev, uint8_t status)
{
	uint8_t set;

	if (status == 0) {
		virtio_dev_reset(dev);
		return;
	}
	/* Only the driver's bits, only newly set ones: clearing is by reset. */
	set = (uint8_t)(status & ~dev->status & DRIVER_STATUS_BITS);
	if ((set & VIRTIO_STATUS_FEATURES_OK) &&
	    ((dev->status & VIRTIO_STATUS_DRIVER_OK) || !features_ok(dev, dev->driver_features)))
		set &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	dev->status |= set;
	if (set & VIRTIO_STATUS_DRIVER_OK)
		driver_ok(dev);
}

void virtio_dev_reset(struct vmkit_virtio_dev *dev)
{
	if (dev->ops->reset)
		dev->ops->reset(dev->opaque, dev);
	reset_state(dev);
}

struct virtq *virtio_dev_selected_queue(struct vmkit_virtio_dev *dev)
{
	return live_queue(dev, dev->queue_sel);
}

struct virtq *virtio_dev_queue_for_write(struct vmkit_virtio_dev *dev)
{
	struct virtq *vq = live_queue(dev, dev->queue_sel);

	if (!vq || vq->ready || (dev->status & VIRTIO_STATUS_DRIVER_OK))
		return NULL;
	return vq;
}

uint16_t virtio_dev_queue_max(const struct vmkit_virtio_dev *dev)
{
	return dev->queue_sel < dev->num_queues ? dev->ops->queue_max : 0;
}

void virtio_dev_config_read(struct vmkit_virtio_dev *dev, uint32_t off, void *data, uint32_t len)
{
	uint32_t size = dev->ops->config_size, n;

	memset(data, 0, len);
	if (off >= size || !dev->ops->config_read)
		return;
	n = len < size - off ? len : size - off;
	if (n)
		dev->ops->config_read(dev->opaque, off, data, n);
}

void virtio_dev_config_write(struct vmkit_virtio_dev *dev, uint32_t off, const void *data,
			     uint32_t len)
{
	uint32_t size = dev->ops->config_size, n;

	if (off >= size || !dev->ops->config_write)
		return;
	n = len < size - off ? len : size - off;
	if (n)
		dev->ops->config_write(dev->opaque, off, data, n);
}

void virtio_dev_kick(struct vmkit_virtio_dev *dev, uint16_t queue)
{
	struct virtq *vq;

	pthread_mutex_lock(&dev->lock);
	vq = live_queue(dev, queue);
	if (vq && (dev->status & VIRTIO_STATUS_DRIVER_OK) &&
	    !(dev->status & VIRTIO_STATUS_NEEDS_RESET) && dev->activated && vq_started(vq) &&
	    !vq->broken)
		dev->ops->queue_notify(dev->opaque, dev, queue);
	pthread_mutex_unlock(&dev->lock);
}

/* ---- public calls for devices ----------------------------------------------------- */

VMKIT_EXPORT int vmkit_virtq_pop(vmkit_virtio_dev *dev, uint16_t queue, vmkit_virtq_elem **elem)
{
	struct virtq *vq;
	int ret;

	if (!elem)
		return vmkit__err(-EINVAL, "vmkit_virtq_pop: no element pointer");
	*elem = NULL;
	vq = live_queue(dev, queue);
	if (!vq)
		return vmkit__err(-EINVAL, "vmkit_virtq_pop: no queue %u", queue);
	if (!(dev->status & VIRTIO_STATUS_DRIVER_OK) || (dev->status & VIRTIO_STATUS_NEEDS_RESET))
		return 0;
	ret = virtq_pop(vq, dev->mem, queue, elem);
	if (ret < 0 && vq->broken)
		needs_reset(dev);
	return ret;
}

VMKIT_EXPORT int vmkit_virtq_push(vmkit_virtio_dev *dev, vmkit_virtq_elem *elem, uint32_t written)
{
	struct virtq *vq;
	int ret;

	if (!elem)
		return vmkit__err(-EINVAL, "vmkit_virtq_push: no element");
	vq = live_queue(dev, elem->queue);
	if (!vq) {
		ret = vmkit__err(-EINVAL, "vmkit_virtq_push: no queue %u", elem->queue);
	} else {
		/* Never claim more than the driver's buffers hold (2.7.8). */
		if (written > elem->in_len)
			written = (uint32_t)elem->in_len;
		ret = virtq_push(vq, elem->head, written);
	}
	virtq_elem_free(elem);
	return ret;
}

VMKIT_EXPORT int vmkit_virtq_unpop(vmkit_virtio_dev *dev, vmkit_virtq_elem *elem)
{
	struct virtq *vq;
	int ret;

	if (!elem)
		return vmkit__err(-EINVAL, "vmkit_virtq_unpop: no element");
	vq = live_queue(dev, elem->queue);
	if (!vq)
		return vmkit__err(-EINVAL, "vmkit_virtq_unpop: no queue %u", elem->queue);
	ret = virtq_unpop(vq, elem);
	if (ret < 0)
		return vmkit__err(ret, "%s: vmkit_virtq_unpop: %s", dev->name, vmkit_last_error());
	virtq_elem_free(elem);
	return 0;
}

VMKIT_EXPORT void vmkit_virtq_elem_free(vmkit_virtq_elem *elem)
{
	virtq_elem_free(elem);
}

VMKIT_EXPORT int vmkit_virtq_notify(vmkit_virtio_dev *dev, uint16_t queue)
{
	struct virtq *vq = live_queue(dev, queue);

	if (!vq)
		return vmkit__err(-EINVAL, "vmkit_virtq_notify: no queue %u", queue);
	if (!(dev->status & VIRTIO_STATUS_DRIVER_OK) || !vq_started(vq))
		return 0;
	if (virtq_should_notify(vq))
		raise_interrupt(dev, false, queue);
	return 0;
}

VMKIT_EXPORT void vmkit_virtio_config_changed(vmkit_virtio_dev *dev)
{
	if (!dev)
		return;
	dev->config_generation++;
	if (dev->status & VIRTIO_STATUS_DRIVER_OK)
		raise_interrupt(dev, true, 0);
}

VMKIT_EXPORT void vmkit_virtio_set_needs_reset(vmkit_virtio_dev *dev)
{
	if (dev)
		needs_reset(dev);
}

VMKIT_EXPORT void vmkit_virtio_lock(vmkit_virtio_dev *dev)
{
	if (dev)
		pthread_mutex_lock(&dev->lock);
}

VMKIT_EXPORT void vmkit_virtio_unlock(vmkit_virtio_dev *dev)
{
	if (dev)
		pthread_mutex_unlock(&dev->lock);
}

VMKIT_EXPORT vmkit_machine *vmkit_virtio_machine(vmkit_virtio_dev *dev)
{
	return dev ? dev->machine : NULL;
}

/* ---- save / restore ------------------------------------------------------------------
 *
 * A dev_state blob (tag "VIRT", version 1) holding the core state, then
 * the device's own blob (ops->save), whose length and CRC-32 the core
 * blob records:
 *   u32 device_id, u16 num_queues, u64 device_features, u64 driver_features,
 *   u8 status, u32 device_features_sel, u32 driver_features_sel,
 *   u16 queue_sel, u32 config_generation, u8 isr, u16 config_msix_vector,
 *   u8 activated,
 *   per queue: u16 size, u8 flags (QF_*), u64 desc, u64 avail, u64 used,
 *     u16 msix_vector, u16 last_avail, u16 used_idx, u16 signalled_used,
 *     u32 inflight,
 *   u32 device blob length, u32 device blob crc32. */
#define QF_READY 1u
#define QF_STARTED 2u
#define QF_EVENT_IDX 4u
#define QF_INDIRECT 8u
#define QF_SIGNALLED 16u
#define QF_BROKEN 32u
#define QF_ALL 63u

static int save_device_blob(struct vmkit_virtio_dev *dev, uint8_t **out, size_t *len)
{
	size_t cap = SAVE_FIRST_CAP;
	uint8_t *buf = NULL;
	long r;

	*out = NULL;
	*len = 0;
	if (!dev->ops->save)
		return 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		uint8_t *nb = realloc(buf, cap);

		if (!nb) {
			free(buf);
			return vmkit__err(-ENOMEM, "%s: out of memory saving state", dev->name);
		}
		buf = nb;
		r = dev->ops->save(dev->opaque, buf, cap);
		if (r < 0) {
			free(buf);
			return vmkit__err((int)(r < -4095 ? -EIO : r), "%s: device save failed",
					  dev->name);
		}
		if ((size_t)r <= cap) {
			*out = buf;
			*len = (size_t)r;
			return 0;
		}
		if ((unsigned long)r > MAX_DEVICE_BLOB)
			break;
		cap = (size_t)r;
	}
	free(buf);
	return vmkit__err(-EOVERFLOW, "%s: device state too large (limit %u bytes)", dev->name,
			  MAX_DEVICE_BLOB);
}

int virtio_dev_save(struct vmkit_virtio_dev *dev, uint8_t **out, size_t *len)
{
	struct dev_state_writer *w;
	struct dev_state core = { 0 };
	uint8_t *blob = NULL, *res;
	size_t blob_len = 0;
	int ret;

	*out = NULL;
	*len = 0;
	w = malloc(sizeof(*w));
	if (!w)
		return vmkit__err(-ENOMEM, "%s: out of memory saving state", dev->name);
	pthread_mutex_lock(&dev->lock);
	ret = save_device_blob(dev, &blob, &blob_len);
	if (ret < 0)
		goto out;
	dev_state_begin(w, "VIRT");
	dev_state_put_u32(w, dev->ops->device_id);
	dev_state_put_u16(w, dev->num_queues);
	dev_state_put_u64(w, dev->device_features);
	dev_state_put_u64(w, dev->driver_features);
	dev_state_put_u8(w, dev->status);
	dev_state_put_u32(w, dev->device_features_sel);
	dev_state_put_u32(w, dev->driver_features_sel);
	dev_state_put_u16(w, dev->queue_sel);
	dev_state_put_u32(w, dev->config_generation);
	dev_state_put_u8(w, dev->isr);
	dev_state_put_u16(w, dev->config_msix_vector);
	dev_state_put_u8(w, dev->activated);
	for (unsigned i = 0; i < dev->num_queues; i++) {
		const struct virtq *vq = &dev->vq[i];
		uint8_t fl = (uint8_t)((vq->ready ? QF_READY : 0) | (vq_started(vq) ? QF_STARTED : 0) |
				       (vq->event_idx ? QF_EVENT_IDX : 0) |
				       (vq->indirect ? QF_INDIRECT : 0) |
				       (vq->signalled_valid ? QF_SIGNALLED : 0) |
				       (vq->broken ? QF_BROKEN : 0));

		dev_state_put_u16(w, vq->size);
		dev_state_put_u8(w, fl);
		dev_state_put_u64(w, vq->desc_gpa);
		dev_state_put_u64(w, vq->avail_gpa);
		dev_state_put_u64(w, vq->used_gpa);
		dev_state_put_u16(w, vq->msix_vector);
		dev_state_put_u16(w, vq->last_avail);
		dev_state_put_u16(w, vq->used_idx);
		dev_state_put_u16(w, vq->signalled_used);
		dev_state_put_u32(w, vq->inflight);
	}
	dev_state_put_u32(w, (uint32_t)blob_len);
	dev_state_put_u32(w, dev_crc32(blob, blob_len));
	ret = dev_state_finish(w, STATE_VERSION, &core);
	if (ret < 0)
		goto out;
	res = malloc(core.len + blob_len);
	if (!res) {
		ret = vmkit__err(-ENOMEM, "%s: out of memory saving state", dev->name);
		goto out;
	}
	memcpy(res, core.data, core.len);
	if (blob_len)
		memcpy(res + core.len, blob, blob_len);
	*out = res;
	*len = core.len + blob_len;
out:
	pthread_mutex_unlock(&dev->lock);
	dev_state_free(&core);
	free(blob);
	free(w);
	return ret;
}

static uint32_t le32_at(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The parsed core state, committed only when everything checked out. */
struct core_state {
	uint64_t driver_features;
	uint8_t status, isr, activated;
	uint32_t device_features_sel, driver_features_sel, config_generation;
	uint16_t queue_sel, config_msix_vector;
	struct virtq vq[VMKIT_VIRTIO_MAX_QUEUES];
};

static int bad(struct vmkit_virtio_dev *dev, const char *what)
{
	return vmkit__err(-EINVAL, "%s state: %s", dev->name, what);
}

static int check_queue(struct vmkit_virtio_dev *dev, const struct core_state *s, unsigned i,
		       struct virtq *vq, uint8_t fl)
{
	bool live = (s->status & VIRTIO_STATUS_DRIVER_OK) != 0;
	uint64_t f = s->driver_features;

	if (fl & ~QF_ALL)
		return bad(dev, "unknown queue flags");
	vq->ready = fl & QF_READY;
	vq->event_idx = fl & QF_EVENT_IDX;
	vq->indirect = fl & QF_INDIRECT;
	vq->signalled_valid = fl & QF_SIGNALLED;
	vq->broken = fl & QF_BROKEN;
	if (!(fl & QF_STARTED)) {
		/* Never started since the last reset: nothing moved. */
		if (vq->last_avail || vq->used_idx || vq->inflight || vq->signalled_used ||
		    (fl & (QF_SIGNALLED | QF_BROKEN | QF_EVENT_IDX | QF_INDIRECT)))
			return bad(dev, "indices on a queue that never started");
		return 0;
	}
	if (!live || !vq->ready)
		return bad(dev, "started queue without DRIVER_OK or not enabled");
	if (vq->event_idx != ((f & VIRTIO_BIT(VIRTIO_F_EVENT_IDX)) != 0) ||
	    vq->indirect != ((f & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC)) != 0))
		return bad(dev, "queue features differ from the negotiated ones");
	if (!is_pow2(vq->size) || vq->size > dev->ops->queue_max)
		return bad(dev, "queue size not a power of two within the device's maximum");
	if (vq->inflight > vq->size || vq->inflight != (uint16_t)(vq->last_avail - vq->used_idx))
		return bad(dev, "queue indices inconsistent");
	if (virtq_start(vq, dev->mem) < 0)
		return vmkit__err(-EINVAL, "%s state: queue %u rings: %s", dev->name, i,
				  vmkit_last_error());
	return 0;
}

int virtio_dev_restore(struct vmkit_virtio_dev *dev, const uint8_t *data, size_t len)
{
	struct dev_state_reader r;
	struct core_state *s;
	const uint8_t *blob;
	uint32_t plen, blob_len, blob_crc;
	size_t core_len;
	int ret;

	if (!data || len < STATE_HDR)
		return bad(dev, "truncated");
	plen = le32_at(data + 8);
	if (plen > len - STATE_HDR)
		return bad(dev, "truncated");
	core_len = STATE_HDR + plen;
	ret = dev_state_open(&r, data, core_len, "VIRT", STATE_VERSION);
	if (ret < 0)
		return ret;
	s = calloc(1, sizeof(*s));
	if (!s)
		return vmkit__err(-ENOMEM, "%s: out of memory restoring state", dev->name);
	pthread_mutex_lock(&dev->lock);
	ret = -EINVAL;
	if (dev_state_get_u32(&r) != dev->ops->device_id ||
	    dev_state_get_u16(&r) != dev->num_queues ||
	    dev_state_get_u64(&r) != dev->device_features) {
		ret = bad(dev, "saved from a different device");
		goto out;
	}
	s->driver_features = dev_state_get_u64(&r);
	s->status = dev_state_get_u8(&r);
	s->device_features_sel = dev_state_get_u32(&r);
	s->driver_features_sel = dev_state_get_u32(&r);
	s->queue_sel = dev_state_get_u16(&r);
	s->config_generation = dev_state_get_u32(&r);
	s->isr = dev_state_get_u8(&r);
	s->config_msix_vector = dev_state_get_u16(&r);
	s->activated = dev_state_get_u8(&r);
	if (s->status & ~KNOWN_STATUS_BITS) {
		ret = bad(dev, "unknown status bits");
		goto out;
	}
	if ((s->status & VIRTIO_STATUS_FEATURES_OK) && !features_ok(dev, s->driver_features)) {
		ret = bad(dev, "negotiated features not offered or without VERSION_1");
		goto out;
	}
	if (s->driver_features & ~dev->device_features) {
		ret = bad(dev, "driver features not offered");
		goto out;
	}
	if ((s->status & VIRTIO_STATUS_DRIVER_OK) && !(s->status & VIRTIO_STATUS_FEATURES_OK) &&
	    !(s->status & VIRTIO_STATUS_NEEDS_RESET)) {
		ret = bad(dev, "DRIVER_OK without FEATURES_OK");
		goto out;
	}
	if (s->activated > 1 || (s->activated && !(s->status & VIRTIO_STATUS_DRIVER_OK)) ||
	    (s->activated && !(s->status & VIRTIO_STATUS_FEATURES_OK))) {
		ret = bad(dev, "activated without DRIVER_OK");
		goto out;
	}
	if (s->isr & ~(VIRTIO_ISR_QUEUE | VIRTIO_ISR_CONFIG)) {
		ret = bad(dev, "unknown ISR bits");
		goto out;
	}
	for (unsigned i = 0; i < VMKIT_VIRTIO_MAX_QUEUES; i++)
		virtq_reset(&s->vq[i]);
	for (unsigned i = 0; i < dev->num_queues; i++) {
		struct virtq *vq = &s->vq[i];
		uint8_t fl;

		vq->size = dev_state_get_u16(&r);
		fl = dev_state_get_u8(&r);
		vq->desc_gpa = dev_state_get_u64(&r);
		vq->avail_gpa = dev_state_get_u64(&r);
		vq->used_gpa = dev_state_get_u64(&r);
		vq->msix_vector = dev_state_get_u16(&r);
		vq->last_avail = dev_state_get_u16(&r);
		vq->used_idx = dev_state_get_u16(&r);
		vq->signalled_used = dev_state_get_u16(&r);
		vq->inflight = dev_state_get_u32(&r);
		if (r.bad) {
			ret = bad(dev, "truncated");
			goto out;
		}
		ret = check_queue(dev, s, i, vq, fl);
		if (ret < 0)
			goto out;
	}
	blob_len = dev_state_get_u32(&r);
	blob_crc = dev_state_get_u32(&r);
	ret = dev_state_close(&r);
	if (ret < 0)
		goto out;
	if (blob_len > MAX_DEVICE_BLOB || blob_len != len - core_len) {
		ret = bad(dev, "device blob length does not match");
		goto out;
	}
	blob = data + core_len;
	if (dev_crc32(blob, blob_len) != blob_crc) {
		ret = bad(dev, "device blob checksum mismatch");
		goto out;
	}
	if (!dev->ops->restore && blob_len) {
		ret = bad(dev, "device blob for a device without restore");
		goto out;
	}
	if (dev->ops->restore) {
		ret = dev->ops->restore(dev->opaque, blob, blob_len);
		if (ret < 0) {
			ret = vmkit__err(ret, "%s state: device refused its blob: %s", dev->name,
					 vmkit_last_error());
			goto out;
		}
	}

	dev->driver_features = s->driver_features;
	dev->status = s->status;
	dev->device_features_sel = s->device_features_sel;
	dev->driver_features_sel = s->driver_features_sel;
	dev->queue_sel = s->queue_sel;
	dev->config_generation = s->config_generation;
	dev->isr = s->isr;
	dev->config_msix_vector = s->config_msix_vector;
	dev->activated = s->activated != 0;
	memcpy(dev->vq, s->vq, sizeof(dev->vq));
	ret = 0;
out:
	pthread_mutex_unlock(&dev->lock);
	free(s);
	return ret;
}

int vmkit_virtq_kick_later(vmkit_virtio_dev *dev, uint16_t queue)
{
	if (!dev || !dev->ops || queue >= dev->num_queues)
		return vmkit__err(-EINVAL, "vmkit_virtq_kick_later: bad device or queue");
	if (!dev->tr || !dev->tr->kick_later)
		return vmkit__err(-ENOTSUP, "%s: the transport cannot defer a queue", dev->name);
	return dev->tr->kick_later(dev->tr_ctx, dev, queue);
}
