/* SPDX-License-Identifier: MIT */
/* virtio-blk over a temporary raw image, driven through the device core by
 * the unit-test driver (vqdriver.h), with the device's completions running
 * on a real event loop on a thread of the test. Results are checked
 * against the host file itself.
 *
 * To hold a request inside a worker (several in flight, out-of-order
 * completion, flush ordering, reset and save while busy), its data buffer
 * lies in guest memory registered with userfaultfd: the worker's
 * preadv/pwritev blocks on the missing page until the test supplies it. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/devices.h"
#include "loop/loop.h"
#include "vqdriver.h"

#define T_IN 0u
#define T_OUT 1u
#define T_FLUSH 4u
#define T_GET_ID 8u
#define T_DISCARD 11u
#define T_WRITE_ZEROES 13u
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2
#define F_RO 5
#define F_SIZE_MAX 1
#define F_SEG_MAX 2
#define F_BLK_SIZE 6
#define F_FLUSH 9
#define F_DISCARD 13
#define F_WRITE_ZEROES 14

#define IMG_SECTORS 2048u /* 1 MiB */
#define QSIZE 256
#define SENTINEL 0xee
#define UFFD_GPA 0x40000000ull
#define PAGE 4096u

/* ---- the fixture: image, loop thread, guest memory, device ------------------ */

static struct {
	char path[PATH_MAX];
	int img;                      /* our own read-only fd, for checking */
	uint64_t img_bytes;
	struct vmkit_loop *loop;
	pthread_t loop_thread;
	bool loop_running;
	const vmkit_virtio_ops *ops;
	void *opaque;
	struct vqd_mem m;
	struct vqd_queue q;
	struct vqd_transport t;
	struct vmkit_virtio_dev dev;
	bool have_dev, have_mem;
} T = { .img = -1 };

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 7 + off / 512 + 1);
}

/* Where images are made: $TMPDIR or /tmp, unless a test chooses. */
static const char *img_dir;

/* A raw image of @sectors 512-byte sectors filled with pattern(),
 * flushed to disk (so that its blocks are allocated). */
static void make_image(char *path, uint64_t sectors)
{
	const char *dir = img_dir ? img_dir : getenv("TMPDIR");
	uint8_t buf[4096];
	int fd;

	snprintf(path, PATH_MAX, "%s/vmkit-blk-XXXXXX", dir && *dir ? dir : "/tmp");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	for (uint64_t off = 0; off < sectors * 512; off += sizeof(buf)) {
		size_t n = sectors * 512 - off < sizeof(buf) ? (size_t)(sectors * 512 - off) : sizeof(buf);

		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(off + i);
		cr_assert_eq(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	}
	cr_assert_eq(fsync(fd), 0);
	close(fd);
}

static void *loop_main(void *arg)
{
	vmkit__loop_run(arg);
	return NULL;
}

static void loop_start(void)
{
	cr_assert_eq(pthread_create(&T.loop_thread, NULL, loop_main, T.loop), 0);
	T.loop_running = true;
}

static void loop_stop(void)
{
	if (!T.loop_running)
		return;
	vmkit__loop_stop(T.loop);
	pthread_join(T.loop_thread, NULL);
	T.loop_running = false;
}

static int create_dev_as(const char *path, bool readonly, const char *serial,
			 uint32_t block_size, const vmkit_virtio_ops **ops, void **opaque)
{
	vmkit_disk_config cfg = VMKIT_DISK_CONFIG_INIT;

	cfg.path = path;
	cfg.readonly = readonly;
	cfg.serial = serial;
	cfg.block_size = block_size;
	return virtio_blk_create(&cfg, T.loop, ops, opaque);
}

/* The fixture's device. */
static int create_dev(const char *path, bool readonly, const char *serial, uint32_t block_size)
{
	return create_dev_as(path, readonly, serial, block_size, &T.ops, &T.opaque);
}

/* The device core over the blk device, the queue set up with @features. */
static void attach(uint64_t features)
{
	vqd_transport_init(&T.t);
	cr_assert_eq(virtio_dev_init(&T.dev, T.ops, T.opaque, &T.m.gm, &T.t.tr, &T.t, "blk0"), 0);
	T.have_dev = true;
	vqd_queue_init(&T.q, &T.m, QSIZE);
	cr_assert(vqd_status_live(vqd_handshake(&T.dev, features,
						(struct vqd_queue *[]){ &T.q }, 1)));
}

/* Image of @sectors, device (read-only or not), loop running, driver live. */
static void start_full(uint64_t sectors, bool readonly, const char *serial, uint32_t block_size,
		       uint64_t features)
{
	make_image(T.path, sectors);
	T.img_bytes = sectors * 512;
	T.img = open(T.path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(T.img, 0);
	cr_assert_eq(vmkit__loop_new(&T.loop), 0);
	cr_assert_eq(create_dev(T.path, readonly, serial, block_size), 0, "%s", vmkit_last_error());
	vqd_mem_init(&T.m, 0, 16u << 20);
	T.have_mem = true;
	attach(features);
	loop_start();
}

static void start(void)
{
	start_full(IMG_SECTORS, false, "vmkit-test-serial", 512, VQD_FEATURES_ALL);
}

static void stop(void)
{
	loop_stop();
	if (T.have_dev)
		virtio_dev_destroy(&T.dev);
	T.have_dev = false;
	if (T.have_mem)
		vqd_mem_destroy(&T.m);
	T.have_mem = false;
	vmkit__loop_free(T.loop);
	T.loop = NULL;
	if (T.img >= 0)
		close(T.img);
	T.img = -1;
	if (T.path[0])
		unlink(T.path);
	T.path[0] = 0;
}

/* ---- requests ------------------------------------------------------------------ */

static uint8_t *hva(uint64_t gpa, uint64_t len)
{
	return vqd_hva(&T.m, gpa, len);
}

static uint64_t alloc_buf(uint32_t len, uint8_t fill)
{
	uint64_t gpa = vqd_alloc(&T.m, len, 16);

	memset(hva(gpa, len), fill, len);
	return gpa;
}

static uint64_t make_hdr(uint32_t type, uint64_t sector)
{
	uint64_t gpa = vqd_alloc(&T.m, 16, 16);
	uint8_t *h = hva(gpa, 16);

	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	return gpa;
}

static uint64_t make_status(void)
{
	return alloc_buf(1, SENTINEL);
}

static uint8_t status_at(uint64_t gpa)
{
	return __atomic_load_n(hva(gpa, 1), __ATOMIC_ACQUIRE);
}

/* Publish a chain of @n buffers and kick the queue; returns the head. */
static uint16_t send(const struct vqd_buf *bufs, unsigned n)
{
	int head = vqd_add_chain(&T.q, bufs, n);

	vqd_publish(&T.q, (uint16_t)head);
	vqd_kick(&T.dev, 0);
	return (uint16_t)head;
}

/* A request: header, one data buffer (device-writable when @write_data),
 * status byte. *@st gets the status byte's gpa. */
static uint16_t send_req(uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
			 bool writable_data, uint64_t *st)
{
	struct vqd_buf b[3];
	unsigned n = 0;

	*st = make_status();
	b[n++] = (struct vqd_buf){ make_hdr(type, sector), 16, false };
	if (len)
		b[n++] = (struct vqd_buf){ data, len, writable_data };
	b[n++] = (struct vqd_buf){ *st, 1, true };
	return send(b, n);
}

static bool wait_used(uint32_t *id, uint32_t *len, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (vqd_get_used(&T.q, id, len))
			return true;
		usleep(1000);
	}
	return vqd_get_used(&T.q, id, len);
}

/* Wait for the used entry of @head (the next one on the ring). */
static uint32_t wait_done(uint16_t head)
{
	uint32_t id, len;

	cr_assert(wait_used(&id, &len, 10000), "request %u never completed", head);
	cr_assert_eq(id, head, "completed %u, expected %u", id, head);
	return len;
}

/* Send a request with one data buffer and wait for it; returns the status
 * byte, *@used (if not NULL) the used length. */
static uint8_t run_req(uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
		       bool writable_data, uint32_t *used)
{
	uint64_t st;
	uint16_t head = send_req(type, sector, data, len, writable_data, &st);
	uint32_t l = wait_done(head);

	if (used)
		*used = l;
	return status_at(st);
}

/* Segments for discard / write zeroes. */
static uint64_t make_segs(const uint64_t *sector, const uint32_t *n, const uint32_t *flags,
			  unsigned count)
{
	uint64_t gpa = vqd_alloc(&T.m, 16ull * count, 16);
	uint8_t *p = hva(gpa, 16ull * count);

	for (unsigned i = 0; i < count; i++) {
		memcpy(p + 16 * i, &sector[i], 8);
		memcpy(p + 16 * i + 8, &n[i], 4);
		memcpy(p + 16 * i + 12, &flags[i], 4);
	}
	return gpa;
}

static uint8_t run_seg(uint32_t type, uint64_t sector, uint32_t n, uint32_t flags)
{
	uint64_t segs = make_segs(&sector, &n, &flags, 1);

	return run_req(type, 0, segs, 16, false, NULL);
}

/* The image's bytes [@off, @off + @len) read from the host file. */
static void file_read(uint64_t off, void *buf, size_t len)
{
	cr_assert_eq(pread(T.img, buf, len, (off_t)off), (ssize_t)len);
}

/* Is the image still exactly as make_image wrote it? */
static bool file_pristine(void)
{
	uint8_t *b = malloc(T.img_bytes);
	bool ok = true;

	cr_assert_not_null(b);
	file_read(0, b, T.img_bytes);
	for (uint64_t i = 0; i < T.img_bytes && ok; i++)
		ok = b[i] == pattern(i);
	free(b);
	return ok;
}

static bool all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

static uint32_t cfg32(uint32_t off)
{
	uint32_t v;

	vqd_lock(&T.dev);
	virtio_dev_config_read(&T.dev, off, &v, 4);
	vqd_unlock(&T.dev);
	return v;
}

static uint64_t cfg64(uint32_t off)
{
	return cfg32(off) | (uint64_t)cfg32(off + 4) << 32;
}

/* ---- userfaultfd: buffers that hold a worker --------------------------------- */

struct uffd_area {
	int fd;
	uint8_t *base;
	size_t len;
};

static struct uffd_area U = { .fd = -1 };

/* @pages of guest memory at UFFD_GPA whose first touch blocks. */
static void uffd_setup(unsigned pages)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;

	U.fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
#ifdef USERFAULTFD_IOC_NEW
	if (U.fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			U.fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
		}
	}
