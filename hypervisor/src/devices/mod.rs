//! The VM's devices: the legacy port-I/O ones and the virtio ones on MMIO.

pub mod console;
pub mod legacy;
pub mod virtio;

use std::sync::{Arc, Mutex};

use virtio::mmio::MmioTransport;

/// The devices on the MMIO bus, each in its own window.
#[derive(Default)]
pub struct MmioBus {
    windows: Vec<(u64, u64, Arc<Mutex<MmioTransport>>)>,
}

impl MmioBus {
    /// Adds a device window at `base` of `size` bytes.
    pub fn add(&mut self, base: u64, size: u64, dev: Arc<Mutex<MmioTransport>>) {
        self.windows.push((base, size, dev));
    }

    fn find(&self, addr: u64) -> Option<(u64, &Arc<Mutex<MmioTransport>>)> {
        self.windows
            .iter()
            .find(|(base, size, _)| addr >= *base && addr - *base < *size)
            .map(|(base, _, d)| (addr - base, d))
    }

    /// A guest MMIO read; unclaimed addresses read as zero.
    pub fn read(&self, addr: u64, data: &mut [u8]) {
        match self.find(addr) {
            Some((off, dev)) => match dev.lock() {
                Ok(mut d) => d.read(off, data),
                Err(_) => data.fill(0),
            },
            None => data.fill(0),
        }
    }

    /// A guest MMIO write; unclaimed addresses ignore it.
    pub fn write(&self, addr: u64, data: &[u8]) {
        if let Some((off, dev)) = self.find(addr)
            && let Ok(mut d) = dev.lock()
        {
            d.write(off, data);
        }
    }
}
