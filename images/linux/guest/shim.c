/* minicloud-guest: the mini guest's workload commands (metadata, produce,
 * consume, queue-send, queue-receive-delete, http) as a static Linux
 * program for the `linux` image.
 *
 * images/mini/http.c and images/mini/workload_cmds.c are compiled as they
 * are, against mini's own kernel.h/vsock.h/http.h; this file supplies what
 * they take from the rest of mini:
 *
 * - console: kprintf/kputs/uart_putc write to stdout, one write(2) per line
 *   (so lines of concurrent writers on the console do not interleave);
 * - clock_ns: CLOCK_MONOTONIC; delay_us: nanosleep; parse_u64: as lib.c;
 * - mini's polled virtio-vsock API (vsock.h), over AF_VSOCK stream sockets
 *   to CID 2 (VMADDR_CID_HOST):
 *     vsock_present   a vsock device is there: /dev/vsock's
 *                     IOCTL_VM_SOCKETS_GET_LOCAL_CID gives a guest CID (3
 *                     or more; without a device Linux 6.1 answers
 *                     VMADDR_CID_ANY, or the loopback transport's 1)
 *     vsock_connect   socket + blocking connect to (2, port) with
 *                     SO_VM_SOCKETS_CONNECT_TIMEOUT = the timeout; refused
 *                     (ECONNRESET), timed out or failed: NULL
 *     vsock_poll      for every open connection, recv(MSG_DONTWAIT) what
 *                     the kernel holds (64 KiB at a time, at most 16 reads)
 *                     and hand it to on_data, like mini's rx queue; EOF
 *                     sets peer_shutdown SEND (mini: the peer's SHUTDOWN),
 *                     an error (ECONNRESET...) sets state CLOSED and reset
 *                     (mini: its RST); each of those counts as one packet.
 *                     The callers spin on it (http.c's exchange loop), so
 *                     the second empty call in a row sleeps in poll(2), up
 *                     to POLL_WAIT_MS, until a socket is readable: no busy
 *                     loop, no added latency (http.c looks at its deadline
 *                     every 64 empty polls: at most 0.64 s late).
 *     vsock_send      send(MSG_DONTWAIT|MSG_NOSIGNAL) until all is sent,
 *                     waiting in poll(2) for room (and delivering what
 *                     arrives meanwhile, as mini does while it waits for
 *                     credit); -1 on EPIPE/ECONNRESET or no progress for
 *                     the timeout
 *     vsock_close, vsock_abort   close(2) (Linux's close is the graceful
 *                     SHUTDOWN; a guest socket cannot send a bare RST)
 *     vsock_consumed  bookkeeping only (the kernel returns the credit)
 *
 * Usage: minicloud-guest CMD ARGS..., or through a link named CMD
 * (/bin/metadata -> minicloud-guest). Output is exactly mini's; the exit
 * status is 0, 1 when the command printed an error line ("error: ...",
 * "CMD: error ...", "CMD: failed ..."), 2 for an unknown command. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "kernel.h"
#include "vsock.h"
#include "http.h"

#define RX_CHUNK (64u * 1024)
#define RX_READS_MAX 16
#define POLL_WAIT_MS 10

/* ------------------------------------------------------------ console */

static char obuf[16384];
static u32 on;
static const char *cmd_name = "";
static int saw_error;
static char lhead[160]; /* the start of the current line */
static u32 lhn;

static void out_flush(void)
{
	u32 k = 0;
	while (k < on) {
		ssize_t n = write(1, obuf + k, on - k);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* stdout gone: drop the output, keep going */
		k += (u32)n;
	}
	on = 0;
}

static int starts(const char *w)
{
	usize n = strlen(w);
	return lhn >= n && memcmp(lhead, w, n) == 0;
}

static void line_end(void)
{
	char w[sizeof(lhead)];
	if (starts("error: "))
		saw_error = 1;
	snprintf(w, sizeof(w), "%s: error ", cmd_name);
	if (starts(w))
		saw_error = 1;
	snprintf(w, sizeof(w), "%s: failed ", cmd_name);
	if (starts(w))
		saw_error = 1;
	lhn = 0;
}

void uart_putc(char c)
{
	if (on == sizeof(obuf))
		out_flush();
	obuf[on++] = c;
	if (c == '\n') {
		line_end();
		out_flush();
	} else if (lhn < sizeof(lhead)) {
		lhead[lhn++] = c;
	}
}

void kputs(const char *s)
{
	while (*s)
		uart_putc(*s++);
}