#endif
	cr_assert_geq(U.fd, 0,
		      "userfaultfd (needed to hold a request inside a worker) is unavailable: %s",
		      strerror(errno));
	cr_assert_eq(ioctl(U.fd, UFFDIO_API, &api), 0, "UFFDIO_API: %s", strerror(errno));
	U.len = (size_t)pages * PAGE;
	U.base = mmap(NULL, U.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(U.base, MAP_FAILED);
	reg.range.start = (uintptr_t)U.base;
	reg.range.len = U.len;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	cr_assert_eq(ioctl(U.fd, UFFDIO_REGISTER, &reg), 0, "UFFDIO_REGISTER: %s", strerror(errno));
	cr_assert_geq(vmkit__gmem_add_host(&T.m.gm, UFFD_GPA, U.len, U.base, 0), 0);
}

/* Wait for a thread to fault on the area; returns the page index. */
static unsigned uffd_wait_fault(void)
{
	struct pollfd p = { .fd = U.fd, .events = POLLIN };
	struct uffd_msg msg;

	cr_assert_eq(poll(&p, 1, 10000), 1, "no worker touched the held buffer");
	cr_assert_eq(read(U.fd, &msg, sizeof(msg)), (ssize_t)sizeof(msg));
	cr_assert_eq(msg.event, UFFD_EVENT_PAGEFAULT);
	return (unsigned)((msg.arg.pagefault.address - (uintptr_t)U.base) / PAGE);
}

/* Supply page @i filled with @fill; the blocked thread goes on. */
static void uffd_release(unsigned i, uint8_t fill)
{
	static uint8_t src[PAGE];
	struct uffdio_copy c;

	memset(src, fill, sizeof(src));
	c.dst = (uintptr_t)U.base + (uint64_t)i * PAGE;
	c.src = (uintptr_t)src;
	c.len = PAGE;
	c.mode = 0;
	c.copy = 0;
	cr_assert_eq(ioctl(U.fd, UFFDIO_COPY, &c), 0, "UFFDIO_COPY: %s", strerror(errno));
}

static void uffd_teardown(void)
{
	if (U.fd >= 0)
		close(U.fd);
	U.fd = -1;
	if (U.base)
		munmap(U.base, U.len);
	U.base = NULL;
}

static void teardown(void)
{
	/* Closing the userfaultfd first lets a worker still held (after a
	 * failed assertion) finish, so that stopping the device cannot hang. */
	if (U.fd >= 0)
		close(U.fd);
	U.fd = -1;
	stop();
	uffd_teardown();
}

TestSuite(virtio_blk, .fini = teardown);

/* ---- configuration and creation ------------------------------------------------ */

