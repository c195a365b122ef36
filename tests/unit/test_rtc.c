/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "devices/legacy/legacy.h"

static struct rtc *r;

static void setup(void)
{
	cr_assert_eq(rtc_new(NULL, &r), 0);
}

static void teardown(void)
{
	rtc_free(r);
}

TestSuite(rtc, .init = setup, .fini = teardown);

static uint8_t rd(uint8_t idx)
{
	uint8_t v = 0;
	rtc_ops.write(r, 0, &idx, 1);
	rtc_ops.read(r, 1, &v, 1);
	return v;
}

static void wr(uint8_t idx, uint8_t v)
{
	rtc_ops.write(r, 0, &idx, 1);
	rtc_ops.write(r, 1, &v, 1);
}

static int bcd(uint8_t v)
{
	cr_assert_leq(v & 0x0f, 9, "BCD digit in 0x%02x", v);
	cr_assert_leq(v >> 4, 9, "BCD digit in 0x%02x", v);
	return (v >> 4) * 10 + (v & 0x0f);
}

/* The guest's clock as seconds since the epoch, read the way Linux does
 * (binary or BCD per register B, 24-hour mode). */
static time_t guest_time(bool binary)
{
	struct tm tm = { 0 };
	uint8_t sec;

	for (;;) {
		sec = rd(0x00);
		tm.tm_min = rd(0x02);
		tm.tm_hour = rd(0x04);
		tm.tm_mday = rd(0x07);
		tm.tm_mon = rd(0x08);
		tm.tm_year = rd(0x09);
		int cent = rd(0x32);
		if (rd(0x00) != sec)
			continue; /* a second ticked: read again */
		if (!binary) {
			sec = (uint8_t)bcd(sec);
			tm.tm_min = bcd((uint8_t)tm.tm_min);
			tm.tm_hour = bcd((uint8_t)tm.tm_hour);
			tm.tm_mday = bcd((uint8_t)tm.tm_mday);
			tm.tm_mon = bcd((uint8_t)tm.tm_mon);
			tm.tm_year = bcd((uint8_t)tm.tm_year);
			cent = bcd((uint8_t)cent);
		}
		tm.tm_sec = sec;
		tm.tm_mon -= 1;
		tm.tm_year += cent * 100 - 1900;
		break;
	}
	return timegm(&tm);
}

Test(rtc, defaults)
{
	cr_assert_eq(rd(0x0b), 0x02, "24 h, BCD");
	cr_assert_eq(rd(0x0a) & 0x80, 0, "never update-in-progress");
	cr_assert_eq(rd(0x0d), 0x80, "valid RAM and time");
	cr_assert_eq(rd(0x0c), 0);
}

Test(rtc, bcd_time_matches_host)
{
	time_t now = time(NULL);
	time_t g = guest_time(false);

	cr_assert_leq(llabs((long long)(g - now)), 2, "guest %lld host %lld", (long long)g,
		      (long long)now);
}

Test(rtc, binary_time_matches_host)
{
	wr(0x0b, 0x06);
	time_t now = time(NULL);
	time_t g = guest_time(true);

	cr_assert_leq(llabs((long long)(g - now)), 2);
}

Test(rtc, day_of_week)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	uint8_t wday = rd(0x06);
	if (rd(0x04) == 0 && rd(0x02) == 0 && rd(0x00) == 0)
		return; /* midnight between the reads: nothing to compare */
	cr_assert_eq(wday, tm.tm_wday + 1);
}

Test(rtc, twelve_hour_mode)
{
	wr(0x0b, 0x82); /* hold the clock, BCD, 24 h */
	wr(0x04, 0x23);
	wr(0x0b, 0x80); /* 12 h */
	cr_assert_eq(rd(0x04), 0x80 | 0x11, "23 h is 11 PM");
	wr(0x04, 0x12); /* 12 AM */
	wr(0x0b, 0x82);
	cr_assert_eq(rd(0x04), 0x00, "12 AM is 0 h");
	wr(0x0b, 0x80);
	wr(0x04, 0x80 | 0x12); /* 12 PM */
	wr(0x0b, 0x86); /* binary, 24 h */
	cr_assert_eq(rd(0x04), 12);
}

