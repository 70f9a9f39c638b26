//! virtio-blk on a raw image file (virtio 1.2, section 5.2).
//!
//! Requests are parsed from descriptor chains with virtio-queue's
//! `Reader`/`Writer`, which refuse descriptors outside guest memory; data
//! moves between the file and guest memory in bounded chunks, so a guest
//! cannot make the VMM allocate more than one chunk per request.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT, Reader, Writer};
use vm_memory::GuestMemory;

use super::{GuestMem, QueueError, VirtioDevice};

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
#[derive(Debug, Default)]
pub struct BlockMetrics {
    /// Read requests completed.
    pub reads: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Write requests completed.
    pub writes: AtomicU64,
    /// Bytes written.
    pub write_bytes: AtomicU64,
    /// Flushes.
    pub flushes: AtomicU64,
    /// Requests that failed (bad chain, out of range, I/O error, read-only).
    pub errors: AtomicU64,
}

/// A block device.
pub struct Block {
    file: File,
    read_only: bool,
    sectors: u64,
    id: [u8; ID_BYTES],
    queue_sizes: [u16; 1],
    metrics: Arc<BlockMetrics>,
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
        })
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
                self.metrics.reads.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .read_bytes
                    .fetch_add(len as u64, Ordering::Relaxed);
                Ok(len)
            }
            VIRTIO_BLK_T_OUT => {
                if self.read_only {
                    return Err(RequestError::ReadOnly);
                }
                let len = reader.available_bytes();
                let offset = self.check_range(sector, len)?;
                self.copy_from_guest(offset, len, reader)?;
                self.metrics.writes.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .write_bytes
                    .fetch_add(len as u64, Ordering::Relaxed);
                Ok(0)
            }
            VIRTIO_BLK_T_FLUSH => {
                if !self.read_only {
                    self.file.sync_data()?;
                }
                self.metrics.flushes.fetch_add(1, Ordering::Relaxed);
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
        if len as u64 % SECTOR_SIZE != 0 {
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
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = offset
                .checked_add(i as u64)
                .and_then(|o| config.get(o as usize))
                .copied()
                .unwrap_or(0);
        }
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
            // Collect what is available first: the iterator borrows the queue.
            let chains: Vec<_> = queue.iter(mem).map_err(ring)?.collect();
            if chains.is_empty() {
                return Ok(used_any);
            }
            for chain in chains {
                let head = chain.head_index();
                let len = self.handle_chain(mem, chain);
                queue.add_used(mem, head, len).map_err(ring)?;
                used_any = true;
            }
        }
    }
}
