//! Device benchmarks: `cargo bench -p hypervisor --bench devices`.
//!
//! Two parts:
//! - **VMM side** (no KVM needed): the device models driven directly
//!   against guest memory by a fake driver, timing what the VMM spends per
//!   request: virtio-blk reads, virtio-vsock packets guest to host and host
//!   to guest. This is what a guest would pay on hardware KVM, where guest
//!   code is not emulated.
//! - **Guest side** (KVM and the mini image): the mini guest's own
//!   `vsock-send`, `vsock-recv`, `vsock-ping`, `blk-bench`, and a host
//!   client's round trips through the guest's `vsock-echo`. On a PVM host
//!   every guest instruction is emulated (3-4 M/s), so these measure the
//!   emulated guest far more than the VMM.
//!
//! `MINICLOUD_BENCH_QUICK=1` shortens everything (for a smoke run).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hypervisor::devices::virtio::block::{Block, VIRTIO_BLK_T_IN};
use hypervisor::devices::virtio::vsock::Vsock;
use hypervisor::devices::virtio::vsock::packet::{
    HDR_SIZE, Header, OP_REQUEST, OP_RESPONSE, OP_RW, TYPE_STREAM,
};
use hypervisor::devices::virtio::{GuestMem, VirtioDevice};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

const QSIZE: u16 = 256;

fn quick() -> bool {
    std::env::var_os("MINICLOUD_BENCH_QUICK").is_some()
}

/// A split queue in guest memory (descriptors at `base`, available ring at
/// +0x1000, used ring at +0x2000).
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
        q.set_avail_ring_address(Some((base + 0x1000) as u32), Some(0));
        q.set_used_ring_address(Some((base + 0x2000) as u32), Some(0));
        q.set_ready(true);
        let r = Ring {
            base,
            avail_idx: 0,
            used_seen: 0,
        };
        (r, q)
    }

    fn desc(&self, m: &GuestMem, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..16].copy_from_slice(&next.to_le_bytes());
        m.write_slice(&b, GuestAddress(self.base + u64::from(i) * 16))
            .expect("desc");
    }

    fn publish(&mut self, m: &GuestMem, head: u16) {
        let slot = self.base + 0x1000 + 4 + u64::from(self.avail_idx % QSIZE) * 2;
        m.write_obj(head, GuestAddress(slot)).expect("ring");
        self.avail_idx = self.avail_idx.wrapping_add(1);
        m.write_obj(self.avail_idx, GuestAddress(self.base + 0x1000 + 2))
            .expect("idx");
    }

    fn used(&mut self, m: &GuestMem) -> Vec<(u32, u32)> {
        let idx: u16 = m
            .read_obj(GuestAddress(self.base + 0x2000 + 2))
            .expect("idx");
        let mut out = Vec::new();
        while self.used_seen != idx {
            let e = self.base + 0x2000 + 4 + u64::from(self.used_seen % QSIZE) * 8;
            out.push((
                m.read_obj(GuestAddress(e)).expect("id"),
                m.read_obj(GuestAddress(e + 4)).expect("len"),
            ));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }
}

fn report(name: &str, n: u64, elapsed: Duration, bytes_per_op: u64) {
    let ns = elapsed.as_nanos() as f64 / n as f64;
    let mbs = bytes_per_op as f64 * n as f64 / elapsed.as_secs_f64() / 1e6;
    println!("{name:<44} {ns:>10.0} ns/op {mbs:>10.1} MB/s  ({n} ops)");
}

fn bench_block(size: u32) {
    let m = GuestMem::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("mem");
    // Page-cache-hot file: this measures the device model and a pread.
    let file = tempfile::tempfile().expect("file");
    file.set_len(64 << 20).expect("len");
    let mut dev = Block::new(file, false, None).expect("blk");
    let (mut ring, mut q) = Ring::new(0x10000);
    let mut hdr = [0u8; 16];
    hdr[0..4].copy_from_slice(&VIRTIO_BLK_T_IN.to_le_bytes());
    m.write_slice(&hdr, GuestAddress(0x100000)).expect("hdr");
    ring.desc(&m, 0, 0x100000, 16, 1, 1);
    ring.desc(&m, 1, 0x200000, size, 1 | 2, 2);
    ring.desc(&m, 2, 0x110000, 1, 2, 0);
    let n: u64 = if quick() { 2_000 } else { 50_000 };
    // Warm up.
    for _ in 0..100 {
        ring.publish(&m, 0);
        dev.process_queue(0, &mut q, &m).expect("process");
    }
    let t = Instant::now();
    for _ in 0..n {
        ring.publish(&m, 0);
        dev.process_queue(0, &mut q, &m).expect("process");
    }
    report(
        &format!("virtio-blk read {} KiB (notify to used)", size / 1024),
        n,
        t.elapsed(),
        u64::from(size),
    );
}

