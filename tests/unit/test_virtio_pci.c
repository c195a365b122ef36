/* SPDX-License-Identifier: MIT */
/* The virtio-pci transport (modern) driven as a guest driver would, over a
 * toy device on a detached PCI host (no KVM): the identity and capability
 * chain a driver walks, the common configuration through the handshake
 * and its rules, notifications (register path and the loop's eventfds),
 * ISR read-to-clear with INTx, MSI-X vector assignment and NO_VECTOR, the
 * PCI configuration access window, reset, and hostile accesses. One test
 * uses a real KVM VM for the ioeventfds following BAR 0. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "kvmtest.h"
#include "vqdriver.h"
#include "devices/virtio/pci_test.h"
#include "loop/loop.h"
#include "pci/pci.h"

/* struct virtio_pci_common_cfg (VIRTIO 1.2, 4.1.4.3), written out here
 * independently of pci.c. */
enum {
	DFSEL = 0x00, DF = 0x04, GFSEL = 0x08, GF = 0x0c, MSIXCFG = 0x10, NUMQ = 0x12,
	STATUS = 0x14, CFGGEN = 0x15, QSEL = 0x16, QSIZE = 0x18, QMSIX = 0x1a, QENABLE = 0x1c,
	QNOFF = 0x1e, QDESC = 0x20, QDRIVER = 0x28, QDEVICE = 0x30,
};
enum { CAP_COMMON = 1, CAP_NOTIFY = 2, CAP_ISR = 3, CAP_DEVICE = 4, CAP_PCI_CFG = 5 };
#define NO_VECTOR 0xffffu

#define S_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRV VIRTIO_STATUS_DRIVER
#define S_FOK VIRTIO_STATUS_FEATURES_OK
#define S_DOK VIRTIO_STATUS_DRIVER_OK

/* ---- the toy device ---------------------------------------------------------------- */

#define TOY_ID 0x2a
#define TOY_QUEUES 2
#define TOY_QMAX 256
#define TOY_CONFIG 12
#define TOY_FEATURES (VIRTIO_BIT(0) | VIRTIO_BIT(51))

struct toy {
	uint8_t config[TOY_CONFIG];
	unsigned activations, resets, destroyed;
	uint64_t activated_features;
	unsigned notified[TOY_QUEUES];
	unsigned completed;
	struct vmkit_loop *stop_loop;
};

static void toy_config_read(void *opaque, uint32_t off, void *data, uint32_t len)
{
	struct toy *t = opaque;

	cr_assert_leq(off + len, TOY_CONFIG);
	memcpy(data, t->config + off, len);
}

static void toy_config_write(void *opaque, uint32_t off, const void *data, uint32_t len)
{
	struct toy *t = opaque;

	cr_assert_leq(off + len, TOY_CONFIG);
	memcpy(t->config + off, data, len);
}

static int toy_activate(void *opaque, vmkit_virtio_dev *dev, uint64_t features)
{
	struct toy *t = opaque;

	t->activations++;
	t->activated_features = features;
	return 0;
}

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

/* ---- interrupts seen by the (detached) host ------------------------------------------- */

static bool line[24];
static unsigned line_changes;
static struct { uint64_t addr; uint32_t data; } msis[64];
static unsigned n_msis;

static void hook_irq(void *ctx, uint32_t gsi, bool level)
{
	cr_assert_lt(gsi, 24);
	line[gsi] = level;
	line_changes++;
}

static void hook_msi(void *ctx, uint64_t addr, uint32_t data)
{
	if (n_msis < 64) {
		msis[n_msis].addr = addr;
		msis[n_msis].data = data;
	}
	n_msis++;
}

/* ---- the driver's view ------------------------------------------------------------------ */

struct cap {
	bool present;
	uint8_t at, bar;
	uint32_t off, len;
};

struct rig {
	struct vqd_mem m;
	struct pci_host *h;
	struct virtio_pci *t;
	struct toy toy;
	struct vqd_queue q[TOY_QUEUES];
	unsigned slot;
	uint64_t bar;        /* BAR 0 as the driver reads it */
	struct cap cap[6];   /* by cfg_type */
	uint32_t notify_mult;
	uint8_t msix;        /* MSI-X capability offset */
	uint32_t gsi;
};

static uint32_t cfg(struct rig *r, unsigned reg, unsigned len)
{
	uint32_t a = 0x80000000u | r->slot << 11 | (reg & 0xfc), v = 0;

	pci_host_pio_write(r->h, 0, &a, 4);
	pci_host_pio_read(r->h, 4 + (reg & 3), &v, len);
	return v;
}

static void cfgw(struct rig *r, unsigned reg, uint32_t v, unsigned len)
{
	uint32_t a = 0x80000000u | r->slot << 11 | (reg & 0xfc);

	pci_host_pio_write(r->h, 0, &a, 4);
	pci_host_pio_write(r->h, 4 + (reg & 3), &v, len);
}

static uint64_t rdb(struct rig *r, uint64_t off, unsigned len)
{
	uint64_t v = 0;

	cr_assert(pci_host_mmio_read(r->h, r->bar + off, &v, len), "BAR 0 + 0x%llx does not decode",
		  (unsigned long long)off);
	return v;
}

static void wrb(struct rig *r, uint64_t off, uint64_t v, unsigned len)
{
	cr_assert(pci_host_mmio_write(r->h, r->bar + off, &v, len));
}

static uint64_t cc(struct rig *r, unsigned field, unsigned len)
{
	return rdb(r, r->cap[CAP_COMMON].off + field, len);
}

static void ccw(struct rig *r, unsigned field, uint64_t v, unsigned len)
{
	wrb(r, r->cap[CAP_COMMON].off + field, v, len);
}

