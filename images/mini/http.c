/* mini: HTTP/1.1 client to the host API over virtio-vsock (CID 2, port
 * HTTP_PORT), one kept-alive connection, and a bounded JSON scanner.
 *
 * A request is written into one buffer (headers right in front of the
 * body) and sent with one vsock_send. The response is copied, as it
 * arrives (vsock on_data), into a fixed HTTP_RESP_MAX buffer; it is
 * complete after Content-Length bytes, after the last chunk (chunked), or
 * at the peer's close (no length). Anything longer than the buffer, or
 * anything that is not an HTTP/1.x response, ends the request with an
 * error and the connection is dropped. Every scan is bounded by what was
 * received. */
#include "http.h"
#include "vsock.h"

#define HDR_ROOM 8192     /* request line + headers, in front of the body */
#define HDR_MAX 16384     /* response status line + headers */
#define CONNECT_TIMEOUT_NS 5000000000ul
#define SEND_TIMEOUT_NS 30000000000ul
#define CLOSE_TIMEOUT_NS 1000000000ul

static char txbuf[HDR_ROOM + HTTP_BODY_MAX] NOINIT ALIGNED(4096);
static char rbuf[HTTP_RESP_MAX] NOINIT ALIGNED(4096);

static struct vsock_conn *conn;
static int active;    /* a request is waiting for its response */
static int junk;      /* bytes arrived while no request was waiting */
static u32 rlen;      /* bytes in rbuf */
static u64 rgot;      /* bytes received for this request (also past rbuf) */
u32 http_tries;

/* Response parsing state. */
static u32 hscan, hdr_end, clen;
static int has_clen, chunked, conn_close, status;

char *http_body_buf(void) { return txbuf + HDR_ROOM; }

static void take(struct vsock_conn *c, const u8 *p, u32 n)
{
	if (c == conn && active) {
		u32 room = HTTP_RESP_MAX - rlen;
		u32 k = n < room ? n : room;
		copy_words(rbuf + rlen, p, k);
		rlen += k;
		rgot += n;
	} else {
		junk = 1;
	}
	vsock_consumed(c, n);
}

static void drop_conn(void)
{
	if (!conn)
		return;
	/* Graceful when the peer already closed (it will answer our SHUTDOWN
	 * with its RST at once), else abort. */
	if (conn->state == VS_ESTABLISHED && (conn->peer_shutdown & VSOCK_SHUTDOWN_SEND))
		vsock_close(conn, CLOSE_TIMEOUT_NS);
	else
		vsock_abort(conn);
	conn = NULL;
}

/* --------------------------------------------------------- string builder */

void sb_put(struct sbuf *b, const char *s, u32 n)
{
	if (b->over || n > b->cap - b->n) {
		b->over = 1;
		return;
	}
	copy_words(b->p + b->n, s, n);
	b->n += n;
}

void sb_str(struct sbuf *b, const char *s) { sb_put(b, s, (u32)strlen(s)); }

void sb_u64(struct sbuf *b, u64 v)
{
	char t[20];
	u32 k = 20;
	do {
		t[--k] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sb_put(b, t + k, 20 - k);
}

static const char hexd[] = "0123456789abcdef";

void sb_json(struct sbuf *b, const char *s, u32 n)
{
	for (u32 i = 0; i < n && !b->over; i++) {
		u8 c = (u8)s[i];
		char e[6];
		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			sb_put(b, e, 2);
		} else if (c < 0x20) {
			e[0] = '\\';
			e[1] = 'u';
			e[2] = '0';
			e[3] = '0';
			e[4] = hexd[c >> 4];
			e[5] = hexd[c & 15];
			sb_put(b, e, 6);
		} else {
			sb_put(b, (const char *)&s[i], 1);
		}
	}
}

void sb_url(struct sbuf *b, const char *s, u32 n)
{
	for (u32 i = 0; i < n && !b->over; i++) {
		u8 c = (u8)s[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		    c == '.' || c == '_' || c == '~') {
			sb_put(b, (const char *)&s[i], 1);
		} else {
			char e[3] = {'%', "0123456789ABCDEF"[c >> 4], "0123456789ABCDEF"[c & 15]};
			sb_put(b, e, 3);
		}
	}
}

