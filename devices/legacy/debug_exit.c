/* SPDX-License-Identifier: MIT */
/* QEMU's isa-debug-exit: a guest write of v asks to exit with (v << 1) | 1,
 * so that no guest write can mean "exit 0". Stateless. */
#include <stdlib.h>
#include <string.h>

#include "devices/legacy/legacy.h"

struct debug_exit {
	void (*exit_fn)(void *ctx, int status);
	void *ctx;
};

static void dbg_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	memset(data, 0xff, len);
}

static void dbg_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct debug_exit *d = opaque;
	const uint8_t *b = data;
	uint32_t v = 0;

	/* The value of the access, little-endian; a 4-byte write of v >= 2^31
	 * wraps in the int status, as it does in QEMU's exit(). */
	for (uint32_t i = 0; i < len && i < 4; i++)
		v |= (uint32_t)b[i] << (8 * i);
	if (d->exit_fn)
		d->exit_fn(d->ctx, (int)((v << 1) | 1u));
}

const vmkit_io_ops debug_exit_ops = { sizeof(vmkit_io_ops), 0, dbg_read, dbg_write };

int debug_exit_new(void (*exit_fn)(void *ctx, int status), void *ctx, struct debug_exit **res)
{
	struct debug_exit *d = calloc(1, sizeof(*d));

	if (!d)
		return vmkit__err(-ENOMEM, "out of memory for the exit port");
	d->exit_fn = exit_fn;
	d->ctx = ctx;
	*res = d;
	return 0;
}

void debug_exit_free(struct debug_exit *d)
{
	free(d);
}
