//! The CLI: every `minicloud` subcommand but `serve`, each a client of the
//! REST API. Errors are one human line and a non-zero exit status.

pub mod billing;
pub mod client;
pub mod config;
pub mod console;
pub mod output;
pub mod pipeline;
pub mod storage;
pub mod streams;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use client::Client;
use output::{Format, cell, items, table};

/// Connection flags shared by every client command.
#[derive(Debug, Args)]
pub struct Conn {
    /// API URL (else $MINICLOUD_URL, else the saved config).
    #[arg(long, global = true, env = "MINICLOUD_URL")]
    pub url: Option<String>,
    /// API token (else $MINICLOUD_TOKEN, else the saved config).
    #[arg(long, global = true, env = "MINICLOUD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    pub output: Format,
}

impl Conn {
    /// The client these flags describe.
    pub fn client(&self) -> anyhow::Result<Client> {
        let saved = config::CliConfig::load();
        let url = self
            .url
            .clone()
            .or_else(|| saved.as_ref().map(|c| c.url.clone()))
            .unwrap_or_else(|| "http://127.0.0.1:7070".into());
        let token = self
            .token
            .clone()
            .or_else(|| saved.as_ref().map(|c| c.token.clone()))
            .context("no API token: pass --token, set MINICLOUD_TOKEN, or start `minicloud serve` once to write the CLI config")?;
        Ok(Client::new(&url, &token))
    }
}

/// Instance commands.
#[derive(Debug, Subcommand)]
pub enum VmCmd {
    /// Launch an instance.
    Launch {
        /// Name (default: generated).
        #[arg(long)]
        name: Option<String>,
        /// Image: mini or linux.
        #[arg(long, default_value = "mini")]
        image: String,
        /// vCPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Memory in MiB.
        #[arg(long, default_value_t = 128)]
        memory: u64,
        /// Command the guest runs, then powers off.
        #[arg(long)]
        run: Option<String>,
        /// Extra kernel command line.
        #[arg(long)]
        cmdline: Option<String>,
        /// User data for the metadata service.
        #[arg(long)]
        user_data: Option<String>,
        /// Dedicated host cores.
        #[arg(long)]
        dedicated: bool,
        /// Attach a block volume (name or id) as another disk; repeatable.
        #[arg(long = "volume")]
        volumes: Vec<String>,
        /// Wait until it runs (with a spinner).
        #[arg(long)]
        wait: bool,
    },
    /// List instances.
    List,
    /// Show an instance.
    Show {
        /// Id or name.
        id: String,
    },
    /// Print the console log (`--follow` streams it; `--attach` types into it).
    Console {
        /// Id or name.
        id: String,
        /// Keep streaming.
        #[arg(long, short)]
        follow: bool,
        /// Interactive: your keys go to the guest; Ctrl-] leaves.
        #[arg(long)]
        attach: bool,
    },
    /// Stop an instance (orderly, then killed after --timeout seconds).
    Stop {
        /// Id or name.
        id: String,
        /// Seconds before the VMM is killed.
        #[arg(long)]
        timeout: Option<u64>,
        /// Wait until stopped.
        #[arg(long)]
        wait: bool,
    },
    /// Start a stopped instance.
    Start {
        /// Id or name.
        id: String,
        /// Wait until running.
        #[arg(long)]
        wait: bool,
    },
    /// Pause a running instance (billed as paused).
    Pause {
        /// Id or name.
        id: String,
    },
    /// Resume a paused instance.
    Resume {
        /// Id or name.
        id: String,
    },
    /// Reboot an instance.
    Reboot {
        /// Id or name.
        id: String,
    },
    /// Delete an instance.
    Delete {
        /// Id or name.
        id: String,
    },
    /// Process metrics of a running instance.
    Metrics {
        /// Id or name.
        id: String,
    },
}

