//! VMM processes: spawning `minicloud-vmm` for an instance, recognising it
//! again after a daemon restart, and learning how it ended.
//!
//! Each VM has a directory: `vm.json` (its VMM config), `console.log`,
//! `console.sock`, `vmm.log` (the VMM's stderr), `vmm.pid` and, once it
//! ended, `exit.json` written by the VMM itself. VMM processes run in their
//! own process group and are not the daemon's to kill on exit: VMs outlive
//! the daemon.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use hypervisor::config::VmConfig;
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Files of one VM.
#[derive(Debug, Clone)]
pub struct VmDir(pub PathBuf);

impl VmDir {
    /// The VMM config.
    pub fn config(&self) -> PathBuf {
        self.0.join("vm.json")
    }
    /// The guest console log.
    pub fn console_log(&self) -> PathBuf {
        self.0.join("console.log")
    }
    /// The console socket.
    pub fn console_sock(&self) -> PathBuf {
        self.0.join("console.sock")
    }
    /// The VMM's own log (stderr).
    pub fn vmm_log(&self) -> PathBuf {
        self.0.join("vmm.log")
    }
    /// How the VMM ended (written by the VMM).
    pub fn exit_file(&self) -> PathBuf {
        self.0.join("exit.json")
    }
    /// pid and start time of the running VMM (written by the daemon).
    pub fn pid_file(&self) -> PathBuf {
        self.0.join("vmm.pid")
    }
    /// The base path of the VM's hybrid vsock (the VMM listens here for
    /// host-initiated connections; guest connections to host port P go
    /// to `<this>_P`).
    pub fn vsock_uds(&self) -> PathBuf {
        self.0.join("vsock.sock")
    }
    /// The host side of the instance API (guest vsock port 80).
    pub fn guest_api_sock(&self) -> PathBuf {
        crate::guest::GuestApi::socket_path(&self.vsock_uds())
    }
    /// The VMM's control socket.
    pub fn api_sock(&self) -> PathBuf {
        self.0.join("api.sock")
    }
}

/// What the VMM wrote when the VM ended.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ExitRecord {
    /// The VMM's exit status.
    pub status: i64,
    /// One line saying what happened.
    pub reason: String,
    /// When (unix ms).
    pub ended_at_ms: i64,
}

/// A VMM we started.
pub struct Spawned {
    /// Its pid.
    pub pid: i32,
    /// Its start time (clock ticks since boot).
    pub starttime: u64,
    /// The child handle (to reap it).
    pub child: tokio::process::Child,
}

/// Starts the VMM for `config` in `dir`.
pub fn spawn(vmm: &Path, dir: &VmDir, config: &VmConfig) -> io::Result<Spawned> {
    std::fs::create_dir_all(&dir.0)?;
    let json = serde_json::to_vec_pretty(config).map_err(io::Error::other)?;
    std::fs::write(dir.config(), json)?;
    let _ = std::fs::remove_file(dir.exit_file());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.vmm_log())?;
    let child = tokio::process::Command::new(vmm)
        .arg("--config")
        .arg(dir.config())
        .arg("--exit-status-file")
        .arg(dir.exit_file())
        .arg("--api-sock")
        .arg(dir.api_sock())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        // Its own process group: a Ctrl-C or a signal to the daemon's group
        // does not reach the VMs.
        .process_group(0)
        .kill_on_drop(false)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("VMM exited before its pid was read"))?
        as i32;
    let starttime = starttime(pid).unwrap_or(0);
    std::fs::write(dir.pid_file(), format!("{pid} {starttime}\n"))?;
    Ok(Spawned {
        pid,
        starttime,
        child,
    })
}

/// Field 22 of /proc/PID/stat: when the process started.
pub fn starttime(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it follow ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is still the process that started at `expected`.
pub fn is_alive(pid: i32, expected: u64) -> bool {
    match starttime(pid) {
        Some(t) => t == expected && !is_zombie(pid),
        None => false,
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// Reads the pid file a spawn left (pid, start time).
pub fn read_pid_file(dir: &VmDir) -> Option<(i32, u64)> {
    let text = std::fs::read_to_string(dir.pid_file()).ok()?;
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Reads the VMM's exit record, if it wrote one.
pub fn read_exit(dir: &VmDir) -> Option<ExitRecord> {
    let text = std::fs::read(dir.exit_file()).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The last non-empty line of the VMM's log (its error, when it failed).
pub fn last_log_line(dir: &VmDir) -> Option<String> {
    let text = std::fs::read_to_string(dir.vmm_log()).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// `GET path` on the VMM's control socket; returns the JSON body.
pub async fn vmm_api_get(dir: &VmDir, path: &str) -> io::Result<serde_json::Value> {
    let (status, body) = vmm_api(dir, "GET", path, None).await?;
    if status != 200 {
        return Err(io::Error::other(format!("VMM answered {status}: {body}")));
    }
    serde_json::from_str(&body).map_err(io::Error::other)
}

/// One request to the VMM's control API (HTTP/1.1 over its Unix socket);
/// returns the status and body.
pub async fn vmm_api(
    dir: &VmDir,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A VMM that has just started may not have bound its socket yet.
    let mut tries = 0;
    let mut s = loop {
        match tokio::net::UnixStream::connect(dir.api_sock()).await {
            Ok(s) => break s,
            Err(e)
                if tries < 40
                    && matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    ) =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: vmm\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "VMM control API did not answer"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("malformed HTTP answer from the VMM"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other("malformed HTTP status from the VMM"))?;
    Ok((status, body.to_string()))
}

/// Waits until a process that is not our child exits (pidfd).
pub async fn wait_exit(pid: i32) -> io::Result<()> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(())
        } else {
            Err(e)
        };
    }
    // SAFETY: `fd` is a fresh pidfd this function owns from here on.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the pidfd, so it stays open for as long as
    // it is registered.
    let afd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    let _ready = afd.readable().await?;
    Ok(())
}

/// Sends `signal` to `pid` if it is still the process that started at
/// `starttime`.
pub fn signal(pid: i32, starttime: u64, signal: i32) -> bool {
    if !is_alive(pid, starttime) {
        return false;
    }
    // SAFETY: kill(2) with a pid we just checked and a valid signal number.
    unsafe { libc::kill(pid, signal) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_starttime_is_readable_and_stable() {
        let me = std::process::id() as i32;
        let a = starttime(me).expect("starttime");
        assert_eq!(starttime(me), Some(a));
        assert!(is_alive(me, a));
        assert!(!is_alive(me, a + 1));
        assert!(!is_alive(i32::MAX, a));
    }

    #[tokio::test]
    async fn wait_exit_returns_when_a_process_ends() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .expect("sleep");
        let pid = child.id().expect("pid") as i32;
        let t = std::time::Instant::now();
        wait_exit(pid).await.expect("wait");
        assert!(t.elapsed() >= std::time::Duration::from_millis(150));
        let _ = child.wait().await;
    }
}
