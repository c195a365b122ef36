/* SPDX-License-Identifier: MIT */
/* MC146818 CMOS RTC. The date and time are never stored: they are the
 * host's UTC clock plus an offset in seconds, which the guest changes by
 * writing the time registers (directly, or while register B's SET bit
 * holds the clock, applied when SET is cleared). An update is never in
 * progress (register A's UIP reads 0) and no interrupts are generated. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/legacy/legacy.h"

enum {
	R_SEC = 0x00, R_SEC_ALARM = 0x01, R_MIN = 0x02, R_MIN_ALARM = 0x03,
	R_HOUR = 0x04, R_HOUR_ALARM = 0x05, R_WDAY = 0x06, R_MDAY = 0x07,
	R_MONTH = 0x08, R_YEAR = 0x09, R_A = 0x0a, R_B = 0x0b, R_C = 0x0c,
	R_D = 0x0d, R_CENTURY = 0x32,
};

#define A_UIP   0x80
#define B_SET   0x80
#define B_DM    0x04 /* binary, not BCD */
#define B_24H   0x02
#define D_VRT   0x80 /* RAM and time valid */
#define HOUR_PM 0x80

#define A_DEFAULT 0x26 /* 32.768 kHz time base, 1024 Hz rate */
#define B_DEFAULT B_24H
#define STATE_VERSION 1u

/* A broken-down date and time, with the full year. */
struct rtc_tm {
	int64_t year;
	int mon, mday, hour, min, sec; /* mon 1..12 */
};

struct rtc {
	pthread_mutex_t lock;
	struct dev_line line; /* kept for the interface; never raised */
	uint8_t index;
	uint8_t cmos[128];    /* alarms, A, B and NVRAM; time registers unused */
	int64_t offset;       /* guest time minus host time, seconds */
	bool held;            /* register B SET: the time below is frozen */
	struct rtc_tm set_tm;
};

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, struct rtc_tm *tm)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	tm->mday = (int)(doy - (153 * mp + 2) / 5 + 1);
	tm->mon = (int)(mp < 10 ? mp + 3 : mp - 9);
	tm->year = yoe + era * 400 + (tm->mon <= 2);
}

static int64_t tm_to_secs(const struct rtc_tm *tm)
{
	return days_from_civil(tm->year, tm->mon, tm->mday) * 86400 +
	       tm->hour * 3600 + tm->min * 60 + tm->sec;
}

static void secs_to_tm(int64_t t, struct rtc_tm *tm)
{
	int64_t days = t / 86400, rem = t % 86400;

	if (rem < 0) {
		rem += 86400;
		days--;
	}
	civil_from_days(days, tm);
	tm->hour = (int)(rem / 3600);
	tm->min = (int)(rem / 60 % 60);
	tm->sec = (int)(rem % 60);
}

static int64_t host_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

/* The guest's idea of now. Offsets are kept within +-10000 years, so
 * nothing here can overflow. */
static void guest_tm(const struct rtc *r, struct rtc_tm *tm)
{
	if (r->held)
		*tm = r->set_tm;
	else
		secs_to_tm(host_now() + r->offset, tm);
}

#define MAX_OFFSET (10000ll * 366 * 86400)
#define MAX_YEAR 100000

/* Make @tm the guest's now. Out-of-range fields (month 13, hour 25) roll
 * over as with mktime; the offset is clamped. */
static void set_guest_time(struct rtc *r, struct rtc_tm tm)
{
	int64_t off;

	if (tm.mon < 1 || tm.mon > 12) {
		int m0 = tm.mon - 1;
		tm.year += m0 / 12 - (m0 % 12 < 0);
		tm.mon = (m0 % 12 + 12) % 12 + 1;
	}
	off = tm_to_secs(&tm) - host_now();
	if (off > MAX_OFFSET)
		off = MAX_OFFSET;
	if (off < -MAX_OFFSET)
		off = -MAX_OFFSET;
	r->offset = off;
}

static uint8_t encode(const struct rtc *r, int v)
{
	if (r->cmos[R_B] & B_DM)
		return (uint8_t)v;
	return (uint8_t)(((v / 10) % 10) << 4 | (v % 10));
}

/* Guest-written digits: BCD is taken digit by digit, whatever they are
 * (0x5f decodes as 65); the result only ever feeds the date arithmetic. */
