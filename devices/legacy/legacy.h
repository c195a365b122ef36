/* SPDX-License-Identifier: MIT */
/* Legacy platform devices. Each knows nothing of KVM: it gets an interrupt
 * line and an output sink, exposes a vmkit_io_ops table that sees offsets,
 * and saves/restores its state to a versioned byte blob. Each is safe to
 * call from several vCPU threads and the I/O thread at once (an internal
 * mutex); callbacks are made without that mutex held when they may block. */
#ifndef VMKIT_DEVICES_LEGACY_H
#define VMKIT_DEVICES_LEGACY_H

#include "internal.h"

/* An interrupt line: set(ctx, level). Edge devices pulse it. */
struct dev_irq {
	void (*set)(void *ctx, bool level);
	void *ctx;
};

/* Bytes out of a device (serial output). */
struct dev_sink {
	void (*write)(void *ctx, const uint8_t *data, size_t len);
	void *ctx;
};

/* Device state blobs: a header {magic "VMKS", uint32 version, uint32
 * length, uint32 crc32 of payload} then the device's payload. Restore
 * checks all four and the payload size; anything wrong is -EINVAL with
 * one line of error, and the device is left unchanged. */
struct dev_state {
	uint8_t *data;
	size_t len;
};
void dev_state_free(struct dev_state *s);

/* ---- helpers shared by the device models (state.c) ----------------------- */

/* CRC-32 (IEEE 802.3, the zlib/PNG one) of @len bytes. */
uint32_t dev_crc32(const void *data, size_t len);

/* Building a blob: begin with the device's 4-character tag (the first
 * bytes of the payload, so that one device's blob is refused by another),
 * put fields (stored little-endian), finish into @out (malloc'd; free with
 * dev_state_free). Payloads are at most DEV_STATE_MAX_PAYLOAD bytes. */
#define DEV_STATE_MAX_PAYLOAD 16384u
struct dev_state_writer {
	uint8_t buf[DEV_STATE_MAX_PAYLOAD];
	size_t len;
	bool overflow;
};
void dev_state_begin(struct dev_state_writer *w, const char tag[4]);
void dev_state_put_u8(struct dev_state_writer *w, uint8_t v);
void dev_state_put_u16(struct dev_state_writer *w, uint16_t v);
void dev_state_put_u32(struct dev_state_writer *w, uint32_t v);
void dev_state_put_u64(struct dev_state_writer *w, uint64_t v);
void dev_state_put_bytes(struct dev_state_writer *w, const void *p, size_t n);
int dev_state_finish(struct dev_state_writer *w, uint32_t version, struct dev_state *out);

/* Reading one: open checks magic, @version, length, CRC and tag (-EINVAL
 * with a message naming @tag); gets read in the order put (a read past
 * the end yields zeros and marks the reader bad); close is -EINVAL unless
 * every byte was read and none was missing. Devices parse into a copy and
 * commit only after close succeeded. */
struct dev_state_reader {
	const uint8_t *p;
	size_t len, off;
	bool bad;
	char tag[5];
};
int dev_state_open(struct dev_state_reader *r, const uint8_t *data, size_t len,
		   const char tag[4], uint32_t version);
uint8_t dev_state_get_u8(struct dev_state_reader *r);
uint16_t dev_state_get_u16(struct dev_state_reader *r);
uint32_t dev_state_get_u32(struct dev_state_reader *r);
uint64_t dev_state_get_u64(struct dev_state_reader *r);
void dev_state_get_bytes(struct dev_state_reader *r, void *p, size_t n);
int dev_state_close(struct dev_state_reader *r);

/* An interrupt line driven from a device's state. The device records the
 * level it wants while holding its own mutex (dev_line_want, or
 * dev_line_pulse for a fresh low-to-high edge even if the line is already
 * high), then calls dev_line_sync after dropping that mutex: sync
 * serialises calls to irq->set with a lock of its own, skips unchanged
 * levels, and always applies the latest wanted level. */
struct dev_line {
	struct dev_irq irq;
	pthread_mutex_t lock;
	atomic_bool want;
	atomic_bool pulse;
	bool level; /* last level given to irq.set, under lock */
};
void dev_line_init(struct dev_line *l, const struct dev_irq *irq);
void dev_line_destroy(struct dev_line *l);
void dev_line_want(struct dev_line *l, bool level);
void dev_line_pulse(struct dev_line *l);
void dev_line_sync(struct dev_line *l);

