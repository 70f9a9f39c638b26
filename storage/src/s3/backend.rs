//! The S3 backend: object bytes in files named by random ids under
//! `DATA/objects/`, written through `DATA/tmp/` (fsync, rename), metadata
//! in SQLite. A crash leaves at worst a temporary file (removed at open)
//! or an unreferenced object file (also removed at open): a partial object
//! is never visible because its row is written only after the rename.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{S3, S3Error, S3Request, S3Response, S3Result, s3_error};
use sqlx::SqlitePool;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::now_ms;

/// The most buckets a project may own: called with the project id.
pub type BucketQuota =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Option<u64>> + Send>> + Send + Sync>;

/// S3 keys are at most 1024 bytes of UTF-8.
const MAX_KEY_LEN: usize = 1024;
/// Multipart parts other than the last are at least 5 MiB.
const MIN_PART_SIZE: i64 = 5 * 1024 * 1024;
const MAX_PARTS: i32 = 10_000;
const WRITE_BUF: usize = 1 << 20;
const READ_CHUNK: usize = 256 * 1024;

/// The `s3s::S3` implementation. Cloning shares the store (the control
/// plane's own writers, such as stream sinks, use [`Backend::put_bytes`]
/// and friends on a clone while s3s serves the original).
#[derive(Clone)]
pub struct Backend {
    pool: SqlitePool,
    tmp: PathBuf,
    objects: PathBuf,
    quota: Option<BucketQuota>,
}

fn internal<E: std::error::Error + Send + Sync + 'static>(e: E) -> S3Error {
    tracing::warn!("s3 backend: {e}");
    s3_error!(e, InternalError)
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// Whole seconds of a timestamp (HTTP dates have no finer resolution).
fn secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn check_key(key: &str) -> S3Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(s3_error!(KeyTooLongError));
    }
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "empty key"));
    }
    Ok(())
}

fn meta_to_json(m: &Option<Metadata>) -> Option<String> {
    m.as_ref()
        .filter(|m| !m.is_empty())
        .and_then(|m| serde_json::to_string(m).ok())
}

fn meta_from_json(s: &Option<String>) -> Option<Metadata> {
    s.as_deref().and_then(|s| serde_json::from_str(s).ok())
}

/// One object's row.
#[derive(sqlx::FromRow, Clone)]
struct ObjectRow {
    key: String,
    file: String,
    size: i64,
    etag: String,
    content_type: Option<String>,
    metadata: Option<String>,
    modified_ms: i64,
}

/// A file written and renamed into `objects/`.
struct Written {
    file: String,
    size: i64,
    md5: [u8; 16],
}

/// Removes a temporary file unless disarmed.
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A file region as a byte stream of known length.
struct FileStream {
    inner: tokio_util::io::ReaderStream<tokio::io::Take<tokio::fs::File>>,
    remaining: usize,
}

impl Stream for FileStream {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let p = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(b))) = &p {
            self.remaining = self.remaining.saturating_sub(b.len());
        }
        p
    }
}

impl ByteStream for FileStream {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(self.remaining)
    }
}

/// Listing state shared by ListObjects and ListObjectsV2.
struct Listing {
    objects: Vec<ObjectRow>,
    prefixes: Vec<String>,
    truncated: bool,
    last: Option<String>,
}

fn next_after_prefix(cp: &str) -> String {
    let mut s = cp.to_owned();
    s.push(char::MAX);
    s
}

impl Backend {
    /// Opens the store in `data_dir`: creates its directories, removes
    /// temporary files and object files no row refers to (what a crash
    /// mid-write leaves). The pool must have [`crate::migrate`] applied.
    pub async fn open(pool: SqlitePool, data_dir: &Path) -> Result<Backend, crate::StorageError> {
        let tmp = data_dir.join("tmp");
        let objects = data_dir.join("objects");
        tokio::fs::create_dir_all(&tmp).await?;
        tokio::fs::create_dir_all(&objects).await?;
        let mut rd = tokio::fs::read_dir(&tmp).await?;
        while let Some(e) = rd.next_entry().await? {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
        let referenced: std::collections::HashSet<String> = sqlx::query_scalar::<_, String>(
            "SELECT file FROM s3_objects UNION ALL SELECT file FROM s3_parts",
        )
        .fetch_all(&pool)
        .await?
        .into_iter()
        .collect();
        let mut rd = tokio::fs::read_dir(&objects).await?;
        while let Some(e) = rd.next_entry().await? {
            let name = e.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) {
                let _ = tokio::fs::remove_file(e.path()).await;
            }
        }
        Ok(Backend {
            pool,
            tmp,
            objects,
            quota: None,
        })
    }

    /// Limits the number of buckets per project.
    pub fn set_bucket_quota(&mut self, q: BucketQuota) {
        self.quota = Some(q);
    }

    async fn project_of<T>(&self, req: &S3Request<T>) -> S3Result<String> {
        self.project_of_parts(&req.credentials).await
    }