/* Walk the capability list as Linux's virtio_pci_modern does. */
static void find_caps(struct rig *r)
{
	unsigned n = 0;

	memset(r->cap, 0, sizeof(r->cap));
	r->msix = 0;
	cr_assert(cfg(r, 0x06, 2) & 0x10, "no capability list");
	for (unsigned p = cfg(r, 0x34, 1); p; p = cfg(r, p + 1, 1)) {
		cr_assert_lt(n++, 16, "capability list loops");
		cr_assert(p >= 0x40 && p <= 0xfc && p % 4 == 0, "capability at 0x%x", p);
		if (cfg(r, p, 1) == 0x11) {
			r->msix = (uint8_t)p;
			continue;
		}
		cr_assert_eq(cfg(r, p, 1), 0x09, "unexpected capability 0x%x", cfg(r, p, 1));
		{
			unsigned type = cfg(r, p + 3, 1);
			struct cap *c;

			cr_assert(type >= 1 && type <= 5, "cfg_type %u", type);
			c = &r->cap[type];
			cr_assert_not(c->present, "two capabilities of type %u", type);
			c->present = true;
			c->at = (uint8_t)p;
			c->bar = (uint8_t)cfg(r, p + 4, 1);
			c->off = cfg(r, p + 8, 4);
			c->len = cfg(r, p + 12, 4);
			cr_assert_geq(cfg(r, p + 2, 1), type == CAP_NOTIFY || type == CAP_PCI_CFG ? 20 : 16,
				      "cap_len of type %u", type);
			if (type == CAP_NOTIFY)
				r->notify_mult = cfg(r, p + 16, 4);
		}
	}
	r->bar = cfg(r, 0x10, 4) & ~0xfull;
}

static void rig_init_ops(struct rig *r, struct vmkit_loop *loop, const vmkit_virtio_ops *ops)
{
	struct pci_host_hooks hooks = { NULL, hook_irq, hook_msi, NULL };
	int slot;

	memset(r, 0, sizeof(*r));
	memset(line, 0, sizeof(line));
	line_changes = n_msis = 0;
	vqd_mem_init(&r->m, 0, 0);
	hooks.mem = &r->m.gm;
	cr_assert_eq(pci_host_new_detached(&hooks, &r->h), 0);
	cr_assert_eq(virtio_pci_new(NULL, loop, r->h, ops, &r->toy, "toy0", NULL, &r->t), 0, "%s",
		     vmkit_last_error());
	slot = virtio_pci_test_function(r->t)->slot;
	cr_assert_gt(slot, 0);
	r->slot = (unsigned)slot;
	r->gsi = pci_intx_gsi(r->slot, 0);
	for (unsigned i = 0; i < TOY_QUEUES; i++)
		vqd_queue_init(&r->q[i], &r->m, 64);
	find_caps(r);
}

static void rig_init(struct rig *r, struct vmkit_loop *loop)
{
	rig_init_ops(r, loop, &toy_ops);
}

static void rig_fini(struct rig *r)
{
	virtio_pci_free(r->t);
	cr_assert_eq(r->toy.destroyed, 1, "ops->destroy not called once");
	pci_host_free(r->h);
	vqd_mem_destroy(&r->m);
}

static void set_queue_addr(struct rig *r, unsigned field, uint64_t gpa)
{
	/* As Linux does: two 32-bit halves. */
	ccw(r, field, (uint32_t)gpa, 4);
	ccw(r, field + 4, (uint32_t)(gpa >> 32), 4);
}

/* The driver handshake (3.1.1) over the common configuration, mapping
 * the config and queue interrupts to @vec[0], @vec[1 + queue] when given
 * (as Linux does, after FEATURES_OK); returns the status read back. */
static uint8_t handshake_vec(struct rig *r, const uint16_t *vec)
{
	uint32_t lo, hi;

	ccw(r, STATUS, 0, 1);
	ccw(r, STATUS, S_ACK, 1);
	ccw(r, STATUS, S_ACK | S_DRV, 1);
	ccw(r, DFSEL, 0, 4);
	lo = (uint32_t)cc(r, DF, 4);
	ccw(r, DFSEL, 1, 4);
	hi = (uint32_t)cc(r, DF, 4);
	/* Without EVENT_IDX every used buffer interrupts (the tests count
	 * interrupts; suppression is the virtqueue tests' business). */
	lo &= ~(uint32_t)VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	ccw(r, GFSEL, 0, 4);
	ccw(r, GF, lo, 4);
	ccw(r, GFSEL, 1, 4);
	ccw(r, GF, hi, 4);
	ccw(r, STATUS, S_ACK | S_DRV | S_FOK, 1);
	cr_assert(cc(r, STATUS, 1) & S_FOK, "FEATURES_OK refused");
	if (vec) {
		ccw(r, MSIXCFG, vec[0], 2);
		cr_assert_eq(cc(r, MSIXCFG, 2), vec[0]);
	}
	for (unsigned i = 0; i < TOY_QUEUES; i++) {
		ccw(r, QSEL, i, 2);
		ccw(r, QSIZE, r->q[i].size, 2);
		if (vec) {
			ccw(r, QMSIX, vec[1 + i], 2);
			cr_assert_eq(cc(r, QMSIX, 2), vec[1 + i]);
		}
		set_queue_addr(r, QDESC, r->q[i].desc);
		set_queue_addr(r, QDRIVER, r->q[i].avail);
		set_queue_addr(r, QDEVICE, r->q[i].used);
		ccw(r, QENABLE, 1, 2);
	}
	ccw(r, STATUS, S_ACK | S_DRV | S_FOK | S_DOK, 1);
	return (uint8_t)cc(r, STATUS, 1);
}

static uint8_t handshake(struct rig *r)
{
	return handshake_vec(r, NULL);
}

