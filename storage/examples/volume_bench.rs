//! Block volume timings: create a 10 GiB volume, write 1 GiB into it,
//! snapshot it, restore the snapshot to a new volume (a clone).
//! `cargo run --release -p storage --example volume_bench -- DIR`
//! (DIR on the disk to measure; FICLONE is used where it shares extents).

use std::os::unix::fs::{FileExt, MetadataExt};
use std::str::FromStr;
use std::time::Instant;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use storage::volumes::{Source, Volumes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: volume_bench DIR")?);
    std::fs::create_dir_all(&dir)?;
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.join("db").display()))?
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await?;
    let v = Volumes::open(pool, &dir).await?;
    let t = Instant::now();
    let vol = v.create("bench", "big", 10 << 30, Source::Empty).await?;
    let create = t.elapsed();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(v.path(&vol.id))?;
    let chunk: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i % 251) as u8 | 1).collect();
    let t = Instant::now();
    for i in 0..1024u64 {
        // 1 GiB spread over the volume: 1 MiB every 10 MiB.
        f.write_all_at(&chunk, (i * 10) << 20)?;
    }
    f.sync_all()?;
    let write = t.elapsed();
    let t = Instant::now();
    let snap = v
        .snapshot_volume("bench", "big", "snap", false, Box::new(|_, _| {}))
        .await?;
    let snapshot = t.elapsed();
    let t = Instant::now();
    let restored = v
        .create("bench", "clone", 10 << 30, Source::Snapshot("snap".into()))
        .await?;
    let clone = t.elapsed();
    let used = std::fs::metadata(v.path(&restored.id))?.blocks() * 512;
    println!(
        "volume create (10 GiB, sparse): {:.1} ms\nwrite 1 GiB + fsync: {:.2} s\nsnapshot ({}): {:.2} s\nrestore to a new volume ({}): {:.2} s, {} MiB allocated",
        create.as_secs_f64() * 1e3,
        write.as_secs_f64(),
        snap.method,
        snapshot.as_secs_f64(),
        snap.method,
        clone.as_secs_f64(),
        used >> 20
    );
    v.delete("bench", "clone").await?;
    v.delete("bench", "big").await?;
    v.delete_snapshot("bench", "snap").await?;
    Ok(())
}
