/* SPDX-License-Identifier: MIT */
/**
 * vmkit/vm.h - a bare virtual machine: guest memory, the in-kernel
 * interrupt controllers, and the PIO/MMIO address spaces that devices claim.
 */
#ifndef VMKIT_VM_H
#define VMKIT_VM_H

#include "host.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmkit_vm vmkit_vm;

/** What happens to a guest access to a port or MMIO address nobody claims. */
typedef enum vmkit_unhandled_policy {
	/** Reads return all ones, writes are dropped; both are counted. */
	VMKIT_UNHANDLED_IGNORE = 0,
	/** The access is an error: the vCPU run returns VMKIT_VCPU_EXIT_UNHANDLED. */
	VMKIT_UNHANDLED_STRICT = 1,
	/** vmkit_vcpu_run() returns VMKIT_VCPU_EXIT_IO/_MMIO: the caller
	 * emulates the access (for embedders driving vCPUs themselves). */
	VMKIT_UNHANDLED_EXIT = 2,
} vmkit_unhandled_policy;

/** VM creation options. Initialise with VMKIT_VM_CONFIG_INIT. */
typedef struct vmkit_vm_config {
	uint32_t size;              /**< sizeof(vmkit_vm_config) */
	uint32_t flags;             /**< VMKIT_VM_* */
	uint32_t unhandled_policy;  /**< vmkit_unhandled_policy */
	uint32_t reserved;
} vmkit_vm_config;

/** Do not create the in-kernel PIC/IOAPIC/LAPIC and PIT. */
#define VMKIT_VM_NO_IRQCHIP (1u << 0)
#define VMKIT_VM_CONFIG_INIT { sizeof(vmkit_vm_config), 0, VMKIT_UNHANDLED_IGNORE, 0 }

/**
 * Create a VM on @host. @cfg may be NULL for the defaults (in-kernel
 * irqchip and PIT, unclaimed accesses ignored). The VM keeps a reference to
 * @host, which must outlive it. Free with vmkit_vm_free(). Since: 0.1
 */
VMKIT_EXPORT int vmkit_vm_new(vmkit_host *host, const vmkit_vm_config *cfg, vmkit_vm **out);

/** Destroy the VM, its vCPUs and memory. NULL is a no-op. No vCPU of it
 * may be running. Since: 0.1 */
VMKIT_EXPORT void vmkit_vm_free(vmkit_vm *vm);

/* ---- guest memory ------------------------------------------------------ */

typedef enum vmkit_memory_backing {
	VMKIT_MEMORY_ANONYMOUS = 0, /**< private anonymous mapping */
	VMKIT_MEMORY_MEMFD = 1,     /**< shared memfd (can be handed to other processes) */
} vmkit_memory_backing;

/** A guest-physical memory region. Initialise with VMKIT_MEMORY_REGION_INIT. */
typedef struct vmkit_memory_region {
	uint32_t size;       /**< sizeof(vmkit_memory_region) */
	uint32_t backing;    /**< vmkit_memory_backing */
	uint64_t gpa;        /**< guest-physical base, page aligned */
	uint64_t length;     /**< bytes, page aligned, > 0 */
	uint32_t flags;      /**< VMKIT_MEMORY_* */
	uint32_t reserved;
} vmkit_memory_region;

/** The guest may read but not write the region (writes exit as MMIO). */
#define VMKIT_MEMORY_READONLY (1u << 0)
/** Back the region with transparent huge pages where possible. */
#define VMKIT_MEMORY_HUGEPAGES (1u << 1)
/** Do not dump the region into core files. */
#define VMKIT_MEMORY_NODUMP (1u << 2)
/** Never back the region with transparent huge pages, even where the
 * host's THP mode is "always" (madvise(MADV_NOHUGEPAGE)); not with
 * VMKIT_MEMORY_HUGEPAGES. Since: 0.1 */
#define VMKIT_MEMORY_NOHUGEPAGES (1u << 3)
#define VMKIT_MEMORY_REGION_INIT { sizeof(vmkit_memory_region), 0, 0, 0, 0, 0 }

/**
 * Allocate and map a region of guest memory. Overlap with an existing
 * region is -EEXIST; while any vCPU is inside vmkit_vcpu_run() (pause a
 * machine first) -EBUSY. On success returns the region's id (>= 0), which
 * vmkit_vm_remove_memory() takes. Since: 0.1
 */
