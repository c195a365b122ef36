/* SPDX-License-Identifier: MIT */
/* The guest-physical memory map and its bounds-checked accessors. */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

void vmkit__gmem_init(struct vmkit_gmem *gm)
{
	memset(gm, 0, sizeof(*gm));
}

static bool overlaps(const struct vmkit_gmem *gm, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < gm->n; i++) {
		const struct vmkit_gmem_region *r = &gm->r[i];
		if (gpa < r->gpa + r->len && r->gpa < gpa + len)
			return true;
	}
	return false;
}

static int check_range(const struct vmkit_gmem *gm, uint64_t gpa, uint64_t len)
{
	long page = sysconf(_SC_PAGESIZE);

	if (len == 0 || (gpa | len) & (uint64_t)(page - 1))
		return vmkit__err(-EINVAL, "memory region 0x%llx+0x%llx is empty or not page aligned",
				  (unsigned long long)gpa, (unsigned long long)len);
	if (gpa + len < gpa || gpa + len > (1ull << 52))
		return vmkit__err(-EINVAL, "memory region 0x%llx+0x%llx is beyond the physical address space",
				  (unsigned long long)gpa, (unsigned long long)len);
	if (gm->n == VMKIT_GMEM_MAX_REGIONS)
		return vmkit__err(-ENOSPC, "too many memory regions (max %d)", VMKIT_GMEM_MAX_REGIONS);
	if (overlaps(gm, gpa, len))
		return vmkit__err(-EEXIST, "memory region 0x%llx+0x%llx overlaps another",
				  (unsigned long long)gpa, (unsigned long long)len);
	return 0;
}

/* Ids double as KVM memory slot numbers: reuse the lowest free one. */
static int lowest_free_id(const struct vmkit_gmem *gm)
{
	for (int id = 0;; id++) {
		bool used = false;
		for (unsigned i = 0; i < gm->n; i++)
			used |= gm->r[i].id == id;
		if (!used)
			return id;
	}
}

/* Keep regions sorted by gpa so lookups can stop early. */
static int insert(struct vmkit_gmem *gm, const struct vmkit_gmem_region *nr)
{
	unsigned i = gm->n;
	int id = lowest_free_id(gm);

	while (i > 0 && gm->r[i - 1].gpa > nr->gpa) {
		gm->r[i] = gm->r[i - 1];
		i--;
	}
	gm->r[i] = *nr;
	gm->r[i].id = id;
	gm->n++;
	return gm->r[i].id;
}

/* Map @len bytes (of @fd, or anonymous memory when @fd < 0) at a host
 * address congruent to @gpa modulo 2 MiB. KVM maps guest memory with
 * huge pages (in EPT/NPT, or the shadow tables of a software KVM) only
 * where guest-physical and host-virtual addresses share their offset in
 * the huge page; the kernel aligns only mappings whose size is a multiple
 * of 2 MiB, which guest RAM around the 640 KiB hole is not. So reserve
 * 2 MiB more, place the mapping inside, and give back the rest. */
#define HUGE_ALIGN (2ull << 20)
static void *map_guest(uint64_t gpa, size_t len, int fd)
{
	size_t span = len + HUGE_ALIGN;
	uint8_t *base, *at;
	void *p;

	if (len < HUGE_ALIGN || span < len)
		return fd >= 0 ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0) :
				 mmap(NULL, len, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	base = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return MAP_FAILED;
	at = base + ((gpa - (uintptr_t)base) & (HUGE_ALIGN - 1));
	p = fd >= 0 ? mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE | MAP_FIXED, fd, 0) :
		      mmap(at, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	if (p == MAP_FAILED) {
		munmap(base, span);
		return MAP_FAILED;
	}
	if (at > base)
		munmap(base, (size_t)(at - base));
	if (base + span > at + len)
		munmap(at + len, (size_t)(base + span - (at + len)));
	return p;
}

int vmkit__gmem_add(struct vmkit_gmem *gm, uint64_t gpa, uint64_t len, uint32_t backing,
		    uint32_t flags)
{
	struct vmkit_gmem_region nr = { .gpa = gpa, .len = len, .fd = -1, .flags = flags, .owned = true };
	int ret = check_range(gm, gpa, len);
	void *p;

	if (ret < 0)
		return ret;
	if (backing == VMKIT_MEMORY_MEMFD) {
		nr.fd = memfd_create("vmkit-guest-ram", MFD_CLOEXEC);
		if (nr.fd < 0)
			return vmkit__err(-errno, "memfd_create: %s", strerror(errno));
		if (ftruncate(nr.fd, (off_t)len) < 0) {
			ret = vmkit__err(-errno, "memfd size 0x%llx: %s", (unsigned long long)len,
					 strerror(errno));
			close(nr.fd);
			return ret;
		}
		p = map_guest(gpa, (size_t)len, nr.fd);
	} else if (backing == VMKIT_MEMORY_ANONYMOUS) {
		p = map_guest(gpa, (size_t)len, -1);
	} else {
		return vmkit__err(-EINVAL, "unknown memory backing %u", backing);
	}
	if (p == MAP_FAILED) {
		ret = vmkit__err(-errno, "cannot map %llu MiB of guest memory: %s",
				 (unsigned long long)(len >> 20), strerror(errno));
		if (nr.fd >= 0)
			close(nr.fd);
		return ret;
	}
	if (flags & VMKIT_MEMORY_HUGEPAGES)
		madvise(p, len, MADV_HUGEPAGE);
	else if (flags & VMKIT_MEMORY_NOHUGEPAGES)
		madvise(p, len, MADV_NOHUGEPAGE);
	if (flags & VMKIT_MEMORY_NODUMP)
		madvise(p, len, MADV_DONTDUMP);
	nr.hva = p;
	return insert(gm, &nr);
}

int vmkit__gmem_add_host(struct vmkit_gmem *gm, uint64_t gpa, uint64_t len, void *hva,
			 uint32_t flags)
{
	struct vmkit_gmem_region nr = { .gpa = gpa, .len = len, .hva = hva, .fd = -1, .flags = flags };

	if (len == 0 || gpa + len < gpa)
		return vmkit__err(-EINVAL, "bad host memory region");
	if (gm->n == VMKIT_GMEM_MAX_REGIONS)
		return vmkit__err(-ENOSPC, "too many memory regions (max %d)", VMKIT_GMEM_MAX_REGIONS);
	if (overlaps(gm, gpa, len))
		return vmkit__err(-EEXIST, "memory region 0x%llx+0x%llx overlaps another",
				  (unsigned long long)gpa, (unsigned long long)len);
	return insert(gm, &nr);
}

const struct vmkit_gmem_region *vmkit__gmem_find(const struct vmkit_gmem *gm, int id)
{
	for (unsigned i = 0; i < gm->n; i++)
		if (gm->r[i].id == id)
			return &gm->r[i];
	return NULL;
}

static void release(struct vmkit_gmem_region *r)
{
	if (r->owned)
		munmap(r->hva, r->len);
	if (r->fd >= 0)
		close(r->fd);
}

int vmkit__gmem_remove(struct vmkit_gmem *gm, int id)
{
	for (unsigned i = 0; i < gm->n; i++) {
		if (gm->r[i].id != id)
			continue;
		release(&gm->r[i]);
		memmove(&gm->r[i], &gm->r[i + 1], (gm->n - i - 1) * sizeof(gm->r[0]));
		gm->n--;
		return 0;
	}
	return vmkit__err(-ENOENT, "no memory region with id %d", id);
}

void vmkit__gmem_destroy(struct vmkit_gmem *gm)
{
	for (unsigned i = 0; i < gm->n; i++)
		release(&gm->r[i]);
	gm->n = 0;
}

static const struct vmkit_gmem_region *lookup(const struct vmkit_gmem *gm, uint64_t gpa)
{
	for (unsigned i = 0; i < gm->n; i++) {
		const struct vmkit_gmem_region *r = &gm->r[i];
		if (gpa < r->gpa)
			return NULL;
		if (gpa - r->gpa < r->len)
			return r;
	}
	return NULL;
}

/* Check that [gpa, gpa+len) is backed, possibly across adjacent regions. */
static bool backed(const struct vmkit_gmem *gm, uint64_t gpa, size_t len)
{
	if (gpa + len < gpa)
		return false;
	while (len > 0) {
		const struct vmkit_gmem_region *r = lookup(gm, gpa);
		uint64_t avail;

		if (!r)
			return false;
		avail = r->len - (gpa - r->gpa);
		if (avail >= len)
			return true;
		gpa += avail;
		len -= avail;
	}
	return true;
}

int vmkit__gmem_read(const struct vmkit_gmem *gm, uint64_t gpa, void *buf, size_t len)
{
	uint8_t *out = buf;

	if (!backed(gm, gpa, len))
		return -EFAULT;
	while (len > 0) {
		const struct vmkit_gmem_region *r = lookup(gm, gpa);
		uint64_t off = gpa - r->gpa;
		size_t n = r->len - off < len ? (size_t)(r->len - off) : len;

		memcpy(out, r->hva + off, n);
		out += n;
		gpa += n;
		len -= n;
	}
	return 0;
}

static int write_in(const struct vmkit_gmem *gm, uint64_t gpa, const void *buf, size_t len,
		    bool device)
{
	const uint8_t *in = buf;

	if (!backed(gm, gpa, len))
		return -EFAULT;
	/* A device writes no byte when any of the range is read-only. */
	for (uint64_t a = gpa, left = len; device && left;) {
		const struct vmkit_gmem_region *r = lookup(gm, a);
		uint64_t n = r->len - (a - r->gpa) < left ? r->len - (a - r->gpa) : left;

		if (r->flags & VMKIT_MEMORY_READONLY)
			return -EACCES;
		a += n;
		left -= n;
	}
	while (len > 0) {
		const struct vmkit_gmem_region *r = lookup(gm, gpa);
		uint64_t off = gpa - r->gpa;
		size_t n = r->len - off < len ? (size_t)(r->len - off) : len;

		memcpy(r->hva + off, in, n);
		in += n;
		gpa += n;
		len -= n;
	}
	return 0;
}

int vmkit__gmem_write(const struct vmkit_gmem *gm, uint64_t gpa, const void *buf, size_t len)
{
	return write_in(gm, gpa, buf, len, false);
}

int vmkit__gmem_write_dma(const struct vmkit_gmem *gm, uint64_t gpa, const void *buf, size_t len)
{
	return write_in(gm, gpa, buf, len, true);
}

void *vmkit__gmem_ptr(const struct vmkit_gmem *gm, uint64_t gpa, size_t len)
{
	const struct vmkit_gmem_region *r = lookup(gm, gpa);

	if (!r || len > r->len - (gpa - r->gpa))
		return NULL;
	return r->hva + (gpa - r->gpa);
}

void *vmkit__gmem_span(const struct vmkit_gmem *gm, uint64_t gpa, uint64_t *avail)
{
	const struct vmkit_gmem_region *r = lookup(gm, gpa);

	if (!r)
		return NULL;
	*avail = r->len - (gpa - r->gpa);
	return r->hva + (gpa - r->gpa);
}

void *vmkit__gmem_span_rw(const struct vmkit_gmem *gm, uint64_t gpa, uint64_t *avail)
{
	const struct vmkit_gmem_region *r = lookup(gm, gpa);

	if (!r || (r->flags & VMKIT_MEMORY_READONLY))
		return NULL;
	*avail = r->len - (gpa - r->gpa);
	return r->hva + (gpa - r->gpa);
}

void *vmkit__gmem_ptr_rw(const struct vmkit_gmem *gm, uint64_t gpa, size_t len)
{
	const struct vmkit_gmem_region *r = lookup(gm, gpa);

	if (!r || (r->flags & VMKIT_MEMORY_READONLY) || len > r->len - (gpa - r->gpa))
		return NULL;
	return r->hva + (gpa - r->gpa);
}

uint64_t vmkit__gmem_total(const struct vmkit_gmem *gm)
{
	uint64_t t = 0;

	for (unsigned i = 0; i < gm->n; i++)
		t += gm->r[i].len;
	return t;
}
