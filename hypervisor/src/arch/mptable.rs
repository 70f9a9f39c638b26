//! The Intel MultiProcessor Specification 1.4 table, which tells the guest
//! how many vCPUs it has and how interrupts are wired.
//!
//! Written by hand: no published crate builds MP tables (Firecracker's and
//! Cloud Hypervisor's are internal modules), and the format is small.

use super::layout::{IOAPIC_ADDR, IRQ_MAX, LAPIC_ADDR};

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

/// Most vCPUs one table describes (APIC ids are 8 bits, the IOAPIC takes
/// the id after the last CPU).
pub const MAX_CPUS: u8 = 254;

/// Errors building the table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MpTableError {
    /// No CPUs, or more than an MP table can describe.
    #[error("an MP table describes 1 to {MAX_CPUS} CPUs, not {0}")]
    CpuCount(u32),
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_sub(*b))
}

/// Builds the floating pointer followed by the configuration table, to be
/// written at `addr` (the floating pointer points at `addr + 16`).
pub fn build(addr: u32, num_cpus: u32) -> Result<Vec<u8>, MpTableError> {
    if num_cpus == 0 || num_cpus > u32::from(MAX_CPUS) {
        return Err(MpTableError::CpuCount(num_cpus));
    }
    let ioapic_id = num_cpus as u8;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for cpu in 0..num_cpus as u8 {
        let mut flags = CPU_ENABLED;
        if cpu == 0 {
            flags |= CPU_BOOTSTRAP;
        }
        entries.extend_from_slice(&[ENTRY_PROCESSOR, cpu, APIC_VERSION, flags]);
        // Signature family 6, feature flags FPU | APIC.
        entries.extend_from_slice(&0x600u32.to_le_bytes());
        entries.extend_from_slice(&0x201u32.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    count += 1;
    for irq in 0..=IRQ_MAX as u8 {
        entries.extend_from_slice(&[
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            0,
            0,
            0,
            irq,
            ioapic_id,
            irq,
        ]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_EXTINT, 0, 0, 0, 0, 0, 0]);
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"PCMP");
    let length = (44 + entries.len()) as u16;
    header.extend_from_slice(&length.to_le_bytes());
    header.push(4); // spec revision 1.4
    header.push(0); // checksum, below
    header.extend_from_slice(b"MINICLD ");
    header.extend_from_slice(b"MINICLOUD   ");
    header.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    header.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    let mut table = header;
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut floating = Vec::with_capacity(16);
    floating.extend_from_slice(b"_MP_");
    floating.extend_from_slice(&(addr + 16).to_le_bytes());
    floating.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
    floating[10] = checksum(&floating);

    floating.extend_from_slice(&table);
    Ok(floating)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    /// Parses the processor entries back, the way a guest does.
    fn cpus(blob: &[u8]) -> Vec<(u8, u8)> {
        let table = &blob[16..];
        let count = u16::from_le_bytes([table[34], table[35]]);
        let mut off = 44;
        let mut out = Vec::new();
        for _ in 0..count {
            let len = if table[off] == ENTRY_PROCESSOR { 20 } else { 8 };
            if table[off] == ENTRY_PROCESSOR {
                out.push((table[off + 1], table[off + 3]));
            }
            off += len;
        }
        assert_eq!(off, table.len());
        out
    }

    #[test]
    fn checksums_are_valid() {
        for n in [1, 2, 7, 32] {
            let blob = build(0x9fc00, n).expect("build");
            assert_eq!(&blob[0..4], b"_MP_");
            assert_eq!(sum(&blob[0..16]), 0);
            assert_eq!(&blob[16..20], b"PCMP");
            let len = u16::from_le_bytes([blob[20], blob[21]]) as usize;
            assert_eq!(len, blob.len() - 16);
            assert_eq!(sum(&blob[16..]), 0);
            assert_eq!(
                u32::from_le_bytes([blob[4], blob[5], blob[6], blob[7]]),
                0x9fc10
            );
        }
    }

    #[test]
    fn describes_every_cpu_once() {
        let c = cpus(&build(0x9fc00, 5).expect("build"));
        assert_eq!(c.len(), 5);
        assert_eq!(c[0], (0, CPU_ENABLED | CPU_BOOTSTRAP));
        for (i, (id, flags)) in c.iter().enumerate().skip(1) {
            assert_eq!(*id as usize, i);
            assert_eq!(*flags, CPU_ENABLED);
        }
    }

    #[test]
    fn fits_in_the_ebda_for_32_cpus() {
        assert!(build(0x9fc00, 32).expect("build").len() <= 0x400);
    }

    #[test]
    fn rejects_bad_counts() {
        assert_eq!(build(0, 0), Err(MpTableError::CpuCount(0)));
        assert_eq!(build(0, 255), Err(MpTableError::CpuCount(255)));
    }
}
