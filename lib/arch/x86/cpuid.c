/* SPDX-License-Identifier: MIT */
/* CPUID shaping: what each vCPU sees, starting from KVM's supported table.
 *
 * The topology is one package with @ncpus cores of one thread each; the
 * APIC id of vCPU i is i. Every leaf that describes the topology says so:
 * leaf 1 EBX (initial APIC id, addressable logical processors) and EDX.HTT,
 * leaf 4 (Intel caches: cores per package, threads sharing each cache),
 * leaf 0xb and, where the host has it, 0x1f (x2APIC topology), and on the
 * AMD side 0x80000008 ECX (NC, ApicIdSize), 0x8000001d (cache sharing) and
 * 0x8000001e (extended APIC id, core id). The leaves are adjusted wherever
 * they exist, whatever the vendor, so a vendor override cannot leave them
 * contradicting each other. */
#include <string.h>

#include "arch/x86/x86.h"

enum { EAX, EBX, ECX, EDX };

struct feature {
	const char *name;
	uint32_t leaf, subleaf;
	uint8_t reg, bit;
};

/* The /proc/cpuinfo names (Linux arch/x86/include/asm/cpufeatures.h) of
 * the bits CPUID reports directly. */
static const struct feature features[] = {
	/* leaf 1 EDX */
	{ "fpu", 1, 0, EDX, 0 },	{ "vme", 1, 0, EDX, 1 },
	{ "de", 1, 0, EDX, 2 },		{ "pse", 1, 0, EDX, 3 },
	{ "tsc", 1, 0, EDX, 4 },	{ "msr", 1, 0, EDX, 5 },
	{ "pae", 1, 0, EDX, 6 },	{ "mce", 1, 0, EDX, 7 },
	{ "cx8", 1, 0, EDX, 8 },	{ "apic", 1, 0, EDX, 9 },
	{ "sep", 1, 0, EDX, 11 },	{ "mtrr", 1, 0, EDX, 12 },
	{ "pge", 1, 0, EDX, 13 },	{ "mca", 1, 0, EDX, 14 },
	{ "cmov", 1, 0, EDX, 15 },	{ "pat", 1, 0, EDX, 16 },
	{ "pse36", 1, 0, EDX, 17 },	{ "pn", 1, 0, EDX, 18 },
	{ "clflush", 1, 0, EDX, 19 },	{ "dts", 1, 0, EDX, 21 },
	{ "acpi", 1, 0, EDX, 22 },	{ "mmx", 1, 0, EDX, 23 },
	{ "fxsr", 1, 0, EDX, 24 },	{ "sse", 1, 0, EDX, 25 },
	{ "sse2", 1, 0, EDX, 26 },	{ "ss", 1, 0, EDX, 27 },
	{ "ht", 1, 0, EDX, 28 },	{ "tm", 1, 0, EDX, 29 },
	{ "ia64", 1, 0, EDX, 30 },	{ "pbe", 1, 0, EDX, 31 },
	/* leaf 1 ECX */
	{ "pni", 1, 0, ECX, 0 },	{ "sse3", 1, 0, ECX, 0 },
	{ "pclmulqdq", 1, 0, ECX, 1 },	{ "dtes64", 1, 0, ECX, 2 },
	{ "monitor", 1, 0, ECX, 3 },	{ "ds_cpl", 1, 0, ECX, 4 },
	{ "vmx", 1, 0, ECX, 5 },	{ "smx", 1, 0, ECX, 6 },
	{ "est", 1, 0, ECX, 7 },	{ "tm2", 1, 0, ECX, 8 },
	{ "ssse3", 1, 0, ECX, 9 },	{ "cid", 1, 0, ECX, 10 },
	{ "sdbg", 1, 0, ECX, 11 },	{ "fma", 1, 0, ECX, 12 },
	{ "cx16", 1, 0, ECX, 13 },	{ "xtpr", 1, 0, ECX, 14 },
	{ "pdcm", 1, 0, ECX, 15 },	{ "pcid", 1, 0, ECX, 17 },
	{ "dca", 1, 0, ECX, 18 },	{ "sse4_1", 1, 0, ECX, 19 },
	{ "sse4_2", 1, 0, ECX, 20 },	{ "x2apic", 1, 0, ECX, 21 },
	{ "movbe", 1, 0, ECX, 22 },	{ "popcnt", 1, 0, ECX, 23 },
	{ "tsc_deadline_timer", 1, 0, ECX, 24 },
	{ "aes", 1, 0, ECX, 25 },	{ "xsave", 1, 0, ECX, 26 },
	{ "avx", 1, 0, ECX, 28 },	{ "f16c", 1, 0, ECX, 29 },
	{ "rdrand", 1, 0, ECX, 30 },	{ "hypervisor", 1, 0, ECX, 31 },
	/* leaf 6 EAX */
	{ "dtherm", 6, 0, EAX, 0 },	{ "ida", 6, 0, EAX, 1 },
	{ "arat", 6, 0, EAX, 2 },	{ "pln", 6, 0, EAX, 4 },
	{ "pts", 6, 0, EAX, 6 },	{ "hwp", 6, 0, EAX, 7 },
	/* leaf 7 subleaf 0 EBX */
	{ "fsgsbase", 7, 0, EBX, 0 },	{ "tsc_adjust", 7, 0, EBX, 1 },
	{ "sgx", 7, 0, EBX, 2 },	{ "bmi1", 7, 0, EBX, 3 },
	{ "hle", 7, 0, EBX, 4 },	{ "avx2", 7, 0, EBX, 5 },
	{ "smep", 7, 0, EBX, 7 },	{ "bmi2", 7, 0, EBX, 8 },
	{ "erms", 7, 0, EBX, 9 },	{ "invpcid", 7, 0, EBX, 10 },
	{ "rtm", 7, 0, EBX, 11 },	{ "cqm", 7, 0, EBX, 12 },
	{ "mpx", 7, 0, EBX, 14 },	{ "rdt_a", 7, 0, EBX, 15 },
	{ "avx512f", 7, 0, EBX, 16 },	{ "avx512dq", 7, 0, EBX, 17 },
	{ "rdseed", 7, 0, EBX, 18 },	{ "adx", 7, 0, EBX, 19 },
	{ "smap", 7, 0, EBX, 20 },	{ "avx512ifma", 7, 0, EBX, 21 },
	{ "clflushopt", 7, 0, EBX, 23 }, { "clwb", 7, 0, EBX, 24 },
	{ "intel_pt", 7, 0, EBX, 25 },	{ "avx512pf", 7, 0, EBX, 26 },
	{ "avx512er", 7, 0, EBX, 27 },	{ "avx512cd", 7, 0, EBX, 28 },
	{ "sha_ni", 7, 0, EBX, 29 },	{ "avx512bw", 7, 0, EBX, 30 },
	{ "avx512vl", 7, 0, EBX, 31 },
	/* leaf 7 subleaf 0 ECX */
	{ "avx512vbmi", 7, 0, ECX, 1 },	{ "umip", 7, 0, ECX, 2 },
	{ "pku", 7, 0, ECX, 3 },	{ "ospke", 7, 0, ECX, 4 },
	{ "waitpkg", 7, 0, ECX, 5 },	{ "avx512_vbmi2", 7, 0, ECX, 6 },
	{ "gfni", 7, 0, ECX, 8 },	{ "vaes", 7, 0, ECX, 9 },
	{ "vpclmulqdq", 7, 0, ECX, 10 }, { "avx512_vnni", 7, 0, ECX, 11 },
	{ "avx512_bitalg", 7, 0, ECX, 12 }, { "tme", 7, 0, ECX, 13 },
	{ "avx512_vpopcntdq", 7, 0, ECX, 14 }, { "la57", 7, 0, ECX, 16 },
	{ "rdpid", 7, 0, ECX, 22 },	{ "bus_lock_detect", 7, 0, ECX, 24 },
	{ "cldemote", 7, 0, ECX, 25 },	{ "movdiri", 7, 0, ECX, 27 },
	{ "movdir64b", 7, 0, ECX, 28 },	{ "enqcmd", 7, 0, ECX, 29 },
	{ "sgx_lc", 7, 0, ECX, 30 },
	/* leaf 7 subleaf 0 EDX */
	{ "avx512_4vnniw", 7, 0, EDX, 2 }, { "avx512_4fmaps", 7, 0, EDX, 3 },
	{ "fsrm", 7, 0, EDX, 4 },	{ "avx512_vp2intersect", 7, 0, EDX, 8 },
	{ "md_clear", 7, 0, EDX, 10 },	{ "serialize", 7, 0, EDX, 14 },
	{ "tsxldtrk", 7, 0, EDX, 16 },	{ "pconfig", 7, 0, EDX, 18 },
	{ "arch_lbr", 7, 0, EDX, 19 },	{ "ibt", 7, 0, EDX, 20 },
	{ "amx_bf16", 7, 0, EDX, 22 },	{ "avx512_fp16", 7, 0, EDX, 23 },
	{ "amx_tile", 7, 0, EDX, 24 },	{ "amx_int8", 7, 0, EDX, 25 },
	{ "flush_l1d", 7, 0, EDX, 28 },	{ "arch_capabilities", 7, 0, EDX, 29 },
	/* leaf 7 subleaf 1 EAX */
	{ "avx_vnni", 7, 1, EAX, 4 },	{ "avx512_bf16", 7, 1, EAX, 5 },
	/* leaf 0xd subleaf 1 EAX */
	{ "xsaveopt", 0xd, 1, EAX, 0 },	{ "xsavec", 0xd, 1, EAX, 1 },
	{ "xgetbv1", 0xd, 1, EAX, 2 },	{ "xsaves", 0xd, 1, EAX, 3 },
	/* leaf 0x80000001 EDX */
	{ "syscall", 0x80000001, 0, EDX, 11 }, { "mp", 0x80000001, 0, EDX, 19 },
	{ "nx", 0x80000001, 0, EDX, 20 }, { "mmxext", 0x80000001, 0, EDX, 22 },
	{ "fxsr_opt", 0x80000001, 0, EDX, 25 }, { "pdpe1gb", 0x80000001, 0, EDX, 26 },
	{ "rdtscp", 0x80000001, 0, EDX, 27 }, { "lm", 0x80000001, 0, EDX, 29 },
	{ "3dnowext", 0x80000001, 0, EDX, 30 }, { "3dnow", 0x80000001, 0, EDX, 31 },
	/* leaf 0x80000001 ECX */
	{ "lahf_lm", 0x80000001, 0, ECX, 0 }, { "cmp_legacy", 0x80000001, 0, ECX, 1 },
	{ "svm", 0x80000001, 0, ECX, 2 }, { "extapic", 0x80000001, 0, ECX, 3 },
	{ "cr8_legacy", 0x80000001, 0, ECX, 4 }, { "abm", 0x80000001, 0, ECX, 5 },
	{ "sse4a", 0x80000001, 0, ECX, 6 }, { "misalignsse", 0x80000001, 0, ECX, 7 },
	{ "3dnowprefetch", 0x80000001, 0, ECX, 8 }, { "osvw", 0x80000001, 0, ECX, 9 },
	{ "ibs", 0x80000001, 0, ECX, 10 }, { "xop", 0x80000001, 0, ECX, 11 },
	{ "skinit", 0x80000001, 0, ECX, 12 }, { "wdt", 0x80000001, 0, ECX, 13 },
	{ "lwp", 0x80000001, 0, ECX, 15 }, { "fma4", 0x80000001, 0, ECX, 16 },
	{ "tce", 0x80000001, 0, ECX, 17 }, { "nodeid_msr", 0x80000001, 0, ECX, 19 },
	{ "tbm", 0x80000001, 0, ECX, 21 }, { "topoext", 0x80000001, 0, ECX, 22 },
	{ "perfctr_core", 0x80000001, 0, ECX, 23 }, { "perfctr_nb", 0x80000001, 0, ECX, 24 },
	{ "bpext", 0x80000001, 0, ECX, 26 }, { "ptsc", 0x80000001, 0, ECX, 27 },
	{ "perfctr_llc", 0x80000001, 0, ECX, 28 }, { "mwaitx", 0x80000001, 0, ECX, 29 },
	/* leaf 0x80000008 EBX */
	{ "clzero", 0x80000008, 0, EBX, 0 }, { "irperf", 0x80000008, 0, EBX, 1 },
	{ "xsaveerptr", 0x80000008, 0, EBX, 2 }, { "rdpru", 0x80000008, 0, EBX, 4 },
	{ "wbnoinvd", 0x80000008, 0, EBX, 9 },
	/* leaf 0x8000000a EDX (SVM features) */
	{ "npt", 0x8000000a, 0, EDX, 0 }, { "lbrv", 0x8000000a, 0, EDX, 1 },
	{ "svm_lock", 0x8000000a, 0, EDX, 2 }, { "nrip_save", 0x8000000a, 0, EDX, 3 },
	{ "tsc_scale", 0x8000000a, 0, EDX, 4 }, { "vmcb_clean", 0x8000000a, 0, EDX, 5 },
	{ "flushbyasid", 0x8000000a, 0, EDX, 6 }, { "decodeassists", 0x8000000a, 0, EDX, 7 },
	{ "pausefilter", 0x8000000a, 0, EDX, 10 }, { "pfthreshold", 0x8000000a, 0, EDX, 12 },
	{ "avic", 0x8000000a, 0, EDX, 13 }, { "v_vmsave_vmload", 0x8000000a, 0, EDX, 15 },
	{ "vgif", 0x8000000a, 0, EDX, 16 },
};

