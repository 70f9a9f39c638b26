//! Building a VM from its configuration and running it to its end.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvm_bindings::{
    KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region,
};
use kvm_ioctls::{IoEventAddress, Kvm, NoDatamatch, VcpuFd, VmFd};
use linux_loader::cmdline::Cmdline;
use linux_loader::loader::{
    BzImage, Elf, KernelLoader, KernelLoaderResult, PvhBootCapability, load_cmdline,
};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};
use vmm_sys_util::eventfd::EventFd;

use crate::arch::bootinfo::{InitrdPlacement, linux_boot_params, pvh_start_info};
use crate::arch::layout::{
    self, CMDLINE_ADDR, CMDLINE_MAX_SIZE, EBDA_START, HIMEM_START, KVM_IDENTITY_MAP_ADDR,
    KVM_TSS_ADDR, MMIO_GAP_START, PVH_INFO_ADDR, PVH_MEMMAP_ADDR, VIRTIO_IRQ_BASE,
    VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE, ZERO_PAGE_ADDR,
};
use crate::arch::regs::{EntryMode, RegsError};
use crate::arch::{cpuid, mptable, paging, regs};
use crate::config::{BootProtocol, ConfigError, VmConfig, parse_cpu_list, parse_cpu_sequence};
use crate::control::{ControlParts, DriveHandle, VcpuGate, VmControl};
use crate::devices::MmioBus;
use crate::devices::console::{self, COM1_IRQ, IrqTrigger};
use crate::devices::legacy::{I8042_KBD_IRQ, PioBus};
use crate::devices::virtio::block::Block;
use crate::devices::virtio::mmio::{self, MmioTransport};
use crate::devices::virtio::net::{Net, open_tap};
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::{IrqLine, VirtioDevice};
use crate::exit::{ExitSignal, VmExit};
use crate::metrics::{DeviceEntry, VcpuMetrics};
use crate::rate_limiter::RateLimiter;
use crate::vcpu::{self, VcpuContext};

/// Where the PVH module list (the initrd) goes.
const PVH_MODLIST_ADDR: u64 = 0x6800;

