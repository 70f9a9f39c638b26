/* mini: the shell. Commands come from the serial console or from
 * minicloud.run= on the command line. Output formats are a contract:
 * see images/README.md. */
#include "virtio.h"
#include "vsock.h"
#include "http.h"

#define LINE_MAX 256
#define MAX_ARGS 16
#define MIB (1ul << 20)
#define LOW_LIMIT (3ul << 30) /* mem-test stays below the 3 GiB MMIO hole */

static const char usage_blk_write[] = "error: usage: blk-write DISK SECTOR COUNT SEED";
static const char usage_blk_verify[] = "error: usage: blk-verify DISK SECTOR COUNT SEED";

static int arg_u64(const char *s, u64 *v)
{
	if (parse_u64(s, v) < 0) {
		kprintf("error: bad number '%s'\n", s);
		return -1;
	}
	return 0;
}

static void cmd_help(int argc, char **argv)
{
	(void)argc, (void)argv;
	kputs("commands: help info echo cpu-burn mem-test blk-read blk-write blk-verify blk-flush blk-bench "
	      "vsock-send vsock-recv vsock-echo vsock-req vsock-ping net-serve metadata produce consume queue-send "
	      "queue-receive-delete http hang poweroff reboot panic\n");
}

static void cmd_info(int argc, char **argv)
{
	(void)argc, (void)argv;
	kprintf("cpus=%u memory_mib=%lu disks=%u version=" MINI_VERSION " clock=%s\n", cpus_online(),
		memory_mib(), blk_count(), clock_name());
}

static void cmd_echo(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		kprintf(i > 1 ? " %s" : "%s", argv[i]);
	kputs("\n");
}

static void cmd_cpu_burn(int argc, char **argv)
{
	u64 secs;
	if (argc != 2) {
		kputs("error: usage: cpu-burn SECONDS\n");
		return;
	}
	if (arg_u64(argv[1], &secs) < 0)
		return;
	if (secs > 86400) {
		kputs("error: cpu-burn: at most 86400 seconds\n");
		return;
	}
	u64 loops = 0, end = clock_ns() + secs * 1000000000ul;
	while (clock_ns() < end)
		loops++;
	kprintf("cpu-burn: done seconds=%lu loops=%lu\n", secs, loops);
}

/* Free RAM for mem-test: e820 RAM above the kernel image (and its .bss and
 * .noinit buffers), below the 3 GiB hole. */
struct range {
	u64 start, end;
};

static u32 free_ranges(struct range *r, u32 max, u64 *total)
{
	u64 floor = ((u64)__kernel_end + 4095) & ~4095ul;
	u32 n = 0;
	*total = 0;
	for (u32 i = 0; i < bootinfo.e820_count && n < max; i++) {
		struct e820_entry *e = &bootinfo.e820[i];
		if (e->type != 1)
			continue;
		u64 s = e->addr, en = e->addr + e->size;
		if (s < floor)
			s = floor;
		if (en > LOW_LIMIT)
			en = LOW_LIMIT;
		s = (s + 7) & ~7ul;
		en &= ~7ul;
		if (s >= en)
			continue;
		r[n].start = s;
		r[n].end = en;
		*total += en - s;
		n++;
	}
	return n;
}

static inline u64 mem_pattern(u64 addr) { return addr ^ 0xa5a5a5a55a5a5a5aul ^ (addr << 29); }

static void cmd_mem_test(int argc, char **argv)
{
	u64 mib, total;
	struct range r[MAX_E820];
	if (argc != 2) {
		kputs("error: usage: mem-test MIB\n");
		return;
	}
	if (arg_u64(argv[1], &mib) < 0)
		return;
	u32 n = free_ranges(r, MAX_E820, &total);
	if (mib > total / MIB) {
		kprintf("error: mem-test: only %lu MiB of free RAM\n", total / MIB);
		return;
	}
	u64 left = mib * MIB;
	for (u32 i = 0; i < n && left; i++) {
		u64 len = r[i].end - r[i].start < left ? r[i].end - r[i].start : left;
		for (u64 a = r[i].start; a < r[i].start + len; a += 8)
			*(volatile u64 *)a = mem_pattern(a);
		left -= len;
	}
	left = mib * MIB;
	for (u32 i = 0; i < n && left; i++) {
		u64 len = r[i].end - r[i].start < left ? r[i].end - r[i].start : left;
		for (u64 a = r[i].start; a < r[i].start + len; a += 8) {
			if (*(volatile u64 *)a != mem_pattern(a)) {
				kprintf("mem-test: FAIL addr=0x%lx\n", a);
				return;
			}
		}
		left -= len;
	}
	kprintf("mem-test: ok mib=%lu\n", mib);
}

