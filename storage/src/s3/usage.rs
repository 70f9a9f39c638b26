//! What the S3 endpoint serves, counted per bucket for billing: requests by
//! price class (PUT, COPY, POST and LIST are `write`; GET and HEAD are
//! `read`) and response bytes out. The control plane samples these counters
//! and turns differences into usage events; storage GiB-seconds come from
//! sampling each bucket's stored bytes (see [`stored_bytes`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use s3s::service::S3Service;
use s3s::{HttpError, HttpResponse};
use sqlx::SqlitePool;

/// Cumulative counters of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketCounters {
    /// PUT, COPY, POST, LIST and DELETE requests.
    pub write_requests: u64,
    /// GET and HEAD requests on objects.
    pub read_requests: u64,
    /// Bytes sent in response bodies.
    pub bytes_out: u64,
}

/// Counters per bucket, since the server started.
#[derive(Debug, Default)]
pub struct S3Usage {
    buckets: Mutex<HashMap<String, BucketCounters>>,
}

impl S3Usage {
    fn record(&self, bucket: String, write: bool, bytes_out: u64) {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let c = map.entry(bucket).or_default();
        if write {
            c.write_requests += 1;
        } else {
            c.read_requests += 1;
        }
        c.bytes_out += bytes_out;
    }

    /// A copy of every bucket's counters.
    pub fn snapshot(&self) -> Vec<(String, BucketCounters)> {
        let map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// (project, bucket, stored bytes) of every bucket.
pub async fn stored_bytes(pool: &SqlitePool) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT b.project_id, b.name, COALESCE(SUM(o.size), 0) FROM s3_buckets b \
         LEFT JOIN s3_objects o ON o.bucket = b.name GROUP BY b.name",
    )
    .fetch_all(pool)
    .await
}

/// The project owning each bucket.
pub async fn bucket_projects(pool: &SqlitePool) -> Result<HashMap<String, String>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, project_id FROM s3_buckets")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

/// The bucket a request addresses: the host's first label for
/// virtual-host style, else the path's first segment.
fn bucket_of<B>(req: &http::Request<B>, domain: &str) -> (String, bool) {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("");
    let path = req.uri().path().trim_start_matches('/');
    if let Some(b) = host.strip_suffix(domain).and_then(|p| p.strip_suffix('.')) {
        return (b.to_string(), path.is_empty());
    }
    let mut parts = path.splitn(2, '/');
    let bucket = parts.next().unwrap_or("").to_string();
    let no_key = parts.next().is_none_or(str::is_empty);
    (bucket, no_key)
}

/// The S3 service with counting around it.
#[derive(Clone)]
pub struct Metered {
    /// The s3s service.
    pub inner: S3Service,
    /// Where counts go.
    pub usage: Arc<S3Usage>,
    /// Virtual-host base domain.
    pub domain: String,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Metered {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let method = req.method().clone();
        let (bucket, no_key) = bucket_of(&req, &self.domain);
        let usage = self.usage.clone();
        let has_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > 0);
        let fut = hyper::service::Service::call(&self.inner, req);
        Box::pin(async move {
            let mut resp = fut.await?;
            // An error answered before the request body was read: close the
            // connection after it (as S3 does) rather than leave unread
            // body bytes in front of the client's next request.
            if has_body && !resp.status().is_success() {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            if !bucket.is_empty() {
                let read = matches!(method, http::Method::GET | http::Method::HEAD) && !no_key;
                let out = if method == http::Method::GET && resp.status().is_success() {
                    resp.headers()
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                } else {
                    0
                };
                usage.record(bucket, !read, out);
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_found_in_both_styles() {
        let r = http::Request::get("http://localhost:7071/photos/a/b.jpg")
            .header("host", "localhost:7071")
            .body(())
            .expect("req");
        assert_eq!(bucket_of(&r, "localhost"), ("photos".into(), false));
        let r = http::Request::get("/a.jpg")
            .header("host", "photos.localhost:7071")
            .body(())
            .expect("req");
        assert_eq!(bucket_of(&r, "localhost"), ("photos".into(), false));
        let r = http::Request::get("/photos?list-type=2")
            .header("host", "127.0.0.1")
            .body(())
            .expect("req");
        assert_eq!(bucket_of(&r, "localhost"), ("photos".into(), true));
    }
}
