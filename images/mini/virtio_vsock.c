/* mini: virtio-vsock driver (device ID 19), stream sockets, polled.
 *
 * Queues: rx (0) holds RX_BUFS buffers of RX_BUF_SIZE bytes (header and
 * payload in one descriptor), re-posted as soon as a packet is handled;
 * tx (1) sends one packet at a time (header descriptor + payload
 * descriptor) and waits for the device to use it; event (2) is set up and
 * never used. Interrupts are suppressed (VIRTQ_AVAIL_F_NO_INTERRUPT) and
 * the IOAPIC pin stays masked: everything is polling, and the interrupt
 * status register is never read (no MMIO read exits on the hot path).
 *
 * Received payload is handed to the connection's consumer in place
 * (vsock_poll -> on_data), so there is no guest-side receive buffer: the
 * credit a connection advertises (buf_alloc) is what its consumer can
 * take, and fwd_cnt advances when the consumer says it consumed. */
#include "virtio.h"
#include "vsock.h"

#define RX_BUFS VIRTQ_MAX
#define RX_BUF_SIZE 8192
#define TX_TIMEOUT_NS 5000000000ul
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct vsock_dev {
	struct virtq_mem rxq_mem; /* page aligned, first */
	struct virtq_mem txq_mem;
	struct virtq_mem evq_mem;
	struct virtio_dev *dev;
	struct virtq rxq, txq, evq;
	u64 cid;
	struct vsock_hdr tx_hdr ALIGNED(64);
	u8 ev_bufs[4][8];
};

static struct vsock_dev vs NOINIT;
static u8 rx_bufs[RX_BUFS][RX_BUF_SIZE] NOINIT ALIGNED(4096);
static int present;
static u32 next_local_port = 49152;
struct vsock_conn vsock_conns[VSOCK_MAX_CONNS];
static u32 listening[4];

int vsock_present(void) { return present; }
u64 vsock_cid(void) { return present ? vs.cid : 0; }

static void notify(struct virtq *q) { mmio_write32(vs.dev->base + 0x050, q->index); }

static void rx_post(u16 id)
{
	struct virtq_mem *m = vs.rxq.mem;
	m->desc[id].addr = (u64)rx_bufs[id];
	m->desc[id].len = RX_BUF_SIZE;
	m->desc[id].flags = VIRTQ_DESC_F_WRITE;
	m->desc[id].next = 0;
	m->avail.ring[vs.rxq.avail_idx % vs.rxq.num] = id;
	barrier();
	vs.rxq.avail_idx++;
	*(volatile u16 *)&m->avail.idx = vs.rxq.avail_idx;
}

int virtio_vsock_probe(struct virtio_dev *d)
{
	if (present) {
		virtio_fail(d, "only one vsock device is supported");
		return -1;
	}
	vs.dev = d;
	if (virtio_begin(d, 0) < 0)
		return -1;
	vs.cid = virtio_config_read64(d, 0);
	if (virtio_queue_setup(d, &vs.rxq, 0, &vs.rxq_mem) < 0 ||
	    virtio_queue_setup(d, &vs.txq, 1, &vs.txq_mem) < 0 ||
	    virtio_queue_setup(d, &vs.evq, 2, &vs.evq_mem) < 0)
		return -1;
	vs.rxq_mem.avail.flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	vs.txq_mem.avail.flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	vs.evq_mem.avail.flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	virtio_driver_ok(d);
	for (u16 i = 0; i < vs.rxq.num; i++)
		rx_post(i);
	for (u16 i = 0; i < 4 && i < vs.evq.num; i++) {
		struct virtq_mem *m = vs.evq.mem;
		m->desc[i].addr = (u64)vs.ev_bufs[i];
		m->desc[i].len = 8;
		m->desc[i].flags = VIRTQ_DESC_F_WRITE;
		m->avail.ring[i] = i;
		vs.evq.avail_idx++;
	}
	*(volatile u16 *)&vs.evq_mem.avail.idx = vs.evq.avail_idx;
	mb();
	notify(&vs.rxq);
	notify(&vs.evq);
	memset(vsock_conns, 0, sizeof(vsock_conns));
	memset(listening, 0, sizeof(listening));
	present = 1;
	kprintf("vsock: cid=%lu\n", vs.cid);
	return 0;
}

