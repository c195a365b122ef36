/* SPDX-License-Identifier: MIT */
/**
 * vmkit/device.h - devices of a machine: the built-in virtio devices
 * (block, console, entropy, balloon, network, vsock), their transports, and the interface
 * through which an embedder plugs in a virtio device of its own. The
 * built-in devices use this same interface.
 *
 * Threads: a virtio device's queue handlers, activate and reset run on the
 * machine's I/O thread or on the vCPU thread that wrote the register
 * (config_read/config_write, reset), always with the device's lock held,
 * so a device never sees two of its callbacks at once. The vmkit_virtq_*
 * calls may only be made from inside a callback (or from the device's own
 * threads with vmkit_virtio_lock()/unlock() around them).
 */
#ifndef VMKIT_DEVICE_H
#define VMKIT_DEVICE_H

#include <sys/uio.h>

#include "machine.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How a virtio device is attached to the guest. */
typedef enum vmkit_virtio_transport {
	/** virtio-pci (modern) on the PCI host bridge; MSI-X with INTx fallback. */
	VMKIT_VIRTIO_PCI = 0,
	/** virtio-mmio version 2, announced in the ACPI DSDT (LNRO0005). */
	VMKIT_VIRTIO_MMIO = 1,
} vmkit_virtio_transport;

/* VIRTIO device ids (VIRTIO 1.2, 5). */
#define VMKIT_VIRTIO_ID_NET 1
#define VMKIT_VIRTIO_ID_BLOCK 2
#define VMKIT_VIRTIO_ID_CONSOLE 3
#define VMKIT_VIRTIO_ID_RNG 4
#define VMKIT_VIRTIO_ID_BALLOON 5
#define VMKIT_VIRTIO_ID_VSOCK 19

/** Most queues a device may have. */
#define VMKIT_VIRTIO_MAX_QUEUES 64
/** Largest queue size (split virtqueue). */
#define VMKIT_VIRTQ_MAX_SIZE 32768u

/** A virtio device instance inside a machine (owned by the machine). */
typedef struct vmkit_virtio_dev vmkit_virtio_dev;

/**
 * One request taken off a virtqueue: the descriptor chain as host iovecs
 * that point straight into guest memory. @out are the device-readable
 * buffers (driver to device) in chain order, @in the device-writable ones.
 * A descriptor that spans two memory regions yields two iovecs.
 */
typedef struct vmkit_virtq_elem {
	uint16_t head;      /**< head descriptor index (what the used ring gets) */
	uint16_t queue;     /**< queue index it came from */
	uint32_t n_out;     /**< number of @out iovecs */
	uint32_t n_in;      /**< number of @in iovecs */
	uint32_t reserved;  /**< vmkit's own (where the chain was taken from, for vmkit_virtq_unpop()): leave it alone */
	uint64_t out_len;   /**< bytes readable in total */
	uint64_t in_len;    /**< bytes writable in total */
	struct iovec *out;
	struct iovec *in;
} vmkit_virtq_elem;

/**
 * What a virtio device type provides. vmkit adds the transport features
 * (VIRTIO_F_VERSION_1, which is required, RING_EVENT_IDX, INDIRECT_DESC)
 * and does the feature negotiation, status handshake and queue set-up.
 * The table must stay valid while any machine uses it.
 */
typedef struct vmkit_virtio_ops {
	uint32_t size;          /**< sizeof(vmkit_virtio_ops) */
	uint32_t device_id;     /**< VMKIT_VIRTIO_ID_* or any VIRTIO device id */
	uint16_t num_queues;    /**< 1..VMKIT_VIRTIO_MAX_QUEUES */
	uint16_t queue_max;     /**< largest queue size, a power of two <= 32768 */
	uint32_t config_size;   /**< bytes of device config space (<= 4096) */
	uint64_t features;      /**< device feature bits offered (bits 0-23, 50+) */
	/** Read/write device config space; @offset + @len <= config_size
	 * (vmkit checks). Called with the device lock held. */
	void (*config_read)(void *opaque, uint32_t offset, void *data, uint32_t len);
	void (*config_write)(void *opaque, uint32_t offset, const void *data, uint32_t len);
	/** The driver set DRIVER_OK with @features negotiated. Return < 0 to
	 * refuse (the device then reports NEEDS_RESET). */
	int (*activate)(void *opaque, vmkit_virtio_dev *dev, uint64_t features);
	/** Queue @queue was notified (I/O thread). Pop, handle, push. */
	void (*queue_notify)(void *opaque, vmkit_virtio_dev *dev, uint16_t queue);
	/** The driver reset the device: drop every request in flight and
	 * return to the state before activate. */
	void (*reset)(void *opaque, vmkit_virtio_dev *dev);
	/** Device state for snapshots: write at most @cap bytes into @buf and
	 * return the length, or the length needed (> @cap) to be called again,
	 * or < 0. NULL: the device has no state beyond its queues. */
	long (*save)(void *opaque, void *buf, size_t cap);
	/** Load a blob save() produced. Must validate it fully. activate is
	 * not called again for a device saved after DRIVER_OK: the blob must
	 * carry whatever the device needs to serve its queues (the next
	 * queue_notify hands it @dev). */
	int (*restore)(void *opaque, const void *buf, size_t len);
	/** The machine is being freed: release @opaque. May be NULL. */
	void (*destroy)(void *opaque);
} vmkit_virtio_ops;