static void put_request(struct rig *r, unsigned qi)
{
	uint64_t buf = vqd_alloc(&r->m, 64, 16);
	int head = vqd_add_chain(&r->q[qi], (struct vqd_buf[]){ { buf, 64, true } }, 1);

	vqd_publish(&r->q[qi], (uint16_t)head);
}

static void notify_queue(struct rig *r, unsigned qi, unsigned len)
{
	ccw(r, QSEL, qi, 2);
	wrb(r, r->cap[CAP_NOTIFY].off + cc(r, QNOFF, 2) * r->notify_mult, qi, len);
}

/* ---- identity and capabilities ------------------------------------------------------- */

Test(virtio_pci, identity_and_capability_chain)
{
	struct rig r;
	uint32_t bar;

	rig_init(&r, NULL);
	cr_assert_eq(cfg(&r, 0x00, 2), 0x1af4, "Red Hat / virtio vendor");
	cr_assert_eq(cfg(&r, 0x02, 2), 0x1040 + TOY_ID, "modern device id 0x1040 + id");
	cr_assert_eq(cfg(&r, 0x08, 1), 1, "revision 1: non-transitional");
	cr_assert_eq(cfg(&r, 0x2c, 2), 0x1af4);
	cr_assert_eq(cfg(&r, 0x2e, 2), TOY_ID);
	cr_assert_eq(cfg(&r, 0x08, 4) >> 8, 0x00ff00, "class: unclassified");
	cr_assert_eq(cfg(&r, 0x0e, 1), 0, "header type 0, one function");
	cr_assert_eq(cfg(&r, 0x3d, 1), 1, "INTA");
	/* BAR 0: 32-bit memory; its size by the sizing protocol. */
	bar = cfg(&r, 0x10, 4);
	cr_assert_eq(bar & 0xf, 0, "32-bit, non-prefetchable memory BAR");
	cfgw(&r, 0x10, 0xffffffffu, 4);
	{
		uint32_t size = ~(cfg(&r, 0x10, 4) & ~0xfu) + 1;
		cr_assert(size >= 0x1000 && !(size & (size - 1)), "BAR 0 size 0x%x", size);
		cfgw(&r, 0x10, bar, 4);
		/* Every structure a driver needs, in BAR 0, inside it, apart. */
		for (unsigned ty = CAP_COMMON; ty <= CAP_DEVICE; ty++) {
			struct cap *c = &r.cap[ty];

			cr_assert(c->present, "no capability of type %u", ty);
			cr_assert_eq(c->bar, 0);
			cr_assert_leq((uint64_t)c->off + c->len, size, "type %u outside BAR 0", ty);
			for (unsigned o = CAP_COMMON; o < ty; o++)
				cr_assert(c->off >= r.cap[o].off + r.cap[o].len ||
					  r.cap[o].off >= c->off + c->len, "types %u and %u overlap", o, ty);
		}
	}
	cr_assert_geq(r.cap[CAP_COMMON].len, 0x38, "struct virtio_pci_common_cfg");
	cr_assert_geq(r.cap[CAP_ISR].len, 1);
	cr_assert_eq(r.cap[CAP_DEVICE].len, TOY_CONFIG);
	cr_assert_eq(r.notify_mult, 4, "one notify address per queue, 4 bytes apart");
	cr_assert_geq(r.cap[CAP_NOTIFY].len, (TOY_QUEUES - 1) * r.notify_mult + 2);
	cr_assert(r.cap[CAP_PCI_CFG].present, "VIRTIO_PCI_CAP_PCI_CFG is a MUST");
	/* MSI-X: num_queues + 1 vectors, table and PBA in BAR 0 past the
	 * virtio structures. */
	cr_assert_neq(r.msix, 0, "no MSI-X capability");
	cr_assert_eq(cfg(&r, r.msix + 2, 2) & 0x7ff, TOY_QUEUES, "table size N-1 = num_queues");
	cr_assert_eq(cfg(&r, r.msix + 4, 4) & 7, 0, "table in BAR 0");
	cr_assert_eq(cfg(&r, r.msix + 8, 4) & 7, 0, "PBA in BAR 0");
	for (unsigned ty = CAP_COMMON; ty <= CAP_DEVICE; ty++) {
		uint32_t t = cfg(&r, r.msix + 4, 4) & ~7u;
		cr_assert(t >= r.cap[ty].off + r.cap[ty].len || t + 16 * (TOY_QUEUES + 1) <= r.cap[ty].off,
			  "MSI-X table overlaps type %u", ty);
	}
	cr_assert_eq(cc(&r, NUMQ, 2), TOY_QUEUES);
	rig_fini(&r);
}

static void expect_class(uint32_t id, uint32_t class_code, uint32_t config_size,
			 bool device_cap)
{
	vmkit_virtio_ops ops = toy_ops;
	struct rig r;

	ops.device_id = id;
	ops.config_size = config_size;
	rig_init_ops(&r, NULL, &ops);
	cr_assert_eq(cfg(&r, 0x02, 2), 0x1040 + id);
	cr_assert_eq(cfg(&r, 0x08, 4) >> 8, class_code, "device %u: class 0x%06x", id,
		     cfg(&r, 0x08, 4) >> 8);
	cr_assert_eq(r.cap[CAP_DEVICE].present, device_cap);
	rig_fini(&r);
}

Test(virtio_pci, class_codes_and_optional_device_config)
{
	expect_class(VMKIT_VIRTIO_ID_BLOCK, 0x010000, 8, true);
	expect_class(VMKIT_VIRTIO_ID_CONSOLE, 0x078000, 8, true);
	expect_class(VMKIT_VIRTIO_ID_NET, 0x020000, 8, true);
	expect_class(VMKIT_VIRTIO_ID_RNG, 0x00ff00, 0, false);
	expect_class(VMKIT_VIRTIO_ID_BALLOON, 0x00ff00, 8, true);
}