/// A vsock device with one established connection (guest port 5000 to a
/// host listener on port 80); returns the device, its queues and rings,
/// and the host end.
struct VsockRig {
    dev: Vsock,
    m: GuestMem,
    queues: Vec<Queue>,
    rx: Ring,
    tx: Ring,
    host: UnixStream,
    _dir: tempfile::TempDir,
}

fn vsock_rig() -> VsockRig {
    let dir = tempfile::tempdir().expect("tmp");
    let uds = dir.path().join("v.sock");
    let l = UnixListener::bind(format!("{}_80", uds.display())).expect("bind");
    let mut dev = Vsock::new(3, &uds).expect("vsock");
    let m = GuestMem::from_ranges(&[(GuestAddress(0), 32 << 20)]).expect("mem");
    let (mut rx, q0) = Ring::new(0x10000);
    let (mut tx, q1) = Ring::new(0x20000);
    let (_ev, q2) = Ring::new(0x30000);
    let mut queues = vec![q0, q1, q2];
    for i in 0..QSIZE {
        rx.desc(&m, i, 0x400000 + u64::from(i) * 0x10000, 0x10000, 2, 0);
        rx.publish(&m, i);
    }
    let req = Header {
        src_cid: 3,
        dst_cid: 2,
        src_port: 5000,
        dst_port: 80,
        kind: TYPE_STREAM,
        op: OP_REQUEST,
        buf_alloc: u32::MAX / 2,
        ..Default::default()
    };
    m.write_slice(&req.to_bytes(), GuestAddress(0x100000))
        .expect("hdr");
    tx.desc(&m, 0, 0x100000, HDR_SIZE as u32, 0, 0);
    tx.publish(&m, 0);
    dev.poll_once(&mut queues, &m).expect("connect");
    let (host, _) = l.accept().expect("accept");
    let used = rx.used(&m);
    let mut b = [0u8; HDR_SIZE];
    m.read_slice(
        &mut b,
        GuestAddress(0x400000 + u64::from(used[0].0) * 0x10000),
    )
    .expect("resp");
    assert_eq!(Header::from_bytes(&b).op, OP_RESPONSE);
    tx.used(&m);
    VsockRig {
        dev,
        m,
        queues,
        rx,
        tx,
        host,
        _dir: dir,
    }
}

fn bench_vsock_tx(size: u32) {
    let mut r = vsock_rig();
    let mut reader = r.host.try_clone().expect("clone");
    let n: u64 = if quick() { 2_000 } else { 40_000 };
    let total = n * u64::from(size);
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        while got < total {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => got += k as u64,
            }
        }
        got
    });
    let h = Header {
        src_cid: 3,
        dst_cid: 2,
        src_port: 5000,
        dst_port: 80,
        len: size,
        kind: TYPE_STREAM,
        op: OP_RW,
        buf_alloc: u32::MAX / 2,
        ..Default::default()
    };
    r.m.write_slice(&h.to_bytes(), GuestAddress(0x100000))
        .expect("hdr");
    r.tx.desc(&r.m, 0, 0x100000, HDR_SIZE as u32, 1, 1);
    r.tx.desc(&r.m, 1, 0x200000, size, 0, 0);
    // Honour the device's credit, as a driver must: it buffers at most its
    // buf_alloc (256 KiB) per connection and tells us through fwd_cnt.
    let mut sent = 0u64;
    let mut fwd = 0u32;
    let mut buf_alloc = 256 * 1024u64;
    let t = Instant::now();
    for _ in 0..n {
        loop {
            for (id, len) in r.rx.used(&r.m) {
                if len as usize >= HDR_SIZE {
                    let mut b = [0u8; HDR_SIZE];
                    let at = 0x400000 + u64::from(id) * 0x10000;
                    r.m.read_slice(&mut b, GuestAddress(at)).expect("hdr");
                    let h = Header::from_bytes(&b);
                    fwd = h.fwd_cnt;
                    buf_alloc = u64::from(h.buf_alloc);
                }
                r.rx.publish(&r.m, id as u16);
            }
            let in_flight = u64::from((sent as u32).wrapping_sub(fwd));
            if in_flight + u64::from(size) <= buf_alloc {
                break;
            }
            r.dev.poll_once(&mut r.queues, &r.m).expect("credit");
            std::thread::yield_now();
        }
        r.tx.publish(&r.m, 0);
        r.dev.poll_once(&mut r.queues, &r.m).expect("tx");
        r.tx.used(&r.m);
        sent += u64::from(size);
    }
    // Flush what the device still buffers.
    while !drain.is_finished() {
        assert_eq!(r.dev.connection_count(), 1, "the connection was reset");
        r.dev.poll_once(&mut r.queues, &r.m).expect("flush");
        for (id, _) in r.rx.used(&r.m) {
            r.rx.publish(&r.m, id as u16);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = t.elapsed();
    let got = drain.join().expect("drain");
    assert_eq!(got, total, "every byte reached the host socket");
    report(
        &format!("virtio-vsock guest->host {} KiB packets", size / 1024),
        n,
        elapsed,
        u64::from(size),
    );
}

fn bench_vsock_rx() {
    let mut r = vsock_rig();
    let mut writer = r.host.try_clone().expect("clone");
    let total: u64 = if quick() { 64 << 20 } else { 1 << 30 };
    let feed = std::thread::spawn(move || {
        let buf = vec![0x5au8; 1 << 20];
        let mut sent = 0u64;
        while sent < total {
            let k = (total - sent).min(buf.len() as u64) as usize;
            writer.write_all(&buf[..k]).expect("write");
            sent += k as u64;
        }
    });
    let mut got = 0u64;
    let mut packets = 0u64;
    let t = Instant::now();
    while got < total {
        r.dev.poll_once(&mut r.queues, &r.m).expect("rx");
        for (id, len) in r.rx.used(&r.m) {
            if len as usize > HDR_SIZE {
                got += u64::from(len) - HDR_SIZE as u64;
                packets += 1;
            }
            r.rx.publish(&r.m, id as u16);
        }
    }
    let elapsed = t.elapsed();
    feed.join().expect("feed");
    report(
        "virtio-vsock host->guest (64 KiB rx buffers)",
        packets,
        elapsed,
        got / packets.max(1),
    );
}

// ------------------------------------------------------------ guest side

fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn mini_kernel() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    let ok = Command::new(root.join("images/build"))
        .arg("mini")
        .stdout(Stdio::null())
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let dir = std::env::var_os("MINICLOUD_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/minicloud/images")
        });
    Some(dir.join("mini/kernel"))
}

