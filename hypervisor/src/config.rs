//! A VM's configuration: what `--config FILE` holds as JSON and what the
//! command-line flags build, validated before anything touches KVM.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rate_limiter::{self, RateLimiterConfig};

/// Most vCPUs a VM may have.
pub const MAX_VCPUS: u32 = 32;
/// Least memory a VM may have, in MiB.
pub const MIN_MEMORY_MIB: u64 = 8;

/// How to enter the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BootProtocol {
    /// The Linux 64-bit boot protocol for ELF kernels, the bzImage protocol
    /// for bzImages.
    #[default]
    Linux64,
    /// PVH (32-bit entry from the ELF note); ELF kernels only.
    Pvh,
}

/// One block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Raw image file.
    pub path: PathBuf,
    /// Refuse guest writes.
    #[serde(default)]
    pub read_only: bool,
    /// Serial the guest reads with VIRTIO_BLK_T_GET_ID (20 bytes at most).
    #[serde(default)]
    pub id: Option<String>,
    /// Bandwidth and request-rate limits (none by default).
    #[serde(default)]
    pub rate_limiter: Option<RateLimiterConfig>,
}

/// A virtio-net device on a tap interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// The tap interface (in the VMM's network namespace).
    pub tap: String,
    /// MAC address ("52:54:00:12:34:56"); derived from the tap's name if
    /// not given.
    #[serde(default)]
    pub mac: Option<String>,
    /// Bandwidth and frame-rate limits, both directions together.
    #[serde(default)]
    pub rate_limiter: Option<RateLimiterConfig>,
}

impl NetConfig {
    /// Parses `NAME[,mac=MAC][,bw=..][,bw_burst=..][,ops=..][,ops_burst=..]`.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let mut parts = spec.split(',');
        let tap = parts.next().filter(|t| !t.is_empty());
        let Some(tap) = tap else {
            return Err(ConfigError::Net(format!(
                "bad --net-tap {spec:?}: expected NAME[,mac=MAC]"
            )));
        };
        let mut net = NetConfig {
            tap: tap.to_string(),
            mac: None,
            rate_limiter: None,
        };
        let bad = || {
            ConfigError::Net(format!(
                "bad --net-tap {spec:?}: expected NAME[,mac=MAC][,bw=BYTES_PER_S][,bw_burst=BYTES][,ops=N][,ops_burst=N]"
            ))
        };
        let mut limits = RateLimiterConfig::default();
        for p in parts {
            match p.split_once('=') {
                Some(("mac", m)) => net.mac = Some(m.to_string()),
                Some((k, v)) => {
                    let key = match k {
                        "ops" => "iops",
                        "ops_burst" => "iops_burst",
                        "bw" | "bw_burst" => k,
                        _ => return Err(bad()),
                    };
                    rate_limiter::parse_flag(&mut limits, key, v).map_err(ConfigError::Net)?;
                }
                None => return Err(bad()),
            }
        }
        if limits != RateLimiterConfig::default() {
            net.rate_limiter = Some(limits);
        }
        Ok(net)
    }

    /// The MAC address to use.
    pub fn mac_address(&self) -> Result<[u8; 6], ConfigError> {
        match &self.mac {
            Some(m) => crate::devices::virtio::net::parse_mac(m)
                .ok_or_else(|| ConfigError::Net(format!("bad MAC address {m:?}"))),
            None => {
                // Locally administered, stable per tap name.
                let mut h: u32 = 0x811c_9dc5;
                for b in self.tap.bytes() {
                    h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
                }
                let b = h.to_be_bytes();
                Ok([0x52, 0x54, b[0], b[1], b[2], b[3]])
            }
        }
    }
}

/// The virtio-vsock device (Firecracker's hybrid model: guest ports map to
/// Unix sockets on the host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    /// The guest's context id (3 or more).
    pub guest_cid: u64,
    /// Host connections come in on this Unix socket (`CONNECT <port>\n`);
    /// guest connections to host port P go to `<uds_path>_P`.
    pub uds_path: PathBuf,
}

/// Where the serial console goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Append guest output to this file instead of stdout.
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// Also serve the console on this Unix socket: clients see the output
    /// and their input reaches the guest.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Read guest input from stdin (default when output is stdout).
    #[serde(default)]
    pub stdin: Option<bool>,
}