static int decode(const struct rtc *r, uint8_t v)
{
	if (r->cmos[R_B] & B_DM)
		return v;
	return (v >> 4) * 10 + (v & 0x0f);
}

static uint8_t encode_hour(const struct rtc *r, int h)
{
	int h12;

	if (r->cmos[R_B] & B_24H)
		return encode(r, h);
	h12 = h % 12 == 0 ? 12 : h % 12;
	return encode(r, h12) | (h >= 12 ? HOUR_PM : 0);
}

static int decode_hour(const struct rtc *r, uint8_t v)
{
	int h;

	if (r->cmos[R_B] & B_24H)
		return decode(r, v);
	h = decode(r, v & 0x7f) % 12;
	return (v & HOUR_PM) ? h + 12 : h;
}

static uint8_t read_reg(struct rtc *r, uint8_t idx)
{
	struct rtc_tm tm;
	int64_t days;

	switch (idx) {
	case R_SEC: case R_MIN: case R_HOUR: case R_WDAY: case R_MDAY: case R_MONTH:
	case R_YEAR: case R_CENTURY:
		break;
	case R_A:
		return r->cmos[R_A] & ~A_UIP;
	case R_C:
		return 0; /* no interrupt flags, ever */
	case R_D:
		return D_VRT;
	default:
		return r->cmos[idx];
	}
	guest_tm(r, &tm);
	switch (idx) {
	case R_SEC:
		return encode(r, tm.sec);
	case R_MIN:
		return encode(r, tm.min);
	case R_HOUR:
		return encode_hour(r, tm.hour);
	case R_WDAY: /* 1 = Sunday; 1970-01-01 was a Thursday */
		days = days_from_civil(tm.year, tm.mon, tm.mday);
		return encode(r, (int)(((days + 4) % 7 + 7) % 7) + 1);
	case R_MDAY:
		return encode(r, tm.mday);
	case R_MONTH:
		return encode(r, tm.mon);
	case R_YEAR:
		return encode(r, (int)(((tm.year % 100) + 100) % 100));
	default: /* R_CENTURY */
		return encode(r, (int)(((tm.year / 100) % 100 + 100) % 100));
	}
}

static void write_time(struct rtc *r, uint8_t idx, uint8_t v)
{
	struct rtc_tm tm;

	guest_tm(r, &tm);
	switch (idx) {
	case R_SEC:
		tm.sec = decode(r, v);
		break;
	case R_MIN:
		tm.min = decode(r, v);
		break;
	case R_HOUR:
		tm.hour = decode_hour(r, v);
		break;
	case R_MDAY:
		tm.mday = decode(r, v);
		break;
	case R_MONTH:
		tm.mon = decode(r, v);
		break;
	case R_YEAR:
		tm.year = tm.year - ((tm.year % 100) + 100) % 100 + decode(r, v);
		break;
	case R_CENTURY:
		tm.year = (int64_t)decode(r, v) * 100 + ((tm.year % 100) + 100) % 100;
		break;
	default: /* day of week follows from the date */
		return;
	}
	if (r->held)
		r->set_tm = tm;
	else
		set_guest_time(r, tm);
}

static void write_b(struct rtc *r, uint8_t v)
{
	bool was = r->held;

	if ((v & B_SET) && !was) {
		guest_tm(r, &r->set_tm);
		r->held = true;
	}
	r->cmos[R_B] = v;
	if (!(v & B_SET) && was) {
		r->held = false;
		set_guest_time(r, r->set_tm);
	}
}

static void write_reg(struct rtc *r, uint8_t idx, uint8_t v)
{
	switch (idx) {
	case R_SEC: case R_MIN: case R_HOUR: case R_WDAY: case R_MDAY: case R_MONTH:
	case R_YEAR: case R_CENTURY:
		write_time(r, idx, v);
		break;
	case R_A:
		r->cmos[R_A] = v & ~A_UIP;
		break;
	case R_B:
		write_b(r, v);
		break;
	case R_C: case R_D: /* read-only */
		break;
	default:
		r->cmos[idx] = v;
		break;
	}
}

static void rtc_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct rtc *r = opaque;
	uint8_t v = 0xff; /* the index port is write-only */

	memset(data, 0xff, len);
	if (offset == 1) {
		pthread_mutex_lock(&r->lock);
		v = read_reg(r, r->index);
		pthread_mutex_unlock(&r->lock);
	}
	((uint8_t *)data)[0] = v;
}