Test(virtio_pci, bad_arguments_leave_opaque_to_the_caller)
{
	struct pci_host *h;
	struct virtio_pci *t = NULL;
	struct toy toy = { 0 };
	vmkit_virtio_ops ops = toy_ops;

	cr_assert_eq(pci_host_new_detached(NULL, &h), 0);
	cr_assert_eq(virtio_pci_new(NULL, NULL, NULL, &ops, &toy, "x", NULL, &t), -EINVAL);
	ops.device_id = 64;
	cr_assert_eq(virtio_pci_new(NULL, NULL, h, &ops, &toy, "x", NULL, &t), -EINVAL);
	ops = toy_ops;
	ops.num_queues = 0;
	cr_assert_eq(virtio_pci_new(NULL, NULL, h, &ops, &toy, "x", NULL, &t), -EINVAL);
	ops = toy_ops;
	ops.queue_max = 100; /* the core refuses it, after the function was built */
	cr_assert_eq(virtio_pci_new(NULL, NULL, h, &ops, &toy, "x", NULL, &t), -EINVAL);
	cr_assert_eq(toy.destroyed, 0);
	cr_assert_null(t);
	/* Nothing left on the host. */
	{
		uint32_t a = 0x80000800u, v = 0;
		pci_host_pio_write(h, 0, &a, 4);
		pci_host_pio_read(h, 4, &v, 4);
		cr_assert_eq(v, 0xffffffffu);
	}
	pci_host_free(h);
}

/* ---- the common configuration ------------------------------------------------------ */

