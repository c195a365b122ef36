/* SPDX-License-Identifier: MIT */
/* The low-level API against real KVM: memory, PIO/MMIO dispatch, the
 * unclaimed-access policies, kicks. Guests here are a few bytes of
 * real-mode code. */
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kvmtest.h"
#include "internal.h"

struct dev {
	uint64_t off;
	uint32_t len;
	uint8_t wrote[16];
	int writes, reads;
	uint8_t reply;
};

static void dev_read(void *o, uint64_t off, void *data, uint32_t len)
{
	struct dev *d = o;
	d->off = off;
	d->len = len;
	d->reads++;
	memset(data, d->reply, len);
}

static void dev_write(void *o, uint64_t off, const void *data, uint32_t len)
{
	struct dev *d = o;
	d->off = off;
	d->len = len;
	if (off < sizeof(d->wrote))
		d->wrote[off] = *(const uint8_t *)data;
	d->writes++;
}

static const vmkit_io_ops dev_ops = { sizeof(vmkit_io_ops), 0, dev_read, dev_write };

static vmkit_host *host;
static vmkit_vm *vm;
static vmkit_vcpu *cpu;

/* A VM without in-kernel irqchip (so HLT exits to us), 32 KiB of RAM at 0,
 * one vCPU in real mode at 0000:1000 running @code. */
static void make_vm(const uint8_t *code, size_t len, uint32_t policy)
{
	vmkit_vm_config cfg = VMKIT_VM_CONFIG_INIT;
	vmkit_memory_region r = VMKIT_MEMORY_REGION_INIT;
	vmkit_sregs s;
	vmkit_regs regs;

	host = kvmtest_host();
	cfg.flags = VMKIT_VM_NO_IRQCHIP;
	cfg.unhandled_policy = policy;
	cr_assert_eq(vmkit_vm_new(host, &cfg, &vm), 0, "%s", vmkit_last_error());
	r.gpa = 0;
	r.length = 0x8000;
	cr_assert_geq(vmkit_vm_add_memory(vm, &r), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vm_write(vm, 0x1000, code, len), 0);
	cr_assert_eq(vmkit_vcpu_new(vm, 0, &cpu), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_get_sregs(cpu, &s), 0);
	s.cs.base = 0;
	s.cs.selector = 0;
	s.ds.base = 0;
	s.ds.selector = 0;
	cr_assert_eq(vmkit_vcpu_set_sregs(cpu, &s), 0);
	memset(&regs, 0, sizeof(regs));
	regs.rip = 0x1000;
	regs.rflags = 2;
	cr_assert_eq(vmkit_vcpu_set_regs(cpu, &regs), 0);
}

static void teardown(void)
{
	vmkit_vm_free(vm);
	vmkit_host_free(host);
	vm = NULL;
	host = NULL;
}

TestSuite(vcpu, .fini = teardown, .timeout = 60);

