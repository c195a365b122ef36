/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <string.h>

#include "devices/legacy/legacy.h"

#define OBF 0x01
#define AUXDATA 0x20

static struct i8042 *k;
static bool level;
static unsigned rises, resets;

static void irq_set(void *ctx, bool l)
{
	if (l && !level)
		rises++;
	level = l;
}

static void on_reset(void *ctx)
{
	cr_assert_eq(ctx, &resets);
	resets++;
}

static void setup(void)
{
	struct dev_irq irq = { irq_set, NULL };

	level = false;
	rises = resets = 0;
	cr_assert_eq(i8042_new(&irq, on_reset, &resets, &k), 0);
}

static void teardown(void)
{
	i8042_free(k);
}

TestSuite(i8042, .init = setup, .fini = teardown);

static uint8_t status(void)
{
	uint8_t v = 0;
	i8042_cmd_ops.read(k, 0, &v, 1);
	return v;
}

static void cmd(uint8_t c)
{
	i8042_cmd_ops.write(k, 0, &c, 1);
}

static void put(uint8_t d)
{
	i8042_data_ops.write(k, 0, &d, 1);
}

static uint8_t get(void)
{
	uint8_t v = 0;
	i8042_data_ops.read(k, 0, &v, 1);
	return v;
}

/* What Linux's i8042_command does for one answer byte: OBF must be set
 * right away (its wait loop would otherwise spin for up to 500 ms). */
static uint8_t answer(void)
{
	cr_assert(status() & OBF, "no answer waiting");
	return get();
}

static void assert_empty(void)
{
	cr_assert_not(status() & OBF, "unexpected byte 0x%02x", get());
}

Test(i8042, status_after_power_on)
{
	uint8_t s = status();

	cr_assert_not(s & OBF);
	cr_assert_not(s & 0x02, "IBF is never set");
	cr_assert(s & 0x10, "keyboard not inhibited (no keylock warning)");
	cr_assert(s & 0x04, "system flag");
}

Test(i8042, self_tests_and_command_byte)
{
	cmd(0xaa);
	cr_assert_eq(answer(), 0x55);
	cr_assert(status() & 0x08, "last write was a command");
	cmd(0xab);
	cr_assert_eq(answer(), 0x00);
	cmd(0xa9);
	cr_assert_eq(answer(), 0x00);
	cmd(0x20);
	uint8_t ctr = answer();
	cr_assert(ctr & 0x40, "translation on as a BIOS leaves it");
	cmd(0x60);
	put(0x44);
	cr_assert_not(status() & 0x08);
	cmd(0x20);
	cr_assert_eq(answer(), 0x44 | 0x20, "written CTR reads back (AUX stays disabled)");
	cmd(0xad);
	cmd(0x20);
	cr_assert(answer() & 0x10);
	cmd(0xae);
	cmd(0x20);
	cr_assert_not(answer() & 0x10);
	assert_empty();
}

/* The sequence of Linux's i8042_check_aux: it must end in "no AUX port"
 * at once, every byte consumed and nothing left over for the keyboard. */
Test(i8042, linux_aux_probe_concludes_quickly)
{
	int polls = 0;

	cmd(0xd3);
	put(0x5a);
	cr_assert_eq(status() & (OBF | AUXDATA), OBF | AUXDATA);
	cr_assert_eq(get(), 0x5a, "AUX loopback echoes");
	cmd(0xa7);
	cmd(0x20);
	cr_assert(answer() & 0x20, "AUX disabled");
	cmd(0xa8);
	for (polls = 0; polls < 100; polls++) {
		cmd(0x20);
		if (!(answer() & 0x20))
			break;
	}
	cr_assert_eq(polls, 100, "AUX never enables: Linux drops the port");
	assert_empty();
	/* a stray AUX command is answered, not left to time out */
	cmd(0xd4);
	put(0xf2);
	cr_assert_eq(status() & 0x61, 0x61, "OBF, AUXDATA and timeout");
	cr_assert_eq(get(), 0xfe);
}

