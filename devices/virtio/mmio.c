/* SPDX-License-Identifier: MIT */
/* The virtio-mmio transport, version 2 (VIRTIO 1.2, 4.2.2): a 4 KiB
 * register window over the device core (core.c), one ioeventfd per queue
 * on QueueNotify, and a level-triggered, possibly shared GSI.
 *
 * Registers are 32-bit: an access of another width, or a misaligned one,
 * is ignored (reads as 0) and logged once. The device config space from
 * 0x100 takes any width. Every access runs under the device lock.
 *
 * Interrupt lines: several transports may share one GSI (device i uses
 * GSI base + i % 4). KVM keeps a single userspace level per GSI, so the
 * transports on one GSI of one VM share a struct mmio_line that ORs their
 * levels: the line falls only when none of them has InterruptStatus bits
 * set. Transports find each other on the VM's MMIO bus at creation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/virtio/virtio.h"
#include "devices/virtio/mmio_test.h"
#include "arch/x86/aml.h"
#include "loop/loop.h"

/* Register offsets (4.2.2). */
#define REG_MAGIC               0x000
#define REG_VERSION             0x004
#define REG_DEVICE_ID           0x008
#define REG_VENDOR_ID           0x00c
#define REG_DEVICE_FEATURES     0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES     0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL           0x030
#define REG_QUEUE_NUM_MAX       0x034
#define REG_QUEUE_NUM           0x038
#define REG_QUEUE_READY         0x044
#define REG_QUEUE_NOTIFY        0x050
#define REG_INTERRUPT_STATUS    0x060
#define REG_INTERRUPT_ACK       0x064
#define REG_STATUS              0x070
#define REG_QUEUE_DESC_LOW      0x080
#define REG_QUEUE_DESC_HIGH     0x084
#define REG_QUEUE_DRIVER_LOW    0x090
#define REG_QUEUE_DRIVER_HIGH   0x094
#define REG_QUEUE_DEVICE_LOW    0x0a0
#define REG_QUEUE_DEVICE_HIGH   0x0a4
#define REG_SHM_SEL             0x0ac
#define REG_SHM_LEN_LOW         0x0b0
#define REG_SHM_LEN_HIGH        0x0b4
#define REG_SHM_BASE_LOW        0x0b8
#define REG_SHM_BASE_HIGH       0x0bc
#define REG_CONFIG_GENERATION   0x0fc
#define REG_CONFIG              0x100

#define MMIO_MAGIC   0x74726976u /* "virt" */
#define MMIO_VERSION 2u
/* vmkit's own vendor id: "VMKT" in memory order. Drivers do not match on
 * it (Linux binds any vendor; SeaBIOS does not read it). */
#define MMIO_VENDOR_ID 0x544b4d56u

/* One GSI of one VM, shared by the transports on it. */
struct mmio_line {
	pthread_mutex_t lock;
	vmkit_vm *vm;           /* NULL in unit tests */
	uint32_t gsi;
	unsigned refs;          /* transports using it */
	unsigned asserting;     /* of those, how many want the line high */
	bool level;             /* the level last set */
	bool warned;            /* a KVM_IRQ_LINE failure was logged */
};

struct mmio_notify {
	struct virtio_mmio *t;
	uint16_t queue;
	int fd;                 /* eventfd, or -1 */
	bool ioeventfd;         /* assigned to KVM on QueueNotify */
	bool on_loop;
};

struct virtio_mmio {
	struct vmkit_virtio_dev dev;
	vmkit_vm *vm;
	struct vmkit_loop *loop;
	uint64_t base;
	uint32_t gsi;
	struct mmio_line *line;
	bool asserting;         /* our share of the line (under dev.lock) */
	bool registered;        /* the window is on the VM's MMIO bus */
	_Atomic bool live;      /* the core is initialised: accesses are served */
	atomic_flag warned_width;
	_Atomic unsigned bad_accesses;
	struct vmkit_gmem nomem; /* the empty guest memory of a vm-less transport */
	struct mmio_notify notify[VMKIT_VIRTIO_MAX_QUEUES];
	uint16_t n_notify;
};

