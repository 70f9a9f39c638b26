//! The serial console: a 16550A UART (vm-superio) on 0x3f8 / IRQ 4, whose
//! output goes to stdout or a log file (and to Unix-socket clients), and
//! whose input comes from stdin or those clients.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::exit::ExitSignal;

/// First I/O port of COM1.
pub const COM1_BASE: u16 = 0x3f8;
/// Interrupt line of COM1.
pub const COM1_IRQ: u32 = 4;

/// Raises an interrupt line through an irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// The UART as the vCPU threads share it.
pub type SharedSerial = Arc<Mutex<Serial<IrqTrigger, NoEvents, ConsoleOut>>>;

/// Where guest output goes: one primary sink, socket clients, and a line
/// scanner that notices a Linux kernel panic.
pub struct ConsoleOut {
    primary: Box<dyn Write + Send>,
    clients: Arc<Mutex<Vec<UnixStream>>>,
    line: Vec<u8>,
    exit: Arc<ExitSignal>,
}

const PANIC_MARK: &[u8] = b"Kernel panic - not syncing: ";
const PANIC_END_MARK: &[u8] = b"---[ end Kernel panic";
const GUEST_PANIC_MARK: &[u8] = b"PANIC: ";
const MAX_LINE: usize = 1024;

impl ConsoleOut {
    fn scan(&mut self, byte: u8) {
        if byte == b'\n' || self.line.len() >= MAX_LINE {
            if self.line.windows(PANIC_MARK.len()).any(|w| w == PANIC_MARK) {
                let reason = self.panic_reason();
                self.exit.note_panic(reason);
            } else if let Some(reason) = self.line.strip_prefix(GUEST_PANIC_MARK) {
                // The mini guest's own panic line.
                let reason = String::from_utf8_lossy(reason).trim().to_string();
                self.exit.note_panic(reason);
            }
            self.line.clear();
            return;
        }
        self.line.push(byte);
        if self.line.ends_with(PANIC_END_MARK) {
            let reason = self
                .exit
                .panic_note()
                .unwrap_or_else(|| self.panic_reason());
            self.exit.note_panic(reason.clone());
            // Linux prints this line last; with panic=0 it would hang
            // forever, so the VM ends here.
            self.exit.report(crate::exit::VmExit::GuestPanic(reason));
        }
    }

    fn panic_reason(&self) -> String {
        let text = String::from_utf8_lossy(&self.line);
        match text.find("not syncing: ") {
            Some(i) => text[i + 13..].trim_end_matches(" ]---").trim().to_string(),
            None => text.trim().to_string(),
        }
    }
}

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for b in buf {
            self.scan(*b);
        }
        // A console that cannot be written must not stop the guest.
        let _ = self.primary.write_all(buf);
        if let Ok(mut clients) = self.clients.lock() {
            clients.retain(|c| match send_nonblocking(c, buf) {
                Ok(_) => true,
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            });
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.primary.flush();
        Ok(())
    }
}

/// Sends without blocking (a slow console client loses output rather than
/// stalling the vCPU; the log keeps everything). `O_NONBLOCK` cannot be used
/// because it would also make the client's reader thread non-blocking.
fn send_nonblocking(stream: &UnixStream, buf: &[u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: the fd is owned by `stream` and open for the whole call; `buf`
    // is valid for `buf.len()` bytes.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Builds the UART and starts its input threads.
pub fn create(
    trigger: IrqTrigger,
    log: Option<&Path>,
    socket: Option<&Path>,
    read_stdin: bool,
    exit: Arc<ExitSignal>,
) -> io::Result<SharedSerial> {
    let primary: Box<dyn Write + Send> = match log {
        Some(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
        None => Box::new(io::stdout()),
    };
    let clients = Arc::new(Mutex::new(Vec::new()));
    let out = ConsoleOut {
        primary,
        clients: clients.clone(),
        line: Vec::new(),
        exit: exit.clone(),
    };
    let serial = Arc::new(Mutex::new(Serial::new(trigger, out)));
    if read_stdin {
        let s = serial.clone();
        let e = exit.clone();
        std::thread::Builder::new()
            .name("console-stdin".into())
            .spawn(move || {
                crate::seccomp::install_or_die(crate::seccomp::ThreadKind::Console);
                pump_input(io::stdin().lock(), &s, &e)
            })?;
    }
    if let Some(path) = socket {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let s = serial.clone();
        std::thread::Builder::new()
            .name("console-sock".into())
            .spawn(move || {
                // Client threads inherit this filter.
                crate::seccomp::install_or_die(crate::seccomp::ThreadKind::Console);
                serve_socket(listener, s, clients, exit)
            })?;
    }
    Ok(serial)
}

fn serve_socket(
    listener: UnixListener,
    serial: SharedSerial,
    clients: Arc<Mutex<Vec<UnixStream>>>,
    exit: Arc<ExitSignal>,
) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if let Ok(writer) = conn.try_clone()
            && let Ok(mut c) = clients.lock()
        {
            c.push(writer);
        }
        let s = serial.clone();
        let e = exit.clone();
        let _ = std::thread::Builder::new()
            .name("console-client".into())
            .spawn(move || pump_input(conn, &s, &e));
    }
}

/// Copies bytes from `input` into the UART's receive FIFO, waiting for the
/// guest to drain it when full.
pub fn pump_input<R: Read>(mut input: R, serial: &SharedSerial, exit: &ExitSignal) {
    let mut buf = [0u8; 256];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if exit.is_set() {
                return;
            }
            let taken = match serial.lock() {
                Ok(mut s) => {
                    let room = s.fifo_capacity().min(rest.len());
                    if room > 0 {
                        s.enqueue_raw_bytes(&rest[..room]).unwrap_or(0)
                    } else {
                        0
                    }
                }
                Err(_) => return,
            };
            rest = &rest[taken..];
            if !rest.is_empty() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(exit: Arc<ExitSignal>) -> ConsoleOut {
        ConsoleOut {
            primary: Box::new(io::sink()),
            clients: Arc::new(Mutex::new(Vec::new())),
            line: Vec::new(),
            exit,
        }
    }

    #[test]
    fn linux_panic_is_noticed_and_ends_the_vm() {
        let exit = Arc::new(ExitSignal::default());
        let mut o = out(exit.clone());
        o.write_all(b"[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n")
            .expect("w");
        assert!(!exit.is_set());
        o.write_all(
            b"[    1.1] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs ]---",
        )
        .expect("w");
        assert_eq!(
            exit.wait(),
            crate::exit::VmExit::GuestPanic("VFS: Unable to mount root fs".into())
        );
    }

    #[test]
    fn ordinary_output_is_not_a_panic() {
        let exit = Arc::new(ExitSignal::default());
        let mut o = out(exit.clone());
        for b in b"hello\nKernel panic is a phrase\n" {
            o.write_all(&[*b]).expect("w");
        }
        assert!(!exit.is_set());
    }
}
