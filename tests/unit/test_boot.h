/* SPDX-License-Identifier: MIT */
/* Shared fixture for the loader tests: a fake guest RAM (anonymous
 * mapping, lazily backed) with a PC-like e820 map, the stock Debian
 * kernels, and builders for small synthetic images. */
#ifndef VMKIT_TESTS_BOOT_H
#define VMKIT_TESTS_BOOT_H

#include <criterion/criterion.h>
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/boot.h"

#define MiB (1ull << 20)

struct bootfx {
	struct vmkit_gmem gm;
	struct x86_e820 e820[4];
	struct boot_input in;
	struct boot_entry out;
	uint64_t ram;
};

/* The vCPU's special registers after reset, as KVM_GET_SREGS gives them. */
static inline void reset_sregs(vmkit_sregs *s)
{
	vmkit_segment seg = { .limit = 0xffff, .type = 3, .present = 1, .s = 1 };

	memset(s, 0, sizeof(*s));
	s->ds = s->es = s->fs = s->gs = s->ss = seg;
	seg.type = 11;
	s->cs = seg;
	s->cs.selector = 0xf000;
	s->cs.base = 0xffff0000;
	s->tr = (vmkit_segment){ .limit = 0xffff, .type = 11, .present = 1 };
	s->ldt = (vmkit_segment){ .limit = 0xffff, .type = 2, .present = 1 };
	s->gdt.limit = s->idt.limit = 0xffff;
	s->cr0 = 0x60000010;
	s->apic_base = 0xfee00900;
}

/* RAM [0, 0x9fc00), reserved up to 1 MiB, RAM [1 MiB, @ram). @ram <= 3 GiB. */
static inline void bootfx_init(struct bootfx *f, uint64_t ram)
{
	memset(f, 0, sizeof(*f));
	vmkit__gmem_init(&f->gm);
	cr_assert_geq(vmkit__gmem_add(&f->gm, 0, ram, VMKIT_MEMORY_ANONYMOUS, 0), 0, "%s",
		      vmkit_last_error());
	f->ram = ram;
	f->e820[0] = (struct x86_e820){ 0, X86_EBDA_START, E820_RAM };
	f->e820[1] = (struct x86_e820){ X86_EBDA_START, X86_HIGH_RAM - X86_EBDA_START, E820_RESERVED };
	f->e820[2] = (struct x86_e820){ X86_HIGH_RAM, ram - X86_HIGH_RAM, E820_RAM };
	f->in.mem = &f->gm;
	f->in.ram_size = ram;
	f->in.e820 = f->e820;
	f->in.n_e820 = 3;
	f->in.cmdline = "";
	reset_sregs(&f->out.sregs);
}

static inline void bootfx_fini(struct bootfx *f)
{
	vmkit__gmem_destroy(&f->gm);
}

/* Host pointer to guest memory; fails the test when unbacked. */
static inline uint8_t *gp(struct bootfx *f, uint64_t gpa, size_t len)
{
	uint8_t *p = vmkit__gmem_ptr(&f->gm, gpa, len);
	cr_assert_not_null(p, "guest range 0x%llx+0x%zx not backed", (unsigned long long)gpa, len);
	return p;
}

static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* ---- the stock Debian cloud kernel ------------------------------------------ */

/* Read tests' kernel file @name (vmlinuz or vmlinux). Missing: a failure
 * under CI=true, else the test is skipped with the reason. */
