//! Per-thread system-call filters (seccomp-bpf, built with `seccompiler`).
//!
//! Every thread of the VMM installs the filter of its kind when it starts
//! ([`install`]), after its own set-up (pinning, naming) and before it
//! touches anything the guest controls. A system call outside the list
//! kills the process (as in Firecracker): a VMM thread doing something it
//! never does is a compromised VMM. Installing sets `PR_SET_NO_NEW_PRIVS`
//! for the thread first (and [`no_new_privs`] sets it for the process after
//! set-up, whether or not filters are on).
//!
//! The lists are what each thread does on this code path, plus what Rust's
//! standard library needs under it (allocation, futexes, thread start and
//! exit, clocks). `--no-seccomp` turns filtering off for debugging.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns filtering on or off for threads that start from now on.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

/// Whether threads install filters.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// The kinds of VMM threads, each with its own list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread once the VM runs (waits, then records the end).
    Main,
    /// A vCPU: `KVM_RUN` and the devices it serves synchronously.
    Vcpu,
    /// A device's event thread (vsock sockets, block timer and I/O).
    Device,
    /// The control API's threads.
    Api,
    /// The console's input threads.
    Console,
    /// The SIGTERM thread.
    Signals,
}

/// Why a filter could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The filter did not compile.
    #[error("building the {0:?} filter: {1}")]
    Build(ThreadKind, String),
    /// The kernel refused it.
    #[error("installing the {0:?} filter: {1}")]
    Install(ThreadKind, String),
}

/// What every thread needs: memory, futexes, clocks, signals returning,
/// thread exit, plain reads and writes on descriptors it already has.
const BASE: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_gettimeofday,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
    libc::SYS_getrandom,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_fcntl,
    libc::SYS_sched_getaffinity,
];

/// Starting threads (std: clone3, falling back to clone; new threads name
/// themselves).
const SPAWN: &[i64] = &[libc::SYS_clone, libc::SYS_clone3, libc::SYS_prctl];

/// Socket traffic on connections that exist.
const SOCKET_IO: &[i64] = &[
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_accept,
    libc::SYS_accept4,
];

/// Disk I/O of virtio-blk (served on the vCPU, and on the device thread
/// after a rate-limit wait) and the throttle timer.
const DISK_IO: &[i64] = &[
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_timerfd_settime,
];

fn extra(kind: ThreadKind) -> Vec<i64> {
    let mut v: Vec<i64> = Vec::new();
    match kind {
        ThreadKind::Main => v.extend([
            // Recording the end (--exit-status-file): write a temporary
            // file, rename it.
            libc::SYS_openat,
            libc::SYS_rename,
            libc::SYS_renameat,
            libc::SYS_renameat2,
            libc::SYS_fstat,
            libc::SYS_statx,
            libc::SYS_lseek,
            libc::SYS_unlink,
            libc::SYS_unlinkat,
        ]),
        ThreadKind::Vcpu => {
            // ioctl: KVM_RUN, and register reads when the VM ends.
            v.push(libc::SYS_ioctl);
            v.extend(DISK_IO);
            // Console output to socket clients (MSG_DONTWAIT sends).
            v.push(libc::SYS_sendto);
        }
        ThreadKind::Device => {
            v.extend(SOCKET_IO);
            v.extend(DISK_IO);
            v.extend([
                libc::SYS_epoll_wait,
                libc::SYS_epoll_pwait,
                libc::SYS_epoll_ctl,
                // vsock: guest connections to host sockets.
                libc::SYS_socket,
                libc::SYS_connect,
                libc::SYS_getsockopt,
            ]);
        }
        ThreadKind::Api => {
            v.extend(SPAWN);
            v.extend(SOCKET_IO);
            v.extend([
                libc::SYS_setsockopt,
                // /proc/self/statm for the RSS in GET /metrics.
                libc::SYS_openat,
                libc::SYS_fstat,
                libc::SYS_statx,
                libc::SYS_lseek,
            ]);
        }
        ThreadKind::Console => {
            v.extend(SPAWN);
            v.extend(SOCKET_IO);
        }
        ThreadKind::Signals => v.push(libc::SYS_rt_sigtimedwait),
    }
    v
}

