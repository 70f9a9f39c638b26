//! The compute service: instance lifecycle on this host. It claims
//! capacity from the `scheduler`, starts one `minicloud-vmm` process per VM
//! ([`process`]), supervises it, and records every state change (and the
//! event it causes) in one transaction.
//!
//! States: `pending → scheduled → starting → running → stopping → stopped`,
//! or `failed` with a reason. VMs outlive the daemon; at start,
//! [`Compute::reconcile`] reattaches to every VMM still alive and settles the
//! ones that ended while it was away, with their real end times.

pub mod images;
pub mod process;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypervisor::config::VmConfig;
use hypervisor::probe::HostCapability;
use scheduler::{PlacementError, PlacementRequest, Scheduler};
use tokio::sync::broadcast;

use crate::error::{ApiError, ApiResult};
use crate::guest::{GuestApi, GuestIdentity};
use crate::store::events::{self, LifecycleEvent};
use crate::store::instances::{self, Instance, state};
use crate::store::operations::{self, Operation};
use crate::store::projects::Project;
use crate::store::{Store, now_ms};
use images::Image;
use process::VmDir;

/// Default time a guest gets to stop before its VMM is killed.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The metering run of an instance that starts running at `at`.
fn run_start(inst: &Instance, at: i64) -> metering::RunStart {
    metering::RunStart {
        project: inst.project_id.clone(),
        resource_id: inst.id.clone(),
        vcpus: inst.vcpus as u32,
        memory_mib: inst.memory_mib as u64,
        started_at: at,
        policy: metering::RunPolicy::default(),
    }
}

/// Records where an instance was placed (host, pinned CPUs, allocation).
async fn record_placement(
    conn: &mut sqlx::SqliteConnection,
    id: &str,
    placement: &scheduler::Placement,
) -> Result<(), sqlx::Error> {
    instances::set_placement(
        conn,
        id,
        Some(placement.host()),
        Some(&placement.cpus.to_string()),
        serde_json::to_string(&placement.allocation).ok().as_deref(),
    )
    .await
}

/// The guest context id of every VM's vsock (each VMM has its own
/// device, so they need not differ).
const GUEST_CID: u64 = 3;

/// What a launch asks for (validated by the route).
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Name.
    pub name: String,
    /// Image name.
    pub image: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Extra kernel command line.
    pub cmdline: String,
    /// Command to run, then power off.
    pub run: Option<String>,
    /// User data.
    pub user_data: Option<String>,
    /// Dedicated host cores.
    pub dedicated: bool,
    /// The instance id, when the caller chose it (to attach volumes first).
    pub id: Option<String>,
    /// Block volumes already attached to `id`, in disk order: (volume id, raw file).
    pub volumes: Vec<(String, PathBuf)>,
}

/// The compute service.
pub struct Compute {
    store: Store,
    scheduler: Scheduler,
    host_id: String,
    vmm: PathBuf,
    images_dir: PathBuf,
    vms_dir: PathBuf,
    capability: HostCapability,
    guest: Arc<GuestApi>,
    events: broadcast::Sender<LifecycleEvent>,
    launch_lock: tokio::sync::Mutex<()>,
    stop_requested: Mutex<HashSet<String>>,
    instance_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Settings of the compute service.
pub struct ComputeConfig {
    /// The `minicloud-vmm` binary.
    pub vmm: PathBuf,
    /// The image cache.
    pub images_dir: PathBuf,
    /// Where VM directories go.
    pub vms_dir: PathBuf,
    /// The scheduler (with this host in it).
    pub scheduler: Scheduler,
    /// This host's id in the scheduler.
    pub host_id: String,
    /// What this host's KVM can run.
    pub capability: HostCapability,
    /// The instance API each VM reaches over its vsock.
    pub guest: Arc<GuestApi>,
}

impl Compute {
    /// A compute service on `store`.
    pub fn new(
        store: Store,
        cfg: ComputeConfig,
        events: broadcast::Sender<LifecycleEvent>,
    ) -> Arc<Self> {
        Arc::new(Compute {
            store,
            scheduler: cfg.scheduler,
            host_id: cfg.host_id,
            vmm: cfg.vmm,
            images_dir: cfg.images_dir,
            vms_dir: cfg.vms_dir,
            capability: cfg.capability,
            guest: cfg.guest,
            events,
            launch_lock: tokio::sync::Mutex::new(()),
            stop_requested: Mutex::new(HashSet::new()),
            instance_locks: Mutex::new(HashMap::new()),
        })
    }

