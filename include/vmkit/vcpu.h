/* SPDX-License-Identifier: MIT */
/**
 * vmkit/vcpu.h - virtual CPUs: architectural state and the run loop.
 *
 * The state structs below are vmkit's own, fixed-layout copies of the x86
 * state KVM exposes; a snapshot saves exactly these.
 */
#ifndef VMKIT_VCPU_H
#define VMKIT_VCPU_H

#include "vm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmkit_vcpu vmkit_vcpu;

/** vCPU indices are 0 .. VMKIT_MAX_CPUS - 1. */
#define VMKIT_MAX_CPUS 64

typedef struct vmkit_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip, rflags;
} vmkit_regs;

typedef struct vmkit_segment {
	uint64_t base;
	uint32_t limit;
	uint16_t selector;
	uint8_t type, present, dpl, db, s, l, g, avl, unusable, padding;
} vmkit_segment;

typedef struct vmkit_dtable {
	uint64_t base;
	uint16_t limit;
	uint16_t padding[3];
} vmkit_dtable;

typedef struct vmkit_sregs {
	vmkit_segment cs, ds, es, fs, gs, ss, tr, ldt;
	vmkit_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
	uint64_t interrupt_bitmap[4];
} vmkit_sregs;

typedef struct vmkit_fpu {
	uint8_t fpr[8][16];
	uint16_t fcw, fsw;
	uint8_t ftwx, padding1;
	uint16_t last_opcode;
	uint64_t last_ip, last_dp;
	uint8_t xmm[16][16];
	uint32_t mxcsr, padding2;
} vmkit_fpu;

typedef struct vmkit_msr {
	uint32_t index;
	uint32_t reserved;
	uint64_t data;
} vmkit_msr;

/** The local APIC's 1 KiB register page. */
typedef struct vmkit_lapic {
	uint8_t regs[1024];
} vmkit_lapic;

/** Pending/injected exceptions, interrupts and NMIs. */
typedef struct vmkit_vcpu_events {
	uint8_t exception_injected, exception_nr, exception_has_error_code,
		exception_pending;
	uint32_t exception_error_code;
	uint8_t interrupt_injected, interrupt_nr, interrupt_soft, interrupt_shadow;
	uint8_t nmi_injected, nmi_pending, nmi_masked, padding1;
	uint32_t sipi_vector;
	uint32_t flags; /**< KVM_VCPUEVENT_VALID_* bits, passed through */
	uint8_t smi_smm, smi_pending, smi_inside_nmi, smi_latched_init;
	uint8_t triple_fault_pending, exception_has_payload, padding2[2];
	uint64_t exception_payload;
} vmkit_vcpu_events;

typedef enum vmkit_mp_state {
	VMKIT_MP_RUNNABLE = 0,
	VMKIT_MP_UNINITIALIZED = 1,
	VMKIT_MP_INIT_RECEIVED = 2,
	VMKIT_MP_HALTED = 3,
	VMKIT_MP_SIPI_RECEIVED = 4,
} vmkit_mp_state;

/** XSAVE area (as KVM_GET_XSAVE), extended control registers and debug registers. */
typedef struct vmkit_xsave {
	uint32_t region[1024];
} vmkit_xsave;

typedef struct vmkit_xcrs {
	uint32_t nr_xcrs, flags;
	struct { uint32_t xcr, reserved; uint64_t value; } xcrs[16];
} vmkit_xcrs;

typedef struct vmkit_debugregs {
	uint64_t db[4], dr6, dr7, flags;
} vmkit_debugregs;

