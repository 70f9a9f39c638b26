//! virtio-blk on a raw image file (virtio 1.2, section 5.2).
//!
//! Requests are parsed from descriptor chains with virtio-queue's
//! `Reader`/`Writer`, which refuse descriptors outside guest memory; data
//! moves between the file and guest memory in bounded chunks, so a guest
//! cannot make the VMM allocate more than one chunk per request.
//!
//! An optional [`RateLimiter`] caps bytes/s and requests/s: a request the
//! limiter refuses stays in the ring, a timer is armed for when it will be
//! allowed, and the device's event thread resumes the queue then, so the
//! vCPU is never blocked by the limit.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT, Reader, Writer};
use vm_memory::GuestMemory;

use super::{GuestMem, QueueError, VirtioDevice};
use crate::metrics::DeviceMetrics;
use crate::rate_limiter::{RateLimiter, Timer};

/// virtio device ID of a block device.
pub const DEVICE_ID: u32 = 2;
/// Sector size.
pub const SECTOR_SIZE: u64 = 512;
/// Queue size offered.
pub const QUEUE_SIZE: u16 = 256;

const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;

/// Request types.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Flush.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Get the device id.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;

/// Status: success.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: I/O error (also: write to a read-only disk).
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: unsupported request.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

const ID_BYTES: usize = 20;
const CHUNK: usize = 64 * 1024;

/// Counters a block device keeps (read by the metrics endpoint).
pub type BlockMetrics = DeviceMetrics;

/// Longest the device sleeps on a throttled queue before looking again
/// (so a limit raised through the API takes effect within this).
const MAX_THROTTLE_WAIT: Duration = Duration::from_millis(100);

/// A block device.
pub struct Block {
    file: File,
    read_only: bool,
    sectors: u64,
    id: [u8; ID_BYTES],
    queue_sizes: [u16; 1],
    metrics: Arc<BlockMetrics>,
    limiter: Arc<Mutex<RateLimiter>>,
    timer: Timer,
}

/// Why a request failed (the guest sees a status byte; the VMM counts it).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The chain does not describe a request (descriptors outside guest
    /// memory, missing header or status byte).
    #[error("malformed descriptor chain: {0}")]
    Chain(String),
    /// Sector range beyond the disk, or a length that is not whole sectors.
    #[error("request beyond the disk or not sector-aligned: sector {sector}, {len} bytes")]
    Range {
        /// First sector.
        sector: u64,
        /// Byte length.
        len: usize,
    },
    /// Write to a read-only disk.
    #[error("write to a read-only disk")]
    ReadOnly,
    /// The host file failed.
    #[error("host I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Unknown request type.
    #[error("unsupported request type {0}")]
    Unsupported(u32),
}

impl RequestError {
    fn status(&self) -> u8 {
        match self {
            RequestError::Unsupported(_) => VIRTIO_BLK_S_UNSUPP,
            _ => VIRTIO_BLK_S_IOERR,
        }
    }
}

