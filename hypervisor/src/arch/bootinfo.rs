//! What the guest kernel is told at entry: the Linux zero page
//! (`boot_params`) for the 64-bit boot protocol, or `hvm_start_info` for
//! PVH.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_start_info};

use super::layout::{CMDLINE_ADDR, E820Entry};

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
const MAX_E820: usize = 128;

/// Where an initrd was placed.
#[derive(Debug, Clone, Copy)]
pub struct InitrdPlacement {
    /// Guest physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Builds the zero page. `header` is the bzImage's own setup header when
/// there is one; an ELF kernel gets a synthesised one.
pub fn linux_boot_params(
    header: Option<setup_header>,
    cmdline_len: usize,
    e820: &[E820Entry],
    initrd: Option<InitrdPlacement>,
) -> boot_params {
    let mut params = boot_params::default();
    if let Some(h) = header {
        params.hdr = h;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    params.ext_cmd_line_ptr = (CMDLINE_ADDR >> 32) as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if params.hdr.kernel_alignment == 0 {
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    }
    if let Some(i) = initrd {
        params.hdr.ramdisk_image = i.addr as u32;
        params.ext_ramdisk_image = (i.addr >> 32) as u32;
        params.hdr.ramdisk_size = i.size as u32;
        params.ext_ramdisk_size = (i.size >> 32) as u32;
    }
    let n = e820.len().min(MAX_E820);
    for (slot, e) in params.e820_table.iter_mut().zip(e820.iter().take(n)) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = n as u8;
    params
}

/// Builds the PVH start info and its memory map.
pub fn pvh_start_info(
    memmap_addr: u64,
    e820: &[E820Entry],
    initrd_modlist: Option<u64>,
) -> (hvm_start_info, Vec<hvm_memmap_table_entry>) {
    let memmap: Vec<hvm_memmap_table_entry> = e820
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        memmap_paddr: memmap_addr,
        memmap_entries: memmap.len() as u32,
        nr_modules: u32::from(initrd_modlist.is_some()),
        modlist_paddr: initrd_modlist.unwrap_or(0),
        ..Default::default()
    };
    (info, memmap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::layout::e820_map;
    use vm_memory::ByteValued;

    #[test]
    fn zero_page_fields_sit_where_linux_reads_them() {
        let map = e820_map(256 << 20);
        let p = linux_boot_params(
            None,
            42,
            &map,
            Some(InitrdPlacement {
                addr: 0x0700_0000,
                size: 0x1234,
            }),
        );
        let b = p.as_slice();
        assert_eq!(b.len(), 4096);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        // Offsets from Documentation/arch/x86/zero-page.rst and boot.rst.
        assert_eq!(b[0x1e8] as usize, map.len(), "e820_entries");
        assert_eq!(u32_at(0x228), CMDLINE_ADDR as u32, "cmd_line_ptr");
        assert_eq!(u32_at(0x238), 42, "cmdline_size");
        assert_eq!(u32_at(0x202), KERNEL_HDR_MAGIC, "header");
        assert_eq!(u32_at(0x218), 0x0700_0000, "ramdisk_image");
        assert_eq!(u32_at(0x21c), 0x1234, "ramdisk_size");
        assert_eq!(b[0x210], 0xff, "type_of_loader");
        // First e820 entry at 0x2d0: 20 bytes addr/size/type.
        let e1 = 0x2d0 + 20;
        let addr = u64::from_le_bytes(b[e1..e1 + 8].try_into().expect("8"));
        assert_eq!(addr, 0x10_0000);
        assert_eq!(u32_at(e1 + 16), 1);
    }

    #[test]
    fn pvh_info_points_at_its_memmap() {
        let map = e820_map(512 << 20);
        let (info, mm) = pvh_start_info(0x6040, &map, None);
        assert_eq!(info.magic, XEN_HVM_START_MAGIC);
        assert_eq!(info.memmap_entries as usize, mm.len());
        assert_eq!(info.memmap_paddr, 0x6040);
        assert_eq!(info.cmdline_paddr, CMDLINE_ADDR);
        assert_eq!(info.nr_modules, 0);
    }
}
