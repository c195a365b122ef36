/* SPDX-License-Identifier: MIT */
/* Helpers private to lib/boot: little-endian field access on untrusted
 * images, RAM checks against the e820 input, bounded guest writes with
 * one-line errors, initrd placement and ELF program headers. */
#ifndef VMKIT_BOOT_LOADER_H
#define VMKIT_BOOT_LOADER_H

#include <string.h>

#include "boot/boot.h"

#define BOOT_PAGE 0x1000ull

static inline uint16_t boot_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t boot_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t boot_le64(const uint8_t *p)
{
	return (uint64_t)boot_le32(p) | (uint64_t)boot_le32(p + 4) << 32;
}
static inline void boot_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void boot_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void boot_put64(uint8_t *p, uint64_t v)
{
	boot_put32(p, (uint32_t)v);
	boot_put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t boot_align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
static inline uint64_t boot_align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }
/* [a, a+alen) and [b, b+blen) intersect; lengths do not overflow. */
static inline bool boot_overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}
#define BOOT_ULL(x) ((unsigned long long)(x))

/* Common checks on @in (memory, e820 entries that do not wrap). */
int boot_check_input(const struct boot_input *in, const char *fmt_name);
/* [addr, addr+len) lies in E820_RAM entries of the input (len > 0). */
bool boot_in_ram(const struct boot_input *in, uint64_t addr, uint64_t len);
/* Guest writes; -EFAULT becomes a one-line error naming @what. */
int boot_write(const struct boot_input *in, uint64_t gpa, const void *buf, size_t len,
	       const char *what);
int boot_zero(const struct boot_input *in, uint64_t gpa, uint64_t len, const char *what);
/* Copy @filesz bytes and zero up to @memsz at @gpa, which must be RAM. */
int boot_load(const struct boot_input *in, uint64_t gpa, const uint8_t *data, uint64_t filesz,
	      uint64_t memsz, const char *what);
/* The command line at X86_CMDLINE_ADDR, NUL-terminated; at most @max
 * bytes without the NUL. Its length (without NUL) in @len. */
int boot_write_cmdline(const struct boot_input *in, uint64_t max, const char *fmt_name,
		       size_t *len);
/* Total length of the initrd blobs (0 for none), -E2BIG on overflow. */
int boot_initrd_size(const struct boot_input *in, uint64_t *total);
/* The highest @align-aligned address >= @min with [a, a+size) in one RAM
 * entry, below @limit, and not overlapping [avoid, avoid+avoid_len).
 * -ENOSPC when there is none. */
int boot_place_high(const struct boot_input *in, uint64_t size, uint64_t align, uint64_t min,
		    uint64_t limit, uint64_t avoid, uint64_t avoid_len, uint64_t *out);
/* Concatenate the initrds at @addr (placed by the caller). */
int boot_write_initrds(const struct boot_input *in, uint64_t addr);

/* ---- ELF (elf.c) ----------------------------------------------------------- */

struct boot_elf {
	bool is64;
	uint64_t entry;
	uint64_t phoff;
	uint32_t phnum, phentsize;
};

struct boot_elf_phdr {
	uint32_t type;
	uint64_t offset, vaddr, paddr, filesz, memsz;
};

/* Parse and validate the ELF header of a little-endian x86 (EM_386 or
 * EM_X86_64) executable and the bounds of its program header table.
 * -ENOEXEC with a message otherwise. */
int boot_elf_parse(const uint8_t *img, size_t len, struct boot_elf *e);
/* Program header @i (i < phnum), fields widened to 64 bits. */
void boot_elf_phdr(const uint8_t *img, const struct boot_elf *e, uint32_t i,
		   struct boot_elf_phdr *ph);
/* The PVH entry from a "Xen" note of type 18 in a PT_NOTE segment: 0,
 * -ENOENT when there is none, -ENOEXEC when the notes are malformed. */
int boot_elf_pvh_entry(const uint8_t *img, size_t len, const struct boot_elf *e, uint32_t *entry);
/* Validate every PT_LOAD (file bounds, memsz >= filesz, no wrap, in RAM,
 * not below 1 MiB, below @limit) and then load them at p_paddr. The
 * lowest and highest loaded addresses in @lo/@hi. */
int boot_elf_load(const struct boot_input *in, const uint8_t *img, size_t len,
		  const struct boot_elf *e, uint64_t limit, const char *fmt_name, uint64_t *lo,
		  uint64_t *hi);

/* ---- Multiboot (multiboot.c) ------------------------------------------------ */

/* Offset of a valid Multiboot v1 header (magic, flags, checksum summing
 * to 0, 4-byte aligned, within the first 8 KiB), or -ENOENT. */
long boot_mb_find(const uint8_t *img, size_t len);

#endif
