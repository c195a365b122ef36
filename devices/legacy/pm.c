/* SPDX-License-Identifier: MIT */
/* ACPI fixed-hardware PM block (PM1a event and control), the 0xcf9 reset
 * register and the pvpanic port. Sleep states other than S5 (soft off) are
 * not supported: their SLP_EN writes are ignored. */
#include <stdlib.h>
#include <string.h>

#include "devices/legacy/legacy.h"

/* Register offsets in the PM block: PM1a_STS, PM1a_EN, PM1a_CNT. */
#define PM1_STS 0
#define PM1_EN  2
#define PM1_CNT 4
#define PM_LEN  8

#define STS_PWRBTN 0x0100
#define CNT_SCI_EN 0x0001
#define CNT_SLP_TYP_SHIFT 10
#define CNT_SLP_TYP_MASK (7u << CNT_SLP_TYP_SHIFT)
#define CNT_SLP_EN 0x2000 /* write-only */
#define SLP_TYP_S5 5

#define RCR_SYS_RST 0x02
#define RCR_RST_CPU 0x04 /* self-clearing: the write starts the reset */
#define RCR_FULL_RST 0x08

#define PVPANIC_PANICKED 0x01
#define PVPANIC_CRASH_LOADED 0x02

#define STATE_VERSION 1u

struct pm {
	pthread_mutex_t lock;
	struct dev_line sci;
	struct pm_callbacks cb;
	uint16_t sts, en, cnt;
	uint8_t rcr; /* reset control register */
};

static void update_sci(struct pm *p)
{
	dev_line_want(&p->sci, (p->sts & p->en) != 0);
}

static uint8_t reg_byte(const struct pm *p, unsigned off)
{
	unsigned shift = 8 * (off & 1);

	switch (off & ~1u) {
	case PM1_STS:
		return (uint8_t)(p->sts >> shift);
	case PM1_EN:
		return (uint8_t)(p->en >> shift);
	case PM1_CNT:
		return (uint8_t)(p->cnt >> shift);
	default:
		return 0;
	}
}

static void set_half(uint16_t *r, unsigned off, uint8_t v)
{
	unsigned shift = 8 * (off & 1);

	*r = (uint16_t)((*r & ~(0xffu << shift)) | (unsigned)v << shift);
}

static void pm_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct pm *p = opaque;
	uint8_t *d = data;

	pthread_mutex_lock(&p->lock);
	for (uint32_t i = 0; i < len; i++)
		d[i] = offset + i < PM_LEN ? reg_byte(p, (unsigned)(offset + i)) : 0xff;
	pthread_mutex_unlock(&p->lock);
}

static void pm_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct pm *p = opaque;
	const uint8_t *d = data;
	bool off = false;

	pthread_mutex_lock(&p->lock);
	for (uint32_t i = 0; i < len && offset + i < PM_LEN; i++) {
		unsigned o = (unsigned)(offset + i);
		switch (o & ~1u) {
		case PM1_STS: /* write 1 to clear */
			p->sts &= (uint16_t)~((unsigned)d[i] << (8 * (o & 1)));
			break;
		case PM1_EN:
			set_half(&p->en, o, d[i]);
			break;
		case PM1_CNT:
			set_half(&p->cnt, o, d[i]);
			break;
		default:
			break;
		}
	}
	if (p->cnt & CNT_SLP_EN) {
		p->cnt &= (uint16_t)~CNT_SLP_EN;
		off = ((p->cnt & CNT_SLP_TYP_MASK) >> CNT_SLP_TYP_SHIFT) == SLP_TYP_S5;
	}
	update_sci(p);
	pthread_mutex_unlock(&p->lock);
	dev_line_sync(&p->sci);
	if (off && p->cb.poweroff)
		p->cb.poweroff(p->cb.ctx);
}

const vmkit_io_ops pm_ops = { sizeof(vmkit_io_ops), 0, pm_read, pm_write };