VMKIT_EXPORT int vmkit_vm_add_memory(vmkit_vm *vm, const vmkit_memory_region *region);

/** Unmap and free the region @id; -EBUSY while a vCPU runs. Since: 0.1 */
VMKIT_EXPORT int vmkit_vm_remove_memory(vmkit_vm *vm, int id);

/**
 * Copy @len bytes of guest memory at @gpa into @buf. The range may cross
 * regions but must be entirely backed by memory: otherwise -EFAULT and
 * nothing is copied. Since: 0.1
 */
VMKIT_EXPORT int vmkit_vm_read(vmkit_vm *vm, uint64_t gpa, void *buf, size_t len);

/** Copy @len bytes from @buf into guest memory at @gpa; as vmkit_vm_read(). */
VMKIT_EXPORT int vmkit_vm_write(vmkit_vm *vm, uint64_t gpa, const void *buf, size_t len);

/**
 * Host address of guest-physical [@gpa, @gpa + @len) when it lies in one
 * region; -EFAULT otherwise. The pointer stays valid until the region is
 * removed. Since: 0.1
 */
VMKIT_EXPORT int vmkit_vm_translate(vmkit_vm *vm, uint64_t gpa, size_t len, void **hva);

/* ---- devices on the PIO and MMIO buses ---------------------------------- */

/**
 * Handlers of a claimed address range. They see the offset into the
 * range, never the absolute address. @len is 1, 2, 4 or 8. @data is in
 * guest (little-endian) byte order. They run on the vCPU thread that made
 * the access; several vCPUs may call them at once.
 */
typedef struct vmkit_io_ops {
	uint32_t size; /**< sizeof(vmkit_io_ops) */
	uint32_t reserved;
	/** Fill @data; left untouched it reads as all ones. */
	void (*read)(void *opaque, uint64_t offset, void *data, uint32_t len);
	void (*write)(void *opaque, uint64_t offset, const void *data, uint32_t len);
} vmkit_io_ops;

/**
 * Claim I/O ports [@base, @base + @len) for @ops/@opaque. Overlap is
 * -EEXIST. @ops must stay valid while registered. @flags must be 0.
 * Since: 0.1
 */
VMKIT_EXPORT int vmkit_vm_register_pio(vmkit_vm *vm, uint16_t base, uint32_t len,
				       const vmkit_io_ops *ops, void *opaque, uint32_t flags);
/** Release the port range that starts at @base. Since: 0.1 */
VMKIT_EXPORT int vmkit_vm_unregister_pio(vmkit_vm *vm, uint16_t base);

/** Claim guest-physical [@base, @base + @len) as MMIO; as the PIO call. */
VMKIT_EXPORT int vmkit_vm_register_mmio(vmkit_vm *vm, uint64_t base, uint64_t len,
					const vmkit_io_ops *ops, void *opaque, uint32_t flags);
/** Release the MMIO range that starts at @base. Since: 0.1 */
VMKIT_EXPORT int vmkit_vm_unregister_mmio(vmkit_vm *vm, uint64_t base);

/** Raise (@level true) or lower an interrupt line (GSI) of the in-kernel
 * irqchip. Since: 0.1 */
VMKIT_EXPORT int vmkit_vm_set_irq(vmkit_vm *vm, uint32_t gsi, bool level);

/** Counters of the whole VM. Initialise size before the call. */
typedef struct vmkit_vm_stats {
	uint32_t size; /**< sizeof(vmkit_vm_stats) */
	uint32_t reserved;
	uint64_t pio_exits;
	uint64_t mmio_exits;
	uint64_t unhandled_reads;  /**< unclaimed accesses, reads */
	uint64_t unhandled_writes; /**< unclaimed accesses, writes (dropped) */
	uint64_t memory_bytes;     /**< guest memory mapped */
} vmkit_vm_stats;

/** Fill @stats (whose size field the caller sets). Since: 0.1 */
VMKIT_EXPORT int vmkit_vm_get_stats(vmkit_vm *vm, vmkit_vm_stats *stats);

#ifdef __cplusplus
}
#endif

#endif
