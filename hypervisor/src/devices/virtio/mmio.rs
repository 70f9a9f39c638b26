//! The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2).
//!
//! Written by hand: rust-vmm publishes queues (virtio-queue) but no
//! device-side MMIO transport crate. Queue notifications are served
//! synchronously on the vCPU thread that wrote QueueNotify, unless the
//! device took an ioeventfd for them (then KVM signals it without leaving
//! the kernel, and the device's event thread serves them).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use virtio_queue::{Queue, QueueT};

use super::{
    GuestMem, INT_CONFIG, INT_USED_RING, IrqLine, QueueError, VIRTIO_F_VERSION_1, VirtioDevice,
};

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x4d43_4c44; // "MCLD"

/// Device status bit ACKNOWLEDGE.
pub const STATUS_ACKNOWLEDGE: u32 = 1;
/// Device status bit DRIVER.
pub const STATUS_DRIVER: u32 = 2;
/// Device status bit DRIVER_OK.
pub const STATUS_DRIVER_OK: u32 = 4;
/// Device status bit FEATURES_OK.
pub const STATUS_FEATURES_OK: u32 = 8;
/// Device status bit NEEDS_RESET.
pub const STATUS_NEEDS_RESET: u32 = 0x40;
/// Device status bit FAILED.
pub const STATUS_FAILED: u32 = 0x80;

/// Register offsets.
mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// One device behind an MMIO window.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMem,
    irq: Arc<IrqLine>,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    config_generation: u32,
}

impl MmioTransport {
    /// Puts `device` behind a transport.
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMem, irq: Arc<IrqLine>) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .filter_map(|max| Queue::new(*max).ok())
            .collect();
        MmioTransport {
            device,
            mem,
            irq,
            queues,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
        }
    }

    /// The device's status register (for tests and metrics).
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Offset of the QueueNotify register in the window (for ioeventfds).
    pub const QUEUE_NOTIFY_OFFSET: u64 = reg::QUEUE_NOTIFY;

    /// The device behind this transport.
    pub fn device(&self) -> &dyn VirtioDevice {
        self.device.as_ref()
    }

    /// The device behind this transport, mutably (set-up only).
    pub fn device_mut(&mut self) -> &mut dyn VirtioDevice {
        self.device.as_mut()
    }

    fn active(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0
            && self.status & (STATUS_NEEDS_RESET | STATUS_FAILED) == 0
    }

    /// Runs the device's own events (see [`VirtioDevice::process_events`])
    /// and raises the interrupt for queues that got used buffers.
    pub fn run_events(&mut self) {
        let active = self.active();
        match self
            .device
            .process_events(&mut self.queues, &self.mem, active)
        {
            Ok(mask) => self.interrupt_for(mask),
            Err(e) => self.needs_reset(&e),
        }
    }

    fn interrupt_for(&mut self, mask: u32) {
        let mut notify = false;
        for (i, q) in self.queues.iter_mut().enumerate() {
            if i < 32 && mask & (1 << i) != 0 {
                notify |= q.needs_notification(&self.mem).unwrap_or(true);
            }
        }
        if notify {
            self.irq.signal(INT_USED_RING);
        }
    }

    fn needs_reset(&mut self, e: &QueueError) {
        eprintln!(
            "minicloud-vmm: virtio device {}: {e}; device needs reset",
            self.device.device_type()
        );
        self.status |= STATUS_NEEDS_RESET;
        self.irq.signal(INT_CONFIG);
    }

    fn offered(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        if self.status & STATUS_DRIVER_OK != 0 {
            // Queue set-up is frozen once the driver is running.
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.queue_sel = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.status = 0;
        self.irq.ack(u32::MAX);
        self.device.reset();
    }

    /// A guest read of `data.len()` bytes at `offset` in the window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            self.device.read_config(offset - reg::CONFIG, data);
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        let value: u32 = match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered() as u32,
                1 => (self.offered() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.irq.status(),
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => self.config_generation,
            _ => 0,
        };
        data.copy_from_slice(&value.to_le_bytes());
    }

    /// A guest write at `offset` in the window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            self.device.write_config(offset - reg::CONFIG, data);
            self.config_generation = self.config_generation.wrapping_add(1);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let v = u32::from_le_bytes(bytes);
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES if self.status & STATUS_FEATURES_OK == 0 => {
                match self.driver_features_sel {
                    0 => {
                        self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                    }
                    _ => {}
                }
            }
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => {
                if let Some(q) = self.selected_queue()
                    && let Ok(size) = u16::try_from(v)
                {
                    q.set_size(size);
                }
            }
            reg::QUEUE_READY => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(v == 1);
                }
            }
            reg::QUEUE_DESC_LOW => self.with_queue(|q| q.set_desc_table_address(Some(v), None)),
            reg::QUEUE_DESC_HIGH => self.with_queue(|q| q.set_desc_table_address(None, Some(v))),
            reg::QUEUE_DRIVER_LOW => self.with_queue(|q| q.set_avail_ring_address(Some(v), None)),
            reg::QUEUE_DRIVER_HIGH => self.with_queue(|q| q.set_avail_ring_address(None, Some(v))),
            reg::QUEUE_DEVICE_LOW => self.with_queue(|q| q.set_used_ring_address(Some(v), None)),
            reg::QUEUE_DEVICE_HIGH => self.with_queue(|q| q.set_used_ring_address(None, Some(v))),
            reg::QUEUE_NOTIFY => self.notify(v as usize),
            reg::INTERRUPT_ACK => self.irq.ack(v),
            reg::STATUS => self.set_status(v),
            _ => {}
        }
    }

    fn with_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.selected_queue() {
            f(q);
        }
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let added = v & !self.status;
        if added & STATUS_FEATURES_OK != 0 {
            let unsupported = self.driver_features & !self.offered();
            if unsupported != 0 || self.driver_features & VIRTIO_F_VERSION_1 == 0 {
                // Leave FEATURES_OK clear: the driver reads it back and
                // knows negotiation failed.
                self.status = v & !STATUS_FEATURES_OK;
                return;
            }
        }
        if added & STATUS_DRIVER_OK != 0 {
            let all_valid = self
                .queues
                .iter()
                .all(|q| !q.ready() || q.is_valid(&self.mem));
            if self.status & STATUS_FEATURES_OK == 0 || !all_valid {
                self.status = v | STATUS_FAILED;
                return;
            }
            self.device.activate(self.driver_features);
        }
        self.status = v;
    }

    fn notify(&mut self, index: usize) {
        if self.status & STATUS_DRIVER_OK == 0 || self.status & STATUS_NEEDS_RESET != 0 {
            return;
        }
        let Some(queue) = self.queues.get_mut(index) else {
            return;
        };
        if !queue.ready() {
            return;
        }
        match self.device.process_queue(index, queue, &self.mem) {
            Ok(true) => {
                let notify = queue.needs_notification(&self.mem).unwrap_or(true);
                if notify {
                    self.irq.signal(INT_USED_RING);
                }
            }
            Ok(false) => {}
            Err(e) => self.needs_reset(&e),
        }
    }
}

