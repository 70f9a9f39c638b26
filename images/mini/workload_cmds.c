/* mini: workload commands on the host API (http.c over vsock port 80):
 * metadata, produce, consume, queue-send, queue-receive-delete, http.
 * Output lines are a contract (images/README.md). */
#include "http.h"
#include "vsock.h"

#define ID_MAX 128
#define KEY_MAX 128
#define BATCH_MAX 500
#define REC_ROOM 2048     /* more than one record can take (key escaped twice) */
#define POLL_MAX 100
#define HANDLES_MAX (32u * 1024)

struct meta {
	char id[ID_MAX];
	u32 id_len;
	char name[KEY_MAX];
	u32 name_len;
	u64 now_ms;
	u64 at_ns; /* clock_ns() when the answer came */
};

static char path[HTTP_PATH_MAX + 1];
static char text[CMDLINE_MAX];
static char handles[HANDLES_MAX] NOINIT;

static int num(const char *s, u64 *v)
{
	if (parse_u64(s, v) < 0) {
		kprintf("error: bad number '%s'\n", s);
		return -1;
	}
	return 0;
}

static int ok(int rc, const struct http_resp *r) { return rc == 0 && r->status >= 200 && r->status < 300; }

/* path = PREFIX + url-encoded SEG + SUFFIX, NUL terminated. */
static int make_path(const char *cmd, const char *prefix, const char *seg, u32 seg_len, const char *suffix)
{
	struct sbuf b = {path, 0, HTTP_PATH_MAX, 0};
	sb_str(&b, prefix);
	sb_url(&b, seg, seg_len);
	sb_str(&b, suffix);
	if (b.over) {
		kprintf("%s: error path too long\n", cmd);
		return -1;
	}
	path[b.n] = 0;
	return 0;
}

/* Words argv[from..] joined by single spaces. */
static void sb_words(struct sbuf *b, int argc, char **argv, int from, int json)
{
	for (int i = from; i < argc; i++) {
		if (i > from)
			sb_put(b, " ", 1);
		if (json)
			sb_json(b, argv[i], (u32)strlen(argv[i]));
		else
			sb_str(b, argv[i]);
	}
}

static u64 fnv1a(const char *s, u32 n)
{
	u64 h = 0xcbf29ce484222325ul;
	for (u32 i = 0; i < n; i++)
		h = (h ^ (u8)s[i]) * 0x100000001b3ul;
	return h;
}

static u64 mix64(u64 z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ul;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebul;
	return z ^ (z >> 31);
}

/* GET /v1/metadata. print: the metadata command's line. */
static int get_meta(const char *cmd, struct meta *m, int print)
{
	struct http_resp r;
	int rc = http_call("GET", "/v1/metadata", NULL, 0, 0, &r);
	if (!ok(rc, &r)) {
		http_print_error(cmd, rc, &r);
		return -1;
	}
	m->at_ns = clock_ns();
	if (print) {
		kputs("metadata: ");
		put_text(r.body, r.len);
		kputs("\n");
		return 0;
	}
	struct jspan body = {r.body, r.len}, v;
	i32 k;
	if (json_get(body, "instance_id", &v) < 0 || (k = json_str(v, m->id, ID_MAX)) < 0 ||
	    json_get(body, "now_ms", &v) < 0 || json_u64(v, &m->now_ms) < 0) {
		kprintf("%s: error bad metadata\n", cmd);
		return -1;
	}
	m->id_len = (u32)k;
	if (json_get(body, "name", &v) == 0 && (k = json_str(v, m->name, KEY_MAX)) > 0) {
		m->name_len = (u32)k;
	} else { /* no usable name: the instance id */
		memcpy(m->name, m->id, m->id_len < KEY_MAX ? m->id_len : KEY_MAX);
		m->name_len = m->id_len < KEY_MAX ? m->id_len : KEY_MAX;
	}
	return 0;
}

/* metadata */
void wl_cmd_metadata(int argc, char **argv)
{
	struct meta m;
	(void)argv;
	if (argc != 1) {
		kputs("error: usage: metadata\n");
		return;
	}
	get_meta("metadata", &m, 1);
}

/* Decimal digits of v, right-aligned to end (at least 20 bytes before
 * it); returns the first. */
