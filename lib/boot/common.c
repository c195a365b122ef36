/* SPDX-License-Identifier: MIT */
/* What every loader shares: the boot GDT, identity page tables, the
 * segment and control-register state of each CPU mode, and bounded
 * writes and placement in guest RAM. */
#include <unistd.h>

#include "boot/loader.h"

#define CR0_PE (1ull << 0)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)

#define PTE_P  (1ull << 0)
#define PTE_RW (1ull << 1)
#define PTE_US (1ull << 2)
#define PTE_PS (1ull << 7)

/* A flat descriptor: base 0, limit 0xfffff in 4 KiB units. @access is
 * the P/DPL/S/type byte, @flags the G/D/L nibble. */
static uint64_t flat_desc(uint8_t access, uint8_t flags)
{
	return 0xffffull | (uint64_t)access << 40 | (uint64_t)(0xf | flags << 4) << 48;
}

int boot_setup_gdt(const struct vmkit_gmem *mem)
{
	const uint64_t gdt[BOOT_GDT_ENTRIES] = {
		0,
		flat_desc(0x9b, 0xc), /* 0x08 code32: P, DPL0, exec/read, accessed; G, D */
		flat_desc(0x9b, 0xa), /* 0x10 code64: G, L */
		flat_desc(0x93, 0xc), /* 0x18 data: read/write, accessed; G, B */
		flat_desc(0xf3, 0xc), /* 0x20 user data, DPL3 */
		flat_desc(0xfb, 0xa), /* 0x28 user code64, DPL3 */
	};
	uint8_t buf[sizeof(gdt)];

	for (size_t i = 0; i < ARRAY_SIZE(gdt); i++)
		boot_put64(buf + 8 * i, gdt[i]);
	if (vmkit__gmem_write(mem, X86_GDT_ADDR, buf, sizeof(buf)) < 0)
		return vmkit__err(-EFAULT, "boot GDT at 0x%llx is outside guest memory",
				  BOOT_ULL(X86_GDT_ADDR));
	return 0;
}

int boot_setup_identity_paging(const struct vmkit_gmem *mem)
{
	uint8_t page[BOOT_PAGE];
	const uint64_t table = PTE_P | PTE_RW | PTE_US;

	memset(page, 0, sizeof(page));
	boot_put64(page, X86_PDPT_ADDR | table);
	if (vmkit__gmem_write(mem, X86_PML4_ADDR, page, sizeof(page)) < 0)
		goto fault;
	memset(page, 0, sizeof(page));
	for (unsigned i = 0; i < 4; i++)
		boot_put64(page + 8 * i, (X86_PD_ADDR + i * BOOT_PAGE) | table);
	if (vmkit__gmem_write(mem, X86_PDPT_ADDR, page, sizeof(page)) < 0)
		goto fault;
	for (uint64_t pd = 0; pd < 4; pd++) {
		for (uint64_t j = 0; j < 512; j++)
			boot_put64(page + 8 * j, ((pd * 512 + j) << 21) | table | PTE_PS);
		if (vmkit__gmem_write(mem, X86_PD_ADDR + pd * BOOT_PAGE, page, sizeof(page)) < 0)
			goto fault;
	}
	return 0;
fault:
	return vmkit__err(-EFAULT, "identity page tables at 0x%llx..0x%llx are outside guest memory",
			  BOOT_ULL(X86_PML4_ADDR), BOOT_ULL(BOOT_PAGING_END));
}

static vmkit_segment flat_seg(uint16_t sel, uint8_t type, uint8_t dpl, bool l)
{
	vmkit_segment s = {
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type, .present = 1,
		.dpl = dpl, .db = !l, .s = 1, .l = l, .g = 1,
	};
	return s;
}

static vmkit_segment real_seg(uint8_t type)
{
	vmkit_segment s = { .limit = 0xffff, .type = type, .present = 1, .s = 1 };
	return s;
}

/* The TSS the PVH ABI asks for: 32-bit busy TSS, base 0, limit 0x67. KVM
 * also wants a busy TSS type in TR to enter protected or long mode. */
static vmkit_segment boot_tr(void)
{
	vmkit_segment s = { .limit = 0x67, .type = 11, .present = 1 };
	return s;
}