/* Parse DISK and check [sector, sector + count) is on the disk. */
static const struct blk_info *blk_args(const char *disk_s, const char *sector_s, u64 count, u32 *disk,
				       u64 *sector)
{
	u64 d;
	if (arg_u64(disk_s, &d) < 0 || arg_u64(sector_s, sector) < 0)
		return NULL;
	const struct blk_info *bi = d < blk_count() ? blk_get((u32)d) : NULL;
	if (!bi) {
		kprintf("error: no disk %lu (disks=%u)\n", d, blk_count());
		return NULL;
	}
	if (*sector >= bi->capacity || count > bi->capacity - *sector) {
		kprintf("error: sectors %lu..%lu out of range (capacity=%lu)\n", *sector, *sector + count,
			bi->capacity);
		return NULL;
	}
	*disk = (u32)d;
	return bi;
}

static inline u64 blk_word(u64 seed, u64 sector, u64 j)
{
	return seed * 0x9e3779b97f4a7c15ul + sector * 64 + j;
}

static void cmd_blk_rw(int argc, char **argv, int write)
{
	const char *name = write ? "blk-write" : "blk-verify";
	u64 count, seed, sector;
	u32 disk;
	if (argc != 5) {
		kprintf("%s\n", write ? usage_blk_write : usage_blk_verify);
		return;
	}
	if (arg_u64(argv[3], &count) < 0 || arg_u64(argv[4], &seed) < 0)
		return;
	if (!blk_args(argv[1], argv[2], count, &disk, &sector))
		return;
	u64 *w = (u64 *)blk_buffer;
	for (u64 done = 0; done < count;) {
		u64 n = count - done < BLK_MAX_SECTORS_PER_REQ ? count - done : BLK_MAX_SECTORS_PER_REQ;
		u64 s0 = sector + done;
		u8 st;
		if (write) {
			for (u64 s = 0; s < n; s++)
				for (u64 j = 0; j < 64; j++)
					w[s * 64 + j] = blk_word(seed, s0 + s, j);
		}
		if (blk_io(disk, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, s0, blk_buffer, (u32)n * 512,
			   &st) < 0) {
			kprintf("%s: error disk=%u status=timeout\n", name, disk);
			return;
		}
		if (st != 0) {
			kprintf("%s: error disk=%u status=%u\n", name, disk, st);
			return;
		}
		if (!write) {
			for (u64 s = 0; s < n; s++)
				for (u64 j = 0; j < 64; j++)
					if (w[s * 64 + j] != blk_word(seed, s0 + s, j)) {
						kprintf("blk-verify: FAIL disk=%u sector=%lu word=%lu\n", disk,
							s0 + s, j);
						return;
					}
		}
		done += n;
	}
	if (write && count) {
		u8 st;
		if (blk_io(disk, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, &st) < 0) {
			kprintf("blk-write: error disk=%u status=timeout\n", disk);
			return;
		}
		/* UNSUPP from a device without VIRTIO_BLK_F_FLUSH: its writes are
		 * already durable (virtio spec), so that is not an error. */
		if (st != 0 && st != 2) {
			kprintf("blk-write: error disk=%u status=%u\n", disk, st);
			return;
		}
	}
	kprintf("%s: ok disk=%u sectors=%lu\n", name, disk, count);
}

static void cmd_blk_write(int argc, char **argv) { cmd_blk_rw(argc, argv, 1); }
static void cmd_blk_verify(int argc, char **argv) { cmd_blk_rw(argc, argv, 0); }

static void cmd_blk_read(int argc, char **argv)
{
	u64 sector;
	u32 disk;
	u8 st;
	if (argc != 3) {
		kputs("error: usage: blk-read DISK SECTOR\n");
		return;
	}
	if (!blk_args(argv[1], argv[2], 1, &disk, &sector))
		return;
	if (blk_io(disk, VIRTIO_BLK_T_IN, sector, blk_buffer, 512, &st) < 0) {
		kprintf("blk-read: error disk=%u status=timeout\n", disk);
		return;
	}
	if (st != 0) {
		kprintf("blk-read: error disk=%u status=%u\n", disk, st);
		return;
	}
	kputs("blk-read: ");
	for (int i = 0; i < 32; i++)
		kprintf("%02x", blk_buffer[i]);
	kputs("\n");
}

