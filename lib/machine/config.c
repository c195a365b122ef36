/* SPDX-License-Identifier: MIT */
/* Machine configuration: C setters with validation, and the JSON form. */
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "machine_internal.h"

#define JSON_MAX_BYTES (1u << 20)

static void config_defaults(struct vmkit_machine_config *c)
{
	memset(c, 0, sizeof(*c));
	c->ncpus = 1;
	c->memory = 256ull << 20;
	c->serial_in = -1;
	c->serial_out = -1;
	c->exit_port_enabled = true;
	c->exit_port = X86_EXIT_PORT;
	c->acpi = true;
	c->flat_mode = VMKIT_CPU_LONG64;
	c->console_in = c->console_out = MACHINE_FD_SERIAL;
	c->debugcon_fd = -1;
	c->debugcon_port = 0x402;
}

int vmkit_machine_config_new(vmkit_machine_config **out)
{
	struct vmkit_machine_config *c;

	if (!out)
		return vmkit__err(-EINVAL, "vmkit_machine_config_new: NULL argument");
	c = calloc(1, sizeof(*c));
	if (!c)
		return vmkit__err(-ENOMEM, "out of memory");
	config_defaults(c);
	*out = c;
	return 0;
}

void vmkit__machine_config_clear(struct vmkit_machine_config *c)
{
	free(c->kernel);
	free(c->cmdline);
	free(c->firmware);
	for (size_t i = 0; i < c->n_initrds; i++)
		free(c->initrds[i]);
	for (size_t i = 0; i < c->n_option_roms; i++)
		free(c->option_roms[i]);
	for (size_t i = 0; i < c->n_disks; i++) {
		free(c->disks[i].path);
		free(c->disks[i].serial);
	}
	for (size_t i = 0; i < c->n_console_ports; i++)
		free(c->console_ports[i].name);
	for (size_t i = 0; i < c->n_nets; i++) {
		free(c->nets[i].ifname);
		free(c->nets[i].path);
	}
	free(c->vsock_path);
	memset(c, 0, sizeof(*c));
}

void vmkit_machine_config_free(vmkit_machine_config *cfg)
{
	if (!cfg)
		return;
	vmkit__machine_config_clear(cfg);
	free(cfg);
}

static int dup_opt(char **dst, const char *src)
{
	char *s = NULL;

	if (src && !(s = strdup(src)))
		return vmkit__err(-ENOMEM, "out of memory");
	free(*dst);
	*dst = s;
	return 0;
}

/* Append a copy of @path to @list (the caller checked the room). */
static int push_path(char **list, size_t *n, const char *path)
{
	if (!(list[*n] = strdup(path)))
		return vmkit__err(-ENOMEM, "out of memory");
	(*n)++;
	return 0;
}

int vmkit__machine_config_copy(struct vmkit_machine_config *dst,
			       const struct vmkit_machine_config *src)
{
	*dst = *src;
	dst->kernel = dst->cmdline = dst->firmware = NULL;
	dst->n_initrds = 0;
	dst->n_option_roms = 0;
	dst->n_disks = 0;
	dst->n_console_ports = 0;
	dst->n_nets = 0;
	dst->vsock_path = NULL;
	if (dup_opt(&dst->kernel, src->kernel) || dup_opt(&dst->cmdline, src->cmdline) ||
	    dup_opt(&dst->firmware, src->firmware))
		goto oom;
	for (size_t i = 0; i < src->n_initrds; i++) {
		if (push_path(dst->initrds, &dst->n_initrds, src->initrds[i]))
			goto oom;
	}
	for (size_t i = 0; i < src->n_option_roms; i++) {
		if (push_path(dst->option_roms, &dst->n_option_roms, src->option_roms[i]))
			goto oom;
	}
	for (size_t i = 0; i < src->n_disks; i++) {
		dst->disks[i] = src->disks[i];
		dst->disks[i].path = dst->disks[i].serial = NULL;
		dst->n_disks++;
		if (dup_opt(&dst->disks[i].path, src->disks[i].path) ||
		    dup_opt(&dst->disks[i].serial, src->disks[i].serial))
			goto oom;
	}
	for (size_t i = 0; i < src->n_console_ports; i++) {
		dst->console_ports[i] = src->console_ports[i];
		dst->console_ports[i].name = NULL;
		dst->n_console_ports++;
		if (dup_opt(&dst->console_ports[i].name, src->console_ports[i].name))
			goto oom;
	}
	for (size_t i = 0; i < src->n_nets; i++) {
		dst->nets[i] = src->nets[i];
		dst->nets[i].ifname = dst->nets[i].path = NULL;
		dst->n_nets++;
		if (dup_opt(&dst->nets[i].ifname, src->nets[i].ifname) ||
		    dup_opt(&dst->nets[i].path, src->nets[i].path))
			goto oom;
	}
	if (dup_opt(&dst->vsock_path, src->vsock_path))
		goto oom;
	return 0;
oom:
	vmkit__machine_config_clear(dst);
	return vmkit__err(-ENOMEM, "out of memory");
}

#define CHECK_CFG(c)                                                            \
	do {                                                                    \
		if (!(c))                                                       \
			return vmkit__err(-EINVAL, "%s: NULL config", __func__); \
	} while (0)

int vmkit_machine_config_set_cpus(vmkit_machine_config *c, uint32_t n)
{
	CHECK_CFG(c);
	if (n < 1 || n > VMKIT_MAX_CPUS)
		return vmkit__err(-EINVAL, "cpus: %u is out of range (1..%d)", n, VMKIT_MAX_CPUS);
	c->ncpus = n;
	return 0;
}

