/* SPDX-License-Identifier: MIT */
/**
 * vmkit/machine.h - the high-level VM: a configured, assembled machine
 * (memory, vCPUs, platform devices, ACPI, a loaded guest) with a lifecycle.
 *
 * Threads: vmkit_machine_start() creates one thread per vCPU and one I/O
 * thread. The control calls (pause, resume, stop, wait, stats) may be made
 * from any thread. Callbacks say which thread they run on.
 */
#ifndef VMKIT_MACHINE_H
#define VMKIT_MACHINE_H

#include "vcpu.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmkit_machine vmkit_machine;
typedef struct vmkit_machine_config vmkit_machine_config;

/** How the kernel image is to be loaded. */
typedef enum vmkit_kernel_format {
	VMKIT_KERNEL_AUTO = 0,      /**< detect: bzImage, ELF (PVH note or Multiboot), Multiboot header */
	VMKIT_KERNEL_BZIMAGE = 1,   /**< Linux boot protocol 2.x, 64-bit entry */
	VMKIT_KERNEL_PVH = 2,       /**< ELF with the Xen PVH entry note */
	VMKIT_KERNEL_MULTIBOOT = 3, /**< Multiboot v1 (ELF or a.out kludge) */
	VMKIT_KERNEL_FLAT = 4,      /**< raw binary at a given address, see set_flat */
} vmkit_kernel_format;

/** CPU mode a flat binary starts in. */
typedef enum vmkit_cpu_mode {
	VMKIT_CPU_REAL = 0,   /**< 16-bit real mode, CS:IP = load address */
	VMKIT_CPU_PROT32 = 1, /**< 32-bit flat protected mode, paging off */
	VMKIT_CPU_LONG64 = 2, /**< 64-bit long mode, first 4 GiB identity mapped */
} vmkit_cpu_mode;

/** Serial output sink: called on a vCPU thread with the bytes the guest wrote. */
typedef void (*vmkit_serial_fn)(void *userdata, const uint8_t *data, size_t len);

/* ---- configuration ------------------------------------------------------ */

/** A new configuration with the defaults: 1 vCPU, 256 MiB, no kernel,
 * serial discarded, ACPI on, exit port 0xf4 on. Free with
 * vmkit_machine_config_free(). Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_config_new(vmkit_machine_config **out);
VMKIT_EXPORT void vmkit_machine_config_free(vmkit_machine_config *cfg);

/**
 * Parse a JSON machine configuration (see README "JSON configuration")
 * from @json (@len bytes, need not be NUL-terminated). Unknown keys and
 * wrong types are errors naming the key. Since: 0.1
 */
VMKIT_EXPORT int vmkit_machine_config_from_json(const char *json, size_t len,
						vmkit_machine_config **out);
/** Read and parse the JSON configuration file at @path. Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_config_load(const char *path, vmkit_machine_config **out);

/** 1..VMKIT_MAX_CPUS vCPUs. */
VMKIT_EXPORT int vmkit_machine_config_set_cpus(vmkit_machine_config *cfg, uint32_t n);
/** Guest RAM in bytes: a multiple of 1 MiB, between VMKIT_MIN_MEMORY and VMKIT_MAX_MEMORY. */
#define VMKIT_MIN_MEMORY (2ull << 20)
#define VMKIT_MAX_MEMORY (1ull << 40)
VMKIT_EXPORT int vmkit_machine_config_set_memory(vmkit_machine_config *cfg, uint64_t bytes);
/** Kernel image path (copied). */
VMKIT_EXPORT int vmkit_machine_config_set_kernel(vmkit_machine_config *cfg, const char *path);
VMKIT_EXPORT int vmkit_machine_config_set_kernel_format(vmkit_machine_config *cfg,
							vmkit_kernel_format fmt);
/** For VMKIT_KERNEL_FLAT: where the binary is loaded, where it starts, in which mode. */
VMKIT_EXPORT int vmkit_machine_config_set_flat(vmkit_machine_config *cfg, uint64_t load_addr,
					       uint64_t entry, vmkit_cpu_mode mode);
/** Add an initrd (Linux; several are concatenated) or a module (Multiboot). */
VMKIT_EXPORT int vmkit_machine_config_add_initrd(vmkit_machine_config *cfg, const char *path);
VMKIT_EXPORT int vmkit_machine_config_set_cmdline(vmkit_machine_config *cfg, const char *cmdline);
/**
 * Firmware image mapped just below 4 GiB; the CPU starts at its reset
 * vector. With a kernel as well (a bzImage), vmkit does not load the
 * kernel itself: it hands it, the initrds and the command line to the
 * firmware through QEMU's fw_cfg kernel items, as QEMU does. SeaBIOS
 * boots them only with QEMU's linuxboot_dma.bin option ROM
 * (vmkit_machine_config_add_option_rom()). Since: 0.1
 */