/// Project commands (admin).
#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    /// Create a project; prints its first token.
    Create {
        /// Name.
        name: String,
    },
    /// List projects.
    List,
    /// Show a project (default: your own).
    Show {
        /// Id or name.
        id: Option<String>,
    },
    /// Issue another token for a project.
    Token {
        /// Id or name.
        id: String,
    },
}

/// Quota commands.
#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    /// Show quotas and use (default: your own project).
    Show {
        /// Project id or name (admin).
        project: Option<String>,
    },
    /// Set quotas (admin); unspecified ones keep their value.
    Set {
        /// Project id or name.
        project: String,
        /// Instances.
        #[arg(long)]
        instances: Option<i64>,
        /// vCPUs.
        #[arg(long)]
        vcpus: Option<i64>,
        /// Memory, MiB.
        #[arg(long)]
        memory: Option<i64>,
        /// Volumes.
        #[arg(long)]
        volumes: Option<i64>,
        /// Buckets.
        #[arg(long)]
        buckets: Option<i64>,
        /// Topics and queues.
        #[arg(long)]
        topics: Option<i64>,
    },
}

/// Host commands.
#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// What this host is and can run.
    Info,
}

pub(crate) fn out(conn: &Conn, v: &Value, human: impl FnOnce(&Value)) {
    match conn.output {
        Format::Json => output::json(v),
        Format::Table => human(v),
    }
}

fn instance_rows(list: &[Value]) -> Vec<Vec<String>> {
    list.iter()
        .map(|i| {
            vec![
                cell(&i["id"]),
                cell(&i["name"]),
                cell(&i["image"]),
                cell(&i["vcpus"]),
                cell(&i["memory_mib"]),
                cell(&i["state"]),
                cell(&i["state_reason"]),
            ]
        })
        .collect()
}

const INSTANCE_HEADERS: [&str; 7] = [
    "ID",
    "NAME",
    "IMAGE",
    "VCPUS",
    "MEMORY_MIB",
    "STATE",
    "REASON",
];

/// Polls an instance until it settles, with a spinner on a terminal.
fn wait_for(client: &Client, id: &str, want: &[&str], quiet: bool) -> anyhow::Result<Value> {
    let spinner = (!quiet).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(Duration::from_millis(100));
        pb
    });
    let start = Instant::now();
    loop {
        let inst = client.get(&format!("/v1/instances/{id}?wait=30"))?;
        let state = inst["state"].as_str().unwrap_or("?").to_string();
        if let Some(pb) = &spinner {
            pb.set_message(format!(
                "{id}: {state} ({:.1}s)",
                start.elapsed().as_secs_f64()
            ));
        }
        if want.contains(&state.as_str()) || state == "failed" {
            if let Some(pb) = spinner {
                pb.finish_and_clear();
            }
            if state == "failed" && !want.contains(&"failed") {
                bail!("instance {id} failed: {}", cell(&inst["state_reason"]));
            }
            return Ok(inst);
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("instance {id} is still {state} after 10 minutes");
        }
    }
}