    /// Checks that `bucket` exists and belongs to `project`.
    async fn check_bucket(&self, project: &str, bucket: &str) -> S3Result<()> {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT project_id FROM s3_buckets WHERE name = ?")
                .bind(bucket)
                .fetch_optional(&self.pool)
                .await
                .map_err(internal)?;
        match owner {
            None => Err(s3_error!(NoSuchBucket)),
            Some(p) if p != project => Err(s3_error!(AccessDenied)),
            Some(_) => Ok(()),
        }
    }

    /// A write transaction (`BEGIN IMMEDIATE`: writers queue at the start
    /// rather than fail at commit).
    async fn write_tx(&self) -> S3Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(internal)
    }

    async fn authorize<T>(&self, req: &S3Request<T>, bucket: &str) -> S3Result<String> {
        let project = self.project_of(req).await?;
        self.check_bucket(&project, bucket).await?;
        Ok(project)
    }

    async fn get_row(&self, bucket: &str, key: &str) -> S3Result<Option<ObjectRow>> {
        sqlx::query_as(
            "SELECT key, file, size, etag, content_type, metadata, modified_ms \
             FROM s3_objects WHERE bucket = ? AND key = ?",
        )
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)
    }

    fn object_path(&self, file: &str) -> PathBuf {
        self.objects.join(file)
    }

    /// Streams `body` into a temporary file, fsyncs it and renames it into
    /// `objects/`.
    async fn write_body(&self, body: Option<StreamingBlob>) -> S3Result<Written> {
        let id = new_id();
        let tmp_path = self.tmp.join(&id);
        let mut guard = TmpGuard(Some(tmp_path.clone()));
        let file = tokio::fs::File::create(&tmp_path).await.map_err(internal)?;
        let mut w = tokio::io::BufWriter::with_capacity(WRITE_BUF, file);
        let mut md5 = Md5::new();
        let mut size: i64 = 0;
        if let Some(mut body) = body {
            while let Some(chunk) = body.next().await {
                let chunk = chunk
                    .map_err(|e| s3_error!(IncompleteBody, "reading the request body: {e}"))?;
                md5.update(&chunk);
                size += chunk.len() as i64;
                w.write_all(&chunk).await.map_err(internal)?;
            }
        }
        w.flush().await.map_err(internal)?;
        let file = w.into_inner();
        file.sync_data().await.map_err(internal)?;
        drop(file);
        self.commit_tmp(&tmp_path, &id).await?;
        guard.0 = None;
        Ok(Written {
            file: id,
            size,
            md5: md5.finalize().into(),
        })
    }

    /// Renames a synced temporary file into `objects/` and syncs the
    /// directory.
    async fn commit_tmp(&self, tmp_path: &Path, id: &str) -> S3Result<()> {
        let dst = self.object_path(id);
        tokio::fs::rename(tmp_path, &dst).await.map_err(internal)?;
        let dir = self.objects.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(dir).and_then(|d| d.sync_all()))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        Ok(())
    }

    fn remove_files(&self, files: Vec<String>) {
        for f in files {
            let _ = std::fs::remove_file(self.object_path(&f));
        }
    }

    /// Inserts or replaces an object's row; removes the file it replaced.
    async fn put_row(&self, bucket: &str, row: &ObjectRow) -> S3Result<()> {
        let mut tx = self.write_tx().await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT file FROM s3_objects WHERE bucket = ? AND key = ?")
                .bind(bucket)
                .bind(&row.key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(internal)?;
        sqlx::query(
            "INSERT OR REPLACE INTO s3_objects \
             (bucket, key, file, size, etag, content_type, metadata, modified_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(bucket)
        .bind(&row.key)
        .bind(&row.file)
        .bind(row.size)
        .bind(&row.etag)
        .bind(&row.content_type)
        .bind(&row.metadata)
        .bind(row.modified_ms)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        if let Some(old) = old.filter(|o| *o != row.file) {
            self.remove_files(vec![old]);
        }
        Ok(())
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> S3Result<Listing> {
        let mut out = Listing {
            objects: Vec::new(),
            prefixes: Vec::new(),
            truncated: false,
            last: None,
        };
        let (mut cursor, mut inclusive) = match after {
            Some(a) if a >= prefix => (a.to_owned(), false),
            _ => (prefix.to_owned(), true),
        };
        let delimiter = delimiter.filter(|d| !d.is_empty());
        // Resuming after a common prefix: its keys were rolled up already.
        if let (Some(d), Some(a)) = (delimiter, after)
            && a.len() >= prefix.len()
            && a.starts_with(prefix)
            && let Some(i) = a[prefix.len()..].find(d)
        {
            cursor = next_after_prefix(&a[..prefix.len() + i + d.len()]);
            inclusive = false;
        }
        let batch = 1000.min(max + 1).max(1) as i64;
        'outer: loop {
            let sql = if inclusive {
                "SELECT key, file, size, etag, content_type, metadata, modified_ms FROM s3_objects \
                 WHERE bucket = ? AND key >= ? ORDER BY key LIMIT ?"
            } else {
                "SELECT key, file, size, etag, content_type, metadata, modified_ms FROM s3_objects \
                 WHERE bucket = ? AND key > ? ORDER BY key LIMIT ?"
            };
            let rows: Vec<ObjectRow> = sqlx::query_as(sql)
                .bind(bucket)
                .bind(&cursor)
                .bind(batch)
                .fetch_all(&self.pool)
                .await
                .map_err(internal)?;
            let n = rows.len() as i64;
            for row in rows {
                if !row.key.starts_with(prefix) {
                    break 'outer;
                }
                cursor.clone_from(&row.key);
                inclusive = false;
                if let Some(d) = delimiter
                    && let Some(i) = row.key[prefix.len()..].find(d)
                {
                    let cp = row.key[..prefix.len() + i + d.len()].to_owned();
                    if out.prefixes.last() == Some(&cp) {
                        continue;
                    }
                    if out.objects.len() + out.prefixes.len() >= max {
                        out.truncated = true;
                        break 'outer;
                    }
                    cursor = next_after_prefix(&cp);
                    out.last = Some(cp.clone());
                    out.prefixes.push(cp);
                    continue 'outer;
                }
                if out.objects.len() + out.prefixes.len() >= max {
                    out.truncated = true;
                    break 'outer;
                }
                out.last = Some(row.key.clone());
                out.objects.push(row);
            }
            if n < batch {
                break;
            }
        }
        Ok(out)
    }

    /// Evaluates If-Match / If-None-Match / If-(Un)Modified-Since for
    /// GET and HEAD (RFC 7232 order, as S3 does).
    fn check_conditions(
        row: &ObjectRow,
        if_match: &Option<ETagCondition>,
        if_none_match: &Option<ETagCondition>,
        if_modified_since: &Option<Timestamp>,
        if_unmodified_since: &Option<Timestamp>,
    ) -> S3Result<()> {
        let etag = ETag::Strong(row.etag.clone());
        let modified = row.modified_ms.div_euclid(1000);
        if let Some(c) = if_match {
            let ok = match c {
                ETagCondition::Any => true,
                ETagCondition::ETag(e) => etag.strong_cmp(e),
            };
            if !ok {
                return Err(s3_error!(PreconditionFailed));
            }
        } else if let Some(t) = if_unmodified_since
            && modified > secs(t)
        {
            return Err(s3_error!(PreconditionFailed));
        }
        if let Some(c) = if_none_match {
            let matches = match c {
                ETagCondition::Any => true,
                ETagCondition::ETag(e) => etag.weak_cmp(e),
            };
            if matches {
                return Err(s3_error!(NotModified));
            }
        } else if let Some(t) = if_modified_since
            && modified <= secs(t)
        {
            return Err(s3_error!(NotModified));
        }
        Ok(())
    }

    async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> S3Result<UploadRow> {
        let row: Option<UploadRow> = sqlx::query_as(
            "SELECT upload_id, key, content_type, metadata, initiated_ms FROM s3_uploads \
             WHERE upload_id = ? AND bucket = ? AND key = ?",
        )
        .bind(upload_id)
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        row.ok_or_else(|| s3_error!(NoSuchUpload))
    }

    /// Copies an object file into a new synced object file.
    async fn copy_file(&self, src_file: &str) -> S3Result<String> {
        let id = new_id();
        let tmp_path = self.tmp.join(&id);
        let mut guard = TmpGuard(Some(tmp_path.clone()));
        let src = self.object_path(src_file);
        let dst = tmp_path.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut r = std::fs::File::open(src)?;
            let mut w = std::fs::File::create(&dst)?;
            io::copy(&mut r, &mut w)?;
            w.sync_data()
        })
        .await
        .map_err(internal)?
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                s3_error!(NoSuchKey)
            } else {
                internal(e)
            }
        })?;
        self.commit_tmp(&tmp_path, &id).await?;
        guard.0 = None;
        Ok(id)
    }
}