Test(vcpu, pio_mmio_memory_and_unclaimed_ports)
{
	static const uint8_t code[] = {
		0xba, 0x10, 0x00,       /* mov dx, 0x10 */
		0xb0, 0x42,             /* mov al, 0x42 */
		0xee,                   /* out dx, al        -> port 0x10 */
		0xba, 0x11, 0x00,       /* mov dx, 0x11 */
		0xec,                   /* in al, dx         <- port 0x11 */
		0xe6, 0x12,             /* out 0x12, al      echo it */
		0xe4, 0x80,             /* in al, 0x80       unclaimed */
		0xe6, 0x13,             /* out 0x13, al      echo it */
		0xa1, 0x00, 0x20,       /* mov ax, [0x2000] */
		0x05, 0x01, 0x00,       /* add ax, 1 */
		0xa3, 0x00, 0x20,       /* mov [0x2000], ax */
		0xc6, 0x06, 0x00, 0x90, 0x77, /* mov byte [0x9000], 0x77   MMIO */
		0xa0, 0x04, 0x90,       /* mov al, [0x9004]  MMIO read */
		0xe6, 0x14,             /* out 0x14, al */
		0xf4,                   /* hlt */
	};
	struct dev pio = { .reply = 0x5a }, mmio = { .reply = 0xa5 };
	uint16_t word = 0x1233;
	vmkit_vcpu_exit e = { .size = sizeof(e) };
	vmkit_vm_stats st = { .size = sizeof(st) };

	make_vm(code, sizeof(code), VMKIT_UNHANDLED_IGNORE);
	cr_assert_eq(vmkit_vm_write(vm, 0x2000, &word, 2), 0);
	cr_assert_eq(vmkit_vm_register_pio(vm, 0x10, 5, &dev_ops, &pio, 0), 0);
	cr_assert_eq(vmkit_vm_register_mmio(vm, 0x9000, 0x1000, &dev_ops, &mmio, 0), 0);
	cr_assert_eq(vmkit_vcpu_run(cpu, &e), 0, "%s", vmkit_last_error());
	cr_assert_eq(e.kind, VMKIT_VCPU_EXIT_HLT, "exit %u: %s", e.kind, e.detail);
	cr_assert_eq(pio.wrote[0], 0x42);
	cr_assert_eq(pio.wrote[2], 0x5a, "read of a claimed port returns the device's value");
	cr_assert_eq(pio.wrote[3], 0xff, "unclaimed port reads as all ones");
	cr_assert_eq(pio.wrote[4], 0xa5, "MMIO read returns the device's value");
	cr_assert_eq(mmio.wrote[0], 0x77);
	cr_assert_eq(mmio.off, 4);
	cr_assert_eq(vmkit_vm_read(vm, 0x2000, &word, 2), 0);
	cr_assert_eq(word, 0x1234, "guest's memory write is seen by the host");
	cr_assert_eq(vmkit_vm_get_stats(vm, &st), 0);
	cr_assert_eq(st.unhandled_reads, 1);
	cr_assert_eq(st.unhandled_writes, 0);
	cr_assert_geq(st.pio_exits, 5);
	cr_assert_eq(st.mmio_exits, 2);
}

Test(vcpu, strict_policy_stops_on_unclaimed_port)
{
	static const uint8_t code[] = { 0xe4, 0x80, 0xf4 }; /* in al, 0x80; hlt */
	vmkit_vcpu_exit e = { .size = sizeof(e) };

	make_vm(code, sizeof(code), VMKIT_UNHANDLED_STRICT);
	cr_assert_eq(vmkit_vcpu_run(cpu, &e), 0);
	cr_assert_eq(e.kind, VMKIT_VCPU_EXIT_UNHANDLED);
	cr_assert_eq(e.u.io.port, 0x80);
	cr_assert_eq(e.u.io.is_write, 0);
	cr_assert(strstr(e.detail, "0x80") != NULL);
}

Test(vcpu, exit_policy_lets_the_caller_complete_a_read)
{
	static const uint8_t code[] = {
		0xe4, 0x80,             /* in al, 0x80 */
		0xe6, 0x81,             /* out 0x81, al */
		0xf4,
	};
	vmkit_vcpu_exit e = { .size = sizeof(e) };

	make_vm(code, sizeof(code), VMKIT_UNHANDLED_EXIT);
	cr_assert_eq(vmkit_vcpu_run(cpu, &e), 0);
	cr_assert_eq(e.kind, VMKIT_VCPU_EXIT_IO);
	cr_assert_eq(e.u.io.port, 0x80);
	e.u.io.data[0] = 0x3c;
	cr_assert_eq(vmkit_vcpu_run(cpu, &e), 0);
	cr_assert_eq(e.kind, VMKIT_VCPU_EXIT_IO);
	cr_assert_eq(e.u.io.port, 0x81);
	cr_assert_eq(e.u.io.is_write, 1);
	cr_assert_eq(e.u.io.data[0], 0x3c);
}

static void *kicker(void *arg)
{
	usleep(100 * 1000);
	vmkit_vcpu_kick(arg);
	return NULL;
}