int vmkit_machine_config_set_memory(vmkit_machine_config *c, uint64_t bytes)
{
	CHECK_CFG(c);
	if (bytes % (1ull << 20))
		return vmkit__err(-EINVAL, "memory: %llu bytes is not a whole number of MiB",
				  (unsigned long long)bytes);
	if (bytes < VMKIT_MIN_MEMORY)
		return vmkit__err(-EINVAL, "memory: %llu MiB is too small (minimum %llu MiB)",
				  (unsigned long long)(bytes >> 20), VMKIT_MIN_MEMORY >> 20);
	if (bytes > VMKIT_MAX_MEMORY)
		return vmkit__err(-EINVAL, "memory: %llu MiB is too large (maximum %llu MiB)",
				  (unsigned long long)(bytes >> 20), VMKIT_MAX_MEMORY >> 20);
	c->memory = bytes;
	return 0;
}

int vmkit_machine_config_set_kernel(vmkit_machine_config *c, const char *path)
{
	CHECK_CFG(c);
	if (path && !*path)
		return vmkit__err(-EINVAL, "kernel: empty path");
	return dup_opt(&c->kernel, path);
}

int vmkit_machine_config_set_kernel_format(vmkit_machine_config *c, vmkit_kernel_format fmt)
{
	CHECK_CFG(c);
	if ((uint32_t)fmt > VMKIT_KERNEL_FLAT)
		return vmkit__err(-EINVAL, "kernel format %u is unknown", (unsigned)fmt);
	c->kernel_format = fmt;
	return 0;
}

int vmkit_machine_config_set_flat(vmkit_machine_config *c, uint64_t load_addr, uint64_t entry,
				  vmkit_cpu_mode mode)
{
	CHECK_CFG(c);
	if ((uint32_t)mode > VMKIT_CPU_LONG64)
		return vmkit__err(-EINVAL, "flat: CPU mode %u is unknown", (unsigned)mode);
	c->flat_load = load_addr;
	c->flat_entry = entry;
	c->flat_mode = mode;
	c->kernel_format = VMKIT_KERNEL_FLAT;
	return 0;
}

int vmkit_machine_config_add_initrd(vmkit_machine_config *c, const char *path)
{
	CHECK_CFG(c);
	if (!path || !*path)
		return vmkit__err(-EINVAL, "initrd: empty path");
	if (c->n_initrds == MACHINE_MAX_INITRDS)
		return vmkit__err(-E2BIG, "initrd: at most %d initrds/modules", MACHINE_MAX_INITRDS);
	return push_path(c->initrds, &c->n_initrds, path);
}

int vmkit_machine_config_add_option_rom(vmkit_machine_config *c, const char *path)
{
	const char *base;

	CHECK_CFG(c);
	if (!path || !*path)
		return vmkit__err(-EINVAL, "option ROM: empty path");
	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	/* fw_cfg names hold 55 bytes; "genroms/" takes 8 of them */
	if (!*base || strlen(base) > 47)
		return vmkit__err(-EINVAL, "option ROM %s: the file name must be 1..47 bytes", path);
	for (size_t i = 0; i < c->n_option_roms; i++) {
		const char *o = strrchr(c->option_roms[i], '/');
		if (strcmp(o ? o + 1 : c->option_roms[i], base) == 0)
			return vmkit__err(-EEXIST, "option ROM %s: another one is named %s", path, base);
	}
	if (c->n_option_roms == MACHINE_MAX_OPTION_ROMS)
		return vmkit__err(-E2BIG, "option ROM: at most %d", MACHINE_MAX_OPTION_ROMS);
	return push_path(c->option_roms, &c->n_option_roms, path);
}

int vmkit_machine_config_set_cmdline(vmkit_machine_config *c, const char *cmdline)
{
	CHECK_CFG(c);
	if (cmdline && strlen(cmdline) >= X86_CMDLINE_MAX)
		return vmkit__err(-E2BIG, "cmdline: %zu bytes is too long (maximum %u)",
				  strlen(cmdline), X86_CMDLINE_MAX - 1);
	return dup_opt(&c->cmdline, cmdline);
}

int vmkit_machine_config_set_firmware(vmkit_machine_config *c, const char *path)
{
	CHECK_CFG(c);
	if (path && !*path)
		return vmkit__err(-EINVAL, "firmware: empty path");
	return dup_opt(&c->firmware, path);
}

int vmkit_machine_config_set_serial_fds(vmkit_machine_config *c, int in_fd, int out_fd)
{
	CHECK_CFG(c);
	if (in_fd < -1 || out_fd < -1)
		return vmkit__err(-EBADF, "serial: bad file descriptor");
	c->serial_in = in_fd;
	c->serial_out = out_fd;
	c->serial_fn = NULL;
	return 0;
}

int vmkit_machine_config_set_serial_callback(vmkit_machine_config *c, vmkit_serial_fn fn,
					     void *userdata)
{
	CHECK_CFG(c);
	c->serial_fn = fn;
	c->serial_userdata = userdata;
	if (fn)
		c->serial_out = -1;
	return 0;
}

int vmkit_machine_config_set_unhandled_policy(vmkit_machine_config *c,
					      vmkit_unhandled_policy policy)
{
	CHECK_CFG(c);
	if (policy != VMKIT_UNHANDLED_IGNORE && policy != VMKIT_UNHANDLED_STRICT)
		return vmkit__err(-EINVAL, "unhandled: a machine takes the ignore or strict policy");
	c->unhandled_policy = policy;
	return 0;
}