#[derive(sqlx::FromRow)]
struct UploadRow {
    upload_id: String,
    key: String,
    content_type: Option<String>,
    metadata: Option<String>,
    initiated_ms: i64,
}

#[derive(sqlx::FromRow)]
struct PartRow {
    part_number: i64,
    file: String,
    size: i64,
    etag: String,
    modified_ms: i64,
}

/// A bucket as the control plane lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BucketInfo {
    /// Name.
    pub name: String,
    /// Creation time (ms since the epoch).
    pub created_at: i64,
    /// Objects in it.
    pub objects: i64,
    /// Bytes stored.
    pub bytes: i64,
}

/// An object as the control plane lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectInfo {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: i64,
    /// MD5 ETag (hex).
    pub etag: String,
    /// Last modified (ms since the epoch).
    pub modified_ms: i64,
}

/// Control-plane access to the store, scoped by project the same way S3
/// requests are (a bucket of another project is `AccessDenied`).
impl Backend {
    /// Creates `bucket` for `project` (bucket quota applies).
    pub async fn create_bucket_for(&self, project: &str, bucket: &str) -> S3Result<()> {
        check_bucket_name(bucket)?;
        self.insert_bucket(project, bucket).await
    }

    /// The project's buckets with their object counts and sizes.
    pub async fn buckets_of(&self, project: &str) -> S3Result<Vec<BucketInfo>> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT b.name, b.created_at, COUNT(o.key), COALESCE(SUM(o.size), 0) \
             FROM s3_buckets b LEFT JOIN s3_objects o ON o.bucket = b.name \
             WHERE b.project_id = ? GROUP BY b.name ORDER BY b.name",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        Ok(rows
            .into_iter()
            .map(|(name, created_at, objects, bytes)| BucketInfo {
                name,
                created_at,
                objects,
                bytes,
            })
            .collect())
    }

    /// Up to `max` objects of `bucket` whose keys start with `prefix`, in
    /// key order, after `after` when given.
    pub async fn objects_of(
        &self,
        project: &str,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> S3Result<(Vec<ObjectInfo>, bool)> {
        self.check_bucket(project, bucket).await?;
        let l = self.list(bucket, prefix, None, after, max).await?;
        let objects = l
            .objects
            .into_iter()
            .map(|r| ObjectInfo {
                key: r.key,
                size: r.size,
                etag: r.etag,
                modified_ms: r.modified_ms,
            })
            .collect();
        Ok((objects, l.truncated))
    }

    /// Reads a whole object of at most `max_bytes`.
    pub async fn get_bytes(
        &self,
        project: &str,
        bucket: &str,
        key: &str,
        max_bytes: u64,
    ) -> S3Result<Bytes> {
        check_key(key)?;
        self.check_bucket(project, bucket).await?;
        let row = self
            .get_row(bucket, key)
            .await?
            .ok_or_else(|| s3_error!(NoSuchKey))?;
        if row.size as u64 > max_bytes {
            return Err(s3_error!(
                InvalidRange,
                "the object is {} bytes; this API reads at most {max_bytes} (use S3)",
                row.size
            ));
        }
        let data = tokio::fs::read(self.object_path(&row.file))
            .await
            .map_err(internal)?;
        Ok(Bytes::from(data))
    }

    /// Writes a whole object durably (file fsynced and renamed, then its
    /// row), replacing any object with the same key; answers the ETag.
    pub async fn put_bytes(
        &self,
        project: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: Option<String>,
    ) -> S3Result<String> {
        check_key(key)?;
        self.check_bucket(project, bucket).await?;
        let blob = StreamingBlob::wrap(futures::stream::iter([Ok::<_, io::Error>(body)]));
        let w = self.write_body(Some(blob)).await?;
        let etag = hex::encode(w.md5);
        let row = ObjectRow {
            key: key.to_owned(),
            file: w.file,
            size: w.size,
            etag: etag.clone(),
            content_type,
            metadata: None,
            modified_ms: now_ms(),
        };
        if let Err(e) = self.put_row(bucket, &row).await {
            self.remove_files(vec![row.file]);
            return Err(e);
        }
        Ok(etag)
    }

    /// Inserts a bucket row for `project` unless the name is taken or the
    /// project's bucket quota is used up.
    async fn insert_bucket(&self, project: &str, bucket: &str) -> S3Result<()> {
        let mut tx = self.write_tx().await?;
        let owner: Option<String> =
            sqlx::query_scalar("SELECT project_id FROM s3_buckets WHERE name = ?")
                .bind(bucket)
                .fetch_optional(&mut *tx)
                .await
                .map_err(internal)?;
        match owner {
            Some(p) if p == project => return Err(s3_error!(BucketAlreadyOwnedByYou)),
            Some(_) => return Err(s3_error!(BucketAlreadyExists)),
            None => {}
        }
        if let Some(q) = &self.quota
            && let Some(max) = q(project.to_owned()).await
        {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM s3_buckets WHERE project_id = ?")
                .bind(project)
                .fetch_one(&mut *tx)
                .await
                .map_err(internal)?;
            if n as u64 >= max {
                return Err(s3_error!(
                    TooManyBuckets,
                    "the project's quota allows {max} buckets"
                ));
            }
        }
        sqlx::query("INSERT INTO s3_buckets (name, project_id, created_at) VALUES (?, ?, ?)")
            .bind(bucket)
            .bind(project)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(())
    }
}