    /// Serves the instance API on the VM's vsock port 80 (logged, not
    /// fatal, when it cannot: the VM still runs, without it).
    fn open_guest_api(&self, inst: &Instance) {
        let ident = GuestIdentity {
            instance_id: inst.id.clone(),
            project_id: inst.project_id.clone(),
        };
        let path = self.vm_dir(&inst.id).guest_api_sock();
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Err(e) = self.guest.open(ident, &path) {
            tracing::error!(instance = %inst.id, error = %e, path = %path.display(), "cannot serve the instance API");
        }
    }

    /// The instance API's listeners.
    pub fn guest_api(&self) -> &Arc<GuestApi> {
        &self.guest
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// This host's id.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// What this host can run.
    pub fn capability(&self) -> &HostCapability {
        &self.capability
    }

    /// The images and whether each can run here.
    pub fn images(&self) -> Vec<Image> {
        images::scan(&self.images_dir, &self.capability)
    }

    /// A VM's directory.
    pub fn vm_dir(&self, id: &str) -> VmDir {
        VmDir(self.vms_dir.join(id))
    }

    /// Records and publishes an event that is not a state change.
    pub async fn publish(&self, project: &str, kind: &str, resource: &str, message: &str) {
        let Ok(mut conn) = self.store.pool.acquire().await else {
            return;
        };
        if let Ok(ev) =
            events::append(&mut conn, project, kind, resource, None, Some(message)).await
        {
            let _ = self.events.send(ev);
        }
    }

    /// Live lifecycle events.
    pub fn subscribe(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.events.subscribe()
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .instance_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    /// Changes state and appends the event in one transaction, then
    /// publishes the event.
    async fn transition(
        &self,
        inst: &Instance,
        new_state: &str,
        reason: Option<&str>,
    ) -> ApiResult<()> {
        let mut tx = self.store.write().await?;
        instances::set_state(&mut tx, &inst.id, new_state, reason).await?;
        let ev = events::append(
            &mut tx,
            &inst.project_id,
            "instance.state",
            &inst.id,
            Some(new_state),
            reason,
        )
        .await?;
        tx.commit().await?;
        let _ = self.events.send(ev);
        Ok(())
    }

    fn placement_request(
        &self,
        id: &str,
        vcpus: u32,
        memory_mib: u64,
        dedicated: bool,
    ) -> PlacementRequest {
        let req = PlacementRequest::new(id, vcpus, memory_mib);
        if dedicated { req.dedicated() } else { req }
    }

    fn place(&self, req: &PlacementRequest) -> ApiResult<scheduler::Placement> {
        self.scheduler.place(req).map_err(|e| match e {
            PlacementError::NoValidHost { ref reasons } => {
                let lines: Vec<String> = reasons
                    .iter()
                    .flat_map(|h| h.reasons.iter().map(move |r| format!("{}: {r}", h.host)))
                    .collect();
                ApiError::conflict(
                    "no_valid_host",
                    format!("no host can take this instance: {}", lines.join("; ")),
                )
                .details(serde_json::json!({ "rejections": lines }))
            }
            other => ApiError::conflict("placement_failed", other.to_string()),
        })
    }

    /// Claims capacity for an existing instance (start, restart).
    fn place_instance(&self, inst: &Instance) -> ApiResult<scheduler::Placement> {
        self.place(&self.placement_request(
            &inst.id,
            inst.vcpus as u32,
            inst.memory_mib as u64,
            inst.cpu_policy == "dedicated",
        ))
    }

    /// Accepts a launch: checks the image and the quota, claims capacity,
    /// records the instance in `pending`, and starts it in the background.
    pub async fn launch(
        self: &Arc<Self>,
        project: &Project,
        spec: LaunchSpec,
    ) -> ApiResult<(Instance, Operation)> {
        let image = self
            .images()
            .into_iter()
            .find(|i| i.name == spec.image)
            .ok_or_else(|| {
                ApiError::invalid(
                    "image",
                    format!("unknown image {:?} (known: mini, linux)", spec.image),
                )
            })?;
        if !image.runnable {
            return Err(ApiError::conflict(
                "image_not_runnable",
                format!(
                    "image {} cannot run on this host: {}",
                    image.name,
                    image.note.clone().unwrap_or_default()
                ),
            ));
        }
        let _guard = self.launch_lock.lock().await;
        let mut tx = self.store.write().await?;
        let (count, vcpus, mem) = instances::usage(&mut tx, &project.id).await?;
        let q = project.quotas;
        let over = [
            ("instances", count + 1, q.max_instances),
            ("vcpus", vcpus + i64::from(spec.vcpus), q.max_vcpus),
            ("memory_mib", mem + spec.memory_mib as i64, q.max_memory_mib),
        ]
        .into_iter()
        .find(|(_, want, max)| want > max);
        if let Some((what, want, max)) = over {
            return Err(ApiError::forbidden(format!(
                "quota exceeded: {what} would be {want}, the project's limit is {max}"
            ))
            .details(serde_json::json!({ "quota": what, "requested": want, "limit": max })));
        }
        let conflict: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM instances WHERE project_id=? AND name=? AND deleted_at IS NULL",
        )
        .bind(&project.id)
        .bind(&spec.name)
        .fetch_optional(&mut *tx)
        .await?;
        if conflict.is_some() {
            return Err(ApiError::conflict(
                "name_taken",
                format!(
                    "an instance named {:?} already exists in this project",
                    spec.name
                ),
            ));
        }
        let id = spec
            .id
            .clone()
            .unwrap_or_else(|| format!("i-{}", uuid::Uuid::now_v7().simple()));
        let placement =
            self.place(&self.placement_request(&id, spec.vcpus, spec.memory_mib, spec.dedicated))?;
        let now = now_ms();
        let inst = Instance {
            id: id.clone(),
            project_id: project.id.clone(),
            name: spec.name,
            image: spec.image,
            vcpus: i64::from(spec.vcpus),
            memory_mib: spec.memory_mib as i64,
            cmdline: spec.cmdline,
            run: spec.run,
            user_data: spec.user_data,
            cpu_policy: if spec.dedicated {
                "dedicated"
            } else {
                "shared"
            }
            .into(),
            state: state::PENDING.into(),
            state_reason: None,
            host: Some(placement.host().to_string()),
            cpus: Some(placement.cpus.to_string()),
            allocation: serde_json::to_string(&placement.allocation).ok(),
            pid: None,
            pid_starttime: None,
            exit_status: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            stopped_at: None,
            deleted_at: None,
            volumes: (!spec.volumes.is_empty()).then(|| {
                serde_json::json!(
                    spec.volumes
                        .iter()
                        .map(|(id, path)| serde_json::json!({ "id": id, "path": path }))
                        .collect::<Vec<_>>()
                )
                .to_string()
            }),
        };
        let recorded = async {
            instances::insert(&mut tx, &inst).await?;
            let op = operations::create(&mut tx, &project.id, "launch", &id).await?;
            let ev = events::append(
                &mut tx,
                &project.id,
                "instance.state",
                &id,
                Some(state::PENDING),
                None,
            )
            .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>((op, ev))
        }
        .await;
        let (op, ev) = match recorded {
            Ok(x) => x,
            Err(e) => {
                self.scheduler.release(&id);
                return Err(e.into());
            }
        };
        let _ = self.events.send(ev);
        drop(_guard);
        let me = self.clone();
        let op_id = op.id.clone();
        tokio::spawn(async move { me.drive_start(id, Some(op_id), true).await });
        Ok((inst, op))
    }

    /// scheduled → starting → running. `placed` says whether the
    /// allocation is already claimed and recorded.
    async fn drive_start(self: Arc<Self>, id: String, op: Option<String>, placed: bool) {
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let result = self.start_locked(&id, placed).await;
        if let Err(e) = &result {
            tracing::warn!(instance = %id, error = %e.message, "start failed");
            self.scheduler.release(&id);
            if let Ok(Some(inst)) = instances::get_any(&self.store.pool, &id).await
                && inst.deleted_at.is_none()
            {
                let mut tx = match self.store.write().await {
                    Ok(t) => t,
                    Err(_) => return,
                };
                let _ = instances::set_ended(
                    &mut tx,
                    &id,
                    state::FAILED,
                    Some(&e.message),
                    None,
                    now_ms(),
                )
                .await;
                let ev = events::append(
                    &mut tx,
                    &inst.project_id,
                    "instance.state",
                    &id,
                    Some(state::FAILED),
                    Some(&e.message),
                )
                .await;
                if tx.commit().await.is_ok()
                    && let Ok(ev) = ev
                {
                    let _ = self.events.send(ev);
                }
            }
        }
        if let Some(op) = op {
            let err = result.as_ref().err().map(|e| e.message.clone());
            let _ = operations::finish(&self.store.pool, &op, err.as_deref()).await;
        }
    }

    async fn start_locked(self: &Arc<Self>, id: &str, placed: bool) -> ApiResult<()> {
        let inst = instances::get_any(&self.store.pool, id)
            .await?
            .filter(|i| i.deleted_at.is_none())
            .ok_or_else(|| ApiError::not_found("instance", id))?;
        if !placed {
            let placement = self.place_instance(&inst)?;
            let mut tx = self.store.write().await?;
            record_placement(&mut tx, id, &placement).await?;
            tx.commit().await?;
        }
        self.transition(&inst, state::SCHEDULED, None).await?;
        self.transition(&inst, state::STARTING, None).await?;
        let inst = instances::get_any(&self.store.pool, id)
            .await?
            .ok_or_else(|| ApiError::not_found("instance", id))?;
        let config = self.vm_config(&inst)?;
        let dir = self.vm_dir(id);
        if let Ok(mut s) = self.stop_requested.lock() {
            s.remove(id);
        }
        // The instance API listens before the guest can run.
        self.open_guest_api(&inst);
        let spawned = match process::spawn(&self.vmm, &dir, &config) {
            Ok(s) => s,
            Err(e) => {
                self.guest.close(id, &dir.guest_api_sock());
                return Err(ApiError::internal("starting the VMM", e));
            }
        };
        let started_at = now_ms();
        let mut tx = self.store.write().await?;
        instances::set_running(
            &mut tx,
            id,
            i64::from(spawned.pid),
            spawned.starttime as i64,
            started_at,
        )
        .await?;
        // The run interval opens in the same transaction as `running`.
        metering::open_run(&mut tx, &run_start(&inst, started_at))
            .await
            .map_err(|e| ApiError::internal("metering", e))?;
        let ev = events::append(
            &mut tx,
            &inst.project_id,
            "instance.state",
            id,
            Some(state::RUNNING),
            None,
        )
        .await?;
        tx.commit().await?;
        let _ = self.events.send(ev);
        let me = self.clone();
        let id = id.to_string();
        let mut child = spawned.child;
        tokio::spawn(async move {
            let status = child.wait().await.ok();
            let signal = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s));
            me.on_vmm_exit(&id, signal).await;
        });
        Ok(())
    }

