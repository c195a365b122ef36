/* SPDX-License-Identifier: MIT */
/* QEMU's fw_cfg, as docs/specs/fw_cfg.rst in QEMU describes it: a selector,
 * a byte-wide data port and the DMA interface. Items are read-only to the
 * guest (DMA writes fail with the error bit). Reads past the end of an
 * item, or of an item that does not exist, give zeros, through the data
 * port and through DMA alike.
 *
 * Files are kept sorted by name and numbered from FW_CFG_FILE_FIRST in
 * that order, so the same set of files always gets the same keys. Saved
 * state is only the guest's cursor (selected key, offset, DMA address
 * high half): the machine adds the same items again before restoring. */
#include <stdlib.h>
#include <string.h>

#include "devices/legacy/legacy.h"

#define REG_SELECTOR 0
#define REG_DATA     1
#define REG_DMA      4 /* 8 bytes, big-endian; 4..7 high half, 8..11 low half */
#define REG_END      12

#define KEY_WRITE_CHANNEL 0x4000
#define KEY_ARCH_LOCAL    0x8000

#define ID_TRADITIONAL 0x01
#define ID_DMA         0x02

#define DMA_CTL_ERROR  0x01
#define DMA_CTL_READ   0x02
#define DMA_CTL_SKIP   0x04
#define DMA_CTL_SELECT 0x08
#define DMA_CTL_WRITE  0x10

#define MAX_ITEMS 64
#define MAX_FILES 1024
#define FILE_NAME_MAX 56 /* including the NUL */
#define DIR_ENTRY 64

#define STATE_VERSION 1u

static const uint8_t dma_signature[8] = { 'Q', 'E', 'M', 'U', ' ', 'C', 'F', 'G' };

struct fwitem {
	uint16_t key;
	uint32_t len;
	uint8_t *data;
};

struct fwfile {
	char name[FILE_NAME_MAX];
	uint32_t len;
	uint8_t *data;
};

struct fwcfg {
	pthread_mutex_t lock;
	const struct vmkit_gmem *mem; /* NULL: no DMA interface */
	struct fwitem items[MAX_ITEMS];
	unsigned n_items;
	struct fwfile *files; /* sorted by name */
	unsigned n_files;
	uint8_t *dir;         /* FW_CFG_FILE_DIR contents */
	uint32_t dir_len;
	uint16_t key;         /* selected */
	uint32_t off;         /* into the selected item */
	uint32_t dma_hi;
};

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* The selected item's bytes; an unknown key is an empty item. */
static void lookup(const struct fwcfg *f, uint16_t key, const uint8_t **data, uint32_t *len)
{
	key &= (uint16_t)~KEY_WRITE_CHANNEL;
	*data = NULL;
	*len = 0;
	if (key == FW_CFG_FILE_DIR) {
		*data = f->dir;
		*len = f->dir_len;
		return;
	}
	if (key >= FW_CFG_FILE_FIRST && key < KEY_ARCH_LOCAL) {
		if ((unsigned)(key - FW_CFG_FILE_FIRST) < f->n_files) {
			const struct fwfile *e = &f->files[key - FW_CFG_FILE_FIRST];
			*data = e->data;
			*len = e->len;
		}
		return;
	}
	for (unsigned i = 0; i < f->n_items; i++) {
		if (f->items[i].key == key) {
			*data = f->items[i].data;
			*len = f->items[i].len;
			return;
		}
	}
}

static void select_key(struct fwcfg *f, uint16_t key)
{
	f->key = key;
	f->off = 0;
}

static uint8_t data_byte(struct fwcfg *f)
{
	const uint8_t *d;
	uint32_t len;

	lookup(f, f->key, &d, &len);
	if (f->off >= len)
		return 0;
	return d[f->off++];
}

/* ---- DMA ---------------------------------------------------------------- */

static const uint8_t zero_page[4096];

/* Zeros into guest memory, a page at a time: the guest's length bounds the
 * work, never an allocation. */