/// S3's bucket naming rules (3–63 of `a-z 0-9 . -`, starting and ending
/// with a letter or digit), which s3s checks for S3 requests; the control
/// plane's own API checks them here.
fn check_bucket_name(b: &str) -> S3Result<()> {
    let ok = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
        && !b.contains("..");
    if ok {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidBucketName,
            "bucket names are 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit"
        ))
    }
}

/// Refuses with `NoSuchUpload` when the upload was completed or aborted
/// meanwhile (checked inside the writer's transaction).
async fn upload_still_open(tx: &mut sqlx::SqliteConnection, upload_id: &str) -> S3Result<()> {
    let still: Option<i64> = sqlx::query_scalar("SELECT 1 FROM s3_uploads WHERE upload_id = ?")
        .bind(upload_id)
        .fetch_optional(tx)
        .await
        .map_err(internal)?;
    if still.is_none() {
        return Err(s3_error!(NoSuchUpload));
    }
    Ok(())
}

fn hex_token(s: &str) -> String {
    hex::encode(s.as_bytes())
}

fn unhex_token(s: &str) -> S3Result<String> {
    hex::decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "invalid continuation token"))
}

fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(1000),
        Some(m) if m < 0 => Err(s3_error!(InvalidArgument, "max-keys must be >= 0")),
        Some(m) => Ok((m as usize).min(1000)),
    }
}