void boot_set_mode(vmkit_sregs *s, vmkit_cpu_mode mode)
{
	vmkit_segment data;

	switch (mode) {
	case VMKIT_CPU_REAL:
		data = real_seg(3);
		s->cs = real_seg(11);
		s->cr0 &= ~(CR0_PE | CR0_PG);
		s->cr3 = 0;
		s->cr4 = 0;
		s->efer = 0;
		break;
	case VMKIT_CPU_PROT32:
		data = flat_seg(BOOT_SEL_DATA, 3, 0, false);
		s->cs = flat_seg(BOOT_SEL_CODE32, 11, 0, false);
		s->tr = boot_tr();
		/* PVH: PE set, every other writable bit clear (ET is fixed). */
		s->cr0 = CR0_PE | CR0_ET;
		s->cr3 = 0;
		s->cr4 = 0;
		s->efer = 0;
		break;
	case VMKIT_CPU_LONG64:
	default:
		data = flat_seg(BOOT_SEL_DATA, 3, 0, false);
		s->cs = flat_seg(BOOT_SEL_CODE64, 11, 0, true);
		s->tr = boot_tr();
		s->cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
		s->cr3 = X86_PML4_ADDR;
		s->cr4 = CR4_PAE;
		s->efer = EFER_LME | EFER_LMA;
		break;
	}
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	if (mode != VMKIT_CPU_REAL) {
		s->gdt.base = X86_GDT_ADDR;
		s->gdt.limit = BOOT_GDT_ENTRIES * 8 - 1;
	}
}

int boot_check_input(const struct boot_input *in, const char *fmt_name)
{
	if (!in || !in->mem || (!in->kernel && in->kernel_len))
		return vmkit__err(-EINVAL, "%s: no guest memory or kernel given", fmt_name);
	if (in->n_e820 && !in->e820)
		return vmkit__err(-EINVAL, "%s: e820 count without entries", fmt_name);
	if (in->n_initrds && !in->initrds)
		return vmkit__err(-EINVAL, "%s: initrd count without blobs", fmt_name);
	for (size_t i = 0; i < in->n_e820; i++)
		if (in->e820[i].addr + in->e820[i].size < in->e820[i].addr)
			return vmkit__err(-EINVAL, "%s: e820 entry %zu wraps around", fmt_name, i);
	return 0;
}

static const struct x86_e820 *ram_entry_at(const struct boot_input *in, uint64_t addr)
{
	for (size_t i = 0; i < in->n_e820; i++) {
		const struct x86_e820 *e = &in->e820[i];
		if (e->type == E820_RAM && addr >= e->addr && addr - e->addr < e->size)
			return e;
	}
	return NULL;
}

bool boot_in_ram(const struct boot_input *in, uint64_t addr, uint64_t len)
{
	uint64_t end = addr + len;

	if (len == 0 || end < addr)
		return false;
	/* Walk adjacent RAM entries; each step advances past one entry. */
	for (size_t steps = 0; steps <= in->n_e820; steps++) {
		const struct x86_e820 *e = ram_entry_at(in, addr);
		if (!e)
			return false;
		if (end <= e->addr + e->size)
			return true;
		addr = e->addr + e->size;
	}
	return false;
}

/* The file and offset behind @buf when it points into a file-backed blob. */
static bool file_backed(const struct boot_input *in, const void *buf, size_t len, int *fd,
			off_t *off)
{
	const uint8_t *p = buf;

	if (in->kernel_from_fd && p >= in->kernel && len <= in->kernel_len &&
	    (size_t)(p - in->kernel) <= in->kernel_len - len) {
		*fd = in->kernel_fd;
		*off = p - in->kernel;
		return true;
	}
	for (size_t i = 0; i < in->n_initrds; i++) {
		const struct boot_blob *b = &in->initrds[i];
		if (b->from_fd && p >= b->data && len <= b->len &&
		    (size_t)(p - b->data) <= b->len - len) {
			*fd = b->fd;
			*off = p - b->data;
			return true;
		}
	}
	return false;
}

