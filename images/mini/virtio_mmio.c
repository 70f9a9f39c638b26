/* mini: virtio-mmio transport (modern, version 2). Devices come from the
 * command line: virtio_mmio.device=<size>@<base>:<irq>[:<id>]. */
#include "virtio.h"

#define VMMIO_MAGIC 0x000
#define VMMIO_VERSION 0x004
#define VMMIO_DEVICE_ID 0x008
#define VMMIO_DEVICE_FEATURES 0x010
#define VMMIO_DEVICE_FEATURES_SEL 0x014
#define VMMIO_DRIVER_FEATURES 0x020
#define VMMIO_DRIVER_FEATURES_SEL 0x024
#define VMMIO_QUEUE_SEL 0x030
#define VMMIO_QUEUE_NUM_MAX 0x034
#define VMMIO_QUEUE_NUM 0x038
#define VMMIO_QUEUE_READY 0x044
#define VMMIO_QUEUE_NOTIFY 0x050
#define VMMIO_INTERRUPT_STATUS 0x060
#define VMMIO_INTERRUPT_ACK 0x064
#define VMMIO_STATUS 0x070
#define VMMIO_QUEUE_DESC_LOW 0x080
#define VMMIO_QUEUE_DESC_HIGH 0x084
#define VMMIO_QUEUE_DRIVER_LOW 0x090
#define VMMIO_QUEUE_DRIVER_HIGH 0x094
#define VMMIO_QUEUE_DEVICE_LOW 0x0a0
#define VMMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VMMIO_CONFIG_GENERATION 0x0fc
#define VMMIO_CONFIG 0x100

static const struct virtio_driver drivers[] = {
	{2, "virtio-blk", virtio_blk_probe},
	{19, "virtio-vsock", virtio_vsock_probe},
	{1, "virtio-net", virtio_net_probe},
};

static struct virtio_dev devices[VIRTIO_MAX_DEVICES];
static u32 ndevices;

static u32 rd(struct virtio_dev *d, u32 off) { return mmio_read32(d->base + off); }
static void wr(struct virtio_dev *d, u32 off, u32 v) { mmio_write32(d->base + off, v); }

void virtio_fail(struct virtio_dev *d, const char *why)
{
	kprintf("error: virtio-mmio@0x%lx: %s\n", d->base, why);
	wr(d, VMMIO_STATUS, rd(d, VMMIO_STATUS) | VIRTIO_STATUS_FAILED);
	d->broken = 1;
}