Test(virtio_blk, config_space_and_features)
{
	uint64_t f;

	start();
	f = vqd_device_features(&T.dev);
	cr_assert(f & VIRTIO_BIT(F_FLUSH));
	cr_assert(f & VIRTIO_BIT(F_BLK_SIZE));
	cr_assert(f & VIRTIO_BIT(F_SEG_MAX));
	cr_assert(f & VIRTIO_BIT(F_SIZE_MAX));
	cr_assert(f & VIRTIO_BIT(F_DISCARD));
	cr_assert(f & VIRTIO_BIT(F_WRITE_ZEROES));
	cr_assert_not(f & VIRTIO_BIT(F_RO));
	cr_assert_eq(cfg64(0), IMG_SECTORS, "capacity in 512-byte sectors");
	cr_assert_eq(cfg32(20), 512, "blk_size");
	cr_assert_eq(cfg32(12), QSIZE - 2, "seg_max");
	cr_assert_gt(cfg32(8), 0, "size_max");
	cr_assert_gt(cfg32(36), 0, "max_discard_sectors");
	cr_assert_gt(cfg32(40), 0, "max_discard_seg");
	cr_assert_eq(cfg32(44), 1, "discard_sector_alignment");
	cr_assert_gt(cfg32(48), 0, "max_write_zeroes_sectors");
	cr_assert_gt(cfg32(52), 0, "max_write_zeroes_seg");
	cr_assert_eq(cfg32(56) & 0xffffff00u, 0, "unused1 is zero");
	cr_assert_eq(cfg32(56) & 0xff, 1, "write_zeroes_may_unmap");
}

Test(virtio_blk, block_size_and_odd_image_size)
{
	char path[PATH_MAX];
	int fd;

	/* 4 KiB logical blocks; an image whose size is not a whole number
	 * of sectors exposes only the whole ones. */
	make_image(path, 64);
	fd = open(path, O_WRONLY);
	cr_assert_eq(pwrite(fd, "x", 1, 64 * 512), 1);
	close(fd);
	cr_assert_eq(vmkit__loop_new(&T.loop), 0);
	cr_assert_eq(create_dev(path, false, NULL, 4096), 0, "%s", vmkit_last_error());
	vqd_mem_init(&T.m, 0, 0);
	T.have_mem = true;
	attach(VQD_FEATURES_ALL);
	cr_assert_eq(cfg64(0), 64);
	cr_assert_eq(cfg32(20), 4096);
	cr_assert_eq(cfg32(44), 8, "discard alignment in sectors follows the block size");
	unlink(path);
}

Test(virtio_blk, create_refuses_bad_configs)
{
	char path[PATH_MAX];
	const vmkit_virtio_ops *ops2;
	void *op2;
	vmkit_disk_config cfg = VMKIT_DISK_CONFIG_INIT;

	cr_assert_eq(vmkit__loop_new(&T.loop), 0);
	cr_assert_eq(create_dev("/nonexistent/vmkit.img", false, NULL, 512), -ENOENT);
	cr_assert(strstr(vmkit_last_error(), "/nonexistent/vmkit.img"), "%s", vmkit_last_error());
	make_image(path, 8);
	cr_assert_eq(create_dev(path, false, NULL, 1000), -EINVAL);
	cr_assert_eq(create_dev(path, false, NULL, 8192), -EINVAL);
	cr_assert_eq(create_dev(path, false, "123456789012345678901", 512), -EINVAL,
		     "a serial over 20 bytes");
	cr_assert_eq(create_dev("/dev/null", false, NULL, 512), -EINVAL, "a character device");

	/* One writer at a time per image; readers share. */
	cr_assert_eq(create_dev(path, false, "12345678901234567890", 512), 0, "%s",
		     vmkit_last_error());
	cfg.path = path;
	cr_assert_eq(virtio_blk_create(&cfg, T.loop, &ops2, &op2), -EBUSY);
	cfg.readonly = true;
	cr_assert_eq(virtio_blk_create(&cfg, T.loop, &ops2, &op2), -EBUSY);
	T.ops->destroy(T.opaque);
	cr_assert_eq(create_dev(path, true, NULL, 512), 0);
	cr_assert_eq(virtio_blk_create(&cfg, T.loop, &ops2, &op2), 0, "%s", vmkit_last_error());
	ops2->destroy(op2);
	T.ops->destroy(T.opaque);
	unlink(path);
}

/* ---- reads and writes ---------------------------------------------------------- */

Test(virtio_blk, write_then_read_round_trip)
{
	uint8_t *src, *back, file[8192];
	uint64_t d1, d2, rd1, rd2, rd3, st, cross;
	uint32_t used;
	uint16_t head;
	uint8_t *hi;
	unsigned irqs;

	start();
	/* Write 8 KiB at sector 3 from two buffers of 3 KiB and 5 KiB. */
	d1 = alloc_buf(3072, 0);
	d2 = alloc_buf(5120, 0);
	src = malloc(8192);
	for (unsigned i = 0; i < 8192; i++)
		src[i] = (uint8_t)(i * 13 + 5);
	memcpy(hva(d1, 3072), src, 3072);
	memcpy(hva(d2, 5120), src + 3072, 5120);
	st = make_status();
	head = send((struct vqd_buf[]){ { make_hdr(T_OUT, 3), 16, false },
				       { d1, 3072, false },
				       { d2, 5120, false },
				       { st, 1, true } }, 4);
	cr_assert_eq(wait_done(head), 1, "a write writes only the status byte");
	cr_assert_eq(status_at(st), S_OK);
	file_read(3 * 512, file, sizeof(file));
	cr_assert_arr_eq(file, src, 8192, "the host file holds what the guest wrote");
	file_read(0, file, 3 * 512);
	for (unsigned i = 0; i < 3 * 512; i++)
		cr_assert_eq(file[i], pattern(i), "bytes before the write are untouched");

	/* Read it back into three writable buffers, split differently. */
	rd1 = alloc_buf(1000 + 24, 0xcc);
	rd2 = alloc_buf(4096, 0xcc);
	rd3 = alloc_buf(8192 - 1024 - 4096, 0xcc);
	st = make_status();
	head = send((struct vqd_buf[]){ { make_hdr(T_IN, 3), 16, false },
				       { rd1, 1024, true },
				       { rd2, 4096, true },
				       { rd3, 8192 - 1024 - 4096, true },
				       { st, 1, true } }, 5);
	cr_assert_eq(wait_done(head), 8192 + 1, "used length: data and status");
	cr_assert_eq(status_at(st), S_OK);
	back = malloc(8192);
	memcpy(back, hva(rd1, 1024), 1024);
	memcpy(back + 1024, hva(rd2, 4096), 4096);
	memcpy(back + 5120, hva(rd3, 3072), 3072);
	cr_assert_arr_eq(back, src, 8192);

	/* A buffer that crosses from one guest-memory region into the next
	 * (two host allocations) is read in full. */
	hi = vqd_mem_add(&T.m, 16u << 20, 4096);
	cross = (16u << 20) - 512;
	memset(hva(cross, 512), 0xcc, 512);
	memset(hi, 0xcc, 4096);
	cr_assert_eq(run_req(T_IN, 0, cross, 1024, true, &used), S_OK);
	cr_assert_eq(used, 1025);
	for (unsigned i = 0; i < 512; i++) {
		cr_assert_eq(hva(cross, 512)[i], pattern(i));
		cr_assert_eq(hi[i], pattern(512 + i));
	}
	cr_assert_eq(hi[512], 0xcc, "nothing past the buffer");

	vqd_lock(&T.dev);
	irqs = T.t.queue_irqs[0];
	vqd_unlock(&T.dev);
	cr_assert_gt(irqs, 0, "completions interrupt the driver");
	free(src);
	free(back);
}

