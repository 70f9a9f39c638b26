/* mini: boot information. Command line and e820 map from the Linux zero
 * page or the PVH start info; CPUs from the MP table (ACPI MADT fallback). */
#include "kernel.h"

struct bootinfo bootinfo NOINIT;

#define PVH_MAGIC 0x336ec578

static u32 rd32(u64 a) { u32 v; memcpy(&v, (const void *)a, 4); return v; }
static u64 rd64(u64 a) { u64 v; memcpy(&v, (const void *)a, 8); return v; }

static void copy_cmdline(u64 addr)
{
	usize n = 0;
	if (addr) {
		const char *s = (const char *)addr;
		while (n < CMDLINE_MAX - 1 && s[n]) {
			bootinfo.cmdline[n] = s[n];
			n++;
		}
	}
	bootinfo.cmdline[n] = 0;
}

static void add_e820(u64 addr, u64 size, u32 type)
{
	if (bootinfo.e820_count >= MAX_E820)
		return;
	struct e820_entry *e = &bootinfo.e820[bootinfo.e820_count++];
	e->addr = addr;
	e->size = size;
	e->type = type;
	if (type == 1)
		bootinfo.ram_bytes += size;
}

void bootinfo_parse(u64 kind, u64 ptr)
{
	bootinfo.kind = kind;
	bootinfo.e820_count = 0;
	bootinfo.ram_bytes = 0;
	bootinfo.rsdp = 0;
	bootinfo.ncpus = 0;
	bootinfo.ioapic_base = 0xfec00000;
	bootinfo.cpu_source = "none";
	bootinfo.cmdline[0] = 0;
	if (kind == BOOT_LINUX64) {
		/* struct boot_params (the zero page) */
		u64 cmd = rd32(ptr + 0x228) | ((u64)rd32(ptr + 0x0c8) << 32);
		copy_cmdline(cmd);
		u32 n = *(const u8 *)(ptr + 0x1e8);
		for (u32 i = 0; i < n && i < MAX_E820; i++) {
			u64 e = ptr + 0x2d0 + 20 * i;
			add_e820(rd64(e), rd64(e + 8), rd32(e + 16));
		}
		bootinfo.rsdp = rd64(ptr + 0x070); /* acpi_rsdp_addr, 0 if unset */
	} else {
		/* struct hvm_start_info */
		if (rd32(ptr) != PVH_MAGIC)
			panic("bad hvm_start_info magic 0x%x", rd32(ptr));
		u32 version = rd32(ptr + 4);
		copy_cmdline(rd64(ptr + 24));
		bootinfo.rsdp = rd64(ptr + 32);
		if (version >= 1) {
			u64 map = rd64(ptr + 40);
			u32 n = rd32(ptr + 48);
			for (u32 i = 0; i < n && i < MAX_E820; i++) {
				u64 e = map + 24 * i;
				add_e820(rd64(e), rd64(e + 8), rd32(e + 16));
			}
		}
	}
}

u64 memory_mib(void) { return (bootinfo.ram_bytes + (1ul << 19)) >> 20; }

static u8 checksum(u64 addr, u64 len)
{
	u8 s = 0;
	for (u64 i = 0; i < len; i++)
		s = (u8)(s + *(const u8 *)(addr + i));
	return s;
}

static void add_cpu(u32 apic_id)
{
	if (bootinfo.ncpus < MAX_CPUS)
		bootinfo.apic_ids[bootinfo.ncpus++] = apic_id;
}

/* ------------------------------------------------------------ MP table */
static u64 find_mp_floating(u64 start, u64 len)
{
	for (u64 a = start; a + 16 <= start + len; a += 16) {
		if (*(const volatile u32 *)a == 0x5f504d5f /* "_MP_" */) {
			u8 l = *(const u8 *)(a + 8);
			if (l >= 1 && checksum(a, 16u * l) == 0)
				return a;
		}
	}
	return 0;
}

