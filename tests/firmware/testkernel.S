/* SPDX-License-Identifier: MIT */
/* A tiny bzImage for the firmware-kernel test (tests/firmware/seabios-kernel):
 * a real-mode setup of 3 sectors with a boot protocol 2.12 header (loaded
 * high, not relocatable, no 64-bit entry), then 512 bytes of
 * "protected-mode kernel" that only carries a marker.
 *
 * Firmware that loads a kernel from fw_cfg (SeaBIOS with QEMU's
 * linuxboot_dma.bin) copies the setup to its real-mode address, the kernel
 * to 1 MiB, the initrd and command line where the header says, and jumps
 * to setup + 0x200 with CS = setup segment + 0x20. The setup then prints
 * on COM1 (polled) what a kernel would find:
 *   VMKIT-SETUP start loader=LL heap=HHHH cmdline=[...]
 *   VMKIT-SETUP ramdisk=AAAAAAAA size=SSSSSSSS
 *   VMKIT-SETUP initrd=<the initrd's first 48 bytes, printable>
 *   VMKIT-SETUP kernel=<the first 48 bytes at code32_start>
 * reading above 1 MiB through the BIOS (int 15h AH=87h, block move), and
 * stops the machine through the exit port with 0x21 (status 0x43), or
 * with 0x70 when a block move fails.
 *
 * Built like bootsect.S: gcc -c (GNU as, .code16), objcopy -O binary -j
 * .text; file offset = offset in .text. Data is addressed through DS =
 * the setup's segment (file offset 0): D(label). */

#define D(x) ((x) - _start)
#define COM1 0x3f8
#define EXIT_PORT 0xf4
#define SETUP_SECTS 3
#define COPY_BYTES 48

	.code16
	.text
	.globl _start
_start:
	.org 0x1f1
	.byte SETUP_SECTS           /* setup_sects */
	.word 0                     /* root_flags */
	.long (kernel_end - kernel) / 16 /* syssize */
	.word 0                     /* ram_size */
	.word 0xffff                /* vid_mode */
	.word 0                     /* root_dev */
	.word 0xaa55                /* boot_flag */
	/* 0x200: the setup's entry, and the end of the header in its byte */
	.byte 0xeb, setup_start - 0x202 - _start
hdr_magic:
	.ascii "HdrS"               /* 0x202 */
	.word 0x020c                /* version 2.12 */
	.long 0                     /* realmode_swtch */
	.word 0x1000                /* start_sys_seg */
	.word 0                     /* kernel_version */
hdr_loader:
	.byte 0                     /* 0x210 type_of_loader */
	.byte 0x01                  /* 0x211 loadflags: LOADED_HIGH */
	.word 0x8000                /* setup_move_size */
hdr_code32:
	.long 0x100000              /* 0x214 code32_start */
hdr_ramdisk:
	.long 0                     /* 0x218 ramdisk_image */
hdr_ramdisk_size:
	.long 0                     /* 0x21c ramdisk_size */
	.long 0                     /* bootsect_kludge */
hdr_heap_end:
	.word 0                     /* 0x224 heap_end_ptr */
	.byte 0, 0                  /* ext_loader_ver, ext_loader_type */
hdr_cmdline:
	.long 0                     /* 0x228 cmd_line_ptr */
	.long 0x37ffffff            /* 0x22c initrd_addr_max */
	.long 0x200000              /* kernel_alignment */
	.byte 0                     /* relocatable_kernel */
	.byte 0                     /* min_alignment */
	.word 0                     /* xloadflags */
	.long 255                   /* 0x238 cmdline_size */
	.long 0                     /* hardware_subarch */
	.quad 0                     /* hardware_subarch_data */
	.long 0, 0                  /* payload_offset, payload_length */
	.quad 0                     /* setup_data */
	.quad 0x100000              /* 0x258 pref_address */
	.long kernel_end - kernel   /* 0x260 init_size */
	.long 0                     /* handover_offset */

setup_start:
	mov %cs, %ax
	sub $0x20, %ax
	mov %ax, %ds
	cld

	mov $D(msg_start), %si
	call puts
	mov D(hdr_loader), %al
	call puthex8
	mov $D(msg_heap), %si
	call puts
	mov D(hdr_heap_end), %ax
	call puthex16
	mov $D(msg_cmdline), %si
	call puts
	mov D(hdr_cmdline), %eax
	call put_low_string
	mov $D(msg_close), %si
	call puts

	mov $D(msg_ramdisk), %si
	call puts
	mov D(hdr_ramdisk), %eax
	call puthex32
	mov $D(msg_size), %si
	call puts
	mov D(hdr_ramdisk_size), %eax
	call puthex32
	call crlf

	mov $D(msg_initrd), %si
	call puts
	mov D(hdr_ramdisk), %eax
	call copy_high
	call put_buf
	call crlf

	mov $D(msg_kernel), %si
	call puts
	mov D(hdr_code32), %eax
	call copy_high
	call put_buf
	call crlf

	mov $0x21, %al
	out %al, $EXIT_PORT
