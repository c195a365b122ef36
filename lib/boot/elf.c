/* SPDX-License-Identifier: MIT */
/* ELF32/ELF64 executables for the PVH and Multiboot loaders: header and
 * program-header validation, the Xen PVH entry note, loading PT_LOAD
 * segments at their physical addresses. Every field comes from the file
 * and is checked against the file size before use. */
#include <elf.h>

#include "boot/loader.h"

int boot_elf_parse(const uint8_t *img, size_t len, struct boot_elf *e)
{
	uint16_t machine, type;
	size_t ehsize, phsize;

	if (len < EI_NIDENT || memcmp(img, ELFMAG, SELFMAG) != 0)
		return vmkit__err(-ENOEXEC, "not an ELF file");
	if (img[EI_DATA] != ELFDATA2LSB || img[EI_VERSION] != EV_CURRENT)
		return vmkit__err(-ENOEXEC, "ELF: not a little-endian version 1 file");
	if (img[EI_CLASS] == ELFCLASS64) {
		e->is64 = true;
		ehsize = sizeof(Elf64_Ehdr);
		phsize = sizeof(Elf64_Phdr);
	} else if (img[EI_CLASS] == ELFCLASS32) {
		e->is64 = false;
		ehsize = sizeof(Elf32_Ehdr);
		phsize = sizeof(Elf32_Phdr);
	} else {
		return vmkit__err(-ENOEXEC, "ELF: unknown class %u", img[EI_CLASS]);
	}
	if (len < ehsize)
		return vmkit__err(-ENOEXEC, "ELF: file too short (%zu bytes) for its header", len);
	type = boot_le16(img + 16);
	machine = boot_le16(img + 18);
	if (type != ET_EXEC && type != ET_DYN)
		return vmkit__err(-ENOEXEC, "ELF: type %u is not an executable", type);
	if (machine != EM_X86_64 && machine != EM_386)
		return vmkit__err(-ENOEXEC, "ELF: machine %u is not x86", machine);
	if (e->is64) {
		e->entry = boot_le64(img + 24);
		e->phoff = boot_le64(img + 32);
		e->phentsize = boot_le16(img + 54);
		e->phnum = boot_le16(img + 56);
	} else {
		e->entry = boot_le32(img + 24);
		e->phoff = boot_le32(img + 28);
		e->phentsize = boot_le16(img + 42);
		e->phnum = boot_le16(img + 44);
	}
	if (e->phnum == 0 || e->phnum == PN_XNUM)
		return vmkit__err(-ENOEXEC, "ELF: %s program headers", e->phnum ? "extended count of" : "no");
	if (e->phentsize < phsize)
		return vmkit__err(-ENOEXEC, "ELF: program header size %u is too small", e->phentsize);
	/* phnum * phentsize <= 0xffff * 0xffff cannot overflow 64 bits. */
	if (e->phoff > len || (uint64_t)e->phnum * e->phentsize > len - e->phoff)
		return vmkit__err(-ENOEXEC, "ELF: program headers at 0x%llx run past the end of the file",
				  BOOT_ULL(e->phoff));
	return 0;
}

void boot_elf_phdr(const uint8_t *img, const struct boot_elf *e, uint32_t i,
		   struct boot_elf_phdr *ph)
{
	const uint8_t *p = img + e->phoff + (uint64_t)i * e->phentsize;

	ph->type = boot_le32(p);
	if (e->is64) {
		ph->offset = boot_le64(p + 8);
		ph->vaddr = boot_le64(p + 16);
		ph->paddr = boot_le64(p + 24);
		ph->filesz = boot_le64(p + 32);
		ph->memsz = boot_le64(p + 40);
	} else {
		ph->offset = boot_le32(p + 4);
		ph->vaddr = boot_le32(p + 8);
		ph->paddr = boot_le32(p + 12);
		ph->filesz = boot_le32(p + 16);
		ph->memsz = boot_le32(p + 20);
	}
}

static bool in_file(uint64_t off, uint64_t n, size_t len)
{
	return off <= len && n <= len - off;
}

