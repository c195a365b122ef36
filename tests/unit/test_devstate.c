/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <string.h>

#include "devices/legacy/legacy.h"

Test(devstate, crc32_check_value)
{
	cr_assert_eq(dev_crc32("123456789", 9), 0xcbf43926u);
	cr_assert_eq(dev_crc32("", 0), 0);
}

Test(devstate, round_trip_and_layout)
{
	struct dev_state_writer w;
	struct dev_state_reader r;
	struct dev_state s = { 0 };
	uint8_t bytes[3];

	dev_state_begin(&w, "TEST");
	dev_state_put_u8(&w, 0x12);
	dev_state_put_u16(&w, 0x3456);
	dev_state_put_u32(&w, 0x789abcde);
	dev_state_put_u64(&w, 0x0102030405060708ull);
	dev_state_put_bytes(&w, "abc", 3);
	cr_assert_eq(dev_state_finish(&w, 7, &s), 0);
	cr_assert_eq(s.len, 16 + 4 + 1 + 2 + 4 + 8 + 3);
	cr_assert_eq(memcmp(s.data, "VMKS", 4), 0);
	cr_assert_eq(s.data[4], 7, "version, little-endian");
	cr_assert_eq(s.data[8], s.len - 16, "payload length");
	cr_assert_eq(memcmp(s.data + 16, "TEST", 4), 0);
	cr_assert_eq(s.data[21], 0x56, "fields are little-endian");

	cr_assert_eq(dev_state_open(&r, s.data, s.len, "TEST", 7), 0);
	cr_assert_eq(dev_state_get_u8(&r), 0x12);
	cr_assert_eq(dev_state_get_u16(&r), 0x3456);
	cr_assert_eq(dev_state_get_u32(&r), 0x789abcde);
	cr_assert_eq(dev_state_get_u64(&r), 0x0102030405060708ull);
	dev_state_get_bytes(&r, bytes, 3);
	cr_assert_eq(memcmp(bytes, "abc", 3), 0);
	cr_assert_eq(dev_state_close(&r), 0);

	/* reading one field too few or too many is refused */
	cr_assert_eq(dev_state_open(&r, s.data, s.len, "TEST", 7), 0);
	dev_state_get_u8(&r);
	cr_assert_eq(dev_state_close(&r), -EINVAL);
	cr_assert_eq(dev_state_open(&r, s.data, s.len, "TEST", 7), 0);
	dev_state_get_bytes(&r, bytes, 3);
	for (int i = 0; i < 3; i++)
		dev_state_get_u64(&r);
	cr_assert_eq(dev_state_get_u64(&r), 0, "past the end reads zeros");
	cr_assert_eq(dev_state_close(&r), -EINVAL);
	cr_assert_not_null(strstr(vmkit_last_error(), "TEST"));

	cr_assert_eq(dev_state_open(&r, s.data, s.len, "TEST", 8), -EINVAL);
	cr_assert_eq(dev_state_open(&r, s.data, s.len, "UART", 7), -EINVAL);
	cr_assert_eq(dev_state_open(&r, s.data, s.len - 1, "TEST", 7), -EINVAL);
	cr_assert_eq(dev_state_open(&r, NULL, 0, "TEST", 7), -EINVAL);
	dev_state_free(&s);
	cr_assert_null(s.data);
	dev_state_free(NULL);
}

Test(devstate, oversized_payload_is_an_error)
{
	static struct dev_state_writer w;
	struct dev_state s = { 0 };
	static uint8_t big[DEV_STATE_MAX_PAYLOAD];

	dev_state_begin(&w, "TEST");
	dev_state_put_bytes(&w, big, sizeof(big));
	cr_assert_lt(dev_state_finish(&w, 1, &s), 0);
	cr_assert_null(s.data);
}

static unsigned sets;
static bool level;

static void irq_set(void *ctx, bool l)
{
	sets++;
	level = l;
}

Test(devstate, line_skips_repeats_and_pulses)
{
	struct dev_line l;
	struct dev_irq irq = { irq_set, NULL };

	dev_line_init(&l, &irq);
	dev_line_want(&l, true);
	dev_line_sync(&l);
	dev_line_sync(&l);
	cr_assert_eq(sets, 1);
	cr_assert(level);
	dev_line_pulse(&l);
	dev_line_sync(&l);
	cr_assert_eq(sets, 3, "low then high again");
	cr_assert(level);
	dev_line_want(&l, false);
	dev_line_pulse(&l);
	dev_line_sync(&l);
	cr_assert_eq(sets, 4);
	cr_assert_not(level);
	dev_line_destroy(&l);
}
