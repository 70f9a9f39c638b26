//! The serial console in both directions: input typed on the VMM's stdin
//! (or its Unix socket) reaches the guest shell, and the answers come back.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

#[test]
fn stdin_reaches_the_guest_shell_and_answers_come_back() {
    let kernel = mini_kernel();
    let mut g = Interactive::start(&["--kernel", kernel.to_str().expect("utf8"), "--vcpus", "2"]);
    g.expect(
        "the prompt",
        |l| l.ends_with("mini# "),
        Duration::from_secs(30),
    );
    g.send("echo hello from the host 42");
    g.expect(
        "the echo",
        |l| l == "hello from the host 42",
        Duration::from_secs(30),
    );
    g.send("info");
    let info = g.expect("info", |l| l.starts_with("cpus="), Duration::from_secs(30));
    assert_eq!(field(&info, "cpus"), Some("2"));
    g.send("no-such-command");
    g.expect(
        "the error",
        |l| l.starts_with("error: unknown command"),
        Duration::from_secs(30),
    );
    g.send("poweroff");
    assert_eq!(g.wait(Duration::from_secs(30)), 0);
}

#[test]
fn console_socket_and_log_carry_the_console() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("console.log");
    let sock = dir.path().join("console.sock");
    let kernel = mini_kernel();
    let child = std::process::Command::new(vmm())
        .args([
            "--kernel",
            kernel.to_str().expect("utf8"),
            "--console-log",
            log.to_str().expect("utf8"),
            "--console-sock",
            sock.to_str().expect("utf8"),
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut child = KillOnDrop(child);
    let mut stream = None;
    for _ in 0..500 {
        if let Ok(s) = UnixStream::connect(&sock) {
            stream = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stream = stream.expect("console socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // Wait for the prompt in the log, then type through the socket.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("mini# ")
    {
        assert!(std::time::Instant::now() < deadline, "no prompt in the log");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut w = stream.try_clone().expect("clone");
    w.write_all(b"echo via-socket\n").expect("write");
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).expect("read") > 0, "socket closed");
        if line.trim_end() == "via-socket" {
            break;
        }
    }
    w.write_all(b"poweroff\n").expect("write");
    let status = child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.starts_with("minicloud-mini v0.1.0"), "{text}");
    assert!(text.lines().any(|l| l == "via-socket"), "{text}");
}

/// Kills the VMM if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
