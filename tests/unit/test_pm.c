/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <string.h>

#include "devices/legacy/legacy.h"

static struct pm *p;
static unsigned poweroffs, resets, panics;
static bool sci;

static void on_poweroff(void *ctx) { poweroffs++; }
static void on_reset(void *ctx) { resets++; }
static void on_panic(void *ctx) { panics++; }
static void sci_set(void *ctx, bool l) { sci = l; }

static void setup(void)
{
	struct dev_irq irq = { sci_set, NULL };
	struct pm_callbacks cb = { on_poweroff, on_reset, on_panic, NULL };

	poweroffs = resets = panics = 0;
	sci = false;
	cr_assert_eq(pm_new(&irq, &cb, &p), 0);
}

static void teardown(void)
{
	pm_free(p);
}

TestSuite(pm, .init = setup, .fini = teardown);

static void wr16(unsigned off, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	pm_ops.write(p, off, b, 2);
}

static uint16_t rd16(unsigned off)
{
	uint8_t b[2] = { 0, 0 };
	pm_ops.read(p, off, b, 2);
	return (uint16_t)(b[0] | b[1] << 8);
}

Test(pm, poweroff_needs_slp_en_and_s5)
{
	cr_assert_eq(rd16(4) & 1, 1, "SCI_EN: always in ACPI mode");
	wr16(4, 5 << 10 | 1); /* SLP_TYP 5 without SLP_EN (ACPICA's first write) */
	cr_assert_eq(poweroffs, 0);
	cr_assert_eq(rd16(4), 5 << 10 | 1);
	wr16(4, 3 << 10 | 1 << 13 | 1); /* S3 is not supported: nothing */
	cr_assert_eq(poweroffs, 0);
	cr_assert_eq(rd16(4) & (1 << 13), 0, "SLP_EN reads as 0");
	wr16(4, 5 << 10 | 1 << 13 | 1);
	cr_assert_eq(poweroffs, 1);
	/* byte-wide: the high byte carries SLP_TYP and SLP_EN */
	uint8_t hi = (5 << 2) | (1 << 5);
	pm_ops.write(p, 5, &hi, 1);
	cr_assert_eq(poweroffs, 2);
}

Test(pm, status_enable_and_sci)
{
	uint32_t both = 0;

	cr_assert_eq(rd16(0), 0);
	wr16(2, 0x0100);
	cr_assert_eq(rd16(2), 0x0100);
	cr_assert_not(sci);
	pm_press_power_button(p);
	cr_assert_eq(rd16(0), 0x0100);
	cr_assert(sci, "power button status and enable raise SCI");
	pm_ops.read(p, 0, &both, 4);
	cr_assert_eq(both, 0x01000100u);
	wr16(0, 0x0001); /* clearing another bit changes nothing */
	cr_assert(sci);
	wr16(0, 0x0100);
	cr_assert_eq(rd16(0), 0);
	cr_assert_not(sci);
	wr16(2, 0);
	pm_press_power_button(p);
	cr_assert_not(sci, "disabled event: status only");
	cr_assert_eq(rd16(0), 0x0100);
}

Test(pm, reset_register)
{
	uint8_t v;

	v = 0x02; /* Linux reboot=pci, first write: SYS_RST alone */
	pm_reset_ops.write(p, 0, &v, 1);
	cr_assert_eq(resets, 0);
	pm_reset_ops.read(p, 0, &v, 1);
	cr_assert_eq(v, 0x02);
	v = 0x06; /* FADT RESET_VALUE */
	pm_reset_ops.write(p, 0, &v, 1);
	cr_assert_eq(resets, 1);
	v = 0x0e;
	pm_reset_ops.write(p, 0, &v, 1);
	cr_assert_eq(resets, 2);
	pm_reset_ops.read(p, 0, &v, 1);
	cr_assert_eq(v, 0x0a, "RST_CPU self-clears");
	v = 0x00;
	pm_reset_ops.write(p, 0, &v, 1);
	cr_assert_eq(resets, 2);
}

Test(pm, pvpanic)
{
	uint8_t v = 0;

	pvpanic_ops.read(p, 0, &v, 1);
	cr_assert_eq(v, 0x03);
	v = 0x02; /* crash kernel loaded: not a panic */
	pvpanic_ops.write(p, 0, &v, 1);
	cr_assert_eq(panics, 0);
	v = 0x01;
	pvpanic_ops.write(p, 0, &v, 1);
	cr_assert_eq(panics, 1);
}

Test(pm, save_restore_and_bad_blobs)
{
	struct dev_state s = { 0 }, before = { 0 }, after = { 0 };
	struct pm *p2;
	struct dev_irq irq = { sci_set, NULL };
	uint8_t buf[64];

	wr16(2, 0x0100);
	pm_press_power_button(p);
	wr16(4, 5 << 10 | 1);
	cr_assert_eq(pm_save(p, &s), 0);
	sci = false;
	cr_assert_eq(pm_new(&irq, NULL, &p2), 0);
	cr_assert_eq(pm_restore(p2, s.data, s.len), 0);
	pm_free(p);
	p = p2;
	cr_assert(sci, "restored state drives the line");
	cr_assert_eq(rd16(0), 0x0100);
	cr_assert_eq(rd16(2), 0x0100);
	cr_assert_eq(rd16(4), 5 << 10 | 1);

	cr_assert_eq(pm_save(p, &before), 0);
	cr_assert_leq(s.len, sizeof(buf));
	for (size_t l = 0; l < s.len; l++)
		cr_assert_eq(pm_restore(p, s.data, l), -EINVAL);
	for (size_t i = 0; i < s.len; i++) {
		memcpy(buf, s.data, s.len);
		buf[i] ^= 0x04;
		cr_assert_eq(pm_restore(p, buf, s.len), -EINVAL, "byte %zu", i);
	}
	cr_assert_eq(pm_save(p, &after), 0);
	cr_assert_eq(memcmp(before.data, after.data, before.len), 0);
	dev_state_free(&s);
	dev_state_free(&before);
	dev_state_free(&after);
}
