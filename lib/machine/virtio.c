/* SPDX-License-Identifier: MIT */
/* A machine's virtio devices: the built-in ones its configuration names
 * (disks, console, rng, balloon, network devices, vsock) and the
 * embedder's own, each created through its vmkit_virtio_ops constructor
 * and attached to its transport. Order, and so guest-visible placement,
 * is fixed: disks in the order given, then console, rng, balloon, the
 * network devices in the order given, vsock, then the embedder's
 * devices. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine_internal.h"
#include "arch/x86/aml.h"
#include "devices/virtio/devices.h"
#include "loop/loop.h"
#include "pci/pci.h"

#define MV_MAX (MACHINE_MAX_DISKS + 3 + VMKIT_NET_MAX + 1 + MACHINE_MAX_CUSTOM)

struct mv_dev {
	const vmkit_virtio_ops *ops;
	void *opaque;
	bool builtin;          /* we destroy it if the transport never took it */
	struct virtio_mmio *mmio;
	struct virtio_pci *pci;
	uint32_t mmio_index;
};

struct machine_virtio {
	struct pci_host *pci;
	struct mv_dev dev[MV_MAX];
	size_t n;
	uint32_t n_mmio;
	int balloon; /* index in dev[], or -1 */
	int net[VMKIT_NET_MAX]; /* network device i's index in dev[] */
	uint32_t n_net;
};

static vmkit_virtio_dev *mv_core(struct mv_dev *d)
{
	if (d->mmio)
		return virtio_mmio_dev(d->mmio);
	if (d->pci)
		return virtio_pci_dev(d->pci);
	return NULL;
}

static int attach(struct machine_virtio *mv, vmkit_machine *m, vmkit_vm *vm,
		  struct vmkit_loop *loop, const vmkit_virtio_ops *ops, void *opaque,
		  uint32_t transport, bool builtin, const char *name)
{
	struct mv_dev *d = &mv->dev[mv->n];
	int ret;

	d->ops = ops;
	d->opaque = opaque;
	d->builtin = builtin;
	if (transport == VMKIT_VIRTIO_MMIO) {
		uint32_t i = mv->n_mmio;
		if (i >= X86_VIRTIO_MMIO_MAX) {
			ret = vmkit__err(-E2BIG, "%s: at most %u virtio-mmio devices", name,
					 (unsigned)X86_VIRTIO_MMIO_MAX);
			goto fail;
		}
		ret = virtio_mmio_new(vm, loop, X86_VIRTIO_MMIO_BASE + (uint64_t)i * VIRTIO_MMIO_SIZE,
				      X86_VIRTIO_MMIO_GSI_BASE + i % 4, ops, opaque, name, m,
				      &d->mmio);
		if (ret < 0)
			goto fail;
		d->mmio_index = i;
		mv->n_mmio++;
	} else {
		if (!mv->pci && (ret = pci_host_new(vm, &mv->pci)) < 0)
			goto fail;
		ret = virtio_pci_new(vm, loop, mv->pci, ops, opaque, name, m, &d->pci);
		if (ret < 0)
			goto fail;
	}
	/* The transport owns the device now: it calls ops->destroy. */
	mv->n++;
	return 0;
fail:
	if (builtin && ops->destroy)
		ops->destroy(opaque);
	d->ops = NULL;
	d->opaque = NULL;
	{
		char msg[400];
		snprintf(msg, sizeof(msg), "%s", vmkit_last_error());
		return vmkit__err(ret, "%s: %s", name, msg);
	}
}

static int fd_or_serial(int fd, int serial_fd)
{
	return fd == MACHINE_FD_SERIAL ? serial_fd : fd;
}