/** Why vmkit_vcpu_run() returned. */
typedef enum vmkit_vcpu_exit_kind {
	VMKIT_VCPU_EXIT_HLT = 1,          /**< guest halted (no in-kernel irqchip) */
	VMKIT_VCPU_EXIT_IO = 2,           /**< unclaimed port access under VMKIT_UNHANDLED_EXIT, see .io */
	VMKIT_VCPU_EXIT_MMIO = 3,         /**< unclaimed MMIO access under VMKIT_UNHANDLED_EXIT, see .mmio */
	VMKIT_VCPU_EXIT_SHUTDOWN = 4,     /**< triple fault */
	VMKIT_VCPU_EXIT_SYSTEM_EVENT = 5, /**< see .system_event */
	VMKIT_VCPU_EXIT_INTERNAL_ERROR = 6, /**< KVM could not handle it; .detail */
	VMKIT_VCPU_EXIT_FAIL_ENTRY = 7,   /**< hardware refused entry; .detail */
	VMKIT_VCPU_EXIT_INTERRUPTED = 8,  /**< vmkit_vcpu_kick() or a signal */
	VMKIT_VCPU_EXIT_UNHANDLED = 9,    /**< strict policy: unclaimed access (.io/.mmio) */
	VMKIT_VCPU_EXIT_STOP = 10,        /**< a device asked to stop (vmkit_vcpu_request_stop) */
	VMKIT_VCPU_EXIT_OTHER = 11,       /**< any other KVM exit; .raw_reason */
} vmkit_vcpu_exit_kind;

typedef struct vmkit_vcpu_exit {
	uint32_t size; /**< sizeof(vmkit_vcpu_exit), set by the caller */
	uint32_t kind; /**< vmkit_vcpu_exit_kind */
	uint32_t raw_reason; /**< KVM_EXIT_* */
	uint32_t reserved;
	union {
		struct {
			uint16_t port;
			uint8_t len;      /**< bytes per element: 1, 2 or 4 */
			uint8_t is_write;
			uint32_t count;   /**< elements (string I/O) */
			/** count * len bytes in the vCPU's run area: the written
			 * data, or for a read the bytes to fill before the next run. */
			uint8_t *data;
		} io;
		struct {
			uint64_t gpa;
			uint32_t len;     /**< 1, 2, 4 or 8 */
			uint8_t is_write;
			uint8_t padding[3];
			uint8_t *data;    /**< as for io */
		} mmio;
		struct {
			uint32_t type;    /**< KVM_SYSTEM_EVENT_* */
			uint32_t ndata;
			uint64_t data[4];
		} system_event;
		uint8_t padding[64];
	} u;
	/** One line of detail for INTERNAL_ERROR/FAIL_ENTRY/OTHER. */
	char detail[128];
} vmkit_vcpu_exit;

/**
 * Create vCPU number @index (0-based; also its initial APIC id) on @vm.
 * The vCPU is owned by the VM and freed with it or with vmkit_vcpu_free().
 * Since: 0.1
 */
VMKIT_EXPORT int vmkit_vcpu_new(vmkit_vm *vm, uint32_t index, vmkit_vcpu **out);
/** Free the vCPU. NULL is a no-op. It must not be running. Since: 0.1 */
VMKIT_EXPORT void vmkit_vcpu_free(vmkit_vcpu *vcpu);
/** The index given at creation. */
VMKIT_EXPORT uint32_t vmkit_vcpu_index(const vmkit_vcpu *vcpu);

/**
 * Run the vCPU on the calling thread until an exit that vmkit cannot
 * handle itself: accesses to claimed PIO/MMIO ranges are dispatched to
 * their handlers, unclaimed ones follow the VM's policy. Fills @exit and
 * returns 0, or a negative error. After an IO/MMIO read exit (policy
 * VMKIT_UNHANDLED_EXIT), fill .data before the next call to complete it.
 * Since: 0.1
 */
VMKIT_EXPORT int vmkit_vcpu_run(vmkit_vcpu *vcpu, vmkit_vcpu_exit *exit);

/**
 * Make a running (or the next) vmkit_vcpu_run() of @vcpu return with
 * VMKIT_VCPU_EXIT_INTERRUPTED. Safe from any thread. Since: 0.1
 */
VMKIT_EXPORT int vmkit_vcpu_kick(vmkit_vcpu *vcpu);

/** Arrange for the current (or next) run to return VMKIT_VCPU_EXIT_STOP.
 * For device handlers running on the vCPU thread. Since: 0.1 */
VMKIT_EXPORT void vmkit_vcpu_request_stop(vmkit_vcpu *vcpu);