static bool dma_zero(const struct vmkit_gmem *mem, uint64_t gpa, uint64_t len)
{
	while (len) {
		size_t n = len < sizeof(zero_page) ? (size_t)len : sizeof(zero_page);
		if (vmkit__gmem_write_dma(mem, gpa, zero_page, n) < 0)
			return false;
		gpa += n;
		len -= n;
	}
	return true;
}

/* One FWCfgDmaAccess at guest address @desc. Returns the status word to
 * write back: 0 or DMA_CTL_ERROR. */
static uint32_t dma_transfer(struct fwcfg *f, uint64_t desc)
{
	uint8_t raw[16];
	uint32_t control, length, len;
	uint64_t addr;
	const uint8_t *d;

	if (vmkit__gmem_read(f->mem, desc, raw, sizeof(raw)) < 0)
		return DMA_CTL_ERROR;
	control = get_be32(raw);
	length = get_be32(raw + 4);
	addr = get_be64(raw + 8);

	if (control & DMA_CTL_SELECT)
		select_key(f, (uint16_t)(control >> 16));
	if (!(control & (DMA_CTL_READ | DMA_CTL_WRITE | DMA_CTL_SKIP)) || length == 0)
		return 0;
	if (!(control & DMA_CTL_READ) && (control & DMA_CTL_WRITE))
		return DMA_CTL_ERROR; /* every item is read-only */
	if ((control & DMA_CTL_READ) && addr + length < addr)
		return DMA_CTL_ERROR;

	lookup(f, f->key, &d, &len);
	if (f->off < len) {
		uint32_t n = len - f->off < length ? len - f->off : length;
		if ((control & DMA_CTL_READ) && vmkit__gmem_write_dma(f->mem, addr, d + f->off, n) < 0)
			return DMA_CTL_ERROR;
		f->off += n;
		addr += n;
		length -= n;
	}
	if ((control & DMA_CTL_READ) && length && !dma_zero(f->mem, addr, length))
		return DMA_CTL_ERROR;
	return 0;
}

static void dma_start(struct fwcfg *f, uint64_t desc)
{
	uint8_t status[4];

	put_be32(status, dma_transfer(f, desc));
	/* Only the control word is written back; if even that address is
	 * not memory, the guest gets nothing to poll (and sees no change). */
	vmkit__gmem_write_dma(f->mem, desc, status, sizeof(status));
	f->dma_hi = 0;
}

/* ---- ports ---------------------------------------------------------------- */

static void fw_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct fwcfg *f = opaque;
	uint8_t *b = data;

	memset(data, 0xff, len); /* the selector is write-only */
	pthread_mutex_lock(&f->lock);
	if (offset == REG_DATA) {
		for (uint32_t i = 0; i < len; i++)
			b[i] = data_byte(f);
	} else if (offset >= REG_DMA && offset < REG_END && f->mem) {
		for (uint32_t i = 0; i < len && offset + i < REG_END; i++)
			b[i] = dma_signature[offset - REG_DMA + i];
	}
	pthread_mutex_unlock(&f->lock);
}

static void fw_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct fwcfg *f = opaque;
	const uint8_t *b = data;

	pthread_mutex_lock(&f->lock);
	if (offset == REG_SELECTOR && len == 2) {
		select_key(f, (uint16_t)(b[0] | b[1] << 8));
	} else if (f->mem && offset == REG_DMA && len == 4) {
		f->dma_hi = get_be32(b);
	} else if (f->mem && offset == REG_DMA + 4 && len == 4) {
		dma_start(f, (uint64_t)f->dma_hi << 32 | get_be32(b));
	} else if (f->mem && offset == REG_DMA && len == 8) {
		dma_start(f, get_be64(b));
	}
	/* data port writes are ignored, as in QEMU since 2.4 */
	pthread_mutex_unlock(&f->lock);
}

const vmkit_io_ops fwcfg_ops = { sizeof(vmkit_io_ops), 0, fw_read, fw_write };

/* ---- items ---------------------------------------------------------------- */

