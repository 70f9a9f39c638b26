/* mini: monotonic clock. kvmclock when the hypervisor offers it, else the
 * TSC calibrated once against PIT channel 2. Integer math only. */
#include "kernel.h"

#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)
#define PIT_HZ 1193182u

struct pvclock {
	volatile u32 version;
	u32 pad0;
	volatile u64 tsc_timestamp;
	volatile u64 system_time;
	volatile u32 tsc_to_system_mul;
	volatile i8 tsc_shift;
	volatile u8 flags;
	u8 pad[2];
};

static struct pvclock pvti ALIGNED(64);
static int use_kvmclock;
static u64 tsc_hz;
static u64 tsc_base;
static u64 tsc_mul; /* ns = (ticks * tsc_mul) >> 32 */
static const char *clock_kind = "tsc";

static int kvmclock_init(void)
{
	u32 a, b, c, d;
	cpuid(0x40000000, 0, &a, &b, &c, &d);
	/* "KVMKVMKVM\0\0\0" */
	if (b != 0x4b4d564b || c != 0x564b4d56 || d != 0x0000004d || a < 0x40000001)
		return 0;
	cpuid(0x40000001, 0, &a, &b, &c, &d);
	if (!(a & KVM_FEATURE_CLOCKSOURCE2))
		return 0;
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (u64)&pvti | 1);
	/* The hypervisor fills the structure before the vCPU runs again. */
	for (int i = 0; i < 1000 && pvti.version == 0; i++)
		cpu_relax();
	if (pvti.version == 0 || pvti.tsc_to_system_mul == 0) {
		wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
		return 0;
	}
	return 1;
}

static u64 kvmclock_ns(void)
{
	u32 v;
	u64 ns;
	do {
		v = pvti.version;
		barrier();
		u64 delta = rdtsc() - pvti.tsc_timestamp;
		i8 shift = pvti.tsc_shift;
		if (shift < 0)
			delta >>= -shift;
		else
			delta <<= shift;
		ns = pvti.system_time + (u64)(((unsigned __int128)delta * pvti.tsc_to_system_mul) >> 32);
		barrier();
	} while ((v & 1) || v != pvti.version);
	return ns;
}

/* Count TSC ticks over ~10 ms of PIT channel 2 (mode 0, gate via port 0x61).
 * Returns 0 if the PIT does not answer. */
static u64 pit_calibrate(void)
{
	const u32 count = 11932; /* 10 ms */
	u8 p = inb(0x61);
	outb(0x61, (u8)((p & ~0x02) | 0x01)); /* gate on, speaker off */
	outb(0x43, 0xb0);                      /* ch2, lo/hi, mode 0, binary */
	outb(0x42, count & 0xff);
	outb(0x42, count >> 8);
	u64 t0 = rdtsc(), t1;
	for (;;) {
		t1 = rdtsc();
		if (inb(0x61) & 0x20)
			break;
		/* No PIT: give up after ~10^9 cycles (at most a second or so). */
		if (t1 - t0 > 1000000000ul)
			return 0;
	}
	outb(0x61, p);
	return (t1 - t0) * PIT_HZ / count;
}

void clock_init(void)
{
	if (kvmclock_init()) {
		use_kvmclock = 1;
		clock_kind = "kvmclock";
		return;
	}
	tsc_hz = pit_calibrate();
	if (tsc_hz < 1000000) {
		u32 a, b, c, d;
		cpuid(0, 0, &a, &b, &c, &d);
		if (a >= 0x16) {
			cpuid(0x16, 0, &a, &b, &c, &d);
			tsc_hz = (u64)(a & 0xffff) * 1000000;
		}
		if (tsc_hz < 1000000)
			tsc_hz = 1000000000; /* guess */
		kprintf("clock: warning: PIT calibration failed, assuming tsc_hz=%lu\n", tsc_hz);
	}
	tsc_mul = (1000000000ul << 32) / tsc_hz;
	tsc_base = rdtsc();
}

u64 clock_ns(void)
{
	if (use_kvmclock)
		return kvmclock_ns();
	u64 t = rdtsc() - tsc_base;
	return (u64)(((unsigned __int128)t * tsc_mul) >> 32);
}

const char *clock_name(void) { return clock_kind; }

void delay_us(u64 us)
{
	u64 end = clock_ns() + us * 1000;
	while (clock_ns() < end)
		cpu_relax();
}