VMKIT_EXPORT int vmkit_machine_config_set_firmware(vmkit_machine_config *cfg, const char *path);
/**
 * Offer an option ROM to the firmware as the fw_cfg file
 * "genroms/<file name>" (SeaBIOS runs each, as it does under QEMU; e.g.
 * QEMU's /usr/share/qemu/linuxboot_dma.bin to boot a kernel given with
 * the firmware). At most 8; file names 1..47 bytes and distinct. Since: 0.1
 */
VMKIT_EXPORT int vmkit_machine_config_add_option_rom(vmkit_machine_config *cfg, const char *path);
/** Serial (COM1) input and output fds; -1 for none. The fds are not closed by vmkit. */
VMKIT_EXPORT int vmkit_machine_config_set_serial_fds(vmkit_machine_config *cfg, int in_fd,
						     int out_fd);
/** Serial output to a callback instead of an fd. */
VMKIT_EXPORT int vmkit_machine_config_set_serial_callback(vmkit_machine_config *cfg,
							  vmkit_serial_fn fn, void *userdata);
VMKIT_EXPORT int vmkit_machine_config_set_unhandled_policy(vmkit_machine_config *cfg,
							   vmkit_unhandled_policy policy);
/** The test exit port (QEMU isa-debug-exit semantics); @enabled false removes it. */
VMKIT_EXPORT int vmkit_machine_config_set_exit_port(vmkit_machine_config *cfg, bool enabled,
						    uint16_t port);
/** A debug console (QEMU's isa-debugcon): bytes the guest writes to
 * @port go to @fd (-1: none, the default). SeaBIOS logs to port 0x402.
 * The fd is not closed by vmkit. Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_config_set_debugcon(vmkit_machine_config *cfg, uint16_t port,
						   int fd);
/** ACPI tables on (default) or off. */
VMKIT_EXPORT int vmkit_machine_config_set_acpi(vmkit_machine_config *cfg, bool enabled);
/**
 * Back guest RAM with transparent huge pages where the host allows them
 * (madvise(MADV_HUGEPAGE)). Guest RAM is always mapped 2 MiB-aligned to
 * its guest-physical address, so KVM can map it with huge pages. Off
 * (madvise(MADV_NOHUGEPAGE), which also holds where the host's THP mode is
 * "always"): RAM grows 4 KiB at a time, which keeps a sparse guest
 * smaller, at the cost of TLB reach. Unset, it is on (as in QEMU and Cloud Hypervisor) unless
 * the machine has a balloon: the balloon frees 4 KiB pages, and the
 * host's khugepaged fills a 2 MiB range that still holds any page back
 * into a whole huge page, returning ballooned memory to the VM's RSS
 * within minutes. Set on with a balloon, it is honoured and a warning is
 * logged. Since: 0.1
 */
VMKIT_EXPORT int vmkit_machine_config_set_hugepages(vmkit_machine_config *cfg, bool enabled);
/** Override the 12-character CPUID vendor string ("GenuineIntel", ...). */
VMKIT_EXPORT int vmkit_machine_config_set_cpu_vendor(vmkit_machine_config *cfg,
						     const char *vendor);
/** Hide a CPUID feature by its /proc/cpuinfo name ("avx2", "x2apic", ...). */
VMKIT_EXPORT int vmkit_machine_config_mask_cpu_feature(vmkit_machine_config *cfg,
						       const char *name);

/* ---- lifecycle ----------------------------------------------------------- */

typedef enum vmkit_machine_state {
	VMKIT_MACHINE_CREATED = 0,
	VMKIT_MACHINE_RUNNING = 1,
	VMKIT_MACHINE_PAUSED = 2,
	VMKIT_MACHINE_EXITED = 3,
} vmkit_machine_state;

