/* mini: the i8042 keyboard, only to notice Ctrl-Alt-Del, which a VMM
 * presses to ask for an orderly shutdown (Firecracker's SendCtrlAltDel,
 * minicloud-vmm's PUT /actions shutdown and SIGTERM). Scancodes are set 2
 * as those VMMs send them: Ctrl 0x14, Alt 0x11, Delete 0xe0 0x71. Seeing
 * the sequence prints "shutdown: ctrl-alt-del" and powers off. */
#include "kernel.h"

#define I8042_DATA 0x60
#define I8042_STATUS 0x64
#define STATUS_OBF 0x01

static u32 last4; /* the last four bytes read, newest in the low byte */

static void kbd_drain(void)
{
	for (int i = 0; i < 16 && (inb(I8042_STATUS) & STATUS_OBF); i++) {
		last4 = (last4 << 8) | inb(I8042_DATA);
		if (last4 == 0x1411e071u) {
			if (!uart_at_line_start())
				kputs("\n");
			kputs("shutdown: ctrl-alt-del\n");
			machine_exit(EXIT_POWEROFF);
		}
	}
}

void kbd_init(void)
{
	kbd_drain();
	ioapic_route(KBD_IRQ, VEC_KBD, lapic_id());
}

void kbd_irq(void)
{
	kbd_drain();
	lapic_eoi();
}
