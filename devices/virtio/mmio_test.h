/* SPDX-License-Identifier: MIT */
/* Test-only views of a virtio-mmio transport (mmio.c), for unit tests that
 * run without KVM (virtio_mmio_new with vm == NULL): register accesses as
 * the MMIO bus would make them, the interrupt line's level, and the
 * notification eventfds. Not for use by the library itself. */
#ifndef VMKIT_DEVICES_VIRTIO_MMIO_TEST_H
#define VMKIT_DEVICES_VIRTIO_MMIO_TEST_H

#include "devices/virtio/virtio.h"

/* The bus handlers: an access of @len bytes at @off in the 4 KiB window. */
void virtio_mmio_test_read(struct virtio_mmio *t, uint64_t off, void *data, uint32_t len);
void virtio_mmio_test_write(struct virtio_mmio *t, uint64_t off, const void *data, uint32_t len);
/* The level of the transport's GSI as last set (the OR of every transport
 * sharing it on the same VM; one transport alone when vm == NULL). */
bool virtio_mmio_test_line(const struct virtio_mmio *t);
/* Register accesses ignored for their width or alignment so far. */
unsigned virtio_mmio_test_bad_accesses(const struct virtio_mmio *t);
/* The eventfd that notifies @queue on the loop, or -1 (no loop, or no
 * such queue). */
int virtio_mmio_test_notify_fd(const struct virtio_mmio *t, uint16_t queue);

#endif