fn run_guest(kernel: &Path, extra: &[&str], run: &str) -> String {
    let cmdline = format!("console=ttyS0 minicloud.run=\"{run}\"");
    let out = Command::new(env!("CARGO_BIN_EXE_minicloud-vmm"))
        .arg("--kernel")
        .arg(kernel)
        .args(["--cmdline", &cmdline])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run vmm");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line in:\n{out}"))
}

fn field(l: &str, key: &str) -> f64 {
    l.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn connect_guest(uds: &Path, port: u32) -> UnixStream {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = UnixStream::connect(uds) {
            s.write_all(format!("CONNECT {port}\n").as_bytes())
                .expect("w");
            let mut l = Vec::new();
            let mut b = [0u8; 1];
            while let Ok(1) = s.read(&mut b) {
                l.push(b[0]);
                if b[0] == b'\n' {
                    break;
                }
            }
            if l.starts_with(b"OK ") {
                return s;
            }
        }
        assert!(Instant::now() < end, "guest never accepted");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn guest_side(kernel: &Path) {
    let dir = tempfile::tempdir().expect("tmp");
    let uds = dir.path().join("v.sock");
    let uds_s = uds.to_str().expect("utf8").to_string();
    let vs = ["--vsock-uds", uds_s.as_str(), "--vsock-cid", "3"];
    let mb: u64 = if quick() { 1 } else { 8 };

    // Guest -> host.
    let l = UnixListener::bind(format!("{uds_s}_1234")).expect("bind");
    let sink = std::thread::spawn(move || {
        let (mut c, _) = l.accept().expect("accept");
        let mut v = Vec::new();
        c.read_to_end(&mut v).expect("read");
        v.len()
    });
    let out = run_guest(kernel, &vs, &format!("vsock-send 1234 {}", mb << 20));
    let l1 = line(&out, "vsock-send: ");
    assert_eq!(sink.join().expect("sink") as u64, mb << 20);
    println!(
        "{:<44} {:>10.2} MB/s  (guest-timed, {mb} MiB)",
        "vsock guest->host (mini vsock-send)",
        (mb << 20) as f64 / field(l1, "ms") / 1e3
    );

    // Host -> guest.
    let u2 = uds.clone();
    let feeder = std::thread::spawn(move || {
        let mut s = connect_guest(&u2, 5000);
        let total = (mb << 20) as usize;
        let mut off = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        while off < total {
            let n = (total - off).min(buf.len());
            for (i, b) in buf[..n].iter_mut().enumerate() {
                let p = (off + i) as u64;
                let w = (p / 8)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(0x5851_F42D_4C95_7F2D);
                *b = (w >> ((p % 8) * 8)) as u8;
            }
            s.write_all(&buf[..n]).expect("write");
            off += n;
        }
        s.shutdown(std::net::Shutdown::Write).expect("shut");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    let out = run_guest(kernel, &vs, "vsock-recv 5000");
    feeder.join().expect("feeder");
    let l2 = line(&out, "vsock-recv: ");
    assert!(l2.contains(" ok "), "{l2}");
    println!(
        "{:<44} {:>10.2} MB/s  (guest-timed, {mb} MiB, every byte checked)",
        "vsock host->guest (mini vsock-recv)",
        (mb << 20) as f64 / field(l2, "ms") / 1e3
    );

    // Round trips: guest pings a host echo server.
    let l = UnixListener::bind(format!("{uds_s}_7000")).expect("bind");
    let echo = std::thread::spawn(move || {
        let (mut c, _) = l.accept().expect("accept");
        let mut b = [0u8; 65536];
        loop {
            match c.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => c.write_all(&b[..n]).expect("echo"),
            }
        }
    });
    let count = if quick() { 50 } else { 500 };
    let out = run_guest(kernel, &vs, &format!("vsock-ping 7000 {count} 64"));
    echo.join().expect("echo");
    let l3 = line(&out, "vsock-ping: ");
    println!(
        "{:<44} {:>10.0} us avg, {:.0} us min  ({count} x 64 B, guest clock)",
        "vsock round trip, guest->host echo",
        field(l3, "avg_us"),
        field(l3, "min_us")
    );

    // Round trips: a host client through the guest's vsock-echo.
    let u3 = uds.clone();
    let rounds = if quick() { 50 } else { 500 };
    let client = std::thread::spawn(move || {
        let mut s = connect_guest(&u3, 6000);
        let msg = [7u8; 64];
        let mut back = [0u8; 64];
        let mut samples = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            s.write_all(&msg).expect("w");
            s.read_exact(&mut back).expect("r");
            samples.push(t.elapsed());
        }
        s.shutdown(std::net::Shutdown::Write).expect("shut");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        samples.sort();
        samples
    });
    let _ = run_guest(kernel, &vs, "vsock-echo 6000 1");
    let s = client.join().expect("client");
    println!(
        "{:<44} {:>10.0} us p50, {:.0} us p99  ({rounds} x 64 B, host clock)",
        "vsock round trip, host->guest echo",
        s[s.len() / 2].as_secs_f64() * 1e6,
        s[s.len() * 99 / 100].as_secs_f64() * 1e6
    );

    // Block, from the guest.
    let img = dir.path().join("d.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(64 << 20))
        .expect("img");
    let img_s = img.to_str().expect("utf8").to_string();
    let total = if quick() { 2048 } else { 32768 };
    let out = run_guest(
        kernel,
        &["--disk", &img_s],
        &format!(
            "blk-bench 0 write 64 {total}; blk-bench 0 read 64 {total}; blk-bench 0 read 8 {}; blk-bench 0 write 8 {}",
            total / 4,
            total / 4
        ),
    );
    for l in out.lines().filter(|l| l.starts_with("blk-bench: ")) {
        println!("{:<44} {l}", "virtio-blk from the guest");
    }

    // Rate limiter accuracy, from the guest.
    for (flag, run, expect_s, what) in [
        (
            ",bw=1M,bw_burst=128K",
            "blk-bench 0 write 64 4352",
            2.0,
            "bw=1M: 2 MiB past a 128 KiB burst",
        ),
        (
            ",iops=200,iops_burst=20",
            "blk-bench 0 read 8 3360",
            2.0,
            "iops=200: 400 past a burst of 20",
        ),
    ] {
        let out = run_guest(kernel, &["--disk", &format!("{img_s}{flag}")], run);
        let ms = field(line(&out, "blk-bench: "), "ms");
        println!(
            "{:<44} expected {:.2} s, took {:.3} s ({:+.1}%)",
            format!("rate limiter {what}"),
            expect_s,
            ms / 1000.0,
            (expect_s / (ms / 1000.0) - 1.0) * 100.0
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not run us.
    println!("== VMM side (device models against guest memory, no guest) ==");
    bench_block(4096);
    bench_block(65536);
    bench_vsock_tx(4096);
    bench_vsock_tx(32768);
    bench_vsock_rx();
    if !kvm_usable() {
        println!("== guest side skipped: /dev/kvm is not usable ==");
        return;
    }
    let Some(kernel) = mini_kernel() else {
        println!("== guest side skipped: images/build mini failed ==");
        return;
    };
    println!("== guest side (mini guest under KVM; on PVM every guest instruction is emulated) ==");
    guest_side(&kernel);
}