/* Reset, ACKNOWLEDGE, DRIVER, negotiate features, FEATURES_OK. */
int virtio_begin(struct virtio_dev *d, u64 wanted)
{
	wr(d, VMMIO_STATUS, 0);
	u64 end = clock_ns() + 100000000; /* 100 ms */
	while (rd(d, VMMIO_STATUS) != 0) {
		if (clock_ns() > end) {
			virtio_fail(d, "reset did not complete");
			return -1;
		}
		cpu_relax();
	}
	wr(d, VMMIO_STATUS, VIRTIO_STATUS_ACK);
	wr(d, VMMIO_STATUS, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER);
	wr(d, VMMIO_DEVICE_FEATURES_SEL, 0);
	u64 feat = rd(d, VMMIO_DEVICE_FEATURES);
	wr(d, VMMIO_DEVICE_FEATURES_SEL, 1);
	feat |= (u64)rd(d, VMMIO_DEVICE_FEATURES) << 32;
	if (!(feat & VIRTIO_F_VERSION_1)) {
		virtio_fail(d, "device does not offer VIRTIO_F_VERSION_1");
		return -1;
	}
	d->features = feat & (wanted | VIRTIO_F_VERSION_1);
	wr(d, VMMIO_DRIVER_FEATURES_SEL, 0);
	wr(d, VMMIO_DRIVER_FEATURES, (u32)d->features);
	wr(d, VMMIO_DRIVER_FEATURES_SEL, 1);
	wr(d, VMMIO_DRIVER_FEATURES, (u32)(d->features >> 32));
	wr(d, VMMIO_STATUS, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	if (!(rd(d, VMMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
		virtio_fail(d, "device refused FEATURES_OK");
		return -1;
	}
	return 0;
}

int virtio_queue_setup(struct virtio_dev *d, struct virtq *q, u16 index, struct virtq_mem *mem)
{
	wr(d, VMMIO_QUEUE_SEL, index);
	if (rd(d, VMMIO_QUEUE_READY) != 0) {
		virtio_fail(d, "queue already ready after reset");
		return -1;
	}
	u32 max = rd(d, VMMIO_QUEUE_NUM_MAX);
	u16 num = VIRTQ_MAX;
	while (num > max)
		num >>= 1; /* split queue sizes are powers of two */
	if (num < 4) {
		virtio_fail(d, "queue too small");
		return -1;
	}
	memset(mem, 0, sizeof(*mem));
	q->mem = mem;
	q->index = index;
	q->num = num;
	q->avail_idx = 0;
	q->last_used = 0;
	u64 desc = (u64)mem->desc, avail = (u64)&mem->avail, used = (u64)&mem->used;
	wr(d, VMMIO_QUEUE_NUM, num);
	wr(d, VMMIO_QUEUE_DESC_LOW, (u32)desc);
	wr(d, VMMIO_QUEUE_DESC_HIGH, (u32)(desc >> 32));
	wr(d, VMMIO_QUEUE_DRIVER_LOW, (u32)avail);
	wr(d, VMMIO_QUEUE_DRIVER_HIGH, (u32)(avail >> 32));
	wr(d, VMMIO_QUEUE_DEVICE_LOW, (u32)used);
	wr(d, VMMIO_QUEUE_DEVICE_HIGH, (u32)(used >> 32));
	wr(d, VMMIO_QUEUE_READY, 1);
	return 0;
}

void virtio_driver_ok(struct virtio_dev *d)
{
	wr(d, VMMIO_STATUS,
	   VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

u32 virtio_config_read32(struct virtio_dev *d, u32 off) { return rd(d, VMMIO_CONFIG + off); }

u64 virtio_config_read64(struct virtio_dev *d, u32 off)
{
	for (int tries = 0; tries < 16; tries++) {
		u32 gen = rd(d, VMMIO_CONFIG_GENERATION);
		u64 v = rd(d, VMMIO_CONFIG + off) | ((u64)rd(d, VMMIO_CONFIG + off + 4) << 32);
		if (rd(d, VMMIO_CONFIG_GENERATION) == gen)
			return v;
	}
	return 0;
}

int virtq_run(struct virtio_dev *d, struct virtq *q, u16 head, u64 timeout_ns)
{
	if (d->broken)
		return -1;
	struct virtq_mem *m = q->mem;
	m->avail.ring[q->avail_idx % q->num] = head;
	barrier(); /* x86 is TSO: descriptor and ring stores are ordered */
	q->avail_idx++;
	*(volatile u16 *)&m->avail.idx = q->avail_idx;
	mb();
	wr(d, VMMIO_QUEUE_NOTIFY, q->index);
	u64 end = clock_ns() + timeout_ns;
	while (*(volatile u16 *)&m->used.idx == q->last_used) {
		if (clock_ns() > end) {
			virtio_fail(d, "request timed out");
			return -1;
		}
		cpu_relax();
	}
	barrier();
	struct virtq_used_elem *e = &m->used.ring[q->last_used % q->num];
	q->last_used++;
	u32 isr = rd(d, VMMIO_INTERRUPT_STATUS);
	if (isr)
		wr(d, VMMIO_INTERRUPT_ACK, isr);
	if (e->id != head) {
		virtio_fail(d, "used ring returned an unexpected descriptor");
		return -1;
	}
	return 0;
}

/* Parse "<size>@<base>:<irq>[:<id>]" (Linux's virtio_mmio.device= format). */
static int parse_device(const char *s, struct virtio_dev *d)
{
	u64 size, base, irq;
	if (parse_u64_prefix(&s, &size, 0) < 0)
		return -1;
	if (*s == 'K' || *s == 'k')
		size <<= 10, s++;
	else if (*s == 'M' || *s == 'm')
		size <<= 20, s++;
	else if (*s == 'G' || *s == 'g')
		size <<= 30, s++;
	if (*s++ != '@' || parse_u64_prefix(&s, &base, 0) < 0)
		return -1;
	if (*s++ != ':' || parse_u64_prefix(&s, &irq, 10) < 0)
		return -1;
	if (*s == ':') { /* optional platform device id */
		u64 id;
		s++;
		if (parse_u64_prefix(&s, &id, 10) < 0)
			return -1;
	}
	if (*s && *s != ' ')
		return -1;
	if (size < 0x100 || base == 0 || base + size > (4ul << 30))
		return -1;
	d->base = base;
	d->size = size;
	d->irq = (u32)irq;
	return 0;
}

void virtio_probe_all(const char *cmdline)
{
	static const char key[] = "virtio_mmio.device=";
	const usize keylen = sizeof(key) - 1;
	int in_quote = 0;
	for (const char *p = cmdline; *p; p++) {
		if (*p == '"')
			in_quote = !in_quote;
		if (in_quote || (p != cmdline && p[-1] != ' ') || strncmp(p, key, keylen) != 0)
			continue;
		const char *val = p + keylen;
		if (ndevices >= VIRTIO_MAX_DEVICES) {
			kprintf("error: too many virtio-mmio devices\n");
			break;
		}
		struct virtio_dev *d = &devices[ndevices];
		memset(d, 0, sizeof(*d));
		if (parse_device(val, d) < 0) {
			kputs("error: bad virtio_mmio.device=");
			for (const char *e = val; *e && *e != ' '; e++)
				uart_putc(*e);
			kputs("\n");
			continue;
		}
		ndevices++;
		u32 magic = rd(d, VMMIO_MAGIC);
		if (magic != 0x74726976) {
			kprintf("error: virtio-mmio@0x%lx: bad magic 0x%x\n", d->base, magic);
			d->broken = 1;
			continue;
		}
		d->version = rd(d, VMMIO_VERSION);
		d->device_id = rd(d, VMMIO_DEVICE_ID);
		if (d->device_id == 0)
			continue; /* transport without a device */
		if (d->version != 2) {
			kprintf("error: virtio-mmio@0x%lx: unsupported version %u (need 2)\n", d->base,
				d->version);
			d->broken = 1;
			continue;
		}
		u32 i;
		for (i = 0; i < ARRAY_SIZE(drivers); i++) {
			if (drivers[i].device_id == d->device_id) {
				drivers[i].probe(d);
				break;
			}
		}
		if (i == ARRAY_SIZE(drivers))
			kprintf("virtio-mmio@0x%lx: device id %u has no driver\n", d->base, d->device_id);
	}
}