Test(virtio_blk, sector_range_is_checked)
{
	uint64_t buf;
	uint8_t *p;

	start();
	buf = alloc_buf(1024, 0xcc);
	p = hva(buf, 1024);
	cr_assert_eq(run_req(T_IN, IMG_SECTORS - 1, buf, 1024, true, NULL), S_IOERR,
		     "a read running past the end");
	cr_assert_eq(run_req(T_IN, IMG_SECTORS, buf, 512, true, NULL), S_IOERR);
	cr_assert(all_bytes(p, 1024, 0xcc), "a refused read writes nothing");
	/* sector * 512 wraps around to a small offset: still refused. */
	cr_assert_eq(run_req(T_IN, (UINT64_MAX / 512) + 1, buf, 512, true, NULL), S_IOERR);
	cr_assert_eq(run_req(T_IN, UINT64_MAX, buf, 512, true, NULL), S_IOERR);
	cr_assert_eq(run_req(T_OUT, (1ull << 55), buf, 512, false, NULL), S_IOERR);
	cr_assert_eq(run_req(T_OUT, UINT64_MAX - 1, buf, 1024, false, NULL), S_IOERR);
	cr_assert_eq(run_req(T_OUT, IMG_SECTORS - 1, buf, 1024, false, NULL), S_IOERR);
	cr_assert(all_bytes(p, 1024, 0xcc));
	cr_assert(file_pristine(), "no refused write reached the file");
	/* The last two sectors themselves are fine. */
	cr_assert_eq(run_req(T_IN, IMG_SECTORS - 2, buf, 1024, true, NULL), S_OK);
	cr_assert_eq(p[1023], pattern(IMG_SECTORS * 512 - 1));
}

Test(virtio_blk, malformed_requests)
{
	uint64_t buf, st, hdr, seg;
	uint8_t before[600];
	uint32_t used;
	uint16_t head;

	start();
	buf = alloc_buf(600, 0xcc);

	/* A data length that is not a multiple of 512 (513 bytes before the
	 * status byte). */
	memcpy(before, hva(buf, 600), 600);
	cr_assert_eq(run_req(T_IN, 0, buf, 513, true, &used), S_IOERR);
	cr_assert_eq(used, 1);
	cr_assert_eq(run_req(T_IN, 0, buf, 100, true, NULL), S_IOERR);
	cr_assert_arr_eq(hva(buf, 600), before, 600, "nothing read into a refused request");
	cr_assert_eq(run_req(T_OUT, 0, buf, 100, false, NULL), S_IOERR);

	/* A header shorter than 16 bytes. */
	st = make_status();
	hdr = make_hdr(T_IN, 0);
	head = send((struct vqd_buf[]){ { hdr, 8, false }, { buf, 512, true }, { st, 1, true } }, 3);
	wait_done(head);
	cr_assert_eq(status_at(st), S_IOERR);
	/* ...but a 16-byte header split over two descriptors is fine. */
	st = make_status();
	head = send((struct vqd_buf[]){ { hdr, 8, false }, { hdr + 8, 8, false },
				       { buf, 512, true }, { st, 1, true } }, 4);
	cr_assert_eq(wait_done(head), 513);
	cr_assert_eq(status_at(st), S_OK);
	/* A read with device-readable bytes after its header. */
	st = make_status();
	head = send((struct vqd_buf[]){ { make_hdr(T_IN, 0), 16, false }, { buf, 16, false },
				       { buf, 512, true }, { st, 1, true } }, 4);
	wait_done(head);
	cr_assert_eq(status_at(st), S_IOERR);
	/* A write with writable bytes besides its status. */
	st = make_status();
	head = send((struct vqd_buf[]){ { make_hdr(T_OUT, 0), 16, false }, { buf, 512, false },
				       { buf + 512, 1, true }, { st, 1, true } }, 4);
	wait_done(head);
	cr_assert_eq(status_at(st), S_IOERR);

	/* No writable byte at all: nothing to report the status in. The
	 * buffers come back unused and nothing happens. */
	memcpy(before, hva(buf, 600), 600);
	head = send((struct vqd_buf[]){ { make_hdr(T_FLUSH, 0), 16, false } }, 1);
	cr_assert_eq(wait_done(head), 0);
	/* A write whose "status" descriptor is device-readable. */
	st = make_status();
	head = send((struct vqd_buf[]){ { make_hdr(T_OUT, 0), 16, false }, { buf, 512, false },
				       { st, 1, false } }, 3);
	cr_assert_eq(wait_done(head), 0);
	cr_assert_eq(status_at(st), SENTINEL, "a readable status byte is not written");
	cr_assert_arr_eq(hva(buf, 600), before, 600);

	/* Unknown and unsupported types. */
	cr_assert_eq(run_req(2, 0, buf, 512, true, &used), S_UNSUPP);
	cr_assert_eq(used, 1);
	cr_assert_eq(run_req(10 /* GET_LIFETIME */, 0, buf, 8, true, NULL), S_UNSUPP);
	cr_assert_eq(run_req(14 /* SECURE_ERASE */, 0, buf, 16, false, NULL), S_UNSUPP);
	cr_assert_eq(run_req(0xffffffffu, 0, 0, 0, false, NULL), S_UNSUPP);
	cr_assert_eq(run_req(0x80000001u /* legacy barrier */, 0, buf, 512, false, NULL), S_UNSUPP);
	/* GET_ID with data to read: refused. */
	seg = alloc_buf(16, 0);
	cr_assert_eq(run_req(T_GET_ID, 0, seg, 16, false, NULL), S_IOERR);

	cr_assert(file_pristine(), "no malformed request reached the file");
	cr_assert(vqd_status_live(vqd_status(&T.dev)), "the device is still usable");
	cr_assert_eq(run_req(T_IN, 1, buf, 512, true, NULL), S_OK);
	cr_assert_eq(hva(buf, 1)[0], pattern(512));
}

/* ---- several requests at once -------------------------------------------------- */

