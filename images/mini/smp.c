/* mini: 8259 masking, local APIC (xAPIC MMIO), I/O APIC routing and AP
 * bring-up with INIT/SIPI/SIPI through a real-mode trampoline at 0x8000. */
#include "kernel.h"

#define LAPIC_BASE 0xfee00000ul
#define LAPIC_ID 0x020
#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0b0
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3e0
#define ICR_PENDING (1u << 12)

#define TRAMPOLINE_ADDR 0x8000

extern char trampoline_start[], trampoline_end[];
volatile u32 ap_online; /* incremented by each AP in entry.S */

static u32 lapic_read(u32 reg) { return mmio_read32(LAPIC_BASE + reg); }
static void lapic_write(u32 reg, u32 v) { mmio_write32(LAPIC_BASE + reg, v); }

void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }
u32 lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }
u32 cpus_online(void) { return 1 + ap_online; }

void pic_disable(void)
{
	/* Remap both 8259s to VEC_PIC_BASE (so a spurious IRQ 7/15 cannot look
	 * like an exception), then mask every line. */
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, VEC_PIC_BASE);
	outb(0xa1, VEC_PIC_BASE + 8);
	outb(0x21, 0x04);
	outb(0xa1, 0x02);
	outb(0x21, 0x01);
	outb(0xa1, 0x01);
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

void lapic_init(void)
{
	u64 base = rdmsr(0x1b);
	if (!(base & (1ul << 11)))
		wrmsr(0x1b, base | (1ul << 11)); /* global enable */
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	lapic_write(LAPIC_TPR, 0);
	/* Periodic timer, about 0.5 s at a 1 GHz APIC bus (KVM, QEMU): only a
	 * backstop wake-up for the idle hlt loop, costs nothing measurable. */
	lapic_write(LAPIC_TIMER_DIV, 0x3); /* divide by 16 */
	lapic_write(LAPIC_LVT_TIMER, (1u << 17) | VEC_TIMER);
	lapic_write(LAPIC_TIMER_INIT, 0x2000000);
}

void ioapic_route(u32 pin, u32 vector, u32 dest_apic)
{
	u64 base = bootinfo.ioapic_base;
	mmio_write32(base, 0x10 + 2 * pin + 1);
	mmio_write32(base + 0x10, dest_apic << 24);
	mmio_write32(base, 0x10 + 2 * pin);
	mmio_write32(base + 0x10, vector); /* fixed, physical, edge, high, unmasked */
}

static int icr_wait(void)
{
	u64 end = clock_ns() + 10000000; /* 10 ms */
	while (lapic_read(LAPIC_ICR_LO) & ICR_PENDING) {
		if (clock_ns() > end)
			return -1;
		cpu_relax();
	}
	return 0;
}

static void send_ipi(u32 apic, u32 icr)
{
	lapic_write(LAPIC_ICR_HI, apic << 24);
	lapic_write(LAPIC_ICR_LO, icr);
	icr_wait();
}

static int wait_online(u32 target, u64 timeout_ns)
{
	u64 end = clock_ns() + timeout_ns;
	while (ap_online < target) {
		if (clock_ns() > end)
			return -1;
		cpu_relax();
	}
	return 0;
}

void smp_boot_aps(void)
{
	u32 self = lapic_id();
	memcpy((void *)TRAMPOLINE_ADDR, trampoline_start, (usize)(trampoline_end - trampoline_start));
	mb();
	for (u32 i = 0; i < bootinfo.ncpus; i++) {
		u32 id = bootinfo.apic_ids[i];
		if (id == self)
			continue;
		u32 target = ap_online + 1;
		send_ipi(id, 0x00004500); /* INIT, assert */
		delay_us(200);
		u32 sipi = 0x00004600 | (TRAMPOLINE_ADDR >> 12);
		send_ipi(id, sipi);
		if (wait_online(target, 5000000) < 0) {
			send_ipi(id, sipi); /* second SIPI, per the MP spec */
			if (wait_online(target, 1000000000) < 0) {
				kprintf("smp: error: cpu apic_id=%u did not start\n", id);
				continue;
			}
		}
	}
}
