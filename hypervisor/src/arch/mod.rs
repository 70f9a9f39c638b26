//! x86-64 specifics: the memory map, boot structures and vCPU registers.

pub mod bootinfo;
pub mod cpuid;
pub mod gdt;
pub mod layout;
pub mod mptable;
pub mod paging;
pub mod regs;