int vmkit_machine_config_set_exit_port(vmkit_machine_config *c, bool enabled, uint16_t port)
{
	CHECK_CFG(c);
	if (enabled && port > 0xfffc)
		return vmkit__err(-EINVAL, "exit_port: 0x%x leaves no room for a 4-byte port", port);
	c->exit_port_enabled = enabled;
	c->exit_port = port;
	return 0;
}

int vmkit_machine_config_set_acpi(vmkit_machine_config *c, bool enabled)
{
	CHECK_CFG(c);
	c->acpi = enabled;
	return 0;
}

int vmkit_machine_config_set_hugepages(vmkit_machine_config *c, bool enabled)
{
	CHECK_CFG(c);
	c->hugepages = enabled;
	c->hugepages_set = true;
	return 0;
}

int vmkit_machine_config_set_cpu_vendor(vmkit_machine_config *c, const char *vendor)
{
	CHECK_CFG(c);
	if (!vendor || strlen(vendor) != 12)
		return vmkit__err(-EINVAL, "cpu vendor: must be exactly 12 characters (like GenuineIntel)");
	memcpy(c->cpu.vendor, vendor, 13);
	return 0;
}

int vmkit_machine_config_mask_cpu_feature(vmkit_machine_config *c, const char *name)
{
	uint32_t leaf, sub;
	int reg, bit;

	CHECK_CFG(c);
	if (!name || x86_cpuid_feature(name, &leaf, &sub, &reg, &bit) < 0)
		return vmkit__err(-ENOENT, "cpu mask: unknown CPU feature '%s'", name ? name : "");
	if (c->cpu.n_masked == X86_MAX_MASKED)
		return vmkit__err(-E2BIG, "cpu mask: at most %d features", X86_MAX_MASKED);
	snprintf(c->cpu.masked[c->cpu.n_masked++], sizeof(c->cpu.masked[0]), "%s", name);
	return 0;
}

/* ---- JSON ------------------------------------------------------------------ */


int vmkit_machine_config_set_debugcon(vmkit_machine_config *c, uint16_t port, int fd)
{
	CHECK_CFG(c);
	if (fd < -1)
		return vmkit__err(-EINVAL, "debug console: bad fd %d", fd);
	c->debugcon_fd = fd;
	c->debugcon_port = port;
	return 0;
}

/* ---- virtio devices --------------------------------------------------------- */

static int check_transport(const char *fn, uint32_t t)
{
	if (t != VMKIT_VIRTIO_PCI && t != VMKIT_VIRTIO_MMIO)
		return vmkit__err(-EINVAL, "%s: unknown transport %u", fn, t);
	return 0;
}

int vmkit_machine_config_add_disk(vmkit_machine_config *c, const vmkit_disk_config *d)
{
	struct machine_disk *md;
	int r;

	CHECK_CFG(c);
	if (!d || d->size < sizeof(*d) || !d->path || !*d->path)
		return vmkit__err(-EINVAL, "disk: a path is needed");
	if ((r = check_transport("disk", d->transport)))
		return r;
	if (c->n_disks == MACHINE_MAX_DISKS)
		return vmkit__err(-E2BIG, "disk %s: at most %d disks", d->path, MACHINE_MAX_DISKS);
	if (d->serial && strlen(d->serial) > 20)
		return vmkit__err(-EINVAL, "disk %s: serial '%s' is longer than 20 bytes", d->path,
				  d->serial);
	if (d->block_size && (d->block_size < 512 || d->block_size > 4096 ||
			      (d->block_size & (d->block_size - 1))))
		return vmkit__err(-EINVAL, "disk %s: block size %u is not a power of two in 512..4096",
				  d->path, d->block_size);
	md = &c->disks[c->n_disks];
	memset(md, 0, sizeof(*md));
	if (dup_opt(&md->path, d->path) || dup_opt(&md->serial, d->serial)) {
		free(md->path);
		free(md->serial);
		md->path = md->serial = NULL;
		return vmkit__err(-ENOMEM, "out of memory");
	}
	md->readonly = d->readonly;
	md->block_size = d->block_size ? d->block_size : 512;
	md->transport = d->transport;
	c->n_disks++;
	return 0;
}

int vmkit_machine_config_set_virtio_console(vmkit_machine_config *c,
					    vmkit_virtio_transport transport, int in_fd,
					    int out_fd)
{
	int r;

	CHECK_CFG(c);
	if ((r = check_transport("console", transport)))
		return r;
	if (in_fd < MACHINE_FD_SERIAL || out_fd < MACHINE_FD_SERIAL)
		return vmkit__err(-EINVAL, "console: bad fd");
	c->console = true;
	c->console_transport = transport;
	c->console_in = in_fd;
	c->console_out = out_fd;
	return 0;
}

int vmkit_machine_config_add_console_port(vmkit_machine_config *c, const char *name, int in_fd,
					  int out_fd)
{
	struct machine_console_port *p;

	CHECK_CFG(c);
	if (!name || !*name || strlen(name) > 127)
		return vmkit__err(-EINVAL, "console port: a name of 1..127 bytes is needed");
	if (in_fd < -1 || out_fd < -1)
		return vmkit__err(-EINVAL, "console port %s: bad fd", name);
	if (c->n_console_ports == MACHINE_MAX_CONSOLE_PORTS)
		return vmkit__err(-E2BIG, "console port %s: at most %d extra ports", name,
				  MACHINE_MAX_CONSOLE_PORTS);
	p = &c->console_ports[c->n_console_ports];
	p->name = NULL;
	if (dup_opt(&p->name, name))
		return -ENOMEM;
	p->in_fd = in_fd;
	p->out_fd = out_fd;
	c->n_console_ports++;
	if (!c->console)
		c->console = true; /* ports need the device; port 0 on the serial's fds */
	return 0;
}

