/* mini: shell commands over virtio-vsock (formats in images/README.md). */
#include "vsock.h"

#define CONNECT_TIMEOUT_NS 5000000000ul
#define IO_TIMEOUT_NS 30000000000ul
#define CLOSE_TIMEOUT_NS 5000000000ul
#define ECHO_MAX 8
#define ECHO_BUF 16384u

static u8 txbuf[VSOCK_MAX_PAYLOAD] NOINIT ALIGNED(4096);
static u8 echo_ring[ECHO_MAX][ECHO_BUF] NOINIT ALIGNED(4096);

static int num_arg(const char *s, u64 *v)
{
	if (parse_u64(s, v) < 0) {
		kprintf("error: bad number '%s'\n", s);
		return -1;
	}
	return 0;
}

static int need_device(const char *cmd)
{
	if (!vsock_present()) {
		kprintf("%s: error no vsock device\n", cmd);
		return -1;
	}
	return 0;
}

/* Fills buf with the pattern of stream bytes [off, off + n). */
static void pattern_fill(u8 *buf, u64 off, u32 n)
{
	u32 i = 0;
	for (; i < n && ((off + i) & 7); i++)
		buf[i] = vsock_pattern_byte(off + i);
	for (; i + 8 <= n; i += 8) {
		u64 w = vsock_pattern_word((off + i) >> 3);
		__builtin_memcpy(buf + i, &w, 8);
	}
	for (; i < n; i++)
		buf[i] = vsock_pattern_byte(off + i);
}

/* Checks buf against stream bytes [off, off + n); returns the index of the
 * first bad byte or n. */
static u32 pattern_check(const u8 *buf, u64 off, u32 n)
{
	u32 i = 0;
	for (; i < n && ((off + i) & 7); i++)
		if (buf[i] != vsock_pattern_byte(off + i))
			return i;
	for (; i + 8 <= n; i += 8) {
		u64 w;
		__builtin_memcpy(&w, buf + i, 8);
		if (w != vsock_pattern_word((off + i) >> 3))
			break;
	}
	for (; i < n; i++)
		if (buf[i] != vsock_pattern_byte(off + i))
			return i;
	return n;
}

static u64 ms_since(u64 t0) { return (clock_ns() - t0) / 1000000; }

/* vsock-send PORT BYTES */
void vsock_cmd_send(int argc, char **argv)
{
	u64 port, bytes;
	if (argc != 3) {
		kputs("error: usage: vsock-send PORT BYTES\n");
		return;
	}
	if (num_arg(argv[1], &port) < 0 || num_arg(argv[2], &bytes) < 0 || need_device("vsock-send") < 0)
		return;
	u64 t0 = clock_ns();
	struct vsock_conn *c = vsock_connect((u32)port, CONNECT_TIMEOUT_NS);
	if (!c) {
		kprintf("vsock-send: error connect port=%lu refused\n", port);
		return;
	}
	for (u64 off = 0; off < bytes;) {
		u32 n = bytes - off < VSOCK_MAX_PAYLOAD ? (u32)(bytes - off) : VSOCK_MAX_PAYLOAD;
		pattern_fill(txbuf, off, n);
		if (vsock_send(c, txbuf, n, IO_TIMEOUT_NS) < 0) {
			kprintf("vsock-send: error sent=%lu reset=%d\n", off, c->reset);
			c->state = VS_FREE;
			return;
		}
		off += n;
	}
	vsock_close(c, CLOSE_TIMEOUT_NS);
	kprintf("vsock-send: sent=%lu ms=%lu\n", bytes, ms_since(t0));
}

static void recv_verify(struct vsock_conn *c, const u8 *p, u32 n)
{
	/* user[0]: stream offset; user[1]: first bad offset + 1 (0: none). */
	if (!c->user[1]) {
		u32 bad = pattern_check(p, c->user[0], n);
		if (bad < n)
			c->user[1] = c->user[0] + bad + 1;
	}
	c->user[0] += n;
	vsock_consumed(c, n);
}

static struct vsock_conn *wait_accept(u32 port, u64 timeout_ns)
{
	u64 end = clock_ns() + timeout_ns;
	for (;;) {
		for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
			struct vsock_conn *c = &vsock_conns[i];
			if (c->state != VS_FREE && c->accepted && c->local_port == port && !c->user[3]) {
				c->user[3] = 1; /* claimed */
				return c;
			}
		}
		if (!vsock_poll()) {
			if (clock_ns() > end)
				return NULL;
			cpu_relax();
		}
	}
}

