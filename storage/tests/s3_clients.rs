//! Real, unmodified S3 clients (boto3 and the aws CLI, from PyPI into
//! `~/.cache/minicloud/venv` when missing) against the S3 endpoint, plus
//! restart/crash-recovery checks done from Rust.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

async fn pool(dir: &Path) -> SqlitePool {
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.join("db").display()))
        .expect("url")
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(opts)
        .await
        .expect("connect")
}

/// The venv with boto3 and awscli, created on first use.
fn venv() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let venv = PathBuf::from(home).join(".cache/minicloud/venv");
    let py = venv.join("bin/python3");
    let ready = py.exists()
        && Command::new(&py)
            .args(["-c", "import boto3, awscli"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(st.success(), "python3 -m venv failed");
        let st = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "boto3", "awscli"])
            .status()
            .expect("pip install");
        assert!(st.success(), "pip install boto3 awscli failed");
    }
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_and_aws_cli() {
    let venv = tokio::task::spawn_blocking(venv).await.expect("venv");
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(dir.path()).await;
    storage::migrate(&pool).await.expect("migrate");
    let (ka, sa) = (
        "AKMCTESTPROJECTA0001",
        "secret-a-0123456789abcdefghijklmnopqrstu",
    );
    let (kb, sb) = (
        "AKMCTESTPROJECTB0001",
        "secret-b-0123456789abcdefghijklmnopqrstu",
    );
    storage::keys::insert(&pool, "proj-a", ka, sa)
        .await
        .expect("key a");
    storage::keys::insert(&pool, "proj-b", kb, sb)
        .await
        .expect("key b");
    let data = dir.path().join("s3");
    let server = storage::s3::serve("127.0.0.1:0".parse().expect("addr"), pool.clone(), &data)
        .await
        .expect("serve");
    let endpoint = format!("http://localhost:{}", server.local_addr.port());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_clients.py");
    let big = std::env::var("MINICLOUD_S3_BIG_MIB").unwrap_or_else(|_| "1024".into());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(venv.join("bin/python3"))
            .arg(script)
            .env("S3_ENDPOINT", endpoint)
            .env("KEY_A", ka)
            .env("SECRET_A", sa)
            .env("KEY_B", kb)
            .env("SECRET_B", sb)
            .env("AWS_CLI", venv.join("bin/aws"))
            .env("BIG_MIB", big)
            .env("SERVER_PID", std::process::id().to_string())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run python")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "client script failed"
    );
    server.handle.abort();

    // No temporary files are left, and every object file is referenced.
    let tmp: Vec<_> = std::fs::read_dir(data.join("tmp")).expect("tmp").collect();
    assert!(tmp.is_empty(), "leftover temporary files: {tmp:?}");
    let files = std::fs::read_dir(data.join("objects"))
        .expect("objects")
        .count();
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM s3_objects) + (SELECT COUNT(*) FROM s3_parts)",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(files as i64, rows, "object files vs rows");
}

/// What a crash mid-PutObject or mid-multipart leaves behind (a temporary
/// file, an object file with no row) is gone after the store reopens,
/// and no partial object is visible.
#[tokio::test]
async fn crash_leftovers_are_cleaned_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(dir.path()).await;
    storage::migrate(&pool).await.expect("migrate");
    let data = dir.path().join("s3");
    let _ = storage::s3::Backend::open(pool.clone(), &data)
        .await
        .expect("open");
    std::fs::write(data.join("tmp/0123abcd"), b"half a put").expect("tmp");
    std::fs::write(data.join("objects/deadbeef"), b"renamed, no row").expect("orphan");
    let _ = storage::s3::Backend::open(pool.clone(), &data)
        .await
        .expect("reopen");
    assert_eq!(std::fs::read_dir(data.join("tmp")).expect("tmp").count(), 0);
    assert_eq!(
        std::fs::read_dir(data.join("objects"))
            .expect("objects")
            .count(),
        0
    );
    // Migrations are idempotent beside other crates' (ignore_missing).
    storage::migrate(&pool).await.expect("migrate again");
}