void put_text(const char *p, u32 n)
{
	for (u32 i = 0; i < n; i++) {
		char c = p[i];
		uart_putc((u8)c < 0x20 || c == 0x7f ? ' ' : c);
	}
}

/* --------------------------------------------------------- response parsing */

enum { R_MORE = 1, R_DONE = 0 };

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/* Does [p, p+n) equal the lowercase word w, ignoring case? */
static int ieq(const char *p, u32 n, const char *w)
{
	u32 i = 0;
	for (; i < n && w[i]; i++)
		if (lower(p[i]) != w[i])
			return 0;
	return i == n && !w[i];
}

/* Does [p, p+n) contain the lowercase word w as a comma/space separated
 * token, ignoring case? */
static int has_token(const char *p, u32 n, const char *w)
{
	u32 i = 0;
	while (i < n) {
		while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
			i++;
		u32 s = i;
		while (i < n && p[i] != ',' && p[i] != ' ' && p[i] != '\t')
			i++;
		if (i > s && ieq(p + s, i - s, w))
			return 1;
	}
	return 0;
}

static void resp_reset(void)
{
	hscan = hdr_end = clen = 0;
	has_clen = chunked = conn_close = 0;
	status = 0;
}

/* Status line and headers in rbuf[0, hdr_end). */
static int parse_head(int head_only)
{
	const char *p = rbuf;
	u32 n = hdr_end;
	if (n < 13 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ')
		return HTTP_E_GARBAGE;
	for (int i = 9; i < 12; i++)
		if (p[i] < '0' || p[i] > '9')
			return HTTP_E_GARBAGE;
	status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	if (p[12] != ' ' && p[12] != '\r')
		return HTTP_E_GARBAGE;
	if (p[7] == '0')
		conn_close = 1; /* HTTP/1.0 */
	u32 i = 12;
	while (i < n && p[i] != '\n')
		i++;
	i++;
	while (i + 2 < n) { /* each header line; the last "\r\n" ends them */
		u32 ls = i;
		while (i < n && p[i] != '\n')
			i++;
		u32 le = i; /* at '\n' */
		i++;
		if (le > ls && p[le - 1] == '\r')
			le--;
		if (le == ls)
			break;
		u32 c = ls;
		while (c < le && p[c] != ':')
			c++;
		if (c == le)
			return HTTP_E_GARBAGE;
		u32 ne = c;
		while (ne > ls && (p[ne - 1] == ' ' || p[ne - 1] == '\t'))
			ne--;
		u32 vs = c + 1, ve = le;
		while (vs < ve && (p[vs] == ' ' || p[vs] == '\t'))
			vs++;
		while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
			ve--;
		if (ieq(p + ls, ne - ls, "content-length")) {
			u64 v = 0;
			if (vs == ve)
				return HTTP_E_GARBAGE;
			for (u32 k = vs; k < ve; k++) {
				if (p[k] < '0' || p[k] > '9' || v > 0xffffffffu)
					return HTTP_E_GARBAGE;
				v = v * 10 + (u64)(p[k] - '0');
			}
			if (v > 0xffffffffu)
				return HTTP_E_GARBAGE;
			clen = (u32)v;
			has_clen = 1;
		} else if (ieq(p + ls, ne - ls, "transfer-encoding")) {
			if (has_token(p + vs, ve - vs, "chunked"))
				chunked = 1;
		} else if (ieq(p + ls, ne - ls, "connection")) {
			if (has_token(p + vs, ve - vs, "close"))
				conn_close = 1;
		}
	}
	if (head_only || status == 204 || status == 304) {
		has_clen = 1;
		clen = 0;
		chunked = 0;
	}
	if (chunked)
		has_clen = 0;
	return 0;
}

/* Checks a chunked body in rbuf[hdr_end, rlen); when it is complete,
 * joins the chunks in place (*blen = data length). */
static int dechunk(u32 *blen, int compact)
{
	u32 i = hdr_end, out = hdr_end;
	for (;;) {
		u64 size = 0;
		u32 digits = 0;
		while (i < rlen) {
			char c = rbuf[i];
			int d = c >= '0' && c <= '9' ? c - '0' : lower(c) >= 'a' && lower(c) <= 'f' ? lower(c) - 'a' + 10 : -1;
			if (d < 0)
				break;
			if (++digits > 8)
				return HTTP_E_GARBAGE;
			size = size * 16 + (u64)d;
			i++;
		}
		if (i >= rlen)
			return R_MORE;
		if (!digits)
			return HTTP_E_GARBAGE;
		/* chunk extensions up to the line end */
		u32 lim = i + 1024;
		while (i < rlen && rbuf[i] != '\n') {
			if (i > lim)
				return HTTP_E_GARBAGE;
			i++;
		}
		if (i >= rlen)
			return R_MORE;
		i++;
		if (size == 0) {
			/* trailers, then an empty line */
			for (;;) {
				u32 ls = i;
				while (i < rlen && rbuf[i] != '\n') {
					if (i - ls > HDR_MAX)
						return HTTP_E_GARBAGE;
					i++;
				}
				if (i >= rlen)
					return R_MORE;
				u32 len = i - ls;
				i++;
				if (len == 0 || (len == 1 && rbuf[ls] == '\r'))
					break;
			}
			*blen = out - hdr_end;
			return R_DONE;
		}
		if (size > rlen || rlen - i < size + 1)
			return R_MORE;
		if (compact)
			memmove(rbuf + out, rbuf + i, (u32)size);
		out += (u32)size;
		i += (u32)size;
		if (rbuf[i] == '\r')
			i++;
		if (i >= rlen)
			return R_MORE;
		if (rbuf[i] != '\n')
			return HTTP_E_GARBAGE;
		i++;
	}
}

/* R_DONE with r filled, R_MORE, or HTTP_E_*. eof: the peer closed. */
static int parse(int head_only, int eof, struct http_resp *r)
{
	while (!hdr_end) {
		u32 i = hscan;
		while (i + 3 < rlen) {
			char c = rbuf[i + 3];
			if (c == '\n') {
				if (rbuf[i] == '\r' && rbuf[i + 1] == '\n' && rbuf[i + 2] == '\r')
					break;
				i++;
			} else if (c == '\r') {
				i++;
			} else {
				i += 4; /* no "\r\n\r\n" can cover byte i + 3 */
			}
		}
		if (i + 3 >= rlen) {
			hscan = i;
			if (rlen > HDR_MAX)
				return HTTP_E_GARBAGE;
			if (rlen >= 5 && memcmp(rbuf, "HTTP/", 5) != 0)
				return HTTP_E_GARBAGE;
			return eof ? HTTP_E_BROKEN : R_MORE;
		}
		hdr_end = i + 4;
		int e = parse_head(head_only);
		if (e < 0)
			return e;
		if (status >= 100 && status < 200) { /* interim response: skip it */
			memmove(rbuf, rbuf + hdr_end, rlen - hdr_end);
			rlen -= hdr_end;
			rgot -= hdr_end;
			resp_reset();
		}
	}
	r->status = status;
	r->body = rbuf + hdr_end;
	if (chunked) {
		u32 blen = 0;
		int e = dechunk(&blen, 0);
		if (e == R_DONE) {
			dechunk(&blen, 1);
			r->len = blen;
			return R_DONE;
		}
		if (e < 0)
			return e;
	} else if (has_clen) {
		if (clen > HTTP_RESP_MAX - hdr_end)
			return HTTP_E_TOOBIG;
		if (rlen - hdr_end >= clen) {
			if (rgot > hdr_end + clen)
				conn_close = 1; /* bytes past the response: do not trust the connection */
			r->len = clen;
			return R_DONE;
		}
	} else {
		/* body until the peer closes */
		conn_close = 1;
		if (eof && rgot == rlen) {
			r->len = rlen - hdr_end;
			return R_DONE;
		}
	}
	if (rgot > rlen)
		return HTTP_E_TOOBIG;
	return eof ? HTTP_E_BROKEN : R_MORE;
}

/* --------------------------------------------------------- requests */

static int ensure_conn(int *fresh)
{
	*fresh = 0;
	if (conn) {
		vsock_poll();
		if (conn->state != VS_ESTABLISHED || conn->peer_shutdown || junk || conn->on_data != take)
			drop_conn();
	}
	if (!conn) {
		junk = 0;
		conn = vsock_connect(HTTP_PORT, CONNECT_TIMEOUT_NS);
		if (!conn)
			return HTTP_E_CONNECT;
		conn->on_data = take;
		*fresh = 1;
	}
	return 0;
}

static int exchange(const char *req, u32 len, int head_only, u64 wait_ms, struct http_resp *r)
{
	rlen = 0;
	rgot = 0;
	resp_reset();
	active = 1;
	int rc;
	if (vsock_send(conn, req, len, SEND_TIMEOUT_NS) < 0) {
		/* Bytes may have come back already (an early error response). */
		rc = parse(head_only, 1, r);
		conn_close = 1;
		goto out;
	}
	u64 end = clock_ns() + (wait_ms + HTTP_TIMEOUT_MS) * 1000000ul;
	u32 spins = 0;
	for (;;) {
		int got = vsock_poll();
		int eof = conn->state != VS_ESTABLISHED || (conn->peer_shutdown & VSOCK_SHUTDOWN_SEND);
		if (got || eof) {
			rc = parse(head_only, eof, r);
			if (rc != R_MORE)
				break;
		}
		if (!got && ++spins % 64 == 0 && clock_ns() > end) {
			rc = HTTP_E_TIMEOUT;
			break;
		}
		cpu_relax();
	}
out:
	active = 0;
	if (rc == R_MORE)
		rc = HTTP_E_BROKEN;
	if (rc < 0 || conn_close)
		drop_conn();
	return rc;
}

int http_request(const char *method, const char *path, const char *body, u32 len, u64 wait_ms,
		 struct http_resp *r)
{
	r->status = 0;
	r->body = rbuf;
	r->len = 0;
	http_tries = 1;
	if (!vsock_present())
		return HTTP_E_NODEV;
	if (len > HTTP_BODY_MAX || strlen(path) > HTTP_PATH_MAX)
		return HTTP_E_REQUEST;
	char *b = txbuf + HDR_ROOM;
	if (len && body != b)
		memmove(b, body, len);
	/* Headers into a scratch area at the start of txbuf, then moved to sit
	 * right in front of the body. */
	struct sbuf h = {txbuf, 0, HDR_ROOM, 0};
	sb_str(&h, method);
	sb_put(&h, " ", 1);
	sb_str(&h, path);
	sb_str(&h, " HTTP/1.1\r\nHost: minicloud\r\n");
	if (len)
		sb_str(&h, "Content-Type: application/json\r\n");
	sb_str(&h, "Content-Length: ");
	sb_u64(&h, len);
	sb_str(&h, "\r\n\r\n");
	if (h.over)
		return HTTP_E_REQUEST;
	char *start = b - h.n;
	if (h.n <= HDR_ROOM / 2)
		copy_words(start, txbuf, h.n);
	else
		memmove(start, txbuf, h.n);
	int head_only = strcmp(method, "HEAD") == 0;
	for (int attempt = 0;; attempt++) {
		int fresh, rc = ensure_conn(&fresh);
		if (rc < 0)
			return rc;
		rc = exchange(start, h.n + len, head_only, wait_ms, r);
		/* A kept-alive connection the server closed before answering:
		 * once more on a new one. */
		if (rc == HTTP_E_BROKEN && rgot == 0 && !fresh && attempt == 0)
			continue;
		return rc;
	}
}

int http_call(const char *method, const char *path, const char *body, u32 len, u64 wait_ms,
	      struct http_resp *r)
{
	u64 backoff_ms = 100;
	for (u32 tries = 1;; tries++) {
		int rc = http_request(method, path, body, len, wait_ms, r);
		int retry = rc == HTTP_E_CONNECT || rc == HTTP_E_BROKEN ||
			    (rc == 0 && (r->status == 429 || r->status >= 500));
		if (!retry || tries >= HTTP_MAX_TRIES) {
			http_tries = tries;
			return rc;
		}
		delay_us(backoff_ms * 1000);
		backoff_ms = backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2;
	}
}

const char *http_strerror(int e)
{
	switch (e) {
	case HTTP_E_NODEV:
		return "no vsock device";
	case HTTP_E_CONNECT:
		return "connection refused";
	case HTTP_E_BROKEN:
		return "connection closed";
	case HTTP_E_TIMEOUT:
		return "timeout";
	case HTTP_E_TOOBIG:
		return "response too large";
	case HTTP_E_GARBAGE:
		return "bad response";
	case HTTP_E_REQUEST:
		return "request too large";
	default:
		return "failed";
	}
}

void http_print_error(const char *cmd, int rc, const struct http_resp *r)
{
	if (rc < 0) {
		kprintf("%s: error %s", cmd, http_strerror(rc));
	} else {
		kprintf("%s: error %d ", cmd, r->status);
		put_text(r->body, r->len > 4096 ? 4096 : r->len);
	}
	if (http_tries > 1)
		kprintf(" (after %u tries)", http_tries);
	kputs("\n");
}

/* --------------------------------------------------------- JSON */

static u32 ws(const char *s, u32 n, u32 i)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* s[*i] is '"': past the closing quote. */
static int skip_string(const char *s, u32 n, u32 *i)
{
	for (u32 j = *i + 1; j < n; j++) {
		char c = s[j];
		if (c == '\\')
			j++;
		else if (c == '"') {
			*i = j + 1;
			return 0;
		}
	}
	return -1;
}

static int scalar_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
	       c == '+' || c == '.';
}

