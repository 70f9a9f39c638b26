/*
 * AP startup trampoline. Copied to 0x8000 by smp.c and started by SIPI
 * (vector 0x08). Real mode -> protected mode -> long mode (kernel GDT and
 * page tables) -> ap_long_entry (entry.S), which counts the CPU online and
 * parks it with cli; hlt. It lives in a non-executable section because it
 * never runs where it is linked.
 */
#define TRAMP_BASE 0x8000
#define REL(x) ((x) - trampoline_start + TRAMP_BASE)
#define KCODE64 0x08
#define KDATA   0x10
#define KCODE32 0x18
#define GDT_LIMIT (6 * 8 - 1)

	.section .rodata.trampoline, "a"
	.code16
	.globl trampoline_start
trampoline_start:
	cli
	cld
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl REL(tramp_gdt_desc)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $KCODE32, $REL(tramp32)

	.code32
tramp32:
	movl $KDATA, %eax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl %cr4, %eax
	orl $0x20, %eax                 /* PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx          /* EFER.LME */
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000000, %eax           /* PG */
	movl %eax, %cr0
	ljmp $KCODE64, $ap_long_entry

	.balign 8
tramp_gdt_desc:
	.word GDT_LIMIT
	.long gdt
	.globl trampoline_end
trampoline_end:
