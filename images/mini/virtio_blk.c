/* mini: virtio-blk driver (device ID 2). One request in flight at a time,
 * 3-descriptor chains (header, data, status), completion by polling. */
#include "virtio.h"

#define VIRTIO_BLK_F_RO (1ul << 5)
#define VIRTIO_BLK_F_FLUSH (1ul << 9)
#define MAX_DISKS 8
#define REQ_TIMEOUT_NS 10000000000ul /* 10 s */

struct blk_req_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

struct blk_disk {
	struct virtq_mem qmem; /* page aligned, first */
	struct virtio_dev *dev;
	struct virtq q;
	struct blk_info info;
	struct blk_req_hdr hdr ALIGNED(16);
	volatile u8 status ALIGNED(16);
	char id[24];
};

static struct blk_disk disks[MAX_DISKS] NOINIT;
static u32 ndisks;
u8 blk_buffer[BLK_MAX_SECTORS_PER_REQ * 512] NOINIT ALIGNED(4096);

u32 blk_count(void) { return ndisks; }

const struct blk_info *blk_get(u32 disk) { return disk < ndisks ? &disks[disk].info : NULL; }

static int disk_io(struct blk_disk *b, u32 type, u64 sector, void *buf, u32 len, u8 *status)
{
	struct virtq_desc *desc = b->qmem.desc;
	b->hdr.type = type;
	b->hdr.reserved = 0;
	b->hdr.sector = sector;
	b->status = 0xff;
	desc[0].addr = (u64)&b->hdr;
	desc[0].len = sizeof(b->hdr);
	desc[0].flags = VIRTQ_DESC_F_NEXT;
	u16 st = 1;
	if (len) {
		desc[1].addr = (u64)buf;
		desc[1].len = len;
		desc[1].flags = VIRTQ_DESC_F_NEXT | (type == VIRTIO_BLK_T_OUT ? 0 : VIRTQ_DESC_F_WRITE);
		desc[1].next = 2;
		desc[0].next = 1;
		st = 2;
	} else {
		desc[0].next = 1;
	}
	desc[st].addr = (u64)&b->status;
	desc[st].len = 1;
	desc[st].flags = VIRTQ_DESC_F_WRITE;
	desc[st].next = 0;
	if (virtq_run(b->dev, &b->q, 0, REQ_TIMEOUT_NS) < 0)
		return -1;
	*status = b->status;
	return 0;
}

int blk_io(u32 disk, u32 type, u64 sector, void *buf, u32 len, u8 *status)
{
	if (disk >= ndisks)
		return -1;
	return disk_io(&disks[disk], type, sector, buf, len, status);
}

int virtio_blk_probe(struct virtio_dev *d)
{
	if (ndisks >= MAX_DISKS) {
		virtio_fail(d, "too many disks");
		return -1;
	}
	struct blk_disk *b = &disks[ndisks];
	b->dev = d;
	if (virtio_begin(d, VIRTIO_BLK_F_RO | VIRTIO_BLK_F_FLUSH) < 0)
		return -1;
	b->info.capacity = virtio_config_read64(d, 0);
	b->info.ro = (d->features & VIRTIO_BLK_F_RO) != 0;
	if (virtio_queue_setup(d, &b->q, 0, &b->qmem) < 0)
		return -1;
	virtio_driver_ok(d);

	/* Serial number: up to 20 bytes, NUL padded; '-' if unsupported. */
	u8 st;
	u8 *idbuf = blk_buffer;
	memset(idbuf, 0, 20);
	u32 n = 0;
	if (disk_io(b, VIRTIO_BLK_T_GET_ID, 0, idbuf, 20, &st) < 0)
		return -1;
	if (st == 0)
		for (; n < 20 && idbuf[n]; n++)
			b->id[n] = (idbuf[n] > ' ' && idbuf[n] < 0x7f) ? (char)idbuf[n] : '_';
	if (n == 0)
		b->id[n++] = '-';
	b->id[n] = 0;
	kprintf("disk%u: sectors=%lu ro=%u id=%s\n", ndisks, b->info.capacity, b->info.ro, b->id);
	ndisks++;
	return 0;
}