Test(vcpu, kick_interrupts_a_spinning_guest)
{
	static const uint8_t code[] = { 0xeb, 0xfe }; /* jmp $ */
	vmkit_vcpu_exit e = { .size = sizeof(e) };
	vmkit_regs regs;
	pthread_t t;

	make_vm(code, sizeof(code), VMKIT_UNHANDLED_IGNORE);
	pthread_create(&t, NULL, kicker, cpu);
	cr_assert_eq(vmkit_vcpu_run(cpu, &e), 0, "%s", vmkit_last_error());
	pthread_join(t, NULL);
	cr_assert_eq(e.kind, VMKIT_VCPU_EXIT_INTERRUPTED);
	cr_assert_eq(vmkit_vcpu_get_regs(cpu, &regs), 0);
	cr_assert_eq(regs.rip, 0x1000, "the guest was spinning at its jmp");
}

Test(vcpu, state_round_trip)
{
	static const uint8_t code[] = { 0xf4 };
	vmkit_regs r, r2;
	vmkit_lapic l;
	vmkit_vcpu_events ev;
	vmkit_msr m = { .index = 0x174 }; /* IA32_SYSENTER_CS */
	uint32_t mp;

	make_vm(code, sizeof(code), VMKIT_UNHANDLED_IGNORE);
	cr_assert_eq(vmkit_vcpu_get_regs(cpu, &r), 0);
	r.rax = 0x0123456789abcdefull;
	r.r15 = 42;
	cr_assert_eq(vmkit_vcpu_set_regs(cpu, &r), 0);
	cr_assert_eq(vmkit_vcpu_get_regs(cpu, &r2), 0);
	cr_assert_eq(r2.rax, r.rax);
	cr_assert_eq(r2.r15, 42);
	m.data = 0x10;
	cr_assert_eq(vmkit_vcpu_set_msrs(cpu, &m, 1), 1, "%s", vmkit_last_error());
	m.data = 0;
	cr_assert_eq(vmkit_vcpu_get_msrs(cpu, &m, 1), 1);
	cr_assert_eq(m.data, 0x10);
	cr_assert_eq(vmkit_vcpu_get_events(cpu, &ev), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_set_events(cpu, &ev), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_get_mp_state(cpu, &mp), 0);
	cr_assert_eq(mp, VMKIT_MP_RUNNABLE);
	/* no in-kernel irqchip here: there is no LAPIC to read */
	cr_assert_lt(vmkit_vcpu_get_lapic(cpu, &l), 0);
	cr_assert_gt(vmkit_vcpu_state_msr_list(cpu, NULL, 0), 10);
}

Test(vcpu, memory_regions_bounds)
{
	static const uint8_t code[] = { 0xf4 };
	vmkit_memory_region r = VMKIT_MEMORY_REGION_INIT;
	uint8_t b[16];
	void *p;
	int id;

	make_vm(code, sizeof(code), VMKIT_UNHANDLED_IGNORE);
	cr_assert_eq(vmkit_vm_read(vm, 0x7ff8, b, 16), -EFAULT);
	r.gpa = 0x8000;
	r.length = 0x1000;
	r.backing = VMKIT_MEMORY_MEMFD;
	id = vmkit_vm_add_memory(vm, &r);
	cr_assert_geq(id, 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vm_read(vm, 0x7ff8, b, 16), 0, "reads cross adjacent regions");
	cr_assert_eq(vmkit_vm_translate(vm, 0x7ff8, 16, &p), -EFAULT);
	cr_assert_eq(vmkit_vm_translate(vm, 0x8000, 16, &p), 0);
	cr_assert_eq(vmkit_vm_add_memory(vm, &r), -EEXIST);
	cr_assert_eq(vmkit_vm_remove_memory(vm, id), 0);
	cr_assert_eq(vmkit_vm_read(vm, 0x8000, b, 1), -EFAULT);
	/* Contradictory and unknown flags are refused. */
	r.flags = VMKIT_MEMORY_HUGEPAGES | VMKIT_MEMORY_NOHUGEPAGES;
	cr_assert_eq(vmkit_vm_add_memory(vm, &r), -EINVAL);
	r.flags = 1u << 20;
	cr_assert_eq(vmkit_vm_add_memory(vm, &r), -EINVAL);
	r.flags = VMKIT_MEMORY_NOHUGEPAGES;
	cr_assert_geq(vmkit_vm_add_memory(vm, &r), 0, "%s", vmkit_last_error());
}

/* ioeventfd: a guest write that matches signals the eventfd and does not
 * reach the bus; one that does not match (another value) exits as usual. */
