/* SPDX-License-Identifier: MIT */
/* CPUID shaping against synthetic Intel-like and AMD-like supported
 * tables, and the boot MSRs. */
#include <criterion/criterion.h>
#include <string.h>

#include "arch/x86/x86.h"

#define SIG VMKIT_CPUID_FLAG_SIGNIFICANT_INDEX
#define MAXE 64

static uint32_t str4(const char *s)
{
	uint32_t v;

	memcpy(&v, s, 4);
	return v;
}

/* Intel-like host: 2 threads x 8 cores, max basic leaf 0x1f. */
static size_t intel_table(vmkit_cpuid_entry *t, bool with_1f)
{
	size_t n = 0;

#define E(fn, idx, fl, a, b, c, d) t[n++] = (vmkit_cpuid_entry){ fn, idx, fl, a, b, c, d }
	E(0, 0, 0, with_1f ? 0x1f : 0xd, str4("Genu"), str4("ntel"), str4("ineI"));
	/* leaf 1: host APIC id 7, 16 logical, clflush 8; pni|cx16|x2apic|xsave|avx;
	 * fpu|tsc|pae|apic|sse2|ht */
	E(1, 0, 0, 0x000906ea, 0x07100800,
	  (1u << 0) | (1u << 13) | (1u << 21) | (1u << 26) | (1u << 28),
	  (1u << 0) | (1u << 4) | (1u << 6) | (1u << 9) | (1u << 26) | (1u << 28));
	/* leaf 4: L1d, L1i, L2 (2 threads share), L3 (16 share), end. Host
	 * cores-per-package field 7. */
	E(4, 0, SIG, (7u << 26) | (1u << 14) | (1u << 5) | 1, 0x01c0003f, 0x3f, 0);
	E(4, 1, SIG, (7u << 26) | (1u << 14) | (1u << 5) | 2, 0x01c0003f, 0x3f, 0);
	E(4, 2, SIG, (7u << 26) | (1u << 14) | (2u << 5) | 3, 0x03c0003f, 0x3ff, 0);
	E(4, 3, SIG, (7u << 26) | (15u << 14) | (3u << 5) | 3, 0x03c0003f, 0x2fff, 6);
	E(4, 4, SIG, 0, 0, 0, 0);
	E(7, 0, SIG, 0, (1u << 0) | (1u << 5) | (1u << 9), (1u << 2), (1u << 10));
	E(0xb, 0, SIG, 1, 2, 0x100, 7);
	E(0xb, 1, SIG, 4, 16, 0x201, 7);
	E(0xd, 0, SIG, 7, 0x340, 0x340, 0);
	E(0xd, 1, SIG, 1, 0, 0, 0);
	if (with_1f) {
		E(0x1f, 0, SIG, 1, 2, 0x100, 7);
		E(0x1f, 1, SIG, 4, 16, 0x201, 7);
	}
	E(0x40000000, 0, 0, 0x40000001, str4("KVMK"), str4("VMKV"), str4("M\0\0\0"));
	E(0x40000001, 0, 0, 0x01007afb, 0, 0, 0);
	E(0x80000000, 0, 0, 0x80000008, 0, 0, 0);
	E(0x80000001, 0, 0, 0, 0, (1u << 0) | (1u << 5), (1u << 11) | (1u << 20) | (1u << 29));
	E(0x80000008, 0, 0, 0x3027, 0, 0, 0);
	return n;
}

