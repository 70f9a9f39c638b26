//! Controlling a running VM: pause and resume the vCPUs, an orderly
//! shutdown (ask the guest, then a deadline), kill, and what the VM looks
//! like now (state, uptime, metrics). Transport-free: the HTTP API in
//! [`crate::api`] and the SIGTERM handler in the binary both call
//! [`VmControl`].
//!
//! Pausing kicks every vCPU out of `KVM_RUN` with a signal
//! ([`kick_signal`], SIGRTMIN) whose handler sets `kvm_run.immediate_exit`, so a kick
//! that lands just before the thread re-enters the guest is not lost; the
//! thread then parks on a condition variable until resumed. The kick is
//! repeated until every live vCPU thread has parked.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use kvm_bindings::kvm_run;
use serde::Serialize;

use crate::config::VmConfig;
use crate::devices::legacy::PioBus;
use crate::exit::{ExitSignal, VmExit};
use crate::metrics::{self, DeviceEntry, DeviceSnapshot, VcpuMetrics, VcpuSnapshot};
use crate::rate_limiter::{RateLimiter, RateLimiterConfig};

/// The signal that kicks a vCPU thread out of `KVM_RUN` (SIGRTMIN, as in
/// Firecracker).
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

thread_local! {
    /// The calling vCPU thread's `kvm_run` page (null on other threads).
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn on_kick(_signo: libc::c_int) {
    // Only async-signal-safe work: a thread-local read (const-initialised,
    // no destructor: a plain TLS slot) and one store into the kvm_run page.
    KVM_RUN.with(|p| {
        let run = p.get();
        if !run.is_null() {
            // SAFETY: the pointer is this thread's own kvm_run mapping, set by
            // `VcpuGate::enter` and cleared before the VcpuFd (which owns
            // the mapping) is dropped; a volatile byte store cannot tear.
            unsafe { std::ptr::write_volatile(&raw mut (*run).immediate_exit, 1) };
        }
    });
}

/// Installs the kick handler for the whole process (idempotent).
pub fn install_kick_handler() -> std::io::Result<()> {
    // SAFETY: sigaction is plain data; zeroed is a valid empty mask and
    // flags.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_kick as *const () as usize;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: `sa.sa_mask` is a valid sigset_t owned by us.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: `sa` is fully initialised and the handler only does
    // async-signal-safe work.
    let rc = unsafe { libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Where the vCPU threads park while the VM is paused.
#[derive(Default)]
pub struct VcpuGate {
    paused: AtomicBool,
    inner: Mutex<GateInner>,
    cond: Condvar,
}

#[derive(Default)]
struct GateInner {
    threads: Vec<libc::pthread_t>,
    live: usize,
    parked: usize,
}

/// Why a pause failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The VM is stopping (or stopped): nothing to pause, resume or stop.
    #[error("the VM is stopping")]
    Stopping,
    /// Some vCPU did not leave the guest in time.
    #[error("{parked} of {live} vCPUs parked within {waited:?}")]
    PauseTimeout {
        /// vCPUs parked.
        parked: usize,
        /// vCPUs running.
        live: usize,
        /// How long we waited.
        waited: Duration,
    },
    /// No drive (or network interface) with this id.
    #[error("no {0}")]
    NoSuchDrive(String),
    /// The rate limiter settings are invalid.
    #[error("{0}")]
    BadRateLimiter(String),
}

impl VcpuGate {
    /// Called by a vCPU thread before its first `KVM_RUN`, with its
    /// `kvm_run` page.
    pub fn enter(&self, run: *mut kvm_run) {
        KVM_RUN.with(|p| p.set(run));
        if let Ok(mut g) = self.inner.lock() {
            // SAFETY: pthread_self has no preconditions.
            g.threads.push(unsafe { libc::pthread_self() });
            g.live += 1;
        }
    }

    /// Called by a vCPU thread when it stops for good.
    pub fn leave(&self) {
        KVM_RUN.with(|p| p.set(std::ptr::null_mut()));
        if let Ok(mut g) = self.inner.lock() {
            // SAFETY: pthread_self has no preconditions.
            let me = unsafe { libc::pthread_self() };
            // SAFETY: pthread_equal only compares two thread ids.
            g.threads
                .retain(|t| unsafe { libc::pthread_equal(*t, me) } == 0);
            g.live = g.live.saturating_sub(1);
            self.cond.notify_all();
        }
    }

    /// Whether a pause was asked for (cheap: checked before each entry).
    pub fn pause_requested(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Parks the calling vCPU thread until resumed or the VM ends.
    pub fn park(&self, exit: &ExitSignal) {
        let Ok(mut g) = self.inner.lock() else { return };
        g.parked += 1;
        self.cond.notify_all();
        while self.pause_requested() && !exit.is_set() {
            g = match self.cond.wait_timeout(g, Duration::from_millis(100)) {
                Ok((g, _)) => g,
                Err(_) => return,
            };
        }
        g.parked -= 1;
    }

    /// Asks every vCPU to park and waits until they have (or `timeout`).
    pub fn pause(&self, timeout: Duration) -> Result<(), ControlError> {
        self.paused.store(true, Ordering::Release);
        let start = Instant::now();
        let Ok(mut g) = self.inner.lock() else {
            return Err(ControlError::Stopping);
        };
        loop {
            if g.parked >= g.live {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(ControlError::PauseTimeout {
                    parked: g.parked,
                    live: g.live,
                    waited: start.elapsed(),
                });
            }
            for t in &g.threads {
                // SAFETY: `t` is a live vCPU thread (threads remove
                // themselves under this lock before they end).
                unsafe { libc::pthread_kill(*t, kick_signal()) };
            }
            g = match self.cond.wait_timeout(g, Duration::from_millis(10)) {
                Ok((g, _)) => g,
                Err(_) => return Err(ControlError::Stopping),
            };
        }
    }

    /// Lets the vCPUs run again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
        if let Ok(_g) = self.inner.lock() {
            self.cond.notify_all();
        }
    }

    /// Kicks every vCPU out of the guest once (they go straight back in
    /// unless paused or the VM ended).
    pub fn kick_all(&self) {
        if let Ok(g) = self.inner.lock() {
            for t in &g.threads {
                // SAFETY: as in `pause`.
                unsafe { libc::pthread_kill(*t, kick_signal()) };
            }
        }
    }
}

/// A rate-limited device (a drive or a network interface) as the control
/// API sees it.
#[derive(Clone)]
pub struct DriveHandle {
    /// `disk<i>` or `net<i>`.
    pub id: String,
    /// The disk's serial or the interface's tap name, if any (also accepted
    /// as its id).
    pub serial: Option<String>,
    /// Its rate limiter, shared with the device.
    pub limiter: Arc<Mutex<RateLimiter>>,
}

/// The VM state the control API reports.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// vCPUs run.
    Running,
    /// vCPUs parked.
    Paused,
    /// An orderly shutdown was asked for; waiting for the guest.
    ShuttingDown,
}

/// `GET /vm`.
#[derive(Debug, Clone, Serialize)]
pub struct VmInfo {
    /// running, paused or shutting_down.
    pub state: RunState,
    /// Milliseconds since the VM started.
    pub uptime_ms: u64,
    /// The configuration it was started with.
    pub config: VmConfig,
}

/// `GET /metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    /// Milliseconds since the VM started.
    pub uptime_ms: u64,
    /// Resident set size of the VMM process (guest memory it touched
    /// included).
    pub rss_bytes: u64,
    /// Per vCPU.
    pub vcpus: Vec<VcpuSnapshot>,
    /// Per device.
    pub devices: Vec<DeviceSnapshot>,
}