static char *dec(char *end, u64 v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

/* Copies a short (at most 24 bytes) string from src, whose buffer has 24
 * readable bytes, with three 8-byte moves; returns the end. */
static inline char *put24(char *p, const char *src, u32 n)
{
	u64 w0, w1, w2;
	__builtin_memcpy(&w0, src, 8);
	__builtin_memcpy(&w1, src + 8, 8);
	__builtin_memcpy(&w2, src + 16, 8);
	__builtin_memcpy(p, &w0, 8);
	__builtin_memcpy(p + 8, &w1, 8);
	__builtin_memcpy(p + 16, &w2, 8);
	return p + n;
}

/* produce: failed after seq <acked>: <reason>[ (after <n> tries)]; reason
 * NULL: http <status>. */
static void produce_failed(i64 acked, const char *reason, int status)
{
	kprintf("produce: failed after seq %ld: ", acked);
	if (reason)
		kputs(reason);
	else
		kprintf("http %d", status);
	if (http_tries > 1)
		kprintf(" (after %u tries)", http_tries);
	kputs("\n");
}

/* Sends one batch of produce: POST, checks the answer, prints the acked
 * line. Returns 0, or -1 after printing the failure. */
static int produce_send(const char *body, u32 len, u64 first, u64 last, i64 acked)
{
	struct http_resp r;
	int rc = http_call("POST", path, body, len, 0, &r);
	if (!ok(rc, &r)) {
		if (rc == 0)
			http_print_error("produce", rc, &r);
		produce_failed(acked, rc == 0 ? NULL : http_strerror(rc), r.status);
		return -1;
	}
	/* The first element gives partition and offset, the last one the last
	 * offset. Scanning every element costs about as much as building the
	 * records (each byte is a dozen emulated instructions), so the last
	 * one is found from the end: the last "offset": key of the body (a
	 * string cannot hold those bytes unescaped, and nothing after the
	 * array has that key). When that is not there: every element. */
	struct jspan offs, e, e0 = {NULL, 0}, e1 = {NULL, 0}, v;
	u64 part, off0, off1;
	u32 pos = 0;
	int k, bad = json_find((struct jspan){r.body, r.len}, "offsets", &offs) < 0 ||
		     json_next(offs, &pos, &e0) != 1;
	if (!bad) {
		const char *lo = e0.p + e0.n, *q = offs.p + offs.n - 9;
		while (q >= lo && (q[0] != '"' || memcmp(q, "\"offset\":", 9) != 0))
			q--;
		if (q >= lo) {
			e1.p = q + 9;
			e1.n = (u32)(offs.p + offs.n - e1.p);
			u32 d = 0;
			while (d < e1.n && e1.p[d] == ' ')
				d++;
			e1.p += d;
			e1.n -= d;
			d = 0;
			while (d < e1.n && e1.p[d] >= '0' && e1.p[d] <= '9')
				d++;
			e1.n = d;
		} else {
			e1 = e0;
			while ((k = json_next(offs, &pos, &e)) != 0) {
				if (k < 0) {
					bad = 1;
					break;
				}
				e1 = e;
			}
			if (!bad && json_get(e1, "offset", &e1) < 0)
				bad = 1;
		}
	}
	if (bad || json_get(e0, "partition", &v) < 0 || json_u64(v, &part) < 0 ||
	    json_get(e0, "offset", &v) < 0 || json_u64(v, &off0) < 0 || json_u64(e1, &off1) < 0) {
		produce_failed(acked, "bad response", 0);
		return -1;
	}
	kprintf("produce: acked %lu..%lu partition=%lu offsets=%lu..%lu\n", first, last, part, off0, off1);
	return 0;
}

/* produce TOPIC COUNT [KEY [INTERVAL-MS [BATCH]]]
 *
 * Records are written straight into the request body with word-sized
 * moves (this is the hot loop: every guest instruction is emulated): the
 * constant start of a record is prepared once, seq is a decimal counter,
 * ts is formatted only when it changed, temp comes from a table. */
void wl_cmd_produce(int argc, char **argv)
{
	u64 count, interval = 0, batch = 10;
	if (argc < 3 || argc > 6) {
		kputs("error: usage: produce TOPIC COUNT [KEY [INTERVAL-MS [BATCH]]]\n");
		return;
	}
	if (num(argv[2], &count) < 0 || (argc > 4 && num(argv[4], &interval) < 0) ||
	    (argc > 5 && num(argv[5], &batch) < 0))
		return;
	if (batch == 0 || batch > BATCH_MAX) {
		kprintf("error: produce: BATCH must be 1..%u\n", BATCH_MAX);
		return;
	}
	if (interval > 86400000) {
		kputs("error: produce: INTERVAL-MS at most 86400000\n");
		return;
	}
	if (argc > 3 && strlen(argv[3]) > KEY_MAX) {
		kprintf("error: produce: KEY at most %u bytes\n", KEY_MAX);
		return;
	}
	if (make_path("produce", "/v1/topics/", argv[1], (u32)strlen(argv[1]), "/records") < 0)
		return;
	struct meta m;
	if (get_meta("produce", &m, 0) < 0)
		return;
	const char *key = argc > 3 ? argv[3] : m.name;
	u32 key_len = argc > 3 ? (u32)strlen(argv[3]) : m.name_len;
	/* A new producer for every produce command: the instance, the host's
	 * time (a reboot) and the guest's clock (two commands in one boot). */
	u64 pid = mix64(fnv1a(m.id, m.id_len) ^ mix64(m.now_ms ^ mix64(m.at_ns))) & 0x7ffffffffffffffful;
	if (!pid)
		pid = 1;
	u64 rng = fnv1a(key, key_len) | 1;

	/* {"key":"K","value":{"sensor":"K","seq": */
	static char recp[REC_ROOM];
	struct sbuf rp = {recp, 0, sizeof(recp) - 8, 0};
	sb_str(&rp, "{\"key\":\"");
	sb_json(&rp, key, key_len);
	sb_str(&rp, "\",\"value\":{\"sensor\":\"");
	sb_json(&rp, key, key_len);
	sb_str(&rp, "\",\"seq\":");
	/* temp t (tenths, 150..299) -> "dd.d}}," in temps[t - 150] */
	static u64 temps[150];
	for (u32 t = 0; t < 150; t++) {
		u32 x = t + 150;
		char c[8] = {(char)('0' + x / 100), (char)('0' + x / 10 % 10), '.', (char)('0' + x % 10), '}', '}',
			     ',', 0};
		__builtin_memcpy(&temps[t], c, 8);
	}
	u64 ts_key, ts_cmd;
	__builtin_memcpy(&ts_key, ",\"ts\":\0\0", 8);
	__builtin_memcpy(&ts_cmd, ",\"temp\":", 8);
	char seqd[48], tsd[48];
	char *seq_end = seqd + 24, *seq_p = seq_end - 1;
	*seq_p = '0';
	char *ts_p = tsd + 24;
	u32 ts_n = 0;
	u64 ts_last = ~0ul;

	char *body = http_body_buf();
	char *lim = body + HTTP_BODY_MAX - REC_ROOM, *p = body;
	u64 t0 = clock_ns(), seq = 0, first = 0, inb = 0;
	i64 acked = -1;
	for (u64 i = 0; i < count; i++) {
		if (!inb) {
			struct sbuf b = {body, 0, HTTP_BODY_MAX, 0};
			sb_str(&b, "{\"producer_id\":");
			sb_u64(&b, pid);
			sb_str(&b, ",\"sequence\":");
			sb_u64(&b, seq);
			sb_str(&b, ",\"records\":[");
			p = body + b.n;
			first = i;
		}
		u64 now = clock_ns();
		if (interval) {
			u64 due = t0 + i * interval * 1000000ul;
			/* delay_us spins on mini and sleeps (nanosleep) in the
			 * linux image's build of these commands. */
			if (now < due)
				delay_us((due - now) / 1000);
			while ((now = clock_ns()) < due)
				cpu_relax();
		}
		u64 ts = m.now_ms + (now - m.at_ns) / 1000000;
		if (ts != ts_last) {
			ts_last = ts;
			ts_p = dec(tsd + 24, ts);
			ts_n = (u32)(tsd + 24 - ts_p);
		}
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		for (u32 w = 0; w < rp.n; w += 8) /* whole words: may write past, never past lim + REC_ROOM */
			__builtin_memcpy(p + w, recp + w, 8);
		p = put24(p + rp.n, seq_p, (u32)(seq_end - seq_p));
		__builtin_memcpy(p, &ts_key, 8);
		p = put24(p + 6, ts_p, ts_n);
		__builtin_memcpy(p, &ts_cmd, 8);
		__builtin_memcpy(p + 8, &temps[(rng >> 11) % 150], 8);
		p += 15;
		inb++;
		/* next seq, as a decimal counter */
		char *d = seq_end - 1;
		while (d >= seq_p && *d == '9')
			*d-- = '0';
		if (d < seq_p)
			*(seq_p = d) = '1';
		else
			(*d)++;
		if (inb < batch && i + 1 < count && p < lim)
			continue;
		p[-1] = ']'; /* over the last record's ',' */
		*p++ = '}';
		if (produce_send(body, (u32)(p - body), first, i, acked) < 0)
			return;
		acked = (i64)i;
		seq++;
		inb = 0;
	}
	kprintf("produce: done %lu records in %lu ms\n", count, (clock_ns() - t0) / 1000000);
}

/* consume TOPIC GROUP MAX [WAIT-MS] */
void wl_cmd_consume(int argc, char **argv)
{
	u64 max, wait = 3000;
	if (argc < 4 || argc > 5) {
		kputs("error: usage: consume TOPIC GROUP MAX [WAIT-MS]\n");
		return;
	}
	if (num(argv[3], &max) < 0 || (argc > 4 && num(argv[4], &wait) < 0))
		return;
	if (wait > 600000) {
		kputs("error: consume: WAIT-MS at most 600000\n");
		return;
	}
	struct meta m;
	if (get_meta("consume", &m, 0) < 0)
		return;
	const char *group = argv[2];
	u32 glen = (u32)strlen(group);
	u64 n = 0;
	char *body = http_body_buf();
	struct http_resp r;
	while (n < max) {
		u64 want = max - n < POLL_MAX ? max - n : POLL_MAX;
		struct sbuf b = {body, 0, HTTP_BODY_MAX, 0};
		sb_str(&b, "{\"member_id\":\"");
		sb_json(&b, m.id, m.id_len);
		sb_str(&b, "\",\"topics\":[\"");
		sb_json(&b, argv[1], (u32)strlen(argv[1]));
		sb_str(&b, "\"],\"max_records\":");
		sb_u64(&b, want);
		sb_str(&b, ",\"wait_ms\":");
		sb_u64(&b, wait);
		sb_str(&b, "}");
		if (make_path("consume", "/v1/groups/", group, glen, "/poll") < 0)
			return;
		int rc = http_call("POST", path, body, b.n, wait, &r);
		if (!ok(rc, &r)) {
			http_print_error("consume", rc, &r);
			return;
		}
		struct jspan recs, e, v;
		u32 pos = 0, got = 0;
		if (json_get((struct jspan){r.body, r.len}, "records", &recs) < 0) {
			kputs("consume: error bad response\n");
			return;
		}
		for (;;) {
			int k = json_next(recs, &pos, &e);
			if (k < 0) {
				kputs("consume: error bad response\n");
				return;
			}
			if (!k)
				break;
			u64 part = 0, off = 0;
			if (json_get(e, "partition", &v) < 0 || json_u64(v, &part) < 0 ||
			    json_get(e, "offset", &v) < 0 || json_u64(v, &off) < 0) {
				kputs("consume: error bad response\n");
				return;
			}
			kprintf("record %lu@%lu key=", part, off);
			if (json_get(e, "key", &v) < 0 || json_is_null(v))
				kputs("-");
			else
				put_json_str(v);
			kputs(" value=");
			if (json_get(e, "value", &v) < 0)
				kputs("null");
			else
				put_text(v.p, v.n);
			kputs("\n");
			got++;
		}
		n += got;
		if (!got)
			break;
	}
	struct sbuf b = {body, 0, HTTP_BODY_MAX, 0};
	sb_str(&b, "{\"member_id\":\"");
	sb_json(&b, m.id, m.id_len);
	sb_str(&b, "\"}");
	if (make_path("consume", "/v1/groups/", group, glen, "/leave") < 0)
		return;
	int rc = http_call("POST", path, body, b.n, 0, &r);
	if (!ok(rc, &r)) {
		http_print_error("consume", rc, &r);
		return;
	}
	kprintf("consume: done %lu records\n", n);
}

/* queue-send QUEUE TEXT... */
void wl_cmd_queue_send(int argc, char **argv)
{
	if (argc < 2) {
		kputs("error: usage: queue-send QUEUE TEXT...\n");
		return;
	}
	if (make_path("queue-send", "/v1/queues/", argv[1], (u32)strlen(argv[1]), "/messages") < 0)
		return;
	char *body = http_body_buf();
	struct sbuf b = {body, 0, HTTP_BODY_MAX, 0};
	sb_str(&b, "{\"body\":\"");
	sb_words(&b, argc, argv, 2, 1);
	sb_str(&b, "\"}");
	struct http_resp r;
	int rc = http_call("POST", path, body, b.n, 0, &r);
	if (!ok(rc, &r)) {
		http_print_error("queue-send", rc, &r);
		return;
	}
	struct jspan ids, id;
	u32 pos = 0;
	if (json_get((struct jspan){r.body, r.len}, "message_ids", &ids) < 0 || json_next(ids, &pos, &id) != 1) {
		kputs("queue-send: error bad response\n");
		return;
	}
	kputs("queue-send: ");
	put_json_str(id);
	kputs("\n");
}

/* queue-receive-delete QUEUE [MAX [WAIT-MS]] */
void wl_cmd_queue_receive_delete(int argc, char **argv)
{
	u64 max = 10, wait = 1000;
	if (argc < 2 || argc > 4) {
		kputs("error: usage: queue-receive-delete QUEUE [MAX [WAIT-MS]]\n");
		return;
	}
	if ((argc > 2 && num(argv[2], &max) < 0) || (argc > 3 && num(argv[3], &wait) < 0))
		return;
	if (wait > 600000) {
		kputs("error: queue-receive-delete: WAIT-MS at most 600000\n");
		return;
	}
	const char *q = argv[1];
	u32 qlen = (u32)strlen(q);
	if (make_path("queue-receive-delete", "/v1/queues/", q, qlen, "/receive") < 0)
		return;
	char *body = http_body_buf();
	struct sbuf b = {body, 0, HTTP_BODY_MAX, 0};
	sb_str(&b, "{\"max\":");
	sb_u64(&b, max);
	sb_str(&b, ",\"wait_ms\":");
	sb_u64(&b, wait);
	sb_str(&b, "}");
	struct http_resp r;
	int rc = http_call("POST", path, body, b.n, wait, &r);
	if (!ok(rc, &r)) {
		http_print_error("queue-receive-delete", rc, &r);
		return;
	}
	/* Print every message and keep its receipt handle (the deletes reuse
	 * the response buffer). */
	struct jspan msgs, e, v;
	u32 pos = 0, n = 0, hn = 0;
	if (json_get((struct jspan){r.body, r.len}, "messages", &msgs) < 0) {
		kputs("queue-receive-delete: error bad response\n");
		return;
	}
	for (;;) {
		int k = json_next(msgs, &pos, &e);
		if (!k)
			break;
		i32 hl;
		if (k < 0 || json_get(e, "receipt_handle", &v) < 0 || (hl = json_str(v, NULL, 0)) < 0) {
			kputs("queue-receive-delete: error bad response\n");
			return;
		}
		if ((u32)hl + 2 > HANDLES_MAX - hn || hl > 1024) {
			kputs("queue-receive-delete: error receipt handle too long\n");
			return;
		}
		handles[hn] = (char)(hl >> 8);
		handles[hn + 1] = (char)hl;
		json_str(v, handles + hn + 2, (u32)hl);
		hn += 2 + (u32)hl;
		kputs("message ");
		if (json_get(e, "message_id", &v) == 0)
			put_json_str(v);
		else
			kputs("-");
		kputs(" ");
		if (json_get(e, "body", &v) == 0)
			put_json_str(v);
		kputs("\n");
		n++;
	}
	for (u32 h = 0; h < hn;) {
		u32 hl = ((u32)(u8)handles[h] << 8) | (u8)handles[h + 1];
		struct sbuf pb = {path, 0, HTTP_PATH_MAX, 0};
		sb_str(&pb, "/v1/queues/");
		sb_url(&pb, q, qlen);
		sb_str(&pb, "/messages/");
		sb_url(&pb, handles + h + 2, hl);
		if (pb.over) {
			kputs("queue-receive-delete: error path too long\n");
			return;
		}
		path[pb.n] = 0;
		h += 2 + hl;
		rc = http_call("DELETE", path, NULL, 0, 0, &r);
		if (!ok(rc, &r)) {
			http_print_error("queue-receive-delete", rc, &r);
			return;
		}
	}
	kprintf("queue-receive-delete: %u messages\n", n);
}

/* http METHOD PATH [BODY...]: one request, no retries (but the reconnect
 * of a kept-alive connection the server had closed). */
void wl_cmd_http(int argc, char **argv)
{
	if (argc < 3) {
		kputs("error: usage: http METHOD PATH [BODY...]\n");
		return;
	}
	if (strlen(argv[2]) > HTTP_PATH_MAX || strlen(argv[1]) > 32) {
		kputs("http: error request too large\n");
		return;
	}
	struct sbuf b = {text, 0, sizeof(text), 0};
	sb_words(&b, argc, argv, 3, 0);
	if (b.over) {
		kputs("http: error request too large\n");
		return;
	}
	struct http_resp r;
	int rc = http_request(argv[1], argv[2], text, b.n, 0, &r);
	if (rc < 0) {
		kprintf("http: error %s\n", http_strerror(rc));
		return;
	}
	kprintf("http: %d ", r.status);
	put_text(r.body, r.len);
	kputs("\n");
}
