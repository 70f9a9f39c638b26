//! A standalone S3 server for manual tests and benchmarks:
//! `cargo run --release -p storage --example s3_server -- DIR [ADDR]`
//! serves DIR (SQLite file `DIR/meta.db`, objects under `DIR/s3`) on ADDR
//! (127.0.0.1:7071) with one access key, from `S3_ACCESS_KEY` and
//! `S3_SECRET_KEY` (`AKMCEXAMPLEKEY000001` / `example-secret` by default).

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: s3_server DIR [ADDR]")?);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7071".into());
    std::fs::create_dir_all(&dir)?;
    let opts =
        SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.join("meta.db").display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(opts)
        .await?;
    storage::migrate(&pool).await?;
    let ak = std::env::var("S3_ACCESS_KEY").unwrap_or_else(|_| "AKMCEXAMPLEKEY000001".into());
    let sk = std::env::var("S3_SECRET_KEY").unwrap_or_else(|_| "example-secret".into());
    if storage::keys::lookup(&pool, &ak).await?.is_none() {
        storage::keys::insert(&pool, "example", &ak, &sk).await?;
    }
    let server = storage::s3::serve(addr.parse()?, pool, &dir.join("s3")).await?;
    println!("listening on http://{} (key {ak})", server.local_addr);
    server.handle.await?;
    Ok(())
}