static const struct vmkit_logger *mmio_log(const struct virtio_mmio *t)
{
	return t->vm ? &t->vm->log : NULL;
}

/* ---- the interrupt line ---------------------------------------------------- */

static void line_set_locked(struct mmio_line *l)
{
	bool level = l->asserting > 0;

	if (level == l->level)
		return;
	l->level = level;
	if (l->vm && vmkit_vm_set_irq(l->vm, l->gsi, level) < 0 && !l->warned) {
		l->warned = true;
		vmkit__log(&l->vm->log, VMKIT_LOG_WARN, "virtio-mmio: GSI %u: %s", l->gsi,
			   vmkit_last_error());
	}
}

/* Bring our share of the line in line with InterruptStatus. dev.lock held. */
static void line_update(struct virtio_mmio *t)
{
	bool want = t->dev.isr != 0;

	if (want == t->asserting)
		return;
	t->asserting = want;
	pthread_mutex_lock(&t->line->lock);
	if (want)
		t->line->asserting++;
	else
		t->line->asserting--;
	line_set_locked(t->line);
	pthread_mutex_unlock(&t->line->lock);
}

static const vmkit_io_ops mmio_io_ops;

/* Join the line of another transport on the same VM and GSI, or start one.
 * Transports are created and freed on one thread (the machine's), as bus
 * registrations are; the reference is taken under the bus lock so that a
 * sibling being freed (it leaves the bus first) cannot free the line under
 * us. */
static int line_join(struct virtio_mmio *t)
{
	struct mmio_line *l = NULL;

	if (t->vm) {
		pthread_rwlock_rdlock(&t->vm->mmio.lock);
		for (size_t i = 0; i < t->vm->mmio.n && !l; i++) {
			const struct vmkit_bus_range *r = &t->vm->mmio.r[i];
			const struct virtio_mmio *o = r->opaque;

			if (r->ops == &mmio_io_ops && o->gsi == t->gsi && o->line) {
				l = o->line;
				pthread_mutex_lock(&l->lock);
				l->refs++;
				pthread_mutex_unlock(&l->lock);
			}
		}
		pthread_rwlock_unlock(&t->vm->mmio.lock);
	}
	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l)
			return vmkit__err(-ENOMEM, "virtio-mmio: out of memory");
		pthread_mutex_init(&l->lock, NULL);
		l->vm = t->vm;
		l->gsi = t->gsi;
		l->refs = 1;
	}
	t->line = l;
	return 0;
}

/* Drop our share (lowering the line if we were the last to hold it up) and
 * our reference. */
static void line_leave(struct virtio_mmio *t)
{
	struct mmio_line *l = t->line;
	bool last;

	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	if (t->asserting) {
		t->asserting = false;
		l->asserting--;
		line_set_locked(l);
	}
	last = --l->refs == 0;
	pthread_mutex_unlock(&l->lock);
	if (last) {
		pthread_mutex_destroy(&l->lock);
		free(l);
	}
	t->line = NULL;
}

/* The core's interrupt (a used buffer or a config change), with the
 * InterruptStatus bit already set in dev->isr. dev.lock held. */
static void mmio_interrupt(void *ctx, struct vmkit_virtio_dev *dev, bool config, uint16_t queue)
{
	(void)dev;
	(void)config;
	(void)queue;
	line_update(ctx);
}

/* Signal the queue's notify eventfd: the loop dispatches the queue again
 * after the other ready fds. */
