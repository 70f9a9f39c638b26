/* mini: 8250/16550 UART at I/O 0x3f8. Output polled, input by IRQ 4. */
#include "kernel.h"

#define COM1 0x3f8
#define RBR 0 /* receive buffer (read) */
#define THR 0 /* transmit holding (write) */
#define IER 1
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define LSR_DR 0x01
#define LSR_THRE 0x20

#define RX_SIZE 256 /* power of two */
static volatile u8 rx_buf[RX_SIZE];
static volatile u32 rx_head, rx_tail; /* head: written by IRQ, tail: reader */

void uart_init(void)
{
	outb(COM1 + IER, 0x00);
	outb(COM1 + LCR, 0x80); /* DLAB */
	outb(COM1 + 0, 0x01);   /* divisor 1: 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + LCR, 0x03); /* 8N1 */
	outb(COM1 + FCR, 0x07); /* FIFO on, clear, trigger at 1 byte */
	outb(COM1 + MCR, 0x0b); /* DTR, RTS, OUT2 (IRQ line enable) */
}

static void uart_tx(u8 c)
{
	/* Bounded wait: a missing UART must not hang the kernel. */
	for (u32 i = 0; i < 100000; i++) {
		if (inb(COM1 + LSR) & LSR_THRE)
			break;
		cpu_relax();
	}
	outb(COM1 + THR, c);
}

static int column; /* 0 at the start of a line */

void uart_putc(char c)
{
	if (c == '\n')
		uart_tx('\r');
	uart_tx((u8)c);
	column = c == '\n' || c == '\r' ? 0 : column + 1;
}

int uart_at_line_start(void) { return column == 0; }

static void uart_drain_rx(void)
{
	for (int i = 0; i < 64 && (inb(COM1 + LSR) & LSR_DR); i++) {
		u8 c = inb(COM1 + RBR);
		if (rx_head - rx_tail < RX_SIZE) {
			rx_buf[rx_head % RX_SIZE] = c;
			barrier();
			rx_head++;
		}
	}
}

void uart_enable_rx_irq(void)
{
	uart_drain_rx();
	outb(COM1 + IER, 0x01); /* received data available */
}

void uart_irq(void)
{
	uart_drain_rx();
	lapic_eoi();
}

/* Wait for a byte. Idles with sti; hlt (the UART IRQ, or the LAPIC timer
 * tick as a backstop, wakes us): never busy-polls. */
int uart_getc(void)
{
	for (;;) {
		irq_disable();
		if (rx_head == rx_tail)
			uart_drain_rx(); /* in case an interrupt was lost */
		if (rx_head != rx_tail) {
			u8 c = rx_buf[rx_tail % RX_SIZE];
			rx_tail++;
			irq_enable();
			return c;
		}
		__asm__ volatile("sti; hlt" ::: "memory");
	}
}