int x86_cpuid_feature(const char *name, uint32_t *leaf, uint32_t *subleaf, int *reg, int *bit)
{
	if (!name)
		return vmkit__err(-EINVAL, "cpuid: no feature name");
	for (size_t i = 0; i < ARRAY_SIZE(features); i++) {
		if (strcmp(features[i].name, name))
			continue;
		if (leaf)
			*leaf = features[i].leaf;
		if (subleaf)
			*subleaf = features[i].subleaf;
		if (reg)
			*reg = features[i].reg;
		if (bit)
			*bit = features[i].bit;
		return 0;
	}
	return vmkit__err(-ENOENT, "cpuid: unknown feature '%.40s'", name);
}

/* ceil(log2(n)): the APIC id bits that n ids need. */
static uint32_t order(uint32_t n)
{
	return n <= 1 ? 0 : 32 - (uint32_t)__builtin_clz(n - 1);
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static uint32_t *reg_of(vmkit_cpuid_entry *e, int reg)
{
	switch (reg) {
	case EAX: return &e->eax;
	case EBX: return &e->ebx;
	case ECX: return &e->ecx;
	default: return &e->edx;
	}
}

static bool is_amd_vendor(const char v[12])
{
	return !memcmp(v, "AuthenticAMD", 12) || !memcmp(v, "HygonGenuine", 12);
}

static vmkit_cpuid_entry *find(vmkit_cpuid_entry *t, size_t n, uint32_t fn, uint32_t idx)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].function == fn &&
		    (!(t[i].flags & VMKIT_CPUID_FLAG_SIGNIFICANT_INDEX) || t[i].index == idx))
			return &t[i];
	return NULL;
}