    /// The VMM config for an instance.
    fn vm_config(&self, inst: &Instance) -> ApiResult<VmConfig> {
        let image = self
            .images()
            .into_iter()
            .find(|i| i.name == inst.image)
            .ok_or_else(|| {
                ApiError::conflict("image_missing", format!("image {} is gone", inst.image))
            })?;
        let dir = self.vm_dir(&inst.id);
        let mut cmdline = image.cmdline.clone();
        if !inst.cmdline.is_empty() {
            cmdline.push(' ');
            cmdline.push_str(&inst.cmdline);
        }
        if let Some(run) = &inst.run {
            cmdline.push_str(&format!(" minicloud.run=\"{run}\""));
        }
        let mut disks = Vec::new();
        if let Some(rootfs) = &image.rootfs {
            // The root disk is the instance's own copy of the image's.
            let root = dir.0.join("root.ext4");
            if !root.exists() {
                std::fs::create_dir_all(&dir.0).map_err(|e| ApiError::internal("vm dir", e))?;
                std::fs::copy(rootfs, &root).map_err(|e| ApiError::internal("root disk", e))?;
            }
            disks.push(serde_json::json!({ "path": root, "read_only": false, "id": "root" }));
        }
        // Attached volumes follow the image's root disk, in launch order.
        if let Some(list) = inst
            .volumes
            .as_deref()
            .and_then(|v| serde_json::from_str::<Vec<serde_json::Value>>(v).ok())
        {
            for v in list {
                disks.push(
                    serde_json::json!({ "path": v["path"], "read_only": false, "id": v["id"] }),
                );
            }
        }
        let (cpu_affinity, vcpu_cpus) = match (inst.cpu_policy.as_str(), &inst.cpus) {
            ("dedicated", Some(c)) => (None, Some(c.clone())),
            (_, Some(c)) if !c.is_empty() => (Some(c.clone()), None),
            _ => (None, None),
        };
        // Built through serde so that fields the VMM adds later keep their
        // defaults.
        let config = serde_json::json!({
            "kernel": image.kernel,
            "cmdline": cmdline,
            "vcpus": inst.vcpus,
            "memory_mib": inst.memory_mib,
            "disks": disks,
            "console": { "log": dir.console_log(), "socket": dir.console_sock(), "stdin": false },
            "cpu_affinity": cpu_affinity,
            "vcpu_cpus": vcpu_cpus,
            "boot": "linux64",
            "vsock": { "guest_cid": GUEST_CID, "uds_path": dir.vsock_uds() },
        });
        serde_json::from_value::<VmConfig>(config).map_err(|e| ApiError::internal("VMM config", e))
    }

