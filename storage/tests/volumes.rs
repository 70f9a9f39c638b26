//! Block volumes: sparse files, snapshots (reflink or sparse copy) and
//! restores keep data, attachment rules, per-project isolation.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use storage::volumes::{Source, VolumeError, Volumes};

const MIB: i64 = 1 << 20;

async fn open(dir: &std::path::Path) -> Volumes {
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.join("db").display()))
        .expect("url")
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .expect("pool");
    Volumes::open(pool, dir).await.expect("open")
}

fn pattern(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[tokio::test]
async fn volumes_snapshots_and_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = open(dir.path()).await;
    let vol = v
        .create("p1", "data", 1024 * MIB, Source::Empty)
        .await
        .expect("create");
    let path = v.path(&vol.id);
    let meta = std::fs::metadata(&path).expect("meta");
    assert_eq!(meta.len(), 1024 * MIB as u64);
    assert!(meta.blocks() * 512 < MIB as u64, "not sparse");

    // Write a pattern the way a guest would, at two places.
    let a = pattern(7, 3 * MIB as usize);
    let b = pattern(9, 4096);
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.write_all_at(&a, 100 * MIB as u64).expect("write");
        f.write_all_at(&b, 1000 * MIB as u64).expect("write");
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let s2 = seen.clone();
    let snap = v
        .snapshot_volume(
            "p1",
            "data",
            "snap1",
            false,
            Box::new(move |done, _| *s2.lock().expect("lock") = done),
        )
        .await
        .expect("snapshot");
    assert!(snap.method == "reflink" || snap.method == "sparse-copy");
    assert_eq!(*seen.lock().expect("lock"), 1024 * MIB as u64);
    // Changing the volume afterwards leaves the snapshot as it was.
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.write_all_at(&[0xff; 4096], 100 * MIB as u64)
            .expect("write");
    }
    let restored = v
        .create(
            "p1",
            "restored",
            2048 * MIB,
            Source::Snapshot("snap1".into()),
        )
        .await
        .expect("restore");
    let rp = v.path(&restored.id);
    let f = std::fs::File::open(&rp).expect("open restored");
    let mut got = vec![0u8; a.len()];
    f.read_exact_at(&mut got, 100 * MIB as u64).expect("read");
    assert!(got == a, "pattern a differs after restore");
    let mut got = vec![0u8; b.len()];
    f.read_exact_at(&mut got, 1000 * MIB as u64).expect("read");
    assert_eq!(got, b);
    assert_eq!(
        std::fs::metadata(&rp).expect("meta").len(),
        2048 * MIB as u64
    );
    assert!(
        std::fs::metadata(&rp).expect("meta").blocks() * 512 < 64 * MIB as u64,
        "restore not sparse"
    );

    // Attachment rules.
    let p = v.attach("p1", "data", "i-1").await.expect("attach");
    assert_eq!(p, path);
    assert!(matches!(
        v.attach("p1", "data", "i-2").await,
        Err(VolumeError::Attached(..))
    ));
    assert!(matches!(
        v.delete("p1", "data").await,
        Err(VolumeError::Attached(..))
    ));
    assert!(matches!(
        v.resize("p1", "data", 2048 * MIB).await,
        Err(VolumeError::Attached(..))
    ));
    assert!(matches!(
        v.snapshot_volume("p1", "data", "snap2", false, Box::new(|_, _| {}))
            .await,
        Err(VolumeError::Attached(..))
    ));
    assert_eq!(v.detach_all("i-1").await.expect("detach"), 1);
    let grown = v.resize("p1", "data", 2048 * MIB).await.expect("resize");
    assert_eq!(grown.size_bytes, 2048 * MIB);
    assert!(matches!(
        v.resize("p1", "data", 1024 * MIB).await,
        Err(VolumeError::Invalid(_))
    ));

    // Projects are apart; names are unique within one.
    assert!(matches!(
        v.get("p2", "data").await,
        Err(VolumeError::NotFound(..))
    ));
    assert!(matches!(
        v.create("p2", "x", MIB, Source::Snapshot("snap1".into()))
            .await,
        Err(VolumeError::NotFound(..))
    ));
    assert!(matches!(
        v.create("p1", "data", MIB, Source::Empty).await,
        Err(VolumeError::Exists(..))
    ));
    assert!(matches!(
        v.create("p1", "Bad/Name", MIB, Source::Empty).await,
        Err(VolumeError::Invalid(_))
    ));
    assert!(matches!(
        v.create("p1", "small", MIB, Source::Snapshot("snap1".into()))
            .await,
        Err(VolumeError::Invalid(_))
    ));
    assert_eq!(v.list("p1").await.expect("list").len(), 2);
    assert_eq!(v.snapshots("p1").await.expect("snaps").len(), 1);

    v.delete_snapshot("p1", "snap1").await.expect("delete snap");
    v.delete("p1", "data").await.expect("delete");
    v.delete("p1", "restored").await.expect("delete");
    assert!(v.list("p1").await.expect("list").is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("volumes"))
            .expect("dir")
            .count(),
        0
    );
    // Leftovers of a crashed creation go at open.
    std::fs::write(dir.path().join("volumes/vol-x.tmp"), b"x").expect("w");
    std::fs::write(dir.path().join("snapshots/snap-y.raw"), b"y").expect("w");
    let _ = open(dir.path()).await;
    assert_eq!(
        std::fs::read_dir(dir.path().join("volumes"))
            .expect("dir")
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("snapshots"))
            .expect("dir")
            .count(),
        0
    );
}