static int parse_mp_table(void)
{
	u64 fp = 0;
	u64 bda = 0x400;
	__asm__("" : "+r"(bda)); /* a physical address, not an object */
	u64 ebda = (u64)(*(const volatile u16 *)(bda + 0x0e)) << 4;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		fp = find_mp_floating(ebda, 1024);
	if (!fp)
		fp = find_mp_floating(0x9fc00, 0x400);
	if (!fp)
		fp = find_mp_floating(0xf0000, 0x10000);
	if (!fp)
		return 0;
	u64 cfg = rd32(fp + 4);
	if (!cfg || rd32(cfg) != 0x504d4350 /* "PCMP" */)
		return 0;
	u16 base_len = *(const u16 *)(cfg + 4);
	if (checksum(cfg, base_len) != 0)
		return 0;
	u16 count = *(const u16 *)(cfg + 34);
	u64 p = cfg + 44, end = cfg + base_len;
	for (u32 i = 0; i < count && p < end; i++) {
		u8 type = *(const u8 *)p;
		if (type == 0) { /* processor */
			if (*(const u8 *)(p + 3) & 1)
				add_cpu(*(const u8 *)(p + 1));
			p += 20;
		} else if (type == 2) { /* I/O APIC */
			if (*(const u8 *)(p + 3) & 1)
				bootinfo.ioapic_base = rd32(p + 4);
			p += 8;
		} else if (type <= 4) {
			p += 8;
		} else {
			break;
		}
	}
	bootinfo.cpu_source = "mptable";
	return bootinfo.ncpus > 0;
}

/* ----------------------------------------------------------- ACPI MADT */
static u64 find_rsdp(void)
{
	for (u64 a = 0xe0000; a < 0x100000; a += 16)
		if (rd64(a) == 0x2052545020445352ul /* "RSD PTR " */ && checksum(a, 20) == 0)
			return a;
	return 0;
}

static int parse_madt(void)
{
	u64 rsdp = bootinfo.rsdp;
	if (!rsdp || rd64(rsdp) != 0x2052545020445352ul)
		rsdp = find_rsdp();
	if (!rsdp)
		return 0;
	u8 rev = *(const u8 *)(rsdp + 15);
	u64 sdt = 0;
	u32 entsz = 4;
	if (rev >= 2 && rd64(rsdp + 24)) {
		sdt = rd64(rsdp + 24);
		entsz = 8;
	} else {
		sdt = rd32(rsdp + 16);
	}
	if (!sdt || sdt >= (4ul << 30))
		return 0;
	u32 len = rd32(sdt + 4);
	for (u64 e = sdt + 36; e + entsz <= sdt + len; e += entsz) {
		u64 t = entsz == 8 ? rd64(e) : rd32(e);
		if (!t || t >= (4ul << 30) || rd32(t) != 0x43495041 /* "APIC" */)
			continue;
		u32 tlen = rd32(t + 4);
		for (u64 p = t + 44; p + 2 <= t + tlen;) {
			u8 type = *(const u8 *)p, l = *(const u8 *)(p + 1);
			if (l < 2)
				break;
			if (type == 0 && (rd32(p + 4) & 1))
				add_cpu(*(const u8 *)(p + 3));
			else if (type == 1)
				bootinfo.ioapic_base = rd32(p + 4);
			p += l;
		}
		bootinfo.cpu_source = "madt";
		return bootinfo.ncpus > 0;
	}
	return 0;
}

/* The MP table is what minicloud-vmm (and Firecracker) provide. ACPI is a
 * fallback for QEMU, whose SeaBIOS MP table lists one CPU per package: use
 * the MADT when the boot protocol handed us an RSDP and it lists more CPUs,
 * or (scanning for the RSDP) when there is no MP table at all. */
void bootinfo_find_cpus(void)
{
	int have_mp = parse_mp_table();
	if (have_mp && !bootinfo.rsdp)
		return;
	u32 mp_n = bootinfo.ncpus;
	u32 mp_ids[MAX_CPUS];
	u64 mp_ioapic = bootinfo.ioapic_base;
	const char *mp_src = bootinfo.cpu_source;
	memcpy(mp_ids, bootinfo.apic_ids, sizeof(mp_ids));
	bootinfo.ncpus = 0;
	if (parse_madt() && bootinfo.ncpus > mp_n)
		return;
	bootinfo.ncpus = mp_n;
	bootinfo.ioapic_base = mp_ioapic;
	bootinfo.cpu_source = have_mp ? mp_src : "none";
	memcpy(bootinfo.apic_ids, mp_ids, sizeof(mp_ids));
}
