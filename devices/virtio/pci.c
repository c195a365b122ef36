/* SPDX-License-Identifier: MIT */
/* The virtio-pci transport, modern only (VIRTIO 1.2, 4.1): a PCI function
 * (lib/pci) over the device core (core.c).
 *
 * Everything is in BAR 0, a 32-bit memory BAR that SeaBIOS and Linux both
 * place below 4 GiB, one 4 KiB page per structure:
 *   0x0000 common configuration   0x1000 ISR status
 *   0x2000 device configuration   0x3000 notifications (4 bytes per queue)
 *   0x4000 MSI-X table            0x5000 MSI-X PBA
 * with a virtio capability for each (and VIRTIO_PCI_CAP_PCI_CFG, the
 * config-space window into the BAR that the spec requires). MSI-X has
 * num_queues + 1 vectors; without MSI-X the device uses INTA and the ISR.
 *
 * Common configuration fields are accessed at their own width (a 64-bit
 * field also as two 32-bit halves); other writes there are ignored and
 * counted, reads of any width see the fields' bytes. Every register access
 * takes the device lock.
 *
 * Notifications: one eventfd per queue on the loop, assigned to KVM as an
 * ioeventfd on the queue's 2-byte notify address while BAR 0 decodes (the
 * host moves it with the BAR); a write KVM did not catch (another width,
 * or no ioeventfd) is dispatched on the vCPU thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/virtio/virtio.h"
#include "devices/virtio/pci_test.h"
#include "loop/loop.h"
#include "pci/pci.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040  /* + virtio device id, up to 0x107f */
#define VIRTIO_PCI_REVISION 1          /* modern (non-transitional) */

/* BAR 0 layout. */
#define BAR_SIZE 0x8000u
#define COMMON_OFF 0x0000u
#define ISR_OFF 0x1000u
#define DEVICE_OFF 0x2000u
#define NOTIFY_OFF 0x3000u
#define MSIX_TABLE_OFF 0x4000u
#define MSIX_PBA_OFF 0x5000u
#define REGION_SIZE 0x1000u
#define NOTIFY_MULT 4u

/* Capability cfg_type (4.1.4). */
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR 3
#define CAP_DEVICE 4
#define CAP_PCI_CFG 5
#define CAP_LEN 16          /* struct virtio_pci_cap */
#define CAP_NOTIFY_LEN 20   /* + notify_off_multiplier */
#define CAP_PCI_CFG_LEN 20  /* + pci_cfg_data[4] */

/* struct virtio_pci_common_cfg (4.1.4.3). */
enum {
	CC_DFSELECT = 0x00, CC_DF = 0x04, CC_GFSELECT = 0x08, CC_GF = 0x0c, CC_MSIX = 0x10,
	CC_NUMQ = 0x12, CC_STATUS = 0x14, CC_CFGGEN = 0x15, CC_Q_SELECT = 0x16,
	CC_Q_SIZE = 0x18, CC_Q_MSIX = 0x1a, CC_Q_ENABLE = 0x1c, CC_Q_NOFF = 0x1e,
	CC_Q_DESCLO = 0x20, CC_Q_DESCHI = 0x24, CC_Q_AVAILLO = 0x28, CC_Q_AVAILHI = 0x2c,
	CC_Q_USEDLO = 0x30, CC_Q_USEDHI = 0x34, CC_SIZE = 0x38,
};

struct pci_notify {
	struct virtio_pci *t;
	uint16_t queue;
	int fd;                 /* eventfd, or -1 */
	bool on_loop;
	uint64_t assigned;      /* ioeventfd address, or PCI_ADDR_NONE */
};

