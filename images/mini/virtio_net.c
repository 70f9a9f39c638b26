/* mini: virtio-net driver (device ID 1), just enough to prove frames flow
 * both ways: the shell's net-serve answers ARP requests and ICMP echo
 * requests for an IPv4 address. Features: VERSION_1 and MAC only, so each
 * buffer is a 12-byte virtio-net header and a whole Ethernet frame.
 * Polled like vsock: interrupts suppressed, the interrupt status never
 * read. One device (the first) is used. */
#include "virtio.h"

#define VIRTIO_NET_F_MAC (1ul << 5)
#define NET_HDR 12
#define RX_BUF 2048
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct net_dev {
	struct virtq_mem rxq_mem; /* page aligned, first */
	struct virtq_mem txq_mem;
	struct virtio_dev *dev;
	struct virtq rxq, txq;
	u8 mac[6];
};

static struct net_dev nd NOINIT;
static u8 net_rx[VIRTQ_MAX][RX_BUF] NOINIT ALIGNED(4096);
static u8 net_tx[RX_BUF] NOINIT ALIGNED(64);
static int net_present;

static void notify(struct virtq *q) { mmio_write32(nd.dev->base + 0x050, q->index); }

static void rx_post(u16 id)
{
	struct virtq_mem *m = nd.rxq.mem;
	m->desc[id].addr = (u64)net_rx[id];
	m->desc[id].len = RX_BUF;
	m->desc[id].flags = VIRTQ_DESC_F_WRITE;
	m->desc[id].next = 0;
	m->avail.ring[nd.rxq.avail_idx % nd.rxq.num] = id;
	barrier();
	nd.rxq.avail_idx++;
	*(volatile u16 *)&m->avail.idx = nd.rxq.avail_idx;
}

int virtio_net_probe(struct virtio_dev *d)
{
	if (net_present) {
		kprintf("virtio-mmio@0x%lx: only one network device is used\n", d->base);
		return -1;
	}
	nd.dev = d;
	if (virtio_begin(d, VIRTIO_NET_F_MAC) < 0)
		return -1;
	for (int i = 0; i < 6; i++)
		nd.mac[i] = mmio_read8(d->base + 0x100 + (u64)i);
	if (virtio_queue_setup(d, &nd.rxq, 0, &nd.rxq_mem) < 0 ||
	    virtio_queue_setup(d, &nd.txq, 1, &nd.txq_mem) < 0)
		return -1;
	nd.rxq_mem.avail.flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	nd.txq_mem.avail.flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	virtio_driver_ok(d);
	for (u16 i = 0; i < nd.rxq.num; i++)
		rx_post(i);
	mb();
	notify(&nd.rxq);
	net_present = 1;
	kprintf("net0: mac=%02x:%02x:%02x:%02x:%02x:%02x\n", nd.mac[0], nd.mac[1], nd.mac[2], nd.mac[3],
		nd.mac[4], nd.mac[5]);
	return 0;
}

static int net_send(u32 len)
{
	struct virtq_mem *m = nd.txq.mem;
	m->desc[0].addr = (u64)net_tx;
	m->desc[0].len = NET_HDR + len;
	m->desc[0].flags = 0;
	m->desc[0].next = 0;
	m->avail.ring[nd.txq.avail_idx % nd.txq.num] = 0;
	barrier();
	nd.txq.avail_idx++;
	*(volatile u16 *)&m->avail.idx = nd.txq.avail_idx;
	mb();
	notify(&nd.txq);
	for (u32 spins = 0; *(volatile u16 *)&m->used.idx == nd.txq.last_used; spins++) {
		if (spins > 50000000)
			return -1;
		cpu_relax();
	}
	nd.txq.last_used++;
	return 0;
}

static u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }

static u16 csum(const u8 *p, u32 n)
{
	u32 s = 0;
	for (u32 i = 0; i + 1 < n; i += 2)
		s += be16(p + i);
	if (n & 1)
		s += (u32)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (u16)~s;
}

/* Answers one frame if it is an ARP request or ICMP echo request for ip;
 * returns 1 (ARP) or 2 (ICMP) when it answered. */