    /// The VMM of `id` ended: settle the instance with the real end time.
    async fn on_vmm_exit(&self, id: &str, signal: Option<i32>) {
        let Ok(Some(inst)) = instances::get_any(&self.store.pool, id).await else {
            return;
        };
        let dir = self.vm_dir(id);
        let record = process::read_exit(&dir);
        let requested = self
            .stop_requested
            .lock()
            .map(|mut s| s.remove(id))
            .unwrap_or(false)
            || inst.state == state::STOPPING;
        let (new_state, reason, status, ended_at) = match (&record, requested) {
            (Some(r), true) => (
                state::STOPPED,
                format!("stopped on request ({})", r.reason),
                Some(r.status),
                r.ended_at_ms,
            ),
            (None, true) => (
                state::STOPPED,
                "stopped on request".to_string(),
                None,
                now_ms(),
            ),
            (Some(r), false) if r.status == 0 => {
                (state::STOPPED, r.reason.clone(), Some(0), r.ended_at_ms)
            }
            (Some(r), false) => (
                state::FAILED,
                r.reason.clone(),
                Some(r.status),
                r.ended_at_ms,
            ),
            (None, false) => {
                let why = match signal {
                    Some(sig) => format!("the VMM process was killed by signal {sig}"),
                    None => process::last_log_line(&dir)
                        .map(|l| format!("the VMM process ended without recording why: {l}"))
                        .unwrap_or_else(|| "the VMM process ended without recording why".into()),
                };
                (state::FAILED, why, None, now_ms())
            }
        };
        self.settle(&inst, new_state, &reason, status, ended_at)
            .await;
    }

