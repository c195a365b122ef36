/* SPDX-License-Identifier: MIT */
/* 8250/16550A UART. Transmission is synchronous: a byte written to THR goes
 * straight to the sink, so THR and the transmitter always read as empty and
 * a guest that polls LSR.THRE never waits. Reception has a 16-byte FIFO
 * (1 byte with the FIFO off) that uart8250_receive fills without ever
 * overrunning it: the caller keeps what does not fit. The interrupt line is
 * "an interrupt is pending and MCR.OUT2 is set", as PC serial ports are
 * wired and Linux expects. */
#include <stdlib.h>
#include <string.h>

#include "devices/legacy/legacy.h"

enum {
	REG_RBR_THR = 0, REG_IER = 1, REG_IIR_FCR = 2, REG_LCR = 3,
	REG_MCR = 4, REG_LSR = 5, REG_MSR = 6, REG_SCR = 7,
};

#define IER_ERBFI 0x01 /* received data available */
#define IER_ETBEI 0x02 /* THR empty */
#define IER_ELSI  0x04 /* receiver line status */
#define IER_EDSSI 0x08 /* modem status */

#define IIR_NONE  0x01
#define IIR_MSI   0x00
#define IIR_THRI  0x02
#define IIR_RDI   0x04
#define IIR_RLSI  0x06
#define IIR_CTI   0x0c /* character timeout: data below the trigger level */
#define IIR_FIFO  0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define FCR_TRIGGER  0xc0

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_PE   0x04
#define LSR_FE   0x08
#define LSR_BI   0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_ERRORS (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80
#define MSR_DELTAS 0x0f

#define RX_FIFO 16u
#define STATE_VERSION 1u

struct uart8250 {
	pthread_mutex_t lock;
	struct dev_line line;
	struct dev_sink out;
	uint8_t ier, lcr, mcr, fcr, scr, dll, dlm;
	uint8_t lsr_err; /* OE/PE/FE/BI; DR, THRE and TEMT are computed */
	uint8_t msr;     /* line states and delta bits */
	uint8_t last_rx; /* RBR keeps its last byte once the FIFO is empty */
	bool thri;       /* THR-empty interrupt pending */
	uint8_t rx[RX_FIFO];
	unsigned rx_head, rx_count;
	uint64_t tx_bytes, rx_bytes;
};

static unsigned rx_capacity(const struct uart8250 *u)
{
	return (u->fcr & FCR_ENABLE) ? RX_FIFO : 1;
}

static unsigned rx_trigger(const struct uart8250 *u)
{
	static const unsigned levels[4] = { 1, 4, 8, 14 };
	return levels[u->fcr >> 6];
}

/* Modem lines: fixed "carrier, data set ready, clear to send" normally;
 * in loopback they are the MCR outputs, looped back. */