struct virtio_pci {
	struct vmkit_virtio_dev dev;
	struct pci_device pci;
	vmkit_vm *vm;
	struct vmkit_loop *loop;
	bool dev_init;          /* the core is set up */
	_Atomic bool live;      /* accesses are served */
	bool warned_notify;
	atomic_flag warned_width;
	_Atomic unsigned bad_accesses;
	uint8_t cfg_cap;        /* the VIRTIO_PCI_CAP_PCI_CFG capability */
	uint16_t nvec;
	struct vmkit_gmem nomem;
	struct pci_notify notify[VMKIT_VIRTIO_MAX_QUEUES];
	uint16_t n_notify;
};

static const struct vmkit_logger *vp_log(const struct virtio_pci *t)
{
	return t->vm ? &t->vm->log : NULL;
}

static uint32_t class_of(uint32_t device_id)
{
	switch (device_id) {
	case VMKIT_VIRTIO_ID_NET:
		return 0x020000;    /* Ethernet controller */
	case VMKIT_VIRTIO_ID_BLOCK:
		return 0x010000;    /* SCSI storage controller, as QEMU */
	case VMKIT_VIRTIO_ID_CONSOLE:
		return 0x078000;    /* other communication controller */
	default:
		return 0x00ff00;    /* unclassified (rng, balloon, the rest) */
	}
}

/* ---- interrupts --------------------------------------------------------------- */

/* The core's interrupt, with the ISR bit already set. dev.lock held. */
static void vp_interrupt(void *ctx, struct vmkit_virtio_dev *dev, bool config, uint16_t queue)
{
	struct virtio_pci *t = ctx;
	uint16_t v;

	if (pci_msix_enabled(&t->pci)) {
		/* With MSI-X the ISR's queue bit is not used (4.1.4.5.1). */
		if (!config)
			dev->isr &= (uint8_t)~VIRTIO_ISR_QUEUE;
		if (config)
			v = dev->config_msix_vector;
		else
			v = queue < dev->num_queues ? dev->vq[queue].msix_vector : VIRTIO_MSI_NO_VECTOR;
		if (v == VIRTIO_MSI_NO_VECTOR || pci_msix_notify(&t->pci, v) != -EINVAL)
			return;
		/* MSI-X was switched off meanwhile: INTx, as for a driver
		 * without it. */
		dev->isr |= config ? VIRTIO_ISR_CONFIG : VIRTIO_ISR_QUEUE;
	}
	pci_intx_set(&t->pci, dev->isr != 0);
}

/* Signal the queue's notify eventfd: the loop dispatches the queue again
 * after the other ready fds. */