    async fn settle(
        &self,
        inst: &Instance,
        new_state: &str,
        reason: &str,
        status: Option<i64>,
        ended_at: i64,
    ) {
        self.guest
            .close(&inst.id, &self.vm_dir(&inst.id).guest_api_sock());
        let result = async {
            let mut tx = self.store.write().await?;
            instances::set_ended(&mut tx, &inst.id, new_state, Some(reason), status, ended_at)
                .await?;
            let ev = events::append(
                &mut tx,
                &inst.project_id,
                "instance.state",
                &inst.id,
                Some(new_state),
                Some(reason),
            )
            .await?;
            // The run interval closes with the real end time, in the same
            // transaction; closing an already closed run changes nothing.
            let end_reason = if new_state == state::FAILED {
                metering::EndReason::Failed
            } else {
                metering::EndReason::Stopped
            };
            metering::close_run(&mut tx, &inst.id, ended_at, end_reason)
                .await
                .map_err(|e| sqlx::Error::Protocol(format!("metering: {e}")))?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(ev)
        }
        .await;
        self.scheduler.release(&inst.id);
        match result {
            Ok(ev) => {
                let _ = self.events.send(ev);
            }
            Err(e) => {
                tracing::error!(instance = %inst.id, error = %e, "recording the end of a VM failed")
            }
        }
        let _ = operations::finish_for_target(&self.store.pool, &inst.id, None).await;
    }

