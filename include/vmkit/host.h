/* SPDX-License-Identifier: MIT */
/**
 * vmkit/host.h - the hypervisor: an open /dev/kvm and what it can do.
 */
#ifndef VMKIT_HOST_H
#define VMKIT_HOST_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An open hypervisor device. Opaque; one may back many VMs. */
typedef struct vmkit_host vmkit_host;

/** One CPUID leaf, as KVM reports and accepts it. */
typedef struct vmkit_cpuid_entry {
	uint32_t function;
	uint32_t index;
	uint32_t flags; /**< VMKIT_CPUID_FLAG_* */
	uint32_t eax, ebx, ecx, edx;
} vmkit_cpuid_entry;

/** The entry depends on its subleaf (index). */
#define VMKIT_CPUID_FLAG_SIGNIFICANT_INDEX (1u << 0)

/**
 * Open the hypervisor at @path (NULL: "/dev/kvm") and check that it speaks
 * KVM API version 12 with the capabilities vmkit needs. @flags must be 0.
 * On success *@out owns the handle: free it with vmkit_host_free().
 * Errors: -ENOENT (no such device), -EACCES (no permission), -ENODEV (not a
 * usable KVM), -EINVAL. Since: 0.1
 */
VMKIT_EXPORT int vmkit_host_open(const char *path, uint32_t flags, vmkit_host **out);

/** Close the hypervisor handle. NULL is a no-op. VMs created from it must
 * be freed first. Since: 0.1 */
VMKIT_EXPORT void vmkit_host_free(vmkit_host *host);

/** Install the log callback used by @host and every VM/machine made from it
 * afterwards. NULL disables logging (the default). Since: 0.1 */
VMKIT_EXPORT void vmkit_host_set_log(vmkit_host *host, vmkit_log_fn fn, void *userdata,
				     vmkit_log_level max_level);

/** KVM_GET_API_VERSION of the open device (12 for every modern kernel). */
VMKIT_EXPORT int vmkit_host_api_version(vmkit_host *host);

/**
 * KVM_CHECK_EXTENSION for capability number @cap (the KVM_CAP_* numbers of
 * the kernel's KVM API). Returns the kernel's answer (0: absent) or a
 * negative error. Since: 0.1
 */
VMKIT_EXPORT int vmkit_host_check_capability(vmkit_host *host, uint32_t cap);

/**
 * Copy up to @max entries of the CPUID leaves the hypervisor supports
 * into @entries (may be NULL when @max is 0). Returns the total number of
 * entries available (which may exceed @max) or a negative error.
 * Since: 0.1
 */
VMKIT_EXPORT int vmkit_host_supported_cpuid(vmkit_host *host, vmkit_cpuid_entry *entries,
					    size_t max);

/** The path the host was opened from. Owned by @host. Since: 0.1 */
VMKIT_EXPORT const char *vmkit_host_path(const vmkit_host *host);

#ifdef __cplusplus
}
#endif

#endif