static int mmio_kick_later(void *ctx, struct vmkit_virtio_dev *dev, uint16_t queue)
{
	struct virtio_mmio *t = ctx;
	uint64_t one = 1;

	(void)dev;
	if (queue >= t->n_notify || !t->notify[queue].on_loop)
		return -ENOTSUP;
	return write(t->notify[queue].fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

static const struct virtio_transport mmio_transport = { .interrupt = mmio_interrupt , .kick_later = mmio_kick_later };

/* ---- registers ------------------------------------------------------------ */

static void bad_access(struct virtio_mmio *t, const char *what, uint64_t off, uint32_t len)
{
	t->bad_accesses++;
	if (!atomic_flag_test_and_set(&t->warned_width))
		vmkit__log(mmio_log(t), VMKIT_LOG_WARN,
			   "%s: ignored %u-byte %s at offset 0x%llx (registers are 32-bit; "
			   "logged once)", t->dev.name, len, what, (unsigned long long)off);
}

static bool valid_queue_size(uint32_t v, uint16_t max)
{
	return v != 0 && (v & (v - 1)) == 0 && v <= max;
}

static void set_low(uint64_t *r, uint32_t v) { *r = (*r & ~0xffffffffull) | v; }
static void set_high(uint64_t *r, uint32_t v) { *r = (*r & 0xffffffffull) | (uint64_t)v << 32; }

static uint32_t reg_read(struct virtio_mmio *t, uint32_t off)
{
	struct vmkit_virtio_dev *dev = &t->dev;
	struct virtq *q;

	switch (off) {
	case REG_MAGIC:
		return MMIO_MAGIC;
	case REG_VERSION:
		return MMIO_VERSION;
	case REG_DEVICE_ID:
		return dev->ops->device_id;
	case REG_VENDOR_ID:
		return MMIO_VENDOR_ID;
	case REG_DEVICE_FEATURES:
		return virtio_dev_read_device_features(dev);
	case REG_QUEUE_NUM_MAX:
		return virtio_dev_queue_max(dev); /* 0 for a queue that does not exist */
	case REG_QUEUE_READY:
		q = virtio_dev_selected_queue(dev);
		return q && q->ready;
	case REG_INTERRUPT_STATUS:
		return dev->isr;
	case REG_STATUS:
		return dev->status;
	case REG_SHM_LEN_LOW:
	case REG_SHM_LEN_HIGH:
	case REG_SHM_BASE_LOW:
	case REG_SHM_BASE_HIGH:
		/* No shared memory regions: every SHMSel reads length -1. */
		return 0xffffffffu;
	case REG_CONFIG_GENERATION:
		return dev->config_generation;
	default:
		/* Write-only and reserved registers. */
		return 0;
	}
}

/* Returns true when the write was a notification of queue *@kick, to be
 * dispatched once dev.lock is released. */
static bool reg_write(struct virtio_mmio *t, uint32_t off, uint32_t v, uint16_t *kick)
{
	struct vmkit_virtio_dev *dev = &t->dev;
	struct virtq *q;

	switch (off) {
	case REG_DEVICE_FEATURES_SEL:
		dev->device_features_sel = v;
		break;
	case REG_DRIVER_FEATURES:
		virtio_dev_write_driver_features(dev, v);
		break;
	case REG_DRIVER_FEATURES_SEL:
		dev->driver_features_sel = v;
		break;
	case REG_QUEUE_SEL:
		/* Saturate: a large selector must not alias a real queue. */
		dev->queue_sel = v > UINT16_MAX ? UINT16_MAX : (uint16_t)v;
		break;
	case REG_QUEUE_NUM:
		q = virtio_dev_queue_for_write(dev);
		if (q && valid_queue_size(v, virtio_dev_queue_max(dev)))
			q->size = (uint16_t)v;
		break;
	case REG_QUEUE_READY:
		q = virtio_dev_queue_for_write(dev);
		if (q && v == 1) {
			q->ready = true;
		} else if (v == 0 && !(dev->status & VIRTIO_STATUS_DRIVER_OK)) {
			/* "Reads return the last value written": a driver may take
			 * back a queue it enabled, until DRIVER_OK starts it. */
			q = virtio_dev_selected_queue(dev);
			if (q)
				q->ready = false;
		}
		break;
	case REG_QUEUE_NOTIFY:
		/* No VIRTIO_F_NOTIFICATION_DATA: the value is the queue index. */
		if (v < dev->num_queues) {
			*kick = (uint16_t)v;
			return true;
		}
		break;
	case REG_INTERRUPT_ACK:
		dev->isr &= (uint8_t)~v;
		line_update(t);
		break;
	case REG_STATUS:
		/* Status is a byte: do not let 0x100 alias a reset. */
		if (v > 0xff)
			break;
		virtio_dev_write_status(dev, (uint8_t)v);
		line_update(t); /* a reset cleared InterruptStatus */
		break;
	case REG_QUEUE_DESC_LOW:
	case REG_QUEUE_DESC_HIGH:
	case REG_QUEUE_DRIVER_LOW:
	case REG_QUEUE_DRIVER_HIGH:
	case REG_QUEUE_DEVICE_LOW:
	case REG_QUEUE_DEVICE_HIGH: {
		uint64_t *r;

		q = virtio_dev_queue_for_write(dev);
		if (!q)
			break;
		r = off < REG_QUEUE_DRIVER_LOW ? &q->desc_gpa :
		    off < REG_QUEUE_DEVICE_LOW ? &q->avail_gpa : &q->used_gpa;
		if (off & 4)
			set_high(r, v);
		else
			set_low(r, v);
		break;
	}
	default:
		/* Read-only and reserved registers; SHMSel selects nothing. */
		break;
	}
	return false;
}

static void mmio_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct virtio_mmio *t = opaque;
	uint32_t v;

	memset(data, 0, len);
	if (!atomic_load_explicit(&t->live, memory_order_acquire))
		return;
	if (off >= REG_CONFIG && off < VIRTIO_MMIO_SIZE && len <= VIRTIO_MMIO_SIZE - off) {
		pthread_mutex_lock(&t->dev.lock);
		virtio_dev_config_read(&t->dev, (uint32_t)(off - REG_CONFIG), data, len);
		pthread_mutex_unlock(&t->dev.lock);
		return;
	}
	pthread_mutex_lock(&t->dev.lock);
	if (len != 4 || off % 4 || off >= REG_CONFIG) {
		bad_access(t, "read", off, len);
	} else {
		v = reg_read(t, (uint32_t)off);
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&t->dev.lock);
}

static void mmio_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct virtio_mmio *t = opaque;
	uint16_t queue = 0;
	bool kick = false;
	uint32_t v;

	if (!atomic_load_explicit(&t->live, memory_order_acquire))
		return;
	pthread_mutex_lock(&t->dev.lock);
	if (off >= REG_CONFIG && off < VIRTIO_MMIO_SIZE && len <= VIRTIO_MMIO_SIZE - off) {
		virtio_dev_config_write(&t->dev, (uint32_t)(off - REG_CONFIG), data, len);
	} else if (len != 4 || off % 4 || off >= REG_CONFIG) {
		bad_access(t, "write", off, len);
	} else {
		memcpy(&v, data, 4);
		kick = reg_write(t, (uint32_t)off, v, &queue);
	}
	pthread_mutex_unlock(&t->dev.lock);
	/* A notification KVM did not catch (no ioeventfd): handle it here. */
	if (kick)
		virtio_dev_kick(&t->dev, queue);
}

