/* SPDX-License-Identifier: MIT */
/* Byte buffers and a small AML writer (ACPI 6.x, 20.2 AML grammar and 6.4
 * resource data types). */
#include <stdlib.h>
#include <string.h>

#include "arch/x86/aml.h"

/* Tables never come near this; it bounds what a runaway dsdt_extra hook
 * can make us allocate. */
#define BUF_LIMIT (16u << 20)

enum {
	ZERO_OP = 0x00, ONE_OP = 0x01, NAME_OP = 0x08, BYTE_PREFIX = 0x0a,
	WORD_PREFIX = 0x0b, DWORD_PREFIX = 0x0c, STRING_PREFIX = 0x0d,
	QWORD_PREFIX = 0x0e, SCOPE_OP = 0x10, BUFFER_OP = 0x11, PACKAGE_OP = 0x12,
	METHOD_OP = 0x14, DUAL_NAME_PREFIX = 0x2e, MULTI_NAME_PREFIX = 0x2f,
	EXT_OP_PREFIX = 0x5b, DEVICE_OP = 0x82, ROOT_CHAR = 0x5c,
	PARENT_PREFIX = 0x5e, RETURN_OP = 0xa4, ONES_OP = 0xff,
};

void x86_buf_free(struct x86_buf *b)
{
	if (!b)
		return;
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static bool grow(struct x86_buf *b, size_t extra)
{
	size_t cap;
	uint8_t *p;

	if (b->oom)
		return false;
	if (extra > BUF_LIMIT || b->len > BUF_LIMIT - extra)
		goto fail;
	if (b->len + extra <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		goto fail;
	b->data = p;
	b->cap = cap;
	return true;
fail:
	b->oom = true;
	return false;
}

static void poison(struct x86_buf *b)
{
	b->oom = true;
}

void x86_buf_put(struct x86_buf *b, const void *data, size_t len)
{
	if (!len || !grow(b, len))
		return;
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

void x86_buf_u8(struct x86_buf *b, uint8_t v)
{
	x86_buf_put(b, &v, 1);
}

static void put_le(struct x86_buf *b, uint64_t v, unsigned n)
{
	uint8_t t[8];

	for (unsigned i = 0; i < n; i++)
		t[i] = (uint8_t)(v >> (8 * i));
	x86_buf_put(b, t, n);
}

void x86_buf_u16(struct x86_buf *b, uint16_t v) { put_le(b, v, 2); }
void x86_buf_u32(struct x86_buf *b, uint32_t v) { put_le(b, v, 4); }
void x86_buf_u64(struct x86_buf *b, uint64_t v) { put_le(b, v, 8); }

void x86_buf_zero(struct x86_buf *b, size_t len)
{
	if (!len || !grow(b, len))
		return;
	memset(b->data + b->len, 0, len);
	b->len += len;
}

void x86_buf_align(struct x86_buf *b, size_t align)
{
	x86_buf_zero(b, (align - b->len % align) % align);
}

void x86_buf_set(struct x86_buf *b, size_t off, const void *data, size_t len)
{
	if (b->oom || off > b->len || len > b->len - off)
		return;
	memcpy(b->data + off, data, len);
}

/* Insert @len bytes at @off, shifting what follows. */
static void insert(struct x86_buf *b, size_t off, const uint8_t *data, size_t len)
{
	if (off > b->len) {
		poison(b);
		return;
	}
	if (!grow(b, len))
		return;
	memmove(b->data + off + len, b->data + off, b->len - off);
	memcpy(b->data + off, data, len);
	b->len += len;
}

/* ---- PkgLength (20.2.4) ----------------------------------------------------- */

size_t aml_pkglength_size(size_t body)
{
	/* The encoded value counts the PkgLength bytes themselves. One byte
	 * holds 6 bits; with n follow bytes, 4 + 8n bits. */
	if (body + 1 <= 0x3f)
		return 1;
	if (body + 2 <= 0xfff)
		return 2;
	if (body + 3 <= 0xfffff)
		return 3;
	if (body + 4 <= 0xfffffff)
		return 4;
	return 0;
}

static size_t encode_pkglength(size_t body, uint8_t out[4])
{
	size_t n = aml_pkglength_size(body), v = body + n;

	if (n == 1) {
		out[0] = (uint8_t)v;
	} else if (n) {
		out[0] = (uint8_t)(((n - 1) << 6) | (v & 0xf));
		for (size_t i = 1; i < n; i++)
			out[i] = (uint8_t)(v >> (4 + 8 * (i - 1)));
	}
	return n;
}

void aml_pkglength(struct x86_buf *b, size_t body)
{
	uint8_t t[4];
	size_t n = encode_pkglength(body, t);

	if (!n)
		poison(b);
	else
		x86_buf_put(b, t, n);
}

void aml_end(struct x86_buf *b, size_t mark)
{
	uint8_t t[4];
	size_t n;

	if (b->oom)
		return;
	if (mark > b->len) {
		poison(b);
		return;
	}
	n = encode_pkglength(b->len - mark, t);
	if (!n)
		poison(b);
	else
		insert(b, mark, t, n);
}

/* ---- names (20.2.2) --------------------------------------------------------- */

static bool lead_char(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool name_char(char c)
{
	return lead_char(c) || (c >= '0' && c <= '9');
}

void aml_namestring(struct x86_buf *b, const char *path)
{
	uint8_t segs[255][4];
	size_t nseg = 0;
	bool prefix = false;
	const char *p = path;

	if (!p) {
		poison(b);
		return;
	}
	if (*p == '\\') {
		x86_buf_u8(b, ROOT_CHAR);
		p++;
		prefix = true;
	} else {
		for (; *p == '^'; p++) {
			x86_buf_u8(b, PARENT_PREFIX);
			prefix = true;
		}
	}
	while (*p) {
		size_t len = 0;

		if (nseg == ARRAY_SIZE(segs)) {
			poison(b);
			return;
		}
		while (p[len] && p[len] != '.')
			len++;
		if (len < 1 || len > 4 || !lead_char(p[0])) {
			poison(b);
			return;
		}
		for (size_t i = 0; i < 4; i++) {
			if (i < len && !name_char(p[i])) {
				poison(b);
				return;
			}
			segs[nseg][i] = i < len ? (uint8_t)p[i] : '_';
		}
		nseg++;
		p += len;
		if (*p == '.') {
			p++;
			if (!*p) {
				poison(b);
				return;
			}
		}
	}
	if (nseg == 0) {
		if (!prefix)
			poison(b);
		else
			x86_buf_u8(b, 0x00);   /* NullName */
		return;
	}
	if (nseg == 2) {
		x86_buf_u8(b, DUAL_NAME_PREFIX);
	} else if (nseg > 2) {
		x86_buf_u8(b, MULTI_NAME_PREFIX);
		x86_buf_u8(b, (uint8_t)nseg);
	}
	x86_buf_put(b, segs, nseg * 4);
}

/* ---- data (20.2.3) ------------------------------------------------------------ */

void aml_integer(struct x86_buf *b, uint64_t v)
{
	if (v == 0) {
		x86_buf_u8(b, ZERO_OP);
	} else if (v == 1) {
		x86_buf_u8(b, ONE_OP);
	} else if (v == ~0ull) {
		x86_buf_u8(b, ONES_OP);   /* 64-bit in a revision 2 table */
	} else if (v <= 0xff) {
		x86_buf_u8(b, BYTE_PREFIX);
		x86_buf_u8(b, (uint8_t)v);
	} else if (v <= 0xffff) {
		x86_buf_u8(b, WORD_PREFIX);
		x86_buf_u16(b, (uint16_t)v);
	} else if (v <= 0xffffffffull) {
		x86_buf_u8(b, DWORD_PREFIX);
		x86_buf_u32(b, (uint32_t)v);
	} else {
		x86_buf_u8(b, QWORD_PREFIX);
		x86_buf_u64(b, v);
	}
}

void aml_string(struct x86_buf *b, const char *s)
{
	if (!s) {
		poison(b);
		return;
	}
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c > 0x7f) {
			poison(b);
			return;
		}
	x86_buf_u8(b, STRING_PREFIX);
	x86_buf_put(b, s, strlen(s) + 1);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

uint32_t aml_eisaid_value(const char *id, bool *ok)
{
	uint32_t letters = 0, product = 0;

	if (ok)
		*ok = false;
	if (!id || strlen(id) != 7)
		return 0;
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			return 0;
		letters = (letters << 5) | (uint32_t)(id[i] - 0x40);
	}
	for (int i = 3; i < 7; i++) {
		int h = hexval(id[i]);
		if (h < 0)
			return 0;
		product = (product << 4) | (uint32_t)h;
	}
	if (ok)
		*ok = true;
	/* Big-endian on the wire: the 15 letter bits, then the product
	 * number; read back as a little-endian DWord. */
	return ((letters >> 8) & 0xff) | ((letters & 0xff) << 8) |
	       ((product >> 8) & 0xff) << 16 | (product & 0xff) << 24;
}

void aml_eisaid(struct x86_buf *b, const char *id)
{
	bool ok;
	uint32_t v = aml_eisaid_value(id, &ok);

	if (!ok) {
		poison(b);
		return;
	}
	x86_buf_u8(b, DWORD_PREFIX);
	x86_buf_u32(b, v);
}

/* Buffer: BufferOp PkgLength BufferSize ByteList. The size is inserted at
 * the end, in front of the bytes, then the PkgLength in front of it. */
static size_t buffer_begin(struct x86_buf *b)
{
	x86_buf_u8(b, BUFFER_OP);
	return b->len;
}

static void buffer_end(struct x86_buf *b, size_t mark)
{
	struct x86_buf size = { 0 };

	if (b->oom)
		return;
	if (mark > b->len) {
		poison(b);
		return;
	}
	aml_integer(&size, b->len - mark);
	if (size.oom) {
		poison(b);
	} else {
		insert(b, mark, size.data, size.len);
		aml_end(b, mark);
	}
	x86_buf_free(&size);
}

void aml_buffer(struct x86_buf *b, const void *data, size_t len)
{
	size_t mark = buffer_begin(b);

	x86_buf_put(b, data, len);
	buffer_end(b, mark);
}

/* ---- objects (20.2.5) ------------------------------------------------------------ */

void aml_name(struct x86_buf *b, const char *path)
{
	x86_buf_u8(b, NAME_OP);
	aml_namestring(b, path);
}

size_t aml_scope_begin(struct x86_buf *b, const char *path)
{
	size_t mark;

	x86_buf_u8(b, SCOPE_OP);
	mark = b->len;
	aml_namestring(b, path);
	return mark;
}

size_t aml_device_begin(struct x86_buf *b, const char *path)
{
	size_t mark;

	x86_buf_u8(b, EXT_OP_PREFIX);
	x86_buf_u8(b, DEVICE_OP);
	mark = b->len;
	aml_namestring(b, path);
	return mark;
}

size_t aml_method_begin(struct x86_buf *b, const char *path, unsigned nargs, bool serialized)
{
	size_t mark;

	if (nargs > 7)
		poison(b);
	x86_buf_u8(b, METHOD_OP);
	mark = b->len;
	aml_namestring(b, path);
	x86_buf_u8(b, (uint8_t)((nargs & 7) | (serialized ? 1u << 3 : 0)));
	return mark;
}

size_t aml_package_begin(struct x86_buf *b, uint8_t nelems)
{
	size_t mark;

	x86_buf_u8(b, PACKAGE_OP);
	mark = b->len;
	x86_buf_u8(b, nelems);
	return mark;
}

void aml_return_integer(struct x86_buf *b, uint64_t v)
{
	x86_buf_u8(b, RETURN_OP);
	aml_integer(b, v);
}

/* ---- resource descriptors (6.4) --------------------------------------------------- */

size_t aml_restemplate_begin(struct x86_buf *b)
{
	return buffer_begin(b);
}

void aml_restemplate_end(struct x86_buf *b, size_t mark)
{
	/* End tag; checksum 0 means "treat as correct". */
	x86_buf_u8(b, 0x79);
	x86_buf_u8(b, 0x00);
	buffer_end(b, mark);
}

void aml_res_io(struct x86_buf *b, uint16_t base, uint8_t len)
{
	x86_buf_u8(b, 0x47);      /* small item 0x08, 7 bytes */
	x86_buf_u8(b, 0x01);      /* decodes 16 address bits */
	x86_buf_u16(b, base);     /* _MIN */
	x86_buf_u16(b, base);     /* _MAX */
	x86_buf_u8(b, 0x01);      /* _ALN */
	x86_buf_u8(b, len);       /* _LEN */
}

void aml_res_irq_noflags(struct x86_buf *b, uint8_t irq)
{
	if (irq > 15) {
		poison(b);
		return;
	}
	x86_buf_u8(b, 0x22);      /* small item 0x04, 2 bytes: no flags byte */
	x86_buf_u16(b, (uint16_t)(1u << irq));
}

void aml_res_interrupt(struct x86_buf *b, uint32_t gsi, bool level, bool active_low, bool shared)
{
	uint8_t flags = 0x01;     /* resource consumer */

	if (!level)
		flags |= 1u << 1;
	if (active_low)
		flags |= 1u << 2;
	if (shared)
		flags |= 1u << 3;
	x86_buf_u8(b, 0x89);      /* large item 0x09: extended interrupt */
	x86_buf_u16(b, 6);
	x86_buf_u8(b, flags);
	x86_buf_u8(b, 1);         /* one interrupt in the table */
	x86_buf_u32(b, gsi);
}

void aml_res_memory32_fixed(struct x86_buf *b, uint32_t base, uint32_t len, bool rw)
{
	x86_buf_u8(b, 0x86);      /* large item 0x06 */
	x86_buf_u16(b, 9);
	x86_buf_u8(b, rw ? 1 : 0);
	x86_buf_u32(b, base);
	x86_buf_u32(b, len);
}

void aml_res_qword_memory(struct x86_buf *b, uint64_t base, uint64_t len, bool cacheable,
			  bool producer)
{
	if (!len || base + (len - 1) < base) {
		poison(b);
		return;
	}
	x86_buf_u8(b, 0x8a);      /* large item 0x0a: QWord address space */
	x86_buf_u16(b, 43);
	x86_buf_u8(b, 0);         /* memory range */
	/* _MAF, _MIF fixed, positive decode, bit 0 consumer. */
	x86_buf_u8(b, (uint8_t)((1u << 3) | (1u << 2) | (producer ? 0 : 1)));
	/* _RW read-write; _MEM cacheable (1) or non-cacheable (0). */
	x86_buf_u8(b, (uint8_t)(0x01 | (cacheable ? 1u << 1 : 0)));
	x86_buf_u64(b, 0);            /* _GRA */
	x86_buf_u64(b, base);         /* _MIN */
	x86_buf_u64(b, base + len - 1); /* _MAX */
	x86_buf_u64(b, 0);            /* _TRA */
	x86_buf_u64(b, len);          /* _LEN */
}

/* Word (16-bit) address space descriptor (6.4.3.5.3) of a producer with
 * fixed bounds and positive decode. */
static void word_space(struct x86_buf *b, uint8_t type, uint8_t type_flags, uint16_t min,
		       uint16_t max)
{
	x86_buf_u8(b, 0x88);      /* large item 0x08: Word address space */
	x86_buf_u16(b, 13);
	x86_buf_u8(b, type);
	x86_buf_u8(b, (1u << 3) | (1u << 2));  /* _MAF, _MIF; producer */
	x86_buf_u8(b, type_flags);
	x86_buf_u16(b, 0);        /* _GRA */
	x86_buf_u16(b, min);      /* _MIN */
	x86_buf_u16(b, max);      /* _MAX */
	x86_buf_u16(b, 0);        /* _TRA */
	x86_buf_u16(b, (uint16_t)(max - min + 1)); /* _LEN */
}

void aml_res_word_io(struct x86_buf *b, uint16_t min, uint16_t max)
{
	if (min > max || (min == 0 && max == 0xffff)) {
		poison(b);       /* no room for a 64 KiB length */
		return;
	}
	word_space(b, 1, 0x03 /* _RNG: entire range */, min, max);
}

void aml_res_word_bus_number(struct x86_buf *b, uint16_t min, uint16_t max)
{
	if (min > max || max > 255) {
		poison(b);
		return;
	}
	word_space(b, 2, 0, min, max);
}

void aml_res_dword_memory(struct x86_buf *b, uint32_t base, uint32_t len, bool cacheable,
			  bool producer)
{
	if (!len || base + (len - 1) < base) {
		poison(b);
		return;
	}
	x86_buf_u8(b, 0x87);      /* large item 0x07: DWord address space */
	x86_buf_u16(b, 23);
	x86_buf_u8(b, 0);         /* memory range */
	x86_buf_u8(b, (uint8_t)((1u << 3) | (1u << 2) | (producer ? 0 : 1)));
	x86_buf_u8(b, (uint8_t)(0x01 | (cacheable ? 1u << 1 : 0)));
	x86_buf_u32(b, 0);            /* _GRA */
	x86_buf_u32(b, base);         /* _MIN */
	x86_buf_u32(b, base + len - 1); /* _MAX */
	x86_buf_u32(b, 0);            /* _TRA */
	x86_buf_u32(b, len);          /* _LEN */
}