int vmkit_machine_config_set_rng(vmkit_machine_config *c, vmkit_virtio_transport transport,
				 uint64_t bytes_per_sec)
{
	int r;

	CHECK_CFG(c);
	if ((r = check_transport("rng", transport)))
		return r;
	c->rng = true;
	c->rng_transport = transport;
	c->rng_rate = bytes_per_sec;
	return 0;
}

int vmkit_machine_config_set_balloon(vmkit_machine_config *c, vmkit_virtio_transport transport)
{
	int r;

	CHECK_CFG(c);
	if ((r = check_transport("balloon", transport)))
		return r;
	c->balloon = true;
	c->balloon_transport = transport;
	return 0;
}

/* A UNIX socket path must fit sockaddr_un.sun_path with its NUL. */
#define SUN_PATH_MAX 107u

int vmkit_machine_config_add_net(vmkit_machine_config *c, const vmkit_net_config *n)
{
	struct machine_net *mn;
	int r;

	CHECK_CFG(c);
	if (!n || n->size < sizeof(*n))
		return vmkit__err(-EINVAL, "net: bad configuration (size)");
	if ((r = check_transport("net", n->transport)))
		return r;
	if (c->n_nets == VMKIT_NET_MAX)
		return vmkit__err(-E2BIG, "net: at most %d network devices", VMKIT_NET_MAX);
	if (n->fd < -1)
		return vmkit__err(-EINVAL, "net: bad fd %d", n->fd);
	switch (n->backend) {
	case VMKIT_NET_TAP:
		if (n->fd < 0 && (!n->ifname || !*n->ifname))
			return vmkit__err(-EINVAL, "net: a tap needs a name or an fd");
		if (n->fd < 0 && strlen(n->ifname) > 15)
			return vmkit__err(-EINVAL, "net: tap name '%s' is longer than 15 bytes",
					  n->ifname);
		break;
	case VMKIT_NET_STREAM:
	case VMKIT_NET_DGRAM:
		if (n->fd < 0 && (!n->path || !*n->path))
			return vmkit__err(-EINVAL, "net: a %s backend needs a socket path or an fd",
					  n->backend == VMKIT_NET_STREAM ? "stream" : "dgram");
		if (n->fd < 0 && strlen(n->path) > SUN_PATH_MAX)
			return vmkit__err(-EINVAL, "net: socket path is longer than %u bytes: %s",
					  SUN_PATH_MAX, n->path);
		break;
	case VMKIT_NET_CALLBACK:
		if (!n->tx_fn)
			return vmkit__err(-EINVAL, "net: the callback backend needs a tx_fn");
		break;
	default:
		return vmkit__err(-EINVAL, "net: unknown backend %u", n->backend);
	}
	if (n->mac_set) {
		static const uint8_t zero[6];
		if (n->mac[0] & 1)
			return vmkit__err(-EINVAL, "net: MAC %02x:%02x:%02x:%02x:%02x:%02x is a "
					  "multicast address", n->mac[0], n->mac[1], n->mac[2],
					  n->mac[3], n->mac[4], n->mac[5]);
		if (!memcmp(n->mac, zero, 6))
			return vmkit__err(-EINVAL, "net: MAC 00:00:00:00:00:00 is not an address");
	}
	mn = &c->nets[c->n_nets];
	memset(mn, 0, sizeof(*mn));
	if (dup_opt(&mn->ifname, n->backend == VMKIT_NET_TAP && n->fd < 0 ? n->ifname : NULL) ||
	    dup_opt(&mn->path, (n->backend == VMKIT_NET_STREAM || n->backend == VMKIT_NET_DGRAM) &&
					   n->fd < 0 ? n->path : NULL)) {
		free(mn->ifname);
		mn->ifname = NULL;
		return -ENOMEM;
	}
	mn->transport = n->transport;
	mn->backend = n->backend;
	mn->fd = n->backend == VMKIT_NET_CALLBACK ? -1 : n->fd;
	memcpy(mn->mac, n->mac, 6);
	mn->mac_set = n->mac_set;
	mn->rx = n->rx;
	mn->tx = n->tx;
	mn->tx_fn = n->tx_fn;
	mn->ready_fn = n->ready_fn;
	mn->userdata = n->userdata;
	c->n_nets++;
	return 0;
}

int vmkit_machine_config_set_vsock(vmkit_machine_config *c, const vmkit_vsock_config *v)
{
	int r;

	CHECK_CFG(c);
	if (!v || v->size < sizeof(*v))
		return vmkit__err(-EINVAL, "vsock: bad configuration (size)");
	if ((r = check_transport("vsock", v->transport)))
		return r;
	if (v->guest_cid < 3 || v->guest_cid > 0xfffffffeull)
		return vmkit__err(-EINVAL, "vsock: guest CID %llu is not in 3..4294967294",
				  (unsigned long long)v->guest_cid);
	if (!v->uds_path || !*v->uds_path)
		return vmkit__err(-EINVAL, "vsock: a socket path is needed");
	/* Room for "_<port>" (up to 11 bytes) after the path. */
	if (strlen(v->uds_path) > SUN_PATH_MAX - 11)
		return vmkit__err(-EINVAL, "vsock: socket path is longer than %u bytes: %s",
				  SUN_PATH_MAX - 11, v->uds_path);
	if (dup_opt(&c->vsock_path, v->uds_path))
		return -ENOMEM;
	c->vsock = true;
	c->vsock_transport = v->transport;
	c->vsock_cid = v->guest_cid;
	return 0;
}

int vmkit_machine_config_set_virtio_mmio_cmdline(vmkit_machine_config *c, bool enabled)
{
	CHECK_CFG(c);
	c->mmio_cmdline = enabled;
	return 0;
}