/* AMD-like host: 16 cores, max basic 0x10, topology extensions. */
static size_t amd_table(vmkit_cpuid_entry *t)
{
	size_t n = 0;

	E(0, 0, 0, 0x10, str4("Auth"), str4("cAMD"), str4("enti"));
	E(1, 0, 0, 0x00a50f00, 0x0a100800, (1u << 0) | (1u << 21) | (1u << 23),
	  (1u << 0) | (1u << 4) | (1u << 28));
	E(7, 0, SIG, 0, (1u << 0) | (1u << 3), 0, 0);
	E(0x40000000, 0, 0, 0x40000001, str4("KVMK"), str4("VMKV"), str4("M\0\0\0"));
	E(0x40000001, 0, 0, 0x01007afb, 0, 0, 0);
	E(0x80000000, 0, 0, 0x80000020, str4("Auth"), str4("cAMD"), str4("enti"));
	E(0x80000001, 0, 0, 0x00a50f00, 0, (1u << 0) | (1u << 6) | (1u << 22),
	  (1u << 20) | (1u << 29));
	/* NC 15, ApicIdSize 7, PerfTscSize bits 17:16 = 2 */
	E(0x80000008, 0, 0, 0x3030, 0, (2u << 16) | (7u << 12) | 15, 0);
	E(0x8000001d, 0, SIG, (1u << 14) | (1u << 5) | 1, 0x01c0003f, 0x3f, 0);
	E(0x8000001d, 1, SIG, (1u << 14) | (2u << 5) | 3, 0x01c0003f, 0x3ff, 2);
	E(0x8000001d, 2, SIG, (15u << 14) | (3u << 5) | 3, 0x03c0003f, 0x7fff, 1);
	E(0x8000001d, 3, SIG, 0, 0, 0, 0);
	E(0x8000001e, 0, 0, 9, 0x0104, 0x0100, 0);
#undef E
	return n;
}

static const vmkit_cpuid_entry *get(const vmkit_cpuid_entry *t, int n, uint32_t fn, uint32_t idx)
{
	for (int i = 0; i < n; i++)
		if (t[i].function == fn && (!(t[i].flags & SIG) || t[i].index == idx))
			return &t[i];
	cr_assert_fail("leaf 0x%x.%u missing", fn, idx);
	return NULL;
}

static int count_leaf(const vmkit_cpuid_entry *t, int n, uint32_t fn)
{
	int c = 0;

	for (int i = 0; i < n; i++)
		c += t[i].function == fn;
	return c;
}

static uint32_t pow2(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p *= 2;
	return p;
}

static uint32_t order(uint32_t n)
{
	uint32_t b = 0;

	while ((1u << b) < n)
		b++;
	return b;
}

static void check_topology_leaf(const vmkit_cpuid_entry *t, int n, uint32_t fn, uint32_t i,
				uint32_t ncpus)
{
	const vmkit_cpuid_entry *s0 = get(t, n, fn, 0), *s1 = get(t, n, fn, 1),
				*s2 = get(t, n, fn, 2);

	cr_assert_eq(count_leaf(t, n, fn), 3, "leaf 0x%x: host subleaves not replaced", fn);
	cr_assert(s0->flags & SIG);
	/* SMT: 1 thread, shift 0 */
	cr_assert_eq((s0->ecx >> 8) & 0xff, 1);
	cr_assert_eq(s0->ecx & 0xff, 0);
	cr_assert_eq(s0->ebx & 0xffff, 1);
	cr_assert_eq(s0->eax & 0x1f, 0);
	/* core: ncpus, shift covers their ids */
	cr_assert_eq((s1->ecx >> 8) & 0xff, 2);
	cr_assert_eq(s1->ecx & 0xff, 1);
	cr_assert_eq(s1->ebx & 0xffff, ncpus);
	cr_assert_eq(s1->eax & 0x1f, order(ncpus));
	/* end */
	cr_assert_eq((s2->ecx >> 8) & 0xff, 0);
	cr_assert_eq(s2->ecx & 0xff, 2);
	cr_assert_eq(s2->ebx, 0);
	cr_assert_eq(s0->edx, i);
	cr_assert_eq(s1->edx, i);
	cr_assert_eq(s2->edx, i);
}

