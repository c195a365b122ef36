/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <string.h>

#include "devices/legacy/legacy.h"

enum { THR = 0, RBR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4,
       LSR = 5, MSR = 6, SCR = 7 };

struct rec {
	bool level;
	unsigned rises; /* low-to-high transitions */
	uint8_t out[4096];
	size_t n;
};

static struct rec rec;
static struct uart8250 *u;

static void irq_set(void *ctx, bool level)
{
	struct rec *r = ctx;
	if (level && !r->level)
		r->rises++;
	r->level = level;
}

static void sink_write(void *ctx, const uint8_t *data, size_t len)
{
	struct rec *r = ctx;
	cr_assert_leq(r->n + len, sizeof(r->out));
	memcpy(r->out + r->n, data, len);
	r->n += len;
}

static void wr(unsigned off, uint8_t v)
{
	uart8250_ops.write(u, off, &v, 1);
}

static uint8_t rd(unsigned off)
{
	uint8_t v = 0x5a;
	uart8250_ops.read(u, off, &v, 1);
	return v;
}

static void setup(void)
{
	struct dev_irq irq = { irq_set, &rec };
	struct dev_sink sink = { sink_write, &rec };

	memset(&rec, 0, sizeof(rec));
	cr_assert_eq(uart8250_new(&irq, &sink, &u), 0);
}

static void teardown(void)
{
	uart8250_free(u);
}

TestSuite(uart, .init = setup, .fini = teardown);

Test(uart, polling_writer_always_sees_thre)
{
	for (unsigned i = 0; i < 1000; i++) {
		uint8_t lsr = rd(LSR);
		cr_assert(lsr & 0x20, "THRE clear before byte %u", i);
		cr_assert(lsr & 0x40, "TEMT clear before byte %u", i);
		wr(THR, (uint8_t)i);
	}
	cr_assert_eq(rec.n, 1000);
	for (unsigned i = 0; i < 1000; i++)
		cr_assert_eq(rec.out[i], (uint8_t)i);
	cr_assert_eq(uart8250_tx_bytes(u), 1000);
}

Test(uart, ier_probe_as_linux_does)
{
	wr(IER, 0);
	cr_assert_eq(rd(IER) & 0x0f, 0);
	wr(IER, 0x0f);
	cr_assert_eq(rd(IER) & 0x0f, 0x0f);
	wr(IER, 0xff);
	cr_assert_eq(rd(IER), 0x0f, "upper IER bits read as 0 on a 16550A");
	wr(SCR, 0xa5);
	cr_assert_eq(rd(SCR), 0xa5);
}

Test(uart, divisor_latch)
{
	wr(LCR, 0x83);
	wr(DLL, 0x01);
	wr(DLM, 0x02);
	cr_assert_eq(rec.n, 0, "a DLL write is not a transmission");
	cr_assert_eq(rd(DLL), 0x01);
	cr_assert_eq(rd(DLM), 0x02);
	wr(LCR, 0x03);
	cr_assert_eq(rd(IER), 0, "IER is distinct from DLM");
	wr(IER, 0x05);
	wr(THR, 'A');
	cr_assert_eq(rec.n, 1);
	wr(LCR, 0x83);
	cr_assert_eq(rd(DLL), 0x01);
	cr_assert_eq(rd(DLM), 0x02);
	cr_assert_eq(rd(LCR), 0x83);
}

Test(uart, loopback_probe_and_data)
{
	uint8_t b = 'z';

	/* Linux's autoconfig: LOOP | RTS | OUT2 must read back CTS | DCD */
	wr(MCR, 0x10 | 0x0a);
	cr_assert_eq(rd(MSR) & 0xf0, 0x90);
	wr(MCR, 0x10 | 0x05); /* DTR | OUT1 -> DSR | RI */
	cr_assert_eq(rd(MSR) & 0xf0, 0x60);
	wr(THR, 'x');
	cr_assert_eq(rec.n, 0, "loopback bytes do not leave the UART");
	cr_assert(rd(LSR) & 0x01);
	cr_assert_eq(rd(RBR), 'x');
	cr_assert_not(rd(LSR) & 0x01);
	cr_assert_eq(uart8250_receive(u, &b, 1), 0, "the line is disconnected in loopback");
	wr(MCR, 0x0b);
	cr_assert_eq(rd(MSR) & 0xf0, 0xb0, "DCD, DSR and CTS outside loopback");
	cr_assert_eq(uart8250_receive(u, &b, 1), 1);
	cr_assert_eq(rd(RBR), 'z');
}