int vmkit_machine_config_add_virtio(vmkit_machine_config *c, const vmkit_virtio_ops *ops,
				    void *opaque, vmkit_virtio_transport transport)
{
	int r;

	CHECK_CFG(c);
	if (!ops || ops->size < sizeof(*ops))
		return vmkit__err(-EINVAL, "virtio device: bad ops table (size)");
	if ((r = check_transport("virtio device", transport)))
		return r;
	if (c->n_custom == MACHINE_MAX_CUSTOM)
		return vmkit__err(-E2BIG, "virtio device: at most %d of the embedder's own",
				  MACHINE_MAX_CUSTOM);
	c->custom[c->n_custom++] = (struct machine_custom){ ops, opaque, transport };
	return 0;
}

/* ---- JSON ------------------------------------------------------------------- */

static const char *type_name(json_type t)
{
	switch (t) {
	case json_type_null: return "null";
	case json_type_boolean: return "a boolean";
	case json_type_double: return "a number with a fraction";
	case json_type_int: return "an integer";
	case json_type_object: return "an object";
	case json_type_array: return "an array";
	case json_type_string: return "a string";
	}
	return "unknown";
}

static int want(json_object *v, json_type t, const char *key, const char *what)
{
	if (json_object_get_type(v) != t)
		return vmkit__err(-EINVAL, "config: \"%s\" must be %s, not %s", key, what,
				  type_name(json_object_get_type(v)));
	return 0;
}

/* Integers: JSON integers, or strings with a 0x prefix for addresses. */
static int get_u64(json_object *v, const char *key, uint64_t *out)
{
	if (json_object_get_type(v) == json_type_int) {
		int64_t i = json_object_get_int64(v);
		if (i < 0)
			return vmkit__err(-EINVAL, "config: \"%s\" is out of range", key);
		*out = (uint64_t)i;
		return 0;
	}
	if (json_object_get_type(v) == json_type_string) {
		const char *s = json_object_get_string(v);
		char *end;
		errno = 0;
		*out = strtoull(s, &end, 0);
		if (!*s || *end || errno || *s == '-')
			return vmkit__err(-EINVAL, "config: \"%s\": '%s' is not an unsigned integer", key, s);
		return 0;
	}
	return vmkit__err(-EINVAL, "config: \"%s\" must be an integer, not %s", key,
			  type_name(json_object_get_type(v)));
}

static int get_str(json_object *v, const char *key, const char **out)
{
	int r = want(v, json_type_string, key, "a string");
	if (r == 0)
		*out = json_object_get_string(v);
	return r;
}

static int parse_enum(const char *key, const char *s, const char *const *names, size_t n,
		      uint32_t *out)
{
	for (size_t i = 0; i < n; i++) {
		if (names[i] && strcmp(names[i], s) == 0) {
			*out = (uint32_t)i;
			return 0;
		}
	}
	return vmkit__err(-EINVAL, "config: \"%s\": unknown value '%s'", key, s);
}

static int parse_flat(vmkit_machine_config *c, json_object *o)
{
	static const char *const modes[] = { "real", "prot32", "long64" };
	uint64_t load = 0, entry = 0;
	uint32_t mode = VMKIT_CPU_LONG64;
	bool have_entry = false;
	int r = want(o, json_type_object, "flat", "an object");

	if (r)
		return r;
	json_object_object_foreach(o, k, v) {
		const char *s;
		if (strcmp(k, "load") == 0)
			r = get_u64(v, "flat.load", &load);
		else if (strcmp(k, "entry") == 0) {
			r = get_u64(v, "flat.entry", &entry);
			have_entry = true;
		} else if (strcmp(k, "mode") == 0) {
			r = get_str(v, "flat.mode", &s);
			if (!r)
				r = parse_enum("flat.mode", s, modes, ARRAY_SIZE(modes), &mode);
		} else
			r = vmkit__err(-EINVAL, "config: unknown key \"flat.%s\"", k);
		if (r)
			return r;
	}
	return vmkit_machine_config_set_flat(c, load, have_entry ? entry : load, mode);
}

static int parse_cpu(vmkit_machine_config *c, json_object *o)
{
	int r = want(o, json_type_object, "cpu", "an object");

	if (r)
		return r;
	json_object_object_foreach(o, k, v) {
		const char *s;
		if (strcmp(k, "vendor") == 0) {
			r = get_str(v, "cpu.vendor", &s);
			if (!r)
				r = vmkit_machine_config_set_cpu_vendor(c, s);
		} else if (strcmp(k, "mask") == 0) {
			r = want(v, json_type_array, "cpu.mask", "an array of feature names");
			for (size_t i = 0; !r && i < json_object_array_length(v); i++) {
				r = get_str(json_object_array_get_idx(v, i), "cpu.mask[]", &s);
				if (!r)
					r = vmkit_machine_config_mask_cpu_feature(c, s);
			}
		} else {
			r = vmkit__err(-EINVAL, "config: unknown key \"cpu.%s\"", k);
		}
		if (r)
			return r;
	}
	return 0;
}

static int parse_initrd(vmkit_machine_config *c, json_object *v)
{
	const char *s;
	int r;

	if (json_object_get_type(v) == json_type_string)
		return vmkit_machine_config_add_initrd(c, json_object_get_string(v));
	r = want(v, json_type_array, "initrd", "a path or an array of paths");
	for (size_t i = 0; !r && i < json_object_array_length(v); i++) {
		r = get_str(json_object_array_get_idx(v, i), "initrd[]", &s);
		if (!r)
			r = vmkit_machine_config_add_initrd(c, s);
	}
	return r;
}

