//! Block volumes: sparse raw files under `DATA/volumes/ID.raw`, snapshots
//! under `DATA/snapshots/ID.raw`, rows in SQLite (migration 2001).
//!
//! Copies (snapshot, restore, clone from an image) use `FICLONE` where the
//! filesystem shares extents (btrfs, XFS), else a sparse-aware copy that
//! skips holes (`SEEK_DATA`/`SEEK_HOLE`) and reports progress.
//!
//! The launch path (owned by the compute side) calls [`Volumes::attach`]
//! before starting a VM with `--disk <Volumes::path>` and
//! [`Volumes::detach`] when the VM stops or is deleted.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use sqlx::SqlitePool;

use crate::now_ms;

/// Errors of volume operations.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// No such volume or snapshot in the project.
    #[error("no such {0}: {1}")]
    NotFound(&'static str, String),
    /// The name is taken in the project.
    #[error("{0} {1:?} already exists")]
    Exists(&'static str, String),
    /// The volume is attached to an instance.
    #[error("volume {0} is attached to {1}")]
    Attached(String, String),
    /// A bad argument (size, name).
    #[error("{0}")]
    Invalid(String),
    /// Database error.
    #[error("volume database: {0}")]
    Db(#[from] sqlx::Error),
    /// Filesystem error.
    #[error("volume I/O: {0}")]
    Io(#[from] io::Error),
}

/// A volume.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Volume {
    /// `vol-…`.
    pub id: String,
    /// The owning project.
    pub project_id: String,
    /// Unique within the project.
    pub name: String,
    /// Provisioned size in bytes.
    pub size_bytes: i64,
    /// The instance it is attached to, if any.
    pub attached_to: Option<String>,
    /// What it was made from (`snapshot:ID`, `image:PATH`), if anything.
    pub source: Option<String>,
    /// Creation time (unix ms).
    pub created_at: i64,
}

/// A snapshot.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Snapshot {
    /// `snap-…`.
    pub id: String,
    /// The owning project.
    pub project_id: String,
    /// Unique within the project.
    pub name: String,
    /// The volume it was taken from.
    pub volume_id: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// `reflink` or `sparse-copy`.
    pub method: String,
    /// Creation time (unix ms).
    pub created_at: i64,
}

/// What a new volume holds.
#[derive(Debug, Clone)]
pub enum Source {
    /// Zeros.
    Empty,
    /// A copy of a raw image file.
    Image(PathBuf),
    /// A copy of one of the project's snapshots (id or name).
    Snapshot(String),
}

/// How a copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMethod {
    /// `FICLONE`: shared extents, copy-on-write.
    Reflink,
    /// Data regions copied, holes kept.
    SparseCopy,
}

impl CopyMethod {
    fn as_str(self) -> &'static str {
        match self {
            CopyMethod::Reflink => "reflink",
            CopyMethod::SparseCopy => "sparse-copy",
        }
    }
}

/// `FICLONE` = `_IOW(0x94, 9, int)`.
const FICLONE: libc::c_ulong = 0x4004_9409;