Test(virtio_pci, handshake_and_queue_registers)
{
	struct rig r;

	rig_init(&r, NULL);
	ccw(&r, STATUS, S_ACK | S_DRV, 1);
	ccw(&r, DFSEL, 0, 4);
	cr_assert_eq(cc(&r, DF, 4), (uint32_t)(TOY_FEATURES | VIRTIO_TRANSPORT_FEATURES));
	ccw(&r, DFSEL, 1, 4);
	cr_assert_eq(cc(&r, DF, 4), (uint32_t)((TOY_FEATURES | VIRTIO_TRANSPORT_FEATURES) >> 32));
	cr_assert(cc(&r, DF, 4) & 1, "VERSION_1 offered");
	ccw(&r, DFSEL, 2, 4);
	cr_assert_eq(cc(&r, DF, 4), 0);
	cr_assert_eq(cc(&r, DFSEL, 4), 2, "selector reads back");

	/* Queue registers: defaults, a smaller power of two, bad sizes. */
	ccw(&r, QSEL, 1, 2);
	cr_assert_eq(cc(&r, QSEL, 2), 1);
	cr_assert_eq(cc(&r, QSIZE, 2), TOY_QMAX, "queue_size starts at the maximum");
	cr_assert_eq(cc(&r, QNOFF, 2), 1);
	cr_assert_eq(cc(&r, QMSIX, 2), NO_VECTOR);
	ccw(&r, QSIZE, 64, 2);
	cr_assert_eq(cc(&r, QSIZE, 2), 64);
	ccw(&r, QSIZE, 100, 2);
	cr_assert_eq(cc(&r, QSIZE, 2), 64, "not a power of two");
	ccw(&r, QSIZE, 512, 2);
	cr_assert_eq(cc(&r, QSIZE, 2), 64, "above queue_max");
	ccw(&r, QSIZE, 0, 2);
	cr_assert_eq(cc(&r, QSIZE, 2), 64);
	set_queue_addr(&r, QDESC, 0x123456789000ull);
	cr_assert_eq(cc(&r, QDESC, 8), 0x123456789000ull);
	cr_assert_eq(cc(&r, QDESC + 4, 4), 0x1234);
	ccw(&r, QDRIVER, 0xabcd0000ull, 8);
	cr_assert_eq(cc(&r, QDRIVER, 8), 0xabcd0000ull, "a 64-bit write");
	/* Read-only fields. */
	ccw(&r, NUMQ, 7, 2);
	cr_assert_eq(cc(&r, NUMQ, 2), TOY_QUEUES);
	ccw(&r, QNOFF, 9, 2);
	cr_assert_eq(cc(&r, QNOFF, 2), 1);
	/* Writes that are not one whole field are ignored. */
	ccw(&r, QSIZE, 0x20, 1);
	cr_assert_eq(cc(&r, QSIZE, 2), 64);
	ccw(&r, QSEL, 0x00000000u, 4);
	cr_assert_eq(cc(&r, QSEL, 2), 1, "a 4-byte write over queue_select and queue_size");
	cr_assert_gt(virtio_pci_test_bad_accesses(r.t), 0);
	/* A queue that does not exist. */
	ccw(&r, QSEL, 5, 2);
	cr_assert_eq(cc(&r, QSIZE, 2), 0, "no queue 5");
	cr_assert_eq(cc(&r, QENABLE, 2), 0);
	ccw(&r, QSIZE, 16, 2);
	ccw(&r, QENABLE, 1, 2);
	cr_assert_eq(cc(&r, QSIZE, 2), 0);
	cr_assert_eq(cc(&r, QENABLE, 2), 0);
	ccw(&r, QSEL, 0xffff, 2);
	cr_assert_eq(cc(&r, QSIZE, 2), 0);

	/* The whole handshake. */
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	cr_assert_eq(r.toy.activations, 1);
	cr_assert(r.toy.activated_features & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	cr_assert_eq(r.toy.activated_features, (TOY_FEATURES | VIRTIO_TRANSPORT_FEATURES) &
						       ~VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	ccw(&r, QSEL, 0, 2);
	cr_assert_eq(cc(&r, QENABLE, 2), 1);
	cr_assert_eq(cc(&r, QSIZE, 2), 64);
	/* After DRIVER_OK queue registers are fixed. */
	ccw(&r, QSIZE, 16, 2);
	set_queue_addr(&r, QDESC, 0x5000);
	cr_assert_eq(cc(&r, QSIZE, 2), 64);
	cr_assert_eq(cc(&r, QDESC, 8), r.q[0].desc);

	/* Device configuration through its structure; past its end reads 0. */
	wrb(&r, r.cap[CAP_DEVICE].off + 4, 0x11223344u, 4);
	cr_assert(!memcmp(r.toy.config + 4, "\x44\x33\x22\x11", 4));
	cr_assert_eq(rdb(&r, r.cap[CAP_DEVICE].off + 5, 2), 0x2233);
	cr_assert_eq(rdb(&r, r.cap[CAP_DEVICE].off + TOY_CONFIG, 4), 0);
	cr_assert_eq(rdb(&r, r.cap[CAP_DEVICE].off + 0xffc, 4), 0);
	/* config_generation moves with a config change. */
	{
		uint8_t g = (uint8_t)cc(&r, CFGGEN, 1);
		vmkit_virtio_lock(virtio_pci_dev(r.t));
		vmkit_virtio_config_changed(virtio_pci_dev(r.t));
		vmkit_virtio_unlock(virtio_pci_dev(r.t));
		cr_assert_neq(cc(&r, CFGGEN, 1), g);
	}
	rig_fini(&r);
}

Test(virtio_pci, features_must_include_version_1)
{
	struct rig r;

	rig_init(&r, NULL);
	ccw(&r, STATUS, S_ACK | S_DRV, 1);
	ccw(&r, GFSEL, 0, 4);
	ccw(&r, GF, 1, 4);
	ccw(&r, STATUS, S_ACK | S_DRV | S_FOK, 1);
	cr_assert_not(cc(&r, STATUS, 1) & S_FOK, "FEATURES_OK without VERSION_1");
	rig_fini(&r);
}

Test(virtio_pci, reset_restores_defaults)
{
	struct rig r;

	rig_init(&r, NULL);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	r.toy.resets = 0;
	ccw(&r, QSEL, 1, 2);
	ccw(&r, QMSIX, 1, 2);
	put_request(&r, 1);
	notify_queue(&r, 1, 2);
	cr_assert(line[r.gsi]);
	ccw(&r, STATUS, 0, 1);
	cr_assert_eq(cc(&r, STATUS, 1), 0);
	cr_assert_eq(r.toy.resets, 1);
	cr_assert_not(line[r.gsi], "reset left INTx asserted");
	cr_assert_eq(rdb(&r, r.cap[CAP_ISR].off, 1), 0);
	ccw(&r, QSEL, 1, 2);
	cr_assert_eq(cc(&r, QSIZE, 2), TOY_QMAX);
	cr_assert_eq(cc(&r, QENABLE, 2), 0);
	cr_assert_eq(cc(&r, QMSIX, 2), NO_VECTOR);
	cr_assert_eq(cc(&r, QDESC, 8), 0);
	cr_assert_eq(cc(&r, MSIXCFG, 2), NO_VECTOR);
	rig_fini(&r);
}

/* ---- notifications ----------------------------------------------------------------------- */

Test(virtio_pci, notify_dispatch_by_address)
{
	struct rig r;
	uint32_t id, len;

	rig_init(&r, NULL);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	put_request(&r, 1);
	notify_queue(&r, 1, 2);
	cr_assert_eq(r.toy.notified[1], 1);
	cr_assert_eq(r.toy.notified[0], 0);
	cr_assert(vqd_get_used(&r.q[1], &id, &len));
	cr_assert_eq(len, 4);
	/* Another width at the address works too (KVM's ioeventfd catches
	 * only 2-byte writes; the rest arrive here). */
	put_request(&r, 0);
	notify_queue(&r, 0, 4);
	cr_assert_eq(r.toy.notified[0], 1);
	cr_assert_eq(r.toy.completed, 2);
	/* Not a queue's address: nothing. */
	wrb(&r, r.cap[CAP_NOTIFY].off + 2, 0, 2);
	wrb(&r, r.cap[CAP_NOTIFY].off + TOY_QUEUES * r.notify_mult, 0, 2);
	wrb(&r, r.cap[CAP_NOTIFY].off + 0xffc, 0, 4);
	cr_assert_eq(r.toy.notified[0] + r.toy.notified[1], 2);
	/* Reads of the notify area are 0. */
	cr_assert_eq(rdb(&r, r.cap[CAP_NOTIFY].off, 4), 0);
	rig_fini(&r);
}

static void on_timeout(void *opaque, int fd, uint32_t events)
{
	bool *timed_out = opaque;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0)
		return;
	*timed_out = true;
}

Test(virtio_pci, eventfd_notifications_on_the_loop)
{
	struct vmkit_loop *loop;
	struct rig r;
	struct itimerspec its = { .it_value = { .tv_sec = 10 } };
	bool timed_out = false;
	uint64_t one = 1;
	int tfd, fd;

	cr_assert_eq(vmkit__loop_new(&loop), 0);
	rig_init(&r, loop);
	cr_assert_geq(virtio_pci_test_notify_fd(r.t, 0), 0);
	cr_assert_geq(virtio_pci_test_notify_fd(r.t, 1), 0);
	cr_assert_neq(virtio_pci_test_notify_fd(r.t, 0), virtio_pci_test_notify_fd(r.t, 1));
	cr_assert_eq(virtio_pci_test_notify_fd(r.t, TOY_QUEUES), -1);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);

	/* What KVM does on a 2-byte write to queue 1's notify address. */
	put_request(&r, 1);
	r.toy.stop_loop = loop;
	fd = virtio_pci_test_notify_fd(r.t, 1);
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
	vmkit__loop_del(loop, tfd);
	close(tfd);
	rig_fini(&r);
	vmkit__loop_free(loop);
}