/**
 * Add a virtio device of the embedder's own type to a machine
 * configuration. Once a machine is built from @cfg, @opaque belongs to
 * it: vmkit_machine_free() calls ops->destroy. If vmkit_machine_new()
 * fails, destroy is not called and @opaque stays the caller's. So build
 * at most one machine from a configuration with such devices. Since: 0.1
 */
VMKIT_EXPORT int vmkit_machine_config_add_virtio(vmkit_machine_config *cfg,
						 const vmkit_virtio_ops *ops, void *opaque,
						 vmkit_virtio_transport transport);

/**
 * Take the next available request off @queue. Returns 1 and sets *@elem
 * (free it with vmkit_virtq_push() or vmkit_virtq_elem_free()), 0 when the
 * queue is empty or not ready, or < 0 when the driver put a malformed
 * chain there (the device then reports NEEDS_RESET and the queue stops).
 * Since: 0.1
 */
VMKIT_EXPORT int vmkit_virtq_pop(vmkit_virtio_dev *dev, uint16_t queue, vmkit_virtq_elem **elem);
/**
 * Return @elem to the driver through the used ring with @written bytes
 * written into its @in buffers, and free it. Does not interrupt the
 * guest: call vmkit_virtq_notify() after a batch. Since: 0.1
 */
VMKIT_EXPORT int vmkit_virtq_push(vmkit_virtio_dev *dev, vmkit_virtq_elem *elem,
				  uint32_t written);
/**
 * Give @elem back to its queue untouched, as if it had never been taken:
 * the next vmkit_virtq_pop() returns the same chain again, and @elem is
 * freed. For a device that took chains and finds it cannot use them yet
 * (a receive queue with too few buffers for a frame, a backend that is
 * full). Only the element taken last and still outstanding may go back,
 * so several go back in the reverse order of their pops (LIFO); an
 * element that is not the latest (another was popped after it) is
 * refused with -EINVAL and stays the caller's. Elements taken before a
 * reset never go back (free them in ops->reset). The driver is asked for
 * nothing new: one that adds chains notifies as usual (with
 * VIRTIO_F_RING_EVENT_IDX the notification point stays past the chains
 * given back, provided the device's last pop found the queue empty), so
 * a device waiting for more buffers resumes on that notification. With
 * the device lock held, like the other vmkit_virtq_* calls. Since: 0.1
 */
VMKIT_EXPORT int vmkit_virtq_unpop(vmkit_virtio_dev *dev, vmkit_virtq_elem *elem);
/** Call queue_notify for @queue again on a later turn of the I/O loop.
 * A device that stops after a bounded batch (so that one busy queue
 * cannot hold the I/O thread) calls this when work is left. Since: 0.1 */
VMKIT_EXPORT int vmkit_virtq_kick_later(vmkit_virtio_dev *dev, uint16_t queue);
/** Free an element without returning it (the device is being reset). */
VMKIT_EXPORT void vmkit_virtq_elem_free(vmkit_virtq_elem *elem);
/** Interrupt the guest for @queue's used buffers unless the driver
 * suppressed it (VIRTIO_F_RING_EVENT_IDX / NO_INTERRUPT). Since: 0.1 */
VMKIT_EXPORT int vmkit_virtq_notify(vmkit_virtio_dev *dev, uint16_t queue);
/** Tell the driver the device config space changed. Since: 0.1 */
VMKIT_EXPORT void vmkit_virtio_config_changed(vmkit_virtio_dev *dev);
/** Put the device into DEVICE_NEEDS_RESET (an unrecoverable error). */
VMKIT_EXPORT void vmkit_virtio_set_needs_reset(vmkit_virtio_dev *dev);
/** Take/release the device lock from a thread of the device's own. */
VMKIT_EXPORT void vmkit_virtio_lock(vmkit_virtio_dev *dev);
VMKIT_EXPORT void vmkit_virtio_unlock(vmkit_virtio_dev *dev);
/** The machine the device belongs to. */
VMKIT_EXPORT vmkit_machine *vmkit_virtio_machine(vmkit_virtio_dev *dev);