/* Skips one value at *i (leading whitespace included). Inside an object
 * or array only strings and brackets are looked at (brackets counted, not
 * matched by kind): enough to find where a value ends, and cheap, which
 * matters when every instruction is emulated. */
static int skip_value(const char *s, u32 n, u32 *i)
{
	u32 j = ws(s, n, *i);
	if (j >= n)
		return -1;
	char c = s[j];
	if (c == '"') {
		if (skip_string(s, n, &j) < 0)
			return -1;
		*i = j;
		return 0;
	}
	if (c != '{' && c != '[') {
		if (!scalar_char(c))
			return -1;
		while (j < n && scalar_char(s[j]))
			j++;
		*i = j;
		return 0;
	}
	u32 depth = 0;
	while (j < n) {
		c = s[j];
		if (c == '"') {
			if (skip_string(s, n, &j) < 0)
				return -1;
			continue;
		}
		j++;
		if ((c & 0xd9) != 0x59) /* not one of [ ] { } (nor Y _ y DEL) */
			continue;
		if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (--depth == 0) {
				*i = j;
				return 0;
			}
		}
	}
	return -1;
}

int json_fields(struct jspan v, const char *const *keys, u32 nkeys, struct jspan *out, int lazy)
{
	const char *s = v.p;
	u32 n = v.n, found = 0;
	for (u32 k = 0; k < nkeys; k++)
		out[k].p = NULL, out[k].n = 0;
	u32 i = ws(s, n, 0);
	if (i >= n || s[i] != '{')
		return -1;
	i = ws(s, n, i + 1);
	if (i < n && s[i] == '}')
		return 0;
	for (;;) {
		if (i >= n || s[i] != '"')
			return -1;
		u32 ks = i + 1;
		if (skip_string(s, n, &i) < 0)
			return -1;
		u32 kl = i - 1 - ks;
		i = ws(s, n, i);
		if (i >= n || s[i] != ':')
			return -1;
		u32 vs = ws(s, n, i + 1);
		u32 k = 0;
		for (; k < nkeys; k++) {
			const char *w = keys[k];
			u32 m = 0;
			if (out[k].p)
				continue;
			while (m < kl && w[m] && w[m] == s[ks + m])
				m++;
			if (m == kl && !w[m])
				break;
		}
		if (k < nkeys && lazy && found + 1 == nkeys) {
			/* the last one wanted: its span runs to the end of v */
			out[k].p = s + vs;
			out[k].n = n - vs;
			return (int)(found + 1);
		}
		i = vs;
		if (skip_value(s, n, &i) < 0)
			return -1;
		if (k < nkeys) {
			out[k].p = s + vs;
			out[k].n = i - vs;
			if (++found == nkeys)
				return (int)found;
		}
		i = ws(s, n, i);
		if (i < n && s[i] == '}')
			return (int)found;
		if (i >= n || s[i] != ',')
			return -1;
		i = ws(s, n, i + 1);
	}
}

