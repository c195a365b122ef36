/* SPDX-License-Identifier: MIT */
/* The kit's C half: CPU setup (CPL0, kept short), the IDT and interrupt
 * dispatch, console, exit port, command line and Multiboot accessors,
 * fw_cfg, LAPIC/IOAPIC/PIC, and AP start-up. See kit.h. */
#include "kit.h"

#define KSTACK_SIZE 8192
#define USTACK_SIZE 16384

/* boot.S */
extern uint32_t kit_boot_magic, kit_boot_info;
extern uint64_t kit_gdt[];
extern char kit_isr_stubs[], kit_ud_entry[];
extern char kit_ap_tramp_start[], kit_ap_tramp_end[];
long kit_user_call(long (*fn)(long), long arg, void *stack_top);
long kit_halt_k(long unused);
void kit_bsp_entry(void);
void kit_ap_entry(uint32_t slot);

/* ---- libc-lite ------------------------------------------------------------------ */

void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;

	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;

	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;
	size_t i;

	for (i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (a[i] != b[i])
			return (uint8_t)a[i] < (uint8_t)b[i] ? -1 : 1;
		if (!a[i])
			return 0;
	}
	return 0;
}

/* ---- locks ------------------------------------------------------------------------ */

void kit_lock_acquire(kit_lock *l)
{
	while (__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE))
		while (l->v)
			cpu_relax();
}

void kit_lock_release(kit_lock *l)
{
	__atomic_store_n(&l->v, 0, __ATOMIC_RELEASE);
}

/* ---- console ------------------------------------------------------------------------ */

static kit_lock console_lock;

/* Raw port access: only at CPL0 or where kit_pio_direct. */
static void serial_byte(char c)
{
	while (!(raw_inb(KIT_COM1 + 5) & 0x20))
		cpu_relax();
	raw_outb(KIT_COM1, (uint8_t)c);
}

struct serial_buf {
	const char *s;
	size_t n;
};

static long serial_write_k(long arg)
{
	const struct serial_buf *b = (const struct serial_buf *)arg;
	size_t i;

	for (i = 0; i < b->n; i++)
		serial_byte(b->s[i]);
	return 0;
}

/* One CPL0 call per string where port I/O needs CPL0. */
static void serial_write(const char *s, size_t n)
{
	struct serial_buf b = { s, n };

	if (kit_pio_now())
		serial_write_k((long)&b);
	else
		kit_kcall(serial_write_k, (long)&b);
}

void kit_putc(char c)
{
	kit_lock_acquire(&console_lock);
	serial_write(&c, 1);
	kit_lock_release(&console_lock);
}

void kit_puts(const char *s)
{
	kit_lock_acquire(&console_lock);
	serial_write(s, strlen(s));
	kit_lock_release(&console_lock);
}

struct outbuf {
	char *buf;
	size_t size, len;
};

static void out_c(struct outbuf *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void out_num(struct outbuf *o, uint64_t v, unsigned base, bool neg, int width, char pad)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[n++] = '-';
	while (width-- > n)
		out_c(o, pad);
	while (n)
		out_c(o, tmp[--n]);
}

int kit_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct outbuf o = { buf, size, 0 };

	for (; *fmt; fmt++) {
		int width = 0, lng = 0;
		char pad = ' ';

		if (*fmt != '%') {
			out_c(&o, *fmt);
			continue;
		}
		fmt++;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			lng = 1;
			fmt++;
		}
		switch (*fmt) {
		case 'd': {
			int64_t v = lng ? va_arg(ap, long) : va_arg(ap, int);
			out_num(&o, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0, width, pad);
			break;
		}
		case 'u':
			out_num(&o, lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 10,
				false, width, pad);
			break;
		case 'x':
			out_num(&o, lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 16,
				false, width, pad);
			break;
		case 'p':
			out_c(&o, '0');
			out_c(&o, 'x');
			out_num(&o, (uintptr_t)va_arg(ap, void *), 16, false, width, pad);
			break;
		case 'c':
			out_c(&o, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			int len;

			if (!s)
				s = "(null)";
			len = (int)strlen(s);
			while (width-- > len)
				out_c(&o, ' ');
			while (*s)
				out_c(&o, *s++);
			break;
		}
		case '%':
			out_c(&o, '%');
			break;
		case '\0':
			fmt--;
			break;
		default:
			out_c(&o, '%');
			out_c(&o, *fmt);
			break;
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return (int)o.len;
}