halt:	hlt
	jmp halt

/* Copy COPY_BYTES from linear address EAX (may be above 1 MiB) to buf,
 * through the BIOS block move (int 15h AH=87h, ES:SI -> a GDT). */
copy_high:
	mov $D(gdt_src), %di
	call set_base
	xor %eax, %eax
	mov %ds, %ax
	shl $4, %eax
	add $D(buf), %eax
	mov $D(gdt_dst), %di
	call set_base
	push %es
	push %ds
	pop %es
	mov $D(gdt), %si
	mov $COPY_BYTES / 2, %cx
	mov $0x87, %ah
	int $0x15
	pop %es
	jc move_error
	ret
move_error:
	mov $D(msg_move), %si
	call puts
	call crlf
	mov $0x70, %al
	out %al, $EXIT_PORT
	jmp halt

/* Base EAX into the descriptor at DS:DI (bits 0-23 at +2, 24-31 at +7). */
set_base:
	mov %ax, 2(%di)
	shr $16, %eax
	mov %al, 4(%di)
	mov %ah, 7(%di)
	ret

/* buf as text: printable bytes as they are, others as '.'. */
put_buf:
	mov $D(buf), %si
	mov $COPY_BYTES, %cx
1:	lodsb
	cmp $0x20, %al
	jb 2f
	cmp $0x7e, %al
	jbe 3f
2:	mov $'.', %al
3:	call putc
	loop 1b
	ret

/* The NUL-terminated string at linear address EAX (below 1 MiB), at
 * most 255 bytes. */
put_low_string:
	push %es
	mov %eax, %ebx
	shr $4, %ebx
	mov %bx, %es
	and $0xf, %ax
	mov %ax, %di
	mov $255, %cx
1:	mov %es:(%di), %al
	test %al, %al
	jz 2f
	call putc
	inc %di
	loop 1b
2:	pop %es
	ret

puts:
	lodsb
	test %al, %al
	jz 1f
	call putc
	jmp puts
1:	ret

crlf:
	mov $'\r', %al
	call putc
	mov $'\n', %al
	jmp putc

puthex32:
	push %eax
	shr $16, %eax
	call puthex16
	pop %eax
puthex16:
	push %ax
	mov %ah, %al
	call puthex8
	pop %ax
puthex8:
	push %ax
	shr $4, %al
	call puthex4
	pop %ax
puthex4:
	and $0xf, %al
	add $'0', %al
	cmp $'9', %al
	jbe putc
	add $('a' - '0' - 10), %al
putc:
	push %dx
	push %ax
	mov $COM1 + 5, %dx
1:	in %dx, %al
	test $0x20, %al
	jz 1b
	pop %ax
	mov $COM1, %dx
	out %al, %dx
	pop %dx
	ret

msg_start:	.asciz "VMKIT-SETUP start loader="
msg_heap:	.asciz " heap="
msg_cmdline:	.asciz " cmdline=["
msg_close:	.asciz "]\r\n"
msg_ramdisk:	.asciz "VMKIT-SETUP ramdisk="
msg_size:	.asciz " size="
msg_initrd:	.asciz "VMKIT-SETUP initrd="
msg_kernel:	.asciz "VMKIT-SETUP kernel="
msg_move:	.asciz "VMKIT-SETUP FAIL int 15h block move"

	.balign 8
/* int 15h AH=87h: dummy, GDT, source, destination, BIOS CS, BIOS SS */
gdt:	.quad 0, 0
gdt_src:
	.word 0xffff, 0
	.byte 0, 0x93, 0, 0
gdt_dst:
	.word 0xffff, 0
	.byte 0, 0x93, 0, 0
	.quad 0, 0
buf:	.fill COPY_BYTES, 1, 0

	.org (SETUP_SECTS + 1) * 512
/* The "protected-mode kernel": a marker the test stamps with a nonce. */
kernel:
	.ascii "VMKIT-TESTKERNEL ################"
	.org (SETUP_SECTS + 2) * 512
kernel_end:
