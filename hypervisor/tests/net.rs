//! virtio-net on a tap: the test makes its own network namespace with a tap
//! in it (`ip netns add`, `ip tuntap add`), runs the VMM inside it, and
//! pings the mini guest (which answers ARP and ICMP echo for its address)
//! from a thread that joined the namespace. No address outside that
//! namespace is ever used. Skipped (with a note) without root, /dev/net/tun
//! or `ip`.

mod common;

use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const HOST_IP: &str = "192.168.77.1";
const GUEST_IP: [u8; 4] = [192, 168, 77, 2];

struct Netns(String);

impl Netns {
    fn create(name: &str) -> Option<Netns> {
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let _ = ip(&["netns", "del", name]);
        if !ip(&["netns", "add", name]) {
            return None;
        }
        let ns = Netns(name.to_string());
        let ok = ip(&["-n", name, "tuntap", "add", "dev", "mctap0", "mode", "tap"])
            && ip(&[
                "-n",
                name,
                "addr",
                "add",
                &format!("{HOST_IP}/24"),
                "dev",
                "mctap0",
            ])
            && ip(&["-n", name, "link", "set", "mctap0", "up"])
            && ip(&["-n", name, "link", "set", "lo", "up"]);
        ok.then_some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Pings the guest from inside namespace `ns`: returns how many of `count`
/// echo requests were answered with the same payload.
fn ping_in_netns(ns: &str, count: u16) -> u16 {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
        // SAFETY: setns on this thread only, with a namespace fd we hold.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        // SAFETY: plain socket call; checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 300_000,
        };
        // SAFETY: valid fd and option buffer.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        // SAFETY: sockaddr_in is plain data.
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as u16;
        to.sin_addr.s_addr = u32::from_ne_bytes(GUEST_IP);
        let mut answered = 0;
        let end = Instant::now() + Duration::from_secs(20);
        let mut seq = 0u16;
        while answered < count && Instant::now() < end {
            seq += 1;
            let payload = format!("minicloud ping {seq:05}");
            let mut pkt = vec![8u8, 0, 0, 0, 0x12, 0x34, (seq >> 8) as u8, seq as u8];
            pkt.extend_from_slice(payload.as_bytes());
            let c = csum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
            // SAFETY: valid buffer and address.
            unsafe {
                libc::sendto(
                    fd,
                    pkt.as_ptr().cast(),
                    pkt.len(),
                    0,
                    (&raw const to).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            };
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_millis(600);
            while Instant::now() < deadline {
                // SAFETY: valid buffer.
                let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    break;
                }
                let n = n as usize;
                let ihl = usize::from(buf[0] & 15) * 4;
                if n >= ihl + 8
                    && buf[12..16] == GUEST_IP
                    && buf[ihl] == 0
                    && buf[ihl + 6..ihl + 8] == seq.to_be_bytes()
                    && &buf[ihl + 8..n] == payload.as_bytes()
                {
                    answered += 1;
                    break;
                }
            }
        }
        // SAFETY: closing our own fd.
        unsafe { libc::close(fd) };
        answered
    })
    .join()
    .expect("ping thread")
}

#[test]
fn guest_answers_arp_and_ping_on_a_tap_in_its_own_namespace() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/dev/net/tun").exists() {
        eprintln!("skipped: needs root and /dev/net/tun");
        return;
    }
    let name = format!("mcvmm-{}", std::process::id());
    let Some(ns) = Netns::create(&name) else {
        eprintln!("skipped: cannot create a network namespace with a tap (ip netns/tuntap)");
        return;
    };
    let kernel = mini_kernel();
    let vmm = std::thread::spawn({
        let name = name.clone();
        move || {
            Command::new("ip")
                .args(["netns", "exec", &name, vmm()])
                .args(["--kernel", kernel.to_str().expect("utf8")])
                .args(["--net-tap", "mctap0,mac=52:54:00:aa:bb:cc,ops=1000"])
                .args([
                    "--cmdline",
                    "console=ttyS0 minicloud.run=\"net-serve 192.168.77.2 6\"",
                ])
                .stdin(Stdio::null())
                .output()
                .expect("run vmm")
        }
    });
    let answered = ping_in_netns(&ns.0, 3);
    let o = vmm.join().expect("vmm");
    assert_status(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("net0: mac=52:54:00:aa:bb:cc"), "{out}");
    assert_eq!(answered, 3, "guest output:\n{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("net-serve: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(field(line, "arp").is_some_and(|n| n != "0"), "{line}");
    assert!(
        field(line, "icmp")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= 3),
        "{line}"
    );
    drop(ns);
}
