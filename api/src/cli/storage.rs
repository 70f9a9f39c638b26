//! `minicloud s3-key`: access keys of the S3-compatible endpoint.

use clap::Subcommand;

use super::Conn;
use super::output::{Format, cell, json, table};

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
            if conn.output == Format::Json {
                json(&k);
            } else {
                println!("access_key_id:     {}", cell(&k["access_key_id"]));
                println!("secret_access_key: {}", cell(&k["secret_access_key"]));
                println!("(the secret is not shown again)");
            }
        }
        S3KeyCmd::List => {
            let v = c.get("/v1/s3-keys")?;
            if conn.output == Format::Json {
                json(&v);
            } else {
                let rows: Vec<Vec<String>> = v["keys"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|k| vec![cell(&k["access_key_id"]), cell(&k["created_at"])])
                            .collect()
                    })
                    .unwrap_or_default();
                table(&["ACCESS KEY ID", "CREATED (ms)"], &rows);
            }
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