/* blk-bench DISK read|write REQ_SECTORS TOTAL_SECTORS: requests of
 * REQ_SECTORS (1..64) back to back from sector 0 (wrapping at the end of
 * the disk), no pattern work, timed. */
static void cmd_blk_bench(int argc, char **argv)
{
	u64 d, req, total;
	if (argc != 5 || (strcmp(argv[2], "read") != 0 && strcmp(argv[2], "write") != 0)) {
		kputs("error: usage: blk-bench DISK read|write REQ_SECTORS TOTAL_SECTORS\n");
		return;
	}
	if (arg_u64(argv[1], &d) < 0 || arg_u64(argv[3], &req) < 0 || arg_u64(argv[4], &total) < 0)
		return;
	int write = argv[2][0] == 'w';
	const struct blk_info *bi = d < blk_count() ? blk_get((u32)d) : NULL;
	if (!bi) {
		kprintf("error: no disk %lu (disks=%u)\n", d, blk_count());
		return;
	}
	if (req == 0 || req > BLK_MAX_SECTORS_PER_REQ || req > bi->capacity) {
		kprintf("error: blk-bench: REQ_SECTORS must be 1..%u and fit the disk\n",
			BLK_MAX_SECTORS_PER_REQ);
		return;
	}
	u64 reqs = (total + req - 1) / req, sector = 0;
	u64 t0 = clock_ns();
	for (u64 i = 0; i < reqs; i++) {
		if (sector + req > bi->capacity)
			sector = 0;
		u8 st;
		if (blk_io((u32)d, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, sector, blk_buffer,
			   (u32)req * 512, &st) < 0 || st != 0) {
			kprintf("blk-bench: error disk=%lu request=%lu\n", d, i);
			return;
		}
		sector += req;
	}
	u64 ns = clock_ns() - t0;
	if (!ns)
		ns = 1;
	u64 bytes = reqs * req * 512;
	kprintf("blk-bench: op=%s req_bytes=%lu reqs=%lu ms=%lu kib_s=%lu iops=%lu\n", argv[2],
		req * 512, reqs, ns / 1000000, bytes * 1000000000ul / 1024 / ns, reqs * 1000000000ul / ns);
}

static void cmd_blk_flush(int argc, char **argv)
{
	u64 d;
	u8 st;
	if (argc != 2) {
		kputs("error: usage: blk-flush DISK\n");
		return;
	}
	if (arg_u64(argv[1], &d) < 0)
		return;
	if (d >= blk_count()) {
		kprintf("error: no disk %lu (disks=%u)\n", d, blk_count());
		return;
	}
	if (blk_io((u32)d, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, &st) < 0) {
		kprintf("blk-flush: error disk=%lu status=timeout\n", d);
		return;
	}
	if (st != 0) {
		kprintf("blk-flush: error disk=%lu status=%u\n", d, st);
		return;
	}
	kputs("blk-flush: ok\n");
}

/* A stuck kernel, for testing the VMM's deadlines: spin with interrupts
 * off (so the console and Ctrl-Alt-Del go unanswered) for SECONDS. */
static void cmd_hang(int argc, char **argv)
{
	u64 secs;
	if (argc != 2) {
		kputs("error: usage: hang SECONDS\n");
		return;
	}
	if (arg_u64(argv[1], &secs) < 0)
		return;
	if (secs > 86400) {
		kputs("error: hang: at most 86400 seconds\n");
		return;
	}
	irq_disable();
	u64 end = clock_ns() + secs * 1000000000ul;
	while (clock_ns() < end)
		cpu_relax();
	irq_enable();
	kprintf("hang: done seconds=%lu\n", secs);
}

static void cmd_poweroff(int argc, char **argv)
{
	(void)argc, (void)argv;
	kputs("poweroff\n");
	machine_exit(EXIT_POWEROFF);
}

static void cmd_reboot(int argc, char **argv)
{
	(void)argc, (void)argv;
	kputs("reboot\n");
	machine_exit(EXIT_REBOOT);
}

