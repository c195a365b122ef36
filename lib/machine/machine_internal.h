/* SPDX-License-Identifier: MIT */
/* The machine layer's private types. */
#ifndef VMKIT_MACHINE_INTERNAL_H
#define VMKIT_MACHINE_INTERNAL_H

#include "internal.h"
#include "arch/x86/x86.h"
#include "vmkit/device.h"

#define MACHINE_MAX_INITRDS 16
#define MACHINE_MAX_OPTION_ROMS 8
#define MACHINE_MAX_DISKS 16
#define MACHINE_MAX_CUSTOM 16
#define MACHINE_MAX_CONSOLE_PORTS 15 /* besides port 0 */
/* A console fd that means "the serial port's fd". */
#define MACHINE_FD_SERIAL (-2)

struct machine_disk {
	char *path;
	char *serial;
	bool readonly;
	uint32_t block_size;
	uint32_t transport;
};

struct machine_console_port {
	char *name;
	int in_fd, out_fd;
};

struct machine_net {
	uint32_t transport;
	uint32_t backend;              /* vmkit_net_backend */
	int fd;                        /* the caller's; duplicated by the device */
	char *ifname, *path;
	uint8_t mac[6];
	bool mac_set;
	vmkit_rate_limit rx, tx;
	vmkit_net_tx_fn tx_fn;
	vmkit_net_ready_fn ready_fn;
	void *userdata;
};

struct machine_custom {
	const vmkit_virtio_ops *ops;
	void *opaque;
	uint32_t transport;
};

struct vmkit_machine_config {
	uint32_t ncpus;
	uint64_t memory;
	char *kernel;
	uint32_t kernel_format;
	uint64_t flat_load, flat_entry;
	uint32_t flat_mode;
	char *initrds[MACHINE_MAX_INITRDS];
	size_t n_initrds;
	char *cmdline;
	char *firmware;
	char *option_roms[MACHINE_MAX_OPTION_ROMS]; /* fw_cfg genroms/<basename> */
	size_t n_option_roms;
	int serial_in, serial_out;
	vmkit_serial_fn serial_fn;
	void *serial_userdata;
	uint32_t unhandled_policy;
	bool exit_port_enabled;
	uint16_t exit_port;
	bool acpi;
	bool hugepages;                /* guest RAM THP, when hugepages_set */
	bool hugepages_set;            /* said by the embedder (else: on unless a balloon) */
	int debugcon_fd;               /* -1: no debug console */
	uint16_t debugcon_port;
	struct x86_cpu_model cpu;
	/* virtio devices */
	struct machine_disk disks[MACHINE_MAX_DISKS];
	size_t n_disks;
	bool console;
	uint32_t console_transport;
	int console_in, console_out;   /* MACHINE_FD_SERIAL: the serial's */
	struct machine_console_port console_ports[MACHINE_MAX_CONSOLE_PORTS];
	size_t n_console_ports;
	bool rng;
	uint32_t rng_transport;
	uint64_t rng_rate;
	bool balloon;
	uint32_t balloon_transport;
	struct machine_net nets[VMKIT_NET_MAX];
	size_t n_nets;
	bool vsock;
	uint32_t vsock_transport;
	uint64_t vsock_cid;
	char *vsock_path;
	bool mmio_cmdline;             /* also list virtio-mmio devices on the command line */
	struct machine_custom custom[MACHINE_MAX_CUSTOM];
	size_t n_custom;
};

/* Deep copy (strings duplicated). */
int vmkit__machine_config_copy(struct vmkit_machine_config *dst,
			       const struct vmkit_machine_config *src);
void vmkit__machine_config_clear(struct vmkit_machine_config *cfg);

/* ---- virtio devices of a machine (lib/machine/virtio.c) ----------------- */
struct machine_virtio;
struct vmkit_loop;
/* Create every virtio device of @cfg and attach it to its transport:
 * virtio-mmio device i at X86_VIRTIO_MMIO_BASE + i * 4 KiB, GSI
 * X86_VIRTIO_MMIO_GSI_BASE + i % 4; virtio-pci devices in slots 1.. of
 * the PCI host bridge (created when any device uses PCI). */
int vmkit__machine_virtio_new(vmkit_machine *m, vmkit_vm *vm, struct vmkit_loop *loop,
			      const struct vmkit_machine_config *cfg, struct machine_virtio **out);
void vmkit__machine_virtio_free(struct machine_virtio *mv);
/* The machine was not built: free the embedder's devices without calling
 * their ops->destroy (their opaque stays the embedder's). */
void vmkit__machine_virtio_disown(struct machine_virtio *mv);
/* DSDT entries (\_SB scope): the PCI root bridge and the mmio devices. */
void vmkit__machine_virtio_dsdt(void *mv, struct x86_buf *sb);
bool vmkit__machine_virtio_has_pci(const struct machine_virtio *mv);
/* Append " virtio_mmio.device=..." for each mmio device to @cmd (malloc'd;
 * replaced). */
int vmkit__machine_virtio_cmdline(const struct machine_virtio *mv, char **cmd);
/* The balloon's core and state, or -ENODEV. */
int vmkit__machine_virtio_balloon(struct machine_virtio *mv, void **opaque,
				  vmkit_virtio_dev **dev);
/* Network device @index's core and state, or -ENODEV. */
int vmkit__machine_virtio_net(struct machine_virtio *mv, uint32_t index, void **opaque,
			      vmkit_virtio_dev **dev);

#endif