/// Everything needed to control one running VM.
pub struct VmControl {
    gate: Arc<VcpuGate>,
    exit: Arc<ExitSignal>,
    pio: Arc<PioBus>,
    started: Instant,
    config: VmConfig,
    vcpu_metrics: Vec<Arc<VcpuMetrics>>,
    devices: Vec<DeviceEntry>,
    drives: Vec<DriveHandle>,
    nets: Vec<DriveHandle>,
    shutdown_timeout: Duration,
    shutting_down: AtomicBool,
    /// Serialises state changes (pause/resume/shutdown) from several API
    /// connections.
    op: Mutex<()>,
}

/// How long a pause waits for the vCPUs to park.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The parts of a VM the controller works on.
pub struct ControlParts {
    /// The vCPU gate.
    pub gate: Arc<VcpuGate>,
    /// Where the VM's end is reported.
    pub exit: Arc<ExitSignal>,
    /// Port devices (the i8042 for Ctrl-Alt-Del).
    pub pio: Arc<PioBus>,
    /// The VM's configuration.
    pub config: VmConfig,
    /// Per-vCPU counters.
    pub vcpu_metrics: Vec<Arc<VcpuMetrics>>,
    /// Devices shown in the metrics.
    pub devices: Vec<DeviceEntry>,
    /// Drives whose rate limits can change.
    pub drives: Vec<DriveHandle>,
    /// Network interfaces whose rate limits can change.
    pub nets: Vec<DriveHandle>,
}

/// Which rate-limited devices an API call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Block devices (`/drives`).
    Drives,
    /// Network interfaces (`/network-interfaces`).
    Nets,
}