/* vsock-recv PORT */
void vsock_cmd_recv(int argc, char **argv)
{
	u64 port;
	if (argc != 2) {
		kputs("error: usage: vsock-recv PORT\n");
		return;
	}
	if (num_arg(argv[1], &port) < 0 || need_device("vsock-recv") < 0)
		return;
	if (vsock_listen((u32)port) < 0) {
		kputs("vsock-recv: error too many listeners\n");
		return;
	}
	struct vsock_conn *c = wait_accept((u32)port, IO_TIMEOUT_NS);
	vsock_unlisten((u32)port);
	if (!c) {
		kprintf("vsock-recv: error no connection on port %lu\n", port);
		return;
	}
	c->on_data = recv_verify;
	vsock_set_window(c, VSOCK_DEFAULT_BUF_ALLOC);
	u64 t0 = clock_ns(), idle_end = t0 + IO_TIMEOUT_NS;
	while (c->state == VS_ESTABLISHED && !(c->peer_shutdown & VSOCK_SHUTDOWN_SEND)) {
		if (vsock_poll()) {
			idle_end = 0;
			continue;
		}
		u64 now = clock_ns();
		if (!idle_end)
			idle_end = now + IO_TIMEOUT_NS;
		else if (now > idle_end)
			break;
		cpu_relax();
	}
	u64 ms = ms_since(t0);
	u64 got = c->user[0], bad = c->user[1];
	int reset = c->reset;
	vsock_close(c, CLOSE_TIMEOUT_NS);
	if (bad)
		kprintf("vsock-recv: received=%lu FAIL at=%lu ms=%lu\n", got, bad - 1, ms);
	else if (reset)
		kprintf("vsock-recv: received=%lu FAIL reset ms=%lu\n", got, ms);
	else
		kprintf("vsock-recv: received=%lu ok ms=%lu\n", got, ms);
}

/* Echo: data goes into the connection's ring (user[0] = head, user[1] =
 * tail, both counting bytes ever) and is sent back from the main loop. */
static void echo_take(struct vsock_conn *c, const u8 *p, u32 n)
{
	u8 *ring = echo_ring[c->user[2]];
	for (u32 i = 0; i < n; i++)
		ring[(c->user[0] + i) % ECHO_BUF] = p[i];
	c->user[0] += n;
}

/* vsock-echo PORT [CONNS] */
void vsock_cmd_echo(int argc, char **argv)
{
	u64 port, want = 1;
	if (argc != 2 && argc != 3) {
		kputs("error: usage: vsock-echo PORT [CONNS]\n");
		return;
	}
	if (num_arg(argv[1], &port) < 0 || (argc == 3 && num_arg(argv[2], &want) < 0) ||
	    need_device("vsock-echo") < 0)
		return;
	if (want == 0 || want > 1000000) {
		kputs("error: vsock-echo: CONNS must be 1..1000000\n");
		return;
	}
	if (vsock_listen((u32)port) < 0) {
		kputs("vsock-echo: error too many listeners\n");
		return;
	}
	struct vsock_conn *mine[ECHO_MAX] = {0};
	u64 done = 0, accepted = 0, total = 0;
	u64 idle_end = clock_ns() + IO_TIMEOUT_NS;
	while (done < want) {
		int progress = vsock_poll();
		/* Adopt new connections (new ones arrive with the default window;
		 * echo's is its ring, announced at the first update). */
		for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
			struct vsock_conn *c = &vsock_conns[i];
			if (c->state == VS_FREE || !c->accepted || c->local_port != port || c->user[3])
				continue;
			int slot = -1;
			for (int s = 0; s < ECHO_MAX; s++)
				if (!mine[s]) {
					slot = s;
					break;
				}
			if (slot < 0)
				break;
			c->user[3] = 1;
			c->user[2] = (u64)slot;
			c->on_data = echo_take;
			vsock_set_window(c, ECHO_BUF);
			mine[slot] = c;
			accepted++;
			progress = 1;
		}
		for (int s = 0; s < ECHO_MAX; s++) {
			struct vsock_conn *c = mine[s];
			if (!c)
				continue;
			while (c->user[0] != c->user[1] && c->state == VS_ESTABLISHED) {
				u32 off = (u32)(c->user[1] % ECHO_BUF);
				u32 n = (u32)(c->user[0] - c->user[1]);
				if (n > ECHO_BUF - off)
					n = ECHO_BUF - off;
				if (vsock_send(c, echo_ring[s] + off, n, IO_TIMEOUT_NS) < 0)
					break;
				c->user[1] += n;
				total += n;
				vsock_consumed(c, n);
				progress = 1;
			}
			int drained = c->user[0] == c->user[1];
			if (c->state != VS_ESTABLISHED ||
			    (drained && (c->peer_shutdown & VSOCK_SHUTDOWN_SEND))) {
				vsock_close(c, CLOSE_TIMEOUT_NS);
				mine[s] = NULL;
				done++;
				progress = 1;
			}
		}
		if (progress) {
			idle_end = 0;
			continue;
		}
		u64 now = clock_ns();
		if (!idle_end)
			idle_end = now + IO_TIMEOUT_NS;
		else if (now > idle_end) {
			kprintf("vsock-echo: error timeout conns=%lu bytes=%lu\n", done, total);
			vsock_unlisten((u32)port);
			return;
		}
		cpu_relax();
	}
	vsock_unlisten((u32)port);
	(void)accepted;
	kprintf("vsock-echo: conns=%lu bytes=%lu\n", done, total);
}

