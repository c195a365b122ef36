/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "devices/legacy/legacy.h"

struct capture {
	pthread_mutex_t lock;
	uint8_t buf[8192];
	size_t len;
	unsigned calls;
};

static void cap_write(void *ctx, const uint8_t *data, size_t len)
{
	struct capture *c = ctx;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < len && c->len < sizeof(c->buf); i++)
		c->buf[c->len++] = data[i];
	c->calls++;
	pthread_mutex_unlock(&c->lock);
}

static void put_str(struct debugcon *d, const char *s)
{
	for (; *s; s++)
		debugcon_ops.write(d, 0, s, 1);
}

Test(debugcon, bytes_reach_the_sink_in_order)
{
	struct capture c = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct dev_sink sink = { cap_write, &c };
	struct debugcon *d;

	cr_assert_eq(debugcon_new(&sink, DEBUGCON_READBACK, &d), 0);
	put_str(d, "SeaBIOS (version 1.16)\n");
	cr_assert_eq(c.len, 23);
	cr_assert_eq(memcmp(c.buf, "SeaBIOS (version 1.16)\n", 23), 0);
	cr_assert_eq(debugcon_bytes(d), 23);
	/* every byte value passes unchanged, NUL and 0xff included */
	uint8_t b = 0;
	debugcon_ops.write(d, 0, &b, 1);
	b = 0xff;
	debugcon_ops.write(d, 0, &b, 1);
	cr_assert_eq(c.len, 25);
	cr_assert_eq(c.buf[23], 0);
	cr_assert_eq(c.buf[24], 0xff);
	debugcon_free(d);
	debugcon_free(NULL);
}

Test(debugcon, wide_writes_put_the_low_byte_only)
{
	struct capture c = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct dev_sink sink = { cap_write, &c };
	struct debugcon *d;
	uint16_t w = 0x4241; /* 'A', then 'B' in the high byte */
	uint32_t l = 0x44434241;

	cr_assert_eq(debugcon_new(&sink, DEBUGCON_READBACK, &d), 0);
	debugcon_ops.write(d, 0, &w, 2);
	debugcon_ops.write(d, 0, &l, 4);
	cr_assert_eq(c.len, 2, "one byte per access, as QEMU's debugcon");
	cr_assert_eq(c.buf[0], 'A');
	cr_assert_eq(c.buf[1], 'A');
	/* a zero-length access is ignored */
	debugcon_ops.write(d, 0, &l, 0);
	cr_assert_eq(c.len, 2);
	cr_assert_eq(debugcon_bytes(d), 2);
	debugcon_free(d);
}

Test(debugcon, reads_return_the_readback_byte)
{
	struct debugcon *d;
	uint8_t b = 0;
	uint32_t l = 0;

	/* SeaBIOS logs to port 0x402 only when an inb there reads 0xe9 */
	cr_assert_eq(debugcon_new(NULL, DEBUGCON_READBACK, &d), 0);
	debugcon_ops.read(d, 0, &b, 1);
	cr_assert_eq(b, 0xe9);
	debugcon_ops.read(d, 0, &l, 4);
	cr_assert_eq(l, 0xe9e9e9e9u);
	debugcon_free(d);

	cr_assert_eq(debugcon_new(NULL, 0x5a, &d), 0);
	debugcon_ops.read(d, 0, &b, 1);
	cr_assert_eq(b, 0x5a, "the readback byte is configurable");
	/* no sink: writes are dropped but counted, and do not crash */
	b = 'x';
	debugcon_ops.write(d, 0, &b, 1);
	cr_assert_eq(debugcon_bytes(d), 1);
	debugcon_free(d);
}

Test(debugcon, rejects_null_result)
{
	cr_assert_eq(debugcon_new(NULL, DEBUGCON_READBACK, NULL), -EINVAL);
	cr_assert_str_neq(vmkit_last_error(), "");
}

struct writer_arg {
	struct debugcon *d;
	char ch;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;

	for (int i = 0; i < 1000; i++)
		debugcon_ops.write(a->d, 0, &a->ch, 1);
	return NULL;
}

Test(debugcon, concurrent_writers_lose_no_byte)
{
	struct capture c = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct dev_sink sink = { cap_write, &c };
	struct debugcon *d;
	pthread_t t[4];
	struct writer_arg a[4];
	size_t count[4] = { 0 };

	cr_assert_eq(debugcon_new(&sink, DEBUGCON_READBACK, &d), 0);
	for (int i = 0; i < 4; i++) {
		a[i] = (struct writer_arg){ d, (char)('a' + i) };
		cr_assert_eq(pthread_create(&t[i], NULL, writer, &a[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(c.len, 4000);
	cr_assert_eq(debugcon_bytes(d), 4000);
	for (size_t i = 0; i < c.len; i++) {
		cr_assert(c.buf[i] >= 'a' && c.buf[i] <= 'd');
		count[c.buf[i] - 'a']++;
	}
	for (int i = 0; i < 4; i++)
		cr_assert_eq(count[i], 1000);
	debugcon_free(d);
}
