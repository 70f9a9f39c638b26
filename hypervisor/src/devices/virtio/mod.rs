//! virtio devices and their MMIO transport.
//!
//! Devices implement [`VirtioDevice`]; [`mmio::MmioTransport`] exposes one
//! to the guest through the virtio-mmio version 2 register layout. Queues are
//! `virtio_queue::Queue`, so descriptor and ring handling (and its checks
//! against guest memory) comes from rust-vmm.
//!
//! Two ways work reaches a device: a guest QueueNotify served on the vCPU
//! thread ([`VirtioDevice::process_queue`]), and, for devices with work of
//! their own (host sockets, a rate limiter's timer, queue notifications
//! delivered by KVM through an ioeventfd), an event thread per device that
//! waits on [`VirtioDevice::event_fd`] and calls
//! [`VirtioDevice::process_events`] ([`mmio::spawn_event_thread`]). Both run
//! under the transport's lock, so a device never sees two at once.

pub mod block;
pub mod mmio;
pub mod net;
pub mod vsock;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// The guest memory type every device works on.
pub type GuestMem = GuestMemoryMmap;

/// VIRTIO_F_VERSION_1: the device follows virtio 1.x (required by mmio v2).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Interrupt status bit: a queue has used buffers.
pub const INT_USED_RING: u32 = 1;
/// Interrupt status bit: the configuration changed (or the device needs a reset).
pub const INT_CONFIG: u32 = 2;

/// A device's interrupt line (an irqfd) and its status register.
pub struct IrqLine {
    evt: EventFd,
    status: AtomicU32,
}

impl IrqLine {
    /// Wraps an eventfd already registered as an irqfd.
    pub fn new(evt: EventFd) -> Self {
        IrqLine {
            evt,
            status: AtomicU32::new(0),
        }
    }

    /// Sets `bits` in the interrupt status and raises the line.
    pub fn signal(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
        // Writing an eventfd fails only when its counter would overflow,
        // which means the interrupt is already pending.
        let _ = self.evt.write(1);
    }

    /// The interrupt status register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// The guest acknowledged `bits`.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }
}

/// Errors a device reports while serving a queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The ring itself is broken (bad index, bad addresses): the device
    /// cannot go on until the driver resets it.
    #[error("virtqueue {queue}: {source}")]
    Ring {
        /// Queue index.
        queue: usize,
        /// What virtio-queue found.
        source: virtio_queue::Error,
    },
}

/// Copies the bytes of a device's configuration space `config` at
/// `offset` into `data`; bytes past its end read as zero (a guest may read
/// anywhere in the window).
pub(crate) fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = offset
            .checked_add(i as u64)
            .and_then(|o| usize::try_from(o).ok())
            .and_then(|o| config.get(o))
            .copied()
            .unwrap_or(0);
    }
}

/// One virtio device behind a transport.
pub trait VirtioDevice: Send {
    /// virtio device ID (2 = block, 19 = vsock, ...).
    fn device_type(&self) -> u32;
    /// Maximum size of each of the device's queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits offered.
    fn features(&self) -> u64;
    /// Reads device configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes device configuration space (read-only by default).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver finished negotiation with `features`.
    fn activate(&mut self, _features: u64) {}
    /// Serves the available buffers of queue `index`; returns whether any
    /// buffer was used (so an interrupt may be due).
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMem,
    ) -> Result<bool, QueueError>;
    /// The driver reset the device.
    fn reset(&mut self) {}
    /// A file descriptor that becomes readable when the device has work of
    /// its own (an epoll set, a timer); `None`: the device only works when
    /// notified.
    fn event_fd(&self) -> Option<RawFd> {
        None
    }
    /// Called on the device's event thread when [`VirtioDevice::event_fd`]
    /// is readable. `active` says whether the driver is running (queues set
    /// up, DRIVER_OK); a device must consume its events either way (the fd
    /// is level-triggered). Returns a bit mask of the queues that got used
    /// buffers.
    fn process_events(
        &mut self,
        _queues: &mut [Queue],
        _mem: &GuestMem,
        _active: bool,
    ) -> Result<u32, QueueError> {
        Ok(0)
    }
    /// Hands the device the eventfd KVM signals when the guest writes
    /// QueueNotify (an ioeventfd); a device that accepts it serves those
    /// notifications from its event thread and returns true.
    fn set_queue_notifier(&mut self, _evt: EventFd) -> bool {
        false
    }
}