    /// Stops an instance: asks the guest (SIGTERM to its VMM, which shuts
    /// the guest down in order), then kills it after `timeout`.
    pub async fn stop(
        self: &Arc<Self>,
        inst: &Instance,
        timeout: Duration,
        kind: &str,
    ) -> ApiResult<Operation> {
        if !matches!(
            inst.state.as_str(),
            state::RUNNING | state::PAUSED | state::STARTING | state::STOPPING
        ) {
            return Err(ApiError::conflict(
                "invalid_state",
                format!(
                    "instance {} is {}; only a running instance can be stopped",
                    inst.id, inst.state
                ),
            ));
        }
        let mut tx = self.store.write().await?;
        let op = operations::create(&mut tx, &inst.project_id, kind, &inst.id).await?;
        tx.commit().await?;
        if let Ok(mut s) = self.stop_requested.lock() {
            s.insert(inst.id.clone());
        }
        self.transition(inst, state::STOPPING, None).await?;
        let me = self.clone();
        let inst = inst.clone();
        tokio::spawn(async move { me.escalate_stop(&inst, timeout).await });
        Ok(op)
    }

    async fn escalate_stop(&self, inst: &Instance, timeout: Duration) {
        let (Some(pid), Some(start)) = (inst.pid, inst.pid_starttime) else {
            return;
        };
        let (pid, start) = (pid as i32, start as u64);
        process::signal(pid, start, libc::SIGTERM);
        let mut rx = self.events.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !process::is_alive(pid, start) {
                return;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        tracing::info!(instance = %inst.id, "stop deadline passed: killing the VMM");
        process::signal(pid, start, libc::SIGKILL);
    }

    /// Pauses a running instance's vCPUs (through its VMM's control API);
    /// from then on it is billed as paused.
    pub async fn pause(self: &Arc<Self>, inst: &Instance, pause: bool) -> ApiResult<Instance> {
        let (from, to, verb) = if pause {
            (state::RUNNING, state::PAUSED, "paused")
        } else {
            (state::PAUSED, state::RUNNING, "resumed")
        };
        if inst.state != from {
            return Err(ApiError::conflict(
                "invalid_state",
                format!(
                    "instance {} is {}; only a {from} instance can be {verb}",
                    inst.id, inst.state
                ),
            ));
        }
        let lock = self.lock_for(&inst.id);
        let _g = lock.lock().await;
        let body = format!("{{\"state\":\"{verb}\"}}");
        let (status, answer) =
            process::vmm_api(&self.vm_dir(&inst.id), "PATCH", "/vm", Some(&body))
                .await
                .map_err(|e| {
                    ApiError::conflict("vmm_unreachable", format!("the VMM's control API: {e}"))
                })?;
        if !(200..300).contains(&status) {
            return Err(ApiError::conflict(
                "vmm_refused",
                format!("the VMM answered {status}: {answer}"),
            ));
        }
        let at = now_ms();
        let mut tx = self.store.write().await?;
        instances::set_state(&mut tx, &inst.id, to, None).await?;
        let metered = if pause {
            metering::pause(&mut tx, &inst.id, at).await
        } else {
            metering::resume(&mut tx, &inst.id, at).await
        };
        metered.map_err(|e| ApiError::internal("metering", e))?;
        let ev = events::append(
            &mut tx,
            &inst.project_id,
            "instance.state",
            &inst.id,
            Some(to),
            None,
        )
        .await?;
        tx.commit().await?;
        let _ = self.events.send(ev);
        instances::get_any(&self.store.pool, &inst.id)
            .await?
            .ok_or_else(|| ApiError::not_found("instance", &inst.id))
    }

    /// Starts a stopped or failed instance.
    pub async fn start(self: &Arc<Self>, inst: &Instance) -> ApiResult<Operation> {
        if !matches!(inst.state.as_str(), state::STOPPED | state::FAILED) {
            return Err(ApiError::conflict(
                "invalid_state",
                format!(
                    "instance {} is {}; only a stopped or failed instance can be started",
                    inst.id, inst.state
                ),
            ));
        }
        // Claim capacity now, so a refusal is answered to the caller.
        let placement = self.place_instance(inst)?;
        let mut tx = self.store.write().await?;
        record_placement(&mut tx, &inst.id, &placement).await?;
        let op = operations::create(&mut tx, &inst.project_id, "start", &inst.id).await?;
        tx.commit().await?;
        let me = self.clone();
        let (id, op_id) = (inst.id.clone(), op.id.clone());
        tokio::spawn(async move { me.drive_start(id, Some(op_id), true).await });
        Ok(op)
    }

    /// Reboots: an orderly stop, then a start.
    pub async fn reboot(
        self: &Arc<Self>,
        inst: &Instance,
        timeout: Duration,
    ) -> ApiResult<Operation> {
        let op = self.stop(inst, timeout, "reboot").await?;
        let me = self.clone();
        let id = inst.id.clone();
        let op_id = op.id.clone();
        tokio::spawn(async move {
            let settled = me
                .wait_settled(&id, timeout + Duration::from_secs(10))
                .await;
            let result = match settled {
                Ok(i) if i.state == state::STOPPED || i.state == state::FAILED => {
                    me.start(&i).await.map(|_| ())
                }
                Ok(i) => Err(ApiError::conflict(
                    "invalid_state",
                    format!("instance is {}", i.state),
                )),
                Err(e) => Err(e),
            };
            let err = result.err().map(|e| e.message);
            let _ = operations::finish(&me.store.pool, &op_id, err.as_deref()).await;
        });
        Ok(op)
    }

    /// Deletes an instance: kills its VMM if any, releases its capacity,
    /// removes its files.
    pub async fn delete(self: &Arc<Self>, inst: &Instance) -> ApiResult<()> {
        let lock = self.lock_for(&inst.id);
        let _g = lock.lock().await;
        let inst = instances::get_any(&self.store.pool, &inst.id)
            .await?
            .ok_or_else(|| ApiError::not_found("instance", &inst.id))?;
        if let (Some(pid), Some(start)) = (inst.pid, inst.pid_starttime) {
            if let Ok(mut s) = self.stop_requested.lock() {
                s.insert(inst.id.clone());
            }
            process::signal(pid as i32, start as u64, libc::SIGKILL);
            let _ =
                tokio::time::timeout(Duration::from_secs(10), process::wait_exit(pid as i32)).await;
            // Let the supervisor settle it (end time, capacity) first.
            let _ = self.wait_settled(&inst.id, Duration::from_secs(5)).await;
        }
        self.scheduler.release(&inst.id);
        let mut tx = self.store.write().await?;
        instances::mark_deleted(&mut tx, &inst.id).await?;
        let ev = events::append(
            &mut tx,
            &inst.project_id,
            "instance.deleted",
            &inst.id,
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        let _ = self.events.send(ev);
        let _ = operations::finish_for_target(&self.store.pool, &inst.id, None).await;
        let _ = std::fs::remove_dir_all(&self.vm_dir(&inst.id).0);
        Ok(())
    }

    /// Waits until the instance is in a settled state (or `timeout`).
    pub async fn wait_settled(&self, id: &str, timeout: Duration) -> ApiResult<Instance> {
        let mut rx = self.events.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let inst = instances::get_any(&self.store.pool, id)
                .await?
                .ok_or_else(|| ApiError::not_found("instance", id))?;
            if state::is_settled(&inst.state) || inst.deleted_at.is_some() {
                return Ok(inst);
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(_) => continue,
                Err(_) => return Ok(inst),
            }
        }
    }

    /// After a daemon start: restore the scheduler's allocations, reattach
    /// to live VMMs, settle the ones that ended while the daemon was away,
    /// and resume launches that were cut short.
    pub async fn reconcile(self: &Arc<Self>) -> ApiResult<()> {
        let active = instances::active(&self.store.pool).await?;
        for inst in active {
            if let Some(alloc) = inst
                .allocation
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok())
                && let Err(e) = self.scheduler.restore(&alloc)
            {
                tracing::warn!(instance = %inst.id, error = %e, "could not restore allocation");
            }
            let dir = self.vm_dir(&inst.id);
            let pid = match (inst.pid, inst.pid_starttime) {
                (Some(p), Some(s)) => Some((p as i32, s as u64)),
                _ => process::read_pid_file(&dir).filter(|_| inst.state == state::STARTING),
            };
            match pid {
                Some((pid, start)) if process::is_alive(pid, start) => {
                    tracing::info!(instance = %inst.id, pid, "reattached to a running VMM");
                    self.open_guest_api(&inst);
                    if inst.state == state::STARTING {
                        let mut tx = self.store.write().await?;
                        instances::set_running(
                            &mut tx,
                            &inst.id,
                            i64::from(pid),
                            start as i64,
                            now_ms(),
                        )
                        .await?;
                        metering::open_run(&mut tx, &run_start(&inst, now_ms()))
                            .await
                            .map_err(|e| ApiError::internal("metering", e))?;
                        tx.commit().await?;
                    }
                    if inst.state == state::STOPPING {
                        if let Ok(mut s) = self.stop_requested.lock() {
                            s.insert(inst.id.clone());
                        }
                        let me = self.clone();
                        let i = inst.clone();
                        tokio::spawn(
                            async move { me.escalate_stop(&i, DEFAULT_STOP_TIMEOUT).await },
                        );
                    }
                    let me = self.clone();
                    let id = inst.id.clone();
                    tokio::spawn(async move {
                        let _ = process::wait_exit(pid).await;
                        me.on_vmm_exit(&id, None).await;
                    });
                }
                Some(_) => {
                    // It ended while the daemon was away: the VMM's own
                    // record says when; without one, now is the best bound.
                    tracing::info!(instance = %inst.id, "VMM ended while the daemon was down");
                    self.on_vmm_exit(&inst.id, None).await;
                }
                None => {
                    let me = self.clone();
                    let id = inst.id.clone();
                    let placed = inst.allocation.is_some();
                    tokio::spawn(async move { me.drive_start(id, None, placed).await });
                }
            }
        }
        Ok(())
    }
}
