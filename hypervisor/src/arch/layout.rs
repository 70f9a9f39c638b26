//! The guest physical memory map, shared by the boot code and the devices.
//!
//! Low memory follows Firecracker's layout so that anything that boots there
//! boots here: GDT, boot stack, page tables and the zero page below 1 MiB,
//! the kernel at 1 MiB, and an MMIO hole under 4 GiB for devices.

/// Where the boot GDT is written.
pub const GDT_ADDR: u64 = 0x500;
/// Where the (empty) boot IDT is written.
pub const IDT_ADDR: u64 = 0x520;
/// PVH `hvm_start_info` and its memory map.
pub const PVH_INFO_ADDR: u64 = 0x6000;
/// PVH memory map entries, right after the start info.
pub const PVH_MEMMAP_ADDR: u64 = 0x6040;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Level-4 page table of the boot identity map.
pub const PML4_ADDR: u64 = 0x9000;
/// Page-directory-pointer table of the boot identity map.
pub const PDPT_ADDR: u64 = 0xa000;
/// Page directory (2 MiB pages) of the boot identity map.
pub const PD_ADDR: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Largest command line we accept, NUL included.
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
/// Start of the extended BIOS data area; the MP table lives here.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of high memory, where kernels are loaded.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the MMIO hole below 4 GiB.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the MMIO hole (4 GiB).
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// First virtio-mmio window.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// First interrupt line given to virtio devices (0-4 are legacy ISA).
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// Last usable interrupt line of the IOAPIC.
pub const IRQ_MAX: u32 = 23;
/// The I/O APIC.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// The local APIC.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// KVM's TSS (three pages), at the top of the MMIO hole like Firecracker.
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// KVM's identity-map page, right below the TSS.
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

/// The guest RAM ranges for `mem_size` bytes: contiguous from 0 up to the
/// MMIO hole, the rest above 4 GiB.
pub fn ram_ranges(mem_size: u64) -> Vec<(u64, u64)> {
    if mem_size <= MMIO_GAP_START {
        vec![(0, mem_size)]
    } else {
        vec![
            (0, MMIO_GAP_START),
            (MMIO_GAP_END, mem_size - MMIO_GAP_START),
        ]
    }
}

/// One e820 entry: start, size, type (1 = RAM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// 1 for usable RAM, 2 for reserved.
    pub kind: u32,
}

/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;

/// The e820 map the guest is given: conventional memory below the EBDA, then
/// everything from 1 MiB, split around the MMIO hole.
pub fn e820_map(mem_size: u64) -> Vec<E820Entry> {
    let mut map = vec![E820Entry {
        addr: 0,
        size: EBDA_START,
        kind: E820_RAM,
    }];
    let low_end = mem_size.min(MMIO_GAP_START);
    if low_end > HIMEM_START {
        map.push(E820Entry {
            addr: HIMEM_START,
            size: low_end - HIMEM_START,
            kind: E820_RAM,
        });
    }
    if mem_size > MMIO_GAP_START {
        map.push(E820Entry {
            addr: MMIO_GAP_END,
            size: mem_size - MMIO_GAP_START,
            kind: E820_RAM,
        });
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn small_memory_is_one_range() {
        assert_eq!(ram_ranges(128 * MIB), vec![(0, 128 * MIB)]);
    }

    #[test]
    fn large_memory_skips_the_mmio_hole() {
        let r = ram_ranges(4096 * MIB);
        assert_eq!(r, vec![(0, MMIO_GAP_START), (MMIO_GAP_END, 1024 * MIB)]);
        let total: u64 = r.iter().map(|(_, s)| s).sum();
        assert_eq!(total, 4096 * MIB);
    }

    #[test]
    fn e820_sums_to_memory_minus_the_legacy_hole() {
        for mib in [16, 128, 3072, 3073, 8192] {
            let map = e820_map(mib * MIB);
            let ram: u64 = map
                .iter()
                .filter(|e| e.kind == E820_RAM)
                .map(|e| e.size)
                .sum();
            // Only the 0x9fc00..0x100000 legacy hole (385 KiB) is missing.
            assert_eq!(mib * MIB - ram, HIMEM_START - EBDA_START, "mib={mib}");
            // Rounded to the nearest MiB it is exactly what was configured.
            assert_eq!((ram + MIB / 2) / MIB, mib);
            // No entry overlaps the MMIO hole.
            for e in &map {
                assert!(e.addr + e.size <= MMIO_GAP_START || e.addr >= MMIO_GAP_END);
            }
        }
    }
}