static void cmd_panic(int argc, char **argv)
{
	if (argc < 2)
		panic("requested from shell");
	/* Re-join the words: PANIC: <REASON>. */
	static char reason[LINE_MAX];
	usize n = 0;
	for (int i = 1; i < argc; i++)
		for (const char *s = argv[i]; *s && n < sizeof(reason) - 2; s++) {
			if (s == argv[i] && i > 1)
				reason[n++] = ' ';
			reason[n++] = *s;
		}
	reason[n] = 0;
	panic("%s", reason);
}

struct command {
	const char *name;
	void (*fn)(int argc, char **argv);
};

static const struct command commands[] = {
	{"help", cmd_help},
	{"info", cmd_info},
	{"echo", cmd_echo},
	{"cpu-burn", cmd_cpu_burn},
	{"mem-test", cmd_mem_test},
	{"blk-read", cmd_blk_read},
	{"blk-write", cmd_blk_write},
	{"blk-verify", cmd_blk_verify},
	{"blk-flush", cmd_blk_flush},
	{"blk-bench", cmd_blk_bench},
	{"vsock-send", vsock_cmd_send},
	{"vsock-recv", vsock_cmd_recv},
	{"vsock-echo", vsock_cmd_echo},
	{"vsock-req", vsock_cmd_req},
	{"vsock-ping", vsock_cmd_ping},
	{"net-serve", net_cmd_serve},
	WL_COMMAND_TABLE
	{"hang", cmd_hang},
	{"poweroff", cmd_poweroff},
	{"reboot", cmd_reboot},
	{"panic", cmd_panic},
};

/* Split on spaces/tabs in place and run the command. */
void shell_exec(char *line)
{
	char *argv[MAX_ARGS];
	int argc = 0;
	char *p = line;
	while (*p && argc < MAX_ARGS) {
		while (*p == ' ' || *p == '\t')
			*p++ = 0;
		if (!*p)
			break;
		argv[argc++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
	}
	*p = 0;
	if (argc == 0)
		return;
	for (u32 i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(argv[0], commands[i].name) == 0) {
			commands[i].fn(argc, argv);
			return;
		}
	}
	kprintf("error: unknown command '%s' (try help)\n", argv[0]);
}

/* Find minicloud.run=VALUE (a word, or "double quoted"). Returns 1 if found. */
int cmdline_get_run(const char *cmdline, char *out, usize outsz)
{
	static const char key[] = "minicloud.run=";
	const usize keylen = sizeof(key) - 1;
	int in_quote = 0;
	for (const char *p = cmdline; *p; p++) {
		if (*p == '"')
			in_quote = !in_quote;
		if (in_quote || (p != cmdline && p[-1] != ' ') || strncmp(p, key, keylen) != 0)
			continue;
		const char *v = p + keylen;
		usize n = 0;
		if (*v == '"') {
			for (v++; *v && *v != '"' && n < outsz - 1; v++)
				out[n++] = *v;
		} else {
			for (; *v && *v != ' ' && n < outsz - 1; v++)
				out[n++] = *v;
		}
		out[n] = 0;
		return 1;
	}
	return 0;
}

void shell_run_commands(const char *cmds)
{
	static char buf[CMDLINE_MAX];
	const char *p = cmds;
	while (*p) {
		usize n = 0;
		while (*p == ' ' || *p == ';')
			p++;
		while (*p && *p != ';' && n < sizeof(buf) - 1)
			buf[n++] = *p++;
		while (n && buf[n - 1] == ' ')
			n--;
		buf[n] = 0;
		if (!n)
			continue;
		kprintf("run> %s\n", buf);
		shell_exec(buf);
	}
	kputs("minicloud.run: done\n");
}

static usize readline(char *buf, usize max)
{
	static int last_cr;
	usize n = 0;
	for (;;) {
		int c = uart_getc();
		if (c == '\n' && last_cr) { /* the LF of a CRLF pair */
			last_cr = 0;
			continue;
		}
		last_cr = c == '\r';
		if (c == '\r' || c == '\n') {
			kputs("\n");
			buf[n] = 0;
			return n;
		}
		if (c == 0x08 || c == 0x7f) {
			if (n) {
				n--;
				kputs("\b \b");
			}
			continue;
		}
		if (c == '\t')
			c = ' ';
		if (c < 0x20 || c > 0x7e || n >= max - 1)
			continue;
		buf[n++] = (char)c;
		uart_putc((char)c);
	}
}

NORETURN void shell_loop(void)
{
	static char line[LINE_MAX];
	for (;;) {
		kputs("mini# ");
		readline(line, sizeof(line));
		shell_exec(line);
	}
}
