//! The S3-compatible endpoint: an `s3s` service over [`Backend`], with
//! SigV4 (header and presigned) auth against the `s3_keys` table, served
//! by hyper on its own port, path-style and virtual-host-style
//! (`BUCKET.localhost:PORT`, or `BUCKET.<domain>` for a configured domain).

mod backend;
pub mod usage;

pub use backend::{Backend, BucketInfo, BucketQuota, ObjectInfo};

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::S3Result;
use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::s3_error;
use s3s::service::S3ServiceBuilder;
use sqlx::SqlitePool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::StorageError;

/// Looks up SigV4 secrets in the `s3_keys` table.
pub struct KeyAuth {
    pool: SqlitePool,
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match crate::keys::lookup(&self.pool, access_key).await {
            Ok(Some((secret, _))) => Ok(SecretKey::from(secret)),
            Ok(None) => Err(s3_error!(InvalidAccessKeyId)),
            Err(e) => Err(s3_error!(e, InternalError)),
        }
    }
}

/// Virtual-host parsing: `BUCKET.<domain>[:port]` names a bucket; any
/// other host (an IP address, the bare domain) is path-style.
pub struct Hosts {
    domain: String,
}

impl S3Host for Hosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = if host.starts_with('[') {
            host // an IPv6 literal: path-style
        } else {
            host.rsplit_once(':').map_or(host, |(h, _)| h)
        };
        if let Some(bucket) = name
            .strip_suffix(self.domain.as_str())
            .and_then(|h| h.strip_suffix('.'))
            .filter(|b| !b.is_empty())
        {
            return Ok(VirtualHost::new(&self.domain[..]).with_bucket(bucket));
        }
        Ok(VirtualHost::new(host))
    }
}

/// Options of the S3 server beyond its address, pool and directory.
#[derive(Clone)]
pub struct Options {
    /// The base domain of virtual-host-style requests (`localhost`).
    pub domain: String,
    /// The most buckets a project may own, if limited.
    pub max_buckets: Option<BucketQuota>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            domain: "localhost".to_owned(),
            max_buckets: None,
        }
    }
}

/// A running S3 server.
pub struct Server {
    /// The address it listens on.
    pub local_addr: SocketAddr,
    /// Requests and bytes out per bucket, for billing.
    pub usage: std::sync::Arc<usage::S3Usage>,
    /// The accept loop (abort it to stop accepting).
    pub handle: JoinHandle<()>,
}

/// Opens the store in `data_dir` (running [`crate::migrate`] on `pool`,
/// cleaning temporary files a crash left behind) and serves S3 on `addr`.
pub async fn serve(
    addr: SocketAddr,
    pool: SqlitePool,
    data_dir: &Path,
) -> Result<Server, StorageError> {
    serve_with(addr, pool, data_dir, Options::default()).await
}

/// [`serve`] with [`Options`].
pub async fn serve_with(
    addr: SocketAddr,
    pool: SqlitePool,
    data_dir: &Path,
    opts: Options,
) -> Result<Server, StorageError> {
    crate::migrate(&pool).await?;
    let mut backend = Backend::open(pool.clone(), data_dir).await?;
    if let Some(q) = opts.max_buckets.clone() {
        backend.set_bucket_quota(q);
    }
    serve_backend(addr, pool, backend, opts).await
}

/// Serves S3 on `addr` over an already opened `backend` (whose clones the
/// caller keeps for its own object writes).
pub async fn serve_backend(
    addr: SocketAddr,
    pool: SqlitePool,
    backend: Backend,
    opts: Options,
) -> Result<Server, StorageError> {
    let service = {
        let mut b = S3ServiceBuilder::new(backend);
        b.set_auth(KeyAuth { pool });
        b.set_host(Hosts {
            domain: opts.domain.clone(),
        });
        b.build()
    };
    let usage = std::sync::Arc::new(usage::S3Usage::default());
    let service = usage::Metered {
        inner: service,
        usage: usage.clone(),
        domain: opts.domain.clone(),
    };
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            let (socket, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("s3: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    tracing::info!("s3 endpoint on http://{local_addr}");
    Ok(Server {
        local_addr,
        usage,
        handle,
    })
}
