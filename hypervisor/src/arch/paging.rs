//! The boot identity map: the first GiB mapped with 2 MiB pages, which is
//! what the Linux 64-bit boot protocol promises the kernel at entry.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::layout::{PD_ADDR, PDPT_ADDR, PML4_ADDR};

const PRESENT_RW: u64 = 0x3;
const PAGE_SIZE_2M: u64 = 0x80;

/// The three tables as (address, contents) so they can be checked without
/// guest memory.
pub fn identity_map_tables() -> Vec<(u64, Vec<u64>)> {
    let mut pml4 = vec![0u64; 512];
    pml4[0] = PDPT_ADDR | PRESENT_RW;
    let mut pdpt = vec![0u64; 512];
    pdpt[0] = PD_ADDR | PRESENT_RW;
    let pd = (0..512u64)
        .map(|i| (i << 21) | PRESENT_RW | PAGE_SIZE_2M)
        .collect();
    vec![(PML4_ADDR, pml4), (PDPT_ADDR, pdpt), (PD_ADDR, pd)]
}

/// Writes the identity map into guest memory; returns the value for CR3.
pub fn write_identity_map<M: GuestMemory>(mem: &M) -> Result<u64, vm_memory::GuestMemoryError> {
    for (addr, table) in identity_map_tables() {
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        mem.write_slice(&bytes, GuestAddress(addr))?;
    }
    Ok(PML4_ADDR)
}

/// Walks the tables the way the MMU would and returns the physical address
/// that `virt` maps to (tests use it to prove the map is an identity).
pub fn translate(tables: &[(u64, Vec<u64>)], virt: u64) -> Option<u64> {
    let lookup = |table_addr: u64, index: u64| -> Option<u64> {
        tables
            .iter()
            .find(|(a, _)| *a == table_addr)
            .and_then(|(_, t)| t.get(index as usize).copied())
    };
    let pml4e = lookup(PML4_ADDR, (virt >> 39) & 0x1ff)?;
    if pml4e & 1 == 0 {
        return None;
    }
    let pdpte = lookup(pml4e & !0xfff, (virt >> 30) & 0x1ff)?;
    if pdpte & 1 == 0 {
        return None;
    }
    let pde = lookup(pdpte & !0xfff, (virt >> 21) & 0x1ff)?;
    if pde & 1 == 0 || pde & PAGE_SIZE_2M == 0 {
        return None;
    }
    Some((pde & !0x1f_ffff & 0x000f_ffff_ffff_f000) | (virt & 0x1f_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn first_gib_is_identity_mapped() {
        let t = identity_map_tables();
        for virt in [0u64, 0x1000, 0x10_0000, 0x1234_5678, 0x3fff_ffff] {
            assert_eq!(translate(&t, virt), Some(virt), "virt={virt:#x}");
        }
        assert_eq!(translate(&t, 0x4000_0000), None);
    }

    #[test]
    fn tables_land_in_guest_memory() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("mem");
        let cr3 = write_identity_map(&mem).expect("write");
        assert_eq!(cr3, PML4_ADDR);
        let pde5: u64 = mem.read_obj(GuestAddress(PD_ADDR + 5 * 8)).expect("read");
        assert_eq!(pde5, (5 << 21) | 0x83);
    }
}