/** Also list the virtio-mmio devices on the kernel command line
 * (`virtio_mmio.device=4K@0xd0000000:20`), for kernels without ACPI or
 * built to read it; they are always in the ACPI DSDT. Default off: a
 * kernel reading both would find each device twice. Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_config_set_virtio_mmio_cmdline(vmkit_machine_config *cfg,
							      bool enabled);

/* ---- built-in devices --------------------------------------------------- */

/** A virtio-blk disk. Initialise with VMKIT_DISK_CONFIG_INIT. */
typedef struct vmkit_disk_config {
	uint32_t size;          /**< sizeof(vmkit_disk_config) */
	uint32_t transport;     /**< vmkit_virtio_transport */
	const char *path;       /**< raw image file */
	bool readonly;          /**< offer VIRTIO_BLK_F_RO; the file is opened read-only */
	const char *serial;     /**< ID string (at most 20 bytes), or NULL */
	uint32_t block_size;    /**< logical block size: 512 (default) or a power of two up to 4096 */
	uint32_t reserved;
} vmkit_disk_config;
#define VMKIT_DISK_CONFIG_INIT { sizeof(vmkit_disk_config), VMKIT_VIRTIO_PCI, NULL, false, NULL, 512, 0 }
/** Add a disk (the strings are copied). Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_config_add_disk(vmkit_machine_config *cfg,
					       const vmkit_disk_config *disk);

/** virtio-console: port 0 is the console on @in_fd/@out_fd (-1: none). */
VMKIT_EXPORT int vmkit_machine_config_set_virtio_console(vmkit_machine_config *cfg,
							 vmkit_virtio_transport transport,
							 int in_fd, int out_fd);
/** A further named console port (VIRTIO_CONSOLE_F_MULTIPORT) on fds. */
VMKIT_EXPORT int vmkit_machine_config_add_console_port(vmkit_machine_config *cfg,
						       const char *name, int in_fd, int out_fd);
/** virtio-rng; @bytes_per_sec 0 for no limit. */
VMKIT_EXPORT int vmkit_machine_config_set_rng(vmkit_machine_config *cfg,
					      vmkit_virtio_transport transport,
					      uint64_t bytes_per_sec);
/** virtio-balloon, with free page reporting and deflate-on-OOM. */
VMKIT_EXPORT int vmkit_machine_config_set_balloon(vmkit_machine_config *cfg,
						  vmkit_virtio_transport transport);

/** Balloon: ask the guest to give back memory so that @target_bytes are
 * in the balloon (rounded down to 4 KiB pages). Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_balloon_set_target(vmkit_machine *m, uint64_t target_bytes);
/** Balloon: bytes the guest has put into the balloon so far. */
VMKIT_EXPORT int vmkit_machine_balloon_get_actual(vmkit_machine *m, uint64_t *bytes);
/** The guest's latest memory statistics (VIRTIO_BALLOON_S_*); fields the
 * guest never sent are UINT64_MAX. */
typedef struct vmkit_balloon_stats {
	uint32_t size; /**< sizeof(vmkit_balloon_stats), set by the caller */
	uint32_t reserved;
	uint64_t updates;          /**< how many stats buffers arrived */
	uint64_t swap_in, swap_out, major_faults, minor_faults;
	uint64_t free_memory, total_memory, available_memory;
	uint64_t disk_caches, hugetlb_allocations, hugetlb_failures;
} vmkit_balloon_stats;
VMKIT_EXPORT int vmkit_machine_balloon_get_stats(vmkit_machine *m, vmkit_balloon_stats *stats);

/* ---- virtio-net ------------------------------------------------------------ */

/** Where a virtio-net device's frames go (VIRTIO 1.2, 5.1). */
typedef enum vmkit_net_backend {
	/** A tap device: @ifname (an existing tap, or one vmkit creates when
	 * the process may), or a tap fd from the embedder (@fd). Offloads
	 * (checksum, TSO, UFO) are passed through (IFF_VNET_HDR). */
	VMKIT_NET_TAP = 0,
	/** A UNIX stream socket speaking QEMU's `-netdev stream` framing:
	 * each frame preceded by its length as a 4-byte big-endian number
	 * (what passt speaks). vmkit connects to @path, or uses @fd. */
	VMKIT_NET_STREAM = 1,
	/** A UNIX datagram socket, one frame per datagram: vmkit connects to
	 * @path (binding an abstract address of its own), or uses @fd. */
	VMKIT_NET_DGRAM = 2,
	/** The embedder's callbacks: frames from the guest go to @tx_fn;
	 * vmkit_machine_net_receive() gives frames to the guest. */
	VMKIT_NET_CALLBACK = 3,
} vmkit_net_backend;

