/* SPDX-License-Identifier: MIT */
/* Virtio inside vmkit (VIRTIO 1.2, modern devices only):
 *
 *  - the split virtqueue engine (virtqueue.c): pure functions over guest
 *    memory (struct vmkit_gmem), no KVM, no threads; unit-tested over a
 *    fake guest memory;
 *  - the device core (core.c): what both transports share: feature
 *    negotiation, the status handshake, queue registers, the config space,
 *    interrupts through the transport, reset, NEEDS_RESET, save/restore;
 *    it implements the public vmkit_virtq_* / vmkit_virtio_* calls;
 *  - the transports (mmio.c, pci.c over lib/pci), which own the register
 *    layout, notifications (ioeventfd) and interrupts;
 *  - the devices (blk.c, console.c, rng.c, balloon.c, net.c), each a
 *    vmkit_virtio_ops table exactly as an embedder's device is.
 *
 * Threads and locks: every struct vmkit_virtio_dev has one mutex, @lock.
 * Transports take it around every register access (vCPU threads) and
 * around queue_notify dispatch (I/O thread); device callbacks therefore
 * always run with it held. Lock order: dev->lock, then anything inside
 * the device; never the reverse. */
#ifndef VMKIT_DEVICES_VIRTIO_H
#define VMKIT_DEVICES_VIRTIO_H

#include "internal.h"
#include "vmkit/device.h"

/* ---- constants from the specification ----------------------------------- */

/* Device status (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1u
#define VIRTIO_STATUS_DRIVER 2u
#define VIRTIO_STATUS_DRIVER_OK 4u
#define VIRTIO_STATUS_FEATURES_OK 8u
#define VIRTIO_STATUS_NEEDS_RESET 64u
#define VIRTIO_STATUS_FAILED 128u

/* Reserved feature bits (6). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED 34
#define VIRTIO_F_IN_ORDER 35
#define VIRTIO_F_ORDER_PLATFORM 36
#define VIRTIO_F_SR_IOV 37
#define VIRTIO_F_NOTIFICATION_DATA 38
#define VIRTIO_F_RING_RESET 40
#define VIRTIO_BIT(n) (1ull << (n))
/* What the core offers on top of a device's own bits. */
#define VIRTIO_TRANSPORT_FEATURES \
	(VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
	 VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))
/* Device-specific bits a device may offer: 0-23 and 50-63 (2.2). */
#define VIRTIO_DEVICE_FEATURE_MASK (0x00ffffffull | (~0ull << 50))

/* Split virtqueue layout (2.7). */
#define VIRTQ_DESC_F_NEXT 1u
#define VIRTQ_DESC_F_WRITE 2u
#define VIRTQ_DESC_F_INDIRECT 4u
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
#define VIRTQ_USED_F_NO_NOTIFY 1u

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* Interrupt status bits (ISR, 4.1.4.5 / 4.2.2). */
#define VIRTIO_ISR_QUEUE 1u
#define VIRTIO_ISR_CONFIG 2u

/* MSI-X "no vector". */
#define VIRTIO_MSI_NO_VECTOR 0xffffu

/* ---- the split virtqueue engine (virtqueue.c) ---------------------------- */

/* Longest descriptor chain accepted, direct and indirect descriptors
 * together (also bounded by the queue size for a direct chain, and by the
 * indirect table's own size). Longer is malformed. */
#define VIRTQ_MAX_CHAIN 1024u
/* Largest indirect table in bytes (VIRTQ_MAX_CHAIN descriptors). */
#define VIRTQ_MAX_INDIRECT_BYTES (VIRTQ_MAX_CHAIN * 16u)

struct virtq {
	/* Set by the transport from the driver's register writes. */
	uint16_t size;          /* queue size; a power of two, 1..32768 */
	bool ready;             /* the driver enabled the queue */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t msix_vector;   /* virtio-pci only */
	/* Negotiated at activation. */
	bool event_idx, indirect;
	/* Engine state (saved/restored). */
	uint16_t last_avail;    /* next avail->ring slot to take (free-running) */
	uint16_t used_idx;      /* value of used->idx we will publish next (free-running) */
	uint16_t signalled_used;/* used_idx at the last interrupt (event idx) */
	bool signalled_valid;
	bool broken;            /* a malformed chain was seen: the queue is dead */
	uint32_t inflight;      /* popped, not yet pushed */
	/* Host pointers to the rings, resolved by virtq_start(). */
	volatile struct virtq_desc *desc;
	volatile uint16_t *avail;  /* flags, idx, ring[size], used_event */
	volatile uint8_t *used;    /* flags (u16), idx (u16), ring[size] {u32 id, u32 len}, avail_event (u16) */
};

