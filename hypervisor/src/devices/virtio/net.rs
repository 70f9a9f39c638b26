//! virtio-net (device ID 1) on a tap device (virtio 1.2, section 5.1).
//!
//! Features offered, honestly: the MAC address (VIRTIO_NET_F_MAC) and
//! nothing else: no checksum offload, no TSO/UFO, no mergeable buffers, so
//! every frame is a whole Ethernet frame with a 12-byte virtio-net header
//! that carries no offload information. The tap is opened without
//! IFF_VNET_HDR for the same reason: the device strips the header on
//! transmit and writes a zero header on receive.
//!
//! Work runs on the device's event thread: an epoll set holds the tap (for
//! frames to the guest, watched only while the guest has receive buffers),
//! the queue-notify eventfd (KVM signals it on QueueNotify) and the rate
//! limiter's timer. One [`RateLimiter`] covers both directions: every frame
//! takes one operation and its length in bytes; a frame the limiter refuses
//! waits (a transmit chain stays in its ring, a received frame stays in the
//! device) until the timer says it may go.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use virtio_queue::{Queue, QueueOwnedT, QueueT, Reader, Writer};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::{GuestMem, QueueError, VirtioDevice};
use crate::metrics::DeviceMetrics;
use crate::rate_limiter::{RateLimiter, Timer};

/// virtio device ID of a network card.
pub const DEVICE_ID: u32 = 1;
/// Queue size offered (rx, tx).
pub const QUEUE_SIZE: u16 = 256;
/// VIRTIO_NET_F_MAC: the device has a MAC address in its config space.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// The virtio-net header of a VERSION_1 device without offloads.
pub const NET_HDR_SIZE: usize = 12;
/// Largest frame accepted (Ethernet with a VLAN tag, no jumbo frames).
pub const MAX_FRAME: usize = 1518;

const RXQ: usize = 0;
const TXQ: usize = 1;
const TOKEN_TAP: u64 = 1;
const TOKEN_NOTIFY: u64 = 2;
const TOKEN_KICK: u64 = 3;
const TOKEN_TIMER: u64 = 4;
/// Longest a throttled device sleeps before looking again.
const MAX_THROTTLE_WAIT: Duration = Duration::from_millis(100);

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Opens the tap interface `name` (it must exist in this process's network
/// namespace, or be creatable by it), non-blocking, without packet info or
/// vnet headers.
pub fn open_tap(name: &str) -> io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "tap name must be 1 to 15 bytes",
        ));
    }
    let path = c"/dev/net/tun";
    // SAFETY: a valid NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is fresh and ours.
    let file = unsafe { File::from_raw_fd(fd) };
    // struct ifreq: name[16], then a union whose first member here is the
    // flags (short).
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as u16;
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes an ifreq-sized buffer, which `ifr`
    // is (40 bytes).
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Parses "52:54:00:12:34:56".
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 {
        return None; // too long, or a multicast address
    }
    Some(mac)
}

/// The network device.
pub struct Net {
    tap: File,
    mac: [u8; 6],
    epoll: Epoll,
    kick: EventFd,
    notifier: Option<EventFd>,
    tap_watched: bool,
    /// A frame read from the tap that did not fit anywhere yet.
    pending: Option<Vec<u8>>,
    queue_sizes: [u16; 2],
    metrics: Arc<DeviceMetrics>,
    limiter: Arc<Mutex<RateLimiter>>,
    timer: Timer,
    /// Waiting for the timer: do not watch the tap meanwhile.
    throttled: bool,
}

