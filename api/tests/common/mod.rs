//! A real `minicloud serve` process on a loopback port with its own data
//! directory, and an HTTP client for it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Builds the mini image and the VMM binary once per test process.
pub fn prerequisites() -> (PathBuf, PathBuf) {
    static DONE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DONE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let st = Command::new(root.join("images/build"))
            .arg("mini")
            .stdout(Stdio::null())
            .status()
            .expect("images/build");
        assert!(st.success(), "images/build mini failed");
        let images = std::env::var_os("MINICLOUD_IMAGES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/minicloud/images")
            });
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_minicloud"));
        let vmm = bin.with_file_name("minicloud-vmm");
        // Always (re)build it: a VMM older than the hypervisor library the
        // daemon was built with would refuse the config the daemon writes.
        {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "-p", "hypervisor", "--bin", "minicloud-vmm"])
                .current_dir(&root)
                .status()
                .expect("cargo build");
            assert!(st.success(), "building minicloud-vmm failed");
        }
        (images, vmm)
    })
    .clone()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running daemon.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub url: String,
    pub admin_token: String,
    child: Option<Child>,
    agent: ureq::Agent,
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts a daemon on a fresh data directory.
    pub fn start() -> Daemon {
        Daemon::start_with_env(&[])
    }

    /// Starts a daemon with extra environment variables.
    pub fn start_with_env(env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let mut d = Daemon {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            port,
            admin_token: String::new(),
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(120))
                .build(),
        };
        d.spawn();
        d.admin_token = std::fs::read_to_string(d.data_dir().join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string();
        d
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// (Re)starts the daemon process on the same data directory and port.
    pub fn spawn(&mut self) {
        let (images, vmm) = prerequisites();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.log"))
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_minicloud"))
            .args([
                "serve",
                "--no-cli-config",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--images-dir")
            .arg(images)
            .arg("--vmm")
            .arg(vmm)
            .env("MINICLOUD_CONFIG", self.dir.path().join("cli.json"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn minicloud serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self
                .agent
                .get(&format!("{}/healthz", self.url))
                .call()
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not come up:\n{}", self.log());
    }

    /// kill -9 of the daemon (its VMs keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// A request with `token`; returns (status, JSON body or Null).
    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<&str>) -> (u16, Value) {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.url))
            .set("Authorization", &format!("Bearer {token}"));
        let resp = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        let (status, text) = match resp {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{method} {path}: {e}\n{}", self.log()),
        };
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A GET whose body is returned as it came (not parsed as JSON).
    pub fn get_raw(&self, path: &str, token: &str) -> (u16, String) {
        let resp = self
            .agent
            .get(&format!("{}{path}", self.url))
            .set("Authorization", &format!("Bearer {token}"))
            .call();
        match resp {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => panic!("GET {path}: {e}\n{}", self.log()),
        }
    }

    pub fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, token, None)
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, token, Some(&body.to_string()))
    }

    /// Creates a project; returns its token.
    pub fn project(&self, name: &str, quotas: Option<Value>) -> String {
        let mut body = json!({ "name": name });
        if let Some(q) = quotas {
            body["quotas"] = q;
        }
        let (s, v) = self.post("/v1/projects", &self.admin_token, body);
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().expect("token").to_string()
    }

    /// Launches and returns the instance id.
    pub fn launch(&self, token: &str, body: Value) -> String {
        let (s, v) = self.post("/v1/instances", token, body);
        assert_eq!(s, 202, "{v}");
        assert_eq!(v["instance"]["state"], "pending", "{v}");
        v["instance"]["id"].as_str().expect("id").to_string()
    }

    /// Waits (server side) until the instance settles in `want`.
    pub fn wait_state(&self, token: &str, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (s, v) = self.get(&format!("/v1/instances/{id}?wait=10"), token);
            assert_eq!(s, 200, "{v}");
            if v["state"] == want {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "instance {id} is {} not {want}: {v}\n{}",
                    v["state"],
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the console log contains `needle`.
    pub fn wait_console(&self, token: &str, id: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, v) = self.get(&format!("/v1/instances/{id}/console"), token);
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "console of {id} never showed {needle:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Kill every VMM this daemon's instances run, then the daemon.
        let vms = self.data_dir().join("vms");
        if let Ok(entries) = std::fs::read_dir(&vms) {
            for e in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(e.path().join("vmm.pid"))
                    && let Some(pid) = text
                        .split_whitespace()
                        .next()
                        .and_then(|p| p.parse::<i32>().ok())
                {
                    let cmdline =
                        std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if cmdline.contains(&*vms.to_string_lossy()) {
                        // SAFETY: kill(2) on a pid whose command line names our VM dir.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        self.kill9();
    }
}