/// Why a VM could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// /dev/kvm is missing or unusable.
    #[error("cannot open /dev/kvm: {0} (is KVM available and are you allowed to use it?)")]
    KvmOpen(kvm_ioctls::Error),
    /// A KVM call failed while setting up.
    #[error("{what}: {source}")]
    Kvm {
        /// Which call.
        what: &'static str,
        /// errno.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be mapped.
    #[error("allocating guest memory: {0}")]
    Memory(String),
    /// Writing boot structures into guest memory failed.
    #[error("writing boot data into guest memory: {0}")]
    GuestWrite(#[from] vm_memory::GuestMemoryError),
    /// The kernel could not be loaded.
    #[error("loading kernel {path}: {reason}")]
    Kernel {
        /// File.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The initrd does not fit.
    #[error("initrd: {0}")]
    Initrd(String),
    /// The command line is too long.
    #[error("kernel command line: {0}")]
    Cmdline(String),
    /// The MP table could not be built.
    #[error(transparent)]
    MpTable(#[from] mptable::MpTableError),
    /// A vCPU could not be configured.
    #[error("vCPU {id}: {source}")]
    Vcpu {
        /// Index.
        id: u32,
        /// Cause.
        source: RegsError,
    },
    /// A device could not be created.
    #[error("device: {0}")]
    Device(String),
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> BuildError {
    move |source| BuildError::Kvm { what, source }
}

/// A VM ready to run.
pub struct Vm {
    _kvm: Kvm,
    _vm: VmFd,
    vcpus: Vec<VcpuFd>,
    pio: Arc<PioBus>,
    mmio: Arc<MmioBus>,
    exit: Arc<ExitSignal>,
    affinity: Vec<Option<Vec<usize>>>,
    _mem: GuestMemoryMmap,
    config: VmConfig,
    gate: Arc<VcpuGate>,
    vcpu_metrics: Vec<Arc<VcpuMetrics>>,
    virtio: VirtioSet,
}

/// The virtio devices of a VM, for the bus, the metrics and the API.
#[derive(Default)]
struct VirtioSet {
    bus: MmioBus,
    cmdline_args: Vec<String>,
    transports: Vec<(String, Arc<Mutex<MmioTransport>>)>,
    devices: Vec<DeviceEntry>,
    drives: Vec<DriveHandle>,
    nets: Vec<DriveHandle>,
}

impl Vm {
    /// Builds the VM: memory, kernel, boot structures, devices, vCPUs.
    pub fn build(config: &VmConfig) -> Result<Vm, BuildError> {
        config.validate()?;
        let kvm = Kvm::new().map_err(BuildError::KvmOpen)?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        vm.set_tss_address(KVM_TSS_ADDR as usize)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDR)
            .map_err(kvm_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;

        let mem_size = config.memory_mib << 20;
        let mem = create_memory(&vm, mem_size)?;

        let exit = Arc::new(ExitSignal::default());
        let mut virtio = create_virtio_devices(&vm, &mem, config)?;
        let serial_evt = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| BuildError::Device(format!("serial eventfd: {e}")))?;
        vm.register_irqfd(&serial_evt, COM1_IRQ)
            .map_err(kvm_err("KVM_IRQFD (serial)"))?;
        let read_stdin = config.console.stdin.unwrap_or(config.console.log.is_none());
        let serial = console::create(
            IrqTrigger(serial_evt),
            config.console.log.as_deref(),
            config.console.socket.as_deref(),
            read_stdin,
            exit.clone(),
        )
        .map_err(|e| BuildError::Device(format!("console: {e}")))?;
        let kbd_evt = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| BuildError::Device(format!("i8042 eventfd: {e}")))?;
        vm.register_irqfd(&kbd_evt, I8042_KBD_IRQ)
            .map_err(kvm_err("KVM_IRQFD (i8042)"))?;
        let pio = Arc::new(PioBus::new(serial, exit.clone(), Some(IrqTrigger(kbd_evt))));

        let entry = load_guest(&mem, config, mem_size, &virtio.cmdline_args)?;

        let vcpus = create_vcpus(&kvm, &vm, &mem, config.vcpus, entry)?;
        let parse = |list: &String| {
            parse_cpu_list(list).map_err(|e| ConfigError::CpuAffinity(list.clone(), e))
        };
        let affinity: Vec<Option<Vec<usize>>> = match (&config.vcpu_cpus, &config.cpu_affinity) {
            (Some(list), _) => parse_cpu_sequence(list)
                .map_err(|e| ConfigError::CpuAffinity(list.clone(), e))?
                .into_iter()
                .map(|c| Some(vec![c]))
                .collect(),
            (None, Some(list)) => vec![Some(parse(list)?); config.vcpus as usize],
            (None, None) => vec![None; config.vcpus as usize],
        };
        let vcpu_metrics = (0..vcpus.len())
            .map(|_| Arc::new(VcpuMetrics::default()))
            .collect();
        let bus = std::mem::take(&mut virtio.bus);
        Ok(Vm {
            _kvm: kvm,
            _vm: vm,
            vcpus,
            pio,
            mmio: Arc::new(bus),
            exit,
            affinity,
            _mem: mem,
            config: config.clone(),
            gate: Arc::new(VcpuGate::default()),
            vcpu_metrics,
            virtio,
        })
    }

    /// A controller for this VM (pause, resume, shutdown, kill, metrics);
    /// an orderly shutdown waits `shutdown_timeout` for the guest.
    pub fn controller(&self, shutdown_timeout: Duration) -> Arc<VmControl> {
        Arc::new(VmControl::new(
            ControlParts {
                gate: self.gate.clone(),
                exit: self.exit.clone(),
                pio: self.pio.clone(),
                config: self.config.clone(),
                vcpu_metrics: self.vcpu_metrics.clone(),
                devices: self.virtio.devices.clone(),
                drives: self.virtio.drives.clone(),
                nets: self.virtio.nets.clone(),
            },
            shutdown_timeout,
        ))
    }

    /// Where the VM's end is reported.
    pub fn exit_signal(&self) -> Arc<ExitSignal> {
        self.exit.clone()
    }

    /// Starts the device event threads, then every vCPU on its own
    /// thread, and returns how the VM ended.
    pub fn run(self) -> VmExit {
        if let Err(e) = crate::control::install_kick_handler() {
            return VmExit::VmmError(format!("installing the vCPU kick handler: {e}"));
        }
        for (name, t) in &self.virtio.transports {
            if let Err(e) = mmio::spawn_event_thread(t.clone(), name.clone()) {
                return VmExit::VmmError(format!("spawning device thread {name}: {e}"));
            }
        }
        for (id, vcpu) in self.vcpus.into_iter().enumerate() {
            let ctx = VcpuContext {
                id: id as u32,
                pio: self.pio.clone(),
                mmio: self.mmio.clone(),
                exit: self.exit.clone(),
                affinity: self.affinity.get(id).cloned().flatten(),
                gate: self.gate.clone(),
                metrics: self.vcpu_metrics[id].clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || vcpu::run(vcpu, ctx));
            if let Err(e) = spawned {
                self.exit
                    .report(VmExit::VmmError(format!("spawning vCPU thread {id}: {e}")));
                break;
            }
        }
        // The main thread only waits from here on (then records the end).
        if let Err(e) = crate::seccomp::install(crate::seccomp::ThreadKind::Main) {
            self.exit.report(VmExit::VmmError(e.to_string()));
        }
        self.exit.wait()
    }
}

fn create_memory(vm: &VmFd, mem_size: u64) -> Result<GuestMemoryMmap, BuildError> {
    let ranges: Vec<(GuestAddress, usize)> = layout::ram_ranges(mem_size)
        .into_iter()
        .map(|(a, s)| (GuestAddress(a), s as usize))
        .collect();
    let mem =
        GuestMemoryMmap::from_ranges(&ranges).map_err(|e| BuildError::Memory(e.to_string()))?;
    for (slot, region) in mem.iter().enumerate() {
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|e| BuildError::Memory(e.to_string()))?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping of `memory_size` bytes owned by
        // `mem`, which the returned VM keeps alive as long as the VM fd.
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(mem)
}

fn create_virtio_devices(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    config: &VmConfig,
) -> Result<VirtioSet, BuildError> {
    let mut set = VirtioSet::default();
    let max = (layout::IRQ_MAX - VIRTIO_IRQ_BASE + 1) as usize;
    let count = config.disks.len() + usize::from(config.vsock.is_some()) + config.nets.len();
    if count > max {
        return Err(ConfigError::TooManyDevices(max).into());
    }
    for (i, disk) in config.disks.iter().enumerate() {
        let file = OpenOptions::new()
            .read(true)
            .write(!disk.read_only)
            .open(&disk.path)
            .map_err(|source| ConfigError::Disk {
                path: disk.path.clone(),
                source,
            })?;
        let block = Block::new(file, disk.read_only, disk.id.as_deref())
            .map_err(|e| BuildError::Device(format!("disk {}: {e}", disk.path.display())))?;
        let limiter = block.rate_limiter();
        if let Some(rl) = &disk.rate_limiter
            && let Ok(mut l) = limiter.lock()
        {
            *l = RateLimiter::new(rl);
        }
        let id = format!("disk{i}");
        set.devices.push(DeviceEntry {
            id: id.clone(),
            kind: "block",
            metrics: block.metrics(),
        });
        set.drives.push(DriveHandle {
            id: id.clone(),
            serial: disk.id.clone(),
            limiter,
        });
        add_device(vm, mem, &mut set, Box::new(block), id, false)?;
    }
    if let Some(v) = &config.vsock {
        let dev = Vsock::new(v.guest_cid, &v.uds_path)
            .map_err(|e| BuildError::Device(format!("vsock {}: {e}", v.uds_path.display())))?;
        set.devices.push(DeviceEntry {
            id: "vsock".into(),
            kind: "vsock",
            metrics: dev.metrics(),
        });
        add_device(vm, mem, &mut set, Box::new(dev), "vsock".into(), true)?;
    }
    for (i, n) in config.nets.iter().enumerate() {
        let tap =
            open_tap(&n.tap).map_err(|e| BuildError::Device(format!("tap {}: {e}", n.tap)))?;
        let dev = Net::new(tap, n.mac_address()?)
            .map_err(|e| BuildError::Device(format!("net {}: {e}", n.tap)))?;
        let limiter = dev.rate_limiter();
        if let Some(rl) = &n.rate_limiter
            && let Ok(mut l) = limiter.lock()
        {
            *l = RateLimiter::new(rl);
        }
        let id = format!("net{i}");
        set.nets.push(DriveHandle {
            id: id.clone(),
            serial: Some(n.tap.clone()),
            limiter,
        });
        set.devices.push(DeviceEntry {
            id: id.clone(),
            kind: "net",
            metrics: dev.metrics(),
        });
        add_device(vm, mem, &mut set, Box::new(dev), id, true)?;
    }
    Ok(set)
}

/// Puts `device` in the next MMIO window with the next interrupt line; with
/// `ioeventfd`, offers it an eventfd KVM signals on QueueNotify.
fn add_device(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    set: &mut VirtioSet,
    mut device: Box<dyn VirtioDevice>,
    name: String,
    ioeventfd: bool,
) -> Result<(), BuildError> {
    let i = set.transports.len();
    let irq = VIRTIO_IRQ_BASE + i as u32;
    let base = VIRTIO_MMIO_BASE + i as u64 * VIRTIO_MMIO_SIZE;
    let evt = EventFd::new(libc::EFD_NONBLOCK)
        .map_err(|e| BuildError::Device(format!("eventfd: {e}")))?;
    vm.register_irqfd(&evt, irq)
        .map_err(kvm_err("KVM_IRQFD (virtio)"))?;
    if ioeventfd {
        let notify = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| BuildError::Device(format!("eventfd: {e}")))?;
        let addr = IoEventAddress::Mmio(base + MmioTransport::QUEUE_NOTIFY_OFFSET);
        // Without an ioeventfd (refused by this KVM) the transport serves
        // QueueNotify on the vCPU thread instead.
        if vm.register_ioevent(&notify, &addr, NoDatamatch).is_ok() {
            let taken = match notify.try_clone() {
                Ok(clone) => device.set_queue_notifier(clone),
                Err(_) => false,
            };
            if !taken {
                vm.unregister_ioevent(&notify, &addr, NoDatamatch)
                    .map_err(kvm_err("KVM_IOEVENTFD (unregister)"))?;
            }
        }
    }
    let transport = Arc::new(Mutex::new(MmioTransport::new(
        device,
        mem.clone(),
        Arc::new(IrqLine::new(evt)),
    )));
    set.bus.add(base, VIRTIO_MMIO_SIZE, transport.clone());
    set.transports.push((name, transport));
    set.cmdline_args
        .push(format!("virtio_mmio.device=4K@{base:#x}:{irq}"));
    Ok(())
}

fn load_guest(
    mem: &GuestMemoryMmap,
    config: &VmConfig,
    mem_size: u64,
    extra_args: &[String],
) -> Result<EntryMode, BuildError> {
    let kernel_err = |reason: String| BuildError::Kernel {
        path: config.kernel.display().to_string(),
        reason,
    };
    let mut kernel = File::open(&config.kernel).map_err(|e| kernel_err(e.to_string()))?;
    let mut magic = [0u8; 4];
    kernel
        .read_exact(&mut magic)
        .map_err(|e| kernel_err(format!("too short to be a kernel ({e})")))?;
    let is_elf = &magic == b"\x7fELF";
    let himem = Some(GuestAddress(HIMEM_START));
    let loaded: KernelLoaderResult = if is_elf {
        Elf::load(mem, None, &mut kernel, himem).map_err(|e| kernel_err(format!("ELF: {e}")))?
    } else {
        BzImage::load(mem, None, &mut kernel, himem)
            .map_err(|e| kernel_err(format!("neither ELF nor bzImage: {e}")))?
    };

    // Command line.
    let mut cmdline =
        Cmdline::new(CMDLINE_MAX_SIZE).map_err(|e| BuildError::Cmdline(e.to_string()))?;
    if !config.cmdline.trim().is_empty() {
        cmdline
            .insert_str(config.cmdline.trim())
            .map_err(|e| BuildError::Cmdline(e.to_string()))?;
    }
    for a in extra_args {
        cmdline
            .insert_str(a)
            .map_err(|e| BuildError::Cmdline(e.to_string()))?;
    }
    load_cmdline(mem, GuestAddress(CMDLINE_ADDR), &cmdline)
        .map_err(|e| BuildError::Cmdline(e.to_string()))?;
    let cmdline_len = cmdline
        .as_cstring()
        .map(|c| c.as_bytes().len())
        .map_err(|e| BuildError::Cmdline(e.to_string()))?;

    // Initrd at the top of low memory.
    let initrd = match &config.initrd {
        Some(path) => Some(load_initrd(mem, path, mem_size, loaded.kernel_end)?),
        None => None,
    };

    let e820 = layout::e820_map(mem_size);
    let mp = mptable::build(EBDA_START as u32, config.vcpus)?;
    mem.write_slice(&mp, GuestAddress(EBDA_START))?;

    match (config.boot, loaded.pvh_boot_cap) {
        (BootProtocol::Pvh, PvhBootCapability::PvhEntryPresent(entry)) => {
            let modlist = initrd.map(|_| PVH_MODLIST_ADDR);
            let (info, memmap) = pvh_start_info(PVH_MEMMAP_ADDR, &e820, modlist);
            mem.write_obj(info, GuestAddress(PVH_INFO_ADDR))?;
            for (i, m) in memmap.iter().enumerate() {
                mem.write_obj(*m, GuestAddress(PVH_MEMMAP_ADDR + (i as u64) * 24))?;
            }
            if let Some(i) = initrd {
                let module = linux_loader::loader::elf::start_info::hvm_modlist_entry {
                    paddr: i.addr,
                    size: i.size,
                    ..Default::default()
                };
                mem.write_obj(module, GuestAddress(PVH_MODLIST_ADDR))?;
            }
            Ok(EntryMode::Pvh {
                entry: entry.raw_value(),
                start_info: PVH_INFO_ADDR,
            })
        }
        (BootProtocol::Pvh, _) => Err(kernel_err(
            "boot protocol pvh asked for, but the kernel has no PVH ELF note".into(),
        )),
        (BootProtocol::Linux64, _) => {
            let params = linux_boot_params(loaded.setup_header, cmdline_len, &e820, initrd);
            mem.write_obj(params, GuestAddress(ZERO_PAGE_ADDR))?;
            let cr3 = paging::write_identity_map(mem)?;
            // bzImage: the 64-bit entry is 0x200 past the protected-mode code.
            let entry = if is_elf {
                loaded.kernel_load.raw_value()
            } else {
                loaded.kernel_load.raw_value() + 0x200
            };
            Ok(EntryMode::Linux64 { entry, cr3 })
        }
    }
}

fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &std::path::Path,
    mem_size: u64,
    kernel_end: u64,
) -> Result<InitrdPlacement, BuildError> {
    let mut f =
        File::open(path).map_err(|e| BuildError::Initrd(format!("{}: {e}", path.display())))?;
    let size = f
        .metadata()
        .map_err(|e| BuildError::Initrd(e.to_string()))?
        .len();
    let top = mem_size.min(MMIO_GAP_START);
    let addr = top
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= kernel_end.max(HIMEM_START))
        .ok_or_else(|| {
            BuildError::Initrd(format!(
                "{} bytes do not fit between the kernel and the top of low memory",
                size
            ))
        })?;
    let mut buf = Vec::with_capacity(size as usize);
    f.read_to_end(&mut buf)
        .map_err(|e| BuildError::Initrd(e.to_string()))?;
    mem.write_slice(&buf, GuestAddress(addr))?;
    Ok(InitrdPlacement { addr, size })
}

fn create_vcpus(
    kvm: &Kvm,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    count: u32,
    entry: EntryMode,
) -> Result<Vec<VcpuFd>, BuildError> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    // KVM emulates the TSC-deadline timer but leaves it out of the supported
    // CPUID; without it Linux calibrates its APIC timer by busy-waiting.
    let tsc_deadline = kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
    let mut vcpus = Vec::with_capacity(count as usize);
    for id in 0..count {
        let vcpu = vm
            .create_vcpu(u64::from(id))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let mut cpuid = supported.clone();
        cpuid::filter(cpuid.as_mut_slice(), id, count);
        if tsc_deadline {
            cpuid::advertise_tsc_deadline(cpuid.as_mut_slice());
        }
        vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
        let wrap = |source| BuildError::Vcpu { id, source };
        regs::setup_msrs(&vcpu).map_err(wrap)?;
        regs::setup_fpu(&vcpu).map_err(wrap)?;
        regs::setup_lapic(&vcpu).map_err(wrap)?;
        if id == 0 {
            regs::setup_sregs(mem, &vcpu, entry).map_err(wrap)?;
            regs::setup_regs(&vcpu, entry).map_err(wrap)?;
        }
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}