static uint8_t modem_lines(uint8_t mcr)
{
	uint8_t m = 0;

	if (!(mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;
	if (mcr & MCR_RTS)
		m |= MSR_CTS;
	if (mcr & MCR_DTR)
		m |= MSR_DSR;
	if (mcr & MCR_OUT1)
		m |= MSR_RI;
	if (mcr & MCR_OUT2)
		m |= MSR_DCD;
	return m;
}

static void set_modem_lines(struct uart8250 *u, uint8_t lines)
{
	uint8_t old = u->msr & ~MSR_DELTAS, delta = u->msr & MSR_DELTAS;
	uint8_t changed = old ^ lines;

	if (changed & MSR_CTS)
		delta |= MSR_DCTS;
	if (changed & MSR_DSR)
		delta |= MSR_DDSR;
	if (changed & MSR_DCD)
		delta |= MSR_DDCD;
	if ((old & MSR_RI) && !(lines & MSR_RI))
		delta |= MSR_TERI;
	u->msr = lines | delta;
}

/* The highest-priority pending interrupt (IIR bits 3..0). */
static uint8_t pending_id(const struct uart8250 *u)
{
	if ((u->ier & IER_ELSI) && (u->lsr_err & LSR_ERRORS))
		return IIR_RLSI;
	if ((u->ier & IER_ERBFI) && u->rx_count)
		return ((u->fcr & FCR_ENABLE) && u->rx_count < rx_trigger(u)) ? IIR_CTI : IIR_RDI;
	if ((u->ier & IER_ETBEI) && u->thri)
		return IIR_THRI;
	if ((u->ier & IER_EDSSI) && (u->msr & MSR_DELTAS))
		return IIR_MSI;
	return IIR_NONE;
}

static void update_irq(struct uart8250 *u)
{
	dev_line_want(&u->line, pending_id(u) != IIR_NONE && (u->mcr & MCR_OUT2));
}

static void rx_clear(struct uart8250 *u)
{
	u->rx_head = 0;
	u->rx_count = 0;
}

/* A byte into a full FIFO is lost and sets OE; with the FIFO off the
 * single holding register is overwritten instead, as on an 8250. */
static void rx_push(struct uart8250 *u, uint8_t b)
{
	unsigned cap = rx_capacity(u);

	if (u->rx_count == cap) {
		u->lsr_err |= LSR_OE;
		if (cap != 1)
			return;
		rx_clear(u);
	}
	u->rx[(u->rx_head + u->rx_count) % RX_FIFO] = b;
	u->rx_count++;
}

static uint8_t rx_pop(struct uart8250 *u)
{
	if (u->rx_count) {
		u->last_rx = u->rx[u->rx_head];
		u->rx_head = (u->rx_head + 1) % RX_FIFO;
		u->rx_count--;
	}
	return u->last_rx;
}

static uint8_t read_reg(struct uart8250 *u, unsigned reg)
{
	uint8_t v, id;

	switch (reg) {
	case REG_RBR_THR:
		if (u->lcr & LCR_DLAB)
			return u->dll;
		return rx_pop(u);
	case REG_IER:
		return (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
	case REG_IIR_FCR:
		id = pending_id(u);
		/* Reading IIR acknowledges a THR-empty interrupt it reports. */
		if (id == IIR_THRI)
			u->thri = false;
		return id | ((u->fcr & FCR_ENABLE) ? IIR_FIFO : 0);
	case REG_LCR:
		return u->lcr;
	case REG_MCR:
		return u->mcr;
	case REG_LSR:
		v = u->lsr_err | LSR_THRE | LSR_TEMT | (u->rx_count ? LSR_DR : 0);
		u->lsr_err = 0;
		return v;
	case REG_MSR:
		v = u->msr;
		u->msr &= ~MSR_DELTAS;
		return v;
	default:
		return u->scr;
	}
}

static void write_fcr(struct uart8250 *u, uint8_t v)
{
	bool was = u->fcr & FCR_ENABLE;

	/* The other bits only take effect while the enable bit is written as 1;
	 * toggling the enable bit empties the FIFOs. */
	if (!(v & FCR_ENABLE)) {
		if (was)
			rx_clear(u);
		u->fcr = 0;
		return;
	}
	if (!was || (v & FCR_CLEAR_RX))
		rx_clear(u);
	u->fcr = v & (FCR_ENABLE | FCR_TRIGGER);
}

/* Returns true if @v is to be sent to the sink. */
static bool write_reg(struct uart8250 *u, unsigned reg, uint8_t v)
{
	uint8_t old;

	switch (reg) {
	case REG_RBR_THR:
		if (u->lcr & LCR_DLAB) {
			u->dll = v;
			return false;
		}
		/* The byte leaves at once, so THR is empty again right away: a
		 * fresh THR-empty interrupt, seen as a new edge when nothing else
		 * keeps the line up. */
		u->thri = false;
		if ((u->ier & IER_ETBEI) && pending_id(u) == IIR_NONE)
			dev_line_pulse(&u->line);
		u->thri = u->ier & IER_ETBEI;
		if (u->mcr & MCR_LOOP) {
			rx_push(u, v);
			return false;
		}
		u->tx_bytes++;
		return true;
	case REG_IER:
		if (u->lcr & LCR_DLAB) {
			u->dlm = v;
			return false;
		}
		old = u->ier;
		u->ier = v & 0x0f;
		/* Enabling ETBEI with THR empty raises the interrupt even if an
		 * IIR read acknowledged it before (Linux's THRE test checks). */
		if ((u->ier & IER_ETBEI) && !(old & IER_ETBEI))
			u->thri = true;
		if (!(u->ier & IER_ETBEI))
			u->thri = false;
		return false;
	case REG_IIR_FCR:
		write_fcr(u, v);
		return false;
	case REG_LCR:
		u->lcr = v;
		return false;
	case REG_MCR:
		u->mcr = v & MCR_MASK;
		set_modem_lines(u, modem_lines(u->mcr));
		return false;
	case REG_SCR:
		u->scr = v;
		return false;
	default: /* LSR and MSR writes (factory test) are ignored */
		return false;
	}
}

static void uart_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct uart8250 *u = opaque;
	uint8_t v;

	memset(data, 0xff, len);
	if (offset > REG_SCR)
		return;
	pthread_mutex_lock(&u->lock);
	v = read_reg(u, (unsigned)offset);
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	dev_line_sync(&u->line);
	((uint8_t *)data)[0] = v;
}

static void uart_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct uart8250 *u = opaque;
	uint8_t v = ((const uint8_t *)data)[0];
	bool send;

	if (offset > REG_SCR || len == 0)
		return;
	pthread_mutex_lock(&u->lock);
	send = write_reg(u, (unsigned)offset, v);
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	if (send && u->out.write)
		u->out.write(u->out.ctx, &v, 1);
	dev_line_sync(&u->line);
}

const vmkit_io_ops uart8250_ops = { sizeof(vmkit_io_ops), 0, uart_read, uart_write };

static void reset_regs(struct uart8250 *u)
{
	u->ier = u->fcr = u->scr = u->dlm = u->lsr_err = u->last_rx = 0;
	u->lcr = 0x03; /* 8N1 */
	u->mcr = MCR_OUT2;
	u->dll = 0x0c; /* 9600 baud */
	u->msr = modem_lines(u->mcr);
	u->thri = false;
	rx_clear(u);
}

int uart8250_new(const struct dev_irq *irq, const struct dev_sink *out, struct uart8250 **res)
{
	struct uart8250 *u = calloc(1, sizeof(*u));

	if (!u)
		return vmkit__err(-ENOMEM, "out of memory for the UART");
	pthread_mutex_init(&u->lock, NULL);
	dev_line_init(&u->line, irq);
	if (out)
		u->out = *out;
	reset_regs(u);
	*res = u;
	return 0;
}

void uart8250_free(struct uart8250 *u)
{
	if (!u)
		return;
	dev_line_destroy(&u->line);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

size_t uart8250_receive(struct uart8250 *u, const uint8_t *data, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&u->lock);
	/* In loopback the receiver hears only the transmitter. */
	if (!(u->mcr & MCR_LOOP)) {
		size_t room = rx_capacity(u) - u->rx_count;
		n = len < room ? len : room;
		for (size_t i = 0; i < n; i++)
			rx_push(u, data[i]);
		u->rx_bytes += n;
	}
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	dev_line_sync(&u->line);
	return n;
}

size_t uart8250_rx_room(struct uart8250 *u)
{
	size_t room;

	pthread_mutex_lock(&u->lock);
	room = (u->mcr & MCR_LOOP) ? 0 : rx_capacity(u) - u->rx_count;
	pthread_mutex_unlock(&u->lock);
	return room;
}

uint64_t uart8250_tx_bytes(struct uart8250 *u)
{
	uint64_t n;

	pthread_mutex_lock(&u->lock);
	n = u->tx_bytes;
	pthread_mutex_unlock(&u->lock);
	return n;
}

uint64_t uart8250_rx_bytes(struct uart8250 *u)
{
	uint64_t n;

	pthread_mutex_lock(&u->lock);
	n = u->rx_bytes;
	pthread_mutex_unlock(&u->lock);
	return n;
}

int uart8250_save(struct uart8250 *u, struct dev_state *out)
{
	struct dev_state_writer w;

	dev_state_begin(&w, "UART");
	pthread_mutex_lock(&u->lock);
	dev_state_put_u8(&w, u->ier);
	dev_state_put_u8(&w, u->lcr);
	dev_state_put_u8(&w, u->mcr);
	dev_state_put_u8(&w, u->fcr);
	dev_state_put_u8(&w, u->scr);
	dev_state_put_u8(&w, u->dll);
	dev_state_put_u8(&w, u->dlm);
	dev_state_put_u8(&w, u->lsr_err);
	dev_state_put_u8(&w, u->msr);
	dev_state_put_u8(&w, u->last_rx);
	dev_state_put_u8(&w, u->thri);
	dev_state_put_u8(&w, (uint8_t)u->rx_count);
	for (unsigned i = 0; i < RX_FIFO; i++)
		dev_state_put_u8(&w, i < u->rx_count ? u->rx[(u->rx_head + i) % RX_FIFO] : 0);
	dev_state_put_u64(&w, u->tx_bytes);
	dev_state_put_u64(&w, u->rx_bytes);
	pthread_mutex_unlock(&u->lock);
	return dev_state_finish(&w, STATE_VERSION, out);
}

int uart8250_restore(struct uart8250 *u, const uint8_t *data, size_t len)
{
	struct dev_state_reader r;
	struct uart8250 n;
	uint8_t thri;
	int ret;

	if ((ret = dev_state_open(&r, data, len, "UART", STATE_VERSION)) < 0)
		return ret;
	memset(&n, 0, sizeof(n));
	n.ier = dev_state_get_u8(&r);
	n.lcr = dev_state_get_u8(&r);
	n.mcr = dev_state_get_u8(&r);
	n.fcr = dev_state_get_u8(&r);
	n.scr = dev_state_get_u8(&r);
	n.dll = dev_state_get_u8(&r);
	n.dlm = dev_state_get_u8(&r);
	n.lsr_err = dev_state_get_u8(&r);
	n.msr = dev_state_get_u8(&r);
	n.last_rx = dev_state_get_u8(&r);
	thri = dev_state_get_u8(&r);
	n.rx_count = dev_state_get_u8(&r);
	dev_state_get_bytes(&r, n.rx, RX_FIFO);
	n.tx_bytes = dev_state_get_u64(&r);
	n.rx_bytes = dev_state_get_u64(&r);
	if ((ret = dev_state_close(&r)) < 0)
		return ret;
	if ((n.ier & 0xf0) || (n.mcr & ~MCR_MASK) || (n.fcr & ~(FCR_ENABLE | FCR_TRIGGER)) ||
	    (n.lsr_err & ~LSR_ERRORS) || thri > 1 || n.rx_count > rx_capacity(&n) ||
	    (n.msr & ~MSR_DELTAS) != modem_lines(n.mcr))
		return vmkit__err(-EINVAL, "UART state: register values out of range");
	n.thri = thri;

	pthread_mutex_lock(&u->lock);
	u->ier = n.ier;
	u->lcr = n.lcr;
	u->mcr = n.mcr;
	u->fcr = n.fcr;
	u->scr = n.scr;
	u->dll = n.dll;
	u->dlm = n.dlm;
	u->lsr_err = n.lsr_err;
	u->msr = n.msr;
	u->last_rx = n.last_rx;
	u->thri = n.thri;
	memcpy(u->rx, n.rx, RX_FIFO);
	u->rx_head = 0;
	u->rx_count = n.rx_count;
	u->tx_bytes = n.tx_bytes;
	u->rx_bytes = n.rx_bytes;
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	dev_line_sync(&u->line);
	return 0;
}