static int vp_kick_later(void *ctx, struct vmkit_virtio_dev *dev, uint16_t queue)
{
	struct virtio_pci *t = ctx;
	uint64_t one = 1;

	(void)dev;
	if (queue >= t->n_notify || !t->notify[queue].on_loop)
		return -ENOTSUP;
	return write(t->notify[queue].fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

static const struct virtio_transport pci_transport = { .interrupt = vp_interrupt , .kick_later = vp_kick_later };

/* A vector the driver maps an event to: one the table has, or NO_VECTOR,
 * which is also what reads back when the mapping failed (4.1.5.1.2.1). */
static uint16_t checked_vector(const struct virtio_pci *t, uint16_t v)
{
	return v < t->nvec ? v : VIRTIO_MSI_NO_VECTOR;
}

/* ---- common configuration (dev.lock held) ----------------------------------------- */

/* The structure as the driver would see it now. Reading has no side
 * effects, so any width and alignment can be served from it. */
static void common_image(struct virtio_pci *t, uint8_t img[CC_SIZE])
{
	struct vmkit_virtio_dev *dev = &t->dev;
	struct virtq *q = virtio_dev_selected_queue(dev);

	memset(img, 0, CC_SIZE);
	vmkit__put_le32(img + CC_DFSELECT, dev->device_features_sel);
	vmkit__put_le32(img + CC_DF, virtio_dev_read_device_features(dev));
	vmkit__put_le32(img + CC_GFSELECT, dev->driver_features_sel);
	vmkit__put_le32(img + CC_GF, virtio_dev_read_driver_features(dev));
	vmkit__put_le16(img + CC_MSIX, dev->config_msix_vector);
	vmkit__put_le16(img + CC_NUMQ, dev->num_queues);
	img[CC_STATUS] = dev->status;
	img[CC_CFGGEN] = (uint8_t)dev->config_generation;
	vmkit__put_le16(img + CC_Q_SELECT, dev->queue_sel);
	/* A queue that does not exist reads size 0 (4.1.4.3.2). */
	vmkit__put_le16(img + CC_Q_MSIX, q ? q->msix_vector : VIRTIO_MSI_NO_VECTOR);
	if (q) {
		vmkit__put_le16(img + CC_Q_SIZE, q->size);
		vmkit__put_le16(img + CC_Q_ENABLE, q->ready);
		vmkit__put_le16(img + CC_Q_NOFF, dev->queue_sel);
		vmkit__put_le64(img + CC_Q_DESCLO, q->desc_gpa);
		vmkit__put_le64(img + CC_Q_AVAILLO, q->avail_gpa);
		vmkit__put_le64(img + CC_Q_USEDLO, q->used_gpa);
	}
}

static void set_half(uint64_t *r, bool high, uint32_t v)
{
	if (high)
		*r = (*r & 0xffffffffull) | (uint64_t)v << 32;
	else
		*r = (*r & ~0xffffffffull) | v;
}

static uint64_t *queue_addr(struct virtq *q, uint32_t off)
{
	return off < CC_Q_AVAILLO ? &q->desc_gpa : off < CC_Q_USEDLO ? &q->avail_gpa : &q->used_gpa;
}

/* Width of the field at @off, 0 if no field starts there. */
static uint32_t field_width(uint32_t off)
{
	switch (off) {
	case CC_DFSELECT: case CC_DF: case CC_GFSELECT: case CC_GF:
		return 4;
	case CC_MSIX: case CC_NUMQ: case CC_Q_SELECT: case CC_Q_SIZE: case CC_Q_MSIX:
	case CC_Q_ENABLE: case CC_Q_NOFF:
		return 2;
	case CC_STATUS: case CC_CFGGEN:
		return 1;
	case CC_Q_DESCLO: case CC_Q_AVAILLO: case CC_Q_USEDLO:
		return 8;
	default:
		return 0;
	}
}

static void bad_access(struct virtio_pci *t, const char *what, uint64_t off, uint32_t len)
{
	t->bad_accesses++;
	if (!atomic_flag_test_and_set(&t->warned_width))
		vmkit__log(vp_log(t), VMKIT_LOG_WARN,
			   "%s: ignored %u-byte %s at common configuration offset 0x%llx "
			   "(logged once)", t->dev.name, len, what, (unsigned long long)off);
}

static void common_write(struct virtio_pci *t, uint32_t off, const uint8_t *p, uint32_t len)
{
	struct vmkit_virtio_dev *dev = &t->dev;
	uint32_t w = field_width(off);
	uint64_t v = 0;
	struct virtq *q;
	bool ok;

	/* Whole fields; a 64-bit one also as two 32-bit halves. */
	if (w)
		ok = len == w || (w == 8 && len == 4);
	else
		ok = (off & 4) && field_width(off & ~4u) == 8 && len == 4;
	if (!ok) {
		bad_access(t, "write", off, len);
		return;
	}
	for (uint32_t i = 0; i < len; i++)
		v |= (uint64_t)p[i] << (8 * i);
	switch (off) {
	case CC_DFSELECT:
		dev->device_features_sel = (uint32_t)v;
		break;
	case CC_GFSELECT:
		dev->driver_features_sel = (uint32_t)v;
		break;
	case CC_GF:
		virtio_dev_write_driver_features(dev, (uint32_t)v);
		break;
	case CC_MSIX:
		dev->config_msix_vector = checked_vector(t, (uint16_t)v);
		break;
	case CC_STATUS:
		virtio_dev_write_status(dev, (uint8_t)v);
		if (dev->status == 0)
			pci_intx_set(&t->pci, false); /* the reset cleared the ISR */
		break;
	case CC_Q_SELECT:
		dev->queue_sel = (uint16_t)v;
		break;
	case CC_Q_SIZE:
		q = virtio_dev_queue_for_write(dev);
		/* The driver may pick a smaller power of two. */
		if (q && v && !(v & (v - 1)) && v <= virtio_dev_queue_max(dev))
			q->size = (uint16_t)v;
		break;
	case CC_Q_MSIX:
		q = virtio_dev_selected_queue(dev);
		if (q)
			q->msix_vector = checked_vector(t, (uint16_t)v);
		break;
	case CC_Q_ENABLE:
		/* Only 1 means anything: "the driver MUST NOT write a 0". */
		q = virtio_dev_queue_for_write(dev);
		if (q && v == 1)
			q->ready = true;
		break;
	case CC_Q_DESCLO: case CC_Q_DESCHI: case CC_Q_AVAILLO: case CC_Q_AVAILHI:
	case CC_Q_USEDLO: case CC_Q_USEDHI:
		q = virtio_dev_queue_for_write(dev);
		if (!q)
			break;
		if (len == 8)
			*queue_addr(q, off) = v;
		else
			set_half(queue_addr(q, off), off & 4, (uint32_t)v);
		break;
	default:
		/* device_feature, num_queues, config_generation,
		 * queue_notify_off: read-only. */
		break;
	}
}

/* ---- BAR 0 ---------------------------------------------------------------------- */

static void bar_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct virtio_pci *t = opaque;
	struct vmkit_virtio_dev *dev = &t->dev;
	uint32_t o = (uint32_t)(off % REGION_SIZE);
	uint8_t img[CC_SIZE];

	memset(data, 0, len);
	if (!atomic_load_explicit(&t->live, memory_order_acquire) || off >= BAR_SIZE ||
	    len > REGION_SIZE - o)
		return;
	pthread_mutex_lock(&dev->lock);
	switch (off / REGION_SIZE * REGION_SIZE) {
	case COMMON_OFF:
		common_image(t, img);
		if (o < CC_SIZE)
			memcpy(data, img + o, len < CC_SIZE - o ? len : CC_SIZE - o);
		break;
	case ISR_OFF:
		/* Read to clear; the INTx line drops with it. */
		if (o == 0) {
			*(uint8_t *)data = dev->isr;
			dev->isr = 0;
			pci_intx_set(&t->pci, false);
		}
		break;
	case DEVICE_OFF:
		virtio_dev_config_read(dev, o, data, len);
		break;
	default:
		/* Notify reads 0; MSI-X is the host's. */
		break;
	}
	pthread_mutex_unlock(&dev->lock);
}

static void bar_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct virtio_pci *t = opaque;
	struct vmkit_virtio_dev *dev = &t->dev;
	uint32_t o = (uint32_t)(off % REGION_SIZE);
	bool kick = false;

	if (!atomic_load_explicit(&t->live, memory_order_acquire) || off >= BAR_SIZE ||
	    len > REGION_SIZE - o)
		return;
	pthread_mutex_lock(&dev->lock);
	switch (off / REGION_SIZE * REGION_SIZE) {
	case COMMON_OFF:
		if (o < CC_SIZE && len <= CC_SIZE - o)
			common_write(t, o, data, len);
		else
			bad_access(t, "write", o, len);
		break;
	case DEVICE_OFF:
		virtio_dev_config_write(dev, o, data, len);
		break;
	case NOTIFY_OFF:
		/* Any width at a queue's address: the value is the queue index
		 * (no VIRTIO_F_NOTIFICATION_DATA); the address says which. */
		kick = o % NOTIFY_MULT == 0 && o / NOTIFY_MULT < dev->num_queues;
		break;
	default:
		/* ISR is read-only. */
		break;
	}
	pthread_mutex_unlock(&dev->lock);
	if (kick)
		virtio_dev_kick(dev, (uint16_t)(o / NOTIFY_MULT));
}

