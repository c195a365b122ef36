/* SPDX-License-Identifier: MIT */
/* Multiboot entry, the 32-to-64-bit switch, static page tables and GDT,
 * the AP real-mode trampoline, interrupt entry stubs and the CPL0/CPL3
 * transitions. Every instruction here runs at CPL0 (emulated and slow on
 * some hosts), so the work is done at assembly time where possible: the
 * page tables are data, not code. */
#include "kit_abi.h"

#define MB_MAGIC 0x1BADB002
/* bit 0: page-align modules, bit 1: memory information, bit 16: the
 * address fields below are valid (loaders that cannot load this ELF
 * class, QEMU's among them, load the image from them). */
#define MB_FLAGS 0x00010003

#define KSTACK_SIZE 8192
#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x1b
#define SEL_UCODE 0x23
#define MSR_EFER 0xc0000080

/* ---- Multiboot header: first thing in the loaded image ------------------- */
	.section .multiboot, "a"
	.align 4
mb_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)
	.long mb_header      /* header_addr */
	.long __load_start   /* load_addr */
	.long __load_end     /* load_end_addr */
	.long __bss_end      /* bss_end_addr */
	.long _start         /* entry_addr */

/* ---- 32-bit entry: EAX = magic, EBX = info, flat segments, paging off ---- */
	.section .text.boot, "ax"
	.code32
	.globl _start
_start:
	movl %eax, kit_boot_magic
	movl %ebx, kit_boot_info
	movl %cr4, %eax
	orl $0x20, %eax                 /* PAE */
	movl %eax, %cr4
	movl $kit_pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $0x100, %eax                /* LME */
	wrmsr
	movl %cr0, %eax
	andl $0x9fffffff, %eax          /* caches on (CD, NW clear) */
	orl $0x80000001, %eax           /* PG | PE */
	movl %eax, %cr0
	lgdt kit_gdt_ptr
	ljmp $SEL_KCODE, $bsp_long_entry

	.code64
bsp_long_entry:
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorl %eax, %eax
	movw %ax, %fs
	movw %ax, %gs
	leaq kit_kstacks + KSTACK_SIZE(%rip), %rsp
	call kit_bsp_entry
1:	cli
	hlt
	jmp 1b

/* ---- AP trampoline: copied to KIT_AP_TRAMPOLINE_ADDR, entered by SIPI in
 * real mode (CS base = that address, IP = 0). Straight to long mode:
 * PAE, CR3 and EFER.LME first, then PE and PG together. Only
 * position-independent references inside it (offsets from its start). */
	.section .text, "ax"
	.code16
	.globl kit_ap_tramp_start, kit_ap_tramp_end
kit_ap_tramp_start:
	cli
	movw %cs, %ax
	movw %ax, %ds
	movl $kit_pml4, %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $0x20, %eax
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	rdmsr
	orl $0x100, %eax
	wrmsr
	lgdtl tramp_gdtr - kit_ap_tramp_start
	movl %cr0, %eax
	andl $0x9fffffff, %eax
	orl $0x80000001, %eax
	movl %eax, %cr0
	ljmpl $SEL_KCODE, $ap_long_entry
	.align 4
tramp_gdtr:
	.word kit_gdt_end - kit_gdt - 1
	.long kit_gdt
kit_ap_tramp_end:

	.code64
ap_long_entry:
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorl %eax, %eax
	movw %ax, %fs
	movw %ax, %gs
	movl $1, %eax
	lock xaddl %eax, kit_ap_next_slot(%rip)
	cmpl $KIT_MAX_CPUS, %eax
	jae 2f
	movl %eax, %edi                 /* slot: kit_ap_entry's argument */
	leal 1(%rax), %ecx
	imull $KSTACK_SIZE, %ecx
	leaq kit_kstacks(%rip), %rsp
	addq %rcx, %rsp
	call kit_ap_entry
2:	cli
	hlt
	jmp 2b

/* ---- interrupt entry ------------------------------------------------------
 * 256 stubs, 16 bytes apart: push a zero error code where the CPU pushes
 * none, push the vector, go to isr_common, which saves the caller-saved
 * registers and calls kit_isr_dispatch(struct kit_frame *). */
	.align 16
	.globl kit_isr_stubs
kit_isr_stubs:
	vec = 0
	.rept 256
	.align 16
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq $0
	.endif
	pushq $vec
	jmp isr_common
	vec = vec + 1
	.endr

isr_common:
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	movq %rsp, %rdi
	cld
	call kit_isr_dispatch
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rax
	addq $16, %rsp
	iretq

/* ---- CPL0 -> CPL3 and back ---------------------------------------------------
 * long kit_user_call(long (*fn)(long), long arg, void *stack_top), CPL0.
 * Saves the callee-saved registers and the TSS's RSP0, points RSP0 just
 * below them (interrupts from CPL3 land there) and irets to fn at CPL3
 * with IOPL=3 and IF=0. fn's return comes back through the ud2 at
 * kit_user_ret_insn (see kit_ud_entry), which unwinds to our caller. %gs:8 is this CPU's TSS (struct kit_cpu). */
	.globl kit_user_call
