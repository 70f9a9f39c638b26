//! Why a VM stopped, and the one place every thread reports it.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// The end of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest asked to power off.
    Poweroff,
    /// The guest reset itself (i8042, triple-fault-free reboot).
    Reset,
    /// The guest reported a panic (exit port or a Linux panic on the console).
    GuestPanic(String),
    /// A vCPU triple-faulted (KVM_EXIT_SHUTDOWN).
    TripleFault {
        /// Which vCPU.
        vcpu: u32,
        /// Its instruction pointer.
        rip: u64,
    },
    /// KVM could not run or emulate an instruction.
    InternalError {
        /// Which vCPU.
        vcpu: u32,
        /// Its instruction pointer.
        rip: u64,
        /// KVM's suberror code.
        suberror: u32,
    },
    /// KVM refused to enter the guest.
    FailEntry {
        /// Which vCPU.
        vcpu: u32,
        /// Hardware reason.
        reason: u64,
    },
    /// The VMM itself failed.
    VmmError(String),
    /// The control API (`PUT /actions {"action_type":"kill"}`) ended the VM.
    Killed,
    /// An orderly shutdown (control API or SIGTERM) asked the guest to stop,
    /// and it did not within the deadline, so the VMM stopped it.
    ShutdownTimeout,
}

impl VmExit {
    /// The process exit status for this end (documented in the README).
    pub fn status(&self) -> i32 {
        match self {
            VmExit::Poweroff | VmExit::Reset => 0,
            VmExit::VmmError(_) => 1,
            VmExit::GuestPanic(_) => 3,
            VmExit::TripleFault { .. } => 4,
            VmExit::InternalError { .. } | VmExit::FailEntry { .. } => 5,
            VmExit::Killed => 6,
            VmExit::ShutdownTimeout => 7,
        }
    }

    /// One line saying what happened.
    pub fn describe(&self) -> String {
        match self {
            VmExit::Poweroff => "guest powered off".into(),
            VmExit::Reset => "guest reset".into(),
            VmExit::GuestPanic(r) => format!("guest panic: {r}"),
            VmExit::TripleFault { vcpu, rip } => {
                format!("triple fault on vCPU {vcpu} at rip={rip:#x}")
            }
            VmExit::InternalError {
                vcpu,
                rip,
                suberror,
            } => format!(
                "KVM internal error on vCPU {vcpu} at rip={rip:#x} (suberror {suberror}): \
                 KVM could not emulate the guest's instruction there; on a PVM host this \
                 means the guest used an instruction PVM does not support"
            ),
            VmExit::FailEntry { vcpu, reason } => {
                format!("KVM failed to enter vCPU {vcpu} (hardware reason {reason:#x})")
            }
            VmExit::VmmError(e) => format!("VMM error: {e}"),
            VmExit::Killed => "killed through the control API".into(),
            VmExit::ShutdownTimeout => {
                "the guest did not power off before the shutdown deadline; stopped".into()
            }
        }
    }
}

/// First reported exit wins; the main thread waits for it.
#[derive(Default)]
pub struct ExitSignal {
    exit: Mutex<Option<VmExit>>,
    cond: Condvar,
    panic_note: Mutex<Option<String>>,
    deadline: Mutex<Option<(Instant, VmExit)>>,
}

impl ExitSignal {
    /// Reports an exit; later reports are ignored. A reset that follows a
    /// panic the console saw becomes that panic.
    pub fn report(&self, exit: VmExit) {
        let exit = match exit {
            VmExit::Reset => match self.panic_note.lock().ok().and_then(|n| n.clone()) {
                Some(reason) => VmExit::GuestPanic(reason),
                None => VmExit::Reset,
            },
            other => other,
        };
        if let Ok(mut slot) = self.exit.lock()
            && slot.is_none()
        {
            *slot = Some(exit);
            self.cond.notify_all();
        }
    }

    /// Notes a panic seen on the console, for the reset that follows.
    pub fn note_panic(&self, reason: String) {
        if let Ok(mut n) = self.panic_note.lock() {
            n.get_or_insert(reason);
        }
    }

    /// The panic reason the console saw, if any.
    pub fn panic_note(&self) -> Option<String> {
        self.panic_note.lock().ok().and_then(|n| n.clone())
    }

    /// Whether an exit has been reported.
    pub fn is_set(&self) -> bool {
        self.exit.lock().map(|s| s.is_some()).unwrap_or(true)
    }

    /// Arms a deadline: if no exit is reported by `at`, [`ExitSignal::wait`]
    /// returns `exit`. An earlier deadline already armed is kept.
    pub fn arm_deadline(&self, at: Instant, exit: VmExit) {
        if let Ok(mut d) = self.deadline.lock() {
            match &*d {
                Some((old, _)) if *old <= at => {}
                _ => *d = Some((at, exit)),
            }
        }
        // Wake the waiter so that it starts timing the deadline.
        if let Ok(_slot) = self.exit.lock() {
            self.cond.notify_all();
        }
    }

    /// Blocks until an exit is reported (or an armed deadline passes).
    pub fn wait(&self) -> VmExit {
        let Ok(mut slot) = self.exit.lock() else {
            return VmExit::VmmError("exit lock poisoned".into());
        };
        loop {
            if let Some(e) = slot.clone() {
                return e;
            }
            let deadline = self.deadline.lock().ok().and_then(|d| d.clone());
            slot = match deadline {
                None => match self.cond.wait(slot) {
                    Ok(s) => s,
                    Err(_) => return VmExit::VmmError("exit lock poisoned".into()),
                },
                Some((at, exit)) => {
                    let now = Instant::now();
                    if now >= at {
                        *slot = Some(exit.clone());
                        self.cond.notify_all();
                        return exit;
                    }
                    match self.cond.wait_timeout(slot, at - now) {
                        Ok((s, _)) => s,
                        Err(_) => return VmExit::VmmError("exit lock poisoned".into()),
                    }
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_exit_wins() {
        let s = ExitSignal::default();
        s.report(VmExit::Poweroff);
        s.report(VmExit::TripleFault { vcpu: 0, rip: 0 });
        assert_eq!(s.wait(), VmExit::Poweroff);
    }

    #[test]
    fn reset_after_console_panic_is_a_panic() {
        let s = ExitSignal::default();
        s.note_panic("VFS: unable to mount root".into());
        s.report(VmExit::Reset);
        assert_eq!(s.wait().status(), 3);
    }

    #[test]
    fn an_armed_deadline_ends_the_wait() {
        let s = ExitSignal::default();
        let at = Instant::now() + std::time::Duration::from_millis(20);
        s.arm_deadline(at, VmExit::ShutdownTimeout);
        assert_eq!(s.wait(), VmExit::ShutdownTimeout);
        assert!(Instant::now() >= at);
        assert!(s.is_set());
    }

    #[test]
    fn statuses_are_distinct_per_kind() {
        let all = [
            VmExit::Poweroff.status(),
            VmExit::VmmError(String::new()).status(),
            VmExit::GuestPanic(String::new()).status(),
            VmExit::TripleFault { vcpu: 0, rip: 0 }.status(),
            VmExit::InternalError {
                vcpu: 0,
                rip: 0,
                suberror: 1,
            }
            .status(),
            VmExit::Killed.status(),
            VmExit::ShutdownTimeout.status(),
        ];
        let mut d = all.to_vec();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), all.len());
    }
}