/* ---- interrupts ---------------------------------------------------------------------------- */

Test(virtio_pci, isr_read_to_clear_and_intx)
{
	struct rig r;
	vmkit_virtio_dev *dev;

	rig_init(&r, NULL);
	dev = virtio_pci_dev(r.t);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	cr_assert_not(line[r.gsi]);
	put_request(&r, 0);
	notify_queue(&r, 0, 2);
	cr_assert(line[r.gsi], "used buffer without MSI-X: INTx");
	cr_assert(cfg(&r, 0x06, 2) & 0x08, "PCI status Interrupt Status");
	cr_assert_eq(n_msis, 0);
	cr_assert_eq(rdb(&r, r.cap[CAP_ISR].off, 1), 1, "queue interrupt bit");
	cr_assert_not(line[r.gsi], "reading the ISR lowers the line");
	cr_assert_not(cfg(&r, 0x06, 2) & 0x08);
	cr_assert_eq(rdb(&r, r.cap[CAP_ISR].off, 1), 0, "read to clear");
	/* Config change: bit 1. */
	vmkit_virtio_lock(dev);
	vmkit_virtio_config_changed(dev);
	vmkit_virtio_unlock(dev);
	cr_assert(line[r.gsi]);
	cr_assert_eq(rdb(&r, r.cap[CAP_ISR].off, 4), 2, "config interrupt bit");
	/* Interrupt Disable: ISR still set, no line. */
	cfgw(&r, 0x04, 0x0406, 2);
	put_request(&r, 0);
	notify_queue(&r, 0, 2);
	cr_assert_not(line[r.gsi]);
	cr_assert(cfg(&r, 0x06, 2) & 0x08);
	cfgw(&r, 0x04, 0x0006, 2);
	cr_assert(line[r.gsi], "Interrupt Disable cleared with an interrupt pending");
	cr_assert_eq(rdb(&r, r.cap[CAP_ISR].off, 1), 1);
	cr_assert_not(line[r.gsi]);
	/* Writes to the ISR do nothing. */
	put_request(&r, 0);
	notify_queue(&r, 0, 2);
	wrb(&r, r.cap[CAP_ISR].off, 0, 1);
	cr_assert(line[r.gsi]);
	cr_assert_eq(rdb(&r, r.cap[CAP_ISR].off, 1), 1);
	rig_fini(&r);
}

static void msix_entry(struct rig *r, unsigned v, uint64_t addr, uint32_t data, bool masked)
{
	uint64_t table = cfg(r, r->msix + 4, 4) & ~7u;

	wrb(r, table + 16 * v, (uint32_t)addr, 4);
	wrb(r, table + 16 * v + 4, (uint32_t)(addr >> 32), 4);
	wrb(r, table + 16 * v + 8, data, 4);
	wrb(r, table + 16 * v + 12, masked, 4);
}

Test(virtio_pci, msix_vectors_and_no_vector)
{
	struct rig r;
	vmkit_virtio_dev *dev;

	rig_init(&r, NULL);
	dev = virtio_pci_dev(r.t);
	for (unsigned v = 0; v <= TOY_QUEUES; v++)
		msix_entry(&r, v, 0xfee00000u + 0x1000 * v, 0x40 + v, false);
	cfgw(&r, r.msix + 3, 0x80, 1); /* MSI-X enable */
	cr_assert_eq(handshake_vec(&r, (const uint16_t[]){ 0, 1, 2 }) & S_DOK, S_DOK);
	/* Vector mapping: in range sticks, out of range reads NO_VECTOR. */
	ccw(&r, MSIXCFG, TOY_QUEUES + 1, 2);
	cr_assert_eq(cc(&r, MSIXCFG, 2), NO_VECTOR, "vector past the table must read NO_VECTOR");
	ccw(&r, MSIXCFG, 0, 2);
	cr_assert_eq(cc(&r, MSIXCFG, 2), 0);
	ccw(&r, QSEL, 1, 2);
	ccw(&r, QMSIX, 7, 2);
	cr_assert_eq(cc(&r, QMSIX, 2), NO_VECTOR);
	ccw(&r, QMSIX, 2, 2);
	cr_assert_eq(cc(&r, QMSIX, 2), 2);
	ccw(&r, QSEL, 0, 2);
	cr_assert_eq(cc(&r, QMSIX, 2), 1);

	put_request(&r, 1);
	notify_queue(&r, 1, 2);
	cr_assert_eq(n_msis, 1);
	cr_assert_eq(msis[0].data, 0x42, "queue 1 -> vector 2");
	cr_assert_eq(msis[0].addr, 0xfee02000u);
	cr_assert_not(line[r.gsi], "no INTx with MSI-X");
	cr_assert_eq(rdb(&r, r.cap[CAP_ISR].off, 1), 0, "no ISR queue bit with MSI-X");
	put_request(&r, 0);
	notify_queue(&r, 0, 2);
	cr_assert_eq(n_msis, 2);
	cr_assert_eq(msis[1].data, 0x41, "queue 0 -> vector 1");
	vmkit_virtio_lock(dev);
	vmkit_virtio_config_changed(dev);
	vmkit_virtio_unlock(dev);
	cr_assert_eq(n_msis, 3);
	cr_assert_eq(msis[2].data, 0x40, "config -> vector 0");
	cr_assert_eq(rdb(&r, r.cap[CAP_ISR].off, 1), 2, "the config bit is set even with MSI-X");

	/* NO_VECTOR: nothing at all. */
	ccw(&r, QSEL, 1, 2);
	ccw(&r, QMSIX, NO_VECTOR, 2);
	put_request(&r, 1);
	notify_queue(&r, 1, 2);
	cr_assert_eq(r.toy.completed, 3);
	cr_assert_eq(n_msis, 3);
	cr_assert_not(line[r.gsi]);
	/* A masked vector is held pending and sent on unmask. */
	ccw(&r, QMSIX, 2, 2);
	msix_entry(&r, 2, 0xfee02000u, 0x42, true);
	put_request(&r, 1);
	notify_queue(&r, 1, 2);
	cr_assert_eq(n_msis, 3);
	msix_entry(&r, 2, 0xfee02000u, 0x42, false);
	cr_assert_eq(n_msis, 4);
	/* MSI-X off again: INTx. */
	cfgw(&r, r.msix + 3, 0x00, 1);
	put_request(&r, 1);
	notify_queue(&r, 1, 2);
	cr_assert_eq(n_msis, 4);
	cr_assert(line[r.gsi]);
	rig_fini(&r);
}