/**
 * A token-bucket rate limit for one direction of a device: a frame
 * passes when both buckets hold enough (bytes of the frame, one frame),
 * and takes that much from them. A bucket refills at its rate up to its
 * burst. A frame larger than the byte burst passes once the bucket is
 * full and leaves it in debt, so that the rate holds over time. 0 rate:
 * no limit on that measure. 0 burst: an eighth of a second's worth (at
 * least one 64 KiB frame for bytes, one frame for frames). A device reset
 * does not refill the buckets.
 */
typedef struct vmkit_rate_limit {
	uint64_t bytes_per_sec;
	uint64_t bytes_burst;
	uint64_t frames_per_sec;
	uint64_t frames_burst;
} vmkit_rate_limit;

/** The callback backend's transmit function: the guest sent the frame
 * @iov[0..@n) (Ethernet header first, no virtio-net header), @len bytes
 * in all, pointing into guest memory and valid only during the call.
 * Return 0 when taken (or deliberately dropped), -EAGAIN to hold it and
 * every later frame on the queue until vmkit_machine_net_kick() (the
 * frame is offered again then; counted as tx_backpressure), another
 * negative code to drop it (counted as tx_dropped). Runs on the machine's
 * I/O thread, with the device lock held: it must not call back into this
 * device's API. */
typedef int (*vmkit_net_tx_fn)(void *userdata, const struct iovec *iov, unsigned n, size_t len);
/** The callback backend: vmkit_machine_net_receive() returned -EAGAIN
 * earlier and there is room again (the queue is at most half full). Once
 * per -EAGAIN episode. I/O thread, device lock held. */
typedef void (*vmkit_net_ready_fn)(void *userdata);