static const vmkit_io_ops mmio_io_ops = {
	.size = sizeof(vmkit_io_ops),
	.read = mmio_read,
	.write = mmio_write,
};

/* ---- notifications ---------------------------------------------------------- */

static void notify_ready(void *opaque, int fd, uint32_t events)
{
	struct mmio_notify *n = opaque;
	uint64_t count;

	(void)events;
	if (read(fd, &count, sizeof(count)) != (ssize_t)sizeof(count))
		return; /* spurious wake-up: nothing pending */
	if (atomic_load_explicit(&n->t->live, memory_order_acquire))
		virtio_dev_kick(&n->t->dev, n->queue);
}

static void notify_teardown(struct virtio_mmio *t)
{
	for (uint16_t i = 0; i < t->n_notify; i++) {
		struct mmio_notify *n = &t->notify[i];

		if (n->ioeventfd)
			vmkit__vm_ioeventfd(t->vm, t->base + REG_QUEUE_NOTIFY, 4, false, true, i,
					    n->fd, false);
		if (n->on_loop)
			vmkit__loop_del(t->loop, n->fd);
		if (n->fd >= 0)
			close(n->fd);
		n->fd = -1;
		n->ioeventfd = n->on_loop = false;
	}
	t->n_notify = 0;
}

/* One eventfd per queue on the loop, written by KVM when the guest writes
 * the queue's index to QueueNotify. Best effort: where KVM or the loop
 * refuses, the write reaches mmio_write and is dispatched there. */