/* ---- the PCI configuration access capability ------------------------------------------ */

static void window_set(struct rig *r, uint8_t bar, uint32_t off, uint32_t len)
{
	uint8_t c = r->cap[CAP_PCI_CFG].at;

	cfgw(r, c + 4, bar, 1);
	cfgw(r, c + 8, off, 4);
	cfgw(r, c + 12, len, 4);
}

Test(virtio_pci, pci_cfg_window_into_bar0)
{
	struct rig r;
	uint8_t c;

	rig_init(&r, NULL);
	c = r.cap[CAP_PCI_CFG].at;
	window_set(&r, 0, r.cap[CAP_COMMON].off + NUMQ, 2);
	cr_assert_eq(cfg(&r, c + 16, 2), TOY_QUEUES, "num_queues through the window");
	window_set(&r, 0, r.cap[CAP_COMMON].off + STATUS, 1);
	cfgw(&r, c + 16, S_ACK, 1);
	cr_assert_eq(cc(&r, STATUS, 1), S_ACK, "status written through the window");
	cr_assert_eq(cfg(&r, c + 16, 1), S_ACK);
	window_set(&r, 0, r.cap[CAP_DEVICE].off, 4);
	cfgw(&r, c + 16, 0xcafef00du, 4);
	cr_assert(!memcmp(r.toy.config, "\x0d\xf0\xfe\xca", 4));
	/* What the window refuses reads 0 and writes nothing. */
	window_set(&r, 1, r.cap[CAP_COMMON].off + NUMQ, 2);
	cr_assert_eq(cfg(&r, c + 16, 4), 0, "another BAR");
	window_set(&r, 0, r.cap[CAP_COMMON].off + NUMQ, 3);
	cr_assert_eq(cfg(&r, c + 16, 4), 0, "length 3");
	window_set(&r, 0, r.cap[CAP_COMMON].off + 1, 2);
	cr_assert_eq(cfg(&r, c + 16, 4), 0, "misaligned");
	window_set(&r, 0, 0xfffffffcu, 4);
	cr_assert_eq(cfg(&r, c + 16, 4), 0, "past the BAR");
	cfgw(&r, c + 16, 0xffffffffu, 4);
	window_set(&r, 0, r.cap[CAP_DEVICE].off, 4);
	cr_assert_eq(cfg(&r, c + 16, 4), 0xcafef00du);
	/* The capability's identity stays. */
	cfgw(&r, c + 3, 0x77, 1);
	cr_assert_eq(cfg(&r, c + 3, 1), CAP_PCI_CFG);
	rig_fini(&r);
}

/* ---- hostile driver ---------------------------------------------------------------------- */

Test(virtio_pci, hostile_driver)
{
	struct rig r;
	uint64_t x = 0x243f6a8885a308d3ull;
	uint8_t c;

	rig_init(&r, NULL);
	c = r.cap[CAP_PCI_CFG].at;
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	for (unsigned i = 0; i < 100000; i++) {
		uint64_t v;
		unsigned len, what;
		uint32_t off;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v = x * 0x9e3779b97f4a7c15ull;
		len = 1u << (x % 4);
		what = (unsigned)(x >> 8) % 10;
		off = (uint32_t)(x >> 16);
		switch (what) {
		case 0: case 1: case 2:
			/* The common configuration, biased to its fields. */
			off = r.cap[CAP_COMMON].off + off % 0x40;
			if (off % 0x40 == STATUS && (v & 0xff) == 0)
				v = 1; /* keep the device out of reset most of the time */
			pci_host_mmio_write(r.h, r.bar + off, &v, len);
			break;
		case 3:
			pci_host_mmio_read(r.h, r.bar + off % 0x9000, &v, len);
			break;
		case 4:
			pci_host_mmio_write(r.h, r.bar + off % 0x8000, &v, len);
			break;
		case 5:
			window_set(&r, (uint8_t)(v >> 60), (uint32_t)v, (uint32_t)(v >> 32) % 6);
			cfgw(&r, c + 16, (uint32_t)x, len > 4 ? 4 : len);
			cfg(&r, c + 16, 4);
			break;
		case 6:
			cfgw(&r, 0x40 + off % 0xc0, (uint32_t)v, (off % 0xc0) % 4 ? 1 : 4);
			break;
		case 7:
			ccw(&r, QSEL, v & 0x8000 ? v : v % 3, 2);
			ccw(&r, (v >> 20) & 1 ? QDESC : QDEVICE, v >> 32, 4);
			break;
		case 8:
			if (virtio_pci_dev(r.t)->status & S_DOK) {
				put_request(&r, (unsigned)(v % TOY_QUEUES));
				notify_queue(&r, (unsigned)(v % 3) % TOY_QUEUES, 2);
			}
			break;
		default:
			/* Queue rings pointing at real memory now and then. */
			ccw(&r, QSEL, v % 2, 2);
			set_queue_addr(&r, QDESC, r.q[v % 2].desc + (v & 0x10));
			break;
		}
		/* The BAR may have moved or stopped decoding: find it again. */
		if (cfg(&r, 0x10, 4) != r.bar || !(cfg(&r, 0x04, 2) & 2)) {
			cfgw(&r, 0x04, 0x0006, 2);
			cfgw(&r, 0x10, (uint32_t)r.bar, 4);
		}
	}
	cr_assert_eq(cfg(&r, 0x00, 4), 0x1040u << 16 | 0x1af4 | (uint32_t)TOY_ID << 16);
	/* The fuzz reached the device, not just the registers. */
	cr_assert_gt(r.toy.completed, 100, "only %u requests completed", r.toy.completed);
	rig_fini(&r);
}