int kit_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = kit_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

void kit_printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = kit_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(buf))
		n = sizeof(buf) - 1;
	kit_lock_acquire(&console_lock);
	serial_write(buf, (size_t)n);
	kit_lock_release(&console_lock);
}

/* ---- port I/O through CPL0 ----------------------------------------------------------- */

volatile int kit_pio_direct;

long kit_pio_k(long arg)
{
	uint16_t port = (uint16_t)arg;
	uint32_t size = (uint32_t)(arg >> 16) & 7, val = (uint32_t)((uint64_t)arg >> 32);

	if (arg & (1l << 19)) {
		if (size == 1)
			raw_outb(port, (uint8_t)val);
		else if (size == 2)
			raw_outw(port, (uint16_t)val);
		else
			raw_outl(port, val);
		return 0;
	}
	if (size == 1)
		return raw_inb(port);
	if (size == 2)
		return raw_inw(port);
	return raw_inl(port);
}

/* boot.S: reads COM1's LSR at CPL3; returns 0 if that faulted (the #GP
 * handler skips the 1-byte in and clears %ecx). */
long kit_iopl_probe(void);
extern char kit_iopl_probe_insn[];

/* ---- exit port ---------------------------------------------------------------------- */

void kit_exit(uint32_t v)
{
	outl(KIT_EXIT_PORT, v);
	for (;;)
		cpu_relax();
}

/* ---- Multiboot information and command line ------------------------------------------ */

uint32_t kit_mb_magic(void)
{
	return kit_boot_magic;
}

const struct kit_mb_info *kit_mb(void)
{
	if (kit_boot_magic != 0x2BADB002u)
		return NULL;
	return (const struct kit_mb_info *)(uintptr_t)kit_boot_info;
}

const char *kit_cmdline(void)
{
	const struct kit_mb_info *mb = kit_mb();

	if (!mb || !(mb->flags & KIT_MB_INFO_CMDLINE) || !mb->cmdline)
		return "";
	return (const char *)(uintptr_t)mb->cmdline;
}

const char *kit_cmdline_value(const char *key)
{
	const char *p = kit_cmdline();
	size_t klen = strlen(key);

	while (*p) {
		while (*p == ' ')
			p++;
		if (!strncmp(p, key, klen) && (p[klen] == '=' || p[klen] == ' ' || !p[klen]))
			return p[klen] == '=' ? p + klen + 1 : p + klen;
		while (*p && *p != ' ')
			p++;
	}
	return NULL;
}

bool kit_cmdline_has(const char *key)
{
	return kit_cmdline_value(key) != NULL;
}

uint64_t kit_cmdline_uint(const char *key, uint64_t def)
{
	const char *p = kit_cmdline_value(key);
	uint64_t v = 0;
	unsigned base = 10;
	int digits = 0;

	if (!p)
		return def;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (;; p++, digits++) {
		unsigned d;

		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			break;
		v = v * base + d;
	}
	return digits ? v : def;
}

uint32_t kit_mb_module_count(void)
{
	const struct kit_mb_info *mb = kit_mb();

	if (!mb || !(mb->flags & KIT_MB_INFO_MODS))
		return 0;
	return mb->mods_count;
}