impl Block {
    /// A block device on `file` (already opened read-write unless
    /// `read_only`).
    pub fn new(file: File, read_only: bool, id: Option<&str>) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        let mut id_bytes = [0u8; ID_BYTES];
        let id = id.unwrap_or("minicloud-disk");
        let n = id.len().min(ID_BYTES);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        Ok(Block {
            file,
            read_only,
            sectors: len / SECTOR_SIZE,
            id: id_bytes,
            queue_sizes: [QUEUE_SIZE],
            metrics: Arc::new(BlockMetrics::default()),
            limiter: Arc::new(Mutex::new(RateLimiter::default())),
            timer: Timer::new()?,
        })
    }

    /// The device's rate limiter (shared with the control API).
    pub fn rate_limiter(&self) -> Arc<Mutex<RateLimiter>> {
        self.limiter.clone()
    }

    /// Whether the limiter lets a request of `bytes` go now; if not, arms
    /// the timer for when it may.
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
                false
            }
        }
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<BlockMetrics> {
        self.metrics.clone()
    }

    /// Capacity in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Serves one chain; returns the number of bytes written into guest
    /// memory (the used length).
    pub fn handle_chain<M>(&mut self, mem: &GuestMem, chain: DescriptorChain<M>) -> u32
    where
        M: std::ops::Deref + Clone,
        M::Target: GuestMemory + Sized,
    {
        let mut reader = match Reader::new(mem, chain.clone()) {
            Ok(r) => r,
            Err(_) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                return 0;
            }
        };
        let mut writer = match Writer::new(mem, chain) {
            Ok(w) => w,
            Err(_) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                return 0;
            }
        };
        // The status byte is the last writable byte of the chain.
        let writable = writer.available_bytes();
        if writable == 0 {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        let mut status_writer = match writer.split_at(writable - 1) {
            Ok(s) => s,
            Err(_) => return 0,
        };
        let (status, data_written) = match self.execute(&mut reader, &mut writer) {
            Ok(n) => (VIRTIO_BLK_S_OK, n),
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                (e.status(), 0)
            }
        };
        if status_writer.write_all(&[status]).is_err() {
            return 0;
        }
        (data_written + 1) as u32
    }

    fn execute(
        &mut self,
        reader: &mut Reader<'_>,
        writer: &mut Writer<'_>,
    ) -> Result<usize, RequestError> {
        let mut header = [0u8; 16];
        reader
            .read_exact(&mut header)
            .map_err(|_| RequestError::Chain("no 16-byte request header".into()))?;
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or([0; 8]));
        match kind {
            VIRTIO_BLK_T_IN => {
                let len = writer.available_bytes();
                let offset = self.check_range(sector, len)?;
                self.copy_to_guest(offset, len, writer)?;
                self.metrics.read(len as u64);
                Ok(len)
            }
            VIRTIO_BLK_T_OUT => {
                if self.read_only {
                    return Err(RequestError::ReadOnly);
                }
                let len = reader.available_bytes();
                let offset = self.check_range(sector, len)?;
                self.copy_from_guest(offset, len, reader)?;
                self.metrics.write(len as u64);
                Ok(0)
            }
            VIRTIO_BLK_T_FLUSH => {
                if !self.read_only {
                    self.file.sync_data()?;
                }
                self.metrics.flush_ops.fetch_add(1, Ordering::Relaxed);
                Ok(0)
            }
            VIRTIO_BLK_T_GET_ID => {
                let n = writer.available_bytes().min(ID_BYTES);
                writer
                    .write_all(&self.id[..n])
                    .map_err(|e| RequestError::Chain(e.to_string()))?;
                Ok(n)
            }
            other => Err(RequestError::Unsupported(other)),
        }
    }

    fn check_range(&self, sector: u64, len: usize) -> Result<u64, RequestError> {
        let bad = || RequestError::Range { sector, len };
        if !(len as u64).is_multiple_of(SECTOR_SIZE) {
            return Err(bad());
        }
        let end = sector
            .checked_add(len as u64 / SECTOR_SIZE)
            .ok_or_else(bad)?;
        if end > self.sectors {
            return Err(bad());
        }
        sector.checked_mul(SECTOR_SIZE).ok_or_else(bad)
    }

    fn copy_to_guest(
        &self,
        mut offset: u64,
        len: usize,
        w: &mut Writer<'_>,
    ) -> Result<(), RequestError> {
        let mut buf = vec![0u8; len.min(CHUNK)];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            self.file.read_exact_at(&mut buf[..n], offset)?;
            w.write_all(&buf[..n])
                .map_err(|e| RequestError::Chain(e.to_string()))?;
            offset += n as u64;
            left -= n;
        }
        Ok(())
    }

    fn copy_from_guest(
        &self,
        mut offset: u64,
        len: usize,
        r: &mut Reader<'_>,
    ) -> Result<(), RequestError> {
        let mut buf = vec![0u8; len.min(CHUNK)];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            r.read_exact(&mut buf[..n])
                .map_err(|e| RequestError::Chain(e.to_string()))?;
            self.file.write_all_at(&buf[..n], offset)?;
            offset += n as u64;
            left -= n;
        }
        Ok(())
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        let mut f = VIRTIO_BLK_F_FLUSH;
        if self.read_only {
            f |= VIRTIO_BLK_F_RO;
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // Only `capacity` (le64 at offset 0) is defined by the features we
        // offer; the rest of the space reads as zero.
        let config = self.sectors.to_le_bytes();
        super::read_config_bytes(&config, offset, data);
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMem,
    ) -> Result<bool, QueueError> {
        let ring = |source| QueueError::Ring {
            queue: index,
            source,
        };
        let mut used_any = false;
        loop {
            let Some(chain) = queue.iter(mem).map_err(ring)?.next() else {
                return Ok(used_any);
            };
            // The request's size for the limiter: every descriptor's length
            // less the 16-byte header and the status byte.
            let total: u64 = chain.clone().map(|d| u64::from(d.len())).sum();
            if !self.admit(total.saturating_sub(17)) {
                // Leave it in the ring; the timer brings us back.
                queue.set_next_avail(queue.next_avail().wrapping_sub(1));
                return Ok(used_any);
            }
            let head = chain.head_index();
            let len = self.handle_chain(mem, chain);
            queue.add_used(mem, head, len).map_err(ring)?;
            used_any = true;
        }
    }

    fn event_fd(&self) -> Option<RawFd> {
        Some(self.timer.as_raw_fd())
    }

    fn process_events(
        &mut self,
        queues: &mut [Queue],
        mem: &GuestMem,
        active: bool,
    ) -> Result<u32, QueueError> {
        self.timer.clear();
        match queues.first_mut() {
            Some(q) if active && q.ready() => Ok(u32::from(self.process_queue(0, q, mem)?)),
            _ => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;
    use vm_memory::{Bytes, GuestAddress};

    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;
    const HDR: u64 = 0x4000;
    const DATA: u64 = 0x5000;
    const STATUS: u64 = 0x9000;
    const MEM: usize = 0x10_0000;
    const NEXT: u16 = 1;
    const WRITE: u16 = 2;

    struct Rig {
        mem: GuestMem,
        queue: Queue,
        dev: Block,
        file: File,
        avail_idx: u16,
    }

    fn rig(read_only: bool) -> Rig {
        let mem = GuestMem::from_ranges(&[(GuestAddress(0), MEM)]).expect("mem");
        let mut file = tempfile::tempfile().expect("tmp");
        file.set_len(64 * 512).expect("len");
        file.rewind().expect("rewind");
        let dev =
            Block::new(file.try_clone().expect("clone"), read_only, Some("vol-7")).expect("dev");
        let mut queue = Queue::new(16).expect("queue");
        queue.set_size(16);
        queue.set_desc_table_address(Some(DESC as u32), Some(0));
        queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        queue.set_used_ring_address(Some(USED as u32), Some(0));
        queue.set_ready(true);
        assert!(queue.is_valid(&mem));
        Rig {
            mem,
            queue,
            dev,
            file,
            avail_idx: 0,
        }
    }

    impl Rig {
        fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
            let base = GuestAddress(DESC + u64::from(i) * 16);
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&addr.to_le_bytes());
            b[8..12].copy_from_slice(&len.to_le_bytes());
            b[12..14].copy_from_slice(&flags.to_le_bytes());
            b[14..16].copy_from_slice(&next.to_le_bytes());
            self.mem.write_slice(&b, base).expect("desc");
        }

        fn header(&self, kind: u32, sector: u64) {
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&sector.to_le_bytes());
            self.mem.write_slice(&h, GuestAddress(HDR)).expect("hdr");
        }

        /// Makes chain `head` available and lets the device run.
        fn submit(&mut self, head: u16) -> Result<bool, QueueError> {
            let slot = AVAIL + 4 + u64::from(self.avail_idx % 16) * 2;
            self.mem.write_obj(head, GuestAddress(slot)).expect("ring");
            self.avail_idx = self.avail_idx.wrapping_add(1);
            self.mem
                .write_obj(self.avail_idx, GuestAddress(AVAIL + 2))
                .expect("idx");
            self.mem
                .write_obj(0xffu8, GuestAddress(STATUS))
                .expect("status");
            self.dev.process_queue(0, &mut self.queue, &self.mem)
        }

        fn status(&self) -> u8 {
            self.mem.read_obj(GuestAddress(STATUS)).expect("status")
        }

        fn last_used_len(&self) -> u32 {
            let idx: u16 = self.mem.read_obj(GuestAddress(USED + 2)).expect("used idx");
            let slot = USED + 4 + u64::from(idx.wrapping_sub(1) % 16) * 8;
            self.mem.read_obj(GuestAddress(slot + 4)).expect("len")
        }

        /// A three-descriptor request: header, data, status.
        fn request(&mut self, kind: u32, sector: u64, len: u32, data_flags: u16) -> u8 {
            self.header(kind, sector);
            self.desc(0, HDR, 16, NEXT, 1);
            self.desc(1, DATA, len, NEXT | data_flags, 2);
            self.desc(2, STATUS, 1, WRITE, 0);
            assert!(self.submit(0).expect("process"));
            self.status()
        }
    }

    #[test]
    fn write_then_read_round_trips_through_the_file() {
        let mut r = rig(false);
        let pattern: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        r.mem.write_slice(&pattern, GuestAddress(DATA)).expect("w");
        assert_eq!(r.request(VIRTIO_BLK_T_OUT, 3, 1024, 0), VIRTIO_BLK_S_OK);
        let mut on_disk = vec![0u8; 1024];
        r.file.read_exact_at(&mut on_disk, 3 * 512).expect("read");
        assert_eq!(on_disk, pattern);

        r.mem
            .write_slice(&[0u8; 1024], GuestAddress(DATA))
            .expect("clear");
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 3, 1024, WRITE), VIRTIO_BLK_S_OK);
        assert_eq!(r.last_used_len(), 1025);
        let mut back = vec![0u8; 1024];
        r.mem.read_slice(&mut back, GuestAddress(DATA)).expect("r");
        assert_eq!(back, pattern);
        assert_eq!(r.dev.metrics().write_bytes.load(Ordering::Relaxed), 1024);
    }

    #[test]
    fn read_only_disk_refuses_writes_with_ioerr() {
        let mut r = rig(true);
        r.mem
            .write_slice(&[0xaa; 512], GuestAddress(DATA))
            .expect("w");
        assert_eq!(r.request(VIRTIO_BLK_T_OUT, 0, 512, 0), VIRTIO_BLK_S_IOERR);
        let mut on_disk = [0u8; 512];
        r.file.read_exact_at(&mut on_disk, 0).expect("read");
        assert_eq!(on_disk, [0u8; 512], "nothing reached the file");
        assert_ne!(r.dev.features() & VIRTIO_BLK_F_RO, 0);
    }

    #[test]
    fn out_of_range_and_unaligned_requests_fail_cleanly() {
        let mut r = rig(false);
        assert_eq!(
            r.request(VIRTIO_BLK_T_IN, 64, 512, WRITE),
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            r.request(VIRTIO_BLK_T_IN, 63, 1024, WRITE),
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            r.request(VIRTIO_BLK_T_IN, u64::MAX, 512, WRITE),
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(r.request(VIRTIO_BLK_T_OUT, 0, 100, 0), VIRTIO_BLK_S_IOERR);
        assert_eq!(r.request(99, 0, 512, 0), VIRTIO_BLK_S_UNSUPP);
        // And the device still serves good requests.
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, 512, WRITE), VIRTIO_BLK_S_OK);
    }

    #[test]
    fn descriptors_outside_guest_memory_are_refused() {
        let mut r = rig(false);
        r.header(VIRTIO_BLK_T_IN, 0);
        r.desc(0, HDR, 16, NEXT, 1);
        r.desc(1, MEM as u64 - 100, 4096, NEXT | WRITE, 2);
        r.desc(2, STATUS, 1, WRITE, 0);
        assert!(r.submit(0).expect("process"));
        assert_eq!(r.last_used_len(), 0);
        assert_eq!(r.status(), 0xff, "nothing written for a bad chain");
        r.desc(1, u64::MAX - 10, 512, NEXT | WRITE, 2);
        assert!(r.submit(0).expect("process"));
        assert_eq!(r.last_used_len(), 0);
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, 512, WRITE), VIRTIO_BLK_S_OK);
    }

    #[test]
    fn chains_without_header_or_status_are_refused() {
        let mut r = rig(false);
        // Only a writable status byte: no header to read.
        r.desc(0, STATUS, 1, WRITE, 0);
        assert!(r.submit(0).expect("process"));
        assert_eq!(r.status(), VIRTIO_BLK_S_IOERR);
        // Only a readable header: nowhere to put the status.
        r.header(VIRTIO_BLK_T_FLUSH, 0);
        r.desc(0, HDR, 16, 0, 0);
        assert!(r.submit(0).expect("process"));
        assert_eq!(r.last_used_len(), 0);
        // A descriptor loop: virtio-queue cuts the chain at the queue size,
        // so the request is bounded and served (here as a flush).
        r.desc(0, HDR, 16, NEXT, 1);
        r.desc(1, DATA, 512, NEXT | WRITE, 0);
        assert!(r.submit(0).expect("process"));
        assert!(r.last_used_len() <= 1);
        assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, 0, WRITE), VIRTIO_BLK_S_OK);
    }

    #[test]
    fn garbage_avail_index_is_a_ring_error_not_a_crash() {
        let mut r = rig(false);
        r.mem
            .write_obj(500u16, GuestAddress(AVAIL + 2))
            .expect("idx");
        assert!(matches!(
            r.dev.process_queue(0, &mut r.queue, &r.mem),
            Err(QueueError::Ring { .. })
        ));
    }

    #[test]
    fn get_id_returns_the_serial() {
        let mut r = rig(false);
        assert_eq!(
            r.request(VIRTIO_BLK_T_GET_ID, 0, 20, WRITE),
            VIRTIO_BLK_S_OK
        );
        let mut id = [0u8; 5];
        r.mem.read_slice(&mut id, GuestAddress(DATA)).expect("r");
        assert_eq!(&id, b"vol-7");
    }

    #[test]
    fn config_space_holds_capacity() {
        let r = rig(false);
        let mut cap = [0u8; 8];
        r.dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 64);
        let mut past = [0xffu8; 4];
        r.dev.read_config(u64::MAX - 1, &mut past);
        assert_eq!(past, [0; 4]);
    }
}
