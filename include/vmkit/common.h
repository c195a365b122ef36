/* SPDX-License-Identifier: MIT */
/**
 * vmkit/common.h - error codes, logging, version and feature introspection.
 *
 * Every public function returns 0 (or a non-negative count) on success and a
 * negative errno-style code on failure. After a failure, vmkit_last_error()
 * returns a one-line, thread-local description of what went wrong.
 */
#ifndef VMKIT_COMMON_H
#define VMKIT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "vmkit/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(VMKIT_STATIC)
#define VMKIT_EXPORT __attribute__((visibility("default")))
#else
#define VMKIT_EXPORT
#endif

/** Log severities, as passed to a vmkit_log_fn. */
typedef enum vmkit_log_level {
	VMKIT_LOG_ERROR = 0,
	VMKIT_LOG_WARN = 1,
	VMKIT_LOG_INFO = 2,
	VMKIT_LOG_DEBUG = 3,
} vmkit_log_level;

/**
 * Log callback. @msg is one line without a trailing newline. Called on any
 * thread of the object that logs (vCPU, I/O or the caller's); must not call
 * back into the object that logs.
 */
typedef void (*vmkit_log_fn)(void *userdata, vmkit_log_level level, const char *msg);

/**
 * The last error message of the calling thread: one line, never NULL
 * (empty when no error happened yet). Valid until the next vmkit call on
 * this thread. Since: 0.1
 */
VMKIT_EXPORT const char *vmkit_last_error(void);

/** The runtime library version, "MAJOR.MINOR.PATCH". Since: 0.1 */
VMKIT_EXPORT const char *vmkit_version(void);

/** The runtime library version as VMKIT_VERSION_HEX encodes it. Since: 0.1 */
VMKIT_EXPORT uint32_t vmkit_version_hex(void);

/**
 * Whether this build of the library has @feature, a name such as
 * "machine", "json-config", "multiboot", "pvh", "bzimage", "fw_cfg", "acpi".
 * Since: 0.1
 */
VMKIT_EXPORT bool vmkit_has_feature(const char *feature);

#ifdef __cplusplus
}
#endif

#endif