typedef enum vmkit_exit_reason {
	VMKIT_EXIT_NONE = 0,       /**< still running */
	VMKIT_EXIT_POWEROFF = 1,   /**< ACPI power-off (S5) */
	VMKIT_EXIT_REBOOT = 2,     /**< reset through i8042, 0xCF9 or ACPI reset register */
	VMKIT_EXIT_CRASH = 3,      /**< triple fault */
	VMKIT_EXIT_PANIC = 4,      /**< the guest reported a panic (pvpanic) */
	VMKIT_EXIT_EXIT_PORT = 5,  /**< exit port write; .status holds (v << 1) | 1 */
	VMKIT_EXIT_STOPPED = 6,    /**< vmkit_machine_stop() */
	VMKIT_EXIT_ERROR = 7,      /**< internal/emulation error; .detail says what */
} vmkit_exit_reason;

typedef struct vmkit_machine_exit {
	uint32_t size;    /**< sizeof(vmkit_machine_exit), set by the caller */
	uint32_t reason;  /**< vmkit_exit_reason */
	int32_t status;   /**< for VMKIT_EXIT_EXIT_PORT */
	uint32_t vcpu;    /**< vCPU that caused the exit */
	char detail[256]; /**< one line */
} vmkit_machine_exit;

/**
 * Assemble a machine from @cfg on @host: memory, vCPUs, platform devices,
 * ACPI tables, and the loaded kernel/firmware. Nothing runs until
 * vmkit_machine_start(). @cfg is copied. Errors name the cause in one line
 * (missing file, not a kernel, memory too large...). Since: 0.1
 */
VMKIT_EXPORT int vmkit_machine_new(vmkit_host *host, const vmkit_machine_config *cfg,
				   vmkit_machine **out);
/** Stop (if running) and free the machine. NULL is a no-op. Since: 0.1 */
VMKIT_EXPORT void vmkit_machine_free(vmkit_machine *m);

/** Start the vCPU and I/O threads. Since: 0.1 */
VMKIT_EXPORT int vmkit_machine_start(vmkit_machine *m);
/** Bring every vCPU out of the guest and hold it; returns once all are held. */
VMKIT_EXPORT int vmkit_machine_pause(vmkit_machine *m);
VMKIT_EXPORT int vmkit_machine_resume(vmkit_machine *m);
/** Ask the machine to exit with VMKIT_EXIT_STOPPED; does not wait. */
VMKIT_EXPORT int vmkit_machine_stop(vmkit_machine *m);
/**
 * Wait until the machine has exited, or @timeout_ms passed (-1: forever).
 * Fills @exit. -ETIMEDOUT on timeout. Since: 0.1
 */
VMKIT_EXPORT int vmkit_machine_wait(vmkit_machine *m, int timeout_ms, vmkit_machine_exit *exit);
VMKIT_EXPORT vmkit_machine_state vmkit_machine_get_state(vmkit_machine *m);

typedef enum vmkit_machine_event {
	VMKIT_EVENT_STARTED = 1,
	VMKIT_EVENT_PAUSED = 2,
	VMKIT_EVENT_RESUMED = 3,
	VMKIT_EVENT_EXITED = 4,
} vmkit_machine_event;

/**
 * Called on the thread that caused the event: STARTED, PAUSED and RESUMED
 * on the control thread that made the call; EXITED once, as soon as the
 * machine's exit reason is known (on the vCPU or I/O thread that ended it,
 * or the control thread that called stop or free), before
 * vmkit_machine_wait() returns. The callback must not call
 * vmkit_machine_wait() or vmkit_machine_free(). Since: 0.1
 */
typedef void (*vmkit_event_fn)(void *userdata, vmkit_machine *m, vmkit_machine_event ev);
VMKIT_EXPORT int vmkit_machine_set_event_callback(vmkit_machine *m, vmkit_event_fn fn,
						  void *userdata);

typedef struct vmkit_machine_stats {
	uint32_t size; /**< sizeof(vmkit_machine_stats), set by the caller */
	uint32_t ncpus;
	vmkit_vm_stats vm;
	uint64_t serial_tx_bytes;
	uint64_t serial_rx_bytes;
	uint64_t run_ns; /**< time spent running (not paused) */
} vmkit_machine_stats;
VMKIT_EXPORT int vmkit_machine_get_stats(vmkit_machine *m, vmkit_machine_stats *stats);
VMKIT_EXPORT int vmkit_machine_get_vcpu_stats(vmkit_machine *m, uint32_t index,
					      vmkit_vcpu_stats *stats);
/** The machine's VM and vCPUs, for low-level access. Owned by the machine. */
VMKIT_EXPORT vmkit_vm *vmkit_machine_vm(vmkit_machine *m);
VMKIT_EXPORT vmkit_vcpu *vmkit_machine_vcpu(vmkit_machine *m, uint32_t index);

#ifdef __cplusplus
}
#endif

#endif
