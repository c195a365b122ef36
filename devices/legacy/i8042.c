/* SPDX-License-Identifier: MIT */
/* i8042 keyboard controller with a keyboard that answers commands (no key
 * input) and no AUX (mouse) device. Its jobs: let Linux's i8042 and atkbd
 * probes finish at once, and reset the machine (command 0xfe, or the
 * output port's reset bit).
 *
 * The AUX port is absent in a way Linux detects without a timeout: the
 * AUX loopback command echoes (so no interface-test fallback is needed),
 * but the AUX port cannot be enabled: AUXDIS stays set in the command byte
 * whatever is written, so i8042_check_aux's enable check fails after a few
 * polls and the port is dropped before the AUX IRQ test (which would wait
 * 250 ms for an IRQ 12 this device does not drive). Bytes addressed to the
 * absent mouse (command 0xd4) are answered 0xfe with the timeout bit, as
 * real controllers report a missing device. */
#include <stdlib.h>
#include <string.h>

#include "devices/legacy/legacy.h"

#define STR_OBF     0x01
#define STR_SYS     0x04
#define STR_CMD     0x08 /* last write went to the command port */
#define STR_UNLOCK  0x10 /* keyboard not inhibited */
#define STR_AUXDATA 0x20
#define STR_TIMEOUT 0x40

#define CTR_KBDINT 0x01
#define CTR_SYS    0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE  0x40
#define CTR_DEFAULT (CTR_XLATE | CTR_AUXDIS | CTR_SYS | CTR_KBDINT)

#define OUT_RESET 0x01 /* active low */
#define OUT_A20   0x02
#define OUT_DEFAULT 0xcf

#define KBD_ACK     0xfa
#define KBD_RESEND  0xfe
#define KBD_BAT_OK  0xaa
#define KBD_ECHO    0xee

#define QUEUE_LEN 16u
#define STATE_VERSION 1u

struct obyte {
	uint8_t b;
	uint8_t flags; /* STR_AUXDATA / STR_TIMEOUT */
};

struct i8042 {
	pthread_mutex_t lock;
	struct dev_line line;
	void (*reset)(void *ctx);
	void *ctx;
	uint8_t ram[32];     /* controller RAM; byte 0 is the command byte */
	uint8_t outport;
	uint8_t cmd_flag;    /* STR_CMD or 0 */
	uint8_t pending_cmd; /* controller command waiting for its data byte */
	uint8_t kbd_cmd;     /* keyboard command waiting for its parameter */
	uint8_t scanset;     /* 1..3 */
	uint8_t scanning;
	uint8_t last_data;   /* the data port reads this once the queue is empty */
	struct obyte q[QUEUE_LEN];
	unsigned q_head, q_count;
};

static void push(struct i8042 *k, uint8_t b, uint8_t flags)
{
	if (k->q_count == QUEUE_LEN)
		return; /* a guest that never reads loses answers, not memory */
	k->q[(k->q_head + k->q_count) % QUEUE_LEN] = (struct obyte){ b, flags };
	k->q_count++;
}

static void update_irq(struct i8042 *k)
{
	/* IRQ 1 for keyboard and controller bytes; AUX bytes would use IRQ 12,
	 * which this device has no line for. */
	dev_line_want(&k->line, k->q_count && !(k->q[k->q_head].flags & STR_AUXDATA) &&
				(k->ram[0] & CTR_KBDINT));
}

static uint8_t status(const struct i8042 *k)
{
	uint8_t s = STR_UNLOCK | k->cmd_flag | (k->ram[0] & CTR_SYS);

	if (k->q_count)
		s |= STR_OBF | k->q[k->q_head].flags;
	return s;
}

static void set_ctr(struct i8042 *k, uint8_t v)
{
	k->ram[0] = v | CTR_AUXDIS;
}

static void kbd_defaults(struct i8042 *k)
{
	k->scanset = 2;
	k->scanning = 1;
	k->kbd_cmd = 0;
}

/* What the keyboard reports as scan code set @n: in translated mode the
 * controller's set-2-to-set-1 table applies to the answer too. */
static uint8_t scanset_id(const struct i8042 *k)
{
	static const uint8_t xlated[4] = { 0, 0x43, 0x41, 0x3f };
	return (k->ram[0] & CTR_XLATE) ? xlated[k->scanset] : k->scanset;
}

static void kbd_param(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->kbd_cmd;

	k->kbd_cmd = 0;
	if (cmd == 0xf0) { /* get/set scan code set */
		if (v == 0) {
			push(k, KBD_ACK, 0);
			push(k, scanset_id(k), 0);
		} else if (v <= 3) {
			k->scanset = v;
			push(k, KBD_ACK, 0);
		} else {
			push(k, KBD_RESEND, 0);
		}
		return;
	}
	push(k, KBD_ACK, 0); /* 0xed LEDs, 0xf3 typematic rate */
}