fn to_object(r: ObjectRow) -> Object {
    Object {
        key: Some(r.key),
        size: Some(r.size),
        e_tag: Some(ETag::Strong(r.etag)),
        last_modified: Some(ts(r.modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

fn to_prefixes(p: Vec<String>) -> Option<CommonPrefixList> {
    Some(
        p.into_iter()
            .map(|p| CommonPrefix { prefix: Some(p) })
            .collect(),
    )
}

fn content_range(start: u64, end: u64, size: u64) -> String {
    format!("bytes {start}-{}/{size}", end - 1)
}

#[async_trait::async_trait]
impl S3 for Backend {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let project = self.project_of(&req).await?;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT name, created_at FROM s3_buckets WHERE project_id = ? ORDER BY name",
        )
        .bind(&project)
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        let buckets = rows
            .into_iter()
            .map(|(name, at)| Bucket {
                name: Some(name),
                creation_date: Some(ts(at)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                id: Some(project.clone()),
                display_name: Some(project),
            }),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let project = self.project_of(&req).await?;
        let bucket = req.input.bucket;
        self.insert_bucket(&project, &bucket).await?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.authorize(&req, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some("us-east-1".to_owned()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.authorize(&req, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = &req.input.bucket;
        self.authorize(&req, bucket).await?;
        let mut tx = self.write_tx().await?;
        let any: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM s3_objects WHERE bucket = ? LIMIT 1")
                .bind(bucket)
                .fetch_optional(&mut *tx)
                .await
                .map_err(internal)?;
        if any.is_some() {
            return Err(s3_error!(BucketNotEmpty));
        }
        let part_files: Vec<String> = sqlx::query_scalar(
            "SELECT p.file FROM s3_parts p JOIN s3_uploads u ON u.upload_id = p.upload_id \
             WHERE u.bucket = ?",
        )
        .bind(bucket)
        .fetch_all(&mut *tx)
        .await
        .map_err(internal)?;
        sqlx::query(
            "DELETE FROM s3_parts WHERE upload_id IN (SELECT upload_id FROM s3_uploads WHERE bucket = ?)",
        )
        .bind(bucket)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        sqlx::query("DELETE FROM s3_uploads WHERE bucket = ?")
            .bind(bucket)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        sqlx::query("DELETE FROM s3_buckets WHERE name = ?")
            .bind(bucket)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        self.remove_files(part_files);
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let project = self.project_of_parts(&req.credentials).await?;
        self.check_bucket(&project, &input.bucket).await?;
        if let Some(ETagCondition::Any) = input.if_none_match
            && self.get_row(&input.bucket, &input.key).await?.is_some()
        {
            return Err(s3_error!(PreconditionFailed));
        }
        let w = self.write_body(input.body).await?;
        let etag = hex::encode(w.md5);
        let row = ObjectRow {
            key: input.key,
            file: w.file,
            size: w.size,
            etag: etag.clone(),
            content_type: input.content_type,
            metadata: meta_to_json(&input.metadata),
            modified_ms: now_ms(),
        };
        if let Err(e) = self.put_row(&input.bucket, &row).await {
            self.remove_files(vec![row.file]);
            return Err(e);
        }
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = &req.input;
        check_key(&input.key)?;
        self.authorize(&req, &input.bucket).await?;
        // The file of a row may be replaced (and unlinked) between reading
        // the row and opening it: read the row again then.
        let mut tries = 0;
        let (row, mut file) = loop {
            let Some(row) = self.get_row(&input.bucket, &input.key).await? else {
                return Err(s3_error!(NoSuchKey));
            };
            match tokio::fs::File::open(self.object_path(&row.file)).await {
                Ok(f) => break (row, f),
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
                Err(e) => return Err(internal(e)),
            }
        };
        Self::check_conditions(
            &row,
            &input.if_match,
            &input.if_none_match,
            &input.if_modified_since,
            &input.if_unmodified_since,
        )?;
        let size = row.size as u64;
        let (start, end, range) = match &input.range {
            None => (0, size, None),
            Some(r) => {
                let r = r.check(size)?;
                (r.start, r.end, Some(content_range(r.start, r.end, size)))
            }
        };
        if start > 0 {
            file.seek(io::SeekFrom::Start(start))
                .await
                .map_err(internal)?;
        }
        let len = end - start;
        let stream = FileStream {
            inner: tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_CHUNK),
            remaining: len as usize,
        };
        let out = GetObjectOutput {
            body: Some(StreamingBlob::new(StreamWrap(stream))),
            content_length: Some(len as i64),
            content_range: range,
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(ETag::Strong(row.etag.clone())),
            last_modified: Some(ts(row.modified_ms)),
            content_type: input
                .response_content_type
                .clone()
                .or(row.content_type.clone()),
            metadata: meta_from_json(&row.metadata),
            parts_count: part_count(&row.etag),
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = &req.input;
        check_key(&input.key)?;
        self.authorize(&req, &input.bucket).await?;
        let Some(row) = self.get_row(&input.bucket, &input.key).await? else {
            return Err(s3_error!(NoSuchKey));
        };
        Self::check_conditions(
            &row,
            &input.if_match,
            &input.if_none_match,
            &input.if_modified_since,
            &input.if_unmodified_since,
        )?;
        let size = row.size as u64;
        let (len, range) = match &input.range {
            None => (size, None),
            Some(r) => {
                let r = r.check(size)?;
                (r.end - r.start, Some(content_range(r.start, r.end, size)))
            }
        };
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(len as i64),
            content_range: range,
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(ETag::Strong(row.etag.clone())),
            last_modified: Some(ts(row.modified_ms)),
            content_type: row.content_type.clone(),
            metadata: meta_from_json(&row.metadata),
            parts_count: part_count(&row.etag),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = &req.input;
        check_key(&input.key)?;
        self.authorize(&req, &input.bucket).await?;
        let file: Option<String> = sqlx::query_scalar(
            "DELETE FROM s3_objects WHERE bucket = ? AND key = ? RETURNING file",
        )
        .bind(&input.bucket)
        .bind(&input.key)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        self.remove_files(file.into_iter().collect());
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.authorize(&req, &req.input.bucket).await?;
        let input = req.input;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "at most 1000 keys per request"));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        let mut files = Vec::new();
        let mut tx = self.write_tx().await?;
        for o in input.delete.objects {
            if let Err(e) = check_key(&o.key) {
                errors.push(Error {
                    code: Some(e.code().as_str().to_owned()),
                    key: Some(o.key),
                    message: e.message().map(str::to_owned),
                    version_id: None,
                });
                continue;
            }
            let file: Option<String> = sqlx::query_scalar(
                "DELETE FROM s3_objects WHERE bucket = ? AND key = ? RETURNING file",
            )
            .bind(&input.bucket)
            .bind(&o.key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?;
            files.extend(file);
            if !quiet {
                deleted.push(DeletedObject {
                    key: Some(o.key),
                    ..Default::default()
                });
            }
        }
        tx.commit().await.map_err(internal)?;
        self.remove_files(files);
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = &req.input;
        self.authorize(&req, &input.bucket).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_keys)?;
        let l = self
            .list(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                input.marker.as_deref(),
                max,
            )
            .await?;
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket.clone()),
            prefix: Some(prefix),
            marker: input.marker.clone(),
            max_keys: Some(max as i32),
            is_truncated: Some(l.truncated),
            next_marker: if l.truncated { l.last } else { None },
            contents: Some(l.objects.into_iter().map(to_object).collect()),
            common_prefixes: to_prefixes(l.prefixes),
            delimiter: input.delimiter.clone(),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = &req.input;
        self.authorize(&req, &input.bucket).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_keys)?;
        let after = match &input.continuation_token {
            Some(t) => Some(unhex_token(t)?),
            None => input.start_after.clone(),
        };
        let l = self
            .list(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                after.as_deref(),
                max,
            )
            .await?;
        let key_count = (l.objects.len() + l.prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket.clone()),
            prefix: Some(prefix),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token.clone(),
            is_truncated: Some(l.truncated),
            next_continuation_token: if l.truncated {
                l.last.as_deref().map(hex_token)
            } else {
                None
            },
            contents: Some(l.objects.into_iter().map(to_object).collect()),
            common_prefixes: to_prefixes(l.prefixes),
            delimiter: input.delimiter.clone(),
            encoding_type: input.encoding_type.clone(),
            start_after: input.start_after.clone(),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = &req.input;
        check_key(&input.key)?;
        let project = self.authorize(&req, &input.bucket).await?;
        let (src_bucket, src_key) = match &input.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => return Err(s3_error!(NotImplemented)),
        };
        check_key(&src_key)?;
        self.check_bucket(&project, &src_bucket).await?;
        let Some(src) = self.get_row(&src_bucket, &src_key).await? else {
            return Err(s3_error!(NoSuchKey));
        };
        let cond = Self::check_conditions(
            &src,
            &input.copy_source_if_match,
            &input.copy_source_if_none_match,
            &input.copy_source_if_modified_since,
            &input.copy_source_if_unmodified_since,
        );
        if let Err(e) = cond {
            // For copies, every failed condition is a 412.
            if *e.code() == s3s::S3ErrorCode::NotModified {
                return Err(s3_error!(PreconditionFailed));
            }
            return Err(e);
        }
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if src_bucket == input.bucket && src_key == input.key && !replace {
            return Err(s3_error!(
                InvalidRequest,
                "copying an object onto itself needs a REPLACE metadata directive"
            ));
        }
        let file = self.copy_file(&src.file).await?;
        let (content_type, metadata) = if replace {
            (input.content_type.clone(), meta_to_json(&input.metadata))
        } else {
            (src.content_type.clone(), src.metadata.clone())
        };
        let row = ObjectRow {
            key: input.key.clone(),
            file,
            size: src.size,
            etag: src.etag.clone(),
            content_type,
            metadata,
            modified_ms: now_ms(),
        };
        if let Err(e) = self.put_row(&input.bucket, &row).await {
            self.remove_files(vec![row.file]);
            return Err(e);
        }
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(row.etag)),
                last_modified: Some(ts(row.modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = &req.input;
        check_key(&input.key)?;
        self.authorize(&req, &input.bucket).await?;
        let upload_id = new_id();
        sqlx::query(
            "INSERT INTO s3_uploads (upload_id, bucket, key, content_type, metadata, initiated_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&upload_id)
        .bind(&input.bucket)
        .bind(&input.key)
        .bind(&input.content_type)
        .bind(meta_to_json(&input.metadata))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let project = self.project_of_parts(&req.credentials).await?;
        self.check_bucket(&project, &input.bucket).await?;
        if !(1..=MAX_PARTS).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "part numbers are 1 to 10000"));
        }
        self.upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let w = self.write_body(input.body).await?;
        let etag = hex::encode(w.md5);
        let mut tx = self.write_tx().await?;
        let res: S3Result<Option<String>> = async {
            upload_still_open(&mut tx, &input.upload_id).await?;
            let old: Option<String> = sqlx::query_scalar(
                "SELECT file FROM s3_parts WHERE upload_id = ? AND part_number = ?",
            )
            .bind(&input.upload_id)
            .bind(input.part_number)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?;
            sqlx::query(
                "INSERT OR REPLACE INTO s3_parts (upload_id, part_number, file, size, etag, modified_ms) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&input.upload_id)
            .bind(input.part_number)
            .bind(&w.file)
            .bind(w.size)
            .bind(&etag)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
            Ok(old)
        }
        .await;
        let res = match res {
            Ok(old) => tx.commit().await.map_err(internal).map(|()| old),
            Err(e) => Err(e),
        };
        match res {
            Ok(old) => self.remove_files(old.into_iter().collect()),
            Err(e) => {
                self.remove_files(vec![w.file]);
                return Err(e);
            }
        }
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = &req.input;
        check_key(&input.key)?;
        self.authorize(&req, &input.bucket).await?;
        let upload = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let wanted = input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.clone())
            .unwrap_or_default();
        if wanted.is_empty() {
            return Err(s3_error!(MalformedXML, "no parts"));
        }
        let parts: Vec<PartRow> = sqlx::query_as(
            "SELECT part_number, file, size, etag, modified_ms FROM s3_parts WHERE upload_id = ? \
             ORDER BY part_number",
        )
        .bind(&input.upload_id)
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        let by_number: HashMap<i64, &PartRow> = parts.iter().map(|p| (p.part_number, p)).collect();
        let mut chosen: Vec<&PartRow> = Vec::with_capacity(wanted.len());
        let mut last = 0;
        for (i, w) in wanted.iter().enumerate() {
            let n = w.part_number.unwrap_or(0);
            if n <= last {
                return Err(s3_error!(InvalidPartOrder));
            }
            last = n;
            let Some(p) = by_number.get(&i64::from(n)) else {
                return Err(s3_error!(InvalidPart, "part {n} was not uploaded"));
            };
            if let Some(e) = &w.e_tag
                && e.value().trim_matches('"') != p.etag
            {
                return Err(s3_error!(InvalidPart, "part {n} has another ETag"));
            }
            if i + 1 < wanted.len() && p.size < MIN_PART_SIZE {
                return Err(s3_error!(EntityTooSmall));
            }
            chosen.push(p);
        }
        // Concatenate the parts into one new object file.
        let id = new_id();
        let tmp_path = self.tmp.join(&id);
        let mut guard = TmpGuard(Some(tmp_path.clone()));
        let srcs: Vec<PathBuf> = chosen.iter().map(|p| self.object_path(&p.file)).collect();
        let dst = tmp_path.clone();
        let size = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            let mut w = std::fs::File::create(&dst)?;
            let mut n = 0;
            for s in srcs {
                let mut r = std::fs::File::open(s)?;
                n += io::copy(&mut r, &mut w)?;
            }
            w.sync_data()?;
            Ok(n)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        self.commit_tmp(&tmp_path, &id).await?;
        guard.0 = None;
        let mut md5 = Md5::new();
        for p in &chosen {
            let mut b = [0u8; 16];
            hex::decode_to_slice(&p.etag, &mut b).map_err(internal)?;
            md5.update(b);
        }
        let etag = format!("{}-{}", hex::encode(md5.finalize()), chosen.len());
        let row = ObjectRow {
            key: input.key.clone(),
            file: id,
            size: size as i64,
            etag: etag.clone(),
            content_type: upload.content_type.clone(),
            metadata: upload.metadata.clone(),
            modified_ms: now_ms(),
        };
        // One transaction: the object appears and the upload disappears.
        let mut tx = self.write_tx().await?;
        let res: S3Result<Option<String>> = async {
            upload_still_open(&mut tx, &upload.upload_id).await?;
            let old: Option<String> =
                sqlx::query_scalar("SELECT file FROM s3_objects WHERE bucket = ? AND key = ?")
                    .bind(&input.bucket)
                    .bind(&row.key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(internal)?;
            sqlx::query(
                "INSERT OR REPLACE INTO s3_objects \
                 (bucket, key, file, size, etag, content_type, metadata, modified_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&input.bucket)
            .bind(&row.key)
            .bind(&row.file)
            .bind(row.size)
            .bind(&row.etag)
            .bind(&row.content_type)
            .bind(&row.metadata)
            .bind(row.modified_ms)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
            sqlx::query("DELETE FROM s3_parts WHERE upload_id = ?")
                .bind(&upload.upload_id)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
            sqlx::query("DELETE FROM s3_uploads WHERE upload_id = ?")
                .bind(&upload.upload_id)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
            Ok(old)
        }
        .await;
        let res = match res {
            Ok(old) => tx.commit().await.map_err(internal).map(|()| old),
            Err(e) => Err(e),
        };
        match res {
            Ok(old) => {
                let mut files: Vec<String> = parts.iter().map(|p| p.file.clone()).collect();
                files.extend(old);
                self.remove_files(files);
            }
            Err(e) => {
                self.remove_files(vec![row.file]);
                return Err(e);
            }
        }
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = &req.input;
        self.authorize(&req, &input.bucket).await?;
        self.upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let mut tx = self.write_tx().await?;
        let files: Vec<String> =
            sqlx::query_scalar("DELETE FROM s3_parts WHERE upload_id = ? RETURNING file")
                .bind(&input.upload_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(internal)?;
        sqlx::query("DELETE FROM s3_uploads WHERE upload_id = ?")
            .bind(&input.upload_id)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        self.remove_files(files);
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = &req.input;
        self.authorize(&req, &input.bucket).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_uploads)?;
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let rows: Vec<UploadRow> = sqlx::query_as(
            "SELECT upload_id, key, content_type, metadata, initiated_ms FROM s3_uploads \
             WHERE bucket = ? AND substr(key, 1, length(?)) = ? AND (key > ? OR (key = ? AND upload_id > ?)) \
             ORDER BY key, upload_id LIMIT ?",
        )
        .bind(&input.bucket)
        .bind(&prefix)
        .bind(&prefix)
        .bind(&key_marker)
        .bind(&key_marker)
        .bind(&id_marker)
        .bind(max as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        let truncated = rows.len() > max;
        let rows: Vec<UploadRow> = rows.into_iter().take(max).collect();
        let (next_key, next_id) = match rows.last() {
            Some(r) if truncated => (Some(r.key.clone()), Some(r.upload_id.clone())),
            _ => (None, None),
        };
        let uploads = rows
            .into_iter()
            .map(|r| MultipartUpload {
                key: Some(r.key),
                upload_id: Some(r.upload_id),
                initiated: Some(ts(r.initiated_ms)),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket.clone()),
            prefix: Some(prefix),
            key_marker: input.key_marker.clone(),
            upload_id_marker: input.upload_id_marker.clone(),
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(uploads),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = &req.input;
        self.authorize(&req, &input.bucket).await?;
        self.upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let max = max_keys(input.max_parts)?;
        let marker = input.part_number_marker.unwrap_or(0);
        let rows: Vec<PartRow> = sqlx::query_as(
            "SELECT part_number, file, size, etag, modified_ms FROM s3_parts \
             WHERE upload_id = ? AND part_number > ? ORDER BY part_number LIMIT ?",
        )
        .bind(&input.upload_id)
        .bind(marker)
        .bind(max as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        let truncated = rows.len() > max;
        let rows: Vec<PartRow> = rows.into_iter().take(max).collect();
        let next = rows
            .last()
            .filter(|_| truncated)
            .map(|p| p.part_number as i32);
        let parts = rows
            .into_iter()
            .map(|p| Part {
                part_number: Some(p.part_number as i32),
                size: Some(p.size),
                e_tag: Some(ETag::Strong(p.etag)),
                last_modified: Some(ts(p.modified_ms)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            upload_id: Some(input.upload_id.clone()),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            parts: Some(parts),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        }))
    }
}

impl Backend {
    async fn project_of_parts(&self, c: &Option<s3s::auth::Credentials>) -> S3Result<String> {
        let Some(c) = c else {
            return Err(s3_error!(AccessDenied));
        };
        match crate::keys::lookup(&self.pool, &c.access_key).await {
            Ok(Some((_, project))) => Ok(project),
            Ok(None) => Err(s3_error!(InvalidAccessKeyId)),
            Err(e) => Err(internal(e)),
        }
    }
}

fn part_count(etag: &str) -> Option<i32> {
    etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

/// Adapts [`FileStream`] (io errors) to the boxed-error stream `s3s` takes.
struct StreamWrap(FileStream);

impl Stream for StreamWrap {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|o| o.map(|r| r.map_err(|e| Box::new(e) as s3s::StdError)))
    }
}

impl ByteStream for StreamWrap {
    fn remaining_length(&self) -> RemainingLength {
        self.0.remaining_length()
    }
}