kit_user_call:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %gs:8, %rax
	pushq 4(%rax)                   /* old RSP0; %rsp is now 16-aligned */
	movq %rsp, 4(%rax)
	pushq $SEL_UDATA
	pushq %rdx
	pushq $0x3002                   /* IOPL=3, IF=0 */
	pushq $SEL_UCODE
	leaq user_start(%rip), %rcx
	pushq %rcx
	movq %rdi, %rax
	movq %rsi, %rdi
	xorl %ebp, %ebp
	iretq
user_start:
	call *%rax
	movq %rax, %rdi
	.globl kit_user_ret_insn
kit_user_ret_insn:
	ud2

/* CPL3 -> CPL0 calls are ud2 instructions at two known addresses, caught
 * by this #UD entry: software interrupts (int n) from CPL3 raise #UD
 * themselves on some KVMs (kvm_pvm), exceptions reach the guest's IDT on
 * all. Any other #UD goes to the generic stub (a fault report). Frame:
 * RIP, CS, RFLAGS, RSP, SS; the CPU 16-aligned the stack before pushing. */
	.globl kit_ud_entry
kit_ud_entry:
	pushq %rax
	leaq kit_kcall_insn(%rip), %rax
	cmpq %rax, 8(%rsp)
	je 4f
	leaq kit_user_ret_insn(%rip), %rax
	cmpq %rax, 8(%rsp)
	jne 3f
	testb $3, 16(%rsp)
	jz 3f
	/* fn returned at CPL3: drop the frame (we are at RSP0, which
	 * kit_user_call 16-aligned) and unwind kit_user_call's frame. */
	movq %rdi, %rax
	addq $48, %rsp
	movq %gs:8, %rcx
	popq 4(%rcx)
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret
3:	popq %rax
	jmp kit_isr_stubs + 16 * 6
	/* kit_kcall: call %rdi(%rsi) here at CPL0, interrupts off, and
	 * resume after the ud2 with the result in %rax. */
4:	addq $2, 8(%rsp)
	movq %rdi, %rax
	movq %rsi, %rdi
	cld
	call *%rax
	addq $8, %rsp                   /* the saved %rax: the result replaces it */
	iretq

/* long kit_kcall(long (*fn)(long), long arg): from CPL3 or CPL0. */
	.globl kit_kcall, kit_kcall_insn
kit_kcall:
kit_kcall_insn:
	ud2
	ret

/* long kit_iopl_probe(void), CPL3: 1 if in/out work here. */
	.globl kit_iopl_probe, kit_iopl_probe_insn
kit_iopl_probe:
	movl $0x3fd, %edx               /* COM1 LSR: reading it is harmless */
	movl $1, %ecx
kit_iopl_probe_insn:
	inb %dx, %al                    /* 1 byte: the #GP fixup skips it */
	movl %ecx, %eax
	ret

/* CPL0 half of kit_halt(): the sti shadow covers hlt, so an interrupt
 * pending since the caller's check wakes it. */
	.globl kit_halt_k
kit_halt_k:
	sti
	hlt
	cli
	ret

/* ---- data ------------------------------------------------------------------------ */
	.section .data
	.globl kit_boot_magic, kit_boot_info, kit_ap_next_slot
	.align 4
kit_boot_magic:
	.long 0
kit_boot_info:
	.long 0
kit_ap_next_slot:
	.long 1

/* GDT: null, kernel code/data, user data/code (the iret order), then one
 * 16-byte TSS descriptor per CPU slot (selector 0x28 + 16 * slot), filled
 * by kit_cpu_init(). */
	.align 16
	.globl kit_gdt, kit_gdt_end
kit_gdt:
	.quad 0
	.quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff        /* 0x10 kernel data */
	.quad 0x00cff2000000ffff        /* 0x18 user data, DPL3 */
	.quad 0x00affa000000ffff        /* 0x20 user code, 64-bit, DPL3 */
	.fill KIT_MAX_CPUS * 2, 8, 0
kit_gdt_end:
	.align 8
	.globl kit_gdt_ptr
kit_gdt_ptr:
	.word kit_gdt_end - kit_gdt - 1
	.quad kit_gdt

/* Identity map of the first 4 GiB in 2 MiB pages, present, writable,
 * user-accessible; the top GiB (MMIO: IOAPIC, LAPIC...) uncached. */
	.section .data.pagetables, "aw"
	.align 4096
	.globl kit_pml4
kit_pml4:
	.quad kit_pdpt + 0x7
	.fill 511, 8, 0
kit_pdpt:
	.quad kit_pd + 0x0000 + 0x7
	.quad kit_pd + 0x1000 + 0x7
	.quad kit_pd + 0x2000 + 0x7
	.quad kit_pd + 0x3000 + 0x7
	.fill 508, 8, 0
kit_pd:
	pde = 0
	.rept 1536
	.quad (pde << 21) | 0x87        /* P RW US PS */
	pde = pde + 1
	.endr
	.rept 512
	.quad (pde << 21) | 0x9f        /* P RW US PWT PCD PS */
	pde = pde + 1
	.endr

	.section .bss
	.align 4096
	.globl kit_kstacks
kit_kstacks:
	.skip KSTACK_SIZE * KIT_MAX_CPUS

	.section .note.GNU-stack, "", @progbits