static const vmkit_io_ops bar_ops = {
	.size = sizeof(vmkit_io_ops),
	.read = bar_read,
	.write = bar_write,
};

/* ---- VIRTIO_PCI_CAP_PCI_CFG: a config-space window into the BAR ------------------ */

static uint32_t cfg32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Host lock held (config access). A read refreshes pci_cfg_data from the
 * BAR, a write sends it there: cap.length 1, 2 or 4 bytes at cap.offset of
 * BAR cap.bar; anything else (another BAR, a length the spec does not
 * allow, an offset out of the BAR) reads 0 and writes nothing. */
static void cfg_window(void *opaque, struct pci_device *d, uint32_t off, uint32_t len,
		       bool write)
{
	struct virtio_pci *t = opaque;
	uint8_t *cap = d->config + t->cfg_cap;
	uint32_t boff = cfg32(cap + 8), blen = cfg32(cap + 12);
	uint8_t buf[4] = { 0 };

	(void)off;
	(void)len;
	if (cap[4] != 0 || (blen != 1 && blen != 2 && blen != 4) || boff % blen ||
	    boff >= BAR_SIZE) {
		if (!write)
			memset(cap + 16, 0, 4);
		return;
	}
	if (write) {
		memcpy(buf, cap + 16, blen);
		pci_device_bar_rw(d, 0, boff, buf, blen, true);
	} else {
		pci_device_bar_rw(d, 0, boff, buf, blen, false);
		memcpy(cap + 16, buf, 4);
	}
}