/* ---- 8250/16550A UART (uart8250.c): 8 ports ---------------------------- */
struct uart8250;
int uart8250_new(const struct dev_irq *irq, const struct dev_sink *out, struct uart8250 **u);
void uart8250_free(struct uart8250 *u);
extern const vmkit_io_ops uart8250_ops;
/* Feed received bytes (I/O thread). Returns how many fit in the receive
 * FIFO; the caller keeps the rest and retries once the guest reads. */
size_t uart8250_receive(struct uart8250 *u, const uint8_t *data, size_t len);
/* Room left in the receive FIFO. */
size_t uart8250_rx_room(struct uart8250 *u);
uint64_t uart8250_tx_bytes(struct uart8250 *u);
/* Bytes accepted by uart8250_receive. */
uint64_t uart8250_rx_bytes(struct uart8250 *u);
int uart8250_save(struct uart8250 *u, struct dev_state *out);
int uart8250_restore(struct uart8250 *u, const uint8_t *data, size_t len);

/* ---- i8042 keyboard controller (i8042.c): ports 0x60 and 0x64 ------------
 * Registered as two 1-port ranges; offset 0 on each. Command 0xfe on port
 * 0x64 (pulse reset line), or an output-port write (0xd1) with bit 0 clear,
 * calls @reset. @irq is IRQ 1. There is no AUX (mouse) device and no IRQ 12:
 * Linux finds the AUX port cannot be enabled and drops it without a
 * timeout; an ACPI PNP0303 node without a PNP0F13 one makes it skip the
 * AUX probe altogether. */
struct i8042;
int i8042_new(const struct dev_irq *irq, void (*reset)(void *ctx), void *ctx, struct i8042 **k);
void i8042_free(struct i8042 *k);
extern const vmkit_io_ops i8042_data_ops; /* port 0x60 */
extern const vmkit_io_ops i8042_cmd_ops;  /* port 0x64 */
int i8042_save(struct i8042 *k, struct dev_state *out);
int i8042_restore(struct i8042 *k, const uint8_t *data, size_t len);

/* ---- CMOS RTC (rtc.c): ports 0x70-0x71 ---------------------------------------
 * Date/time from the host's clock (UTC) plus a guest-set offset, BCD or
 * binary per register B, 114 bytes of NVRAM; update-ended and periodic
 * interrupts are not generated (register C reads 0). */
struct rtc;
int rtc_new(const struct dev_irq *irq, struct rtc **r);
void rtc_free(struct rtc *r);
extern const vmkit_io_ops rtc_ops;
/* NVRAM bytes the machine sets before boot (memory size in 0x34/0x35, 0x5b-0x5d, ...). */
void rtc_set_nvram(struct rtc *r, uint8_t index, uint8_t value);
int rtc_save(struct rtc *r, struct dev_state *out);
int rtc_restore(struct rtc *r, const uint8_t *data, size_t len);

/* ---- exit port (debug_exit.c): QEMU isa-debug-exit --------------------------
 * Any write of value v (any width) calls @exit(ctx, (v << 1) | 1); reads
 * return all ones. */
struct debug_exit;
int debug_exit_new(void (*exit_fn)(void *ctx, int status), void *ctx, struct debug_exit **d);
void debug_exit_free(struct debug_exit *d);
extern const vmkit_io_ops debug_exit_ops;

/* ---- debug console (debugcon.c): QEMU isa-debugcon ------------------------
 * One port (SeaBIOS logs to 0x402; Bochs/QEMU convention 0xe9). Each write
 * puts the LOW byte of the access on @out (NULL: dropped, still counted);
 * reads return @readback in every byte (QEMU's default 0xe9, which SeaBIOS
 * checks before it logs). Stateless apart from a byte counter; the sink is
 * called without any lock held, possibly from several vCPU threads. */
#define DEBUGCON_SEABIOS_PORT 0x402
#define DEBUGCON_READBACK 0xe9
struct debugcon;
int debugcon_new(const struct dev_sink *out, uint8_t readback, struct debugcon **d);
void debugcon_free(struct debugcon *d);
extern const vmkit_io_ops debugcon_ops;
/* Bytes written by the guest so far. */
uint64_t debugcon_bytes(struct debugcon *d);

/* ---- ACPI PM block and reset register (pm.c) ----------------------------------
 * PM1a event (status/enable, 4 bytes at offset 0) and PM1a control
 * (2 bytes at offset 4): SLP_EN with SLP_TYP 5 (the DSDT's _S5) calls
 * @poweroff. The reset register at 0xcf9 (its own 1-port range,
 * pm_reset_ops) calls @reset on a write of 0x06 or 0x0e; a pvpanic port
 * (pvpanic_ops, 1 byte) calls @panic on a write with bit 0 set and reads
 * back its capability bits (1 = panicked, 2 = crash loaded). */