Test(vcpu, ioeventfd_catches_matching_writes)
{
	static const uint8_t code[] = {
		0xb0, 0x03,             /* mov al, 3 */
		0xe6, 0x30,             /* out 0x30, al   -> ioeventfd (datamatch 3) */
		0xb0, 0x04,             /* mov al, 4 */
		0xe6, 0x30,             /* out 0x30, al   -> no match: the bus */
		0xc7, 0x06, 0x50, 0x90, 0x02, 0x00, /* mov word [0x9050], 2 -> MMIO ioeventfd */
		0xf4,                   /* hlt */
	};
	struct dev pio = { 0 }, mmio = { 0 };
	vmkit_vcpu_exit e = { .size = sizeof(e) };
	int pfd = eventfd(0, EFD_NONBLOCK), mfd = eventfd(0, EFD_NONBLOCK);
	uint64_t v = 0;

	make_vm(code, sizeof(code), VMKIT_UNHANDLED_IGNORE);
	cr_assert_eq(vmkit_vm_register_pio(vm, 0x30, 1, &dev_ops, &pio, 0), 0);
	cr_assert_eq(vmkit_vm_register_mmio(vm, 0x9000, 0x1000, &dev_ops, &mmio, 0), 0);
	cr_assert_eq(vmkit__vm_ioeventfd(vm, 0x30, 1, true, true, 3, pfd, true), 0, "%s",
		     vmkit_last_error());
	cr_assert_eq(vmkit__vm_ioeventfd(vm, 0x9050, 2, false, false, 0, mfd, true), 0, "%s",
		     vmkit_last_error());
	cr_assert_eq(vmkit__vm_ioeventfd(vm, 0x30, 3, true, false, 0, pfd, true), -EINVAL);
	cr_assert_eq(vmkit_vcpu_run(cpu, &e), 0, "%s", vmkit_last_error());
	cr_assert_eq(e.kind, VMKIT_VCPU_EXIT_HLT, "exit %u: %s", e.kind, e.detail);
	cr_assert_eq(read(pfd, &v, 8), 8, "the matching port write signalled the eventfd");
	cr_assert_eq(v, 1);
	cr_assert_eq(pio.writes, 1, "only the non-matching write reached the device");
	cr_assert_eq(pio.wrote[0], 4);
	cr_assert_eq(read(mfd, &v, 8), 8, "the MMIO write signalled its eventfd");
	cr_assert_eq(mmio.writes, 0);
	cr_assert_eq(vmkit__vm_ioeventfd(vm, 0x30, 1, true, true, 3, pfd, false), 0);
	cr_assert_eq(vmkit__vm_ioeventfd(vm, 0x9050, 2, false, false, 0, mfd, false), 0);
	close(pfd);
	close(mfd);
}

/* MSI routes: GSIs from 24 up, updated and freed; an irqfd on one. */
Test(vcpu, msi_routes_and_irqfd)
{
	uint32_t g1, g2, g3;
	int fd = eventfd(0, EFD_NONBLOCK);

	host = kvmtest_host();
	cr_assert_eq(vmkit_vm_new(host, NULL, &vm), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit__vm_msi_route_add(vm, 0xfee00000, 0x4041, &g1), 0, "%s",
		     vmkit_last_error());
	cr_assert_eq(vmkit__vm_msi_route_add(vm, 0xfee00000, 0x4042, &g2), 0);
	cr_assert_geq(g1, VMKIT_MSI_GSI_BASE);
	cr_assert_neq(g1, g2);
	cr_assert_eq(vmkit__vm_msi_route_update(vm, g1, 0xfee01000, 0x4043), 0, "%s",
		     vmkit_last_error());
	cr_assert_eq(vmkit__vm_irqfd(vm, g1, fd, -1, true), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit__vm_irqfd(vm, g1, fd, -1, false), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit__vm_msi_route_del(vm, g1), 0);
	cr_assert_eq(vmkit__vm_msi_route_del(vm, g1), -ENOENT, "freed twice");
	cr_assert_eq(vmkit__vm_msi_route_update(vm, 5, 0, 0), -ENOENT, "not an MSI GSI");
	cr_assert_eq(vmkit__vm_msi_route_add(vm, 0xfee00000, 0x4044, &g3), 0);
	cr_assert_eq(g3, g1, "a freed GSI is reused");
	/* no vCPU has its LAPIC enabled: the message is not delivered, not an error */
	cr_assert_geq(vmkit__vm_signal_msi(vm, 0xfee00000, 0x4041), 0, "%s", vmkit_last_error());
	close(fd);
}