/* Topology of one package, @ncpus cores, one thread per core. */
static void shape(vmkit_cpuid_entry *e, uint32_t index, uint32_t ncpus)
{
	uint32_t ids = 1u << order(ncpus); /* addressable APIC ids in the package */
	uint32_t level;

	switch (e->function) {
	case 1:
		e->ebx = (e->ebx & 0xffff) | (min_u32(ids, 255) << 16) | ((index & 0xff) << 24);
		if (ncpus > 1)
			e->edx |= 1u << 28;  /* HTT: the EBX[23:16] count is valid */
		else
			e->edx &= ~(1u << 28);
		e->ecx |= 1u << 31;          /* running under a hypervisor */
		break;
	case 4:
		if (!(e->eax & 0x1f))        /* no more caches */
			break;
		level = (e->eax >> 5) & 7;
		e->eax &= ~((0x3fu << 26) | (0xfffu << 14));
		e->eax |= (min_u32(ids, 64) - 1) << 26;
		/* L1/L2 belong to a core (one thread), L3 to the package. */
		e->eax |= (level >= 3 ? min_u32(ids, 4096) - 1 : 0) << 14;
		break;
	case 0x80000008:
		e->ecx &= ~(0xffu | (0xfu << 12));
		e->ecx |= min_u32(ncpus - 1, 255) | (order(ncpus) << 12);
		break;
	case 0x8000001d:
		if (!(e->eax & 0x1f))
			break;
		level = (e->eax >> 5) & 7;
		e->eax &= ~(0xfffu << 14);
		e->eax |= (level >= 3 ? min_u32(ncpus, 4096) - 1 : 0) << 14;
		break;
	case 0x8000001e:
		e->eax = index;                       /* extended APIC id */
		e->ebx = (e->ebx & ~0xffffu) | (index & 0xff); /* core id, 1 thread */
		e->ecx &= ~0x7ffu;                    /* node 0, one node */
		e->edx = 0;
		break;
	default:
		break;
	}
}

