/* SPDX-License-Identifier: MIT */
/* mbinfo: print what the Multiboot loader passed: magic, flags, memory
 * sizes, the command line, each module (range, string, size and FNV-1a
 * of its contents) and each memory-map entry; exit 0. Also the kernel's
 * own range (modules must lie outside it) and, for each RAM entry below
 * 4 GiB, whether its last byte holds what is written to it. */
#include "kit.h"

extern char __load_start[], __bss_end[];

/* RAM really there: a written byte reads back (unbacked memory would be
 * an unclaimed MMIO access, reading all ones). */
static const char *probe(uint64_t last)
{
	volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)last;
	uint8_t old = *p, ok;

	*p = 0x5a;
	ok = *p == 0x5a;
	*p = 0xa5;
	ok = ok && *p == 0xa5;
	*p = old;
	return ok ? "ok" : "bad";
}

long guest_main(const char *cmdline)
{
	const struct kit_mb_info *mb = kit_mb();
	const struct kit_mb_mmap *e;
	uint32_t i, n = 0;

	kit_printf("mb magic=0x%x\n", kit_mb_magic());
	if (!mb) {
		kit_printf("mb no info\n");
		return 1;
	}
	kit_printf("mb kernel start=0x%lx end=0x%lx\n", (unsigned long)(uintptr_t)__load_start,
		   (unsigned long)(uintptr_t)__bss_end);
	kit_printf("mb flags=0x%x\n", mb->flags);
	if (mb->flags & KIT_MB_INFO_MEM)
		kit_printf("mb mem_lower=%u mem_upper=%u\n", mb->mem_lower, mb->mem_upper);
	kit_printf("mb cmdline=%s\n", cmdline);
	kit_printf("mb mods=%u\n", kit_mb_module_count());
	for (i = 0; i < kit_mb_module_count(); i++) {
		const struct kit_mb_module *m = kit_mb_module(i);
		uint32_t size = m->mod_end >= m->mod_start ? m->mod_end - m->mod_start : 0;
		const char *s = m->string ? (const char *)(uintptr_t)m->string : "";

		kit_printf("mb mod %u start=0x%x end=0x%x size=%u fnv=0x%08x string=%s\n", i,
			   m->mod_start, m->mod_end, size,
			   kit_fnv1a((const void *)(uintptr_t)m->mod_start, size), s);
	}
	for (e = kit_mb_mmap_next(NULL); e; e = kit_mb_mmap_next(e), n++) {
		bool low = e->type == 1 && e->len && e->addr + e->len <= 0x100000000ull;

		kit_printf("mb mmap addr=0x%lx len=0x%lx type=%u%s%s\n", (unsigned long)e->addr,
			   (unsigned long)e->len, e->type, low ? " probe=" : "",
			   low ? probe(e->addr + e->len - 1) : "");
	}
	kit_printf("mb mmap entries=%u\n", n);
	kit_printf("mb done\n");
	return 0;
}
