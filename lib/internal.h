/* SPDX-License-Identifier: MIT */
/* Internal declarations shared across lib/ and devices/. Not installed. */
#ifndef VMKIT_INTERNAL_H
#define VMKIT_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "vmkit/vmkit.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define VMKIT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define VMKIT_UNUSED __attribute__((unused))

/* Little-endian fields of guest-visible structures (virtio config spaces
 * and headers, device-state blobs), byte by byte: any alignment, any host. */
static inline void vmkit__put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void vmkit__put_le32(uint8_t *p, uint32_t v)
{
	vmkit__put_le16(p, (uint16_t)v);
	vmkit__put_le16(p + 2, (uint16_t)(v >> 16));
}
static inline void vmkit__put_le64(uint8_t *p, uint64_t v)
{
	vmkit__put_le32(p, (uint32_t)v);
	vmkit__put_le32(p + 4, (uint32_t)(v >> 32));
}
static inline uint16_t vmkit__get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t vmkit__get_le32(const uint8_t *p)
{
	return (uint32_t)vmkit__get_le16(p) | (uint32_t)vmkit__get_le16(p + 2) << 16;
}
static inline uint64_t vmkit__get_le64(const uint8_t *p)
{
	return (uint64_t)vmkit__get_le32(p) | (uint64_t)vmkit__get_le32(p + 4) << 32;
}

/* ---- errors and logging (lib/error.c) ----------------------------------- */

/* Set the thread's last error to a one-line message and return @code
 * (a negative errno). */
int vmkit__err(int code, const char *fmt, ...) VMKIT_PRINTF(2, 3);
/* Keep the previous message and return @code (for propagating). */
static inline int vmkit__errno(void) { return -errno; }
void vmkit__clear_error(void);

struct vmkit_logger {
	vmkit_log_fn fn;
	void *userdata;
	vmkit_log_level max_level;
};
void vmkit__log(const struct vmkit_logger *lg, vmkit_log_level level, const char *fmt, ...)
	VMKIT_PRINTF(3, 4);

/* ---- guest memory (lib/memory/gmem.c) ----------------------------------- */

/* A guest-physical map. Readers take no lock on the hot path: regions are
 * only added/removed while no vCPU runs. */
struct vmkit_gmem_region {
	uint64_t gpa;
	uint64_t len;
	uint8_t *hva;
	int fd;         /* memfd or -1 */
	uint32_t flags; /* VMKIT_MEMORY_* */
	int id;
	bool owned;     /* we mmap'd it and munmap on removal */
};

#define VMKIT_GMEM_MAX_REGIONS 64

struct vmkit_gmem {
	struct vmkit_gmem_region r[VMKIT_GMEM_MAX_REGIONS];
	unsigned n;
};

void vmkit__gmem_init(struct vmkit_gmem *gm);
/* Map a new region; returns its id (>= 0) or a negative error. */
int vmkit__gmem_add(struct vmkit_gmem *gm, uint64_t gpa, uint64_t len, uint32_t backing,
		    uint32_t flags);
/* Add caller-owned host memory (unit tests, firmware images). */
int vmkit__gmem_add_host(struct vmkit_gmem *gm, uint64_t gpa, uint64_t len, void *hva,
			 uint32_t flags);
int vmkit__gmem_remove(struct vmkit_gmem *gm, int id);
const struct vmkit_gmem_region *vmkit__gmem_find(const struct vmkit_gmem *gm, int id);
void vmkit__gmem_destroy(struct vmkit_gmem *gm);
/* Bounds-checked copies; a range that is not fully backed is -EFAULT and
 * copies nothing. */
int vmkit__gmem_read(const struct vmkit_gmem *gm, uint64_t gpa, void *buf, size_t len);
int vmkit__gmem_write(const struct vmkit_gmem *gm, uint64_t gpa, const void *buf, size_t len);
/* Host pointer for [gpa, gpa+len) inside one region, or NULL. */
void *vmkit__gmem_ptr(const struct vmkit_gmem *gm, uint64_t gpa, size_t len);
/* Host pointer for @gpa and how many bytes follow it in the same region;
 * NULL if @gpa is not memory. */
void *vmkit__gmem_span(const struct vmkit_gmem *gm, uint64_t gpa, uint64_t *avail);
/* The same for memory a device is about to write (DMA): NULL inside a
 * read-only region, which is read-only to devices as it is to the guest
 * (a firmware ROM). vmkit__gmem_ptr_rw likewise. */
void *vmkit__gmem_span_rw(const struct vmkit_gmem *gm, uint64_t gpa, uint64_t *avail);
void *vmkit__gmem_ptr_rw(const struct vmkit_gmem *gm, uint64_t gpa, size_t len);
/* vmkit__gmem_write for a device (DMA): -EACCES, nothing written, when
 * any of the range is read-only. */
int vmkit__gmem_write_dma(const struct vmkit_gmem *gm, uint64_t gpa, const void *buf, size_t len);
uint64_t vmkit__gmem_total(const struct vmkit_gmem *gm);

/* ---- buses (lib/bus/bus.c) ----------------------------------------------- */