Test(rtc, writing_time_sets_an_offset)
{
	time_t before = guest_time(false);

	wr(0x09, 0x35); /* year 2035 in this century */
	cr_assert_eq(rd(0x09), 0x35);
	time_t after = guest_time(false);
	struct tm a, b;
	gmtime_r(&before, &b);
	gmtime_r(&after, &a);
	cr_assert_eq(a.tm_year, 2035 - 1900);
	cr_assert_eq(a.tm_mon, b.tm_mon);
	cr_assert_eq(a.tm_min, b.tm_min);
	cr_assert_eq(rd(0x32), 0x20);
	/* the clock keeps running from there */
	cr_assert_eq(rd(0x09), 0x35);
}

Test(rtc, set_bit_holds_the_clock)
{
	wr(0x0b, 0x82); /* SET, BCD, 24 h */
	wr(0x00, 0x30);
	wr(0x02, 0x45);
	wr(0x04, 0x23);
	wr(0x07, 0x31);
	wr(0x08, 0x12);
	wr(0x09, 0x99);
	wr(0x32, 0x19);
	cr_assert_eq(rd(0x00), 0x30, "held while SET");
	wr(0x0b, 0x02);
	time_t g = guest_time(false);
	struct tm tm = { .tm_sec = 30, .tm_min = 45, .tm_hour = 23, .tm_mday = 31,
			 .tm_mon = 11, .tm_year = 99 };
	time_t want = timegm(&tm);
	cr_assert_leq(llabs((long long)(g - want)), 2, "got %lld", (long long)g);
	cr_assert_eq(rd(0x06), 6, "1999-12-31 was a Friday");
}

Test(rtc, nvram_round_trip_and_index_mask)
{
	for (unsigned i = 0x0e; i < 0x80; i++) {
		if (i == 0x32)
			continue;
		wr((uint8_t)i, (uint8_t)(i ^ 0xa5));
	}
	for (unsigned i = 0x0e; i < 0x80; i++) {
		if (i == 0x32)
			continue;
		cr_assert_eq(rd((uint8_t)i), (uint8_t)(i ^ 0xa5), "index 0x%x", i);
	}
	/* bit 7 of the index is the NMI mask */
	cr_assert_eq(rd(0x80 | 0x40), 0x40 ^ 0xa5);
	rtc_set_nvram(r, 0x34, 0x12);
	cr_assert_eq(rd(0x34), 0x12);
	rtc_set_nvram(r, 0x00, 0x12); /* not NVRAM: ignored */
	uint8_t v = 0;
	rtc_ops.read(r, 0, &v, 1);
	cr_assert_eq(v, 0xff, "the index port is write-only");
	wr(0x0d, 0x00);
	cr_assert_eq(rd(0x0d), 0x80, "register D is read-only");
}

Test(rtc, save_restore_and_bad_blobs)
{
	struct dev_state s = { 0 }, before = { 0 }, after = { 0 };
	struct rtc *r2;
	uint8_t buf[512];

	wr(0x40, 0x99);
	wr(0x09, 0x50);
	wr(0x0b, 0x06);
	cr_assert_eq(rtc_save(r, &s), 0);
	cr_assert_eq(rtc_new(NULL, &r2), 0);
	cr_assert_eq(rtc_restore(r2, s.data, s.len), 0);
	rtc_free(r);
	r = r2;
	cr_assert_eq(rd(0x40), 0x99);
	cr_assert_eq(rd(0x0b), 0x06);
	cr_assert_eq(rd(0x09), 50, "offset restored (binary now)");

	cr_assert_eq(rtc_save(r, &before), 0);
	cr_assert_leq(s.len, sizeof(buf));
	for (size_t l = 0; l < s.len; l += 11)
		cr_assert_eq(rtc_restore(r, s.data, l), -EINVAL);
	for (size_t i = 0; i < s.len; i++) {
		memcpy(buf, s.data, s.len);
		buf[i] ^= 0x80;
		cr_assert_eq(rtc_restore(r, buf, s.len), -EINVAL, "byte %zu", i);
	}
	cr_assert_eq(rtc_save(r, &after), 0);
	cr_assert_eq(memcmp(before.data, after.data, before.len), 0);
	dev_state_free(&s);
	dev_state_free(&before);
	dev_state_free(&after);
}