Test(virtio_blk, requests_complete_out_of_order)
{
	uint64_t st_a, st_b, st_c, b, c;
	uint16_t a_head, b_head, c_head;
	uint32_t id, len;
	bool got_b = false, got_c = false;
	uint8_t file[512];

	start();
	uffd_setup(1);
	/* A: a read into a held buffer: its worker blocks inside preadv. */
	a_head = send_req(T_IN, 8, UFFD_GPA, PAGE, true, &st_a);
	cr_assert_eq(uffd_wait_fault(), 0);
	/* B and C, sent after A, complete while A is still in flight. */
	b = alloc_buf(512, 0xcc);
	c = alloc_buf(512, 0x5a);
	b_head = send_req(T_IN, 1, b, 512, true, &st_b);
	c_head = send_req(T_OUT, 100, c, 512, false, &st_c);
	for (int i = 0; i < 2; i++) {
		cr_assert(wait_used(&id, &len, 10000), "B and C complete while A is held");
		cr_assert(id == b_head || id == c_head, "unexpected completion %u", id);
		got_b |= id == b_head;
		got_c |= id == c_head;
	}
	cr_assert(got_b && got_c);
	cr_assert_eq(status_at(st_b), S_OK);
	cr_assert_eq(status_at(st_c), S_OK);
	cr_assert_eq(hva(b, 1)[0], pattern(512));
	file_read(100 * 512, file, 512);
	cr_assert(all_bytes(file, 512, 0x5a));
	usleep(50000);
	cr_assert_eq(vqd_used_pending(&T.q), 0, "A is not complete while its buffer is held");
	cr_assert_eq(status_at(st_a), SENTINEL);

	uffd_release(0, 0);
	cr_assert_eq(wait_done(a_head), PAGE + 1);
	cr_assert_eq(status_at(st_a), S_OK);
	for (unsigned i = 0; i < PAGE; i++)
		cr_assert_eq(U.base[i], pattern(8 * 512 + i));
}

Test(virtio_blk, four_requests_in_flight_at_once)
{
	uint64_t st[4];
	bool seen[4] = { false };
	uint32_t id, len;

	start();
	uffd_setup(4);
	for (unsigned i = 0; i < 4; i++)
		send_req(T_IN, 16ull * i, UFFD_GPA + (uint64_t)i * PAGE, PAGE, true, &st[i]);
	/* All four are inside a worker at the same time. */
	for (unsigned i = 0; i < 4; i++) {
		unsigned p = uffd_wait_fault();

		cr_assert_lt(p, 4);
		cr_assert_not(seen[p]);
		seen[p] = true;
	}
	cr_assert_eq(vqd_used_pending(&T.q), 0);
	for (unsigned i = 4; i-- > 0;)
		uffd_release(i, 0);
	for (unsigned i = 0; i < 4; i++) {
		cr_assert(wait_used(&id, &len, 10000));
		cr_assert_eq(len, PAGE + 1);
	}
	for (unsigned i = 0; i < 4; i++) {
		cr_assert_eq(status_at(st[i]), S_OK);
		cr_assert_eq(U.base[i * PAGE + 7], pattern(16ull * i * 512 + 7));
	}
}

/* ---- reads from the page cache ---------------------------------------------------- */

/* Whether the image's file system serves RWF_NOWAIT reads (ext4, xfs, btrfs
 * do; tmpfs does not): the device then reads cached data on the notifying
 * thread. */
static bool fs_reads_nowait(void)
{
	char b[512];
	struct iovec io = { b, sizeof(b) };

	return preadv2(T.img, &io, 1, 0, RWF_NOWAIT) >= 0 || errno == EAGAIN;
}

#define UNCACHED (IMG_SECTORS - 8u) /* the image's last page, in sectors */

/* Whether the image's page at byte @off is in the page cache. */
static bool file_page_cached(uint64_t off)
{
	unsigned char v = 0;
	void *p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, T.img, (off_t)(off & ~(uint64_t)(PAGE - 1)));

	cr_assert_neq(p, MAP_FAILED, "mmap: %s", strerror(errno));
	cr_assert_eq(mincore(p, PAGE, &v), 0);
	munmap(p, PAGE);
	return v & 1;
}

/* With every worker held (reads into userfaultfd pages), a read of cached
 * data still completes: on the notifying thread, before the kick returns.
 * A read of data not in the page cache must not be tried there (it could
 * start disk I/O on a vCPU thread): it waits for a worker. */
Test(virtio_blk, cached_read_completes_on_the_notifying_thread)
{
	uint64_t held[4], a, c, st_a, st_c;
	uint8_t warm[PAGE];
	uint32_t id, len;
	uint16_t a_head, c_head;
	unsigned done = 0, want;
	bool nowait, got_c = false;

	/* The image on the build tree's file system (a disk, most likely),
	 * not $TMPDIR (often tmpfs, which has no RWF_NOWAIT reads). */
	img_dir = getenv("VMKIT_BUILD_ROOT");
	start();
	img_dir = NULL;
	nowait = fs_reads_nowait();
	uffd_setup(4);
	for (unsigned i = 0; i < 4; i++)
		send_req(T_IN, 16ull * i, UFFD_GPA + (uint64_t)i * PAGE, PAGE, true, &held[i]);
	for (unsigned i = 0; i < 4; i++)
		uffd_wait_fault();
	a = alloc_buf(PAGE, 0xcc);
	c = alloc_buf(PAGE, 0xcc);
	cr_assert_eq(pread(T.img, warm, PAGE, 64 * 512), (ssize_t)PAGE); /* cached now */
	a_head = send_req(T_IN, 64, a, PAGE, true, &st_a);
	if (nowait) {
		cr_assert(vqd_get_used(&T.q, &id, &len),
			  "a cached 4 KiB read waited for a worker");
		cr_assert_eq(id, a_head);
		cr_assert_eq(len, PAGE + 1);
		cr_assert_eq(status_at(st_a), S_OK);
		for (unsigned i = 0; i < PAGE; i++)
			cr_assert_eq(hva(a, PAGE)[i], pattern(64 * 512 + i));
	} else {
		cr_log_warn("%s: no RWF_NOWAIT reads on this file system: every read waits for a "
			    "worker, and the inline path is not exercised", T.path);
		cr_assert_eq(vqd_used_pending(&T.q), 0, "a read completed with every worker held");
	}
	/* Dropped from the page cache: not read here, it waits. (The image's
	 * last page, far from the held reads' readahead.) RWF_NOWAIT alone
	 * would still start reading it (measured on 6.18: the page is in the
	 * cache a moment later), disk I/O on the notifying thread; the device
	 * must not even try. */
	cr_assert_eq(posix_fadvise(T.img, UNCACHED * 512, PAGE, POSIX_FADV_DONTNEED), 0);
	cr_assert_not(file_page_cached(UNCACHED * 512), "FADV_DONTNEED left the page cached");
	c_head = send_req(T_IN, UNCACHED, c, PAGE, true, &st_c);
	cr_assert_eq(vqd_used_pending(&T.q), 0, "an uncached read completed with every worker held");
	usleep(300 * 1000);
	cr_assert_not(file_page_cached(UNCACHED * 512), "the kick started reading the image");
	for (unsigned i = 0; i < 4; i++)
		uffd_release(i, 0);
	want = nowait ? 5 : 6;
	while (done < want) {
		cr_assert(wait_used(&id, &len, 10000), "%u of %u requests completed", done, want);
		cr_assert_eq(len, PAGE + 1);
		got_c |= id == c_head;
		done++;
	}
	cr_assert(got_c);
	cr_assert_eq(status_at(st_c), S_OK);
	for (unsigned i = 0; i < PAGE; i++)
		cr_assert_eq(hva(c, PAGE)[i], pattern(UNCACHED * 512 + i));
	if (!nowait) {
		cr_assert_eq(status_at(st_a), S_OK);
		cr_assert_eq(hva(a, PAGE)[0], pattern(64 * 512));
	}
}

