/* SPDX-License-Identifier: MIT */
/* Device state blobs (header, CRC-32, field codec) and the interrupt-line
 * helper shared by the legacy device models. */
#include <stdlib.h>
#include <string.h>

#include "devices/legacy/legacy.h"

#define STATE_MAGIC "VMKS"
#define STATE_HDR 16u /* magic, version, length, crc32 */
#define TAG_LEN 4u

/* Reflected polynomial 0xedb88320, one nibble at a time: a 16-entry table
 * is plenty for blobs of a few hundred bytes. */
static const uint32_t crc_nibble[16] = {
	0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4,
	0x4db26158, 0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c,
	0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
};

uint32_t dev_crc32(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		c ^= p[i];
		c = (c >> 4) ^ crc_nibble[c & 0xf];
		c = (c >> 4) ^ crc_nibble[c & 0xf];
	}
	return c ^ 0xffffffffu;
}

void dev_state_free(struct dev_state *s)
{
	if (!s)
		return;
	free(s->data);
	s->data = NULL;
	s->len = 0;
}

/* ---- writer --------------------------------------------------------------- */

void dev_state_put_bytes(struct dev_state_writer *w, const void *p, size_t n)
{
	if (w->overflow || n > sizeof(w->buf) - w->len) {
		w->overflow = true;
		return;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void put_le(struct dev_state_writer *w, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	dev_state_put_bytes(w, b, n);
}

void dev_state_put_u8(struct dev_state_writer *w, uint8_t v) { put_le(w, v, 1); }
void dev_state_put_u16(struct dev_state_writer *w, uint16_t v) { put_le(w, v, 2); }
void dev_state_put_u32(struct dev_state_writer *w, uint32_t v) { put_le(w, v, 4); }
void dev_state_put_u64(struct dev_state_writer *w, uint64_t v) { put_le(w, v, 8); }

void dev_state_begin(struct dev_state_writer *w, const char tag[4])
{
	w->len = 0;
	w->overflow = false;
	dev_state_put_bytes(w, tag, TAG_LEN);
}

int dev_state_finish(struct dev_state_writer *w, uint32_t version, struct dev_state *out)
{
	uint8_t *b;

	out->data = NULL;
	out->len = 0;
	if (w->overflow)
		return vmkit__err(-EOVERFLOW, "device state larger than %u bytes", DEV_STATE_MAX_PAYLOAD);
	b = malloc(STATE_HDR + w->len);
	if (!b)
		return vmkit__err(-ENOMEM, "out of memory for device state");
	memcpy(b, STATE_MAGIC, 4);
	vmkit__put_le32(b + 4, version);
	vmkit__put_le32(b + 8, (uint32_t)w->len);
	vmkit__put_le32(b + 12, dev_crc32(w->buf, w->len));
	memcpy(b + STATE_HDR, w->buf, w->len);
	out->data = b;
	out->len = STATE_HDR + w->len;
	return 0;
}

/* ---- reader --------------------------------------------------------------- */

int dev_state_open(struct dev_state_reader *r, const uint8_t *data, size_t len,
		   const char tag[4], uint32_t version)
{
	uint32_t v, plen;

	memset(r, 0, sizeof(*r));
	memcpy(r->tag, tag, TAG_LEN);
	r->bad = true;
	if (!data || len < STATE_HDR)
		return vmkit__err(-EINVAL, "%s state: truncated (%zu bytes)", r->tag, len);
	if (memcmp(data, STATE_MAGIC, 4) != 0)
		return vmkit__err(-EINVAL, "%s state: bad magic", r->tag);
	v = vmkit__get_le32(data + 4);
	if (v != version)
		return vmkit__err(-EINVAL, "%s state: version %u, expected %u", r->tag, v, version);
	plen = vmkit__get_le32(data + 8);
	if (plen > DEV_STATE_MAX_PAYLOAD || plen != len - STATE_HDR)
		return vmkit__err(-EINVAL, "%s state: payload length %u does not match blob size %zu",
				  r->tag, plen, len);
	if (dev_crc32(data + STATE_HDR, plen) != vmkit__get_le32(data + 12))
		return vmkit__err(-EINVAL, "%s state: checksum mismatch", r->tag);
	if (plen < TAG_LEN || memcmp(data + STATE_HDR, tag, TAG_LEN) != 0)
		return vmkit__err(-EINVAL, "%s state: blob belongs to another device", r->tag);
	r->p = data + STATE_HDR;
	r->len = plen;
	r->off = TAG_LEN;
	r->bad = false;
	return 0;
}

void dev_state_get_bytes(struct dev_state_reader *r, void *p, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		memset(p, 0, n);
		return;
	}
	memcpy(p, r->p + r->off, n);
	r->off += n;
}

static uint64_t get_le(struct dev_state_reader *r, unsigned n)
{
	uint8_t b[8];
	uint64_t v = 0;

	dev_state_get_bytes(r, b, n);
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

uint8_t dev_state_get_u8(struct dev_state_reader *r) { return (uint8_t)get_le(r, 1); }
uint16_t dev_state_get_u16(struct dev_state_reader *r) { return (uint16_t)get_le(r, 2); }
uint32_t dev_state_get_u32(struct dev_state_reader *r) { return (uint32_t)get_le(r, 4); }
uint64_t dev_state_get_u64(struct dev_state_reader *r) { return get_le(r, 8); }

int dev_state_close(struct dev_state_reader *r)
{
	if (r->bad)
		return vmkit__err(-EINVAL, "%s state: payload too short", r->tag);
	if (r->off != r->len)
		return vmkit__err(-EINVAL, "%s state: %zu unexpected trailing bytes", r->tag,
				  r->len - r->off);
	return 0;
}

/* ---- interrupt line ------------------------------------------------------- */

void dev_line_init(struct dev_line *l, const struct dev_irq *irq)
{
	memset(l, 0, sizeof(*l));
	if (irq)
		l->irq = *irq;
	pthread_mutex_init(&l->lock, NULL);
	atomic_init(&l->want, false);
	atomic_init(&l->pulse, false);
}

void dev_line_destroy(struct dev_line *l)
{
	pthread_mutex_destroy(&l->lock);
}

void dev_line_want(struct dev_line *l, bool level)
{
	atomic_store(&l->want, level);
}

void dev_line_pulse(struct dev_line *l)
{
	atomic_store(&l->pulse, true);
}

void dev_line_sync(struct dev_line *l)
{
	bool want;

	pthread_mutex_lock(&l->lock);
	/* Read the pulse before the level: a pulse is always requested
	 * together with a level, so this never loses the latest level. */
	if (atomic_exchange(&l->pulse, false) && l->level) {
		l->level = false;
		if (l->irq.set)
			l->irq.set(l->irq.ctx, false);
	}
	want = atomic_load(&l->want);
	if (want != l->level) {
		l->level = want;
		if (l->irq.set)
			l->irq.set(l->irq.ctx, want);
	}
	pthread_mutex_unlock(&l->lock);
}
