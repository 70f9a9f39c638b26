/* mini: virtio-mmio (version 2) transport and split virtqueues. */
#ifndef MINI_VIRTIO_H
#define MINI_VIRTIO_H
#include "kernel.h"

#define VIRTIO_MAX_DEVICES 16
#define VIRTQ_MAX 16 /* descriptors per queue we use at most */

#define VIRTIO_STATUS_ACK 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_FAILED 128

#define VIRTIO_F_VERSION_1 (1ul << 32)

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

struct virtq_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};
struct virtq_avail {
	u16 flags;
	u16 idx;
	u16 ring[VIRTQ_MAX];
	u16 used_event;
};
struct virtq_used_elem {
	u32 id;
	u32 len;
};
struct virtq_used {
	u16 flags;
	u16 idx;
	struct virtq_used_elem ring[VIRTQ_MAX];
	u16 avail_event;
};

/* One split virtqueue in one static page (desc at 0, avail at 256, used at 512). */
struct virtq_mem {
	struct virtq_desc desc[VIRTQ_MAX];
	struct virtq_avail avail ALIGNED(256);
	struct virtq_used used ALIGNED(256);
} ALIGNED(4096);

struct virtq {
	struct virtq_mem *mem;
	u16 index;
	u16 num;
	u16 avail_idx;
	u16 last_used;
};

struct virtio_dev {
	u64 base;
	u64 size;
	u32 irq;
	u32 device_id;
	u32 version;
	u64 features; /* negotiated */
	int broken;   /* a request timed out: the device is not used again */
};

/* A driver for one virtio device type. probe() prints its own summary or
 * error lines; the transport calls drivers in command-line order. */
struct virtio_driver {
	u32 device_id;
	const char *name;
	int (*probe)(struct virtio_dev *d);
};

int virtio_begin(struct virtio_dev *d, u64 wanted_features);
int virtio_queue_setup(struct virtio_dev *d, struct virtq *q, u16 index, struct virtq_mem *mem);
void virtio_driver_ok(struct virtio_dev *d);
void virtio_fail(struct virtio_dev *d, const char *why);
u32 virtio_config_read32(struct virtio_dev *d, u32 off);
u64 virtio_config_read64(struct virtio_dev *d, u32 off);
/* Publish the chain starting at descriptor `head`, notify, poll the used
 * ring until it completes. Returns 0, or -1 on timeout (device marked broken). */
int virtq_run(struct virtio_dev *d, struct virtq *q, u16 head, u64 timeout_ns);

/* virtio_net.c */
int virtio_net_probe(struct virtio_dev *d);
void net_cmd_serve(int argc, char **argv);

/* virtio_vsock.c */
int virtio_vsock_probe(struct virtio_dev *d);

/* virtio_blk.c */
int virtio_blk_probe(struct virtio_dev *d);
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define BLK_MAX_SECTORS_PER_REQ 64
struct blk_info {
	u64 capacity; /* sectors of 512 bytes */
	int ro;
};
const struct blk_info *blk_get(u32 disk);
/* Returns 0 and the virtio status byte in *status, or -1 (transport error). */
int blk_io(u32 disk, u32 type, u64 sector, void *buf, u32 len, u8 *status);
extern u8 blk_buffer[BLK_MAX_SECTORS_PER_REQ * 512];

#endif