VMKIT_EXPORT int vmkit_vcpu_get_regs(vmkit_vcpu *vcpu, vmkit_regs *regs);
VMKIT_EXPORT int vmkit_vcpu_set_regs(vmkit_vcpu *vcpu, const vmkit_regs *regs);
VMKIT_EXPORT int vmkit_vcpu_get_sregs(vmkit_vcpu *vcpu, vmkit_sregs *sregs);
VMKIT_EXPORT int vmkit_vcpu_set_sregs(vmkit_vcpu *vcpu, const vmkit_sregs *sregs);
VMKIT_EXPORT int vmkit_vcpu_get_fpu(vmkit_vcpu *vcpu, vmkit_fpu *fpu);
VMKIT_EXPORT int vmkit_vcpu_set_fpu(vmkit_vcpu *vcpu, const vmkit_fpu *fpu);
/** Read @n MSRs; each entry's index is the input. Returns how many were read. */
VMKIT_EXPORT int vmkit_vcpu_get_msrs(vmkit_vcpu *vcpu, vmkit_msr *msrs, size_t n);
/** Write @n MSRs. Returns how many were written. */
VMKIT_EXPORT int vmkit_vcpu_set_msrs(vmkit_vcpu *vcpu, const vmkit_msr *msrs, size_t n);
/** The MSR indices whose state a snapshot must save (KVM_GET_MSR_INDEX_LIST
 * filtered to those this vCPU accepts). Returns the count; fills up to @max. */
VMKIT_EXPORT int vmkit_vcpu_state_msr_list(vmkit_vcpu *vcpu, uint32_t *indices, size_t max);
VMKIT_EXPORT int vmkit_vcpu_get_lapic(vmkit_vcpu *vcpu, vmkit_lapic *lapic);
VMKIT_EXPORT int vmkit_vcpu_set_lapic(vmkit_vcpu *vcpu, const vmkit_lapic *lapic);
VMKIT_EXPORT int vmkit_vcpu_get_events(vmkit_vcpu *vcpu, vmkit_vcpu_events *events);
VMKIT_EXPORT int vmkit_vcpu_set_events(vmkit_vcpu *vcpu, const vmkit_vcpu_events *events);
VMKIT_EXPORT int vmkit_vcpu_get_mp_state(vmkit_vcpu *vcpu, uint32_t *state);
VMKIT_EXPORT int vmkit_vcpu_set_mp_state(vmkit_vcpu *vcpu, uint32_t state);
VMKIT_EXPORT int vmkit_vcpu_get_xsave(vmkit_vcpu *vcpu, vmkit_xsave *xsave);
VMKIT_EXPORT int vmkit_vcpu_set_xsave(vmkit_vcpu *vcpu, const vmkit_xsave *xsave);
VMKIT_EXPORT int vmkit_vcpu_get_xcrs(vmkit_vcpu *vcpu, vmkit_xcrs *xcrs);
VMKIT_EXPORT int vmkit_vcpu_set_xcrs(vmkit_vcpu *vcpu, const vmkit_xcrs *xcrs);
VMKIT_EXPORT int vmkit_vcpu_get_debugregs(vmkit_vcpu *vcpu, vmkit_debugregs *dregs);
VMKIT_EXPORT int vmkit_vcpu_set_debugregs(vmkit_vcpu *vcpu, const vmkit_debugregs *dregs);
/** Install the CPUID table the guest sees (KVM_SET_CPUID2). */
VMKIT_EXPORT int vmkit_vcpu_set_cpuid(vmkit_vcpu *vcpu, const vmkit_cpuid_entry *entries,
				      size_t n);

/** Per-vCPU counters. Initialise size before the call. */
typedef struct vmkit_vcpu_stats {
	uint32_t size;
	uint32_t reserved;
	uint64_t runs;       /**< KVM_RUN calls */
	uint64_t exits_io;
	uint64_t exits_mmio;
	uint64_t exits_hlt;
	uint64_t exits_interrupted;
	uint64_t exits_other;
} vmkit_vcpu_stats;
VMKIT_EXPORT int vmkit_vcpu_get_stats(vmkit_vcpu *vcpu, vmkit_vcpu_stats *stats);

#ifdef __cplusplus
}
#endif

#endif
