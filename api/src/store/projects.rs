//! Projects (tenants) and their quotas.

use serde::{Deserialize, Serialize};
use sqlx::{FromRow, SqliteConnection, SqlitePool};
use utoipa::ToSchema;

use super::now_ms;

/// A tenant. Every resource belongs to exactly one.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct Project {
    /// Project id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Whether its tokens may use admin routes.
    pub is_admin: bool,
    /// Creation time (unix ms).
    pub created_at: i64,
    /// Quotas.
    #[sqlx(flatten)]
    pub quotas: Quotas,
}

/// Limits on what a project may hold.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, FromRow, ToSchema, PartialEq, Eq)]
pub struct Quotas {
    /// Instances that exist (any state but deleted).
    pub max_instances: i64,
    /// vCPUs summed over those instances.
    pub max_vcpus: i64,
    /// Memory (MiB) summed over those instances.
    pub max_memory_mib: i64,
    /// Block volumes.
    pub max_volumes: i64,
    /// Object storage buckets.
    pub max_buckets: i64,
    /// Stream topics and queues.
    pub max_topics: i64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_instances: 20,
            max_vcpus: 64,
            max_memory_mib: 65536,
            max_volumes: 20,
            max_buckets: 10,
            max_topics: 50,
        }
    }
}

const COLUMNS: &str = "id, name, is_admin, created_at, max_instances, max_vcpus, max_memory_mib, \
                       max_volumes, max_buckets, max_topics";

/// Creates a project.
pub async fn create(
    conn: &mut SqliteConnection,
    name: &str,
    is_admin: bool,
    quotas: Quotas,
) -> Result<Project, sqlx::Error> {
    let p = Project {
        id: format!("prj-{}", uuid::Uuid::now_v7().simple()),
        name: name.to_string(),
        is_admin,
        created_at: now_ms(),
        quotas,
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO projects ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
    )))
    .bind(&p.id)
    .bind(&p.name)
    .bind(p.is_admin)
    .bind(p.created_at)
    .bind(quotas.max_instances)
    .bind(quotas.max_vcpus)
    .bind(quotas.max_memory_mib)
    .bind(quotas.max_volumes)
    .bind(quotas.max_buckets)
    .bind(quotas.max_topics)
    .execute(conn)
    .await?;
    Ok(p)
}

/// One project by id.
pub async fn get(pool: &SqlitePool, id: &str) -> Result<Option<Project>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM projects WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// One project by name.
pub async fn by_name(pool: &SqlitePool, name: &str) -> Result<Option<Project>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM projects WHERE name = ?"
    )))
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// Every project.
pub async fn list(pool: &SqlitePool) -> Result<Vec<Project>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM projects ORDER BY created_at"
    )))
    .fetch_all(pool)
    .await
}

/// Replaces a project's quotas.
pub async fn set_quotas(pool: &SqlitePool, id: &str, q: Quotas) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE projects SET max_instances=?, max_vcpus=?, max_memory_mib=?, max_volumes=?, \
         max_buckets=?, max_topics=? WHERE id=?",
    )
    .bind(q.max_instances)
    .bind(q.max_vcpus)
    .bind(q.max_memory_mib)
    .bind(q.max_volumes)
    .bind(q.max_buckets)
    .bind(q.max_topics)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The admin project, if created.
pub async fn admin(pool: &SqlitePool) -> Result<Option<Project>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM projects WHERE is_admin = 1 ORDER BY created_at LIMIT 1"
    )))
    .fetch_optional(pool)
    .await
}
