//! virtio-vsock (device ID 19) in Firecracker's "hybrid" model: the VMM is
//! the host end of every guest stream socket and maps it to a Unix socket.
//!
//! - Guest `connect(CID 2, port P)`: the device connects to the Unix socket
//!   `<uds_path>_P`; refused (nobody listening, backlog full) becomes a
//!   reset (`ECONNRESET` in the guest).
//! - Host connects to `<uds_path>` and writes `CONNECT P\n`: the device asks
//!   the guest to connect to its port P from a fresh host port H (2^30 and
//!   up); when the guest accepts, the host reads `OK H\n` and then the
//!   stream; when it refuses (or does not answer in 2 s) the host socket is
//!   closed without an `OK`.
//!
//! After that each side's bytes reach the other in order. Flow control is
//! virtio's credit scheme: the device reads from a host socket only while
//! the guest has advertised room for it, and tells the guest how much room
//! it has for guest data ([`TX_BUF_ALLOC`] per connection, buffered while
//! the host socket is not writable). Half-close works both ways: host EOF
//! becomes a SHUTDOWN(SEND) to the guest; a guest SHUTDOWN(SEND) becomes
//! `shutdown(SHUT_WR)` on the host socket once buffered data is out; a
//! guest SHUTDOWN of both directions (its `close()`) is answered with a
//! reset once buffered data is out, and the host socket is closed. A host
//! socket that fails (EPIPE, ECONNRESET) resets the guest side.
//!
//! Everything runs on the device's event thread: an epoll set holds the
//! listener, the host sockets and the queue-notify eventfd (KVM signals it
//! on QueueNotify, so the vCPU does not leave the kernel for it).

pub mod packet;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueOwnedT, QueueT, Reader, Writer};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::{GuestMem, QueueError, VirtioDevice};
use crate::metrics::DeviceMetrics;
use packet::*;

/// virtio device ID of a socket device.
pub const DEVICE_ID: u32 = 19;
/// Queue size offered (rx, tx, event).
pub const QUEUE_SIZE: u16 = 256;
/// Receive buffer the device advertises per connection (guest to host data
/// it holds while the host socket is slow).
pub const TX_BUF_ALLOC: u32 = 256 * 1024;
/// Largest payload the device puts in one packet to the guest, and accepts
/// in one packet from it.
pub const MAX_PKT_PAYLOAD: usize = 64 * 1024;
/// Most connections at once; more are refused.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most host connections still waiting for their `CONNECT` line.
pub const MAX_PENDING: usize = 64;
/// First host port given to host-initiated connections.
pub const FIRST_HOST_PORT: u32 = 1 << 30;
/// How long a host-initiated connection waits for the guest to accept.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a host connection may take to send its `CONNECT` line.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing connection may take to flush to a host that does not
/// read before it is reset.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

const RXQ: usize = 0;
const TXQ: usize = 1;
const TOKEN_LISTENER: u64 = u64::MAX;
const TOKEN_NOTIFY: u64 = u64::MAX - 1;
const TOKEN_KICK: u64 = u64::MAX - 2;

/// A connection is known by (host port, guest port).
type Key = (u32, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Host-initiated, REQUEST sent, waiting for the guest's RESPONSE.
    Connecting,
    /// Data flows.
    Established,
}

struct Conn {
    stream: UnixStream,
    state: State,
    since: Instant,
    /// Guest-to-host bytes not yet written to the host socket.
    tx_buf: VecDeque<u8>,
    /// Bytes at the front of `tx_buf` that are the device's own (the `OK`
    /// line), not guest data: they do not count in `fwd_cnt`.
    tx_own: usize,
    /// Bytes of guest data written to the host socket, ever (wrapping).
    fwd_cnt: u32,
    /// `fwd_cnt` as last told to the guest.
    fwd_cnt_sent: u32,
    /// Host-to-guest payload bytes sent, ever (wrapping).
    rx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// The guest will send no more.
    peer_no_send: bool,
    /// The guest will receive no more.
    peer_no_recv: bool,
    /// The host socket reached EOF (SHUTDOWN(SEND) queued to the guest).
    host_eof: bool,
    /// `shutdown(SHUT_WR)` done on the host socket.
    host_wr_closed: bool,
    /// A credit request went to the guest and no update came back yet.
    credit_requested: bool,
    /// Queued in `rx_ready`.
    in_rx_ready: bool,
    /// Epoll events registered (0: not in the set).
    registered: u32,
}