Test(cpuid, intel_apic_ids_and_topology)
{
	static const uint32_t counts[] = { 1, 2, 3, 4 };
	vmkit_cpuid_entry sup[MAXE], out[MAXE];
	size_t ns = intel_table(sup, true);

	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		uint32_t ncpus = counts[c];

		for (uint32_t i = 0; i < ncpus; i++) {
			int n = x86_cpuid_build(sup, ns, i, ncpus, NULL, out, MAXE);
			const vmkit_cpuid_entry *l1;

			cr_assert_gt(n, 0, "%s", vmkit_last_error());
			l1 = get(out, n, 1, 0);
			cr_assert_eq(l1->ebx >> 24, i, "vCPU %u of %u: APIC id %u", i, ncpus,
				     l1->ebx >> 24);
			cr_assert_eq((l1->ebx >> 16) & 0xff, pow2(ncpus));
			cr_assert_eq(l1->ebx & 0xffff, 0x0800, "CLFLUSH size/brand kept");
			cr_assert_eq(!!(l1->edx & (1u << 28)), ncpus > 1, "HTT");
			cr_assert(l1->ecx & (1u << 31), "hypervisor bit");
			cr_assert_eq(l1->eax, 0x000906ea);
			check_topology_leaf(out, n, 0xb, i, ncpus);
			check_topology_leaf(out, n, 0x1f, i, ncpus);
			for (uint32_t s = 0; s < 4; s++) {
				const vmkit_cpuid_entry *l4 = get(out, n, 4, s);
				uint32_t level = (l4->eax >> 5) & 7;

				cr_assert_eq(l4->eax >> 26, pow2(ncpus) - 1, "leaf 4.%u cores", s);
				cr_assert_eq((l4->eax >> 14) & 0xfff,
					     level == 3 ? pow2(ncpus) - 1 : 0, "leaf 4.%u sharing", s);
				cr_assert_eq(l4->eax & 0x3fff, sup[2 + s].eax & 0x3fff);
				cr_assert_eq(l4->ebx, sup[2 + s].ebx);
			}
			cr_assert_eq(get(out, n, 4, 4)->eax, 0, "leaf 4 terminator untouched");
			cr_assert_eq(get(out, n, 0x80000008, 0)->ecx & 0xff, ncpus - 1);
		}
	}
}

Test(cpuid, leaf_1f_only_where_the_host_has_it)
{
	vmkit_cpuid_entry sup[MAXE], out[MAXE];
	size_t ns = intel_table(sup, false);
	int n = x86_cpuid_build(sup, ns, 1, 2, NULL, out, MAXE);

	cr_assert_gt(n, 0);
	cr_assert_eq(count_leaf(out, n, 0x1f), 0);
	check_topology_leaf(out, n, 0xb, 1, 2);
}

Test(cpuid, kvm_leaves_pass_through)
{
	vmkit_cpuid_entry sup[MAXE], out[MAXE];
	size_t ns = intel_table(sup, true);
	int n = x86_cpuid_build(sup, ns, 0, 4, NULL, out, MAXE);

	cr_assert_gt(n, 0);
	cr_assert(!memcmp(get(out, n, 0x40000000, 0), get(sup, (int)ns, 0x40000000, 0),
			  sizeof(vmkit_cpuid_entry)));
	cr_assert(!memcmp(get(out, n, 0x40000001, 0), get(sup, (int)ns, 0x40000001, 0),
			  sizeof(vmkit_cpuid_entry)));
	cr_assert(!memcmp(get(out, n, 7, 0), get(sup, (int)ns, 7, 0), sizeof(vmkit_cpuid_entry)));
}

