/* mini: a small HTTP/1.1 client to the host over virtio-vsock (http.c),
 * and a bounded JSON scanner for the few fields the workload commands
 * read (no general parser: every scan is limited to the given span). */
#ifndef MINI_HTTP_H
#define MINI_HTTP_H
#include "kernel.h"

#define HTTP_PORT 80                     /* host (CID 2) port of the API */
#define HTTP_RESP_MAX (256u * 1024)      /* headers + body of one response */
#define HTTP_BODY_MAX (128u * 1024)      /* request body */
#define HTTP_PATH_MAX 6144
#define HTTP_MAX_TRIES 10
#define HTTP_TIMEOUT_MS 30000            /* plus the request's own wait */

/* Negative results of http_request / http_call. */
#define HTTP_E_NODEV (-1)   /* no vsock device */
#define HTTP_E_CONNECT (-2) /* connection refused or not answered */
#define HTTP_E_BROKEN (-3)  /* closed or reset before the whole response */
#define HTTP_E_TIMEOUT (-4) /* no whole response in time */
#define HTTP_E_TOOBIG (-5)  /* response larger than HTTP_RESP_MAX */
#define HTTP_E_GARBAGE (-6) /* not an HTTP/1.x response */
#define HTTP_E_REQUEST (-7) /* request (path or body) too large */

struct http_resp {
	int status;
	const char *body; /* inside the response buffer; valid until the next request */
	u32 len;
};

/* A buffer of HTTP_BODY_MAX bytes in which a request body can be built:
 * passing it (and its length) to http_request sends it without a copy,
 * and leaves it intact for retries. */
char *http_body_buf(void);
/* One request on the kept-alive connection (connected on first use;
 * reconnected and resent once if a reused connection was closed before
 * any response byte). A body (len > 0) is sent as application/json.
 * Returns 0 with r filled, or HTTP_E_*. */
int http_request(const char *method, const char *path, const char *body, u32 len, u64 wait_ms,
		 struct http_resp *r);
/* http_request with retries: broken or refused connections, 429 and 5xx
 * are retried after 100 ms, doubling to 2 s, at most HTTP_MAX_TRIES tries
 * in all. Returns 0 with the last response (which may still be a 429 or
 * 5xx when the tries ran out), or HTTP_E_*. */
int http_call(const char *method, const char *path, const char *body, u32 len, u64 wait_ms,
	      struct http_resp *r);
/* Tries the last http_call made. */
extern u32 http_tries;
const char *http_strerror(int e);
/* Prints "<cmd>: error <status> <body>" or "<cmd>: error <reason>[ (after
 * N tries)]" for a failed http_call (rc < 0 or status not 2xx). */
void http_print_error(const char *cmd, int rc, const struct http_resp *r);

/* Copies n bytes 8 at a time (every guest instruction is emulated here:
 * fewer is faster). d and s must not overlap. */
static inline void copy_words(void *d, const void *s, u32 n)
{
	u8 *dp = d;
	const u8 *sp = s;
	u32 i = 0;
	for (; i + 8 <= n; i += 8) {
		u64 w;
		__builtin_memcpy(&w, sp + i, 8);
		__builtin_memcpy(dp + i, &w, 8);
	}
	for (; i < n; i++)
		dp[i] = sp[i];
}

/* Output helpers: bytes, with control characters printed as spaces (one
 * console line whatever the host sent). */
void put_text(const char *p, u32 n);

/* A string builder over a fixed buffer; over is set (and nothing more
 * written) once it would overflow. */
struct sbuf {
	char *p;
	u32 n, cap;
	int over;
};
void sb_put(struct sbuf *b, const char *s, u32 n);
void sb_str(struct sbuf *b, const char *s);
void sb_u64(struct sbuf *b, u64 v);
/* JSON string contents (no quotes added) / percent-encoding (all but
 * A-Za-z0-9-._~). */
void sb_json(struct sbuf *b, const char *s, u32 n);
void sb_url(struct sbuf *b, const char *s, u32 n);

/* JSON: a span is the raw text of one value. */
struct jspan {
	const char *p;
	u32 n;
};
/* The value of member KEY of the object in v (0), or -1 (not an object,
 * no such member, malformed). Keys are compared as raw bytes. */
int json_get(struct jspan v, const char *key, struct jspan *out);
/* Like json_get, but the span runs from the value to the end of v (the
 * value is not skipped: for an array about to be walked with json_next). */
int json_find(struct jspan v, const char *key, struct jspan *out);
/* Members keys[0..nkeys) of the object v in one pass: out[k] is the span
 * of keys[k], or {NULL, 0} when absent. Returns how many were found, -1
 * if v is malformed before they all were. lazy: as json_find for the last
 * one found when all are found. */
int json_fields(struct jspan v, const char *const *keys, u32 nkeys, struct jspan *out, int lazy);
/* Iterate an array: *pos = 0 first; 1 with *elem, 0 at the end, -1 bad. */
int json_next(struct jspan arr, u32 *pos, struct jspan *elem);
int json_u64(struct jspan v, u64 *out);
int json_is_null(struct jspan v);
/* Unescape a JSON string value into out (at most max bytes, no NUL
 * added; out NULL: only count): its length, or -1 if v is not a
 * well-formed string or does not fit. */
i32 json_str(struct jspan v, char *out, u32 max);
/* Prints a JSON string decoded (put_text), or v as it is if it is not a
 * well-formed string. */
void put_json_str(struct jspan v);

/* workload_cmds.c: the shell commands (formats in images/README.md). */
/* Their command-table entries ({name, fn}), shared by mini's shell and the
 * linux image's minicloud-guest. */
#define WL_COMMAND_TABLE                                              \
	{"metadata", wl_cmd_metadata}, {"produce", wl_cmd_produce},       \
	{"consume", wl_cmd_consume}, {"queue-send", wl_cmd_queue_send}, \
	{"queue-receive-delete", wl_cmd_queue_receive_delete},           \
	{"http", wl_cmd_http},
void wl_cmd_metadata(int argc, char **argv);
void wl_cmd_produce(int argc, char **argv);
void wl_cmd_consume(int argc, char **argv);
void wl_cmd_queue_send(int argc, char **argv);
void wl_cmd_queue_receive_delete(int argc, char **argv);
void wl_cmd_http(int argc, char **argv);

#endif