static const char *const transports[] = { "pci", "mmio" };

static int get_transport(json_object *v, const char *key, uint32_t *t)
{
	const char *s;
	int r = get_str(v, key, &s);
	return r ? r : parse_enum(key, s, transports, ARRAY_SIZE(transports), t);
}

static int parse_disk(vmkit_machine_config *c, json_object *o)
{
	vmkit_disk_config d = VMKIT_DISK_CONFIG_INIT;
	uint64_t n;
	int r;

	if (json_object_get_type(o) == json_type_string) {
		d.path = json_object_get_string(o);
		return vmkit_machine_config_add_disk(c, &d);
	}
	if ((r = want(o, json_type_object, "disks[]", "a path or an object")))
		return r;
	json_object_object_foreach(o, k, v) {
		if (strcmp(k, "path") == 0)
			r = get_str(v, "disks[].path", &d.path);
		else if (strcmp(k, "readonly") == 0) {
			r = want(v, json_type_boolean, "disks[].readonly", "true or false");
			d.readonly = !r && json_object_get_boolean(v);
		} else if (strcmp(k, "serial") == 0)
			r = get_str(v, "disks[].serial", &d.serial);
		else if (strcmp(k, "transport") == 0)
			r = get_transport(v, "disks[].transport", &d.transport);
		else if (strcmp(k, "block_size") == 0) {
			r = get_u64(v, "disks[].block_size", &n);
			if (!r && n > 4096)
				r = vmkit__err(-EINVAL, "config: \"disks[].block_size\" is too large");
			d.block_size = (uint32_t)n;
		} else
			r = vmkit__err(-EINVAL, "config: unknown key \"disks[].%s\"", k);
		if (r)
			return r;
	}
	if (!d.path)
		return vmkit__err(-EINVAL, "config: \"disks[]\" needs a \"path\"");
	return vmkit_machine_config_add_disk(c, &d);
}

/* "console"/"rng"/"balloon": true, false, or an object with "transport"
 * (and "rate" for rng). */
static int parse_simple_device(vmkit_machine_config *c, const char *key, json_object *o)
{
	uint32_t t = VMKIT_VIRTIO_PCI;
	uint64_t rate = 0;
	char name[64];
	int r;

	if (json_object_get_type(o) == json_type_boolean) {
		if (!json_object_get_boolean(o)) {
			if (strcmp(key, "console") == 0)
				c->console = false;
			else if (strcmp(key, "rng") == 0)
				c->rng = false;
			else
				c->balloon = false;
			return 0;
		}
	} else {
		if ((r = want(o, json_type_object, key, "true, false or an object")))
			return r;
		json_object_object_foreach(o, k, v) {
			snprintf(name, sizeof(name), "%s.%s", key, k);
			if (strcmp(k, "transport") == 0)
				r = get_transport(v, name, &t);
			else if (strcmp(key, "rng") == 0 && strcmp(k, "rate") == 0)
				r = get_u64(v, name, &rate);
			else
				r = vmkit__err(-EINVAL, "config: unknown key \"%s\"", name);
			if (r)
				return r;
		}
	}
	if (strcmp(key, "console") == 0)
		return vmkit_machine_config_set_virtio_console(c, t, MACHINE_FD_SERIAL,
							       MACHINE_FD_SERIAL);
	if (strcmp(key, "rng") == 0)
		return vmkit_machine_config_set_rng(c, t, rate);
	return vmkit_machine_config_set_balloon(c, t);
}

/* "52:54:00:12:34:56" */
static int parse_mac(const char *key, const char *s, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++) {
		char *end;
		unsigned long b;

		if (!((s[0] >= '0' && s[0] <= '9') || (s[0] >= 'a' && s[0] <= 'f') ||
		      (s[0] >= 'A' && s[0] <= 'F')))
			goto bad;
		b = strtoul(s, &end, 16);
		if (end - s > 2 || b > 0xff || (i < 5 && *end != ':') || (i == 5 && *end))
			goto bad;
		mac[i] = (uint8_t)b;
		s = end + (i < 5);
	}
	return 0;
bad:
	return vmkit__err(-EINVAL, "config: \"%s\" is not a MAC address like 52:54:00:12:34:56",
			  key);
}

/* {"bytes_per_sec": N, "bytes_burst": N, "frames_per_sec": N, "frames_burst": N} */
static int parse_rate(json_object *o, const char *key, vmkit_rate_limit *rl)
{
	char name[64];
	int r;

	if ((r = want(o, json_type_object, key, "an object")))
		return r;
	json_object_object_foreach(o, k, v) {
		uint64_t *dst = strcmp(k, "bytes_per_sec") == 0  ? &rl->bytes_per_sec :
				strcmp(k, "bytes_burst") == 0    ? &rl->bytes_burst :
				strcmp(k, "frames_per_sec") == 0 ? &rl->frames_per_sec :
				strcmp(k, "frames_burst") == 0   ? &rl->frames_burst : NULL;

		snprintf(name, sizeof(name), "%s.%s", key, k);
		if (!dst)
			return vmkit__err(-EINVAL, "config: unknown key \"%s\"", name);
		if ((r = get_u64(v, name, dst)))
			return r;
	}
	return 0;
}

/* "net": [{"tap": NAME | "fd": N | "stream": PATH | "dgram": PATH,
 *          "mac": M, "transport": T, "rx_limit": {...}, "tx_limit": {...}}] */
