/* mini: virtio-vsock stream sockets (virtio_vsock.c) and the shell
 * commands on top (vsock_cmds.c). */
#ifndef MINI_VSOCK_H
#define MINI_VSOCK_H
#include "kernel.h"

#define VSOCK_HOST_CID 2
#define VSOCK_TYPE_STREAM 1
#define VSOCK_OP_REQUEST 1
#define VSOCK_OP_RESPONSE 2
#define VSOCK_OP_RST 3
#define VSOCK_OP_SHUTDOWN 4
#define VSOCK_OP_RW 5
#define VSOCK_OP_CREDIT_UPDATE 6
#define VSOCK_OP_CREDIT_REQUEST 7
#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2

#define VSOCK_MAX_CONNS 16
#define VSOCK_MAX_PAYLOAD 32768
#define VSOCK_DEFAULT_BUF_ALLOC (256u * 1024)

struct PACKED vsock_hdr {
	u64 src_cid;
	u64 dst_cid;
	u32 src_port;
	u32 dst_port;
	u32 len;
	u16 type;
	u16 op;
	u32 flags;
	u32 buf_alloc;
	u32 fwd_cnt;
};

enum { VS_FREE = 0, VS_CONNECTING, VS_ESTABLISHED, VS_CLOSED };

struct vsock_conn {
	int state;
	int accepted;      /* came in on a listening port */
	int reset;         /* the peer reset it */
	u32 local_port, peer_port;
	u32 peer_shutdown; /* VSOCK_SHUTDOWN_* the peer sent */
	u32 buf_alloc;     /* our receive window */
	u32 fwd_cnt;       /* bytes our consumer took, ever */
	u32 fwd_reported;  /* fwd_cnt last told to the peer */
	u32 peer_buf_alloc, peer_fwd_cnt;
	u32 tx_total;      /* payload bytes sent, ever (wrapping) */
	u64 rx_total;      /* payload bytes received */
	/* Called for each received payload, in place; must call
	 * vsock_consumed() for what it took (now or later). NULL: consumed. */
	void (*on_data)(struct vsock_conn *c, const u8 *p, u32 n);
	u64 user[4];       /* for the command that owns it */
};

extern struct vsock_conn vsock_conns[VSOCK_MAX_CONNS];

int vsock_present(void);
u64 vsock_cid(void);
/* Handle every packet the device delivered; returns how many. */
int vsock_poll(void);
int vsock_listen(u32 port);
void vsock_unlisten(u32 port);
/* Connect to the host (CID 2) port; NULL on refusal or timeout. */
struct vsock_conn *vsock_connect(u32 port, u64 timeout_ns);
/* Send all of buf, waiting for credit; 0 or -1 (reset, shut, timeout). */
int vsock_send(struct vsock_conn *c, const void *buf, u32 len, u64 timeout_ns);
int vsock_shutdown(struct vsock_conn *c, u32 flags);
/* Full close: SHUTDOWN both ways, wait for the peer's RST; frees c. */
void vsock_close(struct vsock_conn *c, u64 timeout_ns);
/* Abort: RST (if still open) and free c at once. */
void vsock_abort(struct vsock_conn *c);
void vsock_consumed(struct vsock_conn *c, u32 n);
/* Sets the receive window of an accepted connection (0 until claimed) and
 * tells the peer. */
void vsock_set_window(struct vsock_conn *c, u32 buf_alloc);
u32 vsock_credit(const struct vsock_conn *c);

/* The test pattern: byte i of a stream is byte (i % 8) of the little-endian
 * u64 (i / 8) * 0x9E3779B97F4A7C15 + 0x5851F42D4C957F2D. */
static inline u64 vsock_pattern_word(u64 k) { return k * 0x9e3779b97f4a7c15ul + 0x5851f42d4c957f2dul; }
static inline u8 vsock_pattern_byte(u64 i) { return (u8)(vsock_pattern_word(i >> 3) >> ((i & 7) * 8)); }

void vsock_cmd_send(int argc, char **argv);
void vsock_cmd_recv(int argc, char **argv);
void vsock_cmd_echo(int argc, char **argv);
void vsock_cmd_req(int argc, char **argv);
void vsock_cmd_ping(int argc, char **argv);

#endif