/// Runs `vm ...`.
pub fn vm(conn: &Conn, cmd: VmCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    let quiet = conn.output == Format::Json;
    match cmd {
        VmCmd::Launch {
            name,
            image,
            vcpus,
            memory,
            run,
            cmdline,
            user_data,
            dedicated,
            volumes,
            wait,
        } => {
            let name = name.unwrap_or_else(|| {
                format!(
                    "{image}-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                )
            });
            let mut body =
                json!({ "name": name, "image": image, "vcpus": vcpus, "memory_mib": memory });
            for (k, v) in [("run", run), ("cmdline", cmdline), ("user_data", user_data)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if dedicated {
                body["cpu_policy"] = json!("dedicated");
            }
            if !volumes.is_empty() {
                body["volumes"] = json!(volumes);
            }
            let accepted = c.post("/v1/instances", Some(body))?;
            let id = accepted["instance"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let shown = if wait {
                let inst = wait_for(&c, &id, &["running", "stopped"], quiet)?;
                json!({ "instance": inst, "operation": accepted["operation"] })
            } else {
                accepted
            };
            out(conn, &shown, |v| {
                let i = &v["instance"];
                println!(
                    "{} {} is {}",
                    cell(&i["id"]),
                    cell(&i["name"]),
                    cell(&i["state"])
                );
            });
        }
        VmCmd::List => {
            let v = c.get("/v1/instances")?;
            out(conn, &v, |v| {
                let list = items(&v["instances"]);
                table(&INSTANCE_HEADERS, &instance_rows(&list));
            });
        }
        VmCmd::Show { id } => {
            let v = c.get(&format!("/v1/instances/{id}"))?;
            out(conn, &v, |v| {
                if let Some(o) = v.as_object() {
                    for (k, val) in o {
                        println!("{k:<14} {}", cell(val));
                    }
                }
            });
        }
        VmCmd::Console { id, follow, attach } => {
            if attach {
                return console::attach(&c, &id);
            }
            if follow {
                c.stream_to_stdout(&format!("/v1/instances/{id}/console?follow=true"))?;
            } else {
                print!("{}", c.get_text(&format!("/v1/instances/{id}/console"))?);
            }
        }
        VmCmd::Stop { id, timeout, wait } => {
            let q = timeout.map(|t| format!("?timeout={t}")).unwrap_or_default();
            let op = c.post(&format!("/v1/instances/{id}/stop{q}"), None)?;
            let v = if wait {
                wait_for(&c, &id, &["stopped"], quiet)?
            } else {
                op
            };
            out(conn, &v, |v| {
                println!("{}", cell(&v["state"]).replace('-', "stopping"))
            });
        }
        VmCmd::Start { id, wait } => {
            let op = c.post(&format!("/v1/instances/{id}/start"), None)?;
            let v = if wait {
                wait_for(&c, &id, &["running", "stopped"], quiet)?
            } else {
                op
            };
            out(conn, &v, |v| {
                println!("{}", cell(&v["state"]).replace('-', "starting"))
            });
        }
        VmCmd::Pause { id } => {
            let v = c.post(&format!("/v1/instances/{id}/pause"), None)?;
            out(conn, &v, |v| {
                println!("{} is {}", cell(&v["name"]), cell(&v["state"]))
            });
        }
        VmCmd::Resume { id } => {
            let v = c.post(&format!("/v1/instances/{id}/resume"), None)?;
            out(conn, &v, |v| {
                println!("{} is {}", cell(&v["name"]), cell(&v["state"]))
            });
        }
        VmCmd::Reboot { id } => {
            let op = c.post(&format!("/v1/instances/{id}/reboot"), None)?;
            out(conn, &op, |v| println!("reboot {}", cell(&v["id"])));
        }
        VmCmd::Delete { id } => {
            c.delete(&format!("/v1/instances/{id}"))?;
            out(conn, &json!({ "deleted": id }), |_| {
                println!("deleted {id}")
            });
        }
        VmCmd::Metrics { id } => {
            let v = c.get(&format!("/v1/instances/{id}/metrics"))?;
            out(conn, &v, |v| {
                table(
                    &["PID", "RSS_KIB", "CPU_MS", "THREADS", "UPTIME_S"],
                    &[vec![
                        cell(&v["pid"]),
                        cell(&v["rss_kib"]),
                        cell(&v["cpu_ms"]),
                        cell(&v["threads"]),
                        cell(&v["uptime_s"]),
                    ]],
                )
            });
        }
    }
    Ok(())
}

/// Runs `project ...`.
pub fn project(conn: &Conn, cmd: ProjectCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        ProjectCmd::Create { name } => {
            let v = c.post("/v1/projects", Some(json!({ "name": name })))?;
            out(conn, &v, |v| {
                println!(
                    "project {} ({})",
                    cell(&v["project"]["name"]),
                    cell(&v["project"]["id"])
                );
                println!("token (shown once): {}", cell(&v["token"]));
            });
        }
        ProjectCmd::List => {
            let v = c.get("/v1/projects")?;
            out(conn, &v, |v| {
                let rows: Vec<Vec<String>> = items(&v["projects"])
                    .iter()
                    .map(|p| vec![cell(&p["id"]), cell(&p["name"]), cell(&p["is_admin"])])
                    .collect();
                table(&["ID", "NAME", "ADMIN"], &rows);
            });
        }
        ProjectCmd::Show { id } => {
            let v = match id {
                Some(id) => c.get(&format!("/v1/projects/{id}"))?,
                None => c.get("/v1/project")?,
            };
            out(conn, &v, print_quotas);
        }
        ProjectCmd::Token { id } => {
            let v = c.post(&format!("/v1/projects/{id}/tokens"), None)?;
            out(conn, &v, |v| {
                println!("token (shown once): {}", cell(&v["token"]))
            });
        }
    }
    Ok(())
}

fn print_quotas(v: &Value) {
    let p = &v["project"];
    println!("project {} ({})", cell(&p["name"]), cell(&p["id"]));
    let q = &p["quotas"];
    let u = &v["usage"];
    table(
        &["RESOURCE", "USED", "LIMIT"],
        &[
            vec![
                "instances".into(),
                cell(&u["instances"]),
                cell(&q["max_instances"]),
            ],
            vec!["vcpus".into(), cell(&u["vcpus"]), cell(&q["max_vcpus"])],
            vec![
                "memory_mib".into(),
                cell(&u["memory_mib"]),
                cell(&q["max_memory_mib"]),
            ],
            vec!["volumes".into(), "-".into(), cell(&q["max_volumes"])],
            vec!["buckets".into(), "-".into(), cell(&q["max_buckets"])],
            vec!["topics".into(), "-".into(), cell(&q["max_topics"])],
        ],
    );
}

/// Runs `quota ...`.
pub fn quota(conn: &Conn, cmd: QuotaCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        QuotaCmd::Show { project } => {
            let v = match project {
                Some(p) => c.get(&format!("/v1/projects/{p}"))?,
                None => c.get("/v1/project")?,
            };
            out(conn, &v, print_quotas);
        }
        QuotaCmd::Set {
            project,
            instances,
            vcpus,
            memory,
            volumes,
            buckets,
            topics,
        } => {
            let cur = c.get(&format!("/v1/projects/{project}"))?;
            let mut q = cur["project"]["quotas"].clone();
            for (k, v) in [
                ("max_instances", instances),
                ("max_vcpus", vcpus),
                ("max_memory_mib", memory),
                ("max_volumes", volumes),
                ("max_buckets", buckets),
                ("max_topics", topics),
            ] {
                if let Some(v) = v {
                    q[k] = json!(v);
                }
            }
            let v = c.put(&format!("/v1/projects/{project}/quotas"), q)?;
            out(conn, &v, print_quotas);
        }
    }
    Ok(())
}

/// Runs `host ...`.
pub fn host(conn: &Conn, cmd: HostCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        HostCmd::Info => {
            let v = c.get("/v1/host")?;
            out(conn, &v, |v| {
                let cap = &v["capability"];
                println!(
                    "host {}: KVM {} ({}), images: {}",
                    cell(&v["id"]),
                    cell(&cap["virtualization"]),
                    if cap["hardware_assisted"].as_bool() == Some(true) {
                        "hardware-assisted"
                    } else {
                        "emulated"
                    },
                    cap["images"]
                        .as_array()
                        .map(|a| a.iter().map(cell).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                );
                println!("{}", cell(&cap["note"]));
                let s = &v["scheduler"];
                println!(
                    "scheduler: {}",
                    serde_json::to_string(s).unwrap_or_default()
                );
            });
        }
    }
    Ok(())
}
