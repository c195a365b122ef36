/* SPDX-License-Identifier: MIT */
/*
 * The freestanding test-guest kit: a Multiboot v1 kernel skeleton for
 * vmkit's KVM tests.
 *
 * Boot: the loader enters _start (boot.S) in 32-bit protected mode with
 * EAX = 0x2BADB002 and EBX = the Multiboot info. The stub loads the static
 * identity page tables (first 4 GiB in 2 MiB pages, user-accessible, the
 * top GiB uncached), enables PAE and long mode, loads the 64-bit GDT and
 * jumps to kit_bsp_entry(). That loads the TSS and IDT and drops to CPL3
 * with IOPL=3, where the kit fills the IDT, probes whether port I/O works
 * at CPL3, and calls guest_main().
 *
 * CPL0 code is emulated ~1000x slower than CPL3 on some hosts (see
 * design/TEST-ENVIRONMENT.md), so everything that is not privileged runs
 * at CPL3: guests drive PIO (IOPL=3), MMIO and the LAPIC/IOAPIC (mapped
 * user-accessible) from there. CPL0 is used only for the entry, the
 * interrupt handlers and kit_kcall(). CPL3 reaches CPL0 through
 * exceptions only (a ud2 at a known address), since some KVMs (kvm_pvm)
 * turn software interrupts at CPL3 into #UD.
 *
 * Each guest is one C file defining guest_main() (and picks its behaviour
 * from the command line); see README.md for the list.
 */
#ifndef VMKIT_GUEST_KIT_H
#define VMKIT_GUEST_KIT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kit_abi.h"

/* Each guest defines this. It runs at CPL3 (IOPL=3, interrupts off) on
 * the boot CPU; its return value is written to the exit port (a negative
 * value exits with KIT_EXIT_KIT_ERROR). */
long guest_main(const char *cmdline);

/* ---- port and memory-mapped I/O -------------------------------------------
 * Guests run at CPL3 with IOPL=3, so in/out need no help from CPL0. Some
 * KVMs do not honour IOPL for the guest's user mode (kvm_pvm raises #GP):
 * the kit probes this once at start (kit_pio_direct) and then does port
 * I/O through kit_kcall() instead. These helpers pick the right way. */
extern volatile int kit_pio_direct;
long kit_kcall(long (*fn)(long), long arg);
long kit_pio_k(long arg);
#define KIT_PIO_ARG(port, size, write, val) \
	((long)((uint64_t)(port) | ((uint64_t)(size) << 16) | ((uint64_t)(write) << 19) | \
		((uint64_t)(val) << 32)))

static inline bool kit_at_cpl0(void)
{
	uint16_t cs;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	return (cs & 3) == 0;
}
static inline bool kit_pio_now(void) { return kit_pio_direct || kit_at_cpl0(); }

static inline void raw_outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void raw_outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void raw_outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t raw_inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint16_t raw_inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t raw_inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outb(uint16_t port, uint8_t v)
{
	if (kit_pio_now())
		raw_outb(port, v);
	else
		kit_kcall(kit_pio_k, KIT_PIO_ARG(port, 1, 1, v));
}
static inline void outw(uint16_t port, uint16_t v)
{
	if (kit_pio_now())
		raw_outw(port, v);
	else
		kit_kcall(kit_pio_k, KIT_PIO_ARG(port, 2, 1, v));
}
static inline void outl(uint16_t port, uint32_t v)
{
	if (kit_pio_now())
		raw_outl(port, v);
	else
		kit_kcall(kit_pio_k, KIT_PIO_ARG(port, 4, 1, v));
}
static inline uint8_t inb(uint16_t port)
{
	return kit_pio_now() ? raw_inb(port) : (uint8_t)kit_kcall(kit_pio_k, KIT_PIO_ARG(port, 1, 0, 0));
}
static inline uint16_t inw(uint16_t port)
{
	return kit_pio_now() ? raw_inw(port) : (uint16_t)kit_kcall(kit_pio_k, KIT_PIO_ARG(port, 2, 0, 0));
}
static inline uint32_t inl(uint16_t port)
{
	return kit_pio_now() ? raw_inl(port) : (uint32_t)kit_kcall(kit_pio_k, KIT_PIO_ARG(port, 4, 0, 0));
}

