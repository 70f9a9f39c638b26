//! One thread per vCPU: run the guest, dispatch its I/O exits to the
//! devices, and report how the VM ended.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::control::VcpuGate;
use crate::devices::MmioBus;
use crate::devices::legacy::PioBus;
use crate::exit::{ExitSignal, VmExit};
use crate::metrics::VcpuMetrics;

/// What a vCPU thread needs.
pub struct VcpuContext {
    /// vCPU index.
    pub id: u32,
    /// Port devices.
    pub pio: Arc<PioBus>,
    /// MMIO devices.
    pub mmio: Arc<MmioBus>,
    /// Where the end of the VM is reported.
    pub exit: Arc<ExitSignal>,
    /// Host CPUs to pin this thread to.
    pub affinity: Option<Vec<usize>>,
    /// Where this thread parks while the VM is paused.
    pub gate: Arc<VcpuGate>,
    /// This vCPU's counters.
    pub metrics: Arc<VcpuMetrics>,
}

enum Step {
    Continue,
    Stop(VmExit),
    TripleFault,
    InternalError,
}

/// Pins the calling thread to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu < libc::CPU_SETSIZE as usize {
            // SAFETY: `cpu` is below CPU_SETSIZE, so the bit is inside `set`.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of
    // the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs `vcpu` until the VM ends (or this vCPU hits something fatal).
pub fn run(mut vcpu: VcpuFd, ctx: VcpuContext) {
    if let Some(cpus) = &ctx.affinity
        && let Err(e) = pin_current_thread(cpus)
    {
        ctx.exit.report(VmExit::VmmError(format!(
            "pinning vCPU {} to CPUs {cpus:?}: {e}",
            ctx.id
        )));
        return;
    }
    if let Err(e) = crate::seccomp::install(crate::seccomp::ThreadKind::Vcpu) {
        ctx.exit
            .report(VmExit::VmmError(format!("vCPU {}: {e}", ctx.id)));
        return;
    }
    ctx.gate.enter(vcpu.get_kvm_run());
    run_loop(&mut vcpu, &ctx);
    ctx.gate.leave();
}

fn run_loop(vcpu: &mut VcpuFd, ctx: &VcpuContext) {
    let m = &ctx.metrics;
    loop {
        // Clear a kick first, then look at the gate: a kick that lands after
        // the look sets immediate_exit again and KVM_RUN returns at once.
        vcpu.set_kvm_immediate_exit(0);
        if ctx.gate.pause_requested() {
            ctx.gate.park(&ctx.exit);
            if ctx.exit.is_set() {
                return;
            }
            continue;
        }
        let entered = Instant::now();
        let result = vcpu.run();
        m.run_ns
            .fetch_add(entered.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let step = match result {
            Ok(VcpuExit::IoIn(port, data)) => {
                VcpuMetrics::bump(&m.io_in);
                ctx.pio.read(port, data);
                Step::Continue
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                VcpuMetrics::bump(&m.io_out);
                ctx.pio.write(port, data);
                Step::Continue
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                VcpuMetrics::bump(&m.mmio_read);
                ctx.mmio.read(addr, data);
                Step::Continue
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                VcpuMetrics::bump(&m.mmio_write);
                ctx.mmio.write(addr, data);
                Step::Continue
            }
            Ok(VcpuExit::Intr) => {
                VcpuMetrics::bump(&m.interrupted);
                Step::Continue
            }
            Ok(VcpuExit::Shutdown) => Step::TripleFault,
            Ok(VcpuExit::InternalError) => Step::InternalError,
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                VcpuMetrics::bump(&m.system_event);
                match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN => Step::Stop(VmExit::Poweroff),
                    KVM_SYSTEM_EVENT_RESET => Step::Stop(VmExit::Reset),
                    KVM_SYSTEM_EVENT_CRASH => {
                        Step::Stop(VmExit::GuestPanic("KVM reported a guest crash".into()))
                    }
                    other => Step::Stop(VmExit::VmmError(format!("unknown system event {other}"))),
                }
            }
            Ok(VcpuExit::FailEntry(reason, _)) => Step::Stop(VmExit::FailEntry {
                vcpu: ctx.id,
                reason,
            }),
            Ok(VcpuExit::Hlt) => Step::Stop(VmExit::VmmError(format!(
                "vCPU {} halted outside the in-kernel irqchip",
                ctx.id
            ))),
            Ok(other) => Step::Stop(VmExit::VmmError(format!(
                "vCPU {}: unexpected exit {other:?}",
                ctx.id
            ))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                VcpuMetrics::bump(&m.interrupted);
                Step::Continue
            }
            Err(e) => Step::Stop(VmExit::VmmError(format!("vCPU {}: KVM_RUN: {e}", ctx.id))),
        };
        if !matches!(step, Step::Continue) {
            VcpuMetrics::bump(&m.other);
        }
        let exit = match step {
            Step::Continue => {
                if ctx.exit.is_set() {
                    return;
                }
                continue;
            }
            Step::Stop(e) => e,
            Step::TripleFault => VmExit::TripleFault {
                vcpu: ctx.id,
                rip: vcpu.get_regs().map_or(0, |r| r.rip),
            },
            Step::InternalError => {
                let run = vcpu.get_kvm_run();
                // SAFETY: after KVM_EXIT_INTERNAL_ERROR the `internal` member
                // of the exit union is the one KVM filled in.
                let suberror = unsafe { run.__bindgen_anon_1.internal.suberror };
                VmExit::InternalError {
                    vcpu: ctx.id,
                    rip: vcpu.get_regs().map_or(0, |r| r.rip),
                    suberror,
                }
            }
        };
        ctx.exit.report(exit);
        return;
    }
}
