//! The port-I/O devices: COM1, the i8042 (its reset line, and a keyboard
//! that can only press Ctrl-Alt-Del, as in Firecracker) and an exit port at
//! 0xf4 compatible with QEMU's `isa-debug-exit`, through which a guest says
//! why it stops.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use vm_superio::Trigger;

use super::console::{COM1_BASE, IrqTrigger, SharedSerial};
use crate::exit::{ExitSignal, VmExit};

/// The i8042's data port.
pub const I8042_DATA: u16 = 0x60;
/// The i8042's command port.
pub const I8042_COMMAND: u16 = 0x64;
/// The exit port.
pub const EXIT_PORT: u16 = 0xf4;

/// Exit code a guest writes to power off.
pub const EXIT_CODE_POWEROFF: u8 = 0;
/// Exit code a guest writes before a reboot.
pub const EXIT_CODE_REBOOT: u8 = 1;
/// Exit code a guest writes when it panics.
pub const EXIT_CODE_PANIC: u8 = 2;

/// The keyboard's interrupt line.
pub const I8042_KBD_IRQ: u32 = 1;

/// Status register: output buffer full (a byte waits at the data port).
const SB_OUT_DATA_AVAIL: u8 = 0x01;
/// Status register: system flag (self-test passed).
const SB_SYSTEM_FLAG: u8 = 0x04;
/// Status register: the last write was a command.
const SB_COMMAND: u8 = 0x08;
/// Controller configuration: keyboard interrupt enabled.
const CTR_KBD_INT: u8 = 0x01;

/// Controller commands we answer (Firecracker's set).
const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_READ_OUTP: u8 = 0xd0;
const CMD_WRITE_OUTP: u8 = 0xd1;
const CMD_RESET_CPU: u8 = 0xfe;

/// Set-2 scancodes of Ctrl, Alt and Delete, the bytes Firecracker sends.
pub const CTRL_ALT_DEL: [u8; 4] = [0x14, 0x11, 0xe0, 0x71];

const BUF_MAX: usize = 16;

/// A minimal i8042: the CPU reset line, the controller registers a Linux
/// driver probes, and a keyboard whose only keys are Ctrl-Alt-Del.
pub struct I8042 {
    buf: VecDeque<u8>,
    status: u8,
    ctr: u8,
    outp: u8,
    pending_cmd: Option<u8>,
    reset: Arc<ExitSignal>,
    kbd_irq: Option<IrqTrigger>,
}

impl I8042 {
    /// An i8042 whose reset ends the VM and whose keyboard raises `kbd_irq`.
    pub fn new(reset: Arc<ExitSignal>, kbd_irq: Option<IrqTrigger>) -> Self {
        I8042 {
            buf: VecDeque::new(),
            status: SB_SYSTEM_FLAG,
            ctr: CTR_KBD_INT | SB_SYSTEM_FLAG,
            outp: 0,
            pending_cmd: None,
            reset,
            kbd_irq,
        }
    }

    fn push(&mut self, byte: u8) {
        if self.buf.len() < BUF_MAX {
            self.buf.push_back(byte);
        }
        self.status |= SB_OUT_DATA_AVAIL;
    }

    fn raise(&self) {
        if self.ctr & CTR_KBD_INT != 0
            && let Some(t) = &self.kbd_irq
        {
            let _ = t.trigger();
        }
    }

    /// Presses Ctrl-Alt-Del: queues the scancodes and interrupts.
    pub fn ctrl_alt_del(&mut self) {
        for b in CTRL_ALT_DEL {
            self.push(b);
        }
        self.raise();
    }

    /// A read of port 0x60 (`offset` 0) or 0x64 (`offset` 4).
    pub fn read(&mut self, offset: u16) -> u8 {
        match offset {
            0 => {
                let b = self.buf.pop_front().unwrap_or(0);
                if self.buf.is_empty() {
                    self.status &= !SB_OUT_DATA_AVAIL;
                } else {
                    // More bytes wait: the guest gets another edge.
                    self.raise();
                }
                b
            }
            4 => self.status,
            _ => 0xff,
        }
    }