static int copy_data(const void *data, size_t len, uint8_t **out)
{
	*out = NULL;
	if (len > UINT32_MAX)
		return vmkit__err(-EINVAL, "fw_cfg item of %zu bytes is too large", len);
	if (len && !data)
		return vmkit__err(-EINVAL, "fw_cfg item without data");
	if (!len)
		return 0;
	*out = malloc(len);
	if (!*out)
		return vmkit__err(-ENOMEM, "out of memory for a %zu-byte fw_cfg item", len);
	memcpy(*out, data, len);
	return 0;
}

static int set_item(struct fwcfg *f, uint16_t key, const void *data, size_t len)
{
	uint8_t *copy;
	unsigned i;
	int ret;

	if ((ret = copy_data(data, len, &copy)) < 0)
		return ret;
	pthread_mutex_lock(&f->lock);
	for (i = 0; i < f->n_items && f->items[i].key != key; i++)
		;
	if (i == MAX_ITEMS) {
		pthread_mutex_unlock(&f->lock);
		free(copy);
		return vmkit__err(-ENOSPC, "too many fw_cfg items (max %d)", MAX_ITEMS);
	}
	if (i == f->n_items)
		f->n_items++;
	else
		free(f->items[i].data);
	f->items[i] = (struct fwitem){ key, (uint32_t)len, copy };
	pthread_mutex_unlock(&f->lock);
	return 0;
}

int fwcfg_add_item(struct fwcfg *f, uint16_t key, const void *data, size_t len)
{
	bool generic = key < FW_CFG_FILE_FIRST;
	bool arch = key >= KEY_ARCH_LOCAL && !(key & KEY_WRITE_CHANNEL);

	if ((!generic && !arch) || key == FW_CFG_SIGNATURE || key == FW_CFG_ID ||
	    key == FW_CFG_FILE_DIR)
		return vmkit__err(-EINVAL, "fw_cfg key 0x%04x cannot be set as an item", key);
	return set_item(f, key, data, len);
}

int fwcfg_add_u16(struct fwcfg *f, uint16_t key, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	return fwcfg_add_item(f, key, b, sizeof(b));
}

int fwcfg_add_u32(struct fwcfg *f, uint16_t key, uint32_t v)
{
	uint8_t b[4];

	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	return fwcfg_add_item(f, key, b, sizeof(b));
}

int fwcfg_add_u64(struct fwcfg *f, uint16_t key, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	return fwcfg_add_item(f, key, b, sizeof(b));
}

/* FWCfgFiles: be32 count, then {be32 size, be16 select, be16 reserved,
 * char name[56]} per file, in key order. */
static int build_dir(const struct fwfile *files, unsigned n, uint8_t **out, uint32_t *out_len)
{
	size_t len = 4 + (size_t)n * DIR_ENTRY;
	uint8_t *d = calloc(1, len);

	if (!d)
		return vmkit__err(-ENOMEM, "out of memory for the fw_cfg directory");
	put_be32(d, n);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = d + 4 + (size_t)i * DIR_ENTRY;
		put_be32(e, files[i].len);
		put_be16(e + 4, (uint16_t)(FW_CFG_FILE_FIRST + i));
		memcpy(e + 8, files[i].name, FILE_NAME_MAX);
	}
	*out = d;
	*out_len = (uint32_t)len;
	return 0;
}

