/* SPDX-License-Identifier: MIT */
/* custom-device: an embedder's own devices on a vmkit machine, end to end.
 *
 *   custom-device KERNEL [pci|mmio] [CMDLINE]
 *
 * Adds two devices of this program's own to a machine and boots KERNEL:
 *  - "upcase", a virtio device (id 63, one queue): every request's
 *    device-readable bytes come back upper-cased in its device-writable
 *    buffers; its config space holds a 32-bit count of requests served;
 *  - a legacy port device at 0x520 (4 ports): reading it returns how many
 *    requests the virtio device has served; a write is logged.
 * The guest's serial console is on stdout. The exit status is the guest's
 * exit-port status, as vmkit-run's. Uses only the public API. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmkit/vmkit.h>

#define UPCASE_DEVICE_ID 63
#define UPCASE_PORT 0x520

struct upcase {
	pthread_mutex_t lock; /* the port device runs on vCPU threads */
	uint32_t served;
};

/* ---- the virtio device ------------------------------------------------------ */

static void upcase_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
	struct upcase *u = opaque;
	uint8_t cfg[4];

	pthread_mutex_lock(&u->lock);
	memcpy(cfg, &u->served, 4); /* little-endian hosts only, like vmkit */
	pthread_mutex_unlock(&u->lock);
	memcpy(data, cfg + offset, len); /* vmkit checked offset + len <= 4 */
}

static int upcase_activate(void *opaque, vmkit_virtio_dev *dev, uint64_t features)
{
	(void)opaque;
	(void)dev;
	(void)features;
	return 0;
}

/* Copy the request's readable bytes, upper-cased, into its writable ones. */
static uint32_t upcase_one(const vmkit_virtq_elem *e)
{
	uint32_t in_i = 0, written = 0;
	size_t in_off = 0;

	for (uint32_t o = 0; o < e->n_out; o++) {
		const uint8_t *src = e->out[o].iov_base;
		for (size_t k = 0; k < e->out[o].iov_len; k++) {
			while (in_i < e->n_in && in_off == e->in[in_i].iov_len) {
				in_i++;
				in_off = 0;
			}
			if (in_i == e->n_in)
				return written; /* no room left: the rest is dropped */
			((uint8_t *)e->in[in_i].iov_base)[in_off++] = (uint8_t)toupper(src[k]);
			written++;
		}
	}
	return written;
}

static void upcase_notify(void *opaque, vmkit_virtio_dev *dev, uint16_t queue)
{
	struct upcase *u = opaque;
	vmkit_virtq_elem *e;
	int r;

	while ((r = vmkit_virtq_pop(dev, queue, &e)) == 1) {
		uint32_t n = upcase_one(e);
		vmkit_virtq_push(dev, e, n);
		pthread_mutex_lock(&u->lock);
		u->served++;
		pthread_mutex_unlock(&u->lock);
	}
	/* r < 0: the guest sent a malformed chain; vmkit has already put the
	 * device into NEEDS_RESET. */
	vmkit_virtq_notify(dev, queue);
}

static void upcase_reset(void *opaque, vmkit_virtio_dev *dev)
{
	(void)opaque;
	(void)dev; /* nothing in flight: requests complete inside notify */
}

static const vmkit_virtio_ops upcase_ops = {
	.size = sizeof(vmkit_virtio_ops),
	.device_id = UPCASE_DEVICE_ID,
	.num_queues = 1,
	.queue_max = 256,
	.config_size = 4,
	.features = 0,
	.config_read = upcase_config_read,
	.activate = upcase_activate,
	.queue_notify = upcase_notify,
	.reset = upcase_reset,
};

/* ---- the legacy port device ------------------------------------------------- */

static void port_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct upcase *u = opaque;
	uint32_t v;

	pthread_mutex_lock(&u->lock);
	v = u->served;
	pthread_mutex_unlock(&u->lock);
	if (offset == 0)
		memcpy(data, &v, len);
}

static void port_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	uint32_t v = 0;

	(void)opaque;
	memcpy(&v, data, len);
	fprintf(stderr, "custom-device: port 0x%x <- 0x%x\n", (unsigned)(UPCASE_PORT + offset), v);
}

static const vmkit_io_ops port_ops = {
	.size = sizeof(vmkit_io_ops),
	.read = port_read,
	.write = port_write,
};

static void on_serial(void *userdata, const uint8_t *data, size_t len)
{
	(void)userdata;
	fwrite(data, 1, len, stdout);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct upcase u = { .served = 0 };
	vmkit_virtio_transport t = VMKIT_VIRTIO_PCI;
	vmkit_machine_exit ex = { .size = sizeof(ex) };
	vmkit_machine_config *cfg = NULL;
	vmkit_machine *m = NULL;
	vmkit_host *host = NULL;
	int rc = 2;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: custom-device KERNEL [pci|mmio] [CMDLINE]\n");
		return 2;
	}
	if (argc > 2 && strcmp(argv[2], "mmio") == 0)
		t = VMKIT_VIRTIO_MMIO;
	pthread_mutex_init(&u.lock, NULL);
	if (vmkit_host_open(NULL, 0, &host) < 0 || vmkit_machine_config_new(&cfg) < 0 ||
	    vmkit_machine_config_set_kernel(cfg, argv[1]) < 0 ||
	    vmkit_machine_config_set_memory(cfg, 64ull << 20) < 0 ||
	    (argc > 3 && vmkit_machine_config_set_cmdline(cfg, argv[3]) < 0) ||
	    vmkit_machine_config_set_serial_callback(cfg, on_serial, NULL) < 0 ||
	    vmkit_machine_config_add_virtio(cfg, &upcase_ops, &u, t) < 0 ||
	    vmkit_machine_new(host, cfg, &m) < 0 ||
	    vmkit_vm_register_pio(vmkit_machine_vm(m), UPCASE_PORT, 4, &port_ops, &u, 0) < 0 ||
	    vmkit_machine_start(m) < 0 || vmkit_machine_wait(m, -1, &ex) < 0) {
		fprintf(stderr, "custom-device: %s\n", vmkit_last_error());
		goto out;
	}
	fprintf(stderr, "custom-device: upcase served %u requests\n", u.served);
	rc = ex.reason == VMKIT_EXIT_EXIT_PORT ? ex.status & 0xff :
	     ex.reason == VMKIT_EXIT_POWEROFF  ? 0 : 10;
out:
	vmkit_machine_free(m);
	vmkit_machine_config_free(cfg);
	vmkit_host_free(host);
	pthread_mutex_destroy(&u.lock);
	return rc;
}