const struct kit_mb_module *kit_mb_module(uint32_t i)
{
	const struct kit_mb_info *mb = kit_mb();

	if (i >= kit_mb_module_count())
		return NULL;
	return (const struct kit_mb_module *)(uintptr_t)mb->mods_addr + i;
}

const struct kit_mb_mmap *kit_mb_mmap_next(const struct kit_mb_mmap *e)
{
	const struct kit_mb_info *mb = kit_mb();
	uint64_t start, end, next;

	if (!mb || !(mb->flags & KIT_MB_INFO_MMAP))
		return NULL;
	start = mb->mmap_addr;
	end = start + mb->mmap_length;
	next = e ? (uintptr_t)e + 4 + e->size : start;
	if (next + sizeof(*e) > end)
		return NULL;
	e = (const struct kit_mb_mmap *)(uintptr_t)next;
	if (e->size < 20)
		return NULL;
	return e;
}

/* ---- fw_cfg ----------------------------------------------------------------------------- */

void kit_fwcfg_read(uint16_t key, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t i;

	outw(0x510, key);
	for (i = 0; i < len; i++)
		p[i] = inb(0x511);
}

/* ---- CPUs: per-CPU data, TSS, IDT ------------------------------------------------------------ */

struct kit_tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

/* Reached through the GS base; boot.S reads .tss at %gs:8. */
struct kit_cpu {
	struct kit_cpu *self;
	struct kit_tss *tss;
	uint32_t slot;
	struct kit_tss tss_store;
} __attribute__((aligned(64)));

struct kit_gate {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, reserved;
} __attribute__((packed));

struct kit_frame {
	uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

static struct kit_cpu cpus[KIT_MAX_CPUS];
static struct kit_gate idt[256] __attribute__((aligned(4096)));
static kit_irq_fn handlers[256];
static volatile uint32_t irq_counts[256];
static uint8_t bsp_ustack[4 * USTACK_SIZE] __attribute__((aligned(16)));
static uint8_t ap_ustacks[KIT_MAX_CPUS][USTACK_SIZE] __attribute__((aligned(16)));
static void (*volatile ap_fn)(uint32_t slot);
static volatile uint32_t aps_started;

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

/* CPL0: GS base, this slot's TSS descriptor, TR and IDTR. */
static void kit_cpu_init(uint32_t slot)
{
	struct kit_cpu *c = &cpus[slot];
	uint64_t base = (uintptr_t)&c->tss_store;
	uint64_t *d = &kit_gdt[5 + 2 * slot];
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uintptr_t)idt };

	c->self = c;
	c->tss = &c->tss_store;
	c->slot = slot;
	c->tss_store.iomap_base = sizeof(struct kit_tss);
	wrmsr(0xc0000101, (uintptr_t)c); /* GS base */
	d[0] = (sizeof(struct kit_tss) - 1) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
	       (((base >> 24) & 0xff) << 56);
	d[1] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(0x28 + 16 * slot));
	__asm__ volatile("lidt %0" : : "m"(idtr));
}

static void set_gate(uint8_t vec, const void *fn, bool user)
{
	uint64_t a = (uintptr_t)fn;

	idt[vec].off_lo = (uint16_t)a;
	idt[vec].sel = 0x08;
	idt[vec].ist = 0;
	idt[vec].type = user ? 0xee : 0x8e;
	idt[vec].off_mid = (uint16_t)(a >> 16);
	idt[vec].off_hi = (uint32_t)(a >> 32);
	idt[vec].reserved = 0;
}

/* CPL3 (it is plain memory): the IDT is loaded before it is filled. */
static void idt_fill(void)
{
	unsigned v;

	for (v = 0; v < 256; v++)
		set_gate((uint8_t)v, kit_isr_stubs + 16 * v, false);
	set_gate(6, kit_ud_entry, false);
}

static const char *const exc_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "?", "#TS", "#NP",
	"#SS", "#GP", "#PF", "?", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

/* CPL0, from an exception: report and exit. The console lock is taken
 * with a bound, since the faulting code may hold it. */
