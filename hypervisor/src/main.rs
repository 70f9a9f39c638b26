//! The `minicloud-vmm` binary: one VM per process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hypervisor::config::{
    BootProtocol, ConsoleConfig, DiskConfig, NetConfig, VmConfig, VsockConfig,
};
use hypervisor::control::VmControl;
use hypervisor::vmm::Vm;

/// Exit status for a configuration the VMM refuses.
const STATUS_BAD_CONFIG: u8 = 2;

/// Runs one KVM virtual machine until its guest stops.
///
/// Exit status: 0 guest powered off or reset; 1 VMM error; 2 bad
/// configuration; 3 guest panic; 4 triple fault; 5 KVM internal error;
/// 6 killed through the control API; 7 an orderly shutdown (API or
/// SIGTERM) reached its deadline before the guest powered off.
#[derive(Parser, Debug)]
#[command(name = "minicloud-vmm", version, about, long_about)]
struct Args {
    /// Print what this host's KVM can run (JSON) and exit.
    #[arg(long)]
    probe_host: bool,
    /// Read the VM description from this JSON file (see README).
    #[arg(long, conflicts_with_all = ["kernel", "disk", "initrd", "cmdline", "vsock_uds", "net_tap"])]
    config: Option<PathBuf>,
    /// Kernel: ELF vmlinux, bzImage, or the mini guest's ELF.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initial ramdisk.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Number of vCPUs (1-32).
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    memory_mib: u64,
    /// A virtio-blk disk: PATH[,ro][,id=SERIAL][,bw=BYTES_PER_S]
    /// [,bw_burst=BYTES][,iops=N][,iops_burst=N] (sizes take K/M/G);
    /// repeat for more.
    #[arg(long)]
    disk: Vec<String>,
    /// virtio-vsock: host connections arrive on this Unix socket; guest
    /// connections to port P go to PATH_P.
    #[arg(long, requires = "vsock_cid")]
    vsock_uds: Option<PathBuf>,
    /// The guest's vsock context id (3 or more).
    #[arg(long, requires = "vsock_uds")]
    vsock_cid: Option<u64>,
    /// A virtio-net device on an existing tap interface:
    /// NAME[,mac=MAC][,bw=BYTES_PER_S][,bw_burst=BYTES][,ops=N][,ops_burst=N]
    /// (one limiter for both directions); repeat for more.
    #[arg(long)]
    net_tap: Vec<String>,
    /// Serve the control API (HTTP/1.1, see api.openapi.yaml) here.
    #[arg(long)]
    api_sock: Option<PathBuf>,
    /// Seconds an orderly shutdown (API or SIGTERM) waits for the guest to
    /// power off before stopping it.
    #[arg(long, default_value_t = 10.0)]
    shutdown_timeout: f64,
    /// Run without the per-thread seccomp filters (debugging only).
    #[arg(long)]
    no_seccomp: bool,
    /// Write the console to this file instead of stdout.
    #[arg(long)]
    console_log: Option<PathBuf>,
    /// Serve the console on this Unix socket too.
    #[arg(long)]
    console_sock: Option<PathBuf>,
    /// Pin vCPU threads to these host CPUs, as a shared pool (e.g. 0-3,8).
    #[arg(long)]
    cpu_affinity: Option<String>,
    /// Pin vCPU i to the i-th CPU of this list (dedicated; one per vCPU).
    #[arg(long)]
    vcpu_cpus: Option<String>,
    /// When the VM ends, write how (JSON: status, reason, ended_at_ms) to
    /// this file, so a supervisor that is not this process's parent learns it.
    #[arg(long)]
    exit_status_file: Option<PathBuf>,
    /// Boot protocol for ELF kernels.
    #[arg(long, value_enum, default_value = "linux64")]
    boot: BootArg,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BootArg {
    Linux64,
    Pvh,
}

fn config_from(args: &Args) -> anyhow::Result<VmConfig> {
    if let Some(path) = &args.config {
        return Ok(VmConfig::from_file(path)?);
    }
    let Some(kernel) = args.kernel.clone() else {
        anyhow::bail!("--kernel PATH (or --config FILE) is required");
    };
    let nets = args
        .net_tap
        .iter()
        .map(|n| NetConfig::parse(n))
        .collect::<Result<Vec<_>, _>>()?;
    let disks = args
        .disk
        .iter()
        .map(|d| DiskConfig::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VmConfig {
        kernel,
        initrd: args.initrd.clone(),
        cmdline: args.cmdline.clone(),
        vcpus: args.vcpus,
        memory_mib: args.memory_mib,
        disks,
        console: ConsoleConfig {
            log: args.console_log.clone(),
            socket: args.console_sock.clone(),
            stdin: None,
        },
        cpu_affinity: args.cpu_affinity.clone(),
        vcpu_cpus: args.vcpu_cpus.clone(),
        boot: match args.boot {
            BootArg::Linux64 => BootProtocol::Linux64,
            BootArg::Pvh => BootProtocol::Pvh,
        },
        vsock: match (&args.vsock_uds, args.vsock_cid) {
            (Some(uds_path), Some(guest_cid)) => Some(VsockConfig {
                guest_cid,
                uds_path: uds_path.clone(),
            }),
            _ => None,
        },
        nets,
    })
}

/// Records the end of the VM atomically (temporary file, then rename).
fn write_exit_status(path: &std::path::Path, exit: &hypervisor::exit::VmExit) {
    write_exit_record(path, exit.status(), &exit.describe());
}

fn write_exit_record(path: &std::path::Path, status: i32, reason: &str) {
    let ended_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let record = serde_json::json!({
        "status": status,
        "reason": reason,
        "ended_at_ms": ended_at_ms,
    });
    let tmp = path.with_extension("tmp");
    let written =
        std::fs::write(&tmp, record.to_string()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        eprintln!("minicloud-vmm: writing {}: {e}", path.display());
    }
}

/// Blocks SIGTERM in the calling thread (and so in every thread it
/// starts afterwards), so that only [`watch_sigterm`]'s thread receives it.
fn block_sigterm() -> std::io::Result<()> {
    // SAFETY: sigset_t is plain data; the calls only touch our set and the
    // calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// SIGTERM asks for an orderly shutdown, like `PUT /actions shutdown`.
fn watch_sigterm(control: Arc<VmControl>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            hypervisor::seccomp::install_or_die(hypervisor::seccomp::ThreadKind::Signals);
            loop {
                // SAFETY: as in `block_sigterm`; sigwait only writes `sig`.
                let sig = unsafe {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGTERM);
                    let mut sig = 0;
                    if libc::sigwait(&set, &mut sig) != 0 {
                        continue;
                    }
                    sig
                };
                if sig == libc::SIGTERM {
                    eprintln!("minicloud-vmm: SIGTERM: shutting down (asking the guest)");
                    let _ = control.shutdown();
                }
            }
        })?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.probe_host {
        let cap = hypervisor::probe::probe();
        match serde_json::to_string(&cap) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("minicloud-vmm: {e}");
                return ExitCode::from(1);
            }
        }
        return ExitCode::SUCCESS;
    }
    if !(0.0..=86400.0).contains(&args.shutdown_timeout) {
        eprintln!("minicloud-vmm: --shutdown-timeout must be between 0 and 86400 seconds");
        return ExitCode::from(STATUS_BAD_CONFIG);
    }
    if let Err(e) = block_sigterm() {
        eprintln!("minicloud-vmm: blocking SIGTERM: {e}");
        return ExitCode::from(1);
    }
    hypervisor::seccomp::set_enabled(!args.no_seccomp);
    let config = match config_from(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("minicloud-vmm: {e:#}");
            return ExitCode::from(STATUS_BAD_CONFIG);
        }
    };
    let vm = match Vm::build(&config) {
        Ok(vm) => vm,
        Err(hypervisor::vmm::BuildError::Config(e)) => {
            eprintln!("minicloud-vmm: {e}");
            if let Some(path) = &args.exit_status_file {
                write_exit_record(
                    path,
                    i32::from(STATUS_BAD_CONFIG),
                    &format!("bad configuration: {e}"),
                );
            }
            return ExitCode::from(STATUS_BAD_CONFIG);
        }
        Err(e) => {
            eprintln!("minicloud-vmm: {e}");
            if let Some(path) = &args.exit_status_file {
                write_exit_record(path, 1, &format!("VMM error: {e}"));
            }
            return ExitCode::from(1);
        }
    };
    // Set-up is done (devices open, memory mapped): nothing this process
    // runs from now on may gain privileges.
    if let Err(e) = hypervisor::seccomp::no_new_privs() {
        eprintln!("minicloud-vmm: PR_SET_NO_NEW_PRIVS: {e}");
        return ExitCode::from(1);
    }
    let control = vm.controller(Duration::from_secs_f64(args.shutdown_timeout));
    if let Err(e) = watch_sigterm(control.clone()) {
        eprintln!("minicloud-vmm: SIGTERM thread: {e}");
        return ExitCode::from(1);
    }
    if let Some(path) = &args.api_sock
        && let Err(e) = hypervisor::api::start(path, control.clone())
    {
        eprintln!("minicloud-vmm: API socket {}: {e}", path.display());
        return ExitCode::from(1);
    }
    let exit = vm.run();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    eprintln!("minicloud-vmm: {}", exit.describe());
    if let Some(path) = &args.exit_status_file {
        write_exit_status(path, &exit);
    }
    // Exit now: vCPU threads may still sit in KVM_RUN.
    std::process::exit(exit.status())
}