/* Leaf 0xb or 0x1f: SMT level (1 thread), core level (@ncpus), end. */
static void topology_leaf(vmkit_cpuid_entry *out, uint32_t fn, uint32_t index, uint32_t ncpus)
{
	for (uint32_t sub = 0; sub < 3; sub++) {
		vmkit_cpuid_entry *e = &out[sub];

		memset(e, 0, sizeof(*e));
		e->function = fn;
		e->index = sub;
		e->flags = VMKIT_CPUID_FLAG_SIGNIFICANT_INDEX;
		e->edx = index;
		e->ecx = sub;
		if (sub == 0) {
			e->eax = 0;
			e->ebx = 1;
			e->ecx |= 1u << 8;   /* level type SMT */
		} else if (sub == 1) {
			e->eax = order(ncpus);
			e->ebx = ncpus;
			e->ecx |= 2u << 8;   /* level type core */
		}
	}
}

static int set_vendor(vmkit_cpuid_entry *t, size_t n, const char *vendor)
{
	vmkit_cpuid_entry *l0 = find(t, n, 0, 0), *x0 = find(t, n, 0x80000000, 0);
	uint32_t b, d, c;

	if (strnlen(vendor, 13) != 12)
		return vmkit__err(-EINVAL, "cpuid: vendor '%.12s' is not 12 characters", vendor);
	if (!l0)
		return vmkit__err(-EINVAL, "cpuid: the supported table has no leaf 0");
	memcpy(&b, vendor, 4);
	memcpy(&d, vendor + 4, 4);
	memcpy(&c, vendor + 8, 4);
	l0->ebx = b;
	l0->edx = d;
	l0->ecx = c;
	/* AMD repeats the vendor in 0x80000000; Intel reserves (zeroes) it. */
	if (x0) {
		bool amd = is_amd_vendor(vendor);
		x0->ebx = amd ? b : 0;
		x0->edx = amd ? d : 0;
		x0->ecx = amd ? c : 0;
	}
	return 0;
}