/* Check the rings the driver configured and resolve them to host memory:
 * @size a power of two in 1..32768; desc 16-byte, avail 2-byte, used
 * 4-byte aligned; each ring wholly inside one guest-memory region.
 * -EINVAL/-EFAULT (with a message) when not. Keeps last_avail/used_idx
 * (call virtq_reset first for a fresh start). */
int virtq_start(struct virtq *vq, const struct vmkit_gmem *mem);
/* Forget everything (reset): registers, indices, pointers. */
void virtq_reset(struct virtq *vq);
/* Is there an available chain we have not taken? */
bool virtq_has_work(const struct virtq *vq);
/* Take the next chain. 1: *@out is a malloc'd element (freed by
 * virtq_elem_free); 0: nothing available (or the queue is not started or
 * broken); < 0: malformed (a loop, an index beyond the queue size, a chain
 * longer than allowed, a buffer outside guest memory, a zero-length or
 * nested indirect table, a device-readable descriptor after a writable
 * one, avail->idx more than @size ahead): @vq->broken is set, nothing
 * is returned, and the caller puts the device into NEEDS_RESET. Each
 * descriptor's buffer is split at region boundaries into iovecs. */
int virtq_pop(struct virtq *vq, const struct vmkit_gmem *mem, uint16_t queue_index,
	      vmkit_virtq_elem **out);
/* Give back @e, the chain taken last (LIFO) and not pushed: last_avail
 * and inflight go back by one, so the next virtq_pop takes the same
 * chain again. -EINVAL (nothing changes) when @e is not the latest
 * outstanding element of @vq. The caller frees @e. */
int virtq_unpop(struct virtq *vq, const vmkit_virtq_elem *e);
/* Publish a used element (@head, @len bytes written) and advance used->idx
 * (with a release barrier). -EINVAL if @head >= size or nothing is in
 * flight. */
int virtq_push(struct virtq *vq, uint16_t head, uint32_t len);
/* Should the device interrupt the driver now (after pushes)? Honours
 * VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX (2.7.10), and
 * records what was signalled. A full barrier is taken first. */
bool virtq_should_notify(struct virtq *vq);
/* Ask the driver not to notify us (while we are draining) or to notify
 * again: used->flags NO_NOTIFY, or avail_event with EVENT_IDX. After
 * enabling, call virtq_has_work again (a barrier is taken) to close the
 * race with a driver that added work meanwhile. */
void virtq_set_notification(struct virtq *vq, bool enable);
void virtq_elem_free(vmkit_virtq_elem *e);

/* ---- the device core (core.c) ------------------------------------------- */

struct virtio_transport {
	/* Interrupt the driver: a used buffer on @queue, or (@config) a config
	 * change. Called with dev->lock held, from any thread. */
	void (*interrupt)(void *ctx, struct vmkit_virtio_dev *dev, bool config, uint16_t queue);
	/* Dispatch @queue again on a later turn of the I/O loop (signal its
	 * notify eventfd). -ENOTSUP when the queue has none. Any thread. */
	int (*kick_later)(void *ctx, struct vmkit_virtio_dev *dev, uint16_t queue);
};

struct vmkit_virtio_dev {
	pthread_mutex_t lock;
	const vmkit_virtio_ops *ops;
	void *opaque;
	vmkit_machine *machine;         /* may be NULL in unit tests */
	const struct vmkit_gmem *mem;
	const struct virtio_transport *tr;
	void *tr_ctx;
	char name[32];                  /* for errors and logs: "virtio-blk0" */
	bool keep_opaque;               /* destroy without ops->destroy (the
					 * embedder keeps its device: the
					 * machine was never built) */

	/* Driver-visible state (saved/restored). */
	uint8_t status;
	uint64_t device_features;       /* ops->features | VIRTIO_TRANSPORT_FEATURES */
	uint64_t driver_features;
	uint32_t device_features_sel, driver_features_sel;
	uint16_t queue_sel;
	uint16_t num_queues;
	uint32_t config_generation;
	uint8_t isr;                    /* VIRTIO_ISR_* (read-to-clear on pci) */
	uint16_t config_msix_vector;
	bool activated;                 /* ops->activate succeeded */
	struct virtq vq[VMKIT_VIRTIO_MAX_QUEUES];
};

/* Set up @dev for @ops/@opaque (validates the ops table: size, queue
 * count and sizes, config size, feature bits; -EINVAL with a message).
 * @mem is where the queues live. */
int virtio_dev_init(struct vmkit_virtio_dev *dev, const vmkit_virtio_ops *ops, void *opaque,
		    const struct vmkit_gmem *mem, const struct virtio_transport *tr, void *tr_ctx,
		    const char *name);
void virtio_dev_destroy(struct vmkit_virtio_dev *dev);  /* calls ops->destroy */