impl Net {
    /// A device on `tap` (any file that reads and writes whole frames) with
    /// address `mac`.
    pub fn new(tap: File, mac: [u8; 6]) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        let kick = EventFd::new(libc::EFD_NONBLOCK)?;
        epoll.ctl(
            ControlOperation::Add,
            kick.as_raw_fd(),
            EpollEvent::new(EventSet::IN, TOKEN_KICK),
        )?;
        let timer = Timer::new()?;
        epoll.ctl(
            ControlOperation::Add,
            timer.as_raw_fd(),
            EpollEvent::new(EventSet::IN, TOKEN_TIMER),
        )?;
        Ok(Net {
            tap,
            mac,
            epoll,
            kick,
            notifier: None,
            tap_watched: false,
            pending: None,
            queue_sizes: [QUEUE_SIZE; 2],
            metrics: Arc::new(DeviceMetrics::default()),
            limiter: Arc::new(Mutex::new(RateLimiter::default())),
            timer,
            throttled: false,
        })
    }

    /// The device's rate limiter (shared with the control API).
    pub fn rate_limiter(&self) -> Arc<Mutex<RateLimiter>> {
        self.limiter.clone()
    }

    /// Whether the limiter lets a frame of `bytes` go now; if not, arms the
    /// timer.
    fn admit(&mut self, bytes: u64) -> bool {
        let Ok(mut l) = self.limiter.lock() else {
            return true;
        };
        if !l.is_limited() {
            return true;
        }
        match l.try_consume(bytes) {
            Ok(()) => true,
            Err(wait) => {
                self.metrics.throttled.fetch_add(1, Ordering::Relaxed);
                self.timer.arm(wait.min(MAX_THROTTLE_WAIT));
                self.throttled = true;
                false
            }
        }
    }

    /// The device's counters ("read": frames to the guest).
    pub fn metrics(&self) -> Arc<DeviceMetrics> {
        self.metrics.clone()
    }

    fn watch_tap(&mut self, on: bool) {
        if on == self.tap_watched {
            return;
        }
        let fd = self.tap.as_raw_fd();
        let r = if on {
            self.epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, TOKEN_TAP),
            )
        } else {
            self.epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default())
        };
        if r.is_ok() {
            self.tap_watched = on;
        }
    }

    fn process_tx(&mut self, q: &mut Queue, mem: &GuestMem) -> Result<bool, QueueError> {
        let ring = |source| QueueError::Ring { queue: TXQ, source };
        let mut used = false;
        let mut frame = [0u8; NET_HDR_SIZE + MAX_FRAME];
        while let Some(chain) = q.iter(mem).map_err(ring)?.next() {
            let total: u64 = chain.clone().map(|d| u64::from(d.len())).sum();
            if !self.admit(total.saturating_sub(NET_HDR_SIZE as u64)) {
                // Leave it in the ring; the timer brings us back.
                q.set_next_avail(q.next_avail().wrapping_sub(1));
                return Ok(used);
            }
            let head = chain.head_index();
            match Reader::new(mem, chain) {
                Ok(mut r) => {
                    let n = r.available_bytes();
                    if !(NET_HDR_SIZE + 14..=NET_HDR_SIZE + MAX_FRAME).contains(&n)
                        || r.read_exact(&mut frame[..n]).is_err()
                    {
                        self.metrics.error();
                    } else {
                        // A tap takes a frame whole or not at all; a full tap
                        // queue drops it, as a wire would.
                        let len = n - NET_HDR_SIZE;
                        match self.tap.write(&frame[NET_HDR_SIZE..n]) {
                            Ok(w) if w == len => self.metrics.write(len as u64),
                            _ => self.metrics.error(),
                        }
                    }
                }
                Err(_) => self.metrics.error(),
            }
            q.add_used(mem, head, 0).map_err(ring)?;
            used = true;
        }
        Ok(used)
    }

    fn process_rx(&mut self, q: &mut Queue, mem: &GuestMem) -> Result<bool, QueueError> {
        let ring = |source| QueueError::Ring { queue: RXQ, source };
        let mut used = false;
        loop {
            let frame = match self.pending.take() {
                Some(f) => f,
                None => {
                    let mut buf = vec![0u8; 65536];
                    match self.tap.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            buf.truncate(n);
                            buf
                        }
                        Err(_) => break, // WouldBlock: nothing more now
                    }
                }
            };
            let Some(chain) = q.iter(mem).map_err(ring)?.next() else {
                self.pending = Some(frame);
                self.watch_tap(false);
                return Ok(used);
            };
            if !self.admit(frame.len() as u64) {
                q.set_next_avail(q.next_avail().wrapping_sub(1));
                self.pending = Some(frame);
                self.watch_tap(false);
                return Ok(used);
            }
            let head = chain.head_index();
            let len = match Writer::new(mem, chain) {
                Ok(mut w) if w.available_bytes() >= NET_HDR_SIZE + frame.len() => {
                    // num_buffers = 1 (bytes 10..12), everything else 0.
                    let mut hdr = [0u8; NET_HDR_SIZE];
                    hdr[10] = 1;
                    if w.write_all(&hdr).is_ok() && w.write_all(&frame).is_ok() {
                        self.metrics.read(frame.len() as u64);
                        (NET_HDR_SIZE + frame.len()) as u32
                    } else {
                        self.metrics.error();
                        0
                    }
                }
                _ => {
                    // A buffer too small for the frame: the frame is lost.
                    self.metrics.error();
                    0
                }
            };
            q.add_used(mem, head, len).map_err(ring)?;
            used = true;
        }
        self.watch_tap(!self.throttled);
        Ok(used)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        VIRTIO_NET_F_MAC
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // mac[6] at offset 0; nothing else is defined by our features.
        super::read_config_bytes(&self.mac, offset, data);
    }

    fn process_queue(
        &mut self,
        _index: usize,
        _queue: &mut Queue,
        _mem: &GuestMem,
    ) -> Result<bool, QueueError> {
        // Without an ioeventfd: hand the notify to the event thread.
        let _ = self.kick.write(1);
        Ok(false)
    }

    fn reset(&mut self) {
        self.pending = None;
        self.throttled = false;
        self.watch_tap(false);
    }

    fn event_fd(&self) -> Option<RawFd> {
        Some(self.epoll.as_raw_fd())
    }

    fn process_events(
        &mut self,
        queues: &mut [Queue],
        mem: &GuestMem,
        active: bool,
    ) -> Result<u32, QueueError> {
        let mut events = [EpollEvent::default(); 8];
        let n = self.epoll.wait(0, &mut events).unwrap_or(0);
        for ev in &events[..n] {
            match ev.data() {
                TOKEN_NOTIFY => {
                    if let Some(e) = &self.notifier {
                        let _ = e.read();
                    }
                }
                TOKEN_KICK => {
                    let _ = self.kick.read();
                }
                TOKEN_TIMER => {
                    self.timer.clear();
                    self.throttled = false;
                }
                _ => {}
            }
        }
        if !active {
            // No driver: frames from the host are dropped.
            let mut buf = [0u8; 2048];
            while self.tap.read(&mut buf).is_ok_and(|n| n > 0) {}
            self.pending = None;
            self.watch_tap(true);
            return Ok(0);
        }
        if self.throttled {
            self.watch_tap(false);
            return Ok(0);
        }
        let mut mask = 0;
        if let Some(q) = queues.get_mut(TXQ).filter(|q| q.ready())
            && self.process_tx(q, mem)?
        {
            mask |= 1 << TXQ;
        }
        if let Some(q) = queues.get_mut(RXQ).filter(|q| q.ready())
            && self.process_rx(q, mem)?
        {
            mask |= 1 << RXQ;
        }
        Ok(mask)
    }

    fn set_queue_notifier(&mut self, evt: EventFd) -> bool {
        let ok = self
            .epoll
            .ctl(
                ControlOperation::Add,
                evt.as_raw_fd(),
                EpollEvent::new(EventSet::IN, TOKEN_NOTIFY),
            )
            .is_ok();
        if ok {
            self.notifier = Some(evt);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limiter::{BucketConfig, RateLimiterConfig};
    use std::os::fd::OwnedFd;
    use std::time::Instant;
    use vm_memory::{Bytes, GuestAddress};

    const QS: u16 = 64;

    /// A "tap" made of a datagram socket pair (frames stay whole).
    fn fake_tap() -> (File, std::os::unix::net::UnixDatagram) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for two descriptors; checked.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: both descriptors are fresh and ours.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let peer = std::os::unix::net::UnixDatagram::from(b);
        peer.set_nonblocking(false).expect("blocking peer");
        (File::from(a), peer)
    }

    fn queue(m: &GuestMem, base: u64) -> Queue {
        let mut q = Queue::new(QS).expect("queue");
        q.set_size(QS);
        q.set_desc_table_address(Some(base as u32), Some(0));
        q.set_avail_ring_address(Some((base + 0x1000) as u32), Some(0));
        q.set_used_ring_address(Some((base + 0x2000) as u32), Some(0));
        q.set_ready(true);
        assert!(q.is_valid(m));
        q
    }

    fn post(m: &GuestMem, base: u64, i: u16, addr: u64, len: u32, flags: u16) {
        let d = base + u64::from(i) * 16;
        m.write_obj(addr, GuestAddress(d)).expect("addr");
        m.write_obj(len, GuestAddress(d + 8)).expect("len");
        m.write_obj(flags, GuestAddress(d + 12)).expect("flags");
        m.write_obj(i, GuestAddress(base + 0x1000 + 4 + u64::from(i) * 2))
            .expect("ring");
        m.write_obj(i + 1, GuestAddress(base + 0x1000 + 2))
            .expect("idx");
    }

    fn used_idx(m: &GuestMem, base: u64) -> u16 {
        m.read_obj(GuestAddress(base + 0x2000 + 2)).expect("used")
    }

    #[test]
    fn frames_flow_both_ways_and_the_limiter_paces_them() {
        let m = GuestMem::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("mem");
        let (tap, peer) = fake_tap();
        let mut dev = Net::new(tap, [0x52, 0x54, 0, 0, 0, 1]).expect("net");
        let (rxb, txb) = (0x10000u64, 0x20000u64);
        let mut queues = vec![queue(&m, rxb), queue(&m, txb)];

        // Host to guest: a frame lands after a zero header, num_buffers 1.
        post(&m, rxb, 0, 0x40000, 2048, 2);
        peer.send(&[0xabu8; 60]).expect("send");
        let mask = dev.process_events(&mut queues, &m, true).expect("rx");
        assert_eq!(mask & 1, 1);
        assert_eq!(used_idx(&m, rxb), 1);
        let mut got = [0u8; 72];
        m.read_slice(&mut got, GuestAddress(0x40000)).expect("read");
        assert_eq!(got[10], 1, "num_buffers");
        assert!(got[..10].iter().all(|b| *b == 0));
        assert!(got[12..].iter().all(|b| *b == 0xab));

        // Guest to host at 100 frames/s (burst 1): 21 frames take 200 ms.
        if let Ok(mut l) = dev.rate_limiter().lock() {
            *l = RateLimiter::new(&RateLimiterConfig {
                bandwidth: None,
                ops: Some(BucketConfig {
                    rate: 100,
                    burst: Some(1),
                }),
            });
        }
        for i in 0..21u16 {
            m.write_slice(
                &[0u8; NET_HDR_SIZE],
                GuestAddress(0x50000 + u64::from(i) * 0x100),
            )
            .expect("hdr");
            m.write_slice(
                &[i as u8; 100],
                GuestAddress(0x50000 + u64::from(i) * 0x100 + 12),
            )
            .expect("frame");
            post(&m, txb, i, 0x50000 + u64::from(i) * 0x100, 112, 0);
        }
        let t = Instant::now();
        while used_idx(&m, txb) < 21 && t.elapsed() < Duration::from_secs(3) {
            dev.process_events(&mut queues, &m, true).expect("tx");
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = t.elapsed();
        assert_eq!(used_idx(&m, txb), 21);
        assert!(
            took >= Duration::from_millis(180) && took < Duration::from_millis(600),
            "{took:?}"
        );
        let mut buf = [0u8; 2048];
        for i in 0..21u8 {
            let n = peer.recv(&mut buf).expect("frame");
            assert_eq!(n, 100);
            assert_eq!(buf[0], i, "in order");
        }
        assert!(dev.metrics().throttled.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("52:54:00:12:34:56"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(parse_mac("01:00:00:00:00:00"), None, "multicast");
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("zz:54:00:12:34:56"), None);
    }
}
