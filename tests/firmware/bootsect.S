/* SPDX-License-Identifier: MIT */
/* The firmware-boot test's boot sector (tests/firmware/seabios-boot).
 *
 * The BIOS loads it at 0:7c00 in real mode with the boot drive in DL. It
 *  1. prints "VMKIT-BOOTSECT start drive=NN" on COM1 (0x3f8, polled);
 *  2. reads 16 sectors from LBA 1 to 0:8000 through the BIOS (int 13h
 *     AH=42h, EDD) -- i.e. through the firmware's own disk driver;
 *  3. checks the header mkbootdisk wrote at LBA 1: "VMKD", the exit
 *     value, the 16-bit byte sum of LBAs 2..16, and a marker string;
 *  4. prints "VMKIT-BOOTSECT ok <marker>" and writes the exit value to the
 *     exit port 0xf4 (isa-debug-exit: the VMM exits with (v << 1) | 1).
 * Failures print "VMKIT-BOOTSECT FAIL <why>" and exit with 0x70 (read
 * error), 0x71 (bad magic) or 0x72 (bad checksum).
 *
 * Built with the host toolchain: gcc -c (GNU as, .code16), then objcopy
 * -O binary -j .text. No linker: every absolute address is written as
 * ABS(label), a same-section difference that as resolves itself. */

#define ABS(x) ((x) - _start + 0x7c00)
#define COM1 0x3f8
#define EXIT_PORT 0xf4
#define BUF 0x8000          /* LBA 1 lands here, LBA 2 at 0x8200 */
#define NSECT 16
#define SUM_BYTES ((NSECT - 1) * 512)

	.code16
	.text
	.globl _start
_start:
	cli
	xor %ax, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $0x7c00, %sp
	ljmp $0, $ABS(1f)           /* CS:IP = 0:7cxx whatever the BIOS used */
1:	sti
	cld
	mov %dl, ABS(drive)

	mov $ABS(msg_start), %si
	call puts
	mov ABS(drive), %al
	call puthex
	call crlf

	/* int 13h AH=42h: DS:SI -> disk address packet, DL = drive */
	mov $ABS(dap), %si
	mov ABS(drive), %dl
	mov $0x42, %ah
	int $0x13
	jc read_error
	test %ah, %ah
	jnz read_error

	/* header magic */
	mov $BUF, %si
	cmpl $0x444b4d56, (%si)     /* "VMKD" little-endian */
	mov $0x71, %bl
	mov $ABS(msg_magic), %di
	jne fail

	/* byte sum of LBAs 2..16 */
	mov $BUF + 512, %si
	mov $SUM_BYTES, %cx
	xor %bx, %bx
	xor %ah, %ah
2:	lodsb
	add %ax, %bx
	loop 2b
	cmp %bx, BUF + 6
	mov $0x72, %bl
	mov $ABS(msg_sum), %di
	jne fail

	mov $ABS(msg_ok), %si
	call puts
	mov $BUF + 8, %si
	movb $0, BUF + 511          /* the marker ends inside the sector */
	call puts
	call crlf
	mov BUF + 4, %al
	jmp do_exit

read_error:
	mov %ah, ABS(status)
	mov $ABS(msg_fail), %si
	call puts
	mov $ABS(msg_read), %si
	call puts
	mov ABS(status), %al
	call puthex
	call crlf
	mov $0x70, %al
	jmp do_exit

fail:   /* DI: reason, BL: exit value */
	mov $ABS(msg_fail), %si
	call puts
	mov %di, %si
	call puts
	call crlf
	mov %bl, %al

do_exit:
	mov $EXIT_PORT, %dx
	outb %al, %dx
3:	cli                         /* not reached when the exit port works */
	hlt
	jmp 3b

/* putc: AL to COM1 once the transmitter holds no byte (bounded wait). */
putc:
	push %ax
	push %cx
	push %dx
	mov %al, %ah
	mov $COM1 + 5, %dx
	mov $0xffff, %cx
4:	inb %dx, %al
	test $0x20, %al
	jnz 5f
	loop 4b
5:	mov $COM1, %dx
	mov %ah, %al
	outb %al, %dx
	pop %dx
	pop %cx
	pop %ax
	ret

/* puts: the NUL-terminated string at DS:SI. */
puts:
	push %ax
6:	lodsb
	test %al, %al
	jz 7f
	call putc
	jmp 6b
7:	pop %ax
	ret

/* puthex: AL as two hex digits. */
puthex:
	push %ax
	push %bx
	mov %al, %bl
	shr $4, %al
	call hexdigit
	mov %bl, %al
	and $0x0f, %al
	call hexdigit
	pop %bx
	pop %ax
	ret
hexdigit:
	add $'0', %al
	cmp $'9', %al
	jbe 8f
	add $'a' - '9' - 1, %al
8:	jmp putc

crlf:
	push %ax
	mov $'\r', %al
	call putc
	mov $'\n', %al
	call putc
	pop %ax
	ret

	.balign 4
dap:	.byte 0x10, 0               /* size, reserved */
	.word NSECT                 /* sectors */
	.word BUF, 0                /* buffer offset, segment */
	.quad 1                     /* first LBA */
drive:	.byte 0
status:	.byte 0
msg_start: .asciz "VMKIT-BOOTSECT start drive="
msg_ok:	.asciz "VMKIT-BOOTSECT ok "
msg_fail: .asciz "VMKIT-BOOTSECT FAIL "
msg_read: .asciz "int13 read error ah="
msg_magic: .asciz "bad magic"
msg_sum: .asciz "bad checksum"

	.org 510
	.byte 0x55, 0xaa