static void line_take(struct vsock_conn *c, const u8 *p, u32 n)
{
	/* user[0]: length so far; user[1]: line complete. The line buffer is
	 * echo_ring[0]. */
	u8 *line = echo_ring[0];
	for (u32 i = 0; i < n && !c->user[1]; i++) {
		if (p[i] == '\n')
			c->user[1] = 1;
		else if (c->user[0] < 255)
			line[c->user[0]++] = p[i];
	}
	vsock_consumed(c, n);
}

/* vsock-req PORT TEXT... : send TEXT and a newline, print the answer line. */
void vsock_cmd_req(int argc, char **argv)
{
	u64 port;
	if (argc < 2) {
		kputs("error: usage: vsock-req PORT TEXT...\n");
		return;
	}
	if (num_arg(argv[1], &port) < 0 || need_device("vsock-req") < 0)
		return;
	u32 n = 0;
	for (int i = 2; i < argc; i++)
		for (const char *s = argv[i]; n < 1000; s++) {
			if (s == argv[i] && i > 2)
				txbuf[n++] = ' ';
			if (!*s)
				break;
			txbuf[n++] = (u8)*s;
		}
	txbuf[n++] = '\n';
	struct vsock_conn *c = vsock_connect((u32)port, CONNECT_TIMEOUT_NS);
	if (!c) {
		kprintf("vsock-req: error connect port=%lu refused\n", port);
		return;
	}
	c->on_data = line_take;
	if (vsock_send(c, txbuf, n, IO_TIMEOUT_NS) < 0) {
		kputs("vsock-req: error send\n");
		c->state = VS_FREE;
		return;
	}
	u64 end = clock_ns() + IO_TIMEOUT_NS;
	while (!c->user[1] && c->state == VS_ESTABLISHED && !(c->peer_shutdown & VSOCK_SHUTDOWN_SEND)) {
		if (!vsock_poll()) {
			if (clock_ns() > end)
				break;
			cpu_relax();
		}
	}
	u64 len = c->user[0];
	int complete = (int)c->user[1];
	vsock_close(c, CLOSE_TIMEOUT_NS);
	echo_ring[0][len] = 0;
	if (!complete && !len) {
		kputs("vsock-req: error no answer\n");
		return;
	}
	kprintf("vsock-req: %s\n", (const char *)echo_ring[0]);
}

static void ping_take(struct vsock_conn *c, const u8 *p, u32 n)
{
	(void)p;
	c->user[0] += n;
	vsock_consumed(c, n);
}

/* vsock-ping PORT COUNT SIZE: round trips through a host echo server. */
void vsock_cmd_ping(int argc, char **argv)
{
	u64 port, count, size;
	if (argc != 4) {
		kputs("error: usage: vsock-ping PORT COUNT SIZE\n");
		return;
	}
	if (num_arg(argv[1], &port) < 0 || num_arg(argv[2], &count) < 0 || num_arg(argv[3], &size) < 0 ||
	    need_device("vsock-ping") < 0)
		return;
	if (size == 0 || size > VSOCK_MAX_PAYLOAD || count == 0) {
		kprintf("error: vsock-ping: SIZE must be 1..%u and COUNT at least 1\n", VSOCK_MAX_PAYLOAD);
		return;
	}
	struct vsock_conn *c = vsock_connect((u32)port, CONNECT_TIMEOUT_NS);
	if (!c) {
		kprintf("vsock-ping: error connect port=%lu refused\n", port);
		return;
	}
	c->on_data = ping_take;
	pattern_fill(txbuf, 0, (u32)size);
	u64 total_ns = 0, min_ns = ~0ul;
	u64 i;
	for (i = 0; i < count; i++) {
		u64 t = clock_ns(), want = c->user[0] + size;
		if (vsock_send(c, txbuf, (u32)size, IO_TIMEOUT_NS) < 0)
			break;
		u64 end = t + IO_TIMEOUT_NS;
		while (c->user[0] < want && c->state == VS_ESTABLISHED) {
			if (!vsock_poll()) {
				if (clock_ns() > end)
					break;
				cpu_relax();
			}
		}
		if (c->user[0] < want)
			break;
		u64 dt = clock_ns() - t;
		total_ns += dt;
		if (dt < min_ns)
			min_ns = dt;
	}
	vsock_close(c, CLOSE_TIMEOUT_NS);
	if (i < count) {
		kprintf("vsock-ping: error after=%lu\n", i);
		return;
	}
	kprintf("vsock-ping: count=%lu size=%lu avg_us=%lu min_us=%lu\n", count, size,
		total_ns / count / 1000, min_ns / 1000);
}