/* A kick that lands while the vCPU is inside an I/O exit: run returns
 * INTERRUPTED with that I/O completed, so the state a caller reads then
 * (a pause, a snapshot) is past the instruction. KVM finishes a PIO exit
 * only on the next KVM_RUN: an IN's data reaches RAX and an OUT's RIP
 * advances then. Before, the IN would run again after a restore. */
static vmkit_vcpu *kick_target;

static void kick_read(void *o, uint64_t off, void *data, uint32_t len)
{
	dev_read(o, off, data, len);
	vmkit_vcpu_kick(kick_target);
}

static const vmkit_io_ops kick_ops = { sizeof(vmkit_io_ops), 0, kick_read, dev_write };

Test(vcpu, kick_inside_an_io_exit_completes_the_io)
{
	static const uint8_t code[] = {
		0xb0, 0x00,             /* 0x1000 mov al, 0 */
		0xe4, 0x20,             /* 0x1002 in al, 0x20  (its handler kicks us) */
		0xf4,                   /* 0x1004 hlt */
	};
	struct dev d = { .reply = 0x6b };
	vmkit_vcpu_exit e = { .size = sizeof(e) };
	vmkit_regs regs;

	make_vm(code, sizeof(code), VMKIT_UNHANDLED_IGNORE);
	kick_target = cpu;
	cr_assert_eq(vmkit_vm_register_pio(vm, 0x20, 1, &kick_ops, &d, 0), 0);
	cr_assert_eq(vmkit_vcpu_run(cpu, &e), 0, "%s", vmkit_last_error());
	cr_assert_eq(e.kind, VMKIT_VCPU_EXIT_INTERRUPTED, "exit %u: %s", e.kind, e.detail);
	cr_assert_eq(d.reads, 1);
	cr_assert_eq(vmkit_vcpu_get_regs(cpu, &regs), 0);
	cr_assert_eq(regs.rip, 0x1004, "RIP 0x%llx: the IN was not completed",
		     (unsigned long long)regs.rip);
	cr_assert_eq(regs.rax & 0xff, 0x6b, "AL 0x%llx: the IN's data never reached the guest",
		     (unsigned long long)regs.rax & 0xff);
	/* Running on takes it to the HLT, without reading the port again. */
	cr_assert_eq(vmkit_vcpu_run(cpu, &e), 0, "%s", vmkit_last_error());
	cr_assert_eq(e.kind, VMKIT_VCPU_EXIT_HLT, "exit %u: %s", e.kind, e.detail);
	cr_assert_eq(d.reads, 1, "the port was read %d times", d.reads);
}

/* Everything a snapshot will save comes back as it was set: special
 * registers, FPU/SSE, LAPIC registers, the XSAVE area, XCR0 and the debug
 * registers, on a VM with the in-kernel irqchip (as machines have). Each
 * accessor on its own: how the FPU and XSAVE views relate is KVM's. */
