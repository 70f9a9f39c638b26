//! What this host's KVM can do: whether /dev/kvm opens, and whether it is
//! hardware-assisted (VT-x / AMD-V) or PVM (every guest instruction
//! emulated, so only the mini guest runs).

use serde::Serialize;

/// The answer of `minicloud-vmm --probe-host`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostCapability {
    /// /dev/kvm opened and answered KVM_GET_API_VERSION.
    pub kvm: bool,
    /// KVM API version (12 on every modern kernel).
    pub kvm_api_version: Option<i32>,
    /// "vmx", "svm", "pvm" or "none".
    pub virtualization: String,
    /// VT-x or AMD-V: stock Linux guests run.
    pub hardware_assisted: bool,
    /// Which images this host can run.
    pub images: Vec<String>,
    /// Why an image cannot run, in words.
    pub note: String,
}

/// Probes the host.
pub fn probe() -> HostCapability {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let vmx = flags.contains(&"vmx");
    let svm = flags.contains(&"svm");
    let version = kvm_ioctls::Kvm::new().ok().map(|k| k.get_api_version());
    classify(version, vmx, svm, pvm)
}

/// Decides from the facts (separate from I/O so it can be tested).
pub fn classify(version: Option<i32>, vmx: bool, svm: bool, pvm: bool) -> HostCapability {
    let kvm = version.is_some();
    let virtualization = if vmx {
        "vmx"
    } else if svm {
        "svm"
    } else if pvm {
        "pvm"
    } else {
        "none"
    };
    let hardware_assisted = kvm && (vmx || svm);
    let (images, note) = if !kvm {
        (vec![], "/dev/kvm is not usable: no VM can run".to_string())
    } else if hardware_assisted {
        (
            vec!["mini".into(), "linux".into()],
            "hardware-assisted KVM: Linux and mini guests run".into(),
        )
    } else {
        (
            vec!["mini".into()],
            format!(
                "KVM here is {virtualization}, not VT-x/AMD-V: guest instructions are emulated, \
                 so a stock Linux guest cannot run; only the mini image can"
            ),
        )
    };
    HostCapability {
        kvm,
        kvm_api_version: version,
        virtualization: virtualization.into(),
        hardware_assisted,
        images,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_host_runs_only_mini() {
        let c = classify(Some(12), false, false, true);
        assert!(!c.hardware_assisted);
        assert_eq!(c.images, vec!["mini"]);
        assert_eq!(c.virtualization, "pvm");
    }

    #[test]
    fn svm_host_runs_linux() {
        let c = classify(Some(12), false, true, false);
        assert!(c.hardware_assisted);
        assert!(c.images.contains(&"linux".to_string()));
    }

    #[test]
    fn no_kvm_runs_nothing() {
        assert!(classify(None, true, false, false).images.is_empty());
    }
}