/* Register-level operations, called by the transports with dev->lock held. */
uint32_t virtio_dev_read_device_features(struct vmkit_virtio_dev *dev);  /* the selected 32 bits */
void virtio_dev_write_driver_features(struct vmkit_virtio_dev *dev, uint32_t v);
uint32_t virtio_dev_read_driver_features(struct vmkit_virtio_dev *dev);
/* A status write: 0 resets; FEATURES_OK is kept only if the driver's
 * features are a subset of the device's and include VERSION_1; DRIVER_OK
 * starts every ready queue (a bad ring sets NEEDS_RESET) and calls
 * ops->activate. Clearing bits other than by a reset is ignored. */
void virtio_dev_write_status(struct vmkit_virtio_dev *dev, uint8_t status);
void virtio_dev_reset(struct vmkit_virtio_dev *dev);
/* Queue registers of dev->vq[dev->queue_sel]; writes are ignored once the
 * queue is enabled or after DRIVER_OK, as the spec says. */
struct virtq *virtio_dev_selected_queue(struct vmkit_virtio_dev *dev); /* NULL if sel out of range */
/* The selected queue for a write of size/desc/avail/used/ready, or NULL
 * when the write must be ignored: selector out of range, the queue
 * already enabled, or DRIVER_OK set. (msix_vector is the transport's to
 * write through virtio_dev_selected_queue.) A size is checked (power of
 * two, <= queue_max) when DRIVER_OK starts the queue. */
struct virtq *virtio_dev_queue_for_write(struct vmkit_virtio_dev *dev);
uint16_t virtio_dev_queue_max(const struct vmkit_virtio_dev *dev);
/* Device config space; out-of-range parts read as zero / are dropped. */
void virtio_dev_config_read(struct vmkit_virtio_dev *dev, uint32_t off, void *data, uint32_t len);
void virtio_dev_config_write(struct vmkit_virtio_dev *dev, uint32_t off, const void *data,
			     uint32_t len);
/* The driver notified @queue: takes dev->lock and dispatches to
 * ops->queue_notify when the device is live and the queue started. For
 * the I/O thread (ioeventfd) and the transports' register fallback
 * (dev->lock is recursive, so a transport holding it may call this). */
void virtio_dev_kick(struct vmkit_virtio_dev *dev, uint16_t queue);

/* Snapshot of the core state (features, status, queue registers and
 * indices, config generation, ISR, vectors) followed by the device's own
 * blob (ops->save). */
int virtio_dev_save(struct vmkit_virtio_dev *dev, uint8_t **out, size_t *len);
/* Load it (before the machine runs): validates everything, restarts the
 * queues against @mem, calls ops->restore. */
int virtio_dev_restore(struct vmkit_virtio_dev *dev, const uint8_t *data, size_t len);

/* ---- transports ------------------------------------------------------------ */

struct vmkit_loop;
struct x86_buf;

/* virtio-mmio version 2 (4.2.2) in a 4 KiB window at @base, interrupting
 * through @gsi (level-triggered, shared; KVM_IRQ_LINE). Notifications
 * arrive through one ioeventfd per queue (datamatch on the queue index at
 * QueueNotify) on @loop; a notify write that KVM did not catch is handled
 * on the vCPU thread. Creates the device core itself, which owns @opaque
 * from then on (virtio_mmio_free calls ops->destroy); on failure
 * ops->destroy has not been called. */
#define VIRTIO_MMIO_SIZE 0x1000u
struct virtio_mmio;
int virtio_mmio_new(vmkit_vm *vm, struct vmkit_loop *loop, uint64_t base, uint32_t gsi,
		    const vmkit_virtio_ops *ops, void *opaque, const char *name,
		    vmkit_machine *machine, struct virtio_mmio **out);
void virtio_mmio_free(struct virtio_mmio *t);
struct vmkit_virtio_dev *virtio_mmio_dev(struct virtio_mmio *t);
/* The DSDT device (LNRO0005, _UID @uid, Memory32Fixed + Interrupt). */
void virtio_mmio_dsdt(const struct virtio_mmio *t, uint32_t uid, struct x86_buf *sb);
/* "virtio_mmio.device=4K@0xd0000000:20" for kernels that read it: its
 * length, or -ENOSPC when it does not fit in @len bytes. */
int virtio_mmio_cmdline(const struct virtio_mmio *t, char *buf, size_t len);

/* virtio-pci (modern, 4.1) is in pci.c on top of lib/pci/pci.h. */
struct pci_host;
struct virtio_pci;
int virtio_pci_new(vmkit_vm *vm, struct vmkit_loop *loop, struct pci_host *host,
		   const vmkit_virtio_ops *ops, void *opaque, const char *name,
		   vmkit_machine *machine, struct virtio_pci **out);
void virtio_pci_free(struct virtio_pci *t);
struct vmkit_virtio_dev *virtio_pci_dev(struct virtio_pci *t);

#endif