Test(vcpu, whole_architectural_state_round_trips)
{
	vmkit_sregs s, s2;
	vmkit_fpu f, f2;
	vmkit_lapic l, l2;
	vmkit_xsave x, x2;
	vmkit_xcrs c, c2;
	vmkit_debugregs d, d2;

	host = kvmtest_host();
	cr_assert_eq(vmkit_vm_new(host, NULL, &vm), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_new(vm, 0, &cpu), 0, "%s", vmkit_last_error());

	cr_assert_eq(vmkit_vcpu_get_sregs(cpu, &s), 0, "%s", vmkit_last_error());
	s.gdt.base = 0x5000;
	s.gdt.limit = 0x37;
	s.idt.base = 0x6000;
	s.idt.limit = 0xfff;
	s.ds.base = 0x12340;
	s.ds.selector = 0x1234;
	s.cr2 = 0xdead000;
	cr_assert_eq(vmkit_vcpu_set_sregs(cpu, &s), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_get_sregs(cpu, &s2), 0);
	cr_assert_eq(s2.gdt.base, 0x5000);
	cr_assert_eq(s2.gdt.limit, 0x37);
	cr_assert_eq(s2.idt.base, 0x6000);
	cr_assert_eq(s2.idt.limit, 0xfff);
	cr_assert_eq(s2.ds.base, 0x12340);
	cr_assert_eq(s2.ds.selector, 0x1234);
	cr_assert_eq(s2.cr2, 0xdead000);

	cr_assert_eq(vmkit_vcpu_get_fpu(cpu, &f), 0, "%s", vmkit_last_error());
	f.fcw = 0x037a;
	for (int i = 0; i < 16; i++)
		f.xmm[5][i] = (uint8_t)(0xa0 + i);
	f.fpr[2][0] = 0x77;
	cr_assert_eq(vmkit_vcpu_set_fpu(cpu, &f), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_get_fpu(cpu, &f2), 0);
	cr_assert_eq(f2.fcw, 0x037a);
	cr_assert_eq(memcmp(f2.xmm[5], f.xmm[5], 16), 0);
	cr_assert_eq(f2.fpr[2][0], 0x77);

	cr_assert_eq(vmkit_vcpu_get_lapic(cpu, &l), 0, "%s", vmkit_last_error());
	l.regs[0x80] = 0x20;                                  /* TPR */
	memcpy(&l.regs[0x350], &(uint32_t){ 0x10700 }, 4);   /* LVT LINT0: masked ExtINT */
	cr_assert_eq(vmkit_vcpu_set_lapic(cpu, &l), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_get_lapic(cpu, &l2), 0);
	cr_assert_eq(l2.regs[0x80], 0x20);
	cr_assert_eq(memcmp(&l2.regs[0x350], &l.regs[0x350], 4), 0);

	/* The XSAVE area on its own. KVM's FPU ioctls work on the raw legacy
	 * area, which the XSAVE header may still mark as in its init state
	 * (KVM_GET_FPU then reads MXCSR 0 where XSAVE gives 0x1f80): a
	 * snapshot must save XSAVE, the superset, not the FPU view. */
	cr_assert_eq(vmkit_vcpu_get_xsave(cpu, &x), 0, "%s", vmkit_last_error());
	((uint8_t *)x.region)[160 + 16 * 7] = 0x99;           /* XMM7 byte 0 */
	x.region[6] = 0x1fa0;                                 /* MXCSR */
	x.region[128] |= 3;                                   /* XSTATE_BV: x87, SSE present */
	cr_assert_eq(vmkit_vcpu_set_xsave(cpu, &x), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_get_xsave(cpu, &x2), 0);
	cr_assert_eq(memcmp(x.region, x2.region, 512), 0, "legacy XSAVE area changed");
	cr_assert_eq(x2.region[6], 0x1fa0, "MXCSR 0x%x", x2.region[6]);
	cr_assert_eq(((uint8_t *)x2.region)[160 + 16 * 7], 0x99);

	/* XCR0 (none listed where the host has no XSAVE) goes back as read. */
	cr_assert_eq(vmkit_vcpu_get_xcrs(cpu, &c), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_set_xcrs(cpu, &c), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_get_xcrs(cpu, &c2), 0);
	cr_assert_eq(c2.nr_xcrs, c.nr_xcrs);
	for (uint32_t i = 0; i < c.nr_xcrs; i++)
		cr_assert_eq(c2.xcrs[i].value, c.xcrs[i].value);

	cr_assert_eq(vmkit_vcpu_get_debugregs(cpu, &d), 0, "%s", vmkit_last_error());
	d.db[0] = 0x1000;
	d.db[3] = 0xfffff000;
	d.dr7 = 0x401 | (1u << 6);                             /* L0, L3 */
	cr_assert_eq(vmkit_vcpu_set_debugregs(cpu, &d), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_vcpu_get_debugregs(cpu, &d2), 0);
	cr_assert_eq(d2.db[0], 0x1000);
	cr_assert_eq(d2.db[3], 0xfffff000);
	cr_assert_eq(d2.dr7, d.dr7);
}