impl Conn {
    fn new(stream: UnixStream, state: State) -> Self {
        Conn {
            stream,
            state,
            since: Instant::now(),
            tx_buf: VecDeque::new(),
            tx_own: 0,
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            rx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            peer_no_send: false,
            peer_no_recv: false,
            host_eof: false,
            host_wr_closed: false,
            credit_requested: false,
            in_rx_ready: false,
            registered: 0,
        }
    }

    /// Bytes the guest can still take.
    fn peer_credit(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn wants_read(&self) -> bool {
        self.state == State::Established
            && !self.host_eof
            && !self.peer_no_recv
            && self.peer_credit() > 0
    }
}

/// A host connection that has not sent its `CONNECT <port>\n` line yet.
struct Pending {
    stream: UnixStream,
    since: Instant,
}

/// The vsock device.
pub struct Vsock {
    cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    kick: EventFd,
    notifier: Option<EventFd>,
    conns: HashMap<Key, Conn>,
    by_fd: HashMap<RawFd, Key>,
    pending: HashMap<RawFd, Pending>,
    /// Control packets for the guest, oldest first.
    rx_ctrl: VecDeque<Header>,
    /// Connections that may have host data for the guest.
    rx_ready: VecDeque<Key>,
    /// The rx queue ran out of buffers; wait for the guest's notify.
    rx_starved: bool,
    next_host_port: u32,
    scratch: Vec<u8>,
    queue_sizes: [u16; 3],
    metrics: Arc<DeviceMetrics>,
}

/// Why the device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The host socket or an fd could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// Cause.
        source: io::Error,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> VsockError {
    move |source| VsockError::Io { what, source }
}

impl Vsock {
    /// A device for guest `cid` listening on `uds_path` (an existing
    /// socket file there is replaced).
    pub fn new(cid: u64, uds_path: &Path) -> Result<Self, VsockError> {
        let _ = std::fs::remove_file(uds_path);
        let listener = UnixListener::bind(uds_path).map_err(io_err("binding the socket"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("non-blocking listener"))?;
        let epoll = Epoll::new().map_err(io_err("epoll"))?;
        let kick = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("eventfd"))?;
        epoll
            .ctl(
                ControlOperation::Add,
                listener.as_raw_fd(),
                EpollEvent::new(EventSet::IN, TOKEN_LISTENER),
            )
            .map_err(io_err("epoll add"))?;
        epoll
            .ctl(
                ControlOperation::Add,
                kick.as_raw_fd(),
                EpollEvent::new(EventSet::IN, TOKEN_KICK),
            )
            .map_err(io_err("epoll add"))?;
        Ok(Vsock {
            cid,
            uds_path: uds_path.to_path_buf(),
            listener,
            epoll,
            kick,
            notifier: None,
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            pending: HashMap::new(),
            rx_ctrl: VecDeque::new(),
            rx_ready: VecDeque::new(),
            rx_starved: false,
            next_host_port: FIRST_HOST_PORT,
            scratch: vec![0; MAX_PKT_PAYLOAD],
            queue_sizes: [QUEUE_SIZE; 3],
            metrics: Arc::new(DeviceMetrics::default()),
        })
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<DeviceMetrics> {
        self.metrics.clone()
    }

    /// The guest's context id.
    pub fn guest_cid(&self) -> u64 {
        self.cid
    }

    /// Open connections (established or connecting).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn header(&self, key: Key, op: u16) -> Header {
        let fwd = self.conns.get(&key).map_or(0, |c| c.fwd_cnt);
        Header {
            src_cid: HOST_CID,
            dst_cid: self.cid,
            src_port: key.0,
            dst_port: key.1,
            len: 0,
            kind: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: TX_BUF_ALLOC,
            fwd_cnt: fwd,
        }
    }