/// A whole VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Kernel: ELF vmlinux, bzImage or the mini ELF.
    pub kernel: PathBuf,
    /// Initial ramdisk.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (virtio-mmio devices are appended to it).
    #[serde(default)]
    pub cmdline: String,
    /// Number of vCPUs (1 to 32).
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Block devices, in the order the guest sees them.
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    /// Serial console.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Host CPUs the vCPU threads are pinned to (e.g. "0-3,8"): every vCPU
    /// may run on any of them (a shared pool).
    #[serde(default)]
    pub cpu_affinity: Option<String>,
    /// Dedicated pinning: vCPU i runs only on the i-th CPU of this list
    /// (one CPU per vCPU, e.g. "4,5"). Overrides `cpu_affinity`.
    #[serde(default)]
    pub vcpu_cpus: Option<String>,
    /// Boot protocol.
    #[serde(default)]
    pub boot: BootProtocol,
    /// virtio-vsock device.
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
    /// virtio-net devices.
    #[serde(default)]
    pub nets: Vec<NetConfig>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The config file is not valid JSON for a VM.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// No such kernel, or unreadable.
    #[error("kernel {path}: {source}")]
    Kernel {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// No such initrd, or unreadable.
    #[error("initrd {path}: {source}")]
    Initrd {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// vCPU count out of range.
    #[error("vcpus must be between 1 and {MAX_VCPUS}, got {0}")]
    Vcpus(u32),
    /// Too little memory.
    #[error("memory_mib must be at least {MIN_MEMORY_MIB}, got {0}")]
    MemoryTooSmall(u64),
    /// More memory than the host has.
    #[error("memory_mib {requested} is more than this host's {host} MiB of RAM")]
    MemoryTooLarge {
        /// Asked for.
        requested: u64,
        /// Host total.
        host: u64,
    },
    /// A disk cannot be opened as asked.
    #[error("disk {path}: {source}")]
    Disk {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A disk is smaller than one sector.
    #[error("disk {0}: smaller than one 512-byte sector")]
    DiskTooSmall(PathBuf),
    /// A disk id is too long.
    #[error("disk id {0:?} is longer than 20 bytes")]
    DiskId(String),
    /// A disk flag is not understood.
    #[error(
        "bad --disk value {0:?}: expected PATH[,ro][,id=SERIAL][,bw=BYTES_PER_S][,bw_burst=BYTES][,iops=N][,iops_burst=N]"
    )]
    DiskSpec(String),
    /// A rate limit is invalid.
    #[error("disk {0}: rate limiter: {1}")]
    RateLimiter(PathBuf, String),
    /// The vsock settings are invalid.
    #[error("vsock: {0}")]
    Vsock(String),
    /// The network settings are invalid.
    #[error("net: {0}")]
    Net(String),
    /// Too many devices for the interrupt lines.
    #[error("at most {0} virtio devices are supported")]
    TooManyDevices(usize),
    /// The command line is too long or has a NUL.
    #[error("kernel command line: {0}")]
    Cmdline(String),
    /// The CPU list does not parse or names CPUs the host lacks.
    #[error("cpu_affinity {0:?}: {1}")]
    CpuAffinity(String, String),
}

impl DiskConfig {
    /// Parses `PATH[,ro][,id=SERIAL]`.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let mut parts = spec.split(',');
        let path = parts.next().filter(|p| !p.is_empty());
        let Some(path) = path else {
            return Err(ConfigError::DiskSpec(spec.to_string()));
        };
        let mut disk = DiskConfig {
            path: PathBuf::from(path),
            read_only: false,
            id: None,
            rate_limiter: None,
        };
        let mut limits = RateLimiterConfig::default();
        for p in parts {
            match p.split_once('=') {
                None if p == "ro" => disk.read_only = true,
                None if p == "rw" => disk.read_only = false,
                Some(("id", v)) => disk.id = Some(v.to_string()),
                Some((k, v)) => match rate_limiter::parse_flag(&mut limits, k, v) {
                    Ok(true) => {}
                    Ok(false) => return Err(ConfigError::DiskSpec(spec.to_string())),
                    Err(e) => return Err(ConfigError::RateLimiter(disk.path.clone(), e)),
                },
                _ => return Err(ConfigError::DiskSpec(spec.to_string())),
            }
        }
        if limits != RateLimiterConfig::default() {
            disk.rate_limiter = Some(limits);
        }
        Ok(disk)
    }
}

