//! Discovery of the local host from Linux's `/sys` and `/proc`: the only
//! I/O in the crate.
//!
//! - CPUs: `/sys/devices/system/cpu/online` (or the `cpuN` directories);
//! - topology: `cpuN/topology/{core_id,physical_package_id,thread_siblings_list}`;
//! - NUMA: `/sys/devices/system/node/nodeN/cpulist`;
//! - memory: `MemTotal` in `/proc/meminfo`.
//!
//! Missing topology degrades gracefully, as in containers and old
//! kernels: a CPU without topology files is its own core in package 0, and
//! without `/sys/devices/system/node` every CPU is on node 0. Files that
//! exist but cannot be read or parsed are errors.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cpuset::CpuSet;
use crate::host::{HostCpu, HostSpec};

/// Why the local host could not be discovered.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// What was read.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file did not hold what Linux writes there.
    #[error("cannot parse {path}: {detail}")]
    Parse {
        /// What was read.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// No online CPU was found.
    #[error("no online CPU found under {0}")]
    NoCpus(PathBuf),
}

/// Discovers the machine this process runs on, as host `id`.
pub fn discover_local_host(id: impl Into<String>) -> Result<HostSpec, DiscoverError> {
    discover_host(Path::new("/"), id)
}

/// Discovers a host whose `sys` and `proc` trees live under `root` (`/` for
/// the local machine; a copy elsewhere for tests).
pub fn discover_host(root: &Path, id: impl Into<String>) -> Result<HostSpec, DiscoverError> {
    let cpu_dir = root.join("sys/devices/system/cpu");
    let online = online_cpus(&cpu_dir)?;
    if online.is_empty() {
        return Err(DiscoverError::NoCpus(cpu_dir));
    }
    let nodes = numa_nodes(&root.join("sys/devices/system/node"))?;
    let mut cpus = Vec::with_capacity(online.len());
    for id in &online {
        let topology = cpu_dir.join(format!("cpu{id}/topology"));
        let package = read_optional(&topology.join("physical_package_id"))?
            .map(|text| parse_number(&topology.join("physical_package_id"), &text))
            .transpose()?
            // Some hypervisors report -1: no package information.
            .map_or(0, |package| u32::try_from(package).unwrap_or(0));
        let core = match read_optional(&topology.join("core_id"))? {
            Some(text) => {
                u32::try_from(parse_number(&topology.join("core_id"), &text)?).unwrap_or(id)
            }
            None => match read_optional(&topology.join("thread_siblings_list"))? {
                Some(text) => parse_list(&topology.join("thread_siblings_list"), &text)?
                    .iter()
                    .next()
                    .unwrap_or(id),
                None => id,
            },
        };
        cpus.push(HostCpu {
            id,
            core,
            package,
            node: nodes.get(&id).copied().unwrap_or(0),
        });
    }
    let memory_mib = mem_total_mib(&root.join("proc/meminfo"))?;
    Ok(HostSpec::new(id, cpus, memory_mib))
}