Test(cpuid, amd_topology_leaves)
{
	static const uint32_t counts[] = { 1, 2, 4 };
	vmkit_cpuid_entry sup[MAXE], out[MAXE];
	size_t ns = amd_table(sup);

	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		uint32_t ncpus = counts[c];

		for (uint32_t i = 0; i < ncpus; i++) {
			int n = x86_cpuid_build(sup, ns, i, ncpus, NULL, out, MAXE);
			const vmkit_cpuid_entry *e;

			cr_assert_gt(n, 0, "%s", vmkit_last_error());
			cr_assert_eq(get(out, n, 1, 0)->ebx >> 24, i);
			/* max basic leaf 0x10 >= 0xb: generated although the host had none */
			check_topology_leaf(out, n, 0xb, i, ncpus);
			e = get(out, n, 0x80000008, 0);
			cr_assert_eq(e->ecx & 0xff, ncpus - 1, "NC");
			cr_assert_eq((e->ecx >> 12) & 0xf, order(ncpus), "ApicIdSize");
			cr_assert_eq((e->ecx >> 16) & 3, 2, "other bits kept");
			e = get(out, n, 0x8000001e, 0);
			cr_assert_eq(e->eax, i, "extended APIC id");
			cr_assert_eq(e->ebx & 0xff, i, "core id");
			cr_assert_eq((e->ebx >> 8) & 0xff, 0, "one thread per core");
			cr_assert_eq(e->ecx & 0x7ff, 0, "node 0 of 1");
			cr_assert_eq((get(out, n, 0x8000001d, 0)->eax >> 14) & 0xfff, 0);
			cr_assert_eq((get(out, n, 0x8000001d, 1)->eax >> 14) & 0xfff, 0);
			cr_assert_eq((get(out, n, 0x8000001d, 2)->eax >> 14) & 0xfff, ncpus - 1);
		}
	}
}

static void check_vendor(const vmkit_cpuid_entry *t, int n, uint32_t fn, const char *v)
{
	const vmkit_cpuid_entry *e = get(t, n, fn, 0);
	char s[13];

	memcpy(s, &e->ebx, 4);
	memcpy(s + 4, &e->edx, 4);
	memcpy(s + 8, &e->ecx, 4);
	s[12] = 0;
	cr_assert_str_eq(s, v, "leaf 0x%x vendor", fn);
}

Test(cpuid, vendor_override)
{
	vmkit_cpuid_entry sup[MAXE], out[MAXE];
	struct x86_cpu_model m = { 0 };
	size_t ns = intel_table(sup, true);
	int n;

	check_vendor(sup, (int)ns, 0, "GenuineIntel");
	strcpy(m.vendor, "AuthenticAMD");
	n = x86_cpuid_build(sup, ns, 0, 1, &m, out, MAXE);
	cr_assert_gt(n, 0);
	check_vendor(out, n, 0, "AuthenticAMD");
	check_vendor(out, n, 0x80000000, "AuthenticAMD");
	cr_assert_eq(get(out, n, 0, 0)->eax, 0x1f, "max leaf kept");
	cr_assert_eq(get(out, n, 0x80000000, 0)->eax, 0x80000008);

	ns = amd_table(sup);
	strcpy(m.vendor, "GenuineIntel");
	n = x86_cpuid_build(sup, ns, 0, 1, &m, out, MAXE);
	cr_assert_gt(n, 0);
	check_vendor(out, n, 0, "GenuineIntel");
	cr_assert_eq(get(out, n, 0x80000000, 0)->ebx, 0);
	cr_assert_eq(get(out, n, 0x80000000, 0)->ecx, 0);
	cr_assert_eq(get(out, n, 0x80000000, 0)->edx, 0);

	strcpy(m.vendor, "Short");
	cr_assert_eq(x86_cpuid_build(sup, ns, 0, 1, &m, out, MAXE), -EINVAL);
}

