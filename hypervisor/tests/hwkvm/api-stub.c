/*
 * api-stub: a tiny stand-in for the minicloud API that a guest reaches over
 * vsock (CID 2, port 80), for the `vsock-api` check of checks.sh. It listens
 * on the Unix socket PATH (the VMM's `<uds_path>_80`) and answers HTTP/1.1
 * with Content-Length, keeping connections alive:
 *
 *   GET  /v1/metadata          200 a fixed instance (instance_id "i-hwkvm")
 *   POST /v1/topics/T/records  200 {"offsets":[{"partition":0,"offset":N},...],
 *                              "durability":"fsync","duplicate":false}: one
 *                              offset per record of the request (per "key":
 *                              member), numbered from 0 across requests
 *   anything else              404 {"error":"not found"}
 *
 * One line per request on stdout ("api-stub: METHOD PATH -> STATUS ...").
 * Runs until killed. Built by ./run with gcc -static, like idle-vm.c.
 *
 *   api-stub PATH
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CLIENTS 16
#define REQ_MAX (1024 * 1024) /* headers + body of one request */

static const char metadata[] =
	"{\"instance_id\":\"i-hwkvm\",\"name\":\"hwkvm\",\"project_id\":\"p\",\"project\":\"p\",\"image\":\"linux\","
	"\"vcpus\":1,\"memory_mib\":128,\"user_data\":null,\"now_ms\":1764100000000}";

struct client {
	int fd;
	char *buf;
	size_t len;
};

static struct client clients[MAX_CLIENTS];
static unsigned long next_offset;

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int respond(int fd, int status, const char *body, size_t blen)
{
	char head[256];
	const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : status == 413 ? "Payload Too Large" : "Bad Request";
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", status,
			 reason, blen);
	if (write_all(fd, head, (size_t)n) < 0 || write_all(fd, body, blen) < 0)
		return -1;
	return 0;
}

/* Number of `"key":` members in the body (not inside an escaped string). */
static unsigned long count_records(const char *b, size_t n)
{
	unsigned long c = 0;
	for (size_t i = 0; i + 6 <= n; i++)
		if (memcmp(b + i, "\"key\":", 6) == 0 && (i == 0 || b[i - 1] != '\\'))
			c++;
	return c;
}

/* Case-insensitive header lookup in head[0, n): the value's number, or -1. */
static long content_length(const char *head, size_t n)
{
	static const char name[] = "\ncontent-length:";
	for (size_t i = 0; i + sizeof(name) - 1 <= n; i++) {
		size_t k = 0;
		while (k < sizeof(name) - 1) {
			char c = head[i + k];
			if (c >= 'A' && c <= 'Z')
				c = (char)(c + 32);
			if (c != name[k])
				break;
			k++;
		}
		if (k == sizeof(name) - 1) {
			const char *p = head + i + k;
			while (*p == ' ' || *p == '\t')
				p++;
			return strtol(p, NULL, 10);
		}
	}
	return 0;
}

/* Answers every whole request in c's buffer; -1 to drop the client. */
static int serve(struct client *c)
{
	for (;;) {
		char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
		if (!end)
			return c->len >= REQ_MAX ? -1 : 0;
		size_t hlen = (size_t)(end - c->buf) + 4;
		long blen = content_length(c->buf, hlen);
		if (blen < 0 || (size_t)blen > REQ_MAX - hlen) {
			static const char e[] = "{\"error\":\"too large\"}";
			respond(c->fd, 413, e, sizeof(e) - 1);
			return -1;
		}
		if (c->len < hlen + (size_t)blen)
			return 0;
		char method[16] = "", path[512] = "";
		sscanf(c->buf, "%15s %511s", method, path);
		const char *body = c->buf + hlen;
		int rc;
		if (strcmp(method, "GET") == 0 && strcmp(path, "/v1/metadata") == 0) {
			rc = respond(c->fd, 200, metadata, sizeof(metadata) - 1);
			printf("api-stub: GET %s -> 200\n", path);
		} else if (strcmp(method, "POST") == 0 && strncmp(path, "/v1/topics/", 11) == 0 &&
			   strlen(path) > 19 && strcmp(path + strlen(path) - 8, "/records") == 0) {
			unsigned long n = count_records(body, (size_t)blen), first = next_offset;
			size_t cap = 128 + n * 40, len = 0;
			char *r = malloc(cap);
			if (!r)
				return -1;
			len += (size_t)snprintf(r + len, cap - len, "{\"offsets\":[");
			for (unsigned long i = 0; i < n; i++)
				len += (size_t)snprintf(r + len, cap - len, "%s{\"partition\":0,\"offset\":%lu}",
							i ? "," : "", next_offset++);
			len += (size_t)snprintf(r + len, cap - len, "],\"durability\":\"fsync\",\"duplicate\":false}");
			rc = respond(c->fd, 200, r, len);
			free(r);
			if (n)
				printf("api-stub: POST %s -> 200 records=%lu offsets=%lu..%lu\n", path, n, first, next_offset - 1);
			else
				printf("api-stub: POST %s -> 200 records=0\n", path);
		} else {
			static const char e[] = "{\"error\":\"not found\"}";
			rc = respond(c->fd, 404, e, sizeof(e) - 1);
			printf("api-stub: %s %s -> 404\n", method, path);
		}
		fflush(stdout);
		if (rc < 0)
			return -1;
		size_t used = hlen + (size_t)blen;
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: api-stub PATH\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(argv[1]) >= sizeof(a.sun_path)) {
		fprintf(stderr, "api-stub: path too long\n");
		return 2;
	}
	strcpy(a.sun_path, argv[1]);
	unlink(argv[1]);
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 16) < 0) {
		perror("api-stub: listen");
		return 1;
	}
	printf("api-stub: listening on %s\n", argv[1]);
	fflush(stdout);
	for (int i = 0; i < MAX_CLIENTS; i++)
		clients[i].fd = -1;
	for (;;) {
		struct pollfd p[MAX_CLIENTS + 1];
		p[0] = (struct pollfd){.fd = ls, .events = POLLIN};
		for (int i = 0; i < MAX_CLIENTS; i++)
			p[i + 1] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
		if (poll(p, MAX_CLIENTS + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("api-stub: poll");
			return 1;
		}
		if (p[0].revents & POLLIN) {
			int fd = accept(ls, NULL, NULL);
			int i = 0;
			while (fd >= 0 && i < MAX_CLIENTS && clients[i].fd >= 0)
				i++;
			if (fd >= 0 && i == MAX_CLIENTS) {
				close(fd);
			} else if (fd >= 0) {
				clients[i].buf = malloc(REQ_MAX);
				if (!clients[i].buf) {
					close(fd);
				} else {
					clients[i].fd = fd;
					clients[i].len = 0;
				}
			}
		}
		for (int i = 0; i < MAX_CLIENTS; i++) {
			struct client *c = &clients[i];
			if (c->fd < 0 || !(p[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(c->fd, c->buf + c->len, REQ_MAX - c->len);
			if (n > 0) {
				c->len += (size_t)n;
				if (serve(c) == 0)
					continue;
			} else if (n < 0 && errno == EINTR) {
				continue;
			}
			close(c->fd);
			free(c->buf);
			c->fd = -1;
		}
	}
}
