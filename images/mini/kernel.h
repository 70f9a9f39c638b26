/* mini: the minicloud guest kernel. Common types, port/MMIO/MSR helpers. */
#ifndef MINI_KERNEL_H
#define MINI_KERNEL_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef signed char i8;
typedef int i32;
typedef long i64;
typedef unsigned long usize;

#define NULL ((void *)0)
#define MINI_VERSION "0.1.0"
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define NORETURN __attribute__((noreturn))
#define PACKED __attribute__((packed))
#define ALIGNED(n) __attribute__((aligned(n)))
/* Memory that is neither loaded nor zeroed at boot (see linker.ld). */
#define NOINIT __attribute__((section(".noinit")))

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u32 mmio_read32(u64 addr) { return *(volatile u32 *)addr; }
static inline void mmio_write32(u64 addr, u32 v) { *(volatile u32 *)addr = v; }
static inline u8 mmio_read8(u64 addr) { return *(volatile u8 *)addr; }

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}
static inline u64 rdmsr(u32 msr)
{
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
}
static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
/* Full barrier without SSE2's mfence (the PVM emulator and -mgeneral-regs-only). */
static inline void mb(void) { __asm__ volatile("lock addl $0, (%%rsp)" ::: "memory", "cc"); }
static inline void irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }

/* lib.c */
void *memset(void *d, int c, usize n);
void *memcpy(void *d, const void *s, usize n);
void *memmove(void *d, const void *s, usize n);
int memcmp(const void *a, const void *b, usize n);
usize strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, usize n);
int parse_u64(const char *s, u64 *out);           /* decimal or 0x hex, whole string */
int parse_u64_prefix(const char **s, u64 *out, int base); /* base 0: auto */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vkprintf(const char *fmt, __builtin_va_list ap);
void kputs(const char *s);

/* uart.c */
void uart_init(void);
void uart_putc(char c);
int uart_at_line_start(void);
void uart_enable_rx_irq(void);
void uart_irq(void);
int uart_getc(void); /* blocks with sti; hlt */

/* panic.c */
#define EXIT_POWEROFF 0x00
#define EXIT_REBOOT 0x01
#define EXIT_PANIC 0x02
NORETURN void machine_exit(u8 code);
NORETURN void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cpu.c */
void cpu_init(void);

/* clock.c */
void clock_init(void);
u64 clock_ns(void);
const char *clock_name(void);
void delay_us(u64 us);

/* bootinfo.c */
#define BOOT_LINUX64 0
#define BOOT_PVH 1
#define MAX_E820 128
#define MAX_CPUS 32
#define CMDLINE_MAX 2048
struct e820_entry {
	u64 addr;
	u64 size;
	u32 type;
};
struct bootinfo {
	u64 kind;
	char cmdline[CMDLINE_MAX];
	u32 e820_count;
	struct e820_entry e820[MAX_E820];
	u64 ram_bytes;
	u64 rsdp;
	u32 ncpus;              /* enabled processors found in MP table / MADT */
	u32 apic_ids[MAX_CPUS];
	u64 ioapic_base;
	const char *cpu_source; /* "mptable", "madt" or "none" */
};
extern struct bootinfo bootinfo;
void bootinfo_parse(u64 kind, u64 ptr);
void bootinfo_find_cpus(void);
u64 memory_mib(void);

/* smp.c */
void pic_disable(void);
void lapic_init(void);
void lapic_eoi(void);
u32 lapic_id(void);
void ioapic_route(u32 pin, u32 vector, u32 dest_apic);
void smp_boot_aps(void);
u32 cpus_online(void);

/* virtio_mmio.c / virtio_blk.c */
void virtio_probe_all(const char *cmdline);
u32 blk_count(void);

/* kbd.c: the i8042 keyboard, for the VMM's Ctrl-Alt-Del (orderly shutdown) */
void kbd_init(void);
void kbd_irq(void);

/* console.c */
void shell_run_commands(const char *cmdline); /* minicloud.run; returns 0 if none */
int cmdline_get_run(const char *cmdline, char *out, usize outsz);
NORETURN void shell_loop(void);
void shell_exec(char *line);

/* Interrupt vectors. */
#define VEC_PIC_BASE 0x20 /* legacy 8259s remapped here, all masked */
#define VEC_UART 0x34
#define VEC_KBD 0x31
#define VEC_TIMER 0x40
#define VEC_SPURIOUS 0xff
#define UART_IRQ 4
#define KBD_IRQ 1

#define KCODE64 0x08
#define KDATA 0x10
#define KCODE32 0x18
#define KTSS 0x20

extern char __kernel_start[], __kernel_end[];

#endif