/* ---- notifications ------------------------------------------------------------------ */

static void notify_ready(void *opaque, int fd, uint32_t events)
{
	struct pci_notify *n = opaque;
	uint64_t count;

	(void)events;
	if (read(fd, &count, sizeof(count)) != (ssize_t)sizeof(count))
		return; /* spurious wake-up */
	if (atomic_load_explicit(&n->t->live, memory_order_acquire))
		virtio_dev_kick(&n->t->dev, n->queue);
}

/* Host lock held: BAR 0 moved from @old to @new (PCI_ADDR_NONE: not
 * decoding). Each queue's ioeventfd follows it; a queue KVM refuses keeps
 * working through bar_write. */
static void bar_moved(void *opaque, struct pci_device *d, unsigned bar, uint64_t old_addr,
		      uint64_t new_addr)
{
	struct virtio_pci *t = opaque;

	(void)d;
	(void)old_addr;
	if (bar != 0 || !t->vm)
		return;
	for (uint16_t i = 0; i < t->n_notify; i++) {
		struct pci_notify *n = &t->notify[i];
		uint64_t a;

		if (n->assigned != PCI_ADDR_NONE) {
			vmkit__vm_ioeventfd(t->vm, n->assigned, 2, false, false, 0, n->fd, false);
			n->assigned = PCI_ADDR_NONE;
		}
		if (new_addr == PCI_ADDR_NONE || !n->on_loop)
			continue;
		a = new_addr + NOTIFY_OFF + (uint64_t)NOTIFY_MULT * i;
		if (vmkit__vm_ioeventfd(t->vm, a, 2, false, false, 0, n->fd, true) == 0) {
			n->assigned = a;
		} else if (!t->warned_notify) {
			t->warned_notify = true;
			vmkit__log(vp_log(t), VMKIT_LOG_WARN,
				   "%s: queue %u notifications fall back to MMIO exits: %s",
				   t->dev.name, i, vmkit_last_error());
		}
	}
}