/// Copies `src` to a new file `dst`: a reflink where possible, else a
/// sparse-aware copy calling `progress(done, total)` as data goes.
pub fn clone_file(
    src: &Path,
    dst: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> io::Result<CopyMethod> {
    let s = File::open(src)?;
    let d = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    let total = s.metadata()?.len();
    // SAFETY: FICLONE takes the source fd as its argument; both fds are
    // open for the duration of the call and the kernel validates them.
    let rc = unsafe { libc::ioctl(d.as_raw_fd(), FICLONE as _, s.as_raw_fd()) };
    if rc == 0 {
        progress(total, total);
        d.sync_all()?;
        return Ok(CopyMethod::Reflink);
    }
    sparse_copy(&s, &d, total, progress)?;
    d.sync_all()?;
    Ok(CopyMethod::SparseCopy)
}

fn seek(f: &File, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    // SAFETY: lseek on an owned, open fd has no memory effects.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off as libc::off_t, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

fn sparse_copy(
    s: &File,
    d: &File,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> io::Result<()> {
    d.set_len(total)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    let mut done = 0u64;
    while off < total {
        let Some(data) = seek(s, off, libc::SEEK_DATA)? else {
            break;
        };
        let hole = seek(s, data, libc::SEEK_HOLE)?.unwrap_or(total).min(total);
        let mut pos = data;
        while pos < hole {
            let n = ((hole - pos) as usize).min(buf.len());
            let got = s.read_at(&mut buf[..n], pos)?;
            if got == 0 {
                break;
            }
            // Skip all-zero blocks too: they stay holes.
            if buf[..got].iter().any(|&b| b != 0) {
                d.write_all_at(&buf[..got], pos)?;
            }
            pos += got as u64;
            done += got as u64;
            progress(done, total);
        }
        off = hole;
    }
    progress(total, total);
    Ok(())
}

fn check_name(name: &str) -> Result<(), VolumeError> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(VolumeError::Invalid(format!(
            "name {name:?}: 1-63 of a-z, 0-9, -"
        )));
    }
    Ok(())
}

/// Sizes are whole MiB, 1 MiB to 16 TiB.
fn check_size(size: i64) -> Result<(), VolumeError> {
    if !((1 << 20)..=(16 << 40)).contains(&size) || size % (1 << 20) != 0 {
        return Err(VolumeError::Invalid(format!(
            "size {size}: a multiple of 1 MiB, 1 MiB to 16 TiB"
        )));
    }
    Ok(())
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

const VOLUME_COLS: &str = "id, project_id, name, size_bytes, attached_to, source, created_at";
const SNAPSHOT_COLS: &str = "id, project_id, name, volume_id, size_bytes, method, created_at";

/// The volume service.
#[derive(Clone)]
pub struct Volumes {
    pool: SqlitePool,
    volumes: PathBuf,
    snapshots: PathBuf,
}

impl Volumes {
    /// Opens the volume store in `data_dir` (runs [`crate::migrate`]).
    pub async fn open(pool: SqlitePool, data_dir: &Path) -> Result<Volumes, crate::StorageError> {
        crate::migrate(&pool).await?;
        let volumes = data_dir.join("volumes");
        let snapshots = data_dir.join("snapshots");
        std::fs::create_dir_all(&volumes)?;
        std::fs::create_dir_all(&snapshots)?;
        // Files of creations that crashed before their row was written.
        for (dir, table) in [(&volumes, "volumes"), (&snapshots, "volume_snapshots")] {
            let ids: std::collections::HashSet<String> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM {table}")))
                    .fetch_all(&pool)
                    .await
                    .map_err(crate::StorageError::Db)?
                    .into_iter()
                    .collect();
            for e in std::fs::read_dir(dir)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.trim_end_matches(".raw").trim_end_matches(".tmp");
                if name.ends_with(".tmp") || !ids.contains(id) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(Volumes {
            pool,
            volumes,
            snapshots,
        })
    }

    /// The raw file of a volume (for the VMM's `--disk PATH`).
    pub fn path(&self, volume_id: &str) -> PathBuf {
        self.volumes.join(format!("{volume_id}.raw"))
    }

    fn snapshot_path(&self, id: &str) -> PathBuf {
        self.snapshots.join(format!("{id}.raw"))
    }

    /// The project's volumes, by name.
    pub async fn list(&self, project: &str) -> Result<Vec<Volume>, VolumeError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {VOLUME_COLS} FROM volumes WHERE project_id = ? ORDER BY name"
        )))
        .bind(project)
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many volumes the project has (for its `max_volumes` quota).
    pub async fn count(&self, project: &str) -> Result<i64, VolumeError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM volumes WHERE project_id = ?")
                .bind(project)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// One of the project's volumes, by id or name.
    pub async fn get(&self, project: &str, id_or_name: &str) -> Result<Volume, VolumeError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {VOLUME_COLS} FROM volumes WHERE project_id = ? AND (id = ? OR name = ?)"
        )))
        .bind(project)
        .bind(id_or_name)
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| VolumeError::NotFound("volume", id_or_name.to_owned()))
    }

    /// Creates a volume of `size_bytes` (a multiple of 1 MiB; at least
    /// the source's size when there is one).
    pub async fn create(
        &self,
        project: &str,
        name: &str,
        size_bytes: i64,
        source: Source,
    ) -> Result<Volume, VolumeError> {
        check_name(name)?;
        check_size(size_bytes)?;
        if self.get(project, name).await.is_ok() {
            return Err(VolumeError::Exists("volume", name.to_owned()));
        }
        let id = new_id("vol");
        let tmp = self.volumes.join(format!("{id}.tmp"));
        let (src, label) = match &source {
            Source::Empty => (None, None),
            Source::Image(p) => (Some(p.clone()), Some(format!("image:{}", p.display()))),
            Source::Snapshot(s) => {
                let snap = self.snapshot(project, s).await?;
                (
                    Some(self.snapshot_path(&snap.id)),
                    Some(format!("snapshot:{}", snap.id)),
                )
            }
        };
        let tmp2 = tmp.clone();
        let res = tokio::task::spawn_blocking(move || -> io::Result<()> {
            match src {
                None => {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&tmp2)?;
                    f.set_len(size_bytes as u64)?;
                    f.sync_all()
                }
                Some(src) => {
                    let len = std::fs::metadata(&src)?.len();
                    if len > size_bytes as u64 {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("the source holds {len} bytes, more than the size"),
                        ));
                    }
                    clone_file(&src, &tmp2, &mut |_, _| {})?;
                    let f = std::fs::OpenOptions::new().write(true).open(&tmp2)?;
                    f.set_len(size_bytes as u64)?;
                    f.sync_all()
                }
            }
        })
        .await
        .map_err(|e| VolumeError::Io(io::Error::other(e)))?;
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            if e.kind() == io::ErrorKind::InvalidInput {
                return Err(VolumeError::Invalid(e.to_string()));
            }
            return Err(e.into());
        }
        std::fs::rename(&tmp, self.path(&id))?;
        let v = Volume {
            id,
            project_id: project.to_owned(),
            name: name.to_owned(),
            size_bytes,
            attached_to: None,
            source: label,
            created_at: now_ms(),
        };
        let r = sqlx::query(
            "INSERT INTO volumes (id, project_id, name, size_bytes, attached_to, source, created_at) \
             VALUES (?, ?, ?, ?, NULL, ?, ?)",
        )
        .bind(&v.id)
        .bind(&v.project_id)
        .bind(&v.name)
        .bind(v.size_bytes)
        .bind(&v.source)
        .bind(v.created_at)
        .execute(&self.pool)
        .await;
        if let Err(e) = r {
            let _ = std::fs::remove_file(self.path(&v.id));
            if let sqlx::Error::Database(d) = &e
                && d.is_unique_violation()
            {
                return Err(VolumeError::Exists("volume", name.to_owned()));
            }
            return Err(e.into());
        }
        Ok(v)
    }

    /// Grows a detached volume.
    pub async fn resize(
        &self,
        project: &str,
        id_or_name: &str,
        size_bytes: i64,
    ) -> Result<Volume, VolumeError> {
        check_size(size_bytes)?;
        let mut v = self.get(project, id_or_name).await?;
        if let Some(i) = &v.attached_to {
            return Err(VolumeError::Attached(v.id, i.clone()));
        }
        if size_bytes < v.size_bytes {
            return Err(VolumeError::Invalid(format!(
                "volumes only grow: {} is less than {}",
                size_bytes, v.size_bytes
            )));
        }
        let done =
            sqlx::query("UPDATE volumes SET size_bytes = ? WHERE id = ? AND attached_to IS NULL")
                .bind(size_bytes)
                .bind(&v.id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(VolumeError::Attached(v.id, "an instance".into()));
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path(&v.id))?;
        f.set_len(size_bytes as u64)?;
        f.sync_all()?;
        v.size_bytes = size_bytes;
        Ok(v)
    }

    /// Deletes a detached volume.
    pub async fn delete(&self, project: &str, id_or_name: &str) -> Result<(), VolumeError> {
        let v = self.get(project, id_or_name).await?;
        let done = sqlx::query("DELETE FROM volumes WHERE id = ? AND attached_to IS NULL")
            .bind(&v.id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(VolumeError::Attached(
                v.id,
                v.attached_to.unwrap_or_else(|| "an instance".into()),
            ));
        }
        let _ = std::fs::remove_file(self.path(&v.id));
        Ok(())
    }

    /// Marks a volume attached to `instance` (at most one); returns its
    /// raw file path for the VMM.
    pub async fn attach(
        &self,
        project: &str,
        id_or_name: &str,
        instance: &str,
    ) -> Result<PathBuf, VolumeError> {
        let v = self.get(project, id_or_name).await?;
        let done = sqlx::query(
            "UPDATE volumes SET attached_to = ? WHERE id = ? \
             AND (attached_to IS NULL OR attached_to = ?)",
        )
        .bind(instance)
        .bind(&v.id)
        .bind(instance)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(VolumeError::Attached(
                v.id,
                v.attached_to.unwrap_or_default(),
            ));
        }
        Ok(self.path(&v.id))
    }

    /// Detaches every volume attached to `instance`.
    pub async fn detach_all(&self, instance: &str) -> Result<u64, VolumeError> {
        Ok(
            sqlx::query("UPDATE volumes SET attached_to = NULL WHERE attached_to = ?")
                .bind(instance)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Takes a snapshot of a detached volume (or of an attached one when
    /// `vm_paused`: the caller paused and flushed the VM).
    pub async fn snapshot_volume(
        &self,
        project: &str,
        volume: &str,
        name: &str,
        vm_paused: bool,
        progress: Box<dyn FnMut(u64, u64) + Send>,
    ) -> Result<Snapshot, VolumeError> {
        check_name(name)?;
        let v = self.get(project, volume).await?;
        if let (Some(i), false) = (&v.attached_to, vm_paused) {
            return Err(VolumeError::Attached(v.id, i.clone()));
        }
        if self.snapshot(project, name).await.is_ok() {
            return Err(VolumeError::Exists("snapshot", name.to_owned()));
        }
        let id = new_id("snap");
        let tmp = self.snapshots.join(format!("{id}.tmp"));
        let src = self.path(&v.id);
        let tmp2 = tmp.clone();
        let mut progress = progress;
        let method = tokio::task::spawn_blocking(move || clone_file(&src, &tmp2, &mut progress))
            .await
            .map_err(|e| VolumeError::Io(io::Error::other(e)))?;
        let method = match method {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        std::fs::rename(&tmp, self.snapshot_path(&id))?;
        let s = Snapshot {
            id,
            project_id: project.to_owned(),
            name: name.to_owned(),
            volume_id: v.id,
            size_bytes: v.size_bytes,
            method: method.as_str().to_owned(),
            created_at: now_ms(),
        };
        let r = sqlx::query(
            "INSERT INTO volume_snapshots (id, project_id, name, volume_id, size_bytes, method, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.project_id)
        .bind(&s.name)
        .bind(&s.volume_id)
        .bind(s.size_bytes)
        .bind(&s.method)
        .bind(s.created_at)
        .execute(&self.pool)
        .await;
        if let Err(e) = r {
            let _ = std::fs::remove_file(self.snapshot_path(&s.id));
            return Err(e.into());
        }
        Ok(s)
    }

    /// The project's snapshots, by name.
    pub async fn snapshots(&self, project: &str) -> Result<Vec<Snapshot>, VolumeError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SNAPSHOT_COLS} FROM volume_snapshots WHERE project_id = ? ORDER BY name"
        )))
        .bind(project)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One of the project's snapshots, by id or name.
    pub async fn snapshot(&self, project: &str, id_or_name: &str) -> Result<Snapshot, VolumeError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SNAPSHOT_COLS} FROM volume_snapshots WHERE project_id = ? AND (id = ? OR name = ?)"
        )))
        .bind(project)
        .bind(id_or_name)
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| VolumeError::NotFound("snapshot", id_or_name.to_owned()))
    }

    /// Deletes a snapshot (volumes restored from it are independent).
    pub async fn delete_snapshot(
        &self,
        project: &str,
        id_or_name: &str,
    ) -> Result<(), VolumeError> {
        let s = self.snapshot(project, id_or_name).await?;
        sqlx::query("DELETE FROM volume_snapshots WHERE id = ?")
            .bind(&s.id)
            .execute(&self.pool)
            .await?;
        let _ = std::fs::remove_file(self.snapshot_path(&s.id));
        Ok(())
    }
}
