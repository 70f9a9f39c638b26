//! Register state of a vCPU at entry: segments, control registers, general
//! registers, FPU, MSRs and the local APIC's LINT pins.

use kvm_bindings::{Msrs, kvm_fpu, kvm_msr_entry, kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::gdt::{long_mode_gdt, protected_mode_gdt, segment_from_entry};
use super::layout::{BOOT_STACK_POINTER, GDT_ADDR, IDT_ADDR, ZERO_PAGE_ADDR};

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// How the kernel is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// Linux x86-64 boot protocol: long mode, paging on, `%rsi` = zero page.
    Linux64 {
        /// Entry point.
        entry: u64,
        /// CR3 of the identity map.
        cr3: u64,
    },
    /// PVH: 32-bit protected mode, paging off, `%ebx` = start info.
    Pvh {
        /// Entry point (from the ELF note).
        entry: u64,
        /// Address of `hvm_start_info`.
        start_info: u64,
    },
}

/// Errors configuring a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    /// A KVM ioctl failed.
    #[error("{what}: {source}")]
    Kvm {
        /// Which call.
        what: &'static str,
        /// The errno.
        source: kvm_ioctls::Error,
    },
    /// Writing the GDT into guest memory failed.
    #[error("writing the boot GDT: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    /// KVM took fewer MSRs than given.
    #[error("KVM accepted {set} of {wanted} boot MSRs")]
    Msrs {
        /// Accepted.
        set: usize,
        /// Given.
        wanted: usize,
    },
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> RegsError {
    move |source| RegsError::Kvm { what, source }
}

/// Segment and control registers for `mode`; writes the matching GDT.
pub fn setup_sregs<M: GuestMemory>(
    mem: &M,
    vcpu: &VcpuFd,
    mode: EntryMode,
) -> Result<(), RegsError> {
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let gdt = match mode {
        EntryMode::Linux64 { .. } => long_mode_gdt(),
        EntryMode::Pvh { .. } => protected_mode_gdt(),
    };
    let bytes: Vec<u8> = gdt.iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(GDT_ADDR))?;
    mem.write_obj(0u64, GuestAddress(IDT_ADDR))?;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (bytes.len() - 1) as u16;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 7;
    let code = segment_from_entry(gdt[1], 1);
    let data = segment_from_entry(gdt[2], 2);
    let tss = segment_from_entry(gdt[3], 3);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    match mode {
        EntryMode::Linux64 { cr3, .. } => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
            sregs.cr3 = cr3;
            sregs.cr4 = X86_CR4_PAE;
            sregs.efer = EFER_LME | EFER_LMA;
        }
        EntryMode::Pvh { .. } => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
    }
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))
}

/// General registers for `mode`.
pub fn setup_regs(vcpu: &VcpuFd, mode: EntryMode) -> Result<(), RegsError> {
    let regs = match mode {
        EntryMode::Linux64 { entry, .. } => kvm_regs {
            rflags: 0x2,
            rip: entry,
            rsp: BOOT_STACK_POINTER,
            rbp: BOOT_STACK_POINTER,
            rsi: ZERO_PAGE_ADDR,
            ..Default::default()
        },
        EntryMode::Pvh { entry, start_info } => kvm_regs {
            rflags: 0x2,
            rip: entry,
            rbx: start_info,
            ..Default::default()
        },
    };
    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))
}

/// x87/SSE state at reset.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm("KVM_SET_FPU"))
}

/// The MSRs a kernel expects set at entry (as Firecracker sets them).
pub fn boot_msrs() -> Vec<(u32, u64)> {
    vec![
        (0x174, 0),             // IA32_SYSENTER_CS
        (0x175, 0),             // IA32_SYSENTER_ESP
        (0x176, 0),             // IA32_SYSENTER_EIP
        (0xc000_0081, 0),       // STAR
        (0xc000_0082, 0),       // LSTAR
        (0xc000_0083, 0),       // CSTAR
        (0xc000_0084, 0),       // SYSCALL_MASK
        (0xc000_0102, 0),       // KERNEL_GS_BASE
        (0x10, 0),              // IA32_TSC
        (0x1a0, 1),             // IA32_MISC_ENABLE: fast strings
        (0x2ff, (1 << 11) | 6), // MTRRdefType: enabled, write-back
    ]
}

/// Writes [`boot_msrs`].
pub fn setup_msrs(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let entries: Vec<kvm_msr_entry> = boot_msrs()
        .into_iter()
        .map(|(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|_| RegsError::Msrs {
        set: 0,
        wanted: entries.len(),
    })?;
    let set = vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
    if set != entries.len() {
        return Err(RegsError::Msrs {
            set,
            wanted: entries.len(),
        });
    }
    Ok(())
}

fn set_apic_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// LINT0 = ExtINT (the PIC), LINT1 = NMI, as the MP table says.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let mut lapic = vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
    for (off, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[off + i] as u8);
        let value = set_apic_delivery_mode(u32::from_le_bytes(bytes), mode);
        for (i, b) in value.to_le_bytes().iter().enumerate() {
            lapic.regs[off + i] = *b as std::os::raw::c_char;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_mode_replaces_bits_8_to_10() {
        assert_eq!(
            set_apic_delivery_mode(0x0001_0000, APIC_MODE_EXTINT),
            0x0001_0700
        );
        assert_eq!(
            set_apic_delivery_mode(0x0000_0700, APIC_MODE_NMI),
            0x0000_0400
        );
    }

    #[test]
    fn msr_list_has_no_duplicates() {
        let mut idx: Vec<u32> = boot_msrs().iter().map(|m| m.0).collect();
        idx.sort_unstable();
        idx.dedup();
        assert_eq!(idx.len(), boot_msrs().len());
    }
}
