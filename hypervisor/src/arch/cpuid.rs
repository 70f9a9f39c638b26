//! Per-vCPU CPUID: KVM's supported set, with the topology, APIC ids and
//! hypervisor bit of this VM written in.
//!
//! Every vCPU is presented as one core of a single socket (one thread per
//! core), which is what the MP table says too.

use kvm_bindings::kvm_cpuid_entry2;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_PERFMON: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_AMD_SIZES: u32 = 0x8000_0008;

const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;

/// Number of bits needed to number `n` cores (the x2APIC id shift).
fn id_bits(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// Rewrites `entries` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `cpu_id` of
/// `num_cpus`.
pub fn filter(entries: &mut [kvm_cpuid_entry2], cpu_id: u32, num_cpus: u32) {
    let shift = id_bits(num_cpus);
    for e in entries.iter_mut() {
        match e.function {
            LEAF_FEATURES => {
                e.ebx = (e.ebx & 0x0000_ffff) | (cpu_id << 24) | ((num_cpus & 0xff) << 16);
                e.ecx |= ECX_HYPERVISOR;
                if num_cpus > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE_PARAMS => {
                // Cores per package - 1 in EAX[31:26]; each cache is private
                // to a core except the last level, shared by the package.
                let cache_level = (e.eax >> 5) & 0x7;
                let sharing = if cache_level >= 3 { num_cpus - 1 } else { 0 };
                e.eax =
                    (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((num_cpus - 1) & 0x3f) << 26);
            }
            LEAF_PERFMON => {
                // No virtual PMU.
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
                e.edx = cpu_id;
                match e.index {
                    0 => {
                        // SMT level: one thread per core.
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 1 << 8;
                    }
                    1 => {
                        // Core level: every vCPU.
                        e.eax = shift;
                        e.ebx = num_cpus;
                        e.ecx = (2 << 8) | 1;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index;
                    }
                }
            }
            LEAF_AMD_SIZES => {
                e.ecx = (e.ecx & !0xf0ff) | ((num_cpus - 1) & 0xff) | (shift << 12);
            }
            _ => {}
        }
    }
}

/// CPUID.1:ECX bit 24: the local APIC has a TSC-deadline timer.
pub const ECX_TSC_DEADLINE: u32 = 1 << 24;

/// Advertises the TSC-deadline timer (when KVM has
/// `KVM_CAP_TSC_DEADLINE_TIMER`).
pub fn advertise_tsc_deadline(entries: &mut [kvm_cpuid_entry2]) {
    for e in entries.iter_mut().filter(|e| e.function == LEAF_FEATURES) {
        e.ecx |= ECX_TSC_DEADLINE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx: 0x0000_0800,
            ..Default::default()
        }
    }

    #[test]
    fn leaf1_carries_apic_id_and_count() {
        let mut e = [entry(1, 0)];
        filter(&mut e, 3, 4);
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_eq!(e[0].ebx & 0xffff, 0x0800, "CLFLUSH size kept");
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(e[0].edx & EDX_HTT, 0);
    }

    #[test]
    fn topology_leaf_describes_cores() {
        let mut e = [entry(0xb, 0), entry(0xb, 1), entry(0xb, 2)];
        filter(&mut e, 5, 6);
        assert_eq!((e[0].ebx, e[0].ecx >> 8), (1, 1));
        assert_eq!(e[1].eax, 3, "6 cores need 3 id bits");
        assert_eq!(e[1].ebx, 6);
        assert_eq!(e[1].ecx >> 8, 2);
        assert_eq!(e[2].ecx, 2);
        assert!(e.iter().all(|x| x.edx == 5));
    }

    #[test]
    fn single_cpu_has_no_htt() {
        let mut e = [entry(1, 0)];
        e[0].edx = EDX_HTT;
        filter(&mut e, 0, 1);
        assert_eq!(e[0].edx & EDX_HTT, 0);
    }

    #[test]
    fn tsc_deadline_bit_is_set_on_leaf1_only() {
        let mut e = [entry(1, 0), entry(7, 0)];
        advertise_tsc_deadline(&mut e);
        assert_ne!(e[0].ecx & ECX_TSC_DEADLINE, 0);
        assert_eq!(e[1].ecx, 0);
    }

    #[test]
    fn id_bits_counts() {
        assert_eq!(id_bits(1), 0);
        assert_eq!(id_bits(2), 1);
        assert_eq!(id_bits(3), 2);
        assert_eq!(id_bits(32), 5);
    }

    #[test]
    fn pmu_is_hidden() {
        let mut e = [entry(0xa, 0)];
        e[0].eax = 0x0704_3004;
        filter(&mut e, 0, 2);
        assert_eq!(e[0].eax, 0);
    }
}