Test(i8042, keyboard_commands)
{
	put(0xff);
	cr_assert_eq(answer(), 0xfa);
	cr_assert_eq(answer(), 0xaa);
	put(0xf2);
	cr_assert_eq(answer(), 0xfa);
	cr_assert_eq(answer(), 0xab);
	cr_assert_eq(answer(), 0x41, "translated id byte while XLATE is on");
	cmd(0x60);
	put(0x05); /* no translation */
	put(0xf2);
	cr_assert_eq(answer(), 0xfa);
	cr_assert_eq(answer(), 0xab);
	cr_assert_eq(answer(), 0x83);
	put(0xf5);
	cr_assert_eq(answer(), 0xfa);
	put(0xed);
	cr_assert_eq(answer(), 0xfa);
	put(0x07);
	cr_assert_eq(answer(), 0xfa);
	put(0xf3);
	cr_assert_eq(answer(), 0xfa);
	put(0x20);
	cr_assert_eq(answer(), 0xfa);
	put(0xf0);
	cr_assert_eq(answer(), 0xfa);
	put(0x00);
	cr_assert_eq(answer(), 0xfa);
	cr_assert_eq(answer(), 0x02, "scan code set 2");
	put(0xf4);
	cr_assert_eq(answer(), 0xfa);
	put(0xee);
	cr_assert_eq(answer(), 0xee);
	put(0x12);
	cr_assert_eq(answer(), 0xfe, "unknown command: resend");
	assert_empty();
	cr_assert_eq(get(), 0xfe, "an empty buffer reads its last byte again");
}

Test(i8042, irq1_follows_output_and_command_byte)
{
	cmd(0x60);
	put(0x44); /* KBDINT off */
	put(0xf2);
	cr_assert_not(level);
	cmd(0x60);
	put(0x45);
	cr_assert(level);
	unsigned r = rises;
	get();
	cr_assert(level);
	cr_assert_eq(rises, r + 1, "a fresh edge for the next byte");
	get();
	get();
	cr_assert_not(level);
	cmd(0xd3);
	put(0x01);
	cr_assert_not(level, "AUX bytes are not on IRQ 1");
	get();
}

Test(i8042, reset_by_command_and_by_output_port)
{
	cmd(0xfe);
	cr_assert_eq(resets, 1);
	cmd(0xff);
	cr_assert_eq(resets, 1, "0xff pulses no line");
	cmd(0xd0);
	uint8_t out = answer();
	cr_assert(out & 0x01, "reset line inactive");
	cmd(0xd1);
	put(out | 0x01);
	cr_assert_eq(resets, 1);
	cmd(0xd1);
	put(out & ~0x01);
	cr_assert_eq(resets, 2);
	cmd(0xd2);
	put(0x99);
	cr_assert_eq(status() & (OBF | AUXDATA), OBF);
	cr_assert_eq(get(), 0x99);
}

Test(i8042, output_queue_is_bounded)
{
	for (int i = 0; i < 100; i++)
		put(0xf2);
	int n = 0;
	while (status() & OBF) {
		get();
		n++;
	}
	cr_assert_eq(n, 16);
}

Test(i8042, save_restore_and_bad_blobs)
{
	struct dev_state s = { 0 }, before = { 0 }, after = { 0 };
	struct i8042 *k2;
	struct dev_irq irq = { irq_set, NULL };
	uint8_t buf[256];

	cmd(0x60);
	put(0x65);
	put(0xf2);
	get();
	cmd(0x61);
	put(0x3c);
	cr_assert_eq(i8042_save(k, &s), 0);
	cr_assert_eq(i8042_new(&irq, on_reset, &resets, &k2), 0);
	cr_assert_eq(i8042_restore(k2, s.data, s.len), 0);
	i8042_free(k);
	k = k2;
	cr_assert_eq(answer(), 0xab);
	cr_assert_eq(answer(), 0x41);
	cmd(0x21);
	cr_assert_eq(answer(), 0x3c);
	cmd(0x20);
	cr_assert_eq(answer(), 0x65);

	cr_assert_eq(i8042_save(k, &before), 0);
	cr_assert_leq(s.len, sizeof(buf));
	for (size_t l = 0; l < s.len; l += 5)
		cr_assert_eq(i8042_restore(k, s.data, l), -EINVAL);
	for (size_t i = 0; i < s.len; i++) {
		memcpy(buf, s.data, s.len);
		buf[i] ^= 0x01;
		cr_assert_eq(i8042_restore(k, buf, s.len), -EINVAL, "byte %zu", i);
	}
	cr_assert_eq(i8042_save(k, &after), 0);
	cr_assert_eq(memcmp(before.data, after.data, before.len), 0);
	assert_empty();
	dev_state_free(&s);
	dev_state_free(&before);
	dev_state_free(&after);
}