static int parse_net(vmkit_machine_config *c, json_object *o)
{
	vmkit_net_config n = VMKIT_NET_CONFIG_INIT;
	const char *s;
	uint64_t fd;
	int backends = 0, r;

	if ((r = want(o, json_type_object, "net[]", "an object")))
		return r;
	json_object_object_foreach(o, k, v) {
		if (strcmp(k, "tap") == 0 || strcmp(k, "stream") == 0 || strcmp(k, "dgram") == 0) {
			char name[16];
			snprintf(name, sizeof(name), "net[].%s", k);
			if ((r = get_str(v, name, &s)))
				return r;
			n.backend = k[0] == 't' ? VMKIT_NET_TAP : k[0] == 's' ? VMKIT_NET_STREAM :
									VMKIT_NET_DGRAM;
			if (k[0] == 't')
				n.ifname = s;
			else
				n.path = s;
			backends++;
		} else if (strcmp(k, "fd") == 0) {
			if ((r = get_u64(v, "net[].fd", &fd)))
				return r;
			if (fd > INT32_MAX)
				return vmkit__err(-EINVAL, "config: \"net[].fd\" is not an fd");
			n.backend = VMKIT_NET_TAP;
			n.fd = (int)fd;
			backends++;
		} else if (strcmp(k, "mac") == 0) {
			if ((r = get_str(v, "net[].mac", &s)) || (r = parse_mac("net[].mac", s, n.mac)))
				return r;
			n.mac_set = true;
		} else if (strcmp(k, "transport") == 0) {
			if ((r = get_transport(v, "net[].transport", &n.transport)))
				return r;
		} else if (strcmp(k, "rx_limit") == 0 || strcmp(k, "tx_limit") == 0) {
			if ((r = parse_rate(v, k[0] == 'r' ? "net[].rx_limit" : "net[].tx_limit",
					    k[0] == 'r' ? &n.rx : &n.tx)))
				return r;
		} else {
			return vmkit__err(-EINVAL, "config: unknown key \"net[].%s\"", k);
		}
	}
	if (backends != 1)
		return vmkit__err(-EINVAL, "config: \"net[]\" needs exactly one of \"tap\", "
				  "\"fd\", \"stream\", \"dgram\"");
	return vmkit_machine_config_add_net(c, &n);
}

/* "vsock": {"cid": N, "path": PATH, "transport": T} */
static int parse_vsock(vmkit_machine_config *c, json_object *o)
{
	vmkit_vsock_config vs = VMKIT_VSOCK_CONFIG_INIT;
	int r;

	if ((r = want(o, json_type_object, "vsock", "an object")))
		return r;
	json_object_object_foreach(o, k, v) {
		if (strcmp(k, "cid") == 0)
			r = get_u64(v, "vsock.cid", &vs.guest_cid);
		else if (strcmp(k, "path") == 0)
			r = get_str(v, "vsock.path", &vs.uds_path);
		else if (strcmp(k, "transport") == 0)
			r = get_transport(v, "vsock.transport", &vs.transport);
		else
			r = vmkit__err(-EINVAL, "config: unknown key \"vsock.%s\"", k);
		if (r)
			return r;
	}
	if (!vs.guest_cid || !vs.uds_path)
		return vmkit__err(-EINVAL, "config: \"vsock\" needs \"cid\" and \"path\"");
	return vmkit_machine_config_set_vsock(c, &vs);
}