static void kbd_write(struct i8042 *k, uint8_t v)
{
	if (k->kbd_cmd) {
		kbd_param(k, v);
		return;
	}
	switch (v) {
	case 0xff: /* reset and self test */
		kbd_defaults(k);
		push(k, KBD_ACK, 0);
		push(k, KBD_BAT_OK, 0);
		break;
	case 0xf2: /* identify: an MF2 keyboard, id byte translated if XLATE */
		push(k, KBD_ACK, 0);
		push(k, 0xab, 0);
		push(k, (k->ram[0] & CTR_XLATE) ? 0x41 : 0x83, 0);
		break;
	case 0xed: case 0xf3: case 0xf0:
		k->kbd_cmd = v;
		push(k, KBD_ACK, 0);
		break;
	case 0xf4:
		k->scanning = 1;
		push(k, KBD_ACK, 0);
		break;
	case 0xf5:
		kbd_defaults(k);
		k->scanning = 0;
		push(k, KBD_ACK, 0);
		break;
	case 0xf6:
		kbd_defaults(k);
		push(k, KBD_ACK, 0);
		break;
	case 0xee:
		push(k, KBD_ECHO, 0);
		break;
	case 0xf7: case 0xf8: case 0xf9: case 0xfa: case 0xfb: case 0xfc: case 0xfd: case 0xfe:
		push(k, KBD_ACK, 0);
		break;
	default:
		push(k, KBD_RESEND, 0);
		break;
	}
}

/* Returns true when the reset line is to be pulsed. */
static bool write_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending_cmd;

	k->cmd_flag = 0;
	k->pending_cmd = 0;
	if (cmd >= 0x60 && cmd <= 0x7f) {
		if (cmd == 0x60)
			set_ctr(k, v);
		else
			k->ram[cmd & 0x1f] = v;
		return false;
	}
	switch (cmd) {
	case 0xd1: /* write output port; bit 0 is the CPU reset line, active low */
		k->outport = v;
		return !(v & OUT_RESET);
	case 0xd2: /* as if from the keyboard */
		push(k, v, 0);
		return false;
	case 0xd3: /* as if from the AUX device */
		push(k, v, STR_AUXDATA);
		return false;
	case 0xd4: /* to the AUX device, which is absent */
		push(k, KBD_RESEND, STR_AUXDATA | STR_TIMEOUT);
		return false;
	default:
		kbd_write(k, v);
		return false;
	}
}

static bool write_cmd(struct i8042 *k, uint8_t c)
{
	k->cmd_flag = STR_CMD;
	k->pending_cmd = 0;
	if (c >= 0x20 && c <= 0x3f) {
		push(k, k->ram[c & 0x1f], 0);
		return false;
	}
	if ((c >= 0x60 && c <= 0x7f) || (c >= 0xd1 && c <= 0xd4)) {
		k->pending_cmd = c;
		return false;
	}
	if (c >= 0xf0) /* pulse output lines whose bit is 0; bit 0 is reset */
		return !(c & 1);
	switch (c) {
	case 0xa7: /* disable AUX */
		k->ram[0] |= CTR_AUXDIS;
		break;
	case 0xa8: /* enable AUX: there is none, AUXDIS stays set */
		break;
	case 0xa9: /* AUX interface test: no error */
	case 0xab: /* keyboard interface test: no error */
		push(k, 0x00, 0);
		break;
	case 0xaa: /* controller self test */
		k->ram[0] |= CTR_SYS;
		push(k, 0x55, 0);
		break;
	case 0xad:
		k->ram[0] |= CTR_KBDDIS;
		break;
	case 0xae:
		k->ram[0] &= (uint8_t)~CTR_KBDDIS;
		break;
	case 0xc0: /* input port: keyboard not inhibited */
		push(k, 0x80, 0);
		break;
	case 0xd0:
		push(k, k->outport, 0);
		break;
	case 0xdd:
		k->outport &= (uint8_t)~OUT_A20;
		break;
	case 0xdf:
		k->outport |= OUT_A20;
		break;
	case 0xe0: /* test inputs */
		push(k, 0x00, 0);
		break;
	default:
		break;
	}
	return false;
}

static void data_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct i8042 *k = opaque;
	uint8_t v;

	memset(data, 0xff, len);
	pthread_mutex_lock(&k->lock);
	if (k->q_count) {
		k->last_data = k->q[k->q_head].b;
		k->q_head = (k->q_head + 1) % QUEUE_LEN;
		k->q_count--;
		/* each further byte gets its own edge */
		if (k->q_count)
			dev_line_pulse(&k->line);
	}
	v = k->last_data;
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	dev_line_sync(&k->line);
	((uint8_t *)data)[0] = v;
}

static void finish_write(struct i8042 *k, bool reset)
{
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	dev_line_sync(&k->line);
	if (reset && k->reset)
		k->reset(k->ctx);
}

static void data_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct i8042 *k = opaque;
	bool reset;

	pthread_mutex_lock(&k->lock);
	reset = write_data(k, ((const uint8_t *)data)[0]);
	finish_write(k, reset);
}