/* One access of exactly the given width (a single mov). */
static inline uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t mmio_read16(uint64_t a) { return *(volatile uint16_t *)a; }
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline uint64_t mmio_read64(uint64_t a) { return *(volatile uint64_t *)a; }
static inline void mmio_write8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void mmio_write16(uint64_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void mmio_write64(uint64_t a, uint64_t v) { *(volatile uint64_t *)a = v; }

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

/* ---- libc-lite ------------------------------------------------------------- */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

/* ---- serial console (COM1, 8250, polled) ---------------------------------- */
#define KIT_COM1 0x3f8
/* Write bytes, polling LSR.THRE before each. Lines from different CPUs do
 * not interleave: kit_printf and kit_puts hold the console lock. */
void kit_putc(char c);
void kit_puts(const char *s);
/* %s %c %d %u %x %ld %lu %lx %p %%, with an optional '0' flag and width. */
int kit_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int kit_snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void kit_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- exit port --------------------------------------------------------------- */
/* outl(KIT_EXIT_PORT, v): vmkit (and QEMU's isa-debug-exit) exit with
 * (v << 1) | 1. Never returns: if the port is absent it spins. */
__attribute__((noreturn)) void kit_exit(uint32_t v);

/* ---- command line -------------------------------------------------------------
 * The Multiboot command line is a list of words; "key=value" words are
 * settings. */
const char *kit_cmdline(void);
/* The word "key=value" or "key": a pointer to its value (just past the
 * '=', or to the end of a bare key), or NULL if absent. */
const char *kit_cmdline_value(const char *key);
/* True if the word @key or "key=..." is present. */
bool kit_cmdline_has(const char *key);
/* The value of "key=N" (decimal, or hex with 0x), or @def. */
uint64_t kit_cmdline_uint(const char *key, uint64_t def);

/* ---- Multiboot information ------------------------------------------------------ */
struct kit_mb_info {
	uint32_t flags;
	uint32_t mem_lower, mem_upper;
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
} __attribute__((packed));

struct kit_mb_module {
	uint32_t mod_start, mod_end;
	uint32_t string;
	uint32_t reserved;
} __attribute__((packed));

struct kit_mb_mmap {
	uint32_t size; /* of the rest of the entry */
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));

#define KIT_MB_INFO_MEM     (1u << 0)
#define KIT_MB_INFO_CMDLINE (1u << 2)
#define KIT_MB_INFO_MODS    (1u << 3)
#define KIT_MB_INFO_MMAP    (1u << 6)

/* The EAX value the loader passed and its info structure (NULL if EAX was
 * not the Multiboot magic). */
uint32_t kit_mb_magic(void);
const struct kit_mb_info *kit_mb(void);
/* Module @i, or NULL past the end or without module info. */
const struct kit_mb_module *kit_mb_module(uint32_t i);
uint32_t kit_mb_module_count(void);
/* Memory map iteration: kit_mb_mmap_next(NULL) is the first entry; NULL
 * after the last or without a map. Entries that overrun the map's length
 * or have a size below 20 end the walk. */
const struct kit_mb_mmap *kit_mb_mmap_next(const struct kit_mb_mmap *e);

/* ---- fw_cfg (QEMU's, ports 0x510/0x511) --------------------------------------- */
#define KIT_FWCFG_SIGNATURE 0x00
#define KIT_FWCFG_RAM_SIZE  0x03
#define KIT_FWCFG_NB_CPUS   0x05
/* Select @key and read @len bytes of it. */
void kit_fwcfg_read(uint16_t key, void *buf, size_t len);

