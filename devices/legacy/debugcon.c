/* SPDX-License-Identifier: MIT */
/* A debug console port, as QEMU's isa-debugcon (Bochs' port 0xe9 idea):
 * each write puts the low byte of the access on the sink; a read returns
 * the readback byte, which firmware tests before it starts logging
 * (SeaBIOS: port 0x402, 0xe9 expected). No guest-visible state, so no
 * save/restore. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "devices/legacy/legacy.h"

struct debugcon {
	struct dev_sink out;
	uint8_t readback;
	atomic_uint_fast64_t bytes;
};

static void dcon_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct debugcon *d = opaque;

	(void)offset;
	/* Every byte of a wider read is the readback byte (one 1-byte port). */
	memset(data, d->readback, len);
}

static void dcon_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct debugcon *d = opaque;
	uint8_t c;

	(void)offset;
	if (len == 0)
		return;
	/* Only the low byte of an access counts (QEMU's semantics: an outw
	 * of 'A' prints one 'A', not 'A' and a NUL). */
	c = *(const uint8_t *)data;
	atomic_fetch_add(&d->bytes, 1);
	if (d->out.write)
		d->out.write(d->out.ctx, &c, 1);
}

const vmkit_io_ops debugcon_ops = { sizeof(vmkit_io_ops), 0, dcon_read, dcon_write };

int debugcon_new(const struct dev_sink *out, uint8_t readback, struct debugcon **res)
{
	struct debugcon *d;

	if (!res)
		return vmkit__err(-EINVAL, "debugcon: NULL result pointer");
	d = calloc(1, sizeof(*d));
	if (!d)
		return vmkit__err(-ENOMEM, "out of memory for the debug console");
	if (out)
		d->out = *out;
	d->readback = readback;
	atomic_init(&d->bytes, 0);
	*res = d;
	return 0;
}

void debugcon_free(struct debugcon *d)
{
	free(d);
}

uint64_t debugcon_bytes(struct debugcon *d)
{
	return d ? (uint64_t)atomic_load(&d->bytes) : 0;
}
