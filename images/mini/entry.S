/*
 * mini boot entry points.
 *
 *  linux64_entry  ELF e_entry: Linux x86-64 64-bit boot protocol. Long mode,
 *                 paging on (VMM identity map), IF=0, %rsi = struct boot_params.
 *  pvh_entry      XEN_ELFNOTE_PHYS32_ENTRY: 32-bit protected mode, paging off,
 *                 %ebx = struct hvm_start_info. Enters long mode itself.
 *
 * Both load this kernel's own GDT, page tables (static, identity map of
 * 0..4 GiB with 2 MiB pages, built by the assembler: no work at boot) and
 * stack, zero .bss and call kmain(kind, ptr).
 */
#define KCODE64 0x08
#define KDATA   0x10
#define KCODE32 0x18

#define BOOT_LINUX64 0
#define BOOT_PVH     1

/* ---------------------------------------------------------------- PVH note */
	.section .note.Xen, "a"
	.balign 4
	.long 4                 /* namesz */
	.long 8                 /* descsz */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_entry

/* ------------------------------------------------------- 32-bit PVH entry */
	.section .text.entry, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	cli
	cld
	movl %ebx, %esi                 /* hvm_start_info, kept for kmain */
	lgdt gdt_desc
	movl $KDATA, %eax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	ljmp $KCODE32, $1f
1:
	movl %cr4, %eax
	orl $0x20, %eax                 /* PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx          /* EFER */
	rdmsr
	orl $0x100, %eax                /* LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax           /* PG | PE */
	movl %eax, %cr0
	ljmp $KCODE64, $pvh_long

	.code64
pvh_long:
	movl $BOOT_PVH, %edi
	jmp common64

/* ------------------------------------------------ 64-bit Linux boot entry */
	.globl linux64_entry
linux64_entry:
	cli
	cld
	movl $BOOT_LINUX64, %edi        /* %rsi = boot_params */

common64:
	lgdt gdt_desc(%rip)
	movl $KDATA, %eax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorl %eax, %eax
	movw %ax, %fs
	movw %ax, %gs
	leaq boot_stack_top(%rip), %rsp
	pushq $KCODE64
	leaq 1f(%rip), %rax
	pushq %rax
	lretq                           /* reload %cs with our own GDT */
1:
	leaq pml4(%rip), %rax
	movq %rax, %cr3
	/* zero .bss (kept small: big buffers live in .noinit) */
	movq %rdi, %r12
	movq %rsi, %r13
	leaq __bss_start(%rip), %rdi
	leaq __bss_end(%rip), %rcx
	subq %rdi, %rcx
	shrq $3, %rcx
	xorl %eax, %eax
	rep stosq
	movq %r12, %rdi
	movq %r13, %rsi
	xorl %ebp, %ebp
	call kmain
2:	cli
	hlt
	jmp 2b

/* ------------------------------------- APs arrive here from trampoline.S */
	.globl ap_long_entry
ap_long_entry:
	movl $KDATA, %eax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	leaq ap_park_stack_top(%rip), %rsp
	lidt idt_desc(%rip)
	lock incl ap_online(%rip)
3:	cli
	hlt
	jmp 3b

/* -------------------------------------------------- exception/IRQ stubs */
.macro EXC vec, has_err
exc_\vec:
	.if \has_err == 0
	pushq $0
	.endif
	pushq $\vec
	jmp exc_common
.endm

EXC 0,0
EXC 1,0
EXC 2,0
EXC 3,0
EXC 4,0
EXC 5,0
EXC 6,0
EXC 7,0
EXC 8,1
EXC 9,0
EXC 10,1
EXC 11,1
EXC 12,1
EXC 13,1
EXC 14,1
EXC 15,0
EXC 16,0
EXC 17,1
EXC 18,0
EXC 19,0
EXC 20,0
EXC 21,1
EXC 22,0
EXC 23,0
EXC 24,0
EXC 25,0
EXC 26,0
EXC 27,0
EXC 28,0
EXC 29,1
EXC 30,1
EXC 31,0

exc_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	cld
	movq %rsp, %rdi
	andq $-16, %rsp
	call exception_handler
4:	cli
	hlt
	jmp 4b

.macro IRQSTUB name, handler
	.globl \name
\name:
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	cld
	call \handler
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rax
	iretq
.endm

IRQSTUB irq_uart_stub, uart_irq
IRQSTUB irq_kbd_stub, kbd_irq
IRQSTUB irq_timer_stub, irq_timer
IRQSTUB irq_other_stub, irq_other

	/* PIC spurious interrupts and the LAPIC spurious vector: no EOI. */
	.globl irq_ignore_stub
irq_ignore_stub:
	iretq

	.section .rodata
	.balign 8
	.globl exc_stubs
exc_stubs:
	.irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad exc_\n
	.endr

/* ----------------------------------------------------- GDT, page tables */
	.section .data
	.balign 16
	.globl gdt
gdt:
	.quad 0                         /* 0x00 null */
	.quad 0x00af9a000000ffff        /* 0x08 64-bit code */
	.quad 0x00cf92000000ffff        /* 0x10 data */
	.quad 0x00cf9a000000ffff        /* 0x18 32-bit code */
	.quad 0, 0                      /* 0x20 TSS, filled by cpu.c */
gdt_end:
	.balign 8
	.globl gdt_desc
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt

	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4
pml4:
	.quad pdpt + 0x3                /* present, writable */
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x3
	.quad pd + 0x1000 + 0x3
	.quad pd + 0x2000 + 0x3
	.quad pd + 0x3000 + 0x3
	.fill 508, 8, 0
pd:
	/* 0..2 MiB: 4 KiB pages (pt0), so that the boot stack can have an
	 * unmapped guard page below it (cpu.c); then 2 MiB pages up to 3 GiB,
	 * write-back */
	.quad pt0 + 0x3
	.set i, 1
	.rept 1535
	.quad (i << 21) | 0x83          /* present, writable, PS */
	.set i, i + 1
	.endr
	/* 3..4 GiB (MMIO: virtio-mmio, IOAPIC, LAPIC): cache disabled */
	.rept 512
	.quad (i << 21) | 0x9b          /* + PWT | PCD */
	.set i, i + 1
	.endr
	.globl pt0
pt0:
	.set i, 0
	.rept 512
	.quad (i << 12) | 0x3
	.set i, i + 1
	.endr

	/* First in .noinit (linker.ld): the guard page, unmapped by cpu.c, so
	 * a stack overflow faults (and #DF on its IST stack reports it) instead
	 * of silently overwriting the kernel's data. */
	.section .noinit.stack, "aw", @nobits
	.balign 4096
	.globl stack_guard
stack_guard:
	.skip 4096
boot_stack:
	.skip 16384
	.globl boot_stack_top
boot_stack_top:
	.balign 16
	.skip 1024
ap_park_stack_top:
