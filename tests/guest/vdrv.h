/* SPDX-License-Identifier: MIT */
/*
 * vdrv: a minimal modern virtio driver for the test-guest kit, over both
 * transports vmkit offers, running at CPL3 (see kit.h):
 *
 *  - virtio-mmio version 2: device i at VDRV_MMIO_BASE + i * 0x1000,
 *    GSI VDRV_MMIO_GSI_BASE + i % 4 (level-triggered, active high);
 *  - virtio-pci (modern): PCI bus 0, found through ECAM at VDRV_ECAM_BASE
 *    (config mechanism #1 at 0xcf8 is used to cross-check discovery); BARs
 *    are pre-assigned by vmkit, the virtio vendor capabilities give the
 *    common/notify/ISR/device-config windows; MSI-X.
 *
 * Split virtqueues live in a bump-allocated heap in guest RAM
 * ([VDRV_HEAP_BASE, VDRV_HEAP_END)); the driver polls the used ring
 * (interrupts suppressed with VIRTQ_AVAIL_F_NO_INTERRUPT unless a queue
 * asks for them), with a timeout measured by the TSC (calibrated against
 * the LAPIC timer). VIRTIO_F_EVENT_IDX is never negotiated.
 */
#ifndef VMKIT_GUEST_VDRV_H
#define VMKIT_GUEST_VDRV_H

#include "kit.h"

#define VDRV_MMIO_BASE     0xd0000000ull
#define VDRV_MMIO_SIZE     0x1000ull
#define VDRV_MMIO_MAX      64u
#define VDRV_MMIO_GSI_BASE 20u
#define VDRV_ECAM_BASE     0xe0000000ull
#define VDRV_PCI_VENDOR    0x1af4u
#define VDRV_PCI_DEVICE(id) (0x1040u + (id))

/* Guest RAM the driver allocates rings and buffers from (never freed). */
#define VDRV_HEAP_BASE 0x400000ull
#define VDRV_HEAP_END  0x1000000ull

/* Device status and feature bits (VIRTIO 1.2, 2.1 and 6). */
#define VDRV_S_ACKNOWLEDGE 1u
#define VDRV_S_DRIVER      2u
#define VDRV_S_DRIVER_OK   4u
#define VDRV_S_FEATURES_OK 8u
#define VDRV_S_NEEDS_RESET 64u
#define VDRV_S_FAILED      128u
#define VDRV_F_VERSION_1   32
#define VDRV_BIT(n) (1ull << (n))

#define VDRV_DESC_F_NEXT  1u
#define VDRV_DESC_F_WRITE 2u
#define VDRV_AVAIL_F_NO_INTERRUPT 1u
#define VDRV_NO_VECTOR 0xffffu

enum vdrv_transport { VDRV_MMIO = 0, VDRV_PCI = 1 };

struct vdrv_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* One buffer of a request: device-readable unless @write. */
struct vdrv_buf {
	const void *addr;
	uint32_t len;
	bool write;
};

#define VDRV_MAX_QUEUES 8
#define VDRV_QUEUE_MAX_SIZE 256

struct vdrv_queue {
	uint16_t index, size;
	bool ready;
	bool interrupts;                /* don't set NO_INTERRUPT */
	volatile struct vdrv_desc *desc;
	volatile uint16_t *avail;       /* flags, idx, ring[size], used_event */
	volatile uint8_t *used;         /* flags, idx, ring[size]{id, len}, avail_event */
	uint16_t free_head, num_free;
	uint16_t avail_idx, last_used;
	uint16_t chain_len[VDRV_QUEUE_MAX_SIZE]; /* descriptors of the chain at a head */
	uint64_t notify_addr;
	uint32_t notify_width;          /* 2 (pci) or 4 (mmio) */
};

struct vdrv {
	int transport;
	uint32_t device_id;
	uint64_t offered, features;
	/* mmio */
	uint64_t base;
	uint32_t mmio_index, gsi;
	/* pci */
	uint32_t slot;
	uint64_t cfg;                   /* ECAM address of the function */
	uint64_t common, notify, isr, devcfg;
	uint32_t notify_mul, devcfg_len;
	uint8_t msix_cap;
	uint16_t msix_size;
	uint64_t msix_table;
	uint16_t num_queues;
	struct vdrv_queue q[VDRV_MAX_QUEUES];
};

/* ---- time ------------------------------------------------------------------ */
/* Calibrate the TSC against the LAPIC timer (once; later calls return at
 * once). Leaves the LAPIC timer stopped. */
void vdrv_time_init(void);
uint64_t vdrv_now_us(void);
void vdrv_delay_us(uint64_t us);