static int mask(vmkit_cpuid_entry *t, size_t n, const struct x86_cpu_model *model)
{
	if (model->n_masked > X86_MAX_MASKED)
		return vmkit__err(-EINVAL, "cpuid: %u masked features (at most %d)",
				  model->n_masked, X86_MAX_MASKED);
	for (uint32_t m = 0; m < model->n_masked; m++) {
		const char *name = model->masked[m];
		uint32_t leaf, sub;
		int reg, bit, r;

		if (!memchr(name, 0, sizeof(model->masked[m])))
			return vmkit__err(-EINVAL, "cpuid: masked feature name is not terminated");
		r = x86_cpuid_feature(name, &leaf, &sub, &reg, &bit);
		if (r < 0)
			return r;
		for (size_t i = 0; i < n; i++)
			if (t[i].function == leaf &&
			    (!(t[i].flags & VMKIT_CPUID_FLAG_SIGNIFICANT_INDEX) || t[i].index == sub))
				*reg_of(&t[i], reg) &= ~(1u << bit);
	}
	return 0;
}

int x86_cpuid_build(const vmkit_cpuid_entry *supported, size_t n, uint32_t index,
		    uint32_t ncpus, const struct x86_cpu_model *model, vmkit_cpuid_entry *out,
		    size_t max)
{
	uint32_t max_basic = 0;
	bool gen_b, gen_1f = false;
	size_t k = 0;
	int r;

	if ((!supported && n) || !out || !ncpus || index >= ncpus)
		return vmkit__err(-EINVAL, "cpuid: bad arguments (vCPU %u of %u)", index, ncpus);
	for (size_t i = 0; i < n; i++) {
		if (supported[i].function == 0)
			max_basic = supported[i].eax;
		if (supported[i].function == 0x1f)
			gen_1f = true;
	}
	/* Leaf 0xb is generated whenever it is in range (a host table without
	 * it would leave the guest with zeros); 0x1f only where the host
	 * offers it. */
	gen_b = max_basic >= 0xb;
	gen_1f = gen_1f && max_basic >= 0x1f;

	for (size_t i = 0; i < n; i++) {
		uint32_t fn = supported[i].function;

		if ((fn == 0xb && gen_b) || (fn == 0x1f && gen_1f))
			continue;
		if (k == max)
			goto nospace;
		out[k] = supported[i];
		shape(&out[k], index, ncpus);
		k++;
	}
	if (gen_b) {
		if (max - k < 3)
			goto nospace;
		topology_leaf(&out[k], 0xb, index, ncpus);
		k += 3;
	}
	if (gen_1f) {
		if (max - k < 3)
			goto nospace;
		topology_leaf(&out[k], 0x1f, index, ncpus);
		k += 3;
	}
	if (model && model->vendor[0]) {
		r = set_vendor(out, k, model->vendor);
		if (r < 0)
			return r;
	}
	if (model) {
		r = mask(out, k, model);
		if (r < 0)
			return r;
	}
	return (int)k;

nospace:
	return vmkit__err(-ENOSPC, "cpuid: more than %zu entries", max);
}