    fn queue_ctrl(&mut self, key: Key, op: u16, flags: u32) {
        let mut h = self.header(key, op);
        h.flags = flags;
        if let Some(c) = self.conns.get_mut(&key) {
            c.fwd_cnt_sent = c.fwd_cnt;
        }
        self.rx_ctrl.push_back(h);
    }

    /// A reset for a packet that belongs to no connection.
    fn reset_reply(&mut self, h: &Header) {
        if h.op == OP_RST {
            return;
        }
        self.rx_ctrl.push_back(Header {
            src_cid: HOST_CID,
            dst_cid: h.src_cid,
            src_port: h.dst_port,
            dst_port: h.src_port,
            len: 0,
            kind: TYPE_STREAM,
            op: OP_RST,
            flags: 0,
            buf_alloc: TX_BUF_ALLOC,
            fwd_cnt: 0,
        });
    }

    /// Drops a connection (closing its host socket) and tells the guest.
    fn reset(&mut self, key: Key) {
        if self.conns.contains_key(&key) {
            self.queue_ctrl(key, OP_RST, 0);
            self.remove(key);
        }
    }

    fn remove(&mut self, key: Key) {
        if let Some(c) = self.conns.remove(&key) {
            let fd = c.stream.as_raw_fd();
            if c.registered != 0 {
                let _ = self
                    .epoll
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default());
            }
            self.by_fd.remove(&fd);
            self.metrics
                .connections
                .store(self.conns.len() as u64, Ordering::Relaxed);
        }
    }

    fn insert(&mut self, key: Key, conn: Conn) {
        self.by_fd.insert(conn.stream.as_raw_fd(), key);
        self.conns.insert(key, conn);
        self.metrics
            .connections
            .store(self.conns.len() as u64, Ordering::Relaxed);
    }

