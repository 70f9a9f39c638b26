//! What the api benches share: a release `minicloud serve` on a loopback
//! port with a fresh data directory, and a JSON call helper.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running daemon (killed with its VMMs on drop).
pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub port: u16,
    pub token: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(rd) = std::fs::read_dir(self.dir.path().join("data/vms")) {
            for e in rd.flatten() {
                if let Ok(t) = std::fs::read_to_string(e.path().join("vmm.pid"))
                    && let Some(pid) = t
                        .split_whitespace()
                        .next()
                        .and_then(|p| p.parse::<i32>().ok())
                {
                    // SAFETY: kill(2) on a VMM this bench's daemon started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the mini image and the release VMM, then starts the daemon
/// with `env` added to its environment.
pub fn start(env: &[(&str, &str)]) -> Daemon {
    let st = Command::new(root().join("images/build"))
        .arg("mini")
        .stdout(Stdio::null())
        .status()
        .expect("images");
    assert!(st.success());
    let vmm = PathBuf::from(env!("CARGO_BIN_EXE_minicloud")).with_file_name("minicloud-vmm");
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "-p",
            "hypervisor",
            "--bin",
            "minicloud-vmm",
        ])
        .current_dir(root())
        .status()
        .expect("cargo");
    assert!(st.success());
    serve(&vmm, None, env)
}

/// Starts `minicloud serve` on a free loopback port and a fresh data
/// directory with this VMM binary and image cache (default cache: `None`).
pub fn serve(vmm: &Path, images_dir: Option<&Path>, env: &[(&str, &str)]) -> Daemon {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_minicloud"));
    let dir = tempfile::tempdir().expect("tmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("a")
        .port();
    let child = Command::new(&bin)
        .args([
            "serve",
            "--no-cli-config",
            "--cpu-allocation-ratio",
            "16",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--vmm")
        .arg(vmm)
        .args(
            images_dir
                .map(|d| ["--images-dir".as_ref(), d.as_os_str()])
                .into_iter()
                .flatten(),
        )
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..1500 {
        if ureq::get(&format!("{url}/healthz")).call().is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(dir.path().join("data/admin.token"))
        .expect("token")
        .trim()
        .to_string();
    Daemon {
        child,
        url,
        port,
        token,
        dir,
    }
}

/// A JSON request with the admin token; panics on an error status.
pub fn call(d: &Daemon, method: &str, path: &str, body: Option<Value>) -> Value {
    let req = ureq::request(method, &format!("{}{path}", d.url))
        .set("Authorization", &format!("Bearer {}", d.token));
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match r {
        Ok(r) => r.into_json().unwrap_or(Value::Null),
        Err(ureq::Error::Status(s, r)) => {
            panic!(
                "{method} {path}: {s} {}",
                r.into_string().unwrap_or_default()
            )
        }
        Err(e) => panic!("{method} {path}: {e}"),
    }
}
