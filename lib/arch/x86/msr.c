/* SPDX-License-Identifier: MIT */
/* The MSR values a vCPU starts with. KVM's reset values are mostly what
 * firmware would leave behind, except where noted; loaders that enter a
 * kernel directly (no firmware) rely on these. */
#include "arch/x86/x86.h"

#define MSR_IA32_SYSENTER_CS   0x174
#define MSR_IA32_SYSENTER_ESP  0x175
#define MSR_IA32_SYSENTER_EIP  0x176
#define MSR_IA32_MISC_ENABLE   0x1a0
#define MSR_IA32_PAT           0x277
#define MSR_MTRR_DEF_TYPE      0x2ff
#define MSR_STAR               0xc0000081
#define MSR_LSTAR              0xc0000082
#define MSR_CSTAR              0xc0000083
#define MSR_SYSCALL_MASK       0xc0000084
#define MSR_KERNEL_GS_BASE     0xc0000102

static const vmkit_msr boot_msrs[] = {
	/* Bit 0, fast-string operations: firmware enables it and Linux warns
	 * and runs slower string copies without it (QEMU and Firecracker set
	 * the same value). */
	{ MSR_IA32_MISC_ENABLE, 0, 1 },
	/* The architectural power-on PAT: WB, WT, UC-, UC, WB, WT, UC-, UC. */
	{ MSR_IA32_PAT, 0, 0x0007040600070406ull },
	/* MTRRs enabled (bit 11), default type write-back (6), fixed-range
	 * MTRRs off (bit 10 clear): with no variable ranges all memory is
	 * WB, as Firecracker sets it. Enabling the fixed ranges (0xc06)
	 * without programming them would make the first MiB uncacheable. */
	{ MSR_MTRR_DEF_TYPE, 0, (1u << 11) | 6 },
	/* The system-call entry MSRs start at 0 (their reset value, set
	 * explicitly so a vCPU that is re-used after a reset starts clean);
	 * the kernel programs them. The TSC is not set: KVM synchronises the
	 * vCPUs' TSCs when they are created, and writing it per vCPU at
	 * different times would desynchronise them. */
	{ MSR_IA32_SYSENTER_CS, 0, 0 },
	{ MSR_IA32_SYSENTER_ESP, 0, 0 },
	{ MSR_IA32_SYSENTER_EIP, 0, 0 },
	{ MSR_STAR, 0, 0 },
	{ MSR_LSTAR, 0, 0 },
	{ MSR_CSTAR, 0, 0 },
	{ MSR_SYSCALL_MASK, 0, 0 },
	{ MSR_KERNEL_GS_BASE, 0, 0 },
};

size_t x86_boot_msrs(vmkit_msr *out, size_t max)
{
	size_t n = 0;

	if (!out)
		return 0;
	for (; n < ARRAY_SIZE(boot_msrs) && n < max; n++)
		out[n] = boot_msrs[n];
	return n;
}
