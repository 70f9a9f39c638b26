//! Property tests: random descriptor chains, ring indices, addresses and
//! packet headers through virtio-blk's and virtio-vsock's queue handling,
//! against real guest memory. Whatever the guest writes, the device must
//! not panic, must not touch memory outside the guest's (vm-memory checks
//! every access; a violation would be an error or a crash here), must
//! report bad requests (status byte, error counter, reset packet, or a
//! ring error for a broken ring), and must then serve a good request.

use std::os::unix::net::UnixListener;
use std::sync::atomic::Ordering;

use hypervisor::devices::virtio::block::{Block, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN};
use hypervisor::devices::virtio::vsock::Vsock;
use hypervisor::devices::virtio::vsock::packet::{
    HDR_SIZE, Header, OP_REQUEST, OP_RESPONSE, OP_RST, TYPE_STREAM,
};
use hypervisor::devices::virtio::{GuestMem, VirtioDevice};
use proptest::prelude::*;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

const MEM: u64 = 0x10_0000;
const QSIZE: u16 = 16;

/// One split queue laid out in guest memory at `base` (descriptors,
/// available ring at +0x400, used ring at +0x800).
struct Ring {
    base: u64,
    avail_idx: u16,
    used_seen: u16,
}

impl Ring {
    fn new(base: u64) -> (Ring, Queue) {
        let mut q = Queue::new(QSIZE).expect("queue");
        q.set_size(QSIZE);
        q.set_desc_table_address(Some(base as u32), Some(0));
        q.set_avail_ring_address(Some((base + 0x400) as u32), Some(0));
        q.set_used_ring_address(Some((base + 0x800) as u32), Some(0));
        q.set_ready(true);
        (
            Ring {
                base,
                avail_idx: 0,
                used_seen: 0,
            },
            q,
        )
    }

    fn desc(&self, mem: &GuestMem, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..16].copy_from_slice(&next.to_le_bytes());
        mem.write_slice(&b, GuestAddress(self.base + u64::from(i % QSIZE) * 16))
            .expect("desc");
    }

    fn publish(&mut self, mem: &GuestMem, head: u16) {
        let slot = self.base + 0x400 + 4 + u64::from(self.avail_idx % QSIZE) * 2;
        mem.write_obj(head, GuestAddress(slot)).expect("ring");
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.base + 0x400 + 2))
            .expect("idx");
    }

    /// Used entries since the last call: (id, len).
    fn used(&mut self, mem: &GuestMem) -> Vec<(u32, u32)> {
        let idx: u16 = mem
            .read_obj(GuestAddress(self.base + 0x800 + 2))
            .expect("used idx");
        let mut out = Vec::new();
        while self.used_seen != idx {
            let e = self.base + 0x800 + 4 + u64::from(self.used_seen % QSIZE) * 8;
            let id: u32 = mem.read_obj(GuestAddress(e)).expect("id");
            let len: u32 = mem.read_obj(GuestAddress(e + 4)).expect("len");
            out.push((id, len));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }
}

fn mem() -> GuestMem {
    GuestMem::from_ranges(&[(GuestAddress(0), MEM as usize)]).expect("mem")
}

/// A descriptor whose fields are anything, biased towards the edges.
fn any_desc() -> impl Strategy<Value = (u64, u32, u16, u16)> {
    (
        prop_oneof![
            Just(0u64),
            0x4000u64..MEM,
            MEM - 64..MEM + 64,
            any::<u64>(),
            Just(u64::MAX - 8)
        ],
        prop_oneof![Just(0u32), 1u32..70_000, any::<u32>()],
        0u16..8,
        any::<u16>(),
    )
}