/* Walk the notes of one PT_NOTE segment (4-byte aligned name and desc). */
static int scan_notes(const uint8_t *p, uint64_t n, uint32_t *entry)
{
	uint64_t off = 0;

	while (n - off >= 12) {
		uint32_t namesz = boot_le32(p + off), descsz = boot_le32(p + off + 4);
		uint32_t type = boot_le32(p + off + 8);
		uint64_t name = off + 12;
		uint64_t desc = name + boot_align_up(namesz, 4);
		uint64_t next = desc + boot_align_up(descsz, 4);

		if (desc > n || next > n)
			return vmkit__err(-ENOEXEC, "ELF: note runs past its segment");
		if (type == BOOT_XEN_NOTE_PHYS32_ENTRY && namesz == 4 &&
		    memcmp(p + name, "Xen", 4) == 0) {
			uint64_t v;
			/* The note is a .long in the spec, a pointer-sized
			 * value in some Linux builds. */
			if (descsz == 4)
				v = boot_le32(p + desc);
			else if (descsz == 8)
				v = boot_le64(p + desc);
			else
				return vmkit__err(-ENOEXEC, "ELF: PVH entry note has %u bytes", descsz);
			if (v >> 32)
				return vmkit__err(-ENOEXEC, "ELF: PVH entry 0x%llx is above 4 GiB",
						  BOOT_ULL(v));
			*entry = (uint32_t)v;
			return 0;
		}
		off = next;
	}
	return -ENOENT;
}

int boot_elf_pvh_entry(const uint8_t *img, size_t len, const struct boot_elf *e, uint32_t *entry)
{
	for (uint32_t i = 0; i < e->phnum; i++) {
		struct boot_elf_phdr ph;
		int ret;

		boot_elf_phdr(img, e, i, &ph);
		if (ph.type != PT_NOTE)
			continue;
		if (!in_file(ph.offset, ph.filesz, len))
			return vmkit__err(-ENOEXEC, "ELF: note segment %u runs past the end of the file", i);
		ret = scan_notes(img + ph.offset, ph.filesz, entry);
		if (ret != -ENOENT)
			return ret;
	}
	return -ENOENT;
}

static int check_load(const struct boot_input *in, size_t len, const struct boot_elf_phdr *ph,
		      uint32_t i, uint64_t limit, const char *fmt_name)
{
	if (!in_file(ph->offset, ph->filesz, len))
		return vmkit__err(-ENOEXEC, "%s: segment %u (offset 0x%llx, 0x%llx bytes) runs past the end of the file",
				  fmt_name, i, BOOT_ULL(ph->offset), BOOT_ULL(ph->filesz));
	if (ph->filesz > ph->memsz)
		return vmkit__err(-ENOEXEC, "%s: segment %u has more file bytes than memory bytes",
				  fmt_name, i);
	if (ph->paddr + ph->memsz < ph->paddr || ph->paddr + ph->memsz > limit)
		return vmkit__err(-ENOEXEC, "%s: segment %u at 0x%llx (0x%llx bytes) is beyond 0x%llx",
				  fmt_name, i, BOOT_ULL(ph->paddr), BOOT_ULL(ph->memsz), BOOT_ULL(limit));
	if (ph->paddr < X86_HIGH_RAM)
		return vmkit__err(-ENOEXEC, "%s: segment %u at 0x%llx overlaps the boot area below 1 MiB",
				  fmt_name, i, BOOT_ULL(ph->paddr));
	if (!boot_in_ram(in, ph->paddr, ph->memsz))
		return vmkit__err(-ENOMEM, "%s: segment %u at 0x%llx..0x%llx is not in guest RAM",
				  fmt_name, i, BOOT_ULL(ph->paddr), BOOT_ULL(ph->paddr + ph->memsz));
	return 0;
}

int boot_elf_load(const struct boot_input *in, const uint8_t *img, size_t len,
		  const struct boot_elf *e, uint64_t limit, const char *fmt_name, uint64_t *lo,
		  uint64_t *hi)
{
	struct boot_elf_phdr ph;
	uint64_t l = UINT64_MAX, h = 0;
	int ret;

	/* Validate everything before the first byte is written. */
	for (uint32_t i = 0; i < e->phnum; i++) {
		boot_elf_phdr(img, e, i, &ph);
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		ret = check_load(in, len, &ph, i, limit, fmt_name);
		if (ret < 0)
			return ret;
		if (ph.paddr < l)
			l = ph.paddr;
		if (ph.paddr + ph.memsz > h)
			h = ph.paddr + ph.memsz;
	}
	if (h == 0)
		return vmkit__err(-ENOEXEC, "%s: ELF has no loadable segment", fmt_name);
	for (uint32_t i = 0; i < e->phnum; i++) {
		boot_elf_phdr(img, e, i, &ph);
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		ret = boot_load(in, ph.paddr, img + ph.offset, ph.filesz, ph.memsz, "kernel segment");
		if (ret < 0)
			return ret;
	}
	*lo = l;
	*hi = h;
	return 0;
}