Test(cpuid, masking_clears_exactly_the_named_bits)
{
	vmkit_cpuid_entry sup[MAXE], plain[MAXE], out[MAXE];
	struct x86_cpu_model m = { 0 };
	size_t ns = intel_table(sup, true);
	static const char *names[] = { "avx", "x2apic", "avx2", "nx", "hypervisor", "xsave" };
	int n, np;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		strcpy(m.masked[m.n_masked++], names[i]);
	np = x86_cpuid_build(sup, ns, 0, 2, NULL, plain, MAXE);
	n = x86_cpuid_build(sup, ns, 0, 2, &m, out, MAXE);
	cr_assert_eq(n, np);
	cr_assert_eq(plain[1].ecx & ((1u << 28) | (1u << 21) | (1u << 31) | (1u << 26)),
		     (1u << 28) | (1u << 21) | (1u << 31) | (1u << 26), "bits set before");
	cr_assert_eq(get(out, n, 1, 0)->ecx, get(plain, np, 1, 0)->ecx &
		     ~((1u << 28) | (1u << 21) | (1u << 31) | (1u << 26)));
	cr_assert_eq(get(out, n, 7, 0)->ebx, get(plain, np, 7, 0)->ebx & ~(1u << 5));
	cr_assert_eq(get(out, n, 0x80000001, 0)->edx,
		     get(plain, np, 0x80000001, 0)->edx & ~(1u << 20));
	/* Everything else is identical. */
	for (int i = 0; i < n; i++) {
		if (out[i].function == 1 || out[i].function == 7 || out[i].function == 0x80000001)
			continue;
		cr_assert(!memcmp(&out[i], &plain[i], sizeof(out[i])), "leaf 0x%x changed",
			  out[i].function);
	}

	strcpy(m.masked[0], "bogus");
	cr_assert_eq(x86_cpuid_build(sup, ns, 0, 2, &m, out, MAXE), -ENOENT);
	memset(m.masked[0], 'a', sizeof(m.masked[0]));
	cr_assert_eq(x86_cpuid_build(sup, ns, 0, 2, &m, out, MAXE), -EINVAL);
}

Test(cpuid, feature_names)
{
	static const struct {
		const char *name;
		uint32_t leaf, sub;
		int reg, bit;
	} known[] = {
		{ "fpu", 1, 0, 3, 0 },		{ "tsc", 1, 0, 3, 4 },
		{ "msr", 1, 0, 3, 5 },		{ "pae", 1, 0, 3, 6 },
		{ "apic", 1, 0, 3, 9 },		{ "sep", 1, 0, 3, 11 },
		{ "pge", 1, 0, 3, 13 },		{ "cmov", 1, 0, 3, 15 },
		{ "pat", 1, 0, 3, 16 },		{ "clflush", 1, 0, 3, 19 },
		{ "mmx", 1, 0, 3, 23 },		{ "fxsr", 1, 0, 3, 24 },
		{ "sse", 1, 0, 3, 25 },		{ "sse2", 1, 0, 3, 26 },
		{ "ht", 1, 0, 3, 28 },		{ "pni", 1, 0, 2, 0 },
		{ "sse3", 1, 0, 2, 0 },		{ "pclmulqdq", 1, 0, 2, 1 },
		{ "ssse3", 1, 0, 2, 9 },	{ "fma", 1, 0, 2, 12 },
		{ "cx16", 1, 0, 2, 13 },	{ "sse4_1", 1, 0, 2, 19 },
		{ "sse4_2", 1, 0, 2, 20 },	{ "x2apic", 1, 0, 2, 21 },
		{ "movbe", 1, 0, 2, 22 },	{ "popcnt", 1, 0, 2, 23 },
		{ "tsc_deadline_timer", 1, 0, 2, 24 }, { "aes", 1, 0, 2, 25 },
		{ "xsave", 1, 0, 2, 26 },	{ "avx", 1, 0, 2, 28 },
		{ "f16c", 1, 0, 2, 29 },	{ "rdrand", 1, 0, 2, 30 },
		{ "hypervisor", 1, 0, 2, 31 },	{ "fsgsbase", 7, 0, 1, 0 },
		{ "bmi1", 7, 0, 1, 3 },		{ "avx2", 7, 0, 1, 5 },
		{ "smep", 7, 0, 1, 7 },		{ "bmi2", 7, 0, 1, 8 },
		{ "erms", 7, 0, 1, 9 },		{ "invpcid", 7, 0, 1, 10 },
		{ "avx512f", 7, 0, 1, 16 },	{ "sha_ni", 7, 0, 1, 29 },
		{ "umip", 7, 0, 2, 2 },		{ "pku", 7, 0, 2, 3 },
		{ "la57", 7, 0, 2, 16 },	{ "rdpid", 7, 0, 2, 22 },
		{ "md_clear", 7, 0, 3, 10 },	{ "avx512_bf16", 7, 1, 0, 5 },
		{ "xsaveopt", 0xd, 1, 0, 0 },	{ "nx", 0x80000001, 0, 3, 20 },
		{ "syscall", 0x80000001, 0, 3, 11 }, { "lm", 0x80000001, 0, 3, 29 },
		{ "pdpe1gb", 0x80000001, 0, 3, 26 }, { "rdtscp", 0x80000001, 0, 3, 27 },
		{ "lahf_lm", 0x80000001, 0, 2, 0 }, { "abm", 0x80000001, 0, 2, 5 },
		{ "sse4a", 0x80000001, 0, 2, 6 }, { "topoext", 0x80000001, 0, 2, 22 },
	};
	uint32_t leaf, sub;
	int reg, bit;

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		cr_assert_eq(x86_cpuid_feature(known[i].name, &leaf, &sub, &reg, &bit), 0, "%s",
			     known[i].name);
		cr_assert(leaf == known[i].leaf && sub == known[i].sub && reg == known[i].reg &&
			  bit == known[i].bit, "%s: 0x%x.%u reg %d bit %d", known[i].name, leaf,
			  sub, reg, bit);
	}
	cr_assert_eq(x86_cpuid_feature("nosuchflag", &leaf, &sub, &reg, &bit), -ENOENT);
	cr_assert_eq(x86_cpuid_feature("", &leaf, &sub, &reg, &bit), -ENOENT);
	cr_assert_eq(x86_cpuid_feature("AVX", &leaf, &sub, &reg, &bit), -ENOENT);
}