/// Parses a Linux CPU list ("0-3,8,10-11") into CPU numbers.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let lo: usize = lo
            .trim()
            .parse()
            .map_err(|_| format!("bad CPU number {lo:?}"))?;
        let hi: usize = hi
            .trim()
            .parse()
            .map_err(|_| format!("bad CPU number {hi:?}"))?;
        if lo > hi || hi >= libc::CPU_SETSIZE as usize {
            return Err(format!("bad CPU range {part:?}"));
        }
        cpus.extend(lo..=hi);
    }
    if cpus.is_empty() {
        return Err("empty CPU list".into());
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Parses a CPU list keeping its order and repeats ("3,1" is vCPU 0 on
/// CPU 3, vCPU 1 on CPU 1).
pub fn parse_cpu_sequence(list: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        out.extend(parse_cpu_list(part)?);
    }
    if out.is_empty() {
        return Err("empty CPU list".into());
    }
    Ok(out)
}

/// Total RAM of this host in MiB, from /proc/meminfo.
pub fn host_memory_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

impl VmConfig {
    /// Reads a JSON config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks everything that can be checked before KVM is touched.
    pub fn validate(&self) -> Result<(), ConfigError> {
        std::fs::File::open(&self.kernel).map_err(|source| ConfigError::Kernel {
            path: self.kernel.clone(),
            source,
        })?;
        if let Some(initrd) = &self.initrd {
            std::fs::File::open(initrd).map_err(|source| ConfigError::Initrd {
                path: initrd.clone(),
                source,
            })?;
        }
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(ConfigError::Vcpus(self.vcpus));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(ConfigError::MemoryTooSmall(self.memory_mib));
        }
        if let Some(host) = host_memory_mib()
            && self.memory_mib > host
        {
            return Err(ConfigError::MemoryTooLarge {
                requested: self.memory_mib,
                host,
            });
        }
        for d in &self.disks {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(!d.read_only)
                .open(&d.path)
                .map_err(|source| ConfigError::Disk {
                    path: d.path.clone(),
                    source,
                })?;
            let len = f
                .metadata()
                .map_err(|source| ConfigError::Disk {
                    path: d.path.clone(),
                    source,
                })?
                .len();
            if len < 512 {
                return Err(ConfigError::DiskTooSmall(d.path.clone()));
            }
            if let Some(id) = &d.id
                && id.len() > 20
            {
                return Err(ConfigError::DiskId(id.clone()));
            }
            if let Some(rl) = &d.rate_limiter {
                rl.validate()
                    .map_err(|e| ConfigError::RateLimiter(d.path.clone(), e))?;
            }
        }
        for n in &self.nets {
            n.mac_address()?;
            if let Some(rl) = &n.rate_limiter {
                rl.validate().map_err(ConfigError::Net)?;
            }
            if n.tap.is_empty() || n.tap.len() > 15 {
                return Err(ConfigError::Net(format!(
                    "tap name {:?} must be 1 to 15 bytes",
                    n.tap
                )));
            }
        }
        if let Some(v) = &self.vsock {
            if v.guest_cid < 3 || v.guest_cid > u64::from(u32::MAX) - 1 {
                return Err(ConfigError::Vsock(format!(
                    "guest_cid must be between 3 and {}, got {}",
                    u32::MAX - 1,
                    v.guest_cid
                )));
            }
            let parent = v
                .uds_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(ConfigError::Vsock(format!(
                    "directory of {} does not exist",
                    v.uds_path.display()
                )));
            }
        }
        if self.cmdline.contains('\0') {
            return Err(ConfigError::Cmdline("contains a NUL byte".into()));
        }
        if let Some(list) = &self.vcpu_cpus {
            let cpus =
                parse_cpu_sequence(list).map_err(|e| ConfigError::CpuAffinity(list.clone(), e))?;
            if cpus.len() != self.vcpus as usize {
                return Err(ConfigError::CpuAffinity(
                    list.clone(),
                    format!(
                        "{} CPUs for {} vCPUs: dedicated pinning needs one per vCPU",
                        cpus.len(),
                        self.vcpus
                    ),
                ));
            }
        }
        for list in self.cpu_affinity.iter().chain(self.vcpu_cpus.iter()) {
            let cpus =
                parse_cpu_list(list).map_err(|e| ConfigError::CpuAffinity(list.clone(), e))?;
            let online = std::thread::available_parallelism().map_or(1, |n| n.get());
            let max_possible = std::fs::read_to_string("/sys/devices/system/cpu/possible")
                .ok()
                .and_then(|s| parse_cpu_list(s.trim()).ok())
                .and_then(|v| v.last().copied())
                .unwrap_or(online.saturating_sub(1));
            if let Some(bad) = cpus.iter().find(|c| **c > max_possible) {
                return Err(ConfigError::CpuAffinity(
                    list.clone(),
                    format!("host has no CPU {bad}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_specs_parse() {
        let d = DiskConfig::parse("/tmp/a.img,ro,id=vol-1").expect("parse");
        assert_eq!(d.path, PathBuf::from("/tmp/a.img"));
        assert!(d.read_only);
        assert_eq!(d.id.as_deref(), Some("vol-1"));
        assert!(DiskConfig::parse(",ro").is_err());
        assert!(DiskConfig::parse("/x,bogus").is_err());
        assert!(DiskConfig::parse("/x,bogus=1").is_err());
        assert!(DiskConfig::parse("/x,bw=fast").is_err());
        let d = DiskConfig::parse("/x,bw=1M,iops=200,iops_burst=10").expect("limits");
        let rl = d.rate_limiter.expect("limiter");
        assert_eq!(rl.bandwidth.map(|b| b.rate), Some(1 << 20));
        assert_eq!(rl.ops.map(|b| (b.rate, b.burst)), Some((200, Some(10))));
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3,8").expect("ok"), vec![0, 1, 2, 3, 8]);
        assert_eq!(parse_cpu_list("1,1,0").expect("ok"), vec![0, 1]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("x").is_err());
    }

    #[test]
    fn unknown_json_fields_are_refused() {
        let bad = r#"{"kernel":"/k","vcpus":1,"memory_mib":64,"bogus":1}"#;
        assert!(serde_json::from_str::<VmConfig>(bad).is_err());
        let good =
            r#"{"kernel":"/k","vcpus":1,"memory_mib":64,"disks":[{"path":"/d","read_only":true}]}"#;
        let c: VmConfig = serde_json::from_str(good).expect("parse");
        assert!(c.disks[0].read_only);
    }

    #[test]
    fn validation_catches_bad_values() {
        let dir = tempfile::tempdir().expect("tmp");
        let kernel = dir.path().join("k");
        std::fs::write(&kernel, b"x").expect("write");
        let mut c = VmConfig {
            kernel: kernel.clone(),
            initrd: None,
            cmdline: String::new(),
            vcpus: 0,
            memory_mib: 64,
            disks: vec![],
            console: ConsoleConfig::default(),
            cpu_affinity: None,
            vcpu_cpus: None,
            boot: BootProtocol::Linux64,
            vsock: None,
            nets: vec![],
        };
        assert!(matches!(c.validate(), Err(ConfigError::Vcpus(0))));
        c.vcpus = 33;
        assert!(matches!(c.validate(), Err(ConfigError::Vcpus(33))));
        c.vcpus = 1;
        c.memory_mib = u64::MAX / 2;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::MemoryTooLarge { .. })
        ));
        c.memory_mib = 64;
        c.kernel = dir.path().join("missing");
        assert!(matches!(c.validate(), Err(ConfigError::Kernel { .. })));
        c.kernel = kernel;
        c.disks
            .push(DiskConfig::parse(&dir.path().join("nope").display().to_string()).expect("p"));
        assert!(matches!(c.validate(), Err(ConfigError::Disk { .. })));
        c.disks.clear();
        assert!(c.validate().is_ok());
    }
}