static void notify_setup(struct virtio_pci *t, uint16_t nq)
{
	for (uint16_t i = 0; i < nq; i++) {
		struct pci_notify *n = &t->notify[i];

		n->t = t;
		n->queue = i;
		n->assigned = PCI_ADDR_NONE;
		t->n_notify = (uint16_t)(i + 1);
		if (!t->loop)
			continue;
		n->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (n->fd >= 0 && vmkit__loop_add(t->loop, n->fd, EPOLLIN, notify_ready, n) == 0)
			n->on_loop = true;
		else if (!t->warned_notify) {
			t->warned_notify = true;
			vmkit__log(vp_log(t), VMKIT_LOG_WARN,
				   "%s: queue %u notifications fall back to MMIO exits", t->pci.name,
				   i);
		}
	}
}

/* After the function left the host (no ioeventfd assigned any more). */
static void notify_teardown(struct virtio_pci *t)
{
	for (uint16_t i = 0; i < t->n_notify; i++) {
		struct pci_notify *n = &t->notify[i];

		if (n->on_loop)
			vmkit__loop_del(t->loop, n->fd);
		if (n->fd >= 0)
			close(n->fd);
		n->fd = -1;
		n->on_loop = false;
	}
	t->n_notify = 0;
}

/* ---- the transport ------------------------------------------------------------------ */