/* ---- in a real VM: ioeventfds follow BAR 0 ------------------------------------------------ */

/* Is a 2-byte ioeventfd at @addr already assigned? KVM refuses a second
 * one that would catch the same writes. */
static bool ioeventfd_taken(vmkit_vm *vm, uint64_t addr)
{
	int fd = eventfd(0, EFD_CLOEXEC);
	int ret;

	cr_assert_geq(fd, 0);
	ret = vmkit__vm_ioeventfd(vm, addr, 2, false, false, 0, fd, true);
	if (ret == 0)
		cr_assert_eq(vmkit__vm_ioeventfd(vm, addr, 2, false, false, 0, fd, false), 0);
	close(fd);
	cr_assert(ret == 0 || ret == -EEXIST, "KVM_IOEVENTFD: %d", ret);
	return ret == -EEXIST;
}

Test(virtio_pci, vm_ioeventfds_follow_bar0)
{
	vmkit_host *host = kvmtest_host();
	vmkit_memory_region mr = VMKIT_MEMORY_REGION_INIT;
	struct vmkit_loop *loop;
	struct pci_host *h;
	struct virtio_pci *t;
	struct toy toy = { 0 };
	struct pci_device *d;
	uint64_t bar, nbar = 0xfebf8000u;
	vmkit_vm *vm;
	uint32_t v;

	cr_assert_eq(vmkit_vm_new(host, NULL, &vm), 0, "%s", vmkit_last_error());
	mr.gpa = 0;
	mr.length = 16 << 20;
	cr_assert_geq(vmkit_vm_add_memory(vm, &mr), 0);
	cr_assert_eq(vmkit__loop_new(&loop), 0);
	cr_assert_eq(pci_host_new(vm, &h), 0, "%s", vmkit_last_error());
	cr_assert_eq(virtio_pci_new(vm, loop, h, &toy_ops, &toy, "toy0", NULL, &t), 0, "%s",
		     vmkit_last_error());
	d = virtio_pci_test_function(t);
	bar = d->bar[0].addr;
	cr_assert_neq(bar, PCI_ADDR_NONE);
	/* Common configuration over the VM's MMIO bus. */
	v = 0;
	cr_assert(vmkit__bus_read(&vm->mmio, bar + 0x12, &v, 2));
	cr_assert_eq(v, TOY_QUEUES);
	for (unsigned q = 0; q < TOY_QUEUES; q++)
		cr_assert(ioeventfd_taken(vm, bar + 0x3000 + 4 * q), "queue %u has no ioeventfd", q);
	cr_assert_not(ioeventfd_taken(vm, bar + 0x3000 + 4 * TOY_QUEUES));

	/* Firmware moves the BAR (ports path): the ioeventfds move with it. */
	v = 0x80000000u | (uint32_t)d->slot << 11 | 0x10;
	cr_assert(vmkit__bus_write(&vm->pio, 0xcf8, &v, 4));
	v = (uint32_t)nbar;
	cr_assert(vmkit__bus_write(&vm->pio, 0xcfc, &v, 4));
	cr_assert_eq(d->bar[0].addr, nbar);
	for (unsigned q = 0; q < TOY_QUEUES; q++) {
		cr_assert_not(ioeventfd_taken(vm, bar + 0x3000 + 4 * q), "stale ioeventfd");
		cr_assert(ioeventfd_taken(vm, nbar + 0x3000 + 4 * q));
	}
	v = 0;
	cr_assert(vmkit__bus_read(&vm->mmio, nbar + 0x12, &v, 2));
	cr_assert_eq(v, TOY_QUEUES);
	/* Memory decode off: none left. */
	v = 0x80000000u | (uint32_t)d->slot << 11 | 0x04;
	cr_assert(vmkit__bus_write(&vm->pio, 0xcf8, &v, 4));
	v = 0;
	cr_assert(vmkit__bus_write(&vm->pio, 0xcfc, &v, 2));
	for (unsigned q = 0; q < TOY_QUEUES; q++)
		cr_assert_not(ioeventfd_taken(vm, nbar + 0x3000 + 4 * q));
	v = 2;
	cr_assert(vmkit__bus_write(&vm->pio, 0xcfc, &v, 2));
	cr_assert(ioeventfd_taken(vm, nbar + 0x3000));

	virtio_pci_free(t);
	cr_assert_eq(toy.destroyed, 1);
	cr_assert_not(ioeventfd_taken(vm, nbar + 0x3000), "ioeventfd left after free");
	pci_host_free(h);
	vmkit__loop_free(loop);
	vmkit_vm_free(vm);
	vmkit_host_free(host);
}

Test(virtio_pci, host_freed_before_the_transport)
{
	struct rig r;

	rig_init(&r, NULL);
	cr_assert_eq(handshake(&r), S_ACK | S_DRV | S_FOK | S_DOK);
	pci_host_free(r.h);
	/* The function is off the host: no access reaches it, and freeing
	 * the transport afterwards does not touch the freed host. */
	virtio_pci_free(r.t);
	cr_assert_eq(r.toy.destroyed, 1);
	vqd_mem_destroy(&r.m);
}