static void notify_setup(struct virtio_mmio *t, uint16_t nq, const char *name)
{
	bool warned = false;

	if (!t->loop)
		return;
	for (uint16_t i = 0; i < nq; i++) {
		struct mmio_notify *n = &t->notify[i];
		int ret = 0;

		n->t = t;
		n->queue = i;
		n->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		t->n_notify = (uint16_t)(i + 1);
		if (n->fd < 0)
			ret = vmkit__err(-errno, "eventfd: %s", strerror(errno));
		if (ret == 0 && (ret = vmkit__loop_add(t->loop, n->fd, EPOLLIN, notify_ready,
						       n)) == 0)
			n->on_loop = true;
		if (ret == 0 && t->vm &&
		    (ret = vmkit__vm_ioeventfd(t->vm, t->base + REG_QUEUE_NOTIFY, 4, false, true, i,
					       n->fd, true)) == 0)
			n->ioeventfd = true;
		if (ret < 0 && !warned) {
			warned = true;
			vmkit__log(mmio_log(t), VMKIT_LOG_WARN,
				   "%s: queue %u notifications fall back to MMIO exits: %s",
				   name, i, vmkit_last_error());
		}
	}
}

/* ---- the transport ------------------------------------------------------------ */

int virtio_mmio_new(vmkit_vm *vm, struct vmkit_loop *loop, uint64_t base, uint32_t gsi,
		    const vmkit_virtio_ops *ops, void *opaque, const char *name,
		    vmkit_machine *machine, struct virtio_mmio **out)
{
	struct virtio_mmio *t;
	int ret;

	if (!ops || !out || base % VIRTIO_MMIO_SIZE || base + VIRTIO_MMIO_SIZE < base)
		return vmkit__err(-EINVAL, "virtio-mmio: bad arguments (base 0x%llx)",
				  (unsigned long long)base);
	t = calloc(1, sizeof(*t));
	if (!t)
		return vmkit__err(-ENOMEM, "virtio-mmio: out of memory");
	t->vm = vm;
	t->loop = loop;
	t->base = base;
	t->gsi = gsi;
	atomic_flag_clear(&t->warned_width);
	vmkit__gmem_init(&t->nomem);
	for (size_t i = 0; i < ARRAY_SIZE(t->notify); i++)
		t->notify[i].fd = -1;

	if ((ret = line_join(t)) < 0)
		goto fail;
	/* On the bus before the core is set up: accesses are ignored until
	 * @live, so the order is safe even with vCPUs running. */
	if (vm) {
		if ((ret = vmkit_vm_register_mmio(vm, base, VIRTIO_MMIO_SIZE, &mmio_io_ops, t, 0)) < 0)
			goto fail;
		t->registered = true;
	}
	if (!name)
		name = "virtio-mmio";
	if (ops->size >= sizeof(*ops) && ops->num_queues <= VMKIT_VIRTIO_MAX_QUEUES)
		notify_setup(t, ops->num_queues, name);
	/* Last, as it takes ownership of @opaque: a failure before it leaves
	 * ops->destroy to the caller. */
	ret = virtio_dev_init(&t->dev, ops, opaque, vm ? &vm->mem : &t->nomem, &mmio_transport, t,
			      name);
	if (ret < 0)
		goto fail;
	t->dev.machine = machine;
	atomic_store_explicit(&t->live, true, memory_order_release);
	*out = t;
	return 0;
fail:
	notify_teardown(t);
	if (t->registered)
		vmkit_vm_unregister_mmio(vm, base);
	line_leave(t);
	free(t);
	return ret;
}