int json_get(struct jspan v, const char *key, struct jspan *out)
{
	return json_fields(v, &key, 1, out, 0) == 1 ? 0 : -1;
}

int json_find(struct jspan v, const char *key, struct jspan *out)
{
	return json_fields(v, &key, 1, out, 1) == 1 ? 0 : -1;
}

int json_next(struct jspan arr, u32 *pos, struct jspan *elem)
{
	const char *s = arr.p;
	u32 n = arr.n, i = *pos;
	if (i == 0) {
		i = ws(s, n, 0);
		if (i >= n || s[i] != '[')
			return -1;
		i = ws(s, n, i + 1);
		if (i < n && s[i] == ']') {
			*pos = i;
			return 0;
		}
	} else {
		i = ws(s, n, i);
		if (i >= n)
			return -1;
		if (s[i] == ']')
			return 0;
		if (s[i] != ',')
			return -1;
		i = ws(s, n, i + 1);
	}
	u32 vs = i;
	if (skip_value(s, n, &i) < 0)
		return -1;
	elem->p = s + vs;
	elem->n = i - vs;
	*pos = i;
	return 1;
}

int json_u64(struct jspan v, u64 *out)
{
	u64 x = 0;
	if (!v.n)
		return -1;
	for (u32 i = 0; i < v.n; i++) {
		char c = v.p[i];
		if (c < '0' || c > '9')
			return -1;
		u64 nx = x * 10 + (u64)(c - '0');
		if (x > 1844674407370955161ul || nx < x)
			return -1;
		x = nx;
	}
	*out = x;
	return 0;
}