/* ---- flush ----------------------------------------------------------------------- */

Test(virtio_blk, flush_completes_after_earlier_writes)
{
	uint64_t st_w, st_f, d;
	uint16_t w_head, f_head;
	uint32_t used;
	uint8_t file[PAGE];

	start();
	/* A plain flush. */
	d = alloc_buf(512, 0x11);
	cr_assert_eq(run_req(T_OUT, 0, d, 512, false, NULL), S_OK);
	cr_assert_eq(run_req(T_FLUSH, 0, 0, 0, false, &used), S_OK);
	cr_assert_eq(used, 1);

	/* A write held inside its worker (pwritev reads a missing page),
	 * then a flush: the flush completes only after the write. */
	uffd_setup(1);
	w_head = send_req(T_OUT, 32, UFFD_GPA, PAGE, false, &st_w);
	cr_assert_eq(uffd_wait_fault(), 0);
	f_head = send_req(T_FLUSH, 0, 0, 0, false, &st_f);
	usleep(200000);
	cr_assert_eq(vqd_used_pending(&T.q), 0, "the flush waits for the write before it");
	cr_assert_eq(status_at(st_f), SENTINEL);
	uffd_release(0, 0x77);
	cr_assert_eq(wait_done(w_head), 1);
	cr_assert_eq(wait_done(f_head), 1, "the flush completes after the write");
	cr_assert_eq(status_at(st_w), S_OK);
	cr_assert_eq(status_at(st_f), S_OK);
	file_read(32 * 512, file, PAGE);
	cr_assert(all_bytes(file, PAGE, 0x77));
}

/* ---- discard, write zeroes ---------------------------------------------------------- */

Test(virtio_blk, discard_punches_a_hole)
{
	struct stat before, after;
	uint64_t sectors[2] = { 256, 1024 }, segs;
	uint32_t n[2] = { 512, 256 }, fl[2] = { 0, 0 };

	start();
	cr_assert_eq(fstat(T.img, &before), 0);
	cr_assert_geq(before.st_blocks, IMG_SECTORS, "the image starts fully allocated");
	segs = make_segs(sectors, n, fl, 2);
	cr_assert_eq(run_req(T_DISCARD, 0, segs, 32, false, NULL), S_OK);
	cr_assert_eq(fstat(T.img, &after), 0);
	cr_assert_leq(after.st_blocks, before.st_blocks - 768,
		      "st_blocks %lld -> %lld: 384 KiB should have been freed",
		      (long long)before.st_blocks, (long long)after.st_blocks);
	cr_assert_eq(after.st_size, before.st_size, "the image keeps its size");
}

static void check_write_zeroes(void)
{
	uint8_t file[64 * 512];
	uint64_t buf;

	start();
	cr_assert_eq(run_seg(T_WRITE_ZEROES, 64, 16, 0), S_OK);
	cr_assert_eq(run_seg(T_WRITE_ZEROES, 512, 64, 1 /* unmap */), S_OK);
	file_read(63 * 512, file, 18 * 512);
	for (unsigned i = 0; i < 18 * 512; i++) {
		uint64_t off = 63 * 512 + i;
		bool zero = off >= 64 * 512 && off < 80 * 512;

		cr_assert_eq(file[i], zero ? 0 : pattern(off), "byte %llu",
			     (unsigned long long)off);
	}
	file_read(512 * 512, file, sizeof(file));
	cr_assert(all_bytes(file, sizeof(file), 0));
	file_read(576 * 512, file, 512);
	cr_assert_eq(file[0], pattern(576 * 512));
	/* And the guest reads zeros too. */
	buf = alloc_buf(8192, 0xcc);
	cr_assert_eq(run_req(T_IN, 512, buf, 8192, true, NULL), S_OK);
	cr_assert(all_bytes(hva(buf, 8192), 8192, 0));
}

Test(virtio_blk, write_zeroes_reads_back_zeros)
{
	check_write_zeroes();
}

/* tmpfs has no FALLOC_FL_ZERO_RANGE: the device falls back to other ways. */
Test(virtio_blk, write_zeroes_on_tmpfs)
{
	struct stat s;

	cr_assert_eq(stat("/dev/shm", &s), 0, "/dev/shm (tmpfs) is needed for this test");
	img_dir = "/dev/shm";
	check_write_zeroes();
}

Test(virtio_blk, discard_and_write_zeroes_segments_are_checked)
{
	uint32_t max_dis, max_seg, big_n;
	uint64_t segs, sec[40];
	uint32_t n[40], fl[40];

	start();
	max_dis = cfg32(36);
	max_seg = cfg32(40);
	cr_assert_eq(run_seg(T_DISCARD, 0, 8, 1), S_UNSUPP, "discard with unmap");
	cr_assert_eq(run_seg(T_DISCARD, 0, 8, 2), S_UNSUPP, "an unknown flag");
	cr_assert_eq(run_seg(T_WRITE_ZEROES, 0, 8, 0x80000000u), S_UNSUPP);
	cr_assert_eq(run_seg(T_DISCARD, 0, max_dis + 1, 0), S_IOERR, "above max_discard_sectors");
	cr_assert_eq(run_seg(T_WRITE_ZEROES, IMG_SECTORS - 1, 2, 0), S_IOERR, "past the end");
	cr_assert_eq(run_seg(T_DISCARD, UINT64_MAX - 1, 4, 0), S_IOERR, "wrapping sector");
	cr_assert_eq(run_seg(T_WRITE_ZEROES, (UINT64_MAX / 512) + 1, 1, 0), S_IOERR);
	/* One segment too many: max_seg + 1 valid segments. */
	cr_assert_lt(max_seg + 1, 40u);
	for (unsigned i = 0; i < 40; i++) {
		sec[i] = i;
		n[i] = 1;
		fl[i] = 0;
	}
	segs = make_segs(sec, n, fl, max_seg + 1);
	cr_assert_eq(run_req(T_WRITE_ZEROES, 0, segs, 16 * (max_seg + 1), false, NULL), S_IOERR);
	/* A huge segment count (1 MiB of segments). */
	big_n = 65536;
	segs = alloc_buf(16 * big_n, 0);
	cr_assert_eq(run_req(T_DISCARD, 0, segs, 16 * big_n, false, NULL), S_IOERR);
	/* No segment, and a partial one. */
	cr_assert_eq(run_req(T_DISCARD, 0, 0, 0, false, NULL), S_IOERR);
	cr_assert_eq(run_req(T_WRITE_ZEROES, 0, segs, 8, false, NULL), S_IOERR);
	/* A bad segment after a good one stops the whole request before any I/O. */
	sec[0] = 0;
	sec[1] = IMG_SECTORS;
	n[1] = 1;
	segs = make_segs(sec, n, fl, 2);
	cr_assert_eq(run_req(T_WRITE_ZEROES, 0, segs, 32, false, NULL), S_IOERR);
	cr_assert(file_pristine());
	/* max_seg segments are accepted. */
	sec[1] = 1;
	segs = make_segs(sec, n, fl, max_seg);
	cr_assert_eq(run_req(T_WRITE_ZEROES, 0, segs, 16 * max_seg, false, NULL), S_OK);
}

