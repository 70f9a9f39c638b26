/* mini: kmain, called from entry.S on the boot CPU with our own GDT, page
 * tables and stack, interrupts off. */
#include "virtio.h"

NORETURN void kmain(u64 kind, u64 ptr)
{
	static char run[CMDLINE_MAX];
	uart_init();
	kprintf("minicloud-mini v" MINI_VERSION " boot=%s\n", kind == BOOT_PVH ? "pvh" : "linux64");
	cpu_init();
	bootinfo_parse(kind, ptr);
	kprintf("cmdline: %s\n", bootinfo.cmdline);
	kprintf("e820: entries=%u ram_bytes=%lu\n", bootinfo.e820_count, bootinfo.ram_bytes);
	clock_init();
	pic_disable();
	lapic_init();
	bootinfo_find_cpus();
	smp_boot_aps();
	virtio_probe_all(bootinfo.cmdline);
	ioapic_route(UART_IRQ, VEC_UART, lapic_id());
	kbd_init();
	uart_enable_rx_irq();
	irq_enable();
	kprintf("cpus=%u memory_mib=%lu\n", cpus_online(), memory_mib());
	if (cmdline_get_run(bootinfo.cmdline, run, sizeof(run))) {
		shell_run_commands(run);
		machine_exit(EXIT_POWEROFF);
	}
	shell_loop();
}