int vmkit__machine_virtio_new(vmkit_machine *m, vmkit_vm *vm, struct vmkit_loop *loop,
			      const struct vmkit_machine_config *cfg, struct machine_virtio **out)
{
	struct machine_virtio *mv = calloc(1, sizeof(*mv));
	const vmkit_virtio_ops *ops;
	void *opaque;
	char name[32];
	int ret = 0;

	if (!mv)
		return vmkit__err(-ENOMEM, "out of memory");
	mv->balloon = -1;
	*out = mv;
	for (size_t i = 0; i < cfg->n_disks; i++) {
		const struct machine_disk *md = &cfg->disks[i];
		vmkit_disk_config dc = VMKIT_DISK_CONFIG_INIT;

		dc.transport = md->transport;
		dc.path = md->path;
		dc.readonly = md->readonly;
		dc.serial = md->serial;
		dc.block_size = md->block_size;
		snprintf(name, sizeof(name), "virtio-blk%zu", i);
		if ((ret = virtio_blk_create(&dc, loop, &ops, &opaque)) < 0)
			return ret; /* the message names the file */
		if ((ret = attach(mv, m, vm, loop, ops, opaque, md->transport, true, name)) < 0)
			return ret;
	}
	if (cfg->console) {
		struct virtio_console_port ports[1 + MACHINE_MAX_CONSOLE_PORTS];
		size_t n = 0;

		ports[n++] = (struct virtio_console_port){
			NULL, fd_or_serial(cfg->console_in, cfg->serial_in),
			fd_or_serial(cfg->console_out, cfg->serial_out),
		};
		for (size_t i = 0; i < cfg->n_console_ports; i++)
			ports[n++] = (struct virtio_console_port){ cfg->console_ports[i].name,
								   cfg->console_ports[i].in_fd,
								   cfg->console_ports[i].out_fd };
		if ((ret = virtio_console_create(ports, n, loop, &ops, &opaque)) < 0 ||
		    (ret = attach(mv, m, vm, loop, ops, opaque, cfg->console_transport, true,
				  "virtio-console")) < 0)
			return ret;
	}
	if (cfg->rng) {
		if ((ret = virtio_rng_create(cfg->rng_rate, loop, &ops, &opaque)) < 0 ||
		    (ret = attach(mv, m, vm, loop, ops, opaque, cfg->rng_transport, true,
				  "virtio-rng")) < 0)
			return ret;
	}
	if (cfg->balloon) {
		if ((ret = virtio_balloon_create(&vm->mem, loop, &ops, &opaque)) < 0 ||
		    (ret = attach(mv, m, vm, loop, ops, opaque, cfg->balloon_transport, true,
				  "virtio-balloon")) < 0)
			return ret;
		mv->balloon = (int)mv->n - 1;
	}
	for (size_t i = 0; i < cfg->n_nets; i++) {
		const struct machine_net *mn = &cfg->nets[i];
		vmkit_net_config nc = VMKIT_NET_CONFIG_INIT;

		nc.transport = mn->transport;
		nc.backend = mn->backend;
		nc.fd = mn->fd;
		nc.ifname = mn->ifname;
		nc.path = mn->path;
		memcpy(nc.mac, mn->mac, sizeof(nc.mac));
		nc.mac_set = mn->mac_set;
		nc.rx = mn->rx;
		nc.tx = mn->tx;
		nc.tx_fn = mn->tx_fn;
		nc.ready_fn = mn->ready_fn;
		nc.userdata = mn->userdata;
		snprintf(name, sizeof(name), "virtio-net%zu", i);
		if ((ret = virtio_net_create(&nc, loop, &ops, &opaque)) < 0)
			return ret; /* the message names the backend */
		if ((ret = attach(mv, m, vm, loop, ops, opaque, mn->transport, true, name)) < 0)
			return ret;
		mv->net[mv->n_net++] = (int)mv->n - 1;
	}
	if (cfg->vsock) {
		vmkit_vsock_config vc = VMKIT_VSOCK_CONFIG_INIT;

		vc.transport = cfg->vsock_transport;
		vc.guest_cid = cfg->vsock_cid;
		vc.uds_path = cfg->vsock_path;
		if ((ret = virtio_vsock_create(&vc, loop, &ops, &opaque)) < 0 ||
		    (ret = attach(mv, m, vm, loop, ops, opaque, cfg->vsock_transport, true,
				  "virtio-vsock")) < 0)
			return ret;
	}
	for (size_t i = 0; i < cfg->n_custom; i++) {
		snprintf(name, sizeof(name), "virtio-dev%zu", i);
		ret = attach(mv, m, vm, loop, cfg->custom[i].ops, cfg->custom[i].opaque,
			     cfg->custom[i].transport, false, name);
		if (ret < 0)
			return ret;
	}
	return 0;
}

void vmkit__machine_virtio_free(struct machine_virtio *mv)
{
	if (!mv)
		return;
	for (size_t i = mv->n; i-- > 0;) {
		if (mv->dev[i].mmio)
			virtio_mmio_free(mv->dev[i].mmio);
		if (mv->dev[i].pci)
			virtio_pci_free(mv->dev[i].pci);
	}
	pci_host_free(mv->pci);
	free(mv);
}

void vmkit__machine_virtio_dsdt(void *ctx, struct x86_buf *sb)
{
	struct machine_virtio *mv = ctx;

	if (!mv)
		return;
	if (mv->pci)
		pci_host_dsdt(mv->pci, sb);
	for (size_t i = 0; i < mv->n; i++)
		if (mv->dev[i].mmio)
			virtio_mmio_dsdt(mv->dev[i].mmio, mv->dev[i].mmio_index, sb);
}

void vmkit__machine_virtio_disown(struct machine_virtio *mv)
{
	for (size_t i = 0; mv && i < mv->n; i++) {
		vmkit_virtio_dev *core = mv_core(&mv->dev[i]);
		if (core && !mv->dev[i].builtin)
			core->keep_opaque = true;
	}
}

bool vmkit__machine_virtio_has_pci(const struct machine_virtio *mv)
{
	return mv && mv->pci;
}

int vmkit__machine_virtio_cmdline(const struct machine_virtio *mv, char **cmd)
{
	for (size_t i = 0; mv && i < mv->n; i++) {
		char one[96], *n;
		size_t len = *cmd ? strlen(*cmd) : 0;

		if (!mv->dev[i].mmio)
			continue;
		if (virtio_mmio_cmdline(mv->dev[i].mmio, one, sizeof(one)) < 0)
			return vmkit__err(-EINVAL, "virtio-mmio command line entry too long");
		n = malloc(len + strlen(one) + 2);
		if (!n)
			return vmkit__err(-ENOMEM, "out of memory");
		snprintf(n, len + strlen(one) + 2, "%s%s%s", *cmd ? *cmd : "", len ? " " : "", one);
		free(*cmd);
		*cmd = n;
	}
	return 0;
}

int vmkit__machine_virtio_balloon(struct machine_virtio *mv, void **opaque, vmkit_virtio_dev **dev)
{
	if (!mv || mv->balloon < 0)
		return vmkit__err(-ENODEV, "the machine has no balloon");
	*opaque = mv->dev[mv->balloon].opaque;
	*dev = mv_core(&mv->dev[mv->balloon]);
	return 0;
}

int vmkit__machine_virtio_net(struct machine_virtio *mv, uint32_t index, void **opaque,
			      vmkit_virtio_dev **dev)
{
	if (!mv || index >= mv->n_net)
		return vmkit__err(-ENODEV, "the machine has no network device %u", index);
	*opaque = mv->dev[mv->net[index]].opaque;
	*dev = mv_core(&mv->dev[mv->net[index]]);
	return 0;
}
