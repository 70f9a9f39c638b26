//! Boot GDT entries and their translation into KVM segment registers.

use kvm_bindings::kvm_segment;

/// A flat 64-bit code segment (present, DPL 0, execute/read, L=1).
pub const CODE64: u16 = 0xa09b;
/// A flat 32-bit code segment (present, DPL 0, execute/read, D=1, G=1).
pub const CODE32: u16 = 0xc09b;
/// A flat data segment (present, DPL 0, read/write, D=1, G=1).
pub const DATA: u16 = 0xc093;
/// A 64-bit TSS descriptor (present, busy).
pub const TSS: u16 = 0x808b;

/// Encodes one GDT descriptor from its flags, base and limit (the format of
/// the Intel SDM, vol. 3, 3.4.5).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

fn base(entry: u64) -> u64 {
    ((entry & 0xff00_0000_0000_0000) >> 32)
        | ((entry & 0x0000_00ff_0000_0000) >> 16)
        | ((entry & 0x0000_0000_ffff_0000) >> 16)
}

fn limit(entry: u64) -> u32 {
    let raw = (((entry & 0x000f_0000_0000_0000) >> 32) | (entry & 0xffff)) as u32;
    if bit(entry, 55) == 1 {
        (raw << 12) | 0xfff
    } else {
        raw
    }
}

fn bit(entry: u64, n: u32) -> u8 {
    ((entry >> n) & 1) as u8
}

/// The KVM segment register that loading `entry` from GDT slot `index`
/// would give.
pub fn segment_from_entry(entry: u64, index: u16) -> kvm_segment {
    let present = bit(entry, 47);
    kvm_segment {
        base: base(entry),
        limit: limit(entry),
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(entry, 54),
        s: bit(entry, 44),
        l: bit(entry, 53),
        g: bit(entry, 55),
        avl: bit(entry, 52),
        padding: 0,
        unusable: u8::from(present == 0),
    }
}

/// The boot GDT for 64-bit entry: null, code, data, TSS.
pub fn long_mode_gdt() -> [u64; 4] {
    [
        0,
        gdt_entry(CODE64, 0, 0xfffff),
        gdt_entry(DATA, 0, 0xfffff),
        gdt_entry(TSS, 0, 0xfffff),
    ]
}

/// The boot GDT for PVH's 32-bit entry: null, code, data, TSS.
pub fn protected_mode_gdt() -> [u64; 4] {
    [
        0,
        gdt_entry(CODE32, 0, 0xfffff),
        gdt_entry(DATA, 0, 0xfffff),
        gdt_entry(TSS, 0, 0xfffff),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code64_segment_decodes() {
        let s = segment_from_entry(gdt_entry(CODE64, 0, 0xfffff), 1);
        assert_eq!(s.selector, 8);
        assert_eq!(s.l, 1);
        assert_eq!(s.db, 0);
        assert_eq!(s.present, 1);
        assert_eq!(s.s, 1);
        assert_eq!(s.type_, 0xb);
        assert_eq!(s.limit, 0xffff_ffff);
        assert_eq!(s.base, 0);
        assert_eq!(s.unusable, 0);
    }

    #[test]
    fn base_and_limit_round_trip() {
        let e = gdt_entry(0x0093, 0x1234_5678, 0xabcde);
        let s = segment_from_entry(e, 2);
        assert_eq!(s.base, 0x1234_5678);
        assert_eq!(s.limit, 0xabcde);
        assert_eq!(s.g, 0);
    }

    #[test]
    fn null_entry_is_unusable() {
        assert_eq!(segment_from_entry(0, 0).unusable, 1);
    }
}
