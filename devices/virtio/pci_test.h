/* SPDX-License-Identifier: MIT */
/* Test-only views of a virtio-pci transport (pci.c), for unit tests. Not
 * for use by the library itself. */
#ifndef VMKIT_DEVICES_VIRTIO_PCI_TEST_H
#define VMKIT_DEVICES_VIRTIO_PCI_TEST_H

#include "devices/virtio/virtio.h"

struct pci_device;
/* The transport's PCI function. */
struct pci_device *virtio_pci_test_function(struct virtio_pci *t);
/* The eventfd that notifies @queue on the loop, or -1 (no loop, or no
 * such queue). */
int virtio_pci_test_notify_fd(const struct virtio_pci *t, uint16_t queue);
/* Register accesses ignored for their width or alignment so far. */
unsigned virtio_pci_test_bad_accesses(const struct virtio_pci *t);

#endif
