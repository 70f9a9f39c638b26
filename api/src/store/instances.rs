//! Instances: the VMs of a project, with their lifecycle state.

use serde::Serialize;
use sqlx::{FromRow, SqliteConnection, SqlitePool};
use utoipa::ToSchema;

use super::now_ms;

/// Lifecycle states.
pub mod state {
    /// Accepted, placement claimed, not yet handed to the host.
    pub const PENDING: &str = "pending";
    /// Placed on a host.
    pub const SCHEDULED: &str = "scheduled";
    /// Its VMM process is being started.
    pub const STARTING: &str = "starting";
    /// Its VMM process runs the guest.
    pub const RUNNING: &str = "running";
    /// Its vCPUs are paused (memory kept); billed as the price book says.
    pub const PAUSED: &str = "paused";
    /// Asked to stop; waiting for the guest or the deadline.
    pub const STOPPING: &str = "stopping";
    /// Not running (guest powered off, or stopped on request).
    pub const STOPPED: &str = "stopped";
    /// Ended abnormally; `state_reason` says why.
    pub const FAILED: &str = "failed";

    /// States in which a VMM process may exist.
    pub const ACTIVE: [&str; 6] = [PENDING, SCHEDULED, STARTING, RUNNING, PAUSED, STOPPING];

    /// Whether `s` is a settled (non-transitional) state.
    pub fn is_settled(s: &str) -> bool {
        matches!(s, RUNNING | PAUSED | STOPPED | FAILED)
    }
}

/// A VM.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct Instance {
    /// Instance id.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Name, unique in the project.
    pub name: String,
    /// Image (mini, linux).
    pub image: String,
    /// vCPUs.
    pub vcpus: i64,
    /// Memory, MiB.
    pub memory_mib: i64,
    /// Extra kernel command line.
    pub cmdline: String,
    /// Command the guest runs and then powers off.
    pub run: Option<String>,
    /// User data given at launch (the metadata service returns it).
    pub user_data: Option<String>,
    /// shared or dedicated.
    pub cpu_policy: String,
    /// pending, scheduled, starting, running, stopping, stopped, failed.
    pub state: String,
    /// Why it is in this state (a failure reason, a refusal).
    pub state_reason: Option<String>,
    /// Host it is placed on.
    pub host: Option<String>,
    /// Host CPUs its vCPUs are pinned to.
    pub cpus: Option<String>,
    /// Scheduler allocation (JSON).
    #[serde(skip)]
    pub allocation: Option<String>,
    /// VMM process id while it runs.
    pub pid: Option<i64>,
    /// The VMM's start time in clock ticks since boot (guards against pid reuse).
    #[serde(skip)]
    pub pid_starttime: Option<i64>,
    /// The VMM's exit status of the last run (0 = guest powered off).
    pub exit_status: Option<i64>,
    /// Created (unix ms).
    pub created_at: i64,
    /// Last change (unix ms).
    pub updated_at: i64,
    /// Last time it reached running (unix ms).
    pub started_at: Option<i64>,
    /// Last time it stopped (unix ms).
    pub stopped_at: Option<i64>,
    /// Deleted (unix ms); deleted instances are invisible.
    #[serde(skip)]
    pub deleted_at: Option<i64>,
    /// Attached block volumes, in disk order (JSON list of `{id, path}`).
    #[serde(skip)]
    pub volumes: Option<String>,
}

/// Inserts a new instance.
pub async fn insert(conn: &mut SqliteConnection, i: &Instance) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO instances (id, project_id, name, image, vcpus, memory_mib, cmdline, run, user_data, \
         cpu_policy, state, state_reason, host, cpus, allocation, created_at, updated_at, volumes) \
         VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    )
    .bind(&i.id)
    .bind(&i.project_id)
    .bind(&i.name)
    .bind(&i.image)
    .bind(i.vcpus)
    .bind(i.memory_mib)
    .bind(&i.cmdline)
    .bind(&i.run)
    .bind(&i.user_data)
    .bind(&i.cpu_policy)
    .bind(&i.state)
    .bind(&i.state_reason)
    .bind(&i.host)
    .bind(&i.cpus)
    .bind(&i.allocation)
    .bind(i.created_at)
    .bind(i.updated_at)
    .bind(&i.volumes)
    .execute(conn)
    .await?;
    Ok(())
}

