//! `minicloud s3-key`: access keys of the S3-compatible endpoint.

use clap::Subcommand;

use super::Conn;
use super::client::pct;
use super::output::{Format, cell, table};

/// `minicloud s3-key ...`
#[derive(Debug, Subcommand)]
pub enum S3KeyCmd {
    /// Create an access key (the secret is shown this once).
    Create,
    /// List the project's access keys (no secrets).
    List,
    /// Revoke an access key.
    Delete {
        /// The access key id.
        id: String,
    },
}

/// Runs `s3-key`.
pub fn s3_key(conn: &Conn, cmd: S3KeyCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        S3KeyCmd::Create => {
            let k = c.post("/v1/s3-keys", None)?;
            super::out(conn, &k, |k| {
                println!("access_key_id:     {}", cell(&k["access_key_id"]));
                println!("secret_access_key: {}", cell(&k["secret_access_key"]));
                println!("(the secret is not shown again)");
            });
        }
        S3KeyCmd::List => {
            let v = c.get("/v1/s3-keys")?;
            super::out(conn, &v, |v| {
                let rows: Vec<Vec<String>> = v["keys"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|k| vec![cell(&k["access_key_id"]), cell(&k["created_at"])])
                            .collect()
                    })
                    .unwrap_or_default();
                table(&["ACCESS KEY ID", "CREATED (ms)"], &rows);
            });
        }
        S3KeyCmd::Delete { id } => {
            c.delete(&format!("/v1/s3-keys/{id}"))?;
            if conn.output != Format::Json {
                println!("deleted {id}");
            }
        }
    }
    Ok(())
}

/// `minicloud volume ...`
#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume (empty, or from a snapshot).
    Create {
        /// Name.
        name: String,
        /// Size in GiB.
        #[arg(long)]
        size_gib: Option<i64>,
        /// Size in MiB.
        #[arg(long)]
        size_mib: Option<i64>,
        /// Restore this snapshot (id or name).
        #[arg(long)]
        snapshot: Option<String>,
    },
    /// List volumes.
    List,
    /// Show a volume.
    Show {
        /// Id or name.
        id: String,
    },
    /// Grow a detached volume.
    Resize {
        /// Id or name.
        id: String,
        /// New size in GiB.
        #[arg(long)]
        size_gib: Option<i64>,
        /// New size in MiB.
        #[arg(long)]
        size_mib: Option<i64>,
    },
    /// Delete a detached volume.
    Delete {
        /// Id or name.
        id: String,
    },
    /// Snapshot a detached volume.
    Snapshot {
        /// Id or name of the volume.
        id: String,
        /// Snapshot name.
        #[arg(long)]
        name: String,
    },
}

/// `minicloud snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// List snapshots.
    List,
    /// Show a snapshot.
    Show {
        /// Id or name.
        id: String,
    },
    /// Delete a snapshot.
    Delete {
        /// Id or name.
        id: String,
    },
}

fn size_body(gib: Option<i64>, mib: Option<i64>) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    if let Some(g) = gib {
        m.insert("size_gib".into(), g.into());
    }
    if let Some(x) = mib {
        m.insert("size_mib".into(), x.into());
    }
    m
}

fn print_volume(conn: &Conn, v: &serde_json::Value) {
    super::out(conn, v, |v| {
        table(
            &[
                "ID",
                "NAME",
                "SIZE (bytes)",
                "STATE",
                "ATTACHED TO",
                "SOURCE",
            ],
            &[volume_row(v)],
        );
    });
}

fn volume_row(v: &serde_json::Value) -> Vec<String> {
    vec![
        cell(&v["id"]),
        cell(&v["name"]),
        cell(&v["size_bytes"]),
        cell(&v["state"]),
        cell(&v["attached_to"]),
        cell(&v["source"]),
    ]
}

fn snapshot_row(s: &serde_json::Value) -> Vec<String> {
    vec![
        cell(&s["id"]),
        cell(&s["name"]),
        cell(&s["volume_id"]),
        cell(&s["size_bytes"]),
        cell(&s["method"]),
    ]
}

const SNAPSHOT_HEADERS: [&str; 5] = ["ID", "NAME", "VOLUME", "SIZE (bytes)", "METHOD"];