Test(uart, iir_priority_and_clearing)
{
	uint8_t b = 1;

	wr(FCR, 0x01);
	wr(MCR, 0x08);
	wr(IER, 0x02);
	cr_assert_eq(rd(IIR), 0xc2, "THR empty on enabling ETBEI, FIFO bits set");
	cr_assert_eq(rd(IIR), 0xc1, "reading IIR acknowledged THRE");
	wr(IER, 0x0f);
	cr_assert_eq(rd(IIR), 0xc1, "ETBEI already on: no new THRE");
	cr_assert_eq(uart8250_receive(u, &b, 1), 1);
	cr_assert_eq(rd(IIR), 0xc4, "received data");
	/* overrun via loopback: line status beats received data */
	wr(MCR, 0x18);
	for (int i = 0; i < 16; i++)
		wr(THR, (uint8_t)i);
	cr_assert_eq(rd(IIR), 0xc6);
	cr_assert(rd(LSR) & 0x02, "OE");
	cr_assert_not(rd(LSR) & 0x02, "LSR read cleared OE");
	cr_assert_eq(rd(IIR), 0xc4);
	for (int i = 0; i < 16; i++)
		rd(RBR);
	/* THR writes re-arm THRE, then MSR deltas are last */
	cr_assert_eq(rd(IIR), 0xc2);
	cr_assert_eq(rd(IIR) & 0x0f, 0x00, "modem status change from the MCR changes");
	rd(MSR);
	cr_assert_eq(rd(IIR), 0xc1);
}

Test(uart, linux_thre_retest_after_ier_toggle)
{
	wr(IER, 0x02);
	cr_assert_eq(rd(IIR) & 0x0f, 0x02);
	wr(IER, 0);
	wr(IER, 0x02);
	cr_assert_eq(rd(IIR) & 0x0f, 0x02, "THRE reasserted when ETBEI is enabled again");
	wr(IER, 0x02);
	wr(THR, 'a');
	cr_assert_eq(rd(IIR) & 0x0f, 0x02, "a THR write re-arms THRE");
}

Test(uart, irq_line_needs_out2)
{
	uint8_t b = 'q';

	wr(MCR, 0x00);
	wr(IER, 0x01);
	cr_assert_eq(uart8250_receive(u, &b, 1), 1);
	cr_assert_not(rec.level, "no IRQ without OUT2");
	wr(MCR, 0x08);
	cr_assert(rec.level);
	cr_assert_eq(rd(RBR), 'q');
	cr_assert_not(rec.level, "IRQ drops once the data is read");
	wr(IER, 0x02);
	cr_assert(rec.level);
	rd(IIR);
	cr_assert_not(rec.level);
}

Test(uart, each_thr_write_gives_a_new_edge)
{
	wr(MCR, 0x08);
	wr(IER, 0x02);
	cr_assert(rec.level);
	unsigned before = rec.rises;
	for (int i = 0; i < 5; i++)
		wr(THR, 'x');
	cr_assert_eq(rec.rises, before + 5);
	cr_assert(rec.level);
}