static void reset_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct pm *p = opaque;

	memset(data, 0xff, len);
	pthread_mutex_lock(&p->lock);
	((uint8_t *)data)[0] = p->rcr;
	pthread_mutex_unlock(&p->lock);
}

/* Linux writes the ACPI RESET_VALUE (0x06) here, or for reboot=pci first
 * SYS_RST alone (0x02) and then 0x06/0x0e: RST_CPU starts the reset. */
static void reset_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct pm *p = opaque;
	uint8_t v = ((const uint8_t *)data)[0];

	pthread_mutex_lock(&p->lock);
	p->rcr = v & (RCR_SYS_RST | RCR_FULL_RST);
	pthread_mutex_unlock(&p->lock);
	if ((v & RCR_RST_CPU) && p->cb.reset)
		p->cb.reset(p->cb.ctx);
}

const vmkit_io_ops pm_reset_ops = { sizeof(vmkit_io_ops), 0, reset_read, reset_write };

static void pvpanic_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	memset(data, 0xff, len);
	((uint8_t *)data)[0] = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
}

/* Bit 1 (a crash kernel was loaded and takes over) needs no action. */
static void pvpanic_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct pm *p = opaque;

	if ((((const uint8_t *)data)[0] & PVPANIC_PANICKED) && p->cb.panic)
		p->cb.panic(p->cb.ctx);
}

const vmkit_io_ops pvpanic_ops = { sizeof(vmkit_io_ops), 0, pvpanic_read, pvpanic_write };

int pm_new(const struct dev_irq *sci, const struct pm_callbacks *cb, struct pm **res)
{
	struct pm *p = calloc(1, sizeof(*p));

	if (!p)
		return vmkit__err(-ENOMEM, "out of memory for the PM block");
	pthread_mutex_init(&p->lock, NULL);
	dev_line_init(&p->sci, sci);
	if (cb)
		p->cb = *cb;
	/* No SMI_CMD in the FADT: the machine is always in ACPI mode. */
	p->cnt = CNT_SCI_EN;
	*res = p;
	return 0;
}

void pm_free(struct pm *p)
{
	if (!p)
		return;
	dev_line_destroy(&p->sci);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

void pm_press_power_button(struct pm *p)
{
	pthread_mutex_lock(&p->lock);
	p->sts |= STS_PWRBTN;
	update_sci(p);
	pthread_mutex_unlock(&p->lock);
	dev_line_sync(&p->sci);
}

int pm_save(struct pm *p, struct dev_state *out)
{
	struct dev_state_writer w;

	dev_state_begin(&w, "PM1A");
	pthread_mutex_lock(&p->lock);
	dev_state_put_u16(&w, p->sts);
	dev_state_put_u16(&w, p->en);
	dev_state_put_u16(&w, p->cnt);
	dev_state_put_u8(&w, p->rcr);
	pthread_mutex_unlock(&p->lock);
	return dev_state_finish(&w, STATE_VERSION, out);
}

int pm_restore(struct pm *p, const uint8_t *data, size_t len)
{
	struct dev_state_reader r;
	uint16_t sts, en, cnt;
	uint8_t rcr;
	int ret;

	if ((ret = dev_state_open(&r, data, len, "PM1A", STATE_VERSION)) < 0)
		return ret;
	sts = dev_state_get_u16(&r);
	en = dev_state_get_u16(&r);
	cnt = dev_state_get_u16(&r);
	rcr = dev_state_get_u8(&r);
	if ((ret = dev_state_close(&r)) < 0)
		return ret;
	if ((cnt & CNT_SLP_EN) || (rcr & ~(RCR_SYS_RST | RCR_FULL_RST)))
		return vmkit__err(-EINVAL, "PM1A state: values out of range");

	pthread_mutex_lock(&p->lock);
	p->sts = sts;
	p->en = en;
	p->cnt = cnt;
	p->rcr = rcr;
	update_sci(p);
	pthread_mutex_unlock(&p->lock);
	dev_line_sync(&p->sci);
	return 0;
}