/* Send one packet; waits until the device took it. */
static int tx_packet(const struct vsock_hdr *h, const void *payload, u32 len)
{
	if (!present || vs.dev->broken)
		return -1;
	struct virtq_mem *m = vs.txq.mem;
	vs.tx_hdr = *h;
	vs.tx_hdr.len = len;
	m->desc[0].addr = (u64)&vs.tx_hdr;
	m->desc[0].len = sizeof(vs.tx_hdr);
	m->desc[0].flags = len ? VIRTQ_DESC_F_NEXT : 0;
	m->desc[0].next = 1;
	if (len) {
		m->desc[1].addr = (u64)payload;
		m->desc[1].len = len;
		m->desc[1].flags = 0;
		m->desc[1].next = 0;
	}
	m->avail.ring[vs.txq.avail_idx % vs.txq.num] = 0;
	barrier();
	vs.txq.avail_idx++;
	*(volatile u16 *)&m->avail.idx = vs.txq.avail_idx;
	mb();
	notify(&vs.txq);
	u64 end = 0;
	u32 spins = 0;
	while (*(volatile u16 *)&m->used.idx == vs.txq.last_used) {
		/* Reading the clock costs tens of microseconds under emulation:
		 * only now and then. */
		if (++spins % 256 == 0) {
			u64 now = clock_ns();
			if (!end)
				end = now + TX_TIMEOUT_NS;
			else if (now > end) {
				virtio_fail(vs.dev, "vsock tx timed out");
				return -1;
			}
		}
		cpu_relax();
	}
	vs.txq.last_used++;
	return 0;
}

static void fill_hdr(struct vsock_hdr *h, const struct vsock_conn *c, u16 op)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = vs.cid;
	h->dst_cid = VSOCK_HOST_CID;
	h->src_port = c->local_port;
	h->dst_port = c->peer_port;
	h->type = VSOCK_TYPE_STREAM;
	h->op = op;
	h->buf_alloc = c->buf_alloc;
	h->fwd_cnt = c->fwd_cnt;
}

static int send_ctrl(struct vsock_conn *c, u16 op, u32 flags)
{
	struct vsock_hdr h;
	fill_hdr(&h, c, op);
	h.flags = flags;
	c->fwd_reported = c->fwd_cnt;
	return tx_packet(&h, NULL, 0);
}

static void send_rst_for(const struct vsock_hdr *in)
{
	struct vsock_hdr h;
	memset(&h, 0, sizeof(h));
	h.src_cid = vs.cid;
	h.dst_cid = in->src_cid;
	h.src_port = in->dst_port;
	h.dst_port = in->src_port;
	h.type = VSOCK_TYPE_STREAM;
	h.op = VSOCK_OP_RST;
	tx_packet(&h, NULL, 0);
}

static struct vsock_conn *find(u32 local, u32 peer)
{
	for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &vsock_conns[i];
		if (c->state != VS_FREE && c->local_port == local && c->peer_port == peer)
			return c;
	}
	return NULL;
}

static struct vsock_conn *alloc_conn(void)
{
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vsock_conns[i].state == VS_FREE) {
			memset(&vsock_conns[i], 0, sizeof(vsock_conns[i]));
			return &vsock_conns[i];
		}
	return NULL;
}

int vsock_listen(u32 port)
{
	for (u32 i = 0; i < ARRAY_SIZE(listening); i++)
		if (!listening[i]) {
			listening[i] = port;
			return 0;
		}
	return -1;
}

void vsock_unlisten(u32 port)
{
	for (u32 i = 0; i < ARRAY_SIZE(listening); i++)
		if (listening[i] == port)
			listening[i] = 0;
}

static int is_listening(u32 port)
{
	for (u32 i = 0; i < ARRAY_SIZE(listening); i++)
		if (listening[i] && listening[i] == port)
			return 1;
	return 0;
}

/* Handle one received packet. */
static void rx_packet(struct vsock_hdr *h, u8 *payload, u32 avail)
{
	if (h->dst_cid != vs.cid || h->type != VSOCK_TYPE_STREAM)
		return;
	struct vsock_conn *c = find(h->dst_port, h->src_port);
	if (!c) {
		if (h->op == VSOCK_OP_REQUEST && is_listening(h->dst_port)) {
			c = alloc_conn();
			if (!c) {
				send_rst_for(h);
				return;
			}
			c->local_port = h->dst_port;
			c->peer_port = h->src_port;
			c->state = VS_ESTABLISHED;
			c->accepted = 1;
			/* No window until a command claims it (vsock_set_window):
			 * the host holds its data until then. */
			c->buf_alloc = 0;
			c->peer_buf_alloc = h->buf_alloc;
			c->peer_fwd_cnt = h->fwd_cnt;
			send_ctrl(c, VSOCK_OP_RESPONSE, 0);
		} else if (h->op != VSOCK_OP_RST) {
			send_rst_for(h);
		}
		return;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case VSOCK_OP_RESPONSE:
		if (c->state == VS_CONNECTING)
			c->state = VS_ESTABLISHED;
		break;
	case VSOCK_OP_RST:
		c->state = VS_CLOSED;
		c->reset = 1;
		break;
	case VSOCK_OP_SHUTDOWN:
		c->peer_shutdown |= h->flags;
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		send_ctrl(c, VSOCK_OP_CREDIT_UPDATE, 0);
		break;
	case VSOCK_OP_RW: {
		u32 len = h->len;
		if (len > avail)
			len = avail;
		c->rx_total += len;
		if (c->on_data && len)
			c->on_data(c, payload, len);
		else
			vsock_consumed(c, len);
		break;
	}
	default:
		break;
	}
}