/* pread() straight into guest memory, region by region. */
static int pread_to_guest(const struct boot_input *in, uint64_t gpa, int fd, off_t off,
			  size_t len)
{
	while (len > 0) {
		uint64_t avail;
		uint8_t *p = vmkit__gmem_span(in->mem, gpa, &avail);
		size_t n = avail < len ? (size_t)avail : len;
		ssize_t r;

		if (!p)
			return -EFAULT;
		r = pread(fd, p, n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EIO;
		gpa += (uint64_t)r;
		off += r;
		len -= (size_t)r;
	}
	return 0;
}

int boot_write(const struct boot_input *in, uint64_t gpa, const void *buf, size_t len,
	       const char *what)
{
	int fd, ret;
	off_t off;

	if (len == 0)
		return 0;
	if (len >= BOOT_PAGE && file_backed(in, buf, len, &fd, &off)) {
		ret = pread_to_guest(in, gpa, fd, off, len);
		if (ret == -EIO)
			return vmkit__err(-EIO, "%s: cannot read the file", what);
		if (ret < 0)
			return vmkit__err(-EFAULT, "%s at 0x%llx (%zu bytes) is outside guest memory",
					  what, BOOT_ULL(gpa), len);
		return 0;
	}
	if (vmkit__gmem_write(in->mem, gpa, buf, len) < 0)
		return vmkit__err(-EFAULT, "%s at 0x%llx (%zu bytes) is outside guest memory", what,
				  BOOT_ULL(gpa), len);
	return 0;
}

int boot_zero(const struct boot_input *in, uint64_t gpa, uint64_t len, const char *what)
{
	static const uint8_t zeros[BOOT_PAGE];

	while (len > 0) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		/* Fast path: the rest inside one region, one memset. */
		void *p = vmkit__gmem_ptr(in->mem, gpa, (size_t)len);

		if (p) {
			memset(p, 0, (size_t)len);
			return 0;
		}
		if (boot_write(in, gpa, zeros, n, what) < 0)
			return -EFAULT;
		gpa += n;
		len -= n;
	}
	return 0;
}

int boot_load(const struct boot_input *in, uint64_t gpa, const uint8_t *data, uint64_t filesz,
	      uint64_t memsz, const char *what)
{
	if (memsz == 0)
		return 0;
	if (filesz > memsz || !boot_in_ram(in, gpa, memsz))
		return vmkit__err(-EFAULT, "%s at 0x%llx..0x%llx is not in guest RAM", what,
				  BOOT_ULL(gpa), BOOT_ULL(gpa + memsz));
	if (boot_write(in, gpa, data, (size_t)filesz, what) < 0)
		return -EFAULT;
	return boot_zero(in, gpa + filesz, memsz - filesz, what);
}

int boot_write_cmdline(const struct boot_input *in, uint64_t max, const char *fmt_name,
		       size_t *len)
{
	const char *cmd = in->cmdline ? in->cmdline : "";
	size_t n = strnlen(cmd, X86_CMDLINE_MAX);

	if (max > X86_CMDLINE_MAX - 1)
		max = X86_CMDLINE_MAX - 1;
	if (n > max)
		return vmkit__err(-E2BIG, "%s: command line is %s%zu bytes, at most %llu allowed",
				  fmt_name, n == X86_CMDLINE_MAX ? "over " : "", n, BOOT_ULL(max));
	if (boot_write(in, X86_CMDLINE_ADDR, cmd, n, "command line") < 0 ||
	    boot_write(in, X86_CMDLINE_ADDR + n, "", 1, "command line") < 0)
		return -EFAULT;
	*len = n;
	return 0;
}

int boot_initrd_size(const struct boot_input *in, uint64_t *total)
{
	uint64_t t = 0;

	for (size_t i = 0; i < in->n_initrds; i++) {
		if (in->initrds[i].len && !in->initrds[i].data)
			return vmkit__err(-EINVAL, "initrd %zu has no data", i);
		if (t + in->initrds[i].len < t)
			return vmkit__err(-E2BIG, "initrds are too large together");
		t += in->initrds[i].len;
	}
	*total = t;
	return 0;
}

int boot_place_high(const struct boot_input *in, uint64_t size, uint64_t align, uint64_t min,
		    uint64_t limit, uint64_t avoid, uint64_t avoid_len, uint64_t *out)
{
	bool found = false;
	uint64_t best = 0;

	if (size == 0)
		return -ENOSPC;
	for (size_t i = 0; i < in->n_e820; i++) {
		const struct x86_e820 *e = &in->e820[i];
		uint64_t lo = e->addr > min ? e->addr : min;
		uint64_t hi = e->addr + e->size < limit ? e->addr + e->size : limit;
		uint64_t a;

		if (e->type != E820_RAM || hi <= lo || hi - lo < size)
			continue;
		a = boot_align_down(hi - size, align);
		if (a < lo)
			continue;
		if (boot_overlaps(a, size, avoid, avoid_len)) {
			if (avoid < size)
				continue;
			a = boot_align_down(avoid - size, align);
			if (a < lo)
				continue;
		}
		if (!found || a > best)
			best = a;
		found = true;
	}
	if (!found)
		return -ENOSPC;
	*out = best;
	return 0;
}

int boot_write_initrds(const struct boot_input *in, uint64_t addr)
{
	for (size_t i = 0; i < in->n_initrds; i++) {
		if (boot_write(in, addr, in->initrds[i].data, in->initrds[i].len, "initrd") < 0)
			return -EFAULT;
		addr += in->initrds[i].len;
	}
	return 0;
}