void kprintf(const char *fmt, ...)
{
	char small[1024], *p = small;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((usize)n >= sizeof(small)) {
		p = malloc((usize)n + 1);
		if (!p)
			return;
		va_start(ap, fmt);
		vsnprintf(p, (usize)n + 1, fmt, ap);
		va_end(ap);
	}
	for (int i = 0; i < n; i++)
		uart_putc(p[i]);
	if (p != small)
		free(p);
}

/* ------------------------------------------------------------ clock, numbers */

u64 clock_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (u64)t.tv_sec * 1000000000ul + (u64)t.tv_nsec;
}

void delay_us(u64 us)
{
	struct timespec t = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

/* As mini's lib.c: decimal, or hex after "0x", the whole string. */
int parse_u64(const char *s, u64 *out)
{
	u64 v = 0, base = 10;
	int n = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (;; s++, n++) {
		char c = *s;
		u64 d = c >= '0' && c <= '9'   ? (u64)(c - '0')
			: c >= 'a' && c <= 'f' ? (u64)(c - 'a' + 10)
			: c >= 'A' && c <= 'F' ? (u64)(c - 'A' + 10)
					       : 99;
		if (d >= base)
			break;
		u64 nv = v * base + d;
		if ((nv - d) / base != v)
			return -1;
		v = nv;
	}
	if (n == 0 || *s)
		return -1;
	*out = v;
	return 0;
}

/* ------------------------------------------------------------ vsock */

struct vsock_conn vsock_conns[VSOCK_MAX_CONNS];
static int conn_fd[VSOCK_MAX_CONNS];
static int idle_polls; /* vsock_poll calls in a row that found nothing */
static u8 rx_buf[RX_CHUNK];

static int slot(const struct vsock_conn *c) { return (int)(c - vsock_conns); }

/* The connection can still deliver something (data, EOF or an error). */
static int readable(const struct vsock_conn *c)
{
	return c->state == VS_ESTABLISHED && !(c->peer_shutdown & VSOCK_SHUTDOWN_SEND);
}

int vsock_present(void)
{
	static int present = -1;
	if (present < 0) {
		unsigned int cid = VMADDR_CID_ANY;
		int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0)
				cid = VMADDR_CID_ANY;
			close(fd);
			present = cid > VMADDR_CID_HOST && cid != VMADDR_CID_ANY;
		} else {
			/* No /dev/vsock node: let connect decide. */
			fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
			present = fd >= 0;
			if (fd >= 0)
				close(fd);
		}
	}
	return present;
}

/* Reads what c's socket holds into on_data; the number of "packets". */
static int rx(struct vsock_conn *c)
{
	int fd = conn_fd[slot(c)], handled = 0;
	for (int k = 0; k < RX_READS_MAX && readable(c); k++) {
		ssize_t n = recv(fd, rx_buf, sizeof(rx_buf), MSG_DONTWAIT);
		if (n > 0) {
			c->rx_total += (u64)n;
			if (c->on_data)
				c->on_data(c, rx_buf, (u32)n);
			else
				vsock_consumed(c, (u32)n);
		} else if (n == 0) {
			c->peer_shutdown |= VSOCK_SHUTDOWN_SEND;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else if (errno == EINTR) {
			continue;
		} else {
			c->state = VS_CLOSED;
			c->reset = 1;
		}
		handled++;
	}
	return handled;
}

static int poll_all(void)
{
	int handled = 0;
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (readable(&vsock_conns[i]))
			handled += rx(&vsock_conns[i]);
	return handled;
}

int vsock_poll(void)
{
	int handled = poll_all();
	if (handled) {
		idle_polls = 0;
		return handled;
	}
	if (idle_polls++ == 0)
		return 0;
	/* The caller is waiting for something: sleep until it comes. */
	struct pollfd p[VSOCK_MAX_CONNS];
	nfds_t n = 0;
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (readable(&vsock_conns[i]))
			p[n++] = (struct pollfd){.fd = conn_fd[i], .events = POLLIN};
	if (!n) {
		delay_us(POLL_WAIT_MS * 1000);
		return 0;
	}
	if (poll(p, n, POLL_WAIT_MS) <= 0)
		return 0;
	handled = poll_all();
	if (handled)
		idle_polls = 0;
	return handled;
}

struct vsock_conn *vsock_connect(u32 port, u64 timeout_ns)
{
	if (!vsock_present())
		return NULL;
	struct vsock_conn *c = NULL;
	for (int i = 0; i < VSOCK_MAX_CONNS && !c; i++)
		if (vsock_conns[i].state == VS_FREE)
			c = &vsock_conns[i];
	if (!c)
		return NULL;
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	struct timeval tv = {(time_t)(timeout_ns / 1000000000ul), (suseconds_t)(timeout_ns % 1000000000ul / 1000)};
	setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv, sizeof(tv));
	struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = port};
	int rc;
	do
		rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
	while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		close(fd);
		return NULL;
	}
	struct sockaddr_vm me = {0};
	socklen_t len = sizeof(me);
	getsockname(fd, (struct sockaddr *)&me, &len);
	memset(c, 0, sizeof(*c));
	c->state = VS_ESTABLISHED;
	c->local_port = me.svm_port;
	c->peer_port = port;
	c->buf_alloc = VSOCK_DEFAULT_BUF_ALLOC;
	conn_fd[slot(c)] = fd;
	idle_polls = 0;
	return c;
}

