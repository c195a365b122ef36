/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <string.h>

#include "devices/legacy/legacy.h"

static int last = -1;
static unsigned calls;

static void on_exit_port(void *ctx, int status)
{
	cr_assert_eq(ctx, &calls);
	last = status;
	calls++;
}

Test(debug_exit, status_is_value_shifted_with_low_bit_set)
{
	struct debug_exit *d;
	uint8_t b;
	uint16_t w;
	uint32_t l;

	cr_assert_eq(debug_exit_new(on_exit_port, &calls, &d), 0);
	b = 0;
	debug_exit_ops.write(d, 0, &b, 1);
	cr_assert_eq(last, 1);
	b = 0xff;
	debug_exit_ops.write(d, 0, &b, 1);
	cr_assert_eq(last, 0x1ff, "the whole byte counts");
	w = 0x1234;
	debug_exit_ops.write(d, 0, &w, 2);
	cr_assert_eq(last, 0x2469);
	l = 0x00112233;
	debug_exit_ops.write(d, 0, &l, 4);
	cr_assert_eq(last, 0x00224467);
	cr_assert_eq(calls, 4);

	l = 0;
	debug_exit_ops.read(d, 0, &l, 4);
	cr_assert_eq(l, 0xffffffffu);
	cr_assert_eq(calls, 4, "reads do not exit");
	debug_exit_free(d);
	debug_exit_free(NULL);
}