/* The function: ids, BAR 0, the virtio capabilities, MSI-X, INTA. */
static int build_function(struct virtio_pci *t, const vmkit_virtio_ops *ops, const char *name)
{
	struct pci_device *d = &t->pci;
	uint16_t nq = ops->num_queues;
	uint8_t cap[CAP_PCI_CFG_LEN];
	int ret;

	pci_device_init(d, name, VIRTIO_PCI_VENDOR,
			(uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_id), VIRTIO_PCI_REVISION,
			class_of(ops->device_id), VIRTIO_PCI_VENDOR, (uint16_t)ops->device_id);
	if ((ret = pci_device_add_bar(d, 0, BAR_SIZE, false, false, &bar_ops, t)) < 0)
		return ret;
	t->nvec = (uint16_t)(nq + 1);
	if ((ret = pci_device_add_msix(d, t->nvec, 0, MSIX_TABLE_OFF, MSIX_PBA_OFF)) < 0)
		return ret;

	static const struct { uint8_t type; uint32_t off; } caps[] = {
		{ CAP_COMMON, COMMON_OFF }, { CAP_NOTIFY, NOTIFY_OFF }, { CAP_ISR, ISR_OFF },
		{ CAP_DEVICE, DEVICE_OFF }, { CAP_PCI_CFG, 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(caps); i++) {
		uint32_t len = caps[i].type == CAP_NOTIFY ? CAP_NOTIFY_LEN :
			       caps[i].type == CAP_PCI_CFG ? CAP_PCI_CFG_LEN : CAP_LEN;
		uint32_t length;

		switch (caps[i].type) {
		case CAP_COMMON: length = CC_SIZE; break;
		case CAP_NOTIFY: length = NOTIFY_MULT * nq; break;
		case CAP_ISR: length = 1; break;
		case CAP_DEVICE: length = ops->config_size; break;
		default: length = 0; break;
		}
		/* No device configuration, no capability: Linux refuses a
		 * zero-length one. */
		if (caps[i].type == CAP_DEVICE && length == 0)
			continue;
		memset(cap, 0, sizeof(cap));
		cap[0] = PCI_CAP_ID_VNDR;
		cap[2] = (uint8_t)len;
		cap[3] = caps[i].type;
		cap[4] = 0; /* BAR 0 */
		vmkit__put_le32(cap + 8, caps[i].off);
		vmkit__put_le32(cap + 12, length);
		if (caps[i].type == CAP_NOTIFY)
			vmkit__put_le32(cap + 16, NOTIFY_MULT);
		if ((ret = pci_device_add_cap(d, cap, len)) < 0)
			return ret;
		if (caps[i].type == CAP_PCI_CFG) {
			t->cfg_cap = (uint8_t)ret;
			/* bar, offset, length, pci_cfg_data: the driver's. */
			pci_device_writable(d, (uint32_t)ret + 4, 1);
			pci_device_writable(d, (uint32_t)ret + 8, 12);
			d->cfg_hook = cfg_window;
			d->hook_off = (uint32_t)ret + 16;
			d->hook_len = 4;
		}
	}
	pci_device_use_intx(d);
	d->bar_map = bar_moved;
	d->opaque = t;
	return 0;
}

void virtio_pci_free(struct virtio_pci *t)
{
	if (!t)
		return;
	/* Off the host first (unless pci_host_free took it off already):
	 * waits for accesses in progress, drops the ioeventfds (bar_moved)
	 * and the INTx line. */
	if (t->pci.host)
		pci_host_remove(t->pci.host, &t->pci);
	notify_teardown(t);
	atomic_store(&t->live, false);
	if (t->dev_init)
		virtio_dev_destroy(&t->dev);
	pci_device_release(&t->pci);
	vmkit__gmem_destroy(&t->nomem);
	free(t);
}

int virtio_pci_new(vmkit_vm *vm, struct vmkit_loop *loop, struct pci_host *host,
		   const vmkit_virtio_ops *ops, void *opaque, const char *name,
		   vmkit_machine *machine, struct virtio_pci **out)
{
	const struct vmkit_gmem *mem;
	struct virtio_pci *t;
	int ret;

	if (!host || !ops || !out || pci_host_vm(host) != vm)
		return vmkit__err(-EINVAL, "virtio-pci: bad arguments");
	if (ops->size < sizeof(*ops) || ops->num_queues == 0 ||
	    ops->num_queues > VMKIT_VIRTIO_MAX_QUEUES)
		return vmkit__err(-EINVAL, "virtio-pci: bad ops table (size or queue count)");
	if (ops->device_id > 0x3f)
		return vmkit__err(-EINVAL, "virtio-pci: device id %u has no PCI device id (0..63)",
				  ops->device_id);
	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return vmkit__err(-ENOMEM, "virtio-pci: out of memory");
	t->vm = vm;
	t->loop = loop;
	atomic_flag_clear(&t->warned_width);
	vmkit__gmem_init(&t->nomem);
	for (size_t i = 0; i < ARRAY_SIZE(t->notify); i++)
		t->notify[i].fd = -1;
	if (!name)
		name = "virtio-pci";
	snprintf(t->dev.name, sizeof(t->dev.name), "%s", name);
	if ((ret = build_function(t, ops, name)) < 0)
		goto fail;
	notify_setup(t, ops->num_queues);
	/* On the host before the core is set up: accesses are ignored until
	 * @live. The BARs decode at once (bar_moved assigns the ioeventfds). */
	if ((ret = pci_host_add(host, &t->pci, -1)) < 0)
		goto fail;
	mem = pci_host_mem(host);
	/* Last, as it takes ownership of @opaque: a failure before it leaves
	 * ops->destroy to the caller. */
	ret = virtio_dev_init(&t->dev, ops, opaque, mem ? mem : &t->nomem, &pci_transport, t, name);
	if (ret < 0)
		goto fail;
	t->dev_init = true;
	t->dev.machine = machine;
	atomic_store_explicit(&t->live, true, memory_order_release);
	*out = t;
	return 0;
fail:
	virtio_pci_free(t);
	return ret;
}

struct vmkit_virtio_dev *virtio_pci_dev(struct virtio_pci *t)
{
	return t ? &t->dev : NULL;
}

/* ---- test-only views (pci_test.h) ------------------------------------------------------ */

struct pci_device *virtio_pci_test_function(struct virtio_pci *t)
{
	return &t->pci;
}

int virtio_pci_test_notify_fd(const struct virtio_pci *t, uint16_t queue)
{
	return queue < t->n_notify && t->notify[queue].on_loop ? t->notify[queue].fd : -1;
}

unsigned virtio_pci_test_bad_accesses(const struct virtio_pci *t)
{
	return t->bad_accesses;
}
