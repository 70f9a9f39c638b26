/* mini: TSS (with an IST stack for #DF) and IDT. The GDT is in entry.S. */
#include "kernel.h"

struct PACKED tss {
	u32 reserved0;
	u64 rsp[3];
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iomap_base;
};

struct PACKED idt_gate {
	u16 off_lo;
	u16 sel;
	u8 ist;
	u8 type;
	u16 off_mid;
	u32 off_hi;
	u32 reserved;
};

struct PACKED desc_ptr {
	u16 limit;
	u64 base;
};

extern u64 gdt[];
extern u64 pt0[512];
extern char stack_guard[];
extern const u64 exc_stubs[32];
extern char irq_uart_stub[], irq_kbd_stub[], irq_timer_stub[], irq_other_stub[], irq_ignore_stub[];

static struct tss tss ALIGNED(16);
static struct idt_gate idt[256] NOINIT ALIGNED(16);
static u8 df_stack[4096] NOINIT ALIGNED(16);
struct desc_ptr idt_desc; /* also loaded by the APs (entry.S) */

static void set_gate(int vec, u64 handler, int ist)
{
	struct idt_gate *g = &idt[vec];
	g->off_lo = (u16)handler;
	g->sel = KCODE64;
	g->ist = (u8)ist;
	g->type = 0x8e; /* present, DPL0, 64-bit interrupt gate */
	g->off_mid = (u16)(handler >> 16);
	g->off_hi = (u32)(handler >> 32);
	g->reserved = 0;
}

void cpu_init(void)
{
	/* TSS: IST1 is a separate stack for double faults, so that a kernel
	 * stack overflow still reaches panic() instead of triple-faulting. */
	tss.ist[0] = (u64)(df_stack + sizeof(df_stack));
	tss.iomap_base = sizeof(tss);
	u64 base = (u64)&tss, limit = sizeof(tss) - 1;
	gdt[4] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ul << 40) |
		 (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[5] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(KTSS));

	/* Unmap the page below the boot stack. */
	u64 guard = (u64)stack_guard;
	if (guard < (2ul << 20)) {
		pt0[guard >> 12] = 0;
		__asm__ volatile("invlpg (%0)" : : "r"(guard) : "memory");
	}

	for (int v = 0; v < 32; v++)
		set_gate(v, exc_stubs[v], v == 8 ? 1 : 0);
	for (int v = 32; v < 256; v++)
		set_gate(v, (u64)irq_other_stub, 0);
	for (int v = VEC_PIC_BASE; v < VEC_PIC_BASE + 16; v++)
		set_gate(v, (u64)irq_ignore_stub, 0);
	set_gate(VEC_UART, (u64)irq_uart_stub, 0);
	set_gate(VEC_KBD, (u64)irq_kbd_stub, 0);
	set_gate(VEC_TIMER, (u64)irq_timer_stub, 0);
	set_gate(VEC_SPURIOUS, (u64)irq_ignore_stub, 0);
	idt_desc.limit = sizeof(idt) - 1;
	idt_desc.base = (u64)idt;
	__asm__ volatile("lidt %0" : : "m"(idt_desc));
}

void irq_timer(void)
{
	/* Only a wake-up source for hlt. */
	lapic_eoi();
}

void irq_other(void)
{
	lapic_eoi();
}
