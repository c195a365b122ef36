/* SPDX-License-Identifier: MIT */
/* PIO and MMIO address spaces: sorted, non-overlapping ranges, dispatched
 * from vCPU exits under a read lock. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void vmkit__bus_init(struct vmkit_bus *bus)
{
	memset(bus, 0, sizeof(*bus));
	pthread_rwlock_init(&bus->lock, NULL);
}

void vmkit__bus_destroy(struct vmkit_bus *bus)
{
	free(bus->r);
	bus->r = NULL;
	bus->n = bus->cap = 0;
	pthread_rwlock_destroy(&bus->lock);
}

int vmkit__bus_register(struct vmkit_bus *bus, uint64_t base, uint64_t len,
			const vmkit_io_ops *ops, void *opaque)
{
	size_t i;
	int ret = 0;

	if (!ops || ops->size < sizeof(vmkit_io_ops) || len == 0 ||
	    base + len < base)
		return vmkit__err(-EINVAL, "invalid I/O range 0x%llx+0x%llx or ops",
				  (unsigned long long)base, (unsigned long long)len);
	pthread_rwlock_wrlock(&bus->lock);
	for (i = 0; i < bus->n; i++) {
		const struct vmkit_bus_range *r = &bus->r[i];
		if (base < r->base + r->len && r->base < base + len) {
			ret = vmkit__err(-EEXIST, "I/O range 0x%llx+0x%llx overlaps 0x%llx+0x%llx",
					 (unsigned long long)base, (unsigned long long)len,
					 (unsigned long long)r->base, (unsigned long long)r->len);
			goto out;
		}
		if (r->base > base)
			break;
	}
	if (bus->n == bus->cap) {
		size_t cap = bus->cap ? bus->cap * 2 : 16;
		struct vmkit_bus_range *nr = realloc(bus->r, cap * sizeof(*nr));
		if (!nr) {
			ret = vmkit__err(-ENOMEM, "out of memory");
			goto out;
		}
		bus->r = nr;
		bus->cap = cap;
	}
	memmove(&bus->r[i + 1], &bus->r[i], (bus->n - i) * sizeof(bus->r[0]));
	bus->r[i] = (struct vmkit_bus_range){ base, len, ops, opaque };
	bus->n++;
out:
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

int vmkit__bus_unregister(struct vmkit_bus *bus, uint64_t base)
{
	int ret = vmkit__err(-ENOENT, "no I/O range at 0x%llx", (unsigned long long)base);

	pthread_rwlock_wrlock(&bus->lock);
	for (size_t i = 0; i < bus->n; i++) {
		if (bus->r[i].base != base)
			continue;
		memmove(&bus->r[i], &bus->r[i + 1], (bus->n - i - 1) * sizeof(bus->r[0]));
		bus->n--;
		ret = 0;
		vmkit__clear_error();
		break;
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

static const struct vmkit_bus_range *find(const struct vmkit_bus *bus, uint64_t addr)
{
	size_t lo = 0, hi = bus->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct vmkit_bus_range *r = &bus->r[mid];
		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

/* An access must lie wholly inside the range: a device is never handed an
 * offset + len beyond its size. Straddling accesses go byte by byte. */
static bool access_one(struct vmkit_bus *bus, uint64_t addr, uint8_t *data, uint32_t len,
		       bool write)
{
	const struct vmkit_bus_range *r = find(bus, addr);
	uint64_t off;

	if (!r)
		return false;
	off = addr - r->base;
	if (len > r->len - off) {
		bool any = false;
		for (uint32_t i = 0; i < len; i++)
			any |= access_one(bus, addr + i, data + i, 1, write);
		return any;
	}
	if (write) {
		if (r->ops->write)
			r->ops->write(r->opaque, off, data, len);
	} else if (r->ops->read) {
		r->ops->read(r->opaque, off, data, len);
	}
	return true;
}

/* Reads start as all ones: what a handler (or a NULL one) leaves
 * untouched, and the bytes of a straddling access that no range claims,
 * read as an open bus does (vmkit_io_ops promises this). */
bool vmkit__bus_read(struct vmkit_bus *bus, uint64_t addr, void *data, uint32_t len)
{
	bool ok;

	memset(data, 0xff, len);
	pthread_rwlock_rdlock(&bus->lock);
	ok = access_one(bus, addr, data, len, false);
	pthread_rwlock_unlock(&bus->lock);
	return ok;
}

bool vmkit__bus_write(struct vmkit_bus *bus, uint64_t addr, const void *data, uint32_t len)
{
	bool ok;

	pthread_rwlock_rdlock(&bus->lock);
	ok = access_one(bus, addr, (uint8_t *)data, len, true);
	pthread_rwlock_unlock(&bus->lock);
	return ok;
}