static int parse_key(vmkit_machine_config *c, const char *k, json_object *v)
{
	static const char *const formats[] = { "auto", "bzimage", "pvh", "multiboot", "flat" };
	static const char *const policies[] = { "ignore", "strict" };
	const char *s;
	uint64_t n;
	uint32_t e = 0;
	int r;

	if (strcmp(k, "cpus") == 0) {
		if ((r = get_u64(v, k, &n)))
			return r;
		return vmkit_machine_config_set_cpus(c, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
	}
	if (strcmp(k, "memory_mib") == 0) {
		if ((r = get_u64(v, k, &n)))
			return r;
		if (n > (VMKIT_MAX_MEMORY >> 20))
			return vmkit__err(-EINVAL, "memory: %llu MiB is too large (maximum %llu MiB)",
					  (unsigned long long)n, VMKIT_MAX_MEMORY >> 20);
		return vmkit_machine_config_set_memory(c, n << 20);
	}
	if (strcmp(k, "kernel") == 0)
		return (r = get_str(v, k, &s)) ? r : vmkit_machine_config_set_kernel(c, s);
	if (strcmp(k, "kernel_format") == 0) {
		if ((r = get_str(v, k, &s)) || (r = parse_enum(k, s, formats, ARRAY_SIZE(formats), &e)))
			return r;
		return vmkit_machine_config_set_kernel_format(c, e);
	}
	if (strcmp(k, "flat") == 0)
		return parse_flat(c, v);
	if (strcmp(k, "initrd") == 0 || strcmp(k, "modules") == 0)
		return parse_initrd(c, v);
	if (strcmp(k, "cmdline") == 0)
		return (r = get_str(v, k, &s)) ? r : vmkit_machine_config_set_cmdline(c, s);
	if (strcmp(k, "firmware") == 0)
		return (r = get_str(v, k, &s)) ? r : vmkit_machine_config_set_firmware(c, s);
	if (strcmp(k, "acpi") == 0)
		return (r = want(v, json_type_boolean, k, "true or false")) ? r :
			vmkit_machine_config_set_acpi(c, json_object_get_boolean(v));
	if (strcmp(k, "option_roms") == 0) {
		if ((r = want(v, json_type_array, k, "an array of paths")))
			return r;
		for (size_t i = 0; !r && i < json_object_array_length(v); i++) {
			r = get_str(json_object_array_get_idx(v, i), "option_roms[]", &s);
			if (!r)
				r = vmkit_machine_config_add_option_rom(c, s);
		}
		return r;
	}
	if (strcmp(k, "hugepages") == 0)
		return (r = want(v, json_type_boolean, k, "true or false")) ? r :
			vmkit_machine_config_set_hugepages(c, json_object_get_boolean(v));
	if (strcmp(k, "unhandled") == 0) {
		if ((r = get_str(v, k, &s)) || (r = parse_enum(k, s, policies, ARRAY_SIZE(policies), &e)))
			return r;
		return vmkit_machine_config_set_unhandled_policy(c, e);
	}
	if (strcmp(k, "exit_port") == 0) {
		if (json_object_get_type(v) == json_type_boolean && !json_object_get_boolean(v))
			return vmkit_machine_config_set_exit_port(c, false, 0);
		if ((r = get_u64(v, k, &n)))
			return r;
		if (n > 0xfffc)
			return vmkit__err(-EINVAL, "config: \"exit_port\": 0x%llx is not a port",
					  (unsigned long long)n);
		return vmkit_machine_config_set_exit_port(c, true, (uint16_t)n);
	}
	if (strcmp(k, "cpu") == 0)
		return parse_cpu(c, v);
	if (strcmp(k, "disks") == 0) {
		if ((r = want(v, json_type_array, k, "an array of disks")))
			return r;
		for (size_t i = 0; !r && i < json_object_array_length(v); i++)
			r = parse_disk(c, json_object_array_get_idx(v, i));
		return r;
	}
	if (strcmp(k, "console") == 0 || strcmp(k, "rng") == 0 || strcmp(k, "balloon") == 0)
		return parse_simple_device(c, k, v);
	if (strcmp(k, "net") == 0) {
		if ((r = want(v, json_type_array, k, "an array of network devices")))
			return r;
		for (size_t i = 0; !r && i < json_object_array_length(v); i++)
			r = parse_net(c, json_object_array_get_idx(v, i));
		return r;
	}
	if (strcmp(k, "vsock") == 0)
		return parse_vsock(c, v);
	if (strcmp(k, "virtio_mmio_cmdline") == 0) {
		if ((r = want(v, json_type_boolean, k, "true or false")))
			return r;
		return vmkit_machine_config_set_virtio_mmio_cmdline(c, json_object_get_boolean(v));
	}
	return vmkit__err(-EINVAL, "config: unknown key \"%s\"", k);
}

int vmkit_machine_config_from_json(const char *json, size_t len, vmkit_machine_config **out)
{
	struct json_tokener *tok;
	json_object *root;
	vmkit_machine_config *c;
	enum json_tokener_error jerr;
	int r;

	if (!json || !out)
		return vmkit__err(-EINVAL, "vmkit_machine_config_from_json: NULL argument");
	*out = NULL;
	if (len > JSON_MAX_BYTES || len > INT32_MAX)
		return vmkit__err(-E2BIG, "config: %zu bytes is too large (maximum %u)", len,
				  JSON_MAX_BYTES);
	tok = json_tokener_new();
	if (!tok)
		return vmkit__err(-ENOMEM, "out of memory");
	root = json_tokener_parse_ex(tok, json, (int)len);
	jerr = json_tokener_get_error(tok);
	if (!root || jerr != json_tokener_success ||
	    json_tokener_get_parse_end(tok) < len) {
		size_t at = json_tokener_get_parse_end(tok);
		bool trailing = root && jerr == json_tokener_success;
		/* Report the line of the error for people editing files. */
		unsigned line = 1;
		for (size_t i = 0; i < at && i < len; i++)
			line += json[i] == '\n';
		if (trailing) {
			/* only whitespace may follow the document */
			size_t i = at;
			while (i < len && strchr(" \t\r\n", json[i]))
				i++;
			if (i == len)
				goto parsed;
		}
		r = vmkit__err(-EINVAL, "config: malformed JSON at line %u: %s", line,
			       trailing ? "unexpected data after the document" :
			       jerr == json_tokener_continue ? "unexpected end of input" :
			       json_tokener_error_desc(jerr));
		json_object_put(root);
		json_tokener_free(tok);
		return r;
	}
parsed:
	json_tokener_free(tok);
	if (json_object_get_type(root) != json_type_object) {
		json_object_put(root);
		return vmkit__err(-EINVAL, "config: the document must be a JSON object");
	}
	r = vmkit_machine_config_new(&c);
	if (r) {
		json_object_put(root);
		return r;
	}
	json_object_object_foreach(root, k, v) {
		r = parse_key(c, k, v);
		if (r)
			break;
	}
	json_object_put(root);
	if (r) {
		vmkit_machine_config_free(c);
		return r;
	}
	*out = c;
	return 0;
}

int vmkit_machine_config_load(const char *path, vmkit_machine_config **out)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t got = 0;
	int fd, r;

	if (!path || !out)
		return vmkit__err(-EINVAL, "vmkit_machine_config_load: NULL argument");
	/* O_NONBLOCK: a FIFO without a writer must fail below, not block. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return vmkit__err(-errno, "config: %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return vmkit__err(-EINVAL, "config: %s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > JSON_MAX_BYTES) {
		close(fd);
		return vmkit__err(-E2BIG, "config: %s: too large (maximum %u bytes)", path,
				  JSON_MAX_BYTES);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return vmkit__err(-ENOMEM, "out of memory");
	}
	while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
		got += (size_t)n;
	close(fd);
	r = vmkit_machine_config_from_json(buf, got, out);
	free(buf);
	if (r < 0) {
		/* prefix the file name to the parser's message */
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", vmkit_last_error());
		vmkit__err(r, "%s: %s", path, msg);
	}
	return r;
}