impl VmControl {
    /// A controller; `shutdown_timeout` is how long an orderly shutdown
    /// waits for the guest.
    pub fn new(parts: ControlParts, shutdown_timeout: Duration) -> Self {
        VmControl {
            gate: parts.gate,
            exit: parts.exit,
            pio: parts.pio,
            started: Instant::now(),
            config: parts.config,
            vcpu_metrics: parts.vcpu_metrics,
            devices: parts.devices,
            drives: parts.drives,
            nets: parts.nets,
            shutdown_timeout,
            shutting_down: AtomicBool::new(false),
            op: Mutex::new(()),
        }
    }

    fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The current state.
    pub fn state(&self) -> RunState {
        if self.shutting_down.load(Ordering::Acquire) {
            RunState::ShuttingDown
        } else if self.gate.pause_requested() {
            RunState::Paused
        } else {
            RunState::Running
        }
    }

    /// `GET /vm`.
    pub fn info(&self) -> VmInfo {
        VmInfo {
            state: self.state(),
            uptime_ms: self.uptime_ms(),
            config: self.config.clone(),
        }
    }

    /// Parks every vCPU. Pausing a paused VM is a no-op.
    pub fn pause(&self) -> Result<(), ControlError> {
        let _op = self.op.lock();
        if self.exit.is_set() || self.shutting_down.load(Ordering::Acquire) {
            return Err(ControlError::Stopping);
        }
        let r = self.gate.pause(PAUSE_TIMEOUT);
        if r.is_err() {
            self.gate.resume();
        }
        r
    }

    /// Lets the vCPUs run again. Resuming a running VM is a no-op.
    pub fn resume(&self) -> Result<(), ControlError> {
        let _op = self.op.lock();
        if self.exit.is_set() {
            return Err(ControlError::Stopping);
        }
        self.gate.resume();
        Ok(())
    }

    /// Orderly shutdown: resume if paused, press Ctrl-Alt-Del on the i8042
    /// (the guest should power off), and stop the VM at the deadline if it
    /// has not. Asking again while a shutdown is under way is a no-op.
    pub fn shutdown(&self) -> Result<(), ControlError> {
        let _op = self.op.lock();
        if self.exit.is_set() {
            return Err(ControlError::Stopping);
        }
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.exit.arm_deadline(
            Instant::now() + self.shutdown_timeout,
            VmExit::ShutdownTimeout,
        );
        self.gate.resume();
        self.pio.ctrl_alt_del();
        Ok(())
    }

    /// Ends the VM now.
    pub fn kill(&self) {
        self.exit.report(VmExit::Killed);
        self.gate.resume();
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            uptime_ms: self.uptime_ms(),
            rss_bytes: metrics::process_rss_bytes(),
            vcpus: self
                .vcpu_metrics
                .iter()
                .enumerate()
                .map(|(i, m)| m.snapshot(i as u32))
                .collect(),
            devices: self
                .devices
                .iter()
                .map(|d| d.metrics.snapshot(&d.id, d.kind))
                .collect(),
        }
    }

    fn limited(&self, which: Limited, id: &str) -> Result<&DriveHandle, ControlError> {
        let (list, what) = match which {
            Limited::Drives => (&self.drives, "drive"),
            Limited::Nets => (&self.nets, "network interface"),
        };
        list.iter()
            .find(|d| d.id == id || d.serial.as_deref() == Some(id))
            .ok_or_else(|| ControlError::NoSuchDrive(format!("{what} {id:?}")))
    }

    /// The rate limits of a drive (`disk<i>` or its serial) or a network
    /// interface (`net<i>` or its tap name).
    pub fn limits(&self, which: Limited, id: &str) -> Result<RateLimiterConfig, ControlError> {
        let d = self.limited(which, id)?;
        let l = d
            .limiter
            .lock()
            .map_err(|_| ControlError::NoSuchDrive(id.to_string()))?;
        Ok(l.config())
    }

    /// Replaces the rate limits of a drive or network interface; takes
    /// effect at its next request (within 100 ms for one that waits).
    pub fn set_limits(
        &self,
        which: Limited,
        id: &str,
        cfg: RateLimiterConfig,
    ) -> Result<(), ControlError> {
        cfg.validate().map_err(ControlError::BadRateLimiter)?;
        let d = self.limited(which, id)?;
        let mut l = d
            .limiter
            .lock()
            .map_err(|_| ControlError::NoSuchDrive(id.to_string()))?;
        l.reconfigure(&cfg);
        Ok(())
    }

    /// Ids of the drives (`disk<i>`) or network interfaces (`net<i>`).
    pub fn limited_ids(&self, which: Limited) -> Vec<String> {
        let list = match which {
            Limited::Drives => &self.drives,
            Limited::Nets => &self.nets,
        };
        list.iter().map(|d| d.id.clone()).collect()
    }
}