Test(cpuid, bad_arguments)
{
	vmkit_cpuid_entry sup[MAXE], out[MAXE];
	size_t ns = intel_table(sup, true);

	cr_assert_eq(x86_cpuid_build(sup, ns, 2, 2, NULL, out, MAXE), -EINVAL);
	cr_assert_eq(x86_cpuid_build(sup, ns, 0, 0, NULL, out, MAXE), -EINVAL);
	cr_assert_eq(x86_cpuid_build(NULL, 3, 0, 1, NULL, out, MAXE), -EINVAL);
	/* The table plus the generated leaves must fit. */
	cr_assert_eq(x86_cpuid_build(sup, ns, 0, 1, NULL, out, ns), -ENOSPC);
	cr_assert_eq(x86_cpuid_build(sup, ns, 0, 1, NULL, out, 3), -ENOSPC);
	/* Intel table: 0xb and 0x1f (2 host subleaves each) become 3 each. */
	cr_assert_eq(x86_cpuid_build(sup, ns, 0, 1, NULL, out, ns + 2), (int)ns + 2);
}

/* ---- MSRs -------------------------------------------------------------------------- */

static const vmkit_msr *msr(const vmkit_msr *m, size_t n, uint32_t index)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].index == index)
			return &m[i];
	return NULL;
}

Test(msr, boot_values)
{
	vmkit_msr m[32];
	size_t n = x86_boot_msrs(m, 32);
	const vmkit_msr *e;

	cr_assert_gt(n, 3);
	e = msr(m, n, 0x1a0);
	cr_assert(e && (e->data & 1), "IA32_MISC_ENABLE fast strings");
	e = msr(m, n, 0x277);
	cr_assert(e && e->data == 0x0007040600070406ull, "IA32_PAT power-on value");
	e = msr(m, n, 0x2ff);
	cr_assert(e, "MTRRdefType");
	cr_assert_eq(e->data & 0xff, 6, "default type write-back");
	cr_assert(e->data & (1u << 11), "MTRRs enabled");
	cr_assert(!(e->data & (1u << 10)), "fixed ranges left off (they would be UC)");
	cr_assert(msr(m, n, 0xc0000081) && msr(m, n, 0xc0000081)->data == 0, "STAR");
	cr_assert(msr(m, n, 0x174) && msr(m, n, 0x174)->data == 0, "SYSENTER_CS");
	cr_assert_null(msr(m, n, 0x10), "the TSC is left to KVM");
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			cr_assert_neq(m[i].index, m[j].index, "duplicate MSR 0x%x", m[i].index);
	cr_assert_eq(x86_boot_msrs(m, 2), 2);
	cr_assert_eq(x86_boot_msrs(NULL, 2), 0);
}