/* ---- memory ------------------------------------------------------------------ */
/* Zeroed memory from the heap, @align a power of two; NULL when full. */
void *vdrv_alloc(size_t size, size_t align);

/* ---- PCI config space ------------------------------------------------------------ */
/* ECAM base of bus 0 (VDRV_ECAM_BASE; a guest may change it before use,
 * e.g. to run under QEMU's q35 with its MMCONFIG at 0xb0000000). */
extern uint64_t vdrv_ecam_base;
uint32_t vdrv_pci_read32(uint32_t slot, uint32_t off);   /* ECAM */
uint16_t vdrv_pci_read16(uint32_t slot, uint32_t off);
uint8_t vdrv_pci_read8(uint32_t slot, uint32_t off);
void vdrv_pci_write16(uint32_t slot, uint32_t off, uint16_t v);
void vdrv_pci_write32(uint32_t slot, uint32_t off, uint32_t v);
uint32_t vdrv_pci_cf8_read32(uint32_t slot, uint32_t off); /* mechanism #1 */

/* ---- discovery and set-up ---------------------------------------------------------- */
/* Find the @nth (0-based) device with virtio id @device_id on @transport
 * and fill @d's location (no register is written). 0, or -1 if absent. */
int vdrv_find(struct vdrv *d, int transport, uint32_t device_id, uint32_t nth);
/* Reset, ACKNOWLEDGE, DRIVER, negotiate @wanted & offered (VERSION_1 is
 * always asked for and must be offered), FEATURES_OK and check it stuck.
 * 0 or -1 (after printing why). */
int vdrv_init(struct vdrv *d, uint64_t wanted);
/* Size (at most @max_size and the device's maximum), allocate and enable
 * queue @index. With @msix_entry != VDRV_NO_VECTOR (pci) the queue's MSI-X
 * vector is set to that entry, and interrupts are not suppressed. */
int vdrv_queue_setup(struct vdrv *d, uint16_t index, uint16_t max_size, uint16_t msix_entry);
/* Ask for used-buffer interrupts on @q (clear NO_INTERRUPT) or not. */
void vdrv_queue_interrupts(struct vdrv_queue *q, bool on);
/* Set DRIVER_OK; -1 if the device then reports NEEDS_RESET or FAILED. */
int vdrv_driver_ok(struct vdrv *d);
uint8_t vdrv_status(struct vdrv *d);
void vdrv_reset(struct vdrv *d);

/* Device config space (read with the generation-count loop for 64 bits). */
uint8_t vdrv_cfg8(struct vdrv *d, uint32_t off);
uint16_t vdrv_cfg16(struct vdrv *d, uint32_t off);
uint32_t vdrv_cfg32(struct vdrv *d, uint32_t off);
uint64_t vdrv_cfg64(struct vdrv *d, uint32_t off);
void vdrv_cfg_write32(struct vdrv *d, uint32_t off, uint32_t v);

/* ---- requests ------------------------------------------------------------------------ */
/* Put a chain of @n buffers on @q (readable ones first). Returns the head
 * index, or -1 if the queue lacks free descriptors. Not yet visible to the
 * device: vdrv_kick() publishes and notifies. */
int vdrv_add(struct vdrv_queue *q, const struct vdrv_buf *bufs, uint32_t n);
void vdrv_kick(struct vdrv *d, struct vdrv_queue *q);
/* The next used element: its head (and written length), or -1 if none. */
int vdrv_poll(struct vdrv_queue *q, uint32_t *len);
/* vdrv_poll until an element arrives or @timeout_ms passes (-1). */
int vdrv_wait(struct vdrv_queue *q, uint32_t *len, uint64_t timeout_ms);
/* add + kick + wait; returns the written length or -1. */
long vdrv_call(struct vdrv *d, struct vdrv_queue *q, const struct vdrv_buf *bufs, uint32_t n,
	       uint64_t timeout_ms);

/* ---- interrupts ------------------------------------------------------------------------ */
/* Read and acknowledge the interrupt status (mmio: InterruptStatus then
 * InterruptACK; pci: the ISR byte, cleared by the read). Usable at CPL0. */
uint32_t vdrv_isr_ack(struct vdrv *d);
/* pci: enable MSI-X and point table entry @entry at LAPIC @apic_id,
 * @vector (fixed, edge), unmasked. -1 without MSI-X or @entry too big. */
int vdrv_msix_setup(struct vdrv *d, uint16_t entry, uint32_t apic_id, uint8_t vector);
/* pci: the config-change MSI-X vector (read back: VDRV_NO_VECTOR when the
 * device refused it). */
uint16_t vdrv_msix_config(struct vdrv *d, uint16_t entry);

const char *vdrv_transport_name(int transport);

#endif