struct pm;
struct pm_callbacks {
	void (*poweroff)(void *ctx);
	void (*reset)(void *ctx);
	void (*panic)(void *ctx);
	void *ctx;
};
int pm_new(const struct dev_irq *sci, const struct pm_callbacks *cb, struct pm **p);
void pm_free(struct pm *p);
extern const vmkit_io_ops pm_ops;        /* 8 ports at X86_PM_BASE */
extern const vmkit_io_ops pm_reset_ops;  /* 1 port at 0xcf9 */
extern const vmkit_io_ops pvpanic_ops;   /* 1 port at 0x505 */
/* Press the ACPI power button: sets PWRBTN_STS, raising the SCI if the guest
 * enabled it (ACPI's graceful shutdown request). */
void pm_press_power_button(struct pm *p);
int pm_save(struct pm *p, struct dev_state *out);
int pm_restore(struct pm *p, const uint8_t *data, size_t len);

/* ---- fw_cfg (fwcfg.c): QEMU's firmware configuration interface ---------------
 * Ports: selector 0x510 (2 bytes), data 0x511 (1 byte), DMA address 0x514
 * (two 4-byte big-endian halves; writing the low half starts the
 * transfer). Keys: signature "QEMU" (0x0000), ID with the DMA bit
 * (0x0001), CPU count (0x0005), RAM size (0x0003), 0x0011 reads 0, kernel/
 * initrd/cmdline items (0x0007-0x0015), the file directory (0x0019), and
 * files from 0x0020. DMA reads/writes guest memory through @mem only. */
struct fwcfg;
int fwcfg_new(const struct vmkit_gmem *mem, struct fwcfg **f);
void fwcfg_free(struct fwcfg *f);
extern const vmkit_io_ops fwcfg_ops; /* registered over 0x510..0x51b (12 ports) */
/* Add a numbered item / a named file; the data is copied. A duplicate
 * name is -EEXIST; names are at most 55 characters. */
int fwcfg_add_item(struct fwcfg *f, uint16_t key, const void *data, size_t len);
int fwcfg_add_file(struct fwcfg *f, const char *name, const void *data, size_t len);
/* Convenience for the numbered integer items (stored little-endian). */
int fwcfg_add_u16(struct fwcfg *f, uint16_t key, uint16_t v);
int fwcfg_add_u32(struct fwcfg *f, uint16_t key, uint32_t v);
int fwcfg_add_u64(struct fwcfg *f, uint16_t key, uint64_t v);
/* The saved state is the guest's cursor only (selected key, offset, DMA
 * address high half): item contents are not saved; the machine adds the
 * same items and files again before fwcfg_restore. */
int fwcfg_save(struct fwcfg *f, struct dev_state *out);
int fwcfg_restore(struct fwcfg *f, const uint8_t *data, size_t len);

#define FW_CFG_SIGNATURE   0x00
#define FW_CFG_ID          0x01
#define FW_CFG_UUID        0x02
#define FW_CFG_RAM_SIZE    0x03
#define FW_CFG_NOGRAPHIC   0x04
#define FW_CFG_NB_CPUS     0x05
#define FW_CFG_MACHINE_ID  0x06
#define FW_CFG_KERNEL_ADDR 0x07
#define FW_CFG_KERNEL_SIZE 0x08
#define FW_CFG_KERNEL_CMDLINE 0x09
#define FW_CFG_INITRD_ADDR 0x0a
#define FW_CFG_INITRD_SIZE 0x0b
#define FW_CFG_BOOT_DEVICE 0x0c
#define FW_CFG_NUMA        0x0d
#define FW_CFG_BOOT_MENU   0x0e
#define FW_CFG_MAX_CPUS    0x0f
#define FW_CFG_KERNEL_ENTRY 0x10
#define FW_CFG_KERNEL_DATA 0x11
#define FW_CFG_INITRD_DATA 0x12
#define FW_CFG_CMDLINE_ADDR 0x13
#define FW_CFG_CMDLINE_SIZE 0x14
#define FW_CFG_CMDLINE_DATA 0x15
#define FW_CFG_SETUP_ADDR  0x16
#define FW_CFG_SETUP_SIZE  0x17
#define FW_CFG_SETUP_DATA  0x18
#define FW_CFG_FILE_DIR    0x19
#define FW_CFG_FILE_FIRST  0x20

#endif