Test(uart, rx_fifo_backpressure)
{
	uint8_t in[20];

	for (int i = 0; i < 20; i++)
		in[i] = (uint8_t)(0x40 + i);
	cr_assert_eq(uart8250_rx_room(u), 1, "FIFO off: one holding register");
	cr_assert_eq(uart8250_receive(u, in, 3), 1);
	cr_assert_eq(uart8250_rx_room(u), 0);
	cr_assert_eq(rd(RBR), 0x40);
	wr(FCR, 0x01);
	cr_assert_eq(uart8250_rx_room(u), 16);
	cr_assert_eq(uart8250_receive(u, in, 20), 16);
	cr_assert_eq(uart8250_rx_room(u), 0);
	cr_assert_eq(uart8250_receive(u, in + 16, 4), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(rd(RBR), in[i]);
	cr_assert_eq(uart8250_receive(u, in + 16, 4), 4);
	for (int i = 4; i < 20; i++)
		cr_assert_eq(rd(RBR), in[i]);
	cr_assert_not(rd(LSR) & 0x03, "no data, never an overrun from receive()");
	cr_assert_eq(uart8250_rx_bytes(u), 21);
}

Test(uart, fcr_clears_rx)
{
	uint8_t in[4] = { 1, 2, 3, 4 };

	wr(FCR, 0xc1);
	cr_assert_eq(uart8250_receive(u, in, 4), 4);
	wr(IER, 0x01);
	cr_assert_eq(rd(IIR), 0xcc, "below the 14-byte trigger: timeout id");
	wr(FCR, 0xc3);
	cr_assert_not(rd(LSR) & 0x01);
	cr_assert_eq(rd(IIR), 0xc1);
	wr(FCR, 0x00);
	cr_assert_eq(rd(IIR) & 0xc0, 0, "FIFO off");
}

static void save(struct dev_state *s)
{
	cr_assert_eq(uart8250_save(u, s), 0);
	cr_assert_gt(s->len, 16);
}

Test(uart, save_restore_round_trip)
{
	struct dev_state s = { 0 };
	struct uart8250 *v;
	uint8_t in[5] = { 'h', 'e', 'l', 'l', 'o' };
	struct dev_irq irq = { irq_set, &rec };

	wr(FCR, 0x81);
	wr(LCR, 0x80);
	wr(DLL, 3);
	wr(LCR, 0x1b);
	wr(MCR, 0x0b);
	wr(IER, 0x05);
	wr(SCR, 0x77);
	cr_assert_eq(uart8250_receive(u, in, 5), 5);
	wr(THR, '!');
	save(&s);

	cr_assert_eq(uart8250_new(&irq, NULL, &v), 0);
	cr_assert_eq(uart8250_restore(v, s.data, s.len), 0);
	uart8250_free(u);
	u = v;
	cr_assert_eq(rd(LCR), 0x1b);
	cr_assert_eq(rd(MCR), 0x0b);
	cr_assert_eq(rd(IER), 0x05);
	cr_assert_eq(rd(SCR), 0x77);
	cr_assert_eq(rd(IIR), 0xcc);
	cr_assert_eq(uart8250_tx_bytes(u), 1);
	cr_assert_eq(uart8250_rx_room(u), 11);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(rd(RBR), in[i]);
	wr(LCR, 0x80);
	cr_assert_eq(rd(DLL), 3);
	dev_state_free(&s);
}

Test(uart, bad_blobs_are_refused_and_change_nothing)
{
	struct dev_state good = { 0 }, before = { 0 }, after = { 0 };
	uint8_t buf[256];

	wr(SCR, 0x11);
	save(&good);
	wr(SCR, 0x22);
	wr(FCR, 0x01);
	save(&before);
	cr_assert_leq(good.len, sizeof(buf));

	/* truncated */
	for (size_t l = 0; l < good.len; l += 7)
		cr_assert_eq(uart8250_restore(u, good.data, l), -EINVAL, "length %zu", l);
	/* one flipped bit anywhere */
	for (size_t i = 0; i < good.len; i++) {
		memcpy(buf, good.data, good.len);
		buf[i] ^= 0x10;
		cr_assert_eq(uart8250_restore(u, buf, good.len), -EINVAL, "byte %zu", i);
	}
	/* wrong version (header fixed up otherwise) */
	memcpy(buf, good.data, good.len);
	buf[4] = 2;
	cr_assert_eq(uart8250_restore(u, buf, good.len), -EINVAL);
	cr_assert_eq(uart8250_restore(u, NULL, 0), -EINVAL);

	save(&after);
	cr_assert_eq(after.len, before.len);
	cr_assert_eq(memcmp(after.data, before.data, before.len), 0);
	cr_assert_eq(rd(SCR), 0x22);
	dev_state_free(&good);
	dev_state_free(&before);
	dev_state_free(&after);
}

/* A blob with a valid header and checksum but an impossible FIFO count. */
Test(uart, well_formed_blob_with_bad_values_is_refused)
{
	struct dev_state s = { 0 };
	uint8_t buf[256];
	uint32_t crc;
	const size_t count_at = 16 + 4 + 11; /* header, tag, 11 register bytes */

	save(&s);
	memcpy(buf, s.data, s.len);
	buf[count_at] = 17;
	crc = dev_crc32(buf + 16, s.len - 16);
	for (int i = 0; i < 4; i++)
		buf[12 + i] = (uint8_t)(crc >> (8 * i));
	cr_assert_eq(uart8250_restore(u, buf, s.len), -EINVAL);
	buf[count_at] = 1; /* FIFO off in this state: one byte is fine */
	crc = dev_crc32(buf + 16, s.len - 16);
	for (int i = 0; i < 4; i++)
		buf[12 + i] = (uint8_t)(crc >> (8 * i));
	cr_assert_eq(uart8250_restore(u, buf, s.len), 0);
	cr_assert(rd(LSR) & 0x01);
	dev_state_free(&s);
}