/* ---- GET_ID ---------------------------------------------------------------------------- */

Test(virtio_blk, get_id_returns_the_serial)
{
	uint64_t buf;
	uint32_t used;

	start();
	buf = alloc_buf(32, 0xcc);
	cr_assert_eq(run_req(T_GET_ID, 0, buf, 20, true, &used), S_OK);
	cr_assert_eq(used, 21);
	cr_assert_arr_eq(hva(buf, 20), "vmkit-test-serial\0\0\0", 20, "NUL-padded to 20 bytes");
	cr_assert_eq(hva(buf, 21)[20], 0xcc);
	/* A short buffer gets what fits and nothing beyond it. */
	buf = alloc_buf(32, 0xcc);
	cr_assert_eq(run_req(T_GET_ID, 0, buf, 8, true, &used), S_OK);
	cr_assert_eq(used, 9);
	cr_assert_arr_eq(hva(buf, 8), "vmkit-te", 8);
	cr_assert(all_bytes(hva(buf, 32) + 8, 24, 0xcc));
}

Test(virtio_blk, get_id_full_20_bytes)
{
	uint64_t buf;

	start_full(IMG_SECTORS, false, "ABCDEFGHIJKLMNOPQRST", 512, VQD_FEATURES_ALL);
	buf = alloc_buf(20, 0);
	cr_assert_eq(run_req(T_GET_ID, 0, buf, 20, true, NULL), S_OK);
	cr_assert_arr_eq(hva(buf, 20), "ABCDEFGHIJKLMNOPQRST", 20, "no NUL terminator at 20");
}

/* ---- read-only ------------------------------------------------------------------------------ */

/* Access mode of every fd of this process open on @path, other than @skip;
 * returns how many there are and asserts each is read-only. */
static int count_readonly_fds(const char *path, int skip)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char real[PATH_MAX], link[PATH_MAX], p[64], line[128];
	int n = 0;

	cr_assert_not_null(realpath(path, real));
	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		ssize_t l;
		FILE *f;
		unsigned flags = 0;

		if (e->d_name[0] == '.' || fd == skip || fd == dirfd(d))
			continue;
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		l = readlink(p, link, sizeof(link) - 1);
		if (l < 0)
			continue;
		link[l] = 0;
		if (strcmp(link, real) != 0)
			continue;
		snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", fd);
		f = fopen(p, "r");
		cr_assert_not_null(f);
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "flags: %o", &flags) == 1)
				break;
		fclose(f);
		cr_assert_eq(flags & O_ACCMODE, O_RDONLY, "fd %d on the image is not read-only", fd);
		n++;
	}
	closedir(d);
	return n;
}