/// Runs `volume`.
pub fn volume(conn: &Conn, cmd: VolumeCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        VolumeCmd::Create {
            name,
            size_gib,
            size_mib,
            snapshot,
        } => {
            let mut body = size_body(size_gib, size_mib);
            body.insert("name".into(), name.into());
            if let Some(s) = snapshot {
                body.insert("snapshot".into(), s.into());
            }
            let v = c.post("/v1/volumes", Some(body.into()))?;
            print_volume(conn, &v);
        }
        VolumeCmd::List => {
            let v = c.get("/v1/volumes")?;
            super::out(conn, &v, |v| {
                let rows: Vec<Vec<String>> = v["volumes"]
                    .as_array()
                    .map(|a| a.iter().map(volume_row).collect())
                    .unwrap_or_default();
                table(
                    &[
                        "ID",
                        "NAME",
                        "SIZE (bytes)",
                        "STATE",
                        "ATTACHED TO",
                        "SOURCE",
                    ],
                    &rows,
                );
            });
        }
        VolumeCmd::Show { id } => print_volume(conn, &c.get(&format!("/v1/volumes/{id}"))?),
        VolumeCmd::Resize {
            id,
            size_gib,
            size_mib,
        } => {
            let v = c.post(
                &format!("/v1/volumes/{id}/resize"),
                Some(size_body(size_gib, size_mib).into()),
            )?;
            print_volume(conn, &v);
        }
        VolumeCmd::Delete { id } => {
            c.delete(&format!("/v1/volumes/{id}"))?;
            if conn.output != Format::Json {
                println!("deleted {id}");
            }
        }
        VolumeCmd::Snapshot { id, name } => {
            let s = c.post(
                &format!("/v1/volumes/{id}/snapshots"),
                Some(serde_json::json!({ "name": name })),
            )?;
            super::out(conn, &s, |s| {
                table(&SNAPSHOT_HEADERS, &[snapshot_row(s)]);
            });
        }
    }
    Ok(())
}

/// Runs `snapshot`.
pub fn snapshot(conn: &Conn, cmd: SnapshotCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        SnapshotCmd::List => {
            let v = c.get("/v1/snapshots")?;
            super::out(conn, &v, |v| {
                let rows: Vec<Vec<String>> = v["snapshots"]
                    .as_array()
                    .map(|a| a.iter().map(snapshot_row).collect())
                    .unwrap_or_default();
                table(&SNAPSHOT_HEADERS, &rows);
            });
        }
        SnapshotCmd::Show { id } => {
            let s = c.get(&format!("/v1/snapshots/{id}"))?;
            super::out(conn, &s, |s| {
                table(&SNAPSHOT_HEADERS, &[snapshot_row(s)]);
            });
        }
        SnapshotCmd::Delete { id } => {
            c.delete(&format!("/v1/snapshots/{id}"))?;
            if conn.output != Format::Json {
                println!("deleted {id}");
            }
        }
    }
    Ok(())
}

/// `minicloud bucket ...`
#[derive(Debug, Subcommand)]
pub enum BucketCmd {
    /// Create a bucket (the name is unique on this cloud).
    Create {
        /// Bucket name (3-63 of a-z, 0-9, '.', '-').
        name: String,
    },
    /// List the project's buckets with object counts and sizes.
    List,
    /// List a bucket's objects.
    Ls {
        /// Bucket.
        bucket: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Most objects.
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
    /// Print an object (at most 64 MiB; larger ones through S3).
    Cat {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
}

/// Runs `bucket`.
pub fn bucket(conn: &Conn, cmd: BucketCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        BucketCmd::Create { name } => {
            let v = c.post("/v1/buckets", Some(serde_json::json!({ "name": name })))?;
            super::out(conn, &v, |_| {
                println!("created bucket {name}");
            });
        }
        BucketCmd::List => {
            let v = c.get("/v1/buckets")?;
            super::out(conn, &v, |v| {
                let rows: Vec<Vec<String>> = v["buckets"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|b| vec![cell(&b["name"]), cell(&b["objects"]), cell(&b["bytes"])])
                            .collect()
                    })
                    .unwrap_or_default();
                table(&["NAME", "OBJECTS", "BYTES"], &rows);
            });
        }
        BucketCmd::Ls {
            bucket,
            prefix,
            max,
        } => {
            let mut path = format!("/v1/buckets/{}/objects?max={max}", pct(&bucket));
            if let Some(p) = prefix {
                path.push_str(&format!("&prefix={}", pct(&p)));
            }
            let v = c.get(&path)?;
            super::out(conn, &v, |v| {
                let rows: Vec<Vec<String>> = v["objects"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|o| vec![cell(&o["key"]), cell(&o["size"])])
                            .collect()
                    })
                    .unwrap_or_default();
                table(&["KEY", "BYTES"], &rows);
                if v["truncated"].as_bool() == Some(true) {
                    println!("(more: raise --max or narrow --prefix)");
                }
            });
        }
        BucketCmd::Cat { bucket, key } => {
            let path = format!(
                "/v1/buckets/{}/objects/{}",
                pct(&bucket),
                key.split('/').map(pct).collect::<Vec<_>>().join("/")
            );
            c.stream_to_stdout(&path)?;
        }
    }
    Ok(())
}