void virtio_mmio_free(struct virtio_mmio *t)
{
	if (!t)
		return;
	/* Off the bus first: this waits for accesses in progress. */
	if (t->registered)
		vmkit_vm_unregister_mmio(t->vm, t->base);
	notify_teardown(t);
	atomic_store(&t->live, false);
	virtio_dev_destroy(&t->dev);
	line_leave(t);
	vmkit__gmem_destroy(&t->nomem);
	free(t);
}

struct vmkit_virtio_dev *virtio_mmio_dev(struct virtio_mmio *t)
{
	return t ? &t->dev : NULL;
}

/* Device (VRxx) { _HID "LNRO0005", _UID, _CCA 1, _CRS { the window, the
 * GSI } }: what Linux's virtio_mmio platform driver binds to, and what
 * SeaBIOS (bios-microvm) finds by scanning the DSDT for the _HID string
 * and a static _CRS buffer with its first memory and interrupt
 * descriptors. */
void virtio_mmio_dsdt(const struct virtio_mmio *t, uint32_t uid, struct x86_buf *sb)
{
	char name[8];
	size_t dev, res;

	if (uid > 0xff) {
		/* The name has room for two hex digits: a larger uid would
		 * collide with another device's. */
		sb->oom = true;
		return;
	}
	snprintf(name, sizeof(name), "VR%02X", (unsigned)uid);
	dev = aml_device_begin(sb, name);
	aml_name(sb, "_HID");
	aml_string(sb, "LNRO0005");
	aml_name(sb, "_UID");
	aml_integer(sb, uid);
	aml_name(sb, "_CCA");
	aml_integer(sb, 1);
	aml_name(sb, "_CRS");
	res = aml_restemplate_begin(sb);
	if (t->base + VIRTIO_MMIO_SIZE <= X86_4G)
		aml_res_memory32_fixed(sb, (uint32_t)t->base, VIRTIO_MMIO_SIZE, true);
	else
		aml_res_qword_memory(sb, t->base, VIRTIO_MMIO_SIZE, false, false);
	aml_res_interrupt(sb, t->gsi, true, false, true);
	aml_restemplate_end(sb, res);
	aml_end(sb, dev);
}

int virtio_mmio_cmdline(const struct virtio_mmio *t, char *buf, size_t len)
{
	int n = snprintf(buf, len, "virtio_mmio.device=4K@0x%llx:%u",
			 (unsigned long long)t->base, t->gsi);

	if (n < 0 || (size_t)n >= len)
		return vmkit__err(-ENOSPC, "virtio-mmio: command line entry does not fit");
	return n;
}

/* ---- test-only views (mmio_test.h) ------------------------------------------------ */

void virtio_mmio_test_read(struct virtio_mmio *t, uint64_t off, void *data, uint32_t len)
{
	mmio_read(t, off, data, len);
}

void virtio_mmio_test_write(struct virtio_mmio *t, uint64_t off, const void *data, uint32_t len)
{
	mmio_write(t, off, data, len);
}

bool virtio_mmio_test_line(const struct virtio_mmio *t)
{
	bool level;

	pthread_mutex_lock(&t->line->lock);
	level = t->line->level;
	pthread_mutex_unlock(&t->line->lock);
	return level;
}

unsigned virtio_mmio_test_bad_accesses(const struct virtio_mmio *t)
{
	return t->bad_accesses;
}

int virtio_mmio_test_notify_fd(const struct virtio_mmio *t, uint16_t queue)
{
	return queue < t->n_notify && t->notify[queue].on_loop ? t->notify[queue].fd : -1;
}
