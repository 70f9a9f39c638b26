/* mini: exit device, panic and CPU exception reporting. */
#include "kernel.h"

/* Write the exit code to port 0xf4 (QEMU isa-debug-exit compatible), then
 * reset through the i8042, then halt forever as a last resort. */
NORETURN void machine_exit(u8 code)
{
	irq_disable();
	outb(0xf4, code);
	outb(0x64, 0xfe);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static volatile u32 in_panic;

NORETURN void panic(const char *fmt, ...)
{
	irq_disable();
	/* A fault while panicking (say, the UART faults) must not loop or
	 * triple-fault: go straight to the exit device. */
	if (__atomic_fetch_add(&in_panic, 1, __ATOMIC_SEQ_CST))
		machine_exit(EXIT_PANIC);
	__builtin_va_list ap;
	__builtin_va_start(ap, fmt);
	if (!uart_at_line_start())
		kputs("\n");
	kputs("PANIC: ");
	vkprintf(fmt, ap);
	kputs("\n");
	__builtin_va_end(ap);
	machine_exit(EXIT_PANIC);
}

struct exc_frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error, rip, cs, rflags, rsp, ss;
};

static const char *const exc_names[32] = {
	"divide error", "debug", "nmi", "breakpoint", "overflow", "bound range",
	"invalid opcode", "device not available", "double fault", "coprocessor overrun",
	"invalid tss", "segment not present", "stack fault", "general protection",
	"page fault", "reserved", "x87 fp", "alignment check", "machine check",
	"simd fp", "virtualization", "control protection",
};

void exception_handler(struct exc_frame *f)
{
	u64 cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	const char *name = f->vector < 32 && exc_names[f->vector] ? exc_names[f->vector] : "reserved";
	panic("cpu exception vector=%lu (%s) error=0x%lx rip=0x%lx rsp=0x%lx cr2=0x%lx", f->vector, name,
	      f->error, f->rip, f->rsp, cr2);
}
