/* SPDX-License-Identifier: MIT */
/* The built-in virtio devices. Each constructor returns the device's ops
 * table (the same public vmkit_virtio_ops an embedder writes) and its
 * opaque state, which ops->destroy frees. The machine attaches them to a
 * transport. Backends that wait for I/O put their fds on @loop (the
 * machine's I/O thread); no device ever blocks a vCPU thread on I/O. */
#ifndef VMKIT_DEVICES_VIRTIO_DEVICES_H
#define VMKIT_DEVICES_VIRTIO_DEVICES_H

#include "devices/virtio/virtio.h"

struct vmkit_loop;

/* virtio-blk on a raw image (blk.c). Opens @cfg->path (read-only when
 * @cfg->readonly); errors name the file. */
int virtio_blk_create(const vmkit_disk_config *cfg, struct vmkit_loop *loop,
		      const vmkit_virtio_ops **ops, void **opaque);

/* virtio-console (console.c): port 0 is the console; with more than one
 * port, VIRTIO_CONSOLE_F_MULTIPORT and named ports. fds may be -1. */
struct virtio_console_port {
	const char *name;   /* NULL for port 0 */
	int in_fd, out_fd;
};
#define VIRTIO_CONSOLE_MAX_PORTS 16
int virtio_console_create(const struct virtio_console_port *ports, size_t n_ports,
			  struct vmkit_loop *loop, const vmkit_virtio_ops **ops, void **opaque);

/* virtio-rng (rng.c): getrandom(), at most @bytes_per_sec (0: no limit). */
int virtio_rng_create(uint64_t bytes_per_sec, struct vmkit_loop *loop,
		      const vmkit_virtio_ops **ops, void **opaque);

/* virtio-balloon (balloon.c): pages go back to the host through @mem
 * (MADV_DONTNEED, or a hole punched in memfd memory). */
int virtio_balloon_create(const struct vmkit_gmem *mem, struct vmkit_loop *loop,
			  const vmkit_virtio_ops **ops, void **opaque);
/* Control-thread calls; @dev is the device's core (they take its lock and
 * raise a config interrupt when the driver is live). */
int virtio_balloon_set_target(void *opaque, vmkit_virtio_dev *dev, uint64_t bytes);
int virtio_balloon_get_actual(void *opaque, vmkit_virtio_dev *dev, uint64_t *bytes);
int virtio_balloon_get_stats(void *opaque, vmkit_virtio_dev *dev, vmkit_balloon_stats *st);

/* virtio-net (net.c, its backends in net_backend.c): one receive and one
 * transmit queue (no control queue). @cfg is the public configuration;
 * for TAP/STREAM/DGRAM the backend is opened here (@cfg->fd duplicated,
 * or @cfg->ifname / @cfg->path opened), errors name it. Backend fds and a
 * wake-up eventfd go on @loop, which is required. */
int virtio_net_create(const vmkit_net_config *cfg, struct vmkit_loop *loop,
		      const vmkit_virtio_ops **ops, void **opaque);
/* Control calls from any thread; @dev is the device's core (they take its
 * lock; work for the I/O thread goes through the device's eventfd).
 * get_stats works before the driver came; receive and kick are for the
 * callback backend (-ENOTSUP otherwise). A restored device resumes once
 * it hears from its core: kick its queues once (virtio_dev_kick), or make
 * any of these calls. */
int virtio_net_get_stats(void *opaque, vmkit_virtio_dev *dev, vmkit_net_stats *st);
int virtio_net_set_rate_limit(void *opaque, vmkit_virtio_dev *dev, const vmkit_rate_limit *rx,
			      const vmkit_rate_limit *tx);
int virtio_net_receive(void *opaque, vmkit_virtio_dev *dev, const void *frame, size_t len);
int virtio_net_kick(void *opaque, vmkit_virtio_dev *dev);

/* virtio-vsock (vsock.c): queues rx, tx, event; host side on UNIX sockets
 * (see vmkit_vsock_config). Creates the listening socket at
 * @cfg->uds_path and puts it on @loop, which is required: call it before
 * the loop runs. The device learns its core from the core's first
 * callback; after a restore into a fresh device none has come, so the
 * TRANSPORT_RESET event and host-initiated connections wait for the
 * guest's next notify unless the machine notifies the queues once
 * (virtio_dev_kick) after restoring. */
int virtio_vsock_create(const vmkit_vsock_config *cfg, struct vmkit_loop *loop,
			const vmkit_virtio_ops **ops, void **opaque);

#endif