int vsock_send(struct vsock_conn *c, const void *buf, u32 len, u64 timeout_ns)
{
	const u8 *p = buf;
	int fd = conn_fd[slot(c)];
	u64 end = 0;
	idle_polls = 0;
	while (len) {
		if (c->state != VS_ESTABLISHED || (c->peer_shutdown & VSOCK_SHUTDOWN_RCV))
			return -1;
		ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			c->tx_total += (u32)n;
			p += n;
			len -= (u32)n;
			end = 0;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			if (errno == EPIPE)
				c->peer_shutdown |= VSOCK_SHUTDOWN_RCV;
			else
				c->state = VS_CLOSED, c->reset = 1;
			return -1;
		}
		u64 now = clock_ns();
		if (!end)
			end = now + timeout_ns;
		else if (now > end)
			return -1;
		struct pollfd pf = {.fd = fd, .events = POLLOUT | (readable(c) ? POLLIN : 0)};
		u64 left_ms = (end - now) / 1000000 + 1;
		if (poll(&pf, 1, left_ms > 1000 ? 1000 : (int)left_ms) > 0 && (pf.revents & POLLIN))
			rx(c);
	}
	return 0;
}

static void release(struct vsock_conn *c)
{
	close(conn_fd[slot(c)]);
	conn_fd[slot(c)] = -1;
	c->state = VS_FREE;
}

void vsock_close(struct vsock_conn *c, u64 timeout_ns)
{
	(void)timeout_ns;
	release(c);
}

void vsock_abort(struct vsock_conn *c) { release(c); }

void vsock_consumed(struct vsock_conn *c, u32 n) { c->fwd_cnt += n; }

/* ------------------------------------------------------------ main */

static const struct {
	const char *name;
	void (*fn)(int argc, char **argv);
} cmds[] = {
	WL_COMMAND_TABLE
};

static void usage(FILE *f)
{
	fputs("usage: minicloud-guest CMD [ARGS...]   (or CMD [ARGS...] through a link named CMD)\n"
	      "  metadata\n"
	      "  produce TOPIC COUNT [KEY [INTERVAL-MS [BATCH]]]\n"
	      "  consume TOPIC GROUP MAX [WAIT-MS]\n"
	      "  queue-send QUEUE TEXT...\n"
	      "  queue-receive-delete QUEUE [MAX [WAIT-MS]]\n"
	      "  http METHOD PATH [BODY...]\n"
	      "The minicloud API over vsock (CID 2, port 80); output as the mini guest's\n"
	      "(images/README.md, \"Workload commands\").\n",
	      f);
}

int main(int argc, char **argv)
{
	const char *name = argc > 0 ? argv[0] : "minicloud-guest";
	const char *slash = strrchr(name, '/');
	if (slash)
		name = slash + 1;
	if (strcmp(name, "minicloud-guest") == 0) {
		if (argc < 2) {
			usage(stderr);
			return 2;
		}
		if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
			usage(stdout);
			return 0;
		}
		argc--;
		argv++;
		name = argv[0];
	}
	signal(SIGPIPE, SIG_IGN);
	for (usize i = 0; i < ARRAY_SIZE(cmds); i++) {
		if (strcmp(name, cmds[i].name) == 0) {
			char *args[argc + 1];
			/* argv[0] as mini's shell has it: the command's name. */
			args[0] = (char *)cmds[i].name;
			for (int k = 1; k <= argc; k++)
				args[k] = argv[k];
			cmd_name = cmds[i].name;
			cmds[i].fn(argc, args);
			if (lhn)
				line_end();
			out_flush();
			return saw_error ? 1 : 0;
		}
	}
	fprintf(stderr, "minicloud-guest: unknown command '%s'\n", name);
	usage(stderr);
	return 2;
}