struct vmkit_bus_range {
	uint64_t base;
	uint64_t len;
	const vmkit_io_ops *ops;
	void *opaque;
};

struct vmkit_bus {
	pthread_rwlock_t lock;
	struct vmkit_bus_range *r; /* sorted by base, no overlap */
	size_t n, cap;
};

void vmkit__bus_init(struct vmkit_bus *bus);
void vmkit__bus_destroy(struct vmkit_bus *bus);
int vmkit__bus_register(struct vmkit_bus *bus, uint64_t base, uint64_t len,
			const vmkit_io_ops *ops, void *opaque);
int vmkit__bus_unregister(struct vmkit_bus *bus, uint64_t base);
/* Dispatch an access. Returns true if a device claimed it. A read that
 * nobody claims leaves @data untouched. Accesses that straddle the end of
 * a range are split: the claimed part goes to the device. */
bool vmkit__bus_read(struct vmkit_bus *bus, uint64_t addr, void *data, uint32_t len);
bool vmkit__bus_write(struct vmkit_bus *bus, uint64_t addr, const void *data, uint32_t len);

/* ---- KVM objects (lib/kvm/) ---------------------------------------------- */

struct vmkit_host {
	int fd;
	int api_version;
	char *path;
	struct vmkit_logger log;
	pthread_mutex_t lock;                /* guards supported_cpuid */
	struct kvm_cpuid2 *supported_cpuid; /* cached */
	int vcpu_mmap_size;
};

struct vmkit_vm {
	vmkit_host *host;
	int fd;
	uint32_t flags;
	uint32_t unhandled_policy;
	struct vmkit_logger log;
	struct vmkit_gmem mem;
	struct vmkit_bus pio;
	struct vmkit_bus mmio;
	pthread_mutex_t lock; /* memory slots, vcpu list */
	struct vmkit_vcpu *vcpus[VMKIT_MAX_CPUS];
	_Atomic uint64_t pio_exits, mmio_exits, unhandled_reads, unhandled_writes;
	bool has_irqchip;
	int coalesced_ring_off; /* unused: reserved */
	/* MSI routes (vmkit__vm_msi_route_*), under route_lock. */
	pthread_mutex_t route_lock;
	struct vmkit_msi_route *msi_routes; /* indexed by gsi - VMKIT_MSI_GSI_BASE */
	uint32_t n_msi_routes;              /* slots allocated */
};

#define VMKIT_MSI_GSI_BASE 24u
#define VMKIT_MSI_MAX_ROUTES 1000u
struct vmkit_msi_route {
	bool used;
	uint64_t addr;
	uint32_t data;
};

struct vmkit_vcpu {
	vmkit_vm *vm;
	uint32_t index;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	_Atomic pthread_t thread; /* thread inside vmkit_vcpu_run, or 0 */
	_Atomic bool kick;
	_Atomic bool stop_requested;
	_Atomic uint64_t runs, exits_io, exits_mmio, exits_hlt, exits_interrupted, exits_other;
};

/* ---- KVM plumbing for devices (lib/kvm/vm.c) ------------------------------ */

/* Assign (or, @assign false, remove) an ioeventfd: a guest write of @len
 * bytes (1, 2, 4 or 8; 0 = any length, MMIO only) to @addr (a port when
 * @pio) signals @fd without a userspace exit. With @datamatch only writes
 * of the value @data match. */
int vmkit__vm_ioeventfd(vmkit_vm *vm, uint64_t addr, uint32_t len, bool pio, bool datamatch,
			uint64_t data, int fd, bool assign);
/* Route @fd to GSI @gsi (an edge: each write of the eventfd injects once).
 * With @resample_fd >= 0 the GSI is level-triggered: it stays asserted
 * until the guest's EOI, which signals @resample_fd. */
int vmkit__vm_irqfd(vmkit_vm *vm, uint32_t gsi, int fd, int resample_fd, bool assign);
/* MSI routes: a GSI (>= 24) that delivers the message {@addr, @data}.
 * add allocates the GSI, update changes its message, del frees it; each
 * commits the whole routing table (PC routes + MSI routes) to KVM. */
int vmkit__vm_msi_route_add(vmkit_vm *vm, uint64_t addr, uint32_t data, uint32_t *gsi);
int vmkit__vm_msi_route_update(vmkit_vm *vm, uint32_t gsi, uint64_t addr, uint32_t data);
int vmkit__vm_msi_route_del(vmkit_vm *vm, uint32_t gsi);
/* Inject one MSI directly (KVM_SIGNAL_MSI). 1 delivered, 0 blocked by
 * the guest, < 0 error. */
int vmkit__vm_signal_msi(vmkit_vm *vm, uint64_t addr, uint32_t data);

struct kvm_cpuid2;
/* KVM_GET_SUPPORTED_CPUID of @host, cached in the host; owned by it. */
int vmkit__host_cpuid(vmkit_host *host, const struct kvm_cpuid2 **out);

/* The signal used to kick vCPU threads out of KVM_RUN (SIGRTMIN + 7 by
 * default; installed once with an empty handler, SA_RESTART off). */
int vmkit__kick_signal(void);

#endif