/// Starts the event thread of the device behind `transport`, if it has an
/// [`VirtioDevice::event_fd`]: it waits for the fd to become readable and
/// runs [`MmioTransport::run_events`] under the transport's lock.
pub fn spawn_event_thread(
    transport: Arc<Mutex<MmioTransport>>,
    name: String,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let fd = match transport.lock() {
        Ok(t) => t.device.event_fd(),
        Err(_) => None,
    };
    let Some(fd) = fd else { return Ok(None) };
    let handle = std::thread::Builder::new().name(name).spawn(move || {
        crate::seccomp::install_or_die(crate::seccomp::ThreadKind::Device);
        loop {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; the fd stays open as long as the
            // device, which the transport (held by this thread) owns.
            let rc = unsafe { libc::poll(&mut pfd, 1, 1000) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            match transport.lock() {
                Ok(mut t) => t.run_events(),
                Err(_) => return,
            }
        }
    })?;
    Ok(Some(handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::Block;
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::EventFd;

    fn transport() -> MmioTransport {
        let mem = GuestMem::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("mem");
        let file = tempfile::tempfile().expect("tmp");
        file.set_len(4096).expect("len");
        let dev = Block::new(file, false, None).expect("blk");
        let irq = Arc::new(IrqLine::new(EventFd::new(0).expect("evt")));
        MmioTransport::new(Box::new(dev), mem, irq)
    }

    fn rd(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn wr(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    #[test]
    fn identifies_as_a_modern_block_device() {
        let mut t = transport();
        assert_eq!(rd(&mut t, reg::MAGIC), MAGIC);
        assert_eq!(rd(&mut t, reg::VERSION), 2);
        assert_eq!(rd(&mut t, reg::DEVICE_ID), 2);
        wr(&mut t, reg::DEVICE_FEATURES_SEL, 1);
        assert_eq!(rd(&mut t, reg::DEVICE_FEATURES) & 1, 1, "VERSION_1 offered");
        assert_eq!(rd(&mut t, reg::QUEUE_NUM_MAX), 256);
        let mut cap = [0u8; 8];
        t.read(reg::CONFIG, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);
    }

    #[test]
    fn features_without_version_1_are_refused() {
        let mut t = transport();
        wr(&mut t, reg::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        wr(&mut t, reg::DRIVER_FEATURES_SEL, 0);
        wr(&mut t, reg::DRIVER_FEATURES, 0);
        wr(
            &mut t,
            reg::STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_eq!(rd(&mut t, reg::STATUS) & STATUS_FEATURES_OK, 0);
    }

    #[test]
    fn driver_ok_with_a_queue_outside_memory_fails_the_device() {
        let mut t = transport();
        wr(&mut t, reg::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        wr(&mut t, reg::DRIVER_FEATURES_SEL, 1);
        wr(&mut t, reg::DRIVER_FEATURES, 1);
        let s = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
        wr(&mut t, reg::STATUS, s);
        assert_ne!(rd(&mut t, reg::STATUS) & STATUS_FEATURES_OK, 0);
        wr(&mut t, reg::QUEUE_SEL, 0);
        wr(&mut t, reg::QUEUE_NUM, 16);
        wr(&mut t, reg::QUEUE_DESC_LOW, 0xffff_0000);
        wr(&mut t, reg::QUEUE_DESC_HIGH, 0x10);
        wr(&mut t, reg::QUEUE_READY, 1);
        wr(&mut t, reg::STATUS, s | STATUS_DRIVER_OK);
        assert_ne!(rd(&mut t, reg::STATUS) & STATUS_FAILED, 0);
        // A notify on a failed device does nothing (and does not crash).
        wr(&mut t, reg::QUEUE_NOTIFY, 0);
        wr(&mut t, reg::QUEUE_NOTIFY, 99);
        // Reset clears everything.
        wr(&mut t, reg::STATUS, 0);
        assert_eq!(rd(&mut t, reg::STATUS), 0);
    }

    #[test]
    fn odd_sized_accesses_are_harmless() {
        let mut t = transport();
        let mut b = [0xffu8; 2];
        t.read(reg::MAGIC, &mut b);
        assert_eq!(b, [0, 0]);
        t.write(reg::STATUS, &[1, 2]);
        assert_eq!(rd(&mut t, reg::STATUS), 0);
    }
}