    /// A write of port 0x60 (`offset` 0) or 0x64 (`offset` 4).
    pub fn write(&mut self, offset: u16, value: u8) {
        match offset {
            4 => {
                self.status |= SB_COMMAND;
                match value {
                    CMD_RESET_CPU => self.reset.report(VmExit::Reset),
                    CMD_READ_CTR => {
                        let c = self.ctr;
                        self.push(c);
                    }
                    CMD_READ_OUTP => {
                        let o = self.outp;
                        self.push(o);
                    }
                    CMD_WRITE_CTR | CMD_WRITE_OUTP => self.pending_cmd = Some(value),
                    _ => {}
                }
            }
            0 => {
                self.status &= !SB_COMMAND;
                match self.pending_cmd.take() {
                    Some(CMD_WRITE_CTR) => self.ctr = value,
                    Some(CMD_WRITE_OUTP) => self.outp = value,
                    // A keyboard command: acknowledge it.
                    _ => self.push(0xfa),
                }
            }
            _ => {}
        }
    }
}

/// The devices on port I/O.
pub struct PioBus {
    serial: SharedSerial,
    i8042: Mutex<I8042>,
    exit: Arc<ExitSignal>,
}

impl PioBus {
    /// Wires the port devices; `kbd_irq` raises the i8042's IRQ 1.
    pub fn new(serial: SharedSerial, exit: Arc<ExitSignal>, kbd_irq: Option<IrqTrigger>) -> Self {
        PioBus {
            serial,
            i8042: Mutex::new(I8042::new(exit.clone(), kbd_irq)),
            exit,
        }
    }

    /// Presses Ctrl-Alt-Del (the orderly-shutdown request).
    pub fn ctrl_alt_del(&self) {
        if let Ok(mut k) = self.i8042.lock() {
            k.ctrl_alt_del();
        }
    }

    /// A guest `in`.
    pub fn read(&self, port: u16, data: &mut [u8]) {
        match port {
            p if (COM1_BASE..COM1_BASE + 8).contains(&p) && data.len() == 1 => {
                if let Ok(mut s) = self.serial.lock() {
                    data[0] = s.read((p - COM1_BASE) as u8);
                }
            }
            I8042_DATA | I8042_COMMAND if data.len() == 1 => {
                if let Ok(mut k) = self.i8042.lock() {
                    data[0] = k.read(port - I8042_DATA);
                }
            }
            // Nothing else answers: an absent ISA device reads as all ones.
            _ => data.fill(0xff),
        }
    }

    /// A guest `out`.
    pub fn write(&self, port: u16, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match port {
            p if (COM1_BASE..COM1_BASE + 8).contains(&p) => {
                if let Ok(mut s) = self.serial.lock() {
                    // A failed console write is not the guest's problem.
                    let _ = s.write((p - COM1_BASE) as u8, value);
                }
            }
            I8042_DATA | I8042_COMMAND => {
                if let Ok(mut k) = self.i8042.lock() {
                    k.write(port - I8042_DATA, value);
                }
            }
            EXIT_PORT => self.exit.report(match value {
                EXIT_CODE_POWEROFF => VmExit::Poweroff,
                EXIT_CODE_REBOOT => VmExit::Reset,
                EXIT_CODE_PANIC => VmExit::GuestPanic(
                    self.exit
                        .panic_note()
                        .unwrap_or_else(|| "the guest reported a panic".into()),
                ),
                other => VmExit::GuestPanic(format!("the guest wrote exit code {other}")),
            }),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EventFd;

    #[test]
    fn ctrl_alt_del_queues_scancodes_and_interrupts_once_per_byte_left() {
        let exit = Arc::new(ExitSignal::default());
        let evt = EventFd::new(libc::EFD_NONBLOCK).expect("evt");
        let irq = IrqTrigger(evt.try_clone().expect("clone"));
        let mut k = I8042::new(exit.clone(), Some(irq));
        assert_eq!(k.read(4) & SB_OUT_DATA_AVAIL, 0);
        k.ctrl_alt_del();
        assert_eq!(evt.read().expect("irq"), 1);
        let mut got = Vec::new();
        while k.read(4) & SB_OUT_DATA_AVAIL != 0 {
            got.push(k.read(0));
        }
        assert_eq!(got, CTRL_ALT_DEL);
        assert!(!exit.is_set());
        k.write(4, CMD_RESET_CPU);
        assert_eq!(exit.wait(), VmExit::Reset);
    }

    #[test]
    fn controller_registers_round_trip() {
        let mut k = I8042::new(Arc::new(ExitSignal::default()), None);
        k.write(4, CMD_WRITE_CTR);
        k.write(0, 0x45);
        k.write(4, CMD_READ_CTR);
        assert_eq!(k.read(0), 0x45);
        k.ctrl_alt_del(); // interrupts off: no trigger, but the bytes queue
        assert_eq!(k.read(0), CTRL_ALT_DEL[0]);
    }
}
