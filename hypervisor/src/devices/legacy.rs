//! The port-I/O devices: COM1, the i8042 (for its reset line only, as in
//! Firecracker) and an exit port at 0xf4 compatible with QEMU's
//! `isa-debug-exit`, through which a guest says why it stops.

use std::sync::{Arc, Mutex};

use vm_superio::{I8042Device, Trigger};

use super::console::{COM1_BASE, SharedSerial};
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

/// Turns the i8042's CPU reset into a VM exit.
pub struct ResetTrigger(pub Arc<ExitSignal>);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.report(VmExit::Reset);
        Ok(())
    }
}

/// The devices on port I/O.
pub struct PioBus {
    serial: SharedSerial,
    i8042: Mutex<I8042Device<ResetTrigger>>,
    exit: Arc<ExitSignal>,
}

impl PioBus {
    /// Wires the port devices.
    pub fn new(serial: SharedSerial, exit: Arc<ExitSignal>) -> Self {
        PioBus {
            serial,
            i8042: Mutex::new(I8042Device::new(ResetTrigger(exit.clone()))),
            exit,
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
                    data[0] = k.read((port - I8042_DATA) as u8);
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
                    let _ = k.write((port - I8042_DATA) as u8, value);
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