void vsock_set_window(struct vsock_conn *c, u32 buf_alloc)
{
	c->buf_alloc = buf_alloc;
	if (c->state == VS_ESTABLISHED)
		send_ctrl(c, VSOCK_OP_CREDIT_UPDATE, 0);
}

void vsock_consumed(struct vsock_conn *c, u32 n)
{
	c->fwd_cnt += n;
	/* Tell the host about freed room once half the window came back. */
	if (c->state == VS_ESTABLISHED && c->fwd_cnt - c->fwd_reported >= c->buf_alloc / 2)
		send_ctrl(c, VSOCK_OP_CREDIT_UPDATE, 0);
}

int vsock_poll(void)
{
	if (!present)
		return 0;
	struct virtq_mem *m = vs.rxq.mem;
	int handled = 0;
	while (*(volatile u16 *)&m->used.idx != vs.rxq.last_used) {
		barrier();
		struct virtq_used_elem *e = &m->used.ring[vs.rxq.last_used % vs.rxq.num];
		u16 id = (u16)e->id;
		u32 len = e->len;
		vs.rxq.last_used++;
		if (id < RX_BUFS && len >= sizeof(struct vsock_hdr)) {
			struct vsock_hdr *h = (struct vsock_hdr *)rx_bufs[id];
			rx_packet(h, rx_bufs[id] + sizeof(*h), len - (u32)sizeof(*h));
		}
		if (id < RX_BUFS)
			rx_post(id);
		handled++;
	}
	if (handled) {
		mb();
		notify(&vs.rxq);
	}
	return handled;
}

u32 vsock_credit(const struct vsock_conn *c)
{
	u32 in_flight = c->tx_total - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

struct vsock_conn *vsock_connect(u32 port, u64 timeout_ns)
{
	if (!present)
		return NULL;
	struct vsock_conn *c = alloc_conn();
	if (!c)
		return NULL;
	c->local_port = next_local_port++;
	if (next_local_port < 49152)
		next_local_port = 49152;
	c->peer_port = port;
	c->state = VS_CONNECTING;
	c->buf_alloc = VSOCK_DEFAULT_BUF_ALLOC;
	if (send_ctrl(c, VSOCK_OP_REQUEST, 0) < 0) {
		c->state = VS_FREE;
		return NULL;
	}
	u64 end = clock_ns() + timeout_ns;
	while (c->state == VS_CONNECTING) {
		if (!vsock_poll()) {
			if (clock_ns() > end)
				break;
			cpu_relax();
		}
	}
	if (c->state != VS_ESTABLISHED) {
		if (c->state == VS_CONNECTING)
			send_ctrl(c, VSOCK_OP_RST, 0);
		c->state = VS_FREE;
		return NULL;
	}
	return c;
}

int vsock_send(struct vsock_conn *c, const void *buf, u32 len, u64 timeout_ns)
{
	const u8 *p = buf;
	u64 end = 0;
	while (len) {
		if (c->state != VS_ESTABLISHED || (c->peer_shutdown & VSOCK_SHUTDOWN_RCV))
			return -1;
		u32 credit = vsock_credit(c);
		if (!credit) {
			if (!vsock_poll()) {
				u64 now = clock_ns();
				if (!end)
					end = now + timeout_ns;
				else if (now > end)
					return -1;
				cpu_relax();
			}
			continue;
		}
		end = 0;
		u32 n = len < credit ? len : credit;
		if (n > VSOCK_MAX_PAYLOAD)
			n = VSOCK_MAX_PAYLOAD;
		struct vsock_hdr h;
		fill_hdr(&h, c, VSOCK_OP_RW);
		c->fwd_reported = c->fwd_cnt;
		if (tx_packet(&h, p, n) < 0)
			return -1;
		c->tx_total += n;
		p += n;
		len -= n;
	}
	return 0;
}

int vsock_shutdown(struct vsock_conn *c, u32 flags)
{
	if (c->state != VS_ESTABLISHED)
		return -1;
	return send_ctrl(c, VSOCK_OP_SHUTDOWN, flags);
}

void vsock_close(struct vsock_conn *c, u64 timeout_ns)
{
	if (c->state == VS_ESTABLISHED) {
		send_ctrl(c, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
		/* Wait for the peer's reset, which says it is done with us. */
		u64 end = clock_ns() + timeout_ns;
		while (c->state == VS_ESTABLISHED) {
			if (!vsock_poll()) {
				if (clock_ns() > end) {
					send_ctrl(c, VSOCK_OP_RST, 0);
					break;
				}
				cpu_relax();
			}
		}
	}
	c->state = VS_FREE;
}

void vsock_abort(struct vsock_conn *c)
{
	if (c->state == VS_ESTABLISHED || c->state == VS_CONNECTING)
		send_ctrl(c, VSOCK_OP_RST, 0);
	c->state = VS_FREE;
}