Test(virtio_blk, read_only_disk_refuses_writes)
{
	struct timespec old[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	struct stat before, after;
	uint64_t buf, f;
	int wfd;

	make_image(T.path, IMG_SECTORS);
	T.img_bytes = IMG_SECTORS * 512ull;
	/* A fixed old mtime, so that any write would show. */
	wfd = open(T.path, O_RDWR);
	cr_assert_eq(futimens(wfd, old), 0);
	close(wfd);
	T.img = open(T.path, O_RDONLY | O_CLOEXEC);
	cr_assert_eq(fstat(T.img, &before), 0);
	cr_assert_eq(vmkit__loop_new(&T.loop), 0);
	cr_assert_eq(create_dev(T.path, true, NULL, 512), 0, "%s", vmkit_last_error());
	vqd_mem_init(&T.m, 0, 0);
	T.have_mem = true;
	attach(VQD_FEATURES_ALL);
	loop_start();

	cr_assert_eq(count_readonly_fds(T.path, T.img), 1, "the device opened the image O_RDONLY");
	f = vqd_device_features(&T.dev);
	cr_assert(f & VIRTIO_BIT(F_RO));
	cr_assert_not(f & VIRTIO_BIT(F_DISCARD), "nothing to discard on a read-only disk");
	cr_assert_not(f & VIRTIO_BIT(F_WRITE_ZEROES));

	buf = alloc_buf(4096, 0x42);
	cr_assert_eq(run_req(T_OUT, 0, buf, 4096, false, NULL), S_IOERR);
	cr_assert_eq(run_req(T_OUT, 100, buf, 512, false, NULL), S_IOERR);
	cr_assert_eq(run_seg(T_DISCARD, 0, 64, 0), S_IOERR);
	cr_assert_eq(run_seg(T_WRITE_ZEROES, 0, 64, 0), S_IOERR);
	cr_assert_eq(run_seg(T_WRITE_ZEROES, 0, 64, 1), S_IOERR);
	cr_assert_eq(run_req(T_FLUSH, 0, 0, 0, false, NULL), S_OK);
	cr_assert_eq(run_req(T_IN, 2, buf, 512, true, NULL), S_OK, "reads still work");
	cr_assert_eq(hva(buf, 1)[0], pattern(1024));

	cr_assert(file_pristine(), "the image is unchanged");
	cr_assert_eq(fstat(T.img, &after), 0);
	cr_assert_eq(after.st_mtim.tv_sec, before.st_mtim.tv_sec, "mtime unchanged");
	cr_assert_eq(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	cr_assert_eq(after.st_blocks, before.st_blocks);
}

/* ---- reset ------------------------------------------------------------------------------------ */

static _Atomic bool reset_done;
#define BIG_READ (128u << 10)

static void *reset_main(void *arg)
{
	vqd_write_status(&T.dev, 0);
	atomic_store(&reset_done, true);
	return NULL;
}

Test(virtio_blk, reset_waits_for_requests_in_flight_and_drops_them)
{
	uint64_t st[6], pend[2];
	pthread_t th;
	uint8_t file[512];

	start();
	uffd_setup(4);
	/* Four requests hold all the workers; two more wait for one. */
	for (unsigned i = 0; i < 4; i++)
		send_req(T_IN, 8ull * i, UFFD_GPA + (uint64_t)i * PAGE, PAGE, true, &st[i]);
	for (unsigned i = 0; i < 4; i++)
		uffd_wait_fault();
	/* The read is larger than the device serves from the page cache on
	 * the notifying thread (64 KiB), so it too waits for a worker. */
	pend[0] = alloc_buf(BIG_READ, 0xcc);
	pend[1] = alloc_buf(512, 0xcc);
	send_req(T_IN, 0, pend[0], BIG_READ, true, &st[4]);
	send_req(T_OUT, 0, pend[1], 512, false, &st[5]);

	atomic_store(&reset_done, false);
	cr_assert_eq(pthread_create(&th, NULL, reset_main, NULL), 0);
	usleep(200000);
	cr_assert_not(atomic_load(&reset_done), "reset returned while I/O into guest memory ran");
	for (unsigned i = 0; i < 4; i++)
		uffd_release(i, 0);
	pthread_join(th, NULL);
	cr_assert(atomic_load(&reset_done));
	cr_assert_eq(vqd_status(&T.dev), 0);

	/* Nothing was pushed, and the requests no worker had started never
	 * touched their buffers or the file. */
	usleep(50000);
	cr_assert_eq(vqd_used_pending(&T.q), 0);
	cr_assert_eq(status_at(st[4]), SENTINEL);
	cr_assert_eq(status_at(st[5]), SENTINEL);
	cr_assert(all_bytes(hva(pend[0], BIG_READ), BIG_READ, 0xcc));
	cr_assert(file_pristine());

	/* The driver sets the device up again and it works. */
	vqd_queue_init(&T.q, &T.m, QSIZE);
	cr_assert(vqd_status_live(vqd_handshake(&T.dev, VQD_FEATURES_ALL,
						(struct vqd_queue *[]){ &T.q }, 1)));
	cr_assert_eq(run_req(T_IN, 3, pend[0], 512, true, NULL), S_OK);
	cr_assert_eq(hva(pend[0], 1)[0], pattern(3 * 512));
	cr_assert_eq(run_req(T_OUT, 5, pend[1], 512, false, NULL), S_OK);
	file_read(5 * 512, file, 512);
	cr_assert(all_bytes(file, 512, 0xcc));
}

/* ---- save / restore ------------------------------------------------------------------------ */

static void replace_device(void)
{
	loop_stop();
	virtio_dev_destroy(&T.dev);
	T.have_dev = false;
	cr_assert_eq(create_dev(T.path, false, "vmkit-test-serial", 512), 0, "%s",
		     vmkit_last_error());
	vqd_transport_init(&T.t);
	cr_assert_eq(virtio_dev_init(&T.dev, T.ops, T.opaque, &T.m.gm, &T.t.tr, &T.t, "blk0"), 0);
	T.have_dev = true;
}

Test(virtio_blk, save_restore_round_trip)
{
	uint8_t *blob, *bad;
	size_t len;
	uint64_t buf;
	uint32_t used;

	start();
	buf = alloc_buf(512, 0x3c);
	cr_assert_eq(run_req(T_OUT, 7, buf, 512, false, NULL), S_OK);
	cr_assert_eq(virtio_dev_save(&T.dev, &blob, &len), 0, "%s", vmkit_last_error());

	replace_device();
	/* A corrupted blob is refused (every byte of it in turn would be too
	 * heavy; flip one in the device's part and one in the core's). */
	bad = malloc(len);
	memcpy(bad, blob, len);
	bad[len - 3] ^= 0x40;
	cr_assert_lt(virtio_dev_restore(&T.dev, bad, len), 0);
	memcpy(bad, blob, len);
	bad[20] ^= 1;
	cr_assert_lt(virtio_dev_restore(&T.dev, bad, len), 0);
	cr_assert_lt(virtio_dev_restore(&T.dev, blob, len - 1), 0, "truncated");
	cr_assert_eq(vqd_status(&T.dev), 0, "a refused blob leaves the device as it was");
	free(bad);

	cr_assert_eq(virtio_dev_restore(&T.dev, blob, len), 0, "%s", vmkit_last_error());
	free(blob);
	loop_start();
	/* The restored device carries on with the same queue. */
	cr_assert(vqd_status_live(vqd_status(&T.dev)));
	buf = alloc_buf(512, 0);
	cr_assert_eq(run_req(T_IN, 7, buf, 512, true, &used), S_OK);
	cr_assert_eq(used, 513);
	cr_assert(all_bytes(hva(buf, 512), 512, 0x3c));
}

Test(virtio_blk, restore_refuses_a_different_disk)
{
	char other[PATH_MAX];
	const vmkit_virtio_ops *ops2;
	void *op2;
	uint8_t blob[512], blob2[512];
	long n, n2;

	start();
	n = T.ops->save(T.opaque, blob, sizeof(blob));
	cr_assert_gt(n, 0);
	cr_assert_leq(n, (long)sizeof(blob));
	cr_assert_eq(T.ops->save(T.opaque, blob, 4), n, "a short buffer gets the length needed");
	cr_assert_eq(T.ops->restore(T.opaque, blob, (size_t)n), 0, "its own blob");

	/* A disk of another size. */
	make_image(other, IMG_SECTORS * 2);
	cr_assert_eq(create_dev_as(other, false, NULL, 512, &ops2, &op2), 0);
	cr_assert_eq(ops2->restore(op2, blob, (size_t)n), -EINVAL);
	cr_assert(strstr(vmkit_last_error(), "capacity"), "%s", vmkit_last_error());
	ops2->destroy(op2);
	unlink(other);

	/* The same size, read-only. */
	make_image(other, IMG_SECTORS);
	cr_assert_eq(create_dev_as(other, true, NULL, 512, &ops2, &op2), 0);
	cr_assert_eq(ops2->restore(op2, blob, (size_t)n), -EINVAL);
	cr_assert(strstr(vmkit_last_error(), "read-only"), "%s", vmkit_last_error());
	n2 = ops2->save(op2, blob2, sizeof(blob2));
	cr_assert_gt(n2, 0);
	ops2->destroy(op2);
	unlink(other);

	/* A read-only disk's blob into a writable one; a corrupted blob. */
	cr_assert_eq(T.ops->restore(T.opaque, blob2, (size_t)n2), -EINVAL);
	blob[n - 1] ^= 1;
	cr_assert_eq(T.ops->restore(T.opaque, blob, (size_t)n), -EINVAL);
	blob[n - 1] ^= 1;
	cr_assert_eq(T.ops->restore(T.opaque, blob, (size_t)n - 1), -EINVAL, "truncated");
	cr_assert_eq(T.ops->restore(T.opaque, blob, (size_t)n), 0, "the intact blob still loads");
}

Test(virtio_blk, save_refused_while_requests_in_flight)
{
	uint8_t *blob;
	size_t len;
	uint64_t st;
	uint16_t head;

	start();
	uffd_setup(1);
	head = send_req(T_IN, 0, UFFD_GPA, PAGE, true, &st);
	uffd_wait_fault();
	cr_assert_eq(virtio_dev_save(&T.dev, &blob, &len), -EBUSY);
	uffd_release(0, 0);
	wait_done(head);
	cr_assert_eq(virtio_dev_save(&T.dev, &blob, &len), 0, "%s", vmkit_last_error());
	free(blob);
}