static __attribute__((noreturn)) void fault(const struct kit_frame *f)
{
	const char *name = exc_names[f->vector] ? exc_names[f->vector] : "?";
	uint64_t cr2 = 0;
	char buf[160];
	int n, spins;

	if (f->vector == 14)
		__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	n = kit_snprintf(buf, sizeof(buf),
			 "FAULT vector=%lu %s rip=0x%lx err=0x%lx cs=0x%lx rsp=0x%lx cr2=0x%lx\n",
			 (unsigned long)f->vector, name, (unsigned long)f->rip,
			 (unsigned long)f->error, (unsigned long)f->cs, (unsigned long)f->rsp,
			 (unsigned long)cr2);
	for (spins = 0; spins < 100000 && __atomic_exchange_n(&console_lock.v, 1, __ATOMIC_ACQUIRE);
	     spins++)
		cpu_relax();
	serial_write(buf, n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	kit_exit(KIT_EXIT_FAULT_BASE + (uint32_t)f->vector);
}

void kit_isr_dispatch(struct kit_frame *f);
void kit_isr_dispatch(struct kit_frame *f)
{
	uint32_t v = (uint32_t)f->vector & 0xff;

	__atomic_add_fetch(&irq_counts[v], 1, __ATOMIC_RELAXED);
	if (v == 13 && f->rip == (uintptr_t)kit_iopl_probe_insn) {
		f->rip += 1;
		f->rcx = 0;
		return;
	}
	if (v < 32)
		fault(f);
	if (handlers[v])
		handlers[v](v);
	if (v != KIT_VEC_SPURIOUS)
		kit_lapic_write(0xb0, 0);
}

void kit_set_handler(uint8_t vector, kit_irq_fn fn)
{
	handlers[vector] = fn;
}

uint32_t kit_irq_count(uint8_t vector)
{
	return __atomic_load_n(&irq_counts[vector], __ATOMIC_RELAXED);
}

void kit_halt(void)
{
	kit_kcall(kit_halt_k, 0);
}

/* ---- entry ------------------------------------------------------------------------------------- */

static long bsp_user(long unused)
{
	long r;

	(void)unused;
	idt_fill();
	kit_pio_direct = (int)kit_iopl_probe();
	r = guest_main(kit_cmdline());
	return r < 0 ? KIT_EXIT_KIT_ERROR : r;
}

void kit_bsp_entry(void)
{
	long r;

	kit_cpu_init(0);
	r = kit_user_call(bsp_user, 0, bsp_ustack + sizeof(bsp_ustack));
	kit_exit((uint32_t)r);
}

static long ap_user(long slot)
{
	__atomic_add_fetch(&aps_started, 1, __ATOMIC_SEQ_CST);
	ap_fn((uint32_t)slot);
	return 0;
}

void kit_ap_entry(uint32_t slot)
{
	kit_cpu_init(slot);
	kit_user_call(ap_user, slot, ap_ustacks[slot] + USTACK_SIZE);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* ---- LAPIC, IOAPIC, PIC, timer ------------------------------------------------------------------ */

uint32_t kit_lapic_read(uint32_t reg)
{
	return mmio_read32(KIT_LAPIC_BASE + reg);
}

void kit_lapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(KIT_LAPIC_BASE + reg, v);
}

uint32_t kit_lapic_id(void)
{
	return kit_lapic_read(0x20) >> 24;
}

struct cpuid_args {
	uint32_t leaf, sub, r[4];
};

static long cpuid_k(long arg)
{
	struct cpuid_args *a = (struct cpuid_args *)arg;

	cpuid(a->leaf, a->sub, a->r);
	return 0;
}

void kit_cpuid_k(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	struct cpuid_args a = { leaf, sub, { 0, 0, 0, 0 } };

	kit_kcall(cpuid_k, (long)&a);
	memcpy(r, a.r, sizeof(a.r));
}

uint32_t kit_cpuid_apic_id(void)
{
	uint32_t r[4];

	kit_cpuid_k(1, 0, r);
	return r[1] >> 24;
}

static volatile uint32_t pic_done;

void kit_irq_init(void)
{
	if (!__atomic_exchange_n(&pic_done, 1, __ATOMIC_SEQ_CST)) {
		outb(0x20, 0x11); /* ICW1: edge, cascade, ICW4 */
		outb(0xa0, 0x11);
		outb(0x21, 0x20); /* ICW2: vector bases */
		outb(0xa1, 0x28);
		outb(0x21, 0x04); /* ICW3: slave on IRQ2 */
		outb(0xa1, 0x02);
		outb(0x21, 0x01); /* ICW4: 8086 mode */
		outb(0xa1, 0x01);
		outb(0x21, 0xff); /* mask all: the IOAPIC delivers */
		outb(0xa1, 0xff);
	}
	kit_lapic_write(0x80, 0);                          /* TPR */
	kit_lapic_write(0xf0, 0x100 | KIT_VEC_SPURIOUS);   /* SVR: enabled */
}

static void ioapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(KIT_IOAPIC_BASE, reg);
	mmio_write32(KIT_IOAPIC_BASE + 0x10, v);
}