/// The syscall numbers a thread of `kind` may make.
pub fn allowed(kind: ThreadKind) -> Vec<i64> {
    let mut all: Vec<i64> = BASE.to_vec();
    all.extend(extra(kind));
    all.sort_unstable();
    all.dedup();
    all
}

/// The compiled filter for `kind`.
pub fn filter(kind: ThreadKind) -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in allowed(kind) {
        rules.insert(nr, Vec::new());
    }
    if kind == ThreadKind::Device || kind == ThreadKind::Console || kind == ThreadKind::Api {
        // ioctl only to make a socket non-blocking (FIONBIO).
        let fionbio =
            SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::FIONBIO)
                .map_err(|e| SeccompError::Build(kind, e.to_string()))?;
        let rule = SeccompRule::new(vec![fionbio])
            .map_err(|e| SeccompError::Build(kind, e.to_string()))?;
        rules.insert(libc::SYS_ioctl, vec![rule]);
    }
    let f = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| SeccompError::Build(kind, e.to_string()))?;
    BpfProgram::try_from(f).map_err(|e| SeccompError::Build(kind, e.to_string()))
}

/// Installs the filter of `kind` on the calling thread (nothing when
/// filtering is off).
pub fn install(kind: ThreadKind) -> Result<(), SeccompError> {
    if !enabled() {
        return Ok(());
    }
    let prog = filter(kind)?;
    seccompiler::apply_filter(&prog).map_err(|e| SeccompError::Install(kind, e.to_string()))
}

/// Installs the filter of `kind`, or ends the process saying why: a
/// thread that cannot be confined must not go on.
pub fn install_or_die(kind: ThreadKind) {
    if let Err(e) = install(kind) {
        eprintln!("minicloud-vmm: seccomp: {e}");
        std::process::exit(1);
    }
}

/// Sets `PR_SET_NO_NEW_PRIVS` for the calling thread and those it starts
/// from now on: nothing the VMM executes can gain privileges.
pub fn no_new_privs() -> std::io::Result<()> {
    // SAFETY: prctl with these arguments only sets a flag on this thread.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_compiles() {
        for k in [
            ThreadKind::Main,
            ThreadKind::Vcpu,
            ThreadKind::Device,
            ThreadKind::Api,
            ThreadKind::Console,
            ThreadKind::Signals,
        ] {
            let p = filter(k).expect("filter");
            assert!(!p.is_empty(), "{k:?}");
        }
    }

    #[test]
    fn lists_are_narrow_where_they_should_be() {
        let vcpu = allowed(ThreadKind::Vcpu);
        for denied in [
            libc::SYS_execve,
            libc::SYS_openat,
            libc::SYS_socket,
            libc::SYS_clone,
            libc::SYS_ptrace,
        ] {
            assert!(!vcpu.contains(&denied), "vCPU may not {denied}");
        }
        assert!(!allowed(ThreadKind::Device).contains(&libc::SYS_execve));
        assert!(!allowed(ThreadKind::Api).contains(&libc::SYS_socket));
        assert!(!allowed(ThreadKind::Signals).contains(&libc::SYS_openat));
    }

    #[test]
    fn a_filtered_thread_runs_what_it_may() {
        // In a thread of its own: a filter cannot be removed. The API list
        // allows opening /proc files, so the thread can see its own mode.
        let status = std::thread::spawn(|| {
            install(ThreadKind::Api).expect("install");
            let m = std::sync::Mutex::new(1);
            *m.lock().expect("lock") += 1;
            std::fs::read_to_string("/proc/thread-self/status").expect("status")
        })
        .join()
        .expect("thread");
        assert!(status.contains("Seccomp:\t2"), "{status}");
        assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    }
}