static int answer(const u8 *f, u32 len, const u8 ip[4])
{
	u8 *o = net_tx + NET_HDR;
	memset(net_tx, 0, NET_HDR);
	if (len >= 42 && be16(f + 12) == 0x0806 && be16(f + 14) == 1 && be16(f + 16) == 0x0800 &&
	    be16(f + 20) == 1 && memcmp(f + 38, ip, 4) == 0) {
		memcpy(o, f + 6, 6);       /* to the asker */
		memcpy(o + 6, nd.mac, 6);  /* from us */
		memcpy(o + 12, f + 12, 8); /* ARP, Ethernet/IPv4, sizes */
		o[20] = 0, o[21] = 2;      /* reply */
		memcpy(o + 22, nd.mac, 6); /* sender: us */
		memcpy(o + 28, ip, 4);
		memcpy(o + 32, f + 22, 10); /* target: the asker's MAC and IP */
		return net_send(42) == 0 ? 1 : 0;
	}
	if (len < 34 || be16(f + 12) != 0x0800 || (f[14] >> 4) != 4)
		return 0;
	u32 ihl = (u32)(f[14] & 15) * 4, total = be16(f + 16);
	if (ihl < 20 || total < ihl + 8 || 14 + total > len || total > 1500 || f[23] != 1 ||
	    memcmp(f + 30, ip, 4) != 0 || f[14 + ihl] != 8)
		return 0;
	memcpy(o, f + 6, 6);
	memcpy(o + 6, nd.mac, 6);
	memcpy(o + 12, f + 12, 2 + total);
	memcpy(o + 14 + 12, f + 14 + 16, 4); /* src = their dst (us) */
	memcpy(o + 14 + 16, f + 14 + 12, 4); /* dst = their src */
	o[14 + 10] = o[14 + 11] = 0;
	u16 ipc = csum(o + 14, ihl);
	o[14 + 10] = (u8)(ipc >> 8), o[14 + 11] = (u8)ipc;
	u8 *icmp = o + 14 + ihl;
	icmp[0] = 0; /* echo reply */
	icmp[2] = icmp[3] = 0;
	u16 c = csum(icmp, total - ihl);
	icmp[2] = (u8)(c >> 8), icmp[3] = (u8)c;
	return net_send(14 + total) == 0 ? 2 : 0;
}

static int parse_ip(const char *s, u8 ip[4])
{
	for (int i = 0; i < 4; i++) {
		u64 v;
		if (parse_u64_prefix(&s, &v, 10) < 0 || v > 255)
			return -1;
		ip[i] = (u8)v;
		if (i < 3 && *s++ != '.')
			return -1;
	}
	return *s ? -1 : 0;
}

/* net-serve IP SECONDS */
void net_cmd_serve(int argc, char **argv)
{
	u8 ip[4];
	u64 secs;
	if (argc != 3) {
		kputs("error: usage: net-serve IP SECONDS\n");
		return;
	}
	if (parse_ip(argv[1], ip) < 0) {
		kprintf("error: bad IPv4 address '%s'\n", argv[1]);
		return;
	}
	if (parse_u64(argv[2], &secs) < 0 || secs > 86400) {
		kprintf("error: bad number '%s'\n", argv[2]);
		return;
	}
	if (!net_present) {
		kputs("net-serve: error no network device\n");
		return;
	}
	u64 arp = 0, icmp = 0, frames = 0, end = clock_ns() + secs * 1000000000ul;
	struct virtq_mem *m = nd.rxq.mem;
	for (u32 spins = 0;; spins++) {
		if (*(volatile u16 *)&m->used.idx != nd.rxq.last_used) {
			barrier();
			struct virtq_used_elem *e = &m->used.ring[nd.rxq.last_used % nd.rxq.num];
			u16 id = (u16)e->id;
			u32 len = e->len;
			nd.rxq.last_used++;
			if (id < VIRTQ_MAX && len > NET_HDR) {
				frames++;
				int r = answer(net_rx[id] + NET_HDR, len - NET_HDR, ip);
				arp += r == 1;
				icmp += r == 2;
			}
			if (id < VIRTQ_MAX)
				rx_post(id);
			mb();
			notify(&nd.rxq);
			continue;
		}
		if (spins % 1024 == 0 && clock_ns() > end)
			break;
		cpu_relax();
	}
	kprintf("net-serve: ip=%s frames=%lu arp=%lu icmp=%lu\n", argv[1], frames, arp, icmp);
}