/// One live instance, scoped to a project (another project's id is `None`).
pub async fn get(
    pool: &SqlitePool,
    project_id: &str,
    id: &str,
) -> Result<Option<Instance>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM instances WHERE id=? AND project_id=? AND deleted_at IS NULL")
        .bind(id)
        .bind(project_id)
        .fetch_optional(pool)
        .await
}

/// One live instance by id or name within a project.
pub async fn find(
    pool: &SqlitePool,
    project_id: &str,
    id_or_name: &str,
) -> Result<Option<Instance>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM instances WHERE (id=? OR name=?) AND project_id=? AND deleted_at IS NULL",
    )
    .bind(id_or_name)
    .bind(id_or_name)
    .bind(project_id)
    .fetch_optional(pool)
    .await
}

/// One instance by id, any project (daemon-internal).
pub async fn get_any(pool: &SqlitePool, id: &str) -> Result<Option<Instance>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM instances WHERE id=?")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A project's live instances, oldest first.
pub async fn list(pool: &SqlitePool, project_id: &str) -> Result<Vec<Instance>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM instances WHERE project_id=? AND deleted_at IS NULL ORDER BY created_at, id",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await
}

/// Every live instance in a state where a VMM may exist (for reconciling).
pub async fn active(pool: &SqlitePool) -> Result<Vec<Instance>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM instances WHERE deleted_at IS NULL AND state IN ('pending','scheduled','starting','running','paused','stopping')",
    )
    .fetch_all(pool)
    .await
}

/// What a project holds: (instances, vCPUs, memory MiB).
pub async fn usage(
    conn: &mut SqliteConnection,
    project_id: &str,
) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(vcpus),0), COALESCE(SUM(memory_mib),0) FROM instances \
         WHERE project_id=? AND deleted_at IS NULL",
    )
    .bind(project_id)
    .fetch_one(conn)
    .await
}

/// Moves to `state` with a reason.
pub async fn set_state(
    conn: &mut SqliteConnection,
    id: &str,
    state: &str,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET state=?, state_reason=?, updated_at=? WHERE id=?")
        .bind(state)
        .bind(reason)
        .bind(now_ms())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the placement (host, pinned CPUs, allocation JSON).
pub async fn set_placement(
    conn: &mut SqliteConnection,
    id: &str,
    host: Option<&str>,
    cpus: Option<&str>,
    allocation: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET host=?, cpus=?, allocation=?, updated_at=? WHERE id=?")
        .bind(host)
        .bind(cpus)
        .bind(allocation)
        .bind(now_ms())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The VMM process is up: running since `started_at`.
pub async fn set_running(
    conn: &mut SqliteConnection,
    id: &str,
    pid: i64,
    starttime: i64,
    started_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE instances SET state='running', state_reason=NULL, pid=?, pid_starttime=?, started_at=?, \
         exit_status=NULL, updated_at=? WHERE id=?",
    )
    .bind(pid)
    .bind(starttime)
    .bind(started_at)
    .bind(now_ms())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The VMM process ended.
pub async fn set_ended(
    conn: &mut SqliteConnection,
    id: &str,
    state: &str,
    reason: Option<&str>,
    exit_status: Option<i64>,
    stopped_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE instances SET state=?, state_reason=?, exit_status=?, stopped_at=?, pid=NULL, \
         pid_starttime=NULL, host=NULL, cpus=NULL, allocation=NULL, updated_at=? WHERE id=?",
    )
    .bind(state)
    .bind(reason)
    .bind(exit_status)
    .bind(stopped_at)
    .bind(now_ms())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks an instance deleted (its name becomes free).
pub async fn mark_deleted(conn: &mut SqliteConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET deleted_at=?, updated_at=? WHERE id=?")
        .bind(now_ms())
        .bind(now_ms())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