int json_is_null(struct jspan v) { return v.n == 4 && memcmp(v.p, "null", 4) == 0; }

static int hex4(const char *p, u32 *out)
{
	u32 v = 0;
	for (int k = 0; k < 4; k++) {
		char c = lower(p[k]);
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + (u32)d;
	}
	*out = v;
	return 0;
}

/* Decodes a JSON string. mode 0: into out (at most max bytes); 1: only
 * counts; 2: prints (put_text). Returns the decoded length or -1. */
static i32 jdecode(struct jspan v, char *out, u32 max, int mode)
{
	const char *s = v.p;
	u32 n = v.n, o = 0;
	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return -1;
	for (u32 i = 1; i < n - 1; i++) {
		char c = s[i];
		char e[4];
		u32 en = 1;
		e[0] = c;
		if (c == '\\') {
			if (++i >= n - 1)
				return -1;
			switch (s[i]) {
			case '"': e[0] = '"'; break;
			case '\\': e[0] = '\\'; break;
			case '/': e[0] = '/'; break;
			case 'b': e[0] = '\b'; break;
			case 'f': e[0] = '\f'; break;
			case 'n': e[0] = '\n'; break;
			case 'r': e[0] = '\r'; break;
			case 't': e[0] = '\t'; break;
			case 'u': {
				u32 cp;
				if (n - 1 - (i + 1) < 4 || hex4(s + i + 1, &cp) < 0)
					return -1;
				i += 4;
				if (cp >= 0xd800 && cp < 0xdc00 && n - 1 - (i + 1) >= 6 && s[i + 1] == '\\' &&
				    s[i + 2] == 'u') {
					u32 lo;
					if (hex4(s + i + 3, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
						cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
						i += 6;
					}
				}
				if (cp < 0x80) {
					e[0] = (char)cp;
				} else if (cp < 0x800) {
					e[0] = (char)(0xc0 | (cp >> 6));
					e[1] = (char)(0x80 | (cp & 0x3f));
					en = 2;
				} else if (cp < 0x10000) {
					e[0] = (char)(0xe0 | (cp >> 12));
					e[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
					e[2] = (char)(0x80 | (cp & 0x3f));
					en = 3;
				} else {
					e[0] = (char)(0xf0 | (cp >> 18));
					e[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
					e[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
					e[3] = (char)(0x80 | (cp & 0x3f));
					en = 4;
				}
				break;
			}
			default:
				return -1;
			}
		} else if (c == '"') {
			return -1;
		}
		if (mode) {
			if (mode == 2)
				put_text(e, en);
			o += en;
			continue;
		}
		if (en > max - o)
			return -1;
		for (u32 k = 0; k < en; k++)
			out[o++] = e[k];
	}
	return (i32)o;
}

i32 json_str(struct jspan v, char *out, u32 max) { return jdecode(v, out, max, out ? 0 : 1); }

void put_json_str(struct jspan v)
{
	if (jdecode(v, NULL, 0, 1) < 0)
		put_text(v.p, v.n); /* not a well-formed string: as it is */
	else
		jdecode(v, NULL, 0, 2);
}