fn read(path: &Path) -> Result<String, DiscoverError> {
    fs::read_to_string(path).map_err(|source| DiscoverError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads a file that may legitimately be absent.
fn read_optional(path: &Path) -> Result<Option<String>, DiscoverError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DiscoverError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse_number(path: &Path, text: &str) -> Result<i64, DiscoverError> {
    text.trim().parse().map_err(|err| DiscoverError::Parse {
        path: path.to_owned(),
        detail: format!("{err}: {:?}", text.trim()),
    })
}

fn parse_list(path: &Path, text: &str) -> Result<CpuSet, DiscoverError> {
    CpuSet::parse(text).map_err(|err| DiscoverError::Parse {
        path: path.to_owned(),
        detail: err.to_string(),
    })
}

/// Numbers `N` of the entries named `<prefix>N` in `dir`.
fn numbered_entries(dir: &Path, prefix: &str) -> Result<Vec<u32>, DiscoverError> {
    let entries = fs::read_dir(dir).map_err(|source| DiscoverError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut numbers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DiscoverError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|name| name.strip_prefix(prefix))
            .and_then(|n| n.parse().ok())
        {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn online_cpus(cpu_dir: &Path) -> Result<CpuSet, DiscoverError> {
    let online = cpu_dir.join("online");
    match read_optional(&online)? {
        Some(text) => parse_list(&online, &text),
        None => Ok(numbered_entries(cpu_dir, "cpu")?.into_iter().collect()),
    }
}

fn numa_nodes(node_dir: &Path) -> Result<BTreeMap<u32, u32>, DiscoverError> {
    let mut nodes = BTreeMap::new();
    if !node_dir.is_dir() {
        return Ok(nodes);
    }
    for node in numbered_entries(node_dir, "node")? {
        let path = node_dir.join(format!("node{node}/cpulist"));
        if let Some(text) = read_optional(&path)? {
            for cpu in &parse_list(&path, &text)? {
                nodes.insert(cpu, node);
            }
        }
    }
    Ok(nodes)
}

fn mem_total_mib(path: &Path) -> Result<u64, DiscoverError> {
    let text = read(path)?;
    let parse_error = |detail: &str| DiscoverError::Parse {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .ok_or_else(|| parse_error("no MemTotal line"))?;
    let mut fields = line.split_whitespace();
    let kib: u64 = fields
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| parse_error("MemTotal is not a number"))?;
    match fields.next() {
        Some("kB") => Ok(kib / 1024),
        _ => Err(parse_error("MemTotal is not in kB")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// A 2-node machine: 2 packages × 2 cores × 2 threads.
    fn fake_machine() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "sys/devices/system/cpu/online", "0-7\n");
        for cpu in 0..8u32 {
            let package = (cpu / 2) % 2;
            let core = cpu % 2;
            let sibling = if cpu < 4 { cpu + 4 } else { cpu - 4 };
            let topo = format!("sys/devices/system/cpu/cpu{cpu}/topology");
            write(root, &format!("{topo}/core_id"), &format!("{core}\n"));
            write(
                root,
                &format!("{topo}/physical_package_id"),
                &format!("{package}\n"),
            );
            write(
                root,
                &format!("{topo}/thread_siblings_list"),
                &format!("{},{}\n", cpu.min(sibling), cpu.max(sibling)),
            );
        }
        write(root, "sys/devices/system/node/node0/cpulist", "0-1,4-5\n");
        write(root, "sys/devices/system/node/node1/cpulist", "2-3,6-7\n");
        write(
            root,
            "proc/meminfo",
            "MemTotal:       16777216 kB\nMemFree:  1 kB\n",
        );
        dir
    }

    #[test]
    fn reads_topology_numa_and_memory() {
        let dir = fake_machine();
        let spec = discover_host(dir.path(), "local").unwrap();
        assert_eq!(spec.id, "local");
        assert_eq!(spec.memory_mib, 16_384);
        assert_eq!(spec.cpus.len(), 8);
        let cpu6 = spec.cpus.iter().find(|c| c.id == 6).unwrap();
        assert_eq!((cpu6.package, cpu6.core, cpu6.node), (1, 0, 1));
        let cpu4 = spec.cpus.iter().find(|c| c.id == 4).unwrap();
        assert_eq!((cpu4.package, cpu4.core, cpu4.node), (0, 0, 0));
    }

    #[test]
    fn degrades_without_topology_or_numa() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("sys/devices/system/cpu/cpu0")).unwrap();
        fs::create_dir_all(root.join("sys/devices/system/cpu/cpu1")).unwrap();
        fs::create_dir_all(root.join("sys/devices/system/cpu/cpufreq")).unwrap();
        write(root, "proc/meminfo", "MemTotal: 2048 kB\n");
        let spec = discover_host(root, "h").unwrap();
        let summary: Vec<(u32, u32, u32, u32)> = spec
            .cpus
            .iter()
            .map(|c| (c.id, c.core, c.package, c.node))
            .collect();
        assert_eq!(summary, [(0, 0, 0, 0), (1, 1, 0, 0)]);
        assert_eq!(spec.memory_mib, 2);
    }

    #[test]
    fn reports_broken_files() {
        let dir = fake_machine();
        write(
            dir.path(),
            "sys/devices/system/cpu/cpu3/topology/core_id",
            "x\n",
        );
        let err = discover_host(dir.path(), "h").unwrap_err();
        assert!(matches!(err, DiscoverError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("cpu3/topology/core_id"));

        let dir = fake_machine();
        write(dir.path(), "proc/meminfo", "MemFree: 1 kB\n");
        assert!(matches!(
            discover_host(dir.path(), "h"),
            Err(DiscoverError::Parse { .. })
        ));

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            discover_host(empty.path(), "h"),
            Err(DiscoverError::Io { .. })
        ));
    }

    #[test]
    fn discovers_this_machine() {
        // Runs on any Linux with /sys and /proc mounted.
        let spec = discover_local_host("self").unwrap();
        assert!(!spec.cpus.is_empty());
        assert!(spec.memory_mib > 0);
    }
}