/** A virtio-net device. Initialise with VMKIT_NET_CONFIG_INIT. */
typedef struct vmkit_net_config {
	uint32_t size;             /**< sizeof(vmkit_net_config) */
	uint32_t transport;        /**< vmkit_virtio_transport */
	uint32_t backend;          /**< vmkit_net_backend */
	int fd;                    /**< tap fd or connected socket; -1 to open by @ifname/@path. The caller keeps it: vmkit works on a duplicate. A tap fd's shared file description is made non-blocking, and with IFF_VNET_HDR gets a header size of 12 and the offloads the guest accepts (TUNSETOFFLOAD); a socket's flags are left alone. */
	const char *ifname;        /**< tap interface name (VMKIT_NET_TAP without @fd) */
	const char *path;          /**< socket to connect to (STREAM, DGRAM without @fd) */
	uint8_t mac[6];            /**< the guest's MAC address, when @mac_set */
	bool mac_set;              /**< false: a random locally administered unicast MAC */
	bool reserved0;
	vmkit_rate_limit rx;       /**< host to guest */
	vmkit_rate_limit tx;       /**< guest to host */
	vmkit_net_tx_fn tx_fn;     /**< VMKIT_NET_CALLBACK */
	vmkit_net_ready_fn ready_fn; /**< VMKIT_NET_CALLBACK, may be NULL */
	void *userdata;            /**< for @tx_fn and @ready_fn */
} vmkit_net_config;
#define VMKIT_NET_CONFIG_INIT                                                          \
	{ sizeof(vmkit_net_config), VMKIT_VIRTIO_PCI, VMKIT_NET_TAP, -1, NULL, NULL, { 0 }, \
	  false, false, { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, NULL, NULL, NULL }
/** Most virtio-net devices in one machine. */
#define VMKIT_NET_MAX 8
/** Add a virtio-net device (strings copied, @fd duplicated when the
 * machine is built). Devices are numbered 0.. in the order added; that
 * index names them in the vmkit_machine_net_* calls. Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_config_add_net(vmkit_machine_config *cfg,
					      const vmkit_net_config *net);

/** Counters of one virtio-net device (one receive and one transmit
 * queue: rx_* are the receive queue's, tx_* the transmit queue's). */
typedef struct vmkit_net_stats {
	uint32_t size;             /**< sizeof(vmkit_net_stats), set by the caller */
	uint32_t reserved;
	uint64_t rx_frames;        /**< frames delivered to the guest */
	uint64_t rx_bytes;         /**< their bytes (without the virtio-net header) */
	uint64_t rx_dropped;       /**< frames from the backend not delivered: too big for the guest's buffers, malformed (too short or long, a stream framing error), needing an offload the guest did not accept, or held for a driver that reset the device */
	uint64_t rx_no_buffer;     /**< times a frame had to wait for the guest to post receive buffers (back-pressure: the backend is paused, nothing is lost) */
	uint64_t rx_throttled;     /**< times the rx rate limit paused delivery */
	uint64_t tx_frames;        /**< frames the guest sent that the backend took */
	uint64_t tx_bytes;
	uint64_t tx_dropped;       /**< guest frames dropped: malformed, too big, refused by the backend, or sent while the backend is gone (link down) */
	uint64_t tx_backpressure;  /**< times the backend could take no more and the queue waited */
	uint64_t tx_throttled;     /**< times the tx rate limit paused the queue */
} vmkit_net_stats;
/** Read device @index's counters. Any thread. Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_net_get_stats(vmkit_machine *m, uint32_t index,
					     vmkit_net_stats *stats);
/** Change device @index's rate limits while it runs; NULL leaves a
 * direction as it is. Buckets start full. Any thread. Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_net_set_rate_limit(vmkit_machine *m, uint32_t index,
						  const vmkit_rate_limit *rx,
						  const vmkit_rate_limit *tx);
/** The callback backend: give the guest the frame @frame of @len bytes
 * (Ethernet header first). The frame is copied into a bounded queue in
 * front of the device (256 frames, 2 MiB), which keeps frames while the
 * guest has no receive buffers or no driver: 0, or -EAGAIN when that
 * queue is full (the ready_fn callback says when to try again),
 * -EMSGSIZE when @len is over 65535 or under 14, -ENOTSUP for another
 * backend. Any thread but the I/O thread's callbacks of this device.
 * Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_net_receive(vmkit_machine *m, uint32_t index, const void *frame,
					   size_t len);
/** The callback backend: tx_fn returned -EAGAIN earlier and can take
 * frames again; the transmit queue resumes. -ENOTSUP for another
 * backend. Any thread. Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_net_kick(vmkit_machine *m, uint32_t index);

/* ---- virtio-vsock -------------------------------------------------------- */

/** A virtio-vsock device (VIRTIO 1.2, 5.10, stream sockets only) whose
 * host side is UNIX sockets, by the protocol Firecracker's vsock device
 * documents:
 *  - host to guest: connect to @uds_path (vmkit listens there), write
 *    `CONNECT <port>\n` (decimal, the line at most 64 bytes); vmkit
 *    answers `OK <hostport>\n` once the guest accepted, and the socket
 *    then carries the stream. A malformed line, a guest that refuses or
 *    does not answer within 5 seconds, or no line within 10 seconds
 *    closes the socket;
 *  - guest to host: a guest connection to the host (CID 2) port P is
 *    connected to the UNIX socket `<uds_path>_P`, which a host program
 *    listens on; no listener there, or a full backlog, refuses the
 *    guest's connection (vmkit never waits for one).
 * Either side's shutdown(SHUT_WR) reaches the other as end of file; a
 * guest reset (or a device reset) closes the host sockets. At most 1024
 * connections and 64 host sockets still sending their line. Restoring a
 * snapshot resets every connection: no connection is saved, the host
 * sockets are closed and the guest is sent
 * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET. Initialise with
 * VMKIT_VSOCK_CONFIG_INIT. */
typedef struct vmkit_vsock_config {
	uint32_t size;             /**< sizeof(vmkit_vsock_config) */
	uint32_t transport;        /**< vmkit_virtio_transport */
	uint64_t guest_cid;        /**< the guest's CID: 3 .. 0xfffffffe */
	/** The host-side listening socket, at most 96 bytes (so that
	 * `<uds_path>_<port>` fits a sockaddr_un). It is created; a stale
	 * socket file already there (nobody listening) is replaced, a socket
	 * somebody listens on is refused (-EADDRINUSE), anything else there
	 * too (-EEXIST); it is removed when the machine is freed (unless
	 * something else has replaced it meanwhile). */
	const char *uds_path;
} vmkit_vsock_config;
#define VMKIT_VSOCK_CONFIG_INIT { sizeof(vmkit_vsock_config), VMKIT_VIRTIO_PCI, 0, NULL }
/** Give the machine a virtio-vsock device (one per machine; the path is
 * copied). Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_config_set_vsock(vmkit_machine_config *cfg,
						const vmkit_vsock_config *vsock);

#ifdef __cplusplus
}
#endif

#endif