void kit_ioapic_route(uint32_t pin, bool level)
{
	ioapic_write(0x11 + 2 * pin, kit_lapic_id() << 24);
	ioapic_write(0x10 + 2 * pin, (KIT_VEC_IRQ_BASE + pin) | (level ? 1u << 15 : 0));
}

void kit_ioapic_mask(uint32_t pin)
{
	ioapic_write(0x10 + 2 * pin, 1u << 16);
}

void kit_timer_periodic(uint32_t count)
{
	kit_lapic_write(0x3e0, 0x3);                        /* divide by 16 */
	kit_lapic_write(0x320, KIT_VEC_TIMER | (1u << 17) | (count ? 0 : 1u << 16));
	kit_lapic_write(0x380, count);
}

static void icr_send(uint32_t dest, uint32_t low)
{
	int spins;

	kit_lapic_write(0x310, dest << 24);
	kit_lapic_write(0x300, low);
	for (spins = 0; spins < 100000 && (kit_lapic_read(0x300) & (1u << 12)); spins++)
		cpu_relax();
}

void kit_send_ipi(uint32_t apic_id, uint8_t vec)
{
	icr_send(apic_id, vec | (1u << 14));
}

/* ---- AP start-up -------------------------------------------------------------------------------- */

uint32_t kit_cpu_count(void)
{
	uint16_t n = 0;

	kit_fwcfg_read(KIT_FWCFG_NB_CPUS, &n, sizeof(n));
	return n ? n : 1;
}

uint32_t kit_cpus_started(void)
{
	return __atomic_load_n(&aps_started, __ATOMIC_SEQ_CST);
}

static void spin_cycles(uint64_t n)
{
	uint64_t t0 = rdtsc();

	while (rdtsc() - t0 < n)
		cpu_relax();
}

void kit_smp_start(void (*fn)(uint32_t slot))
{
	const uint32_t all_but_self = 3u << 18, assert = 1u << 14;

	ap_fn = fn;
	memcpy((void *)(uintptr_t)KIT_AP_TRAMPOLINE_ADDR, kit_ap_tramp_start,
	       (size_t)(kit_ap_tramp_end - kit_ap_tramp_start));
	kit_irq_init();
	icr_send(0, all_but_self | assert | (5u << 8));        /* INIT */
	spin_cycles(10000000);
	icr_send(0, all_but_self | assert | (6u << 8) | (KIT_AP_TRAMPOLINE_ADDR >> 12));
	spin_cycles(200000);
	icr_send(0, all_but_self | assert | (6u << 8) | (KIT_AP_TRAMPOLINE_ADDR >> 12));
}