static void rtc_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct rtc *r = opaque;
	uint8_t v = ((const uint8_t *)data)[0];

	pthread_mutex_lock(&r->lock);
	if (offset == 0)
		r->index = v & 0x7f; /* bit 7 masks NMIs on a PC: ignored */
	else if (offset == 1)
		write_reg(r, r->index, v);
	pthread_mutex_unlock(&r->lock);
}

const vmkit_io_ops rtc_ops = { sizeof(vmkit_io_ops), 0, rtc_read, rtc_write };

int rtc_new(const struct dev_irq *irq, struct rtc **res)
{
	struct rtc *r = calloc(1, sizeof(*r));

	if (!r)
		return vmkit__err(-ENOMEM, "out of memory for the RTC");
	pthread_mutex_init(&r->lock, NULL);
	dev_line_init(&r->line, irq);
	r->cmos[R_A] = A_DEFAULT;
	r->cmos[R_B] = B_DEFAULT;
	*res = r;
	return 0;
}

void rtc_free(struct rtc *r)
{
	if (!r)
		return;
	dev_line_destroy(&r->line);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void rtc_set_nvram(struct rtc *r, uint8_t index, uint8_t value)
{
	/* Only NVRAM: the clock and status registers are not the machine's to
	 * set, and 0x32 is the century of the clock. */
	if (index < 0x0e || index > 0x7f || index == R_CENTURY)
		return;
	pthread_mutex_lock(&r->lock);
	r->cmos[index] = value;
	pthread_mutex_unlock(&r->lock);
}

int rtc_save(struct rtc *r, struct dev_state *out)
{
	struct dev_state_writer w;

	dev_state_begin(&w, "CMOS");
	pthread_mutex_lock(&r->lock);
	dev_state_put_u8(&w, r->index);
	dev_state_put_bytes(&w, r->cmos, sizeof(r->cmos));
	dev_state_put_u64(&w, (uint64_t)r->offset);
	dev_state_put_u8(&w, r->held);
	dev_state_put_u64(&w, (uint64_t)r->set_tm.year);
	dev_state_put_u8(&w, (uint8_t)r->set_tm.mon);
	dev_state_put_u8(&w, (uint8_t)r->set_tm.mday);
	dev_state_put_u8(&w, (uint8_t)r->set_tm.hour);
	dev_state_put_u8(&w, (uint8_t)r->set_tm.min);
	dev_state_put_u8(&w, (uint8_t)r->set_tm.sec);
	pthread_mutex_unlock(&r->lock);
	return dev_state_finish(&w, STATE_VERSION, out);
}

int rtc_restore(struct rtc *r, const uint8_t *data, size_t len)
{
	struct dev_state_reader rd;
	uint8_t index, held, cmos[128];
	int64_t offset;
	struct rtc_tm tm;
	int ret;

	if ((ret = dev_state_open(&rd, data, len, "CMOS", STATE_VERSION)) < 0)
		return ret;
	index = dev_state_get_u8(&rd);
	dev_state_get_bytes(&rd, cmos, sizeof(cmos));
	offset = (int64_t)dev_state_get_u64(&rd);
	held = dev_state_get_u8(&rd);
	tm.year = (int64_t)dev_state_get_u64(&rd);
	tm.mon = dev_state_get_u8(&rd);
	tm.mday = dev_state_get_u8(&rd);
	tm.hour = dev_state_get_u8(&rd);
	tm.min = dev_state_get_u8(&rd);
	tm.sec = dev_state_get_u8(&rd);
	if ((ret = dev_state_close(&rd)) < 0)
		return ret;
	if (index > 0x7f || held > 1 || offset > MAX_OFFSET || offset < -MAX_OFFSET ||
	    tm.year < -MAX_YEAR || tm.year > MAX_YEAR || (cmos[R_A] & A_UIP) ||
	    (bool)(cmos[R_B] & B_SET) != (bool)held)
		return vmkit__err(-EINVAL, "CMOS state: values out of range");

	pthread_mutex_lock(&r->lock);
	r->index = index;
	memcpy(r->cmos, cmos, sizeof(cmos));
	r->offset = offset;
	r->held = held;
	r->set_tm = tm;
	pthread_mutex_unlock(&r->lock);
	return 0;
}