/* ---- CPL0 services --------------------------------------------------------------- */
/* Run @fn(@arg) at CPL0 with interrupts off (a ud2 the #UD handler
 * recognises by its address) and return its
 * value (declared above). Slow on emulated-CPL0 hosts: keep @fn short.
 *
 * Interrupts: guests run with IF=0 (cli/sti at CPL3 are not used, as they
 * fault where IOPL is not honoured) and take interrupts in kit_halt(): at
 * CPL0, sti; hlt; cli. Where the host delivers interrupts to CPL3 anyway,
 * one may arrive between a guest's check and its kit_halt(), which then
 * waits for the next one: keep a timer running when waiting. */
void kit_halt(void);

/* Interrupt handlers run at CPL0 with interrupts off; the kit counts every
 * vector and sends the LAPIC EOI for vectors >= 0x20 (but the spurious
 * one) after the handler. */
typedef void (*kit_irq_fn)(uint32_t vector);
void kit_set_handler(uint8_t vector, kit_irq_fn fn);
uint32_t kit_irq_count(uint8_t vector);

/* ---- interrupt controllers and timer --------------------------------------------- */
#define KIT_LAPIC_BASE  0xfee00000ull
#define KIT_IOAPIC_BASE 0xfec00000ull
uint32_t kit_lapic_read(uint32_t reg);
void kit_lapic_write(uint32_t reg, uint32_t v);
/* LAPIC ID register bits 31:24. */
uint32_t kit_lapic_id(void);
/* CPUID leaf 1 EBX bits 31:24, executed at CPL0. (At CPL3 some KVMs let
 * CPUID run natively: kvm_pvm without CPUID faulting returns the host's
 * values there, so the kit runs CPUID through kit_kcall.) */
uint32_t kit_cpuid_apic_id(void);
/* CPUID @leaf/@sub at CPL0 (kit_kcall); cpuid() is the CPL3 instruction. */
void kit_cpuid_k(uint32_t leaf, uint32_t sub, uint32_t r[4]);
/* Remap the 8259 PICs to 0x20-0x2f and mask them all, software-enable the
 * LAPIC (spurious vector 0xff). Idempotent per CPU. */
void kit_irq_init(void);
/* Route IOAPIC @pin to vector KIT_VEC_IRQ_BASE + @pin on this CPU's APIC,
 * edge-triggered active high (@level: level-triggered active high), unmasked. */
void kit_ioapic_route(uint32_t pin, bool level);
void kit_ioapic_mask(uint32_t pin);
/* LAPIC timer, periodic, vector KIT_VEC_TIMER: @count bus cycles / 16
 * (KVM's APIC bus runs at 1 GHz: 62500 = 1 ms). 0 stops it. */
void kit_timer_periodic(uint32_t count);
/* Send vector @vec to the CPU with APIC id @apic_id. */
void kit_send_ipi(uint32_t apic_id, uint8_t vec);

/* ---- CPUs ------------------------------------------------------------------------ */
/* The number of CPUs (fw_cfg key 5), at least 1. */
uint32_t kit_cpu_count(void);
/* Start all other CPUs with INIT-SIPI-SIPI (broadcast, all excluding
 * self). Each runs @fn(slot) at CPL3 with IOPL=3 on its own stack; slot
 * is 1..KIT_MAX_CPUS-1 in order of arrival. After @fn returns the CPU
 * halts for good. Returns at once; see kit_cpus_started(). */
void kit_smp_start(void (*fn)(uint32_t slot));
/* How many APs have reached 64-bit mode. */
uint32_t kit_cpus_started(void);

/* Spinlock usable at CPL3 and CPL0. */
typedef struct { volatile uint32_t v; } kit_lock;
void kit_lock_acquire(kit_lock *l);
void kit_lock_release(kit_lock *l);

#endif
