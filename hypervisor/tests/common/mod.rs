//! Helpers shared by the VMM's integration tests: find (or build) the mini
//! image, run `minicloud-vmm` as a real process with a deadline, and talk
//! to its console.
#![allow(dead_code)]

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The VMM binary cargo built for this test run.
pub fn vmm() -> &'static str {
    env!("CARGO_BIN_EXE_minicloud-vmm")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Path of the mini guest kernel, built with `images/build mini` on first
/// use (a no-op when the cache is up to date).
pub fn mini_kernel() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    BUILT
        .get_or_init(|| {
            let _g = LOCK.lock();
            let root = repo_root();
            let out = Command::new(root.join("images/build"))
                .arg("mini")
                .output()
                .expect("run images/build");
            assert!(
                out.status.success(),
                "images/build mini failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let dir = std::env::var_os("MINICLOUD_IMAGES")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var("HOME").expect("HOME"))
                        .join(".cache/minicloud/images")
                });
            let k = dir.join("mini/kernel");
            assert!(k.exists(), "{} missing after build", k.display());
            k
        })
        .clone()
}

/// Runs the VMM to completion with `args`, killing it after `deadline`.
pub fn run_vmm(args: &[&str], deadline: Duration) -> Output {
    let mut child = Command::new(vmm())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn minicloud-vmm");
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "minicloud-vmm {args:?} did not finish in {deadline:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the mini guest with a `minicloud.run` command line.
pub fn run_mini(extra: &[&str], run: &str) -> Output {
    let kernel = mini_kernel();
    let cmdline = format!("console=ttyS0 minicloud.run=\"{run}\"");
    let mut args = vec![
        "--kernel",
        kernel.to_str().expect("utf8"),
        "--cmdline",
        &cmdline,
    ];
    args.extend_from_slice(extra);
    run_vmm(&args, Duration::from_secs(60))
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the VMM ended with `code`, showing everything when not.
pub fn assert_status(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "unexpected status\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A guest with an interactive console on stdin/stdout.
pub struct Interactive {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Interactive {
    /// Starts the VMM with `args`; the console is the process's stdio.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(vmm())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdin = child.stdin.take().expect("stdin");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            // Split on newlines and on the prompt, which has none.
            let mut r = BufReader::new(out);
            let mut cur = Vec::new();
            let mut byte = [0u8; 1];
            while let Ok(1) = r.read(&mut byte) {
                if byte[0] == b'\n' {
                    let _ = tx.send(String::from_utf8_lossy(&cur).trim_end().to_string());
                    cur.clear();
                } else {
                    cur.push(byte[0]);
                    if cur.ends_with(b"mini# ") {
                        let _ = tx.send(String::from_utf8_lossy(&cur).to_string());
                        cur.clear();
                    }
                }
            }
            if !cur.is_empty() {
                let _ = tx.send(String::from_utf8_lossy(&cur).to_string());
            }
        });
        Interactive {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line satisfying `pred`.
    pub fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "timed out waiting for {what}; console so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// The VMM's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types a line on the console.
    pub fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).expect("write");
        self.stdin.write_all(b"\n").expect("write");
        self.stdin.flush().expect("flush");
    }

    /// Waits for the process to end.
    pub fn wait(&mut self, within: Duration) -> i32 {
        let end = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code().unwrap_or(-1);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("VMM did not exit; console:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Reads the rest of stderr (after exit).
    pub fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key=value` in a line of guest output.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}