static void cmd_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct i8042 *k = opaque;
	uint8_t v;

	memset(data, 0xff, len);
	pthread_mutex_lock(&k->lock);
	v = status(k);
	pthread_mutex_unlock(&k->lock);
	((uint8_t *)data)[0] = v;
}

static void cmd_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct i8042 *k = opaque;
	bool reset;

	pthread_mutex_lock(&k->lock);
	reset = write_cmd(k, ((const uint8_t *)data)[0]);
	finish_write(k, reset);
}

const vmkit_io_ops i8042_data_ops = { sizeof(vmkit_io_ops), 0, data_read, data_write };
const vmkit_io_ops i8042_cmd_ops = { sizeof(vmkit_io_ops), 0, cmd_read, cmd_write };

int i8042_new(const struct dev_irq *irq, void (*reset)(void *ctx), void *ctx, struct i8042 **res)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return vmkit__err(-ENOMEM, "out of memory for the i8042");
	pthread_mutex_init(&k->lock, NULL);
	dev_line_init(&k->line, irq);
	k->reset = reset;
	k->ctx = ctx;
	set_ctr(k, CTR_DEFAULT);
	k->outport = OUT_DEFAULT;
	kbd_defaults(k);
	*res = k;
	return 0;
}

void i8042_free(struct i8042 *k)
{
	if (!k)
		return;
	dev_line_destroy(&k->line);
	pthread_mutex_destroy(&k->lock);
	free(k);
}

int i8042_save(struct i8042 *k, struct dev_state *out)
{
	struct dev_state_writer w;

	dev_state_begin(&w, "KBDC");
	pthread_mutex_lock(&k->lock);
	dev_state_put_bytes(&w, k->ram, sizeof(k->ram));
	dev_state_put_u8(&w, k->outport);
	dev_state_put_u8(&w, k->cmd_flag);
	dev_state_put_u8(&w, k->pending_cmd);
	dev_state_put_u8(&w, k->kbd_cmd);
	dev_state_put_u8(&w, k->scanset);
	dev_state_put_u8(&w, k->scanning);
	dev_state_put_u8(&w, k->last_data);
	dev_state_put_u8(&w, (uint8_t)k->q_count);
	for (unsigned i = 0; i < QUEUE_LEN; i++) {
		struct obyte o = { 0, 0 };
		if (i < k->q_count)
			o = k->q[(k->q_head + i) % QUEUE_LEN];
		dev_state_put_u8(&w, o.b);
		dev_state_put_u8(&w, o.flags);
	}
	pthread_mutex_unlock(&k->lock);
	return dev_state_finish(&w, STATE_VERSION, out);
}

static bool valid_pending(uint8_t c)
{
	return c == 0 || (c >= 0x60 && c <= 0x7f) || (c >= 0xd1 && c <= 0xd4);
}

int i8042_restore(struct i8042 *k, const uint8_t *data, size_t len)
{
	struct dev_state_reader r;
	uint8_t ram[32], outport, cmd_flag, pending, kcmd, set, scanning, last, count;
	struct obyte q[QUEUE_LEN];
	bool ok = true;
	int ret;

	if ((ret = dev_state_open(&r, data, len, "KBDC", STATE_VERSION)) < 0)
		return ret;
	dev_state_get_bytes(&r, ram, sizeof(ram));
	outport = dev_state_get_u8(&r);
	cmd_flag = dev_state_get_u8(&r);
	pending = dev_state_get_u8(&r);
	kcmd = dev_state_get_u8(&r);
	set = dev_state_get_u8(&r);
	scanning = dev_state_get_u8(&r);
	last = dev_state_get_u8(&r);
	count = dev_state_get_u8(&r);
	for (unsigned i = 0; i < QUEUE_LEN; i++) {
		q[i].b = dev_state_get_u8(&r);
		q[i].flags = dev_state_get_u8(&r);
		ok &= !(q[i].flags & ~(STR_AUXDATA | STR_TIMEOUT));
	}
	if ((ret = dev_state_close(&r)) < 0)
		return ret;
	if (!ok || count > QUEUE_LEN || (cmd_flag & ~STR_CMD) || !valid_pending(pending) ||
	    (kcmd != 0 && kcmd != 0xed && kcmd != 0xf3 && kcmd != 0xf0) || set < 1 || set > 3 ||
	    scanning > 1 || !(ram[0] & CTR_AUXDIS))
		return vmkit__err(-EINVAL, "KBDC state: values out of range");

	pthread_mutex_lock(&k->lock);
	memcpy(k->ram, ram, sizeof(ram));
	k->outport = outport;
	k->cmd_flag = cmd_flag;
	k->pending_cmd = pending;
	k->kbd_cmd = kcmd;
	k->scanset = set;
	k->scanning = scanning;
	k->last_data = last;
	memcpy(k->q, q, sizeof(q));
	k->q_head = 0;
	k->q_count = count;
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	dev_line_sync(&k->line);
	return 0;
}