int fwcfg_add_file(struct fwcfg *f, const char *name, const void *data, size_t len)
{
	size_t nlen = name ? strnlen(name, FILE_NAME_MAX) : 0;
	struct fwfile *files, nf;
	uint8_t *dir;
	uint32_t dir_len;
	unsigned pos;
	int ret;

	if (nlen == 0 || nlen >= FILE_NAME_MAX)
		return vmkit__err(-EINVAL, "fw_cfg file name must be 1 to %d characters",
				  FILE_NAME_MAX - 1);
	memset(&nf, 0, sizeof(nf));
	memcpy(nf.name, name, nlen);
	nf.len = (uint32_t)len;
	if ((ret = copy_data(data, len, &nf.data)) < 0)
		return ret;

	pthread_mutex_lock(&f->lock);
	for (pos = 0; pos < f->n_files; pos++) {
		int c = strcmp(f->files[pos].name, nf.name);
		if (c == 0) {
			ret = vmkit__err(-EEXIST, "fw_cfg file %s already exists", nf.name);
			goto fail;
		}
		if (c > 0)
			break;
	}
	if (f->n_files == MAX_FILES) {
		ret = vmkit__err(-ENOSPC, "too many fw_cfg files (max %d)", MAX_FILES);
		goto fail;
	}
	files = realloc(f->files, (f->n_files + 1) * sizeof(*files));
	if (!files) {
		ret = vmkit__err(-ENOMEM, "out of memory for fw_cfg files");
		goto fail;
	}
	f->files = files;
	memmove(&files[pos + 1], &files[pos], (f->n_files - pos) * sizeof(*files));
	files[pos] = nf;
	if ((ret = build_dir(files, f->n_files + 1, &dir, &dir_len)) < 0) {
		memmove(&files[pos], &files[pos + 1], (f->n_files - pos) * sizeof(*files));
		goto fail;
	}
	f->n_files++;
	free(f->dir);
	f->dir = dir;
	f->dir_len = dir_len;
	pthread_mutex_unlock(&f->lock);
	return 0;
fail:
	pthread_mutex_unlock(&f->lock);
	free(nf.data);
	return ret;
}

int fwcfg_new(const struct vmkit_gmem *mem, struct fwcfg **res)
{
	struct fwcfg *f = calloc(1, sizeof(*f));
	uint8_t id[4] = { ID_TRADITIONAL | (mem ? ID_DMA : 0), 0, 0, 0 };
	int ret;

	if (!f)
		return vmkit__err(-ENOMEM, "out of memory for fw_cfg");
	pthread_mutex_init(&f->lock, NULL);
	f->mem = mem;
	if ((ret = set_item(f, FW_CFG_SIGNATURE, "QEMU", 4)) < 0 ||
	    (ret = set_item(f, FW_CFG_ID, id, sizeof(id))) < 0 ||
	    (ret = build_dir(NULL, 0, &f->dir, &f->dir_len)) < 0) {
		fwcfg_free(f);
		return ret;
	}
	*res = f;
	return 0;
}

void fwcfg_free(struct fwcfg *f)
{
	if (!f)
		return;
	for (unsigned i = 0; i < f->n_items; i++)
		free(f->items[i].data);
	for (unsigned i = 0; i < f->n_files; i++)
		free(f->files[i].data);
	free(f->files);
	free(f->dir);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

int fwcfg_save(struct fwcfg *f, struct dev_state *out)
{
	struct dev_state_writer w;

	dev_state_begin(&w, "FWCF");
	pthread_mutex_lock(&f->lock);
	dev_state_put_u16(&w, f->key);
	dev_state_put_u32(&w, f->off);
	dev_state_put_u32(&w, f->dma_hi);
	pthread_mutex_unlock(&f->lock);
	return dev_state_finish(&w, STATE_VERSION, out);
}

int fwcfg_restore(struct fwcfg *f, const uint8_t *data, size_t len)
{
	struct dev_state_reader r;
	uint16_t key;
	uint32_t off, hi;
	int ret;

	if ((ret = dev_state_open(&r, data, len, "FWCF", STATE_VERSION)) < 0)
		return ret;
	key = dev_state_get_u16(&r);
	off = dev_state_get_u32(&r);
	hi = dev_state_get_u32(&r);
	if ((ret = dev_state_close(&r)) < 0)
		return ret;
	/* Any cursor is safe: reads past an item's end give zeros. */
	pthread_mutex_lock(&f->lock);
	f->key = key;
	f->off = off;
	f->dma_hi = hi;
	pthread_mutex_unlock(&f->lock);
	return 0;
}