    /// Makes the epoll registration of `key` match what it waits for.
    fn update_interest(&mut self, key: Key) {
        let starved = self.rx_starved;
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let mut want = 0u32;
        if c.wants_read() && !starved && !c.in_rx_ready {
            want |= EventSet::IN.bits();
        }
        if !c.tx_buf.is_empty() {
            want |= EventSet::OUT.bits();
        }
        if want == c.registered {
            return;
        }
        let fd = c.stream.as_raw_fd();
        let token = fd as u64;
        let r = match (c.registered, want) {
            (_, 0) => self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default()),
            (0, w) => self.epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::from_bits_truncate(w), token),
            ),
            (_, w) => self.epoll.ctl(
                ControlOperation::Modify,
                fd,
                EpollEvent::new(EventSet::from_bits_truncate(w), token),
            ),
        };
        if r.is_ok() {
            c.registered = want;
        }
    }

    fn update_all_interest(&mut self) {
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        for k in keys {
            self.update_interest(k);
        }
    }

    fn alloc_host_port(&mut self) -> u32 {
        loop {
            let p = self.next_host_port;
            self.next_host_port = self.next_host_port.wrapping_add(1).max(FIRST_HOST_PORT);
            if !self.conns.keys().any(|k| k.0 == p) {
                return p;
            }
        }
    }

    // ------------------------------------------------------------ host side

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.pending.len() >= MAX_PENDING
                        || self.conns.len() >= MAX_CONNECTIONS
                        || stream.set_nonblocking(true).is_err()
                    {
                        continue; // dropped: the client sees EOF
                    }
                    let fd = stream.as_raw_fd();
                    if self
                        .epoll
                        .ctl(
                            ControlOperation::Add,
                            fd,
                            EpollEvent::new(EventSet::IN, fd as u64),
                        )
                        .is_ok()
                    {
                        self.pending.insert(
                            fd,
                            Pending {
                                stream,
                                since: Instant::now(),
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// Reads the `CONNECT <port>\n` line of a pending host connection
    /// (peeking first, so bytes after the line stay in the socket for the
    /// guest).
    fn handshake(&mut self, fd: RawFd, active: bool) {
        let Some(p) = self.pending.get(&fd) else {
            return;
        };
        let mut peek = [0u8; 64];
        // SAFETY: `fd` is the pending stream's open socket; `peek` is
        // writable for its length.
        let n = unsafe {
            libc::recv(
                fd,
                peek.as_mut_ptr().cast(),
                peek.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                return;
            }
            self.drop_pending(fd);
            return;
        }
        let n = n as usize;
        let Some(nl) = peek[..n].iter().position(|b| *b == b'\n') else {
            if n == 0 || n == peek.len() {
                self.drop_pending(fd); // EOF, or a line too long to be ours
            }
            return;
        };
        let mut line = vec![0u8; nl + 1];
        let mut stream = &p.stream;
        if stream.read_exact(&mut line).is_err() {
            self.drop_pending(fd);
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let port = text
            .trim()
            .strip_prefix("CONNECT ")
            .and_then(|p| p.trim().parse::<u32>().ok());
        let (Some(port), true) = (port, active) else {
            // Not our protocol, or no driver in the guest to connect to.
            self.drop_pending(fd);
            return;
        };
        let Some(p) = self.pending.remove(&fd) else {
            return;
        };
        let _ = self
            .epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default());
        let key = (self.alloc_host_port(), port);
        self.insert(key, Conn::new(p.stream, State::Connecting));
        self.queue_ctrl(key, OP_REQUEST, 0);
    }

    fn drop_pending(&mut self, fd: RawFd) {
        if self.pending.remove(&fd).is_some() {
            let _ = self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default());
        }
    }

    /// Writes buffered guest data to the host socket; true if the
    /// connection survived.
    fn flush_tx(&mut self, key: Key) -> bool {
        let Some(c) = self.conns.get_mut(&key) else {
            return false;
        };
        while !c.tx_buf.is_empty() {
            let (a, _) = c.tx_buf.as_slices();
            match (&c.stream).write(a) {
                Ok(0) => break,
                Ok(n) => {
                    c.tx_buf.drain(..n);
                    let own = n.min(c.tx_own);
                    c.tx_own -= own;
                    c.fwd_cnt = c.fwd_cnt.wrapping_add((n - own) as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.reset(key);
                    return false;
                }
            }
        }
        let drained = c.tx_buf.is_empty();
        if drained && c.peer_no_send && !c.host_wr_closed {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
            c.host_wr_closed = true;
        }
        if drained && c.peer_no_send && c.peer_no_recv {
            // The guest closed and everything it sent is out: done.
            self.reset(key);
            return false;
        }
        // Tell the guest about freed room when a good part of its window
        // came back or the buffer emptied.
        let freed = c.fwd_cnt.wrapping_sub(c.fwd_cnt_sent);
        if freed > 0 && (drained || freed >= TX_BUF_ALLOC / 4) && !c.peer_no_send {
            self.queue_ctrl(key, OP_CREDIT_UPDATE, 0);
        }
        true
    }

    // ----------------------------------------------------------- guest side

    /// Handles one packet the guest sent.
    fn handle_tx(&mut self, h: Header, payload: &[u8]) {
        if h.src_cid != self.cid || h.dst_cid != HOST_CID {
            self.metrics.error();
            return; // not ours to answer
        }
        if h.kind != TYPE_STREAM {
            self.metrics.error();
            self.reset_reply(&h);
            return;
        }
        let key = (h.dst_port, h.src_port);
        if h.op == OP_REQUEST {
            self.guest_connect(key, &h);
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            self.reset_reply(&h);
            return;
        };
        let could_read = c.wants_read();
        c.peer_buf_alloc = h.buf_alloc;
        c.peer_fwd_cnt = h.fwd_cnt;
        if c.peer_credit() > 0 {
            c.credit_requested = false;
        }
        match (c.state, h.op) {
            (State::Connecting, OP_RESPONSE) => {
                c.state = State::Established;
                c.since = Instant::now();
                let ok = format!("OK {}\n", key.0);
                c.tx_buf.extend(ok.as_bytes());
                c.tx_own += ok.len();
                self.flush_tx(key);
            }
            (State::Connecting, OP_RST) => self.remove(key),
            (State::Connecting, _) => self.reset(key),
            (State::Established, OP_RW) => {
                if c.peer_no_send || c.tx_buf.len() + payload.len() > TX_BUF_ALLOC as usize {
                    // Sent after its own shutdown, or past the credit we
                    // gave: a broken peer.
                    self.metrics.error();
                    self.reset(key);
                    return;
                }
                self.metrics.write(payload.len() as u64);
                c.tx_buf.extend(payload);
                self.flush_tx(key);
            }
            (State::Established, OP_CREDIT_UPDATE) => {}
            (State::Established, OP_CREDIT_REQUEST) => self.queue_ctrl(key, OP_CREDIT_UPDATE, 0),
            (State::Established, OP_SHUTDOWN) => {
                c.peer_no_recv |= h.flags & SHUTDOWN_RCV != 0;
                c.peer_no_send |= h.flags & SHUTDOWN_SEND != 0;
                c.since = Instant::now();
                self.flush_tx(key);
            }
            (State::Established, OP_RST) => self.remove(key),
            (State::Established, _) => {
                self.metrics.error();
                self.reset(key);
            }
        }
        if let Some(c) = self.conns.get(&key)
            && !could_read
            && c.wants_read()
        {
            self.mark_rx_ready(key);
        }
    }

    fn guest_connect(&mut self, key: Key, h: &Header) {
        if self.conns.contains_key(&key) {
            // A second request on a live connection: reset both.
            self.reset(key);
            return;
        }
        if self.conns.len() >= MAX_CONNECTIONS {
            self.reset_reply(h);
            return;
        }
        let path = format!("{}_{}", self.uds_path.display(), key.0);
        match connect_nonblocking(Path::new(&path)) {
            Ok(stream) => {
                let mut c = Conn::new(stream, State::Established);
                c.peer_buf_alloc = h.buf_alloc;
                c.peer_fwd_cnt = h.fwd_cnt;
                self.insert(key, c);
                self.queue_ctrl(key, OP_RESPONSE, 0);
                self.mark_rx_ready(key);
            }
            Err(_) => self.reset_reply(h),
        }
    }

    fn mark_rx_ready(&mut self, key: Key) {
        if let Some(c) = self.conns.get_mut(&key)
            && !c.in_rx_ready
        {
            c.in_rx_ready = true;
            self.rx_ready.push_back(key);
        }
    }

    /// Serves the tx queue: every packet the guest made available.
    fn process_tx(&mut self, q: &mut Queue, mem: &GuestMem) -> Result<bool, QueueError> {
        let ring = |source| QueueError::Ring { queue: TXQ, source };
        let mut used = false;
        while let Some(chain) = q.iter(mem).map_err(ring)?.next() {
            let head = chain.head_index();
            match Reader::new(mem, chain) {
                Ok(mut r) => {
                    let mut hb = [0u8; HDR_SIZE];
                    if r.read_exact(&mut hb).is_ok() {
                        let h = Header::from_bytes(&hb);
                        let len = h.len as usize;
                        if len > MAX_PKT_PAYLOAD || len > r.available_bytes() {
                            self.metrics.error();
                            self.reset_reply(&h);
                        } else {
                            let mut buf = std::mem::take(&mut self.scratch);
                            if r.read_exact(&mut buf[..len]).is_ok() {
                                self.handle_tx(h, &buf[..len]);
                            } else {
                                self.metrics.error();
                            }
                            self.scratch = buf;
                        }
                    } else {
                        self.metrics.error();
                    }
                }
                Err(_) => self.metrics.error(),
            }
            q.add_used(mem, head, 0).map_err(ring)?;
            used = true;
        }
        Ok(used)
    }

    /// Fills guest rx buffers: control packets first, then data from the
    /// host sockets, round robin.
    fn process_rx(&mut self, q: &mut Queue, mem: &GuestMem) -> Result<bool, QueueError> {
        let ring = |source| QueueError::Ring { queue: RXQ, source };
        let mut used = false;
        while !self.rx_ctrl.is_empty() || !self.rx_ready.is_empty() {
            let Some(chain) = q.iter(mem).map_err(ring)?.next() else {
                self.rx_starved = true;
                break;
            };
            let head = chain.head_index();
            let mut w = match Writer::new(mem, chain) {
                Ok(w) if w.available_bytes() >= HDR_SIZE => w,
                _ => {
                    // A buffer we cannot write a header into: give it back
                    // empty (the guest's problem) and go on.
                    self.metrics.error();
                    q.add_used(mem, head, 0).map_err(ring)?;
                    used = true;
                    continue;
                }
            };
            if let Some(h) = self.rx_ctrl.pop_front() {
                let n = if w.write_all(&h.to_bytes()).is_ok() {
                    HDR_SIZE as u32
                } else {
                    0
                };
                q.add_used(mem, head, n).map_err(ring)?;
                used = true;
                continue;
            }
            let room = (w.available_bytes() - HDR_SIZE).min(MAX_PKT_PAYLOAD);
            match self.read_host(room) {
                Some((h, n)) => {
                    let mut ok = w.write_all(&h.to_bytes()).is_ok();
                    ok &= w.write_all(&self.scratch[..n]).is_ok();
                    if !ok {
                        self.metrics.error();
                    }
                    let len = if ok { (HDR_SIZE + n) as u32 } else { 0 };
                    q.add_used(mem, head, len).map_err(ring)?;
                    used = true;
                }
                None => {
                    // Nothing to send after all: give the buffer back.
                    q.set_next_avail(q.next_avail().wrapping_sub(1));
                }
            }
        }
        Ok(used)
    }

    /// Reads up to `room` bytes from the next ready host socket into
    /// `scratch`; returns the RW header to send, or queues whatever
    /// control packet the read called for and returns None when no data
    /// is ready anywhere.
    fn read_host(&mut self, room: usize) -> Option<(Header, usize)> {
        while let Some(key) = self.rx_ready.pop_front() {
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            c.in_rx_ready = false;
            if !c.wants_read() {
                if c.state == State::Established
                    && c.peer_credit() == 0
                    && !c.credit_requested
                    && !c.host_eof
                    && !c.peer_no_recv
                {
                    c.credit_requested = true;
                    self.queue_ctrl(key, OP_CREDIT_REQUEST, 0);
                }
                self.update_interest(key);
                continue;
            }
            let max = room.min(c.peer_credit() as usize);
            let r = (&c.stream).read(&mut self.scratch[..max]);
            match r {
                Ok(0) => {
                    c.host_eof = true;
                    self.queue_ctrl(key, OP_SHUTDOWN, SHUTDOWN_SEND);
                    self.update_interest(key);
                }
                Ok(n) => {
                    c.rx_cnt = c.rx_cnt.wrapping_add(n as u32);
                    // More may wait: back of the line, for fairness.
                    c.in_rx_ready = true;
                    self.rx_ready.push_back(key);
                    let mut h = self.header(key, OP_RW);
                    h.len = n as u32;
                    if let Some(c) = self.conns.get_mut(&key) {
                        c.fwd_cnt_sent = c.fwd_cnt;
                    }
                    self.metrics.read(n as u64);
                    return Some((h, n));
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    self.update_interest(key);
                }
                Err(_) => self.reset(key),
            }
            if !self.rx_ctrl.is_empty() {
                return None;
            }
        }
        None
    }

    fn expire(&mut self, now: Instant) {
        let stale: Vec<RawFd> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) > HANDSHAKE_TIMEOUT)
            .map(|(fd, _)| *fd)
            .collect();
        for fd in stale {
            self.drop_pending(fd);
        }
        let dead: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| match c.state {
                State::Connecting => now.duration_since(c.since) > CONNECT_TIMEOUT,
                State::Established => {
                    c.peer_no_send && c.peer_no_recv && now.duration_since(c.since) > CLOSE_TIMEOUT
                }
            })
            .map(|(k, _)| *k)
            .collect();
        for k in dead {
            self.reset(k);
        }
    }

    /// One round of work: host events, the guest's packets, packets for the
    /// guest. Returns the queues that got used buffers.
    fn run(
        &mut self,
        queues: &mut [Queue],
        mem: &GuestMem,
        active: bool,
    ) -> Result<u32, QueueError> {
        let mut events = [EpollEvent::default(); 64];
        let n = self.epoll.wait(0, &mut events).unwrap_or(0);
        for ev in &events[..n] {
            match ev.data() {
                TOKEN_LISTENER => self.accept_all(),
                TOKEN_NOTIFY => {
                    if let Some(e) = &self.notifier {
                        let _ = e.read();
                    }
                    self.rx_starved = false;
                }
                TOKEN_KICK => {
                    let _ = self.kick.read();
                    self.rx_starved = false;
                }
                token => {
                    let fd = token as RawFd;
                    if self.pending.contains_key(&fd) {
                        self.handshake(fd, active);
                    } else if let Some(&key) = self.by_fd.get(&fd) {
                        let set = ev.event_set();
                        if set.contains(EventSet::OUT) && !self.flush_tx(key) {
                            continue;
                        }
                        if set.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR) {
                            self.mark_rx_ready(key);
                        }
                    }
                }
            }
        }
        self.expire(Instant::now());
        if !active {
            // No driver: nothing can be delivered; drop connections (the
            // guest reset its device and forgot them).
            if !self.conns.is_empty() {
                let keys: Vec<Key> = self.conns.keys().copied().collect();
                for k in keys {
                    self.remove(k);
                }
            }
            self.rx_ctrl.clear();
            self.rx_ready.clear();
            return Ok(0);
        }
        let mut mask = 0;
        if let Some(q) = queues.get_mut(TXQ)
            && q.ready()
            && self.process_tx(q, mem)?
        {
            mask |= 1 << TXQ;
        }
        if let Some(q) = queues.get_mut(RXQ)
            && q.ready()
            && self.process_rx(q, mem)?
        {
            mask |= 1 << RXQ;
        }
        self.update_all_interest();
        Ok(mask)
    }

    /// Runs one round of work now, as after a queue notification (for
    /// tests and benchmarks that drive the device without an event thread).
    pub fn poll_once(&mut self, queues: &mut [Queue], mem: &GuestMem) -> Result<u32, QueueError> {
        self.rx_starved = false;
        self.run(queues, mem, true)
    }
}

/// Connects to a Unix stream socket without blocking (a listener whose
/// backlog is full refuses instead of stalling the device).
fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; zeroed is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "path too long"));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un and `len` is within it.
    let rc = unsafe {
        libc::connect(
            owned.as_raw_fd(),
            (&raw const addr).cast(),
            len as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixStream::from(owned))
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        // Stream sockets only: no VIRTIO_VSOCK_F_SEQPACKET.
        0
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // guest_cid, le64 at offset 0.
        let config = self.cid.to_le_bytes();
        super::read_config_bytes(&config, offset, data);
    }

    fn process_queue(
        &mut self,
        _index: usize,
        _queue: &mut Queue,
        _mem: &GuestMem,
    ) -> Result<bool, QueueError> {
        // Without an ioeventfd the notify lands here, on the vCPU thread:
        // hand it to the event thread, which owns the work.
        let _ = self.kick.write(1);
        Ok(false)
    }

    fn reset(&mut self) {
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        for k in keys {
            self.remove(k);
        }
        self.rx_ctrl.clear();
        self.rx_ready.clear();
        self.rx_starved = false;
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
        self.run(queues, mem, active)
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

impl Drop for Vsock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}