static inline uint8_t *stock_kernel(const char *name, size_t *len)
{
	const char *dir = getenv("VMKIT_KERNEL_DIR"), *ci = getenv("CI");
	char path[4096];
	uint8_t *buf;
	FILE *fp;
	long n;

	if (dir)
		snprintf(path, sizeof(path), "%s/%s", dir, name);
	else
		snprintf(path, sizeof(path), "%s/.cache/vmkit/kernels/cloud/%s",
			 getenv("HOME") ? getenv("HOME") : "", name);
	fp = fopen(path, "rb");
	if (!fp) {
		if (ci && strcmp(ci, "true") == 0)
			cr_assert_fail("CI=true but the stock kernel %s is missing (run tests/linux/fetch-kernel)", path);
		cr_skip_test("skipped, stock kernel %s missing (run tests/linux/fetch-kernel)", path);
	}
	cr_assert_eq(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	cr_assert_gt(n, 0);
	rewind(fp);
	buf = malloc((size_t)n);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

/* ---- synthetic images ----------------------------------------------------------- */

/* A minimal ELF with one PT_LOAD of @code at @paddr (vaddr @vaddr) with
 * @bss extra zero bytes, entry @entry, and optionally a PT_NOTE with the
 * Xen PVH entry (@pvh_entry, @note_bytes 4 or 8; 0 for none) and a
 * Multiboot header (@mb_flags, ~0u for none) right after the headers.
 * Returns the image in a malloc'd buffer. */
struct synth_elf {
	bool is64;
	uint64_t paddr, vaddr, entry, bss;
	const uint8_t *code;
	size_t code_len;
	uint64_t pvh_entry;
	unsigned note_bytes;
	uint32_t mb_flags;
	bool with_mb;
};

#define SYN_CODE_OFF 0x1000

static inline uint8_t *synth_elf_build(const struct synth_elf *s, size_t *len)
{
	size_t n = SYN_CODE_OFF + s->code_len;
	uint8_t *b = calloc(1, n);
	size_t eh = s->is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
	size_t ph = s->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	unsigned nph = s->note_bytes ? 2 : 1;
	size_t note_off = eh + nph * ph, mb_off = 0x200;
	uint8_t *note = b + note_off;

	cr_assert_not_null(b);
	memcpy(b, ELFMAG, SELFMAG);
	b[EI_CLASS] = s->is64 ? ELFCLASS64 : ELFCLASS32;
	b[EI_DATA] = ELFDATA2LSB;
	b[EI_VERSION] = EV_CURRENT;
	wr16(b + 16, ET_EXEC);
	wr16(b + 18, s->is64 ? EM_X86_64 : EM_386);
	wr32(b + 20, EV_CURRENT);
	if (s->is64) {
		wr64(b + 24, s->entry);
		wr64(b + 32, eh);
		wr16(b + 52, (uint16_t)eh);
		wr16(b + 54, (uint16_t)ph);
		wr16(b + 56, (uint16_t)nph);
	} else {
		wr32(b + 24, (uint32_t)s->entry);
		wr32(b + 28, (uint32_t)eh);
		wr16(b + 40, (uint16_t)eh);
		wr16(b + 42, (uint16_t)ph);
		wr16(b + 44, (uint16_t)nph);
	}
	for (unsigned i = 0; i < nph; i++) {
		uint8_t *p = b + eh + i * ph;
		bool load = i == 0;
		uint64_t off = load ? SYN_CODE_OFF : note_off;
		uint64_t fsz = load ? s->code_len : 12 + 4 + s->note_bytes;
		uint64_t msz = load ? s->code_len + s->bss : fsz;

		if (s->is64) {
			wr32(p, load ? PT_LOAD : PT_NOTE);
			wr64(p + 8, off);
			wr64(p + 16, load ? s->vaddr : 0);
			wr64(p + 24, load ? s->paddr : 0);
			wr64(p + 32, fsz);
			wr64(p + 40, msz);
		} else {
			wr32(p, load ? PT_LOAD : PT_NOTE);
			wr32(p + 4, (uint32_t)off);
			wr32(p + 8, (uint32_t)(load ? s->vaddr : 0));
			wr32(p + 12, (uint32_t)(load ? s->paddr : 0));
			wr32(p + 16, (uint32_t)fsz);
			wr32(p + 20, (uint32_t)msz);
		}
	}
	if (s->note_bytes) {
		wr32(note, 4);
		wr32(note + 4, s->note_bytes);
		wr32(note + 8, BOOT_XEN_NOTE_PHYS32_ENTRY);
		memcpy(note + 12, "Xen", 4);
		if (s->note_bytes == 8)
			wr64(note + 16, s->pvh_entry);
		else
			wr32(note + 16, (uint32_t)s->pvh_entry);
	}
	if (s->with_mb) {
		wr32(b + mb_off, BOOT_MB_MAGIC);
		wr32(b + mb_off + 4, s->mb_flags);
		wr32(b + mb_off + 8, (uint32_t)(0u - BOOT_MB_MAGIC - s->mb_flags));
	}
	memcpy(b + SYN_CODE_OFF, s->code, s->code_len);
	*len = n;
	return b;
}

/* Walk the guest's 4-level page tables from CR3 for @va: the physical
 * address, and whether every level is present, writable and user. */
static inline uint64_t walk(struct bootfx *f, uint64_t cr3, uint64_t va, bool *user_rw)
{
	uint64_t t = cr3 & ~0xfffull, e = 0;
	int shifts[] = { 39, 30, 21 };

	*user_rw = true;
	for (int lvl = 0; lvl < 3; lvl++) {
		e = rd64(gp(f, t + 8 * ((va >> shifts[lvl]) & 511), 8));
		cr_assert(e & 1, "level %d entry for 0x%llx not present", lvl, (unsigned long long)va);
		*user_rw = *user_rw && (e & 6) == 6;
		if (lvl == 2) {
			cr_assert(e & 0x80, "PD entry for 0x%llx is not a 2 MiB page", (unsigned long long)va);
			return (e & 0xfffffffe00000ull) | (va & 0x1fffff);
		}
		t = e & 0xffffffffff000ull;
	}
	return 0;
}

/* Decode GDT entry @sel from guest memory. */
struct gdt_desc {
	uint32_t base, limit;
	uint8_t type, s, dpl, p, l, db, g;
};

static inline struct gdt_desc gdt_read(struct bootfx *f, uint64_t gdt_base, uint16_t sel)
{
	uint64_t d = rd64(gp(f, gdt_base + (sel & ~7u), 8));
	struct gdt_desc g = {
		.base = (uint32_t)(((d >> 16) & 0xffffff) | ((d >> 56) << 24)),
		.limit = (uint32_t)((d & 0xffff) | ((d >> 48) & 0xf) << 16),
		.type = (d >> 40) & 0xf, .s = (d >> 44) & 1, .dpl = (d >> 45) & 3, .p = (d >> 47) & 1,
		.l = (d >> 53) & 1, .db = (d >> 54) & 1, .g = (d >> 55) & 1,
	};
	if (g.g)
		g.limit = g.limit << 12 | 0xfff;
	return g;
}

/* The descriptor in memory agrees with the cached segment in sregs. */
static inline void assert_seg_matches_gdt(struct bootfx *f, const vmkit_sregs *s,
					  const vmkit_segment *seg)
{
	struct gdt_desc g = gdt_read(f, s->gdt.base, seg->selector);

	cr_assert_lt(seg->selector & ~7u, (unsigned)s->gdt.limit + 1, "selector beyond the GDT limit");
	cr_assert_eq(g.base, seg->base);
	cr_assert_eq(g.limit, seg->limit);
	cr_assert_eq(g.type, seg->type);
	cr_assert_eq(g.l, seg->l);
	cr_assert_eq(g.db, seg->db);
	cr_assert_eq(g.dpl, seg->dpl);
	cr_assert_eq(g.p, 1);
}

#endif