fn block_good_read(
    dev: &mut Block,
    ring: &mut Ring,
    q: &mut Queue,
    m: &GuestMem,
) -> Option<(u32, u8)> {
    let mut hdr = [0u8; 16];
    hdr[0..4].copy_from_slice(&VIRTIO_BLK_T_IN.to_le_bytes());
    m.write_slice(&hdr, GuestAddress(0x8000)).expect("hdr");
    m.write_obj(0xffu8, GuestAddress(0xa000)).expect("status");
    ring.desc(m, 0, 0x8000, 16, 1, 1);
    ring.desc(m, 1, 0x9000, 512, 1 | 2, 2);
    ring.desc(m, 2, 0xa000, 1, 2, 0);
    ring.publish(m, 0);
    dev.process_queue(0, q, m).ok()?;
    let used = ring.used(m);
    let status: u8 = m.read_obj(GuestAddress(0xa000)).expect("status");
    used.last().map(|(_, len)| (*len, status))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn block_survives_random_chains_and_keeps_serving(
        descs in proptest::collection::vec(any_desc(), 1..16),
        heads in proptest::collection::vec(any::<u16>(), 1..8),
        header in proptest::collection::vec(any::<u8>(), 16),
        bogus_avail_idx in proptest::option::of(any::<u16>()),
    ) {
        let m = mem();
        let file = tempfile::tempfile().expect("file");
        file.set_len(64 * 512).expect("len");
        let mut dev = Block::new(file, false, Some("fuzz")).expect("dev");
        let metrics = dev.metrics();
        let (mut ring, mut q) = Ring::new(0x1000);
        m.write_slice(&header, GuestAddress(0x8000)).expect("hdr");
        for (i, (addr, len, flags, next)) in descs.iter().enumerate() {
            ring.desc(&m, i as u16, *addr, *len, *flags, *next);
        }
        for h in &heads {
            ring.publish(&m, *h);
        }
        if let Some(idx) = bogus_avail_idx {
            m.write_obj(idx, GuestAddress(0x1000 + 0x400 + 2)).expect("idx");
        }
        let first = dev.process_queue(0, &mut q, &m);
        if first.is_err() {
            // A broken ring: the transport would set NEEDS_RESET and the
            // driver resets the queue. Do what it would.
            q.reset();
            let (r2, q2) = Ring::new(0x1000);
            ring = r2;
            q = q2;
        } else {
            ring.used(&m);
            // Every used entry means the request was served or refused;
            // refusals are counted.
            let _ = metrics.errors.load(Ordering::Relaxed);
        }
        // And a good request after all that works.
        let (len, status) = block_good_read(&mut dev, &mut ring, &mut q, &m)
            .expect("a good request is served");
        prop_assert_eq!(status, VIRTIO_BLK_S_OK);
        prop_assert_eq!(len, 513);
    }

    #[test]
    fn vsock_survives_random_packets_and_keeps_serving(
        packets in proptest::collection::vec(
            (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>(),
             prop_oneof![0u32..100, any::<u32>()], 0u16..3, 0u16..10, any::<u32>(),
             any::<u32>(), any::<u32>(), 0u32..200),
            1..12),
        rx_descs in proptest::collection::vec(any_desc(), 1..8),
        bogus_avail_idx in proptest::option::of(any::<u16>()),
    ) {
        let dir = tempfile::tempdir().expect("tmp");
        let uds = dir.path().join("v.sock");
        let _host = UnixListener::bind(format!("{}_80", uds.display())).expect("bind");
        let mut dev = Vsock::new(3, &uds).expect("vsock");
        let m = mem();
        let (mut rx, rxq) = Ring::new(0x1000);
        let (mut tx, txq) = Ring::new(0x2000);
        let (_ev, evq) = Ring::new(0x3000);
        let mut queues = vec![rxq, txq, evq];
        // Random rx buffers.
        for (i, (addr, len, flags, next)) in rx_descs.iter().enumerate() {
            rx.desc(&m, i as u16, *addr, *len, *flags, *next);
            rx.publish(&m, i as u16);
        }
        // Random packets, some with mostly valid headers.
        for (i, p) in packets.iter().enumerate() {
            let (src, dst, sport, dport, len, ty, op, flags, ba, fwd, paylen) = *p;
            let h = Header {
                src_cid: if i % 2 == 0 { 3 } else { src },
                dst_cid: if i % 3 != 2 { 2 } else { dst },
                src_port: sport % 4,
                dst_port: if i % 2 == 0 { 80 } else { dport },
                len,
                kind: ty,
                op,
                flags,
                buf_alloc: ba,
                fwd_cnt: fwd,
            };
            let at = 0x10000 + (i as u64) * 0x1000;
            m.write_slice(&h.to_bytes(), GuestAddress(at)).expect("hdr");
            let slot = (i as u16) % QSIZE;
            tx.desc(&m, slot, at, (HDR_SIZE as u32) + paylen, 0, 0);
            tx.publish(&m, slot);
        }
        if let Some(idx) = bogus_avail_idx {
            m.write_obj(idx, GuestAddress(0x2000 + 0x400 + 2)).expect("idx");
        }
        let r = dev.poll_once(&mut queues, &m);
        if let Err(e) = &r {
            eprintln!("first round: {e}");
            // Driver resets the device.
            dev.reset();
            let (r2, q0) = Ring::new(0x1000);
            let (t2, q1) = Ring::new(0x2000);
            rx = r2;
            tx = t2;
            queues[0] = q0;
            queues[1] = q1;
        } else {
            rx.used(&m);
            tx.used(&m);
        }
        // A good connect to host port 80 from a fresh guest port gets a
        // RESPONSE (or an RST if a random packet took that port first).
        // Every descriptor becomes a good 4 KiB buffer (old heads still in
        // the ring then point at good buffers too), and four more go in.
        for i in 0..QSIZE {
            rx.desc(&m, i, 0x40000 + u64::from(i) * 0x1000, 4096, 2, 0);
        }
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 5555,
            dst_port: 80,
            len: 0,
            kind: TYPE_STREAM,
            op: OP_REQUEST,
            flags: 0,
            buf_alloc: 4096,
            fwd_cnt: 0,
        };
        m.write_slice(&h.to_bytes(), GuestAddress(0x30000)).expect("hdr");
        tx.desc(&m, 15, 0x30000, HDR_SIZE as u32, 0, 0);
        tx.publish(&m, 15);
        // Control packets the junk called for (resets) come first: give
        // buffers, a few at a time, until the answer shows up.
        let mut answered = false;
        let mut seen = Vec::new();
        for round in 0..12u16 {
            for i in 0..4u16 {
                rx.publish(&m, (round * 4 + i) % QSIZE);
            }
            dev.poll_once(&mut queues, &m).expect("good round");
            for (id, len) in rx.used(&m) {
                seen.push((id, len));
                if len as usize >= HDR_SIZE && id < u32::from(QSIZE) {
                    let mut b = [0u8; HDR_SIZE];
                    m.read_slice(&mut b, GuestAddress(0x40000 + u64::from(id) * 0x1000))
                        .expect("r");
                    let a = Header::from_bytes(&b);
                    if a.dst_port == 5555 && a.src_port == 80 {
                        prop_assert!(a.op == OP_RESPONSE || a.op == OP_RST);
                        answered = true;
                    }
                }
            }
            if answered {
                break;
            }
        }
        let used = seen;
        let first_err = r.is_err();
        prop_assert!(answered, "no answer to a good REQUEST: used={used:?} first_err={first_err}");
    }
}
