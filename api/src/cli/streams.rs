//! `minicloud topic|group|queue|job`: topics, consumer groups, queues and
//! stream jobs, through the REST API (`/v1/topics`, `/v1/groups`,
//! `/v1/queues`, `/v1/stream-jobs`).

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::output::{cell, items, table};
use super::{Conn, out};

/// Topic commands.
#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        /// Name.
        name: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Time retention in ms (default 7 days).
        #[arg(long)]
        retention_ms: Option<i64>,
        /// Size retention per partition in bytes.
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// Keep the latest record per key instead of deleting by age.
        #[arg(long)]
        compact: bool,
    },
    /// List topics.
    List,
    /// Show a topic's partitions: first and next offsets, bytes.
    Describe {
        /// Name.
        name: String,
    },
    /// Delete a topic and its records.
    Delete {
        /// Name.
        name: String,
    },
    /// Grow a topic to N partitions.
    AddPartitions {
        /// Name.
        name: String,
        /// New total.
        partitions: u32,
    },
    /// Produce records: the values given, else one per line of stdin.
    Produce {
        /// Topic.
        topic: String,
        /// Values (default: stdin lines).
        values: Vec<String>,
        /// Key of every record.
        #[arg(long)]
        key: Option<String>,
        /// Partition (default: from the key, else round-robin).
        #[arg(long)]
        partition: Option<u32>,
        /// Header `name=value` (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
    },
    /// Read records from one partition.
    Consume {
        /// Topic.
        topic: String,
        /// Partition.
        #[arg(long, default_value_t = 0)]
        partition: u32,
        /// First offset (default: the first retained).
        #[arg(long)]
        offset: Option<u64>,
        /// Start at this timestamp (ms since the epoch) instead.
        #[arg(long)]
        timestamp: Option<i64>,
        /// Most records.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// Wait this long (ms) for records when there are none.
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
    },
}

/// Consumer group commands.
#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// List consumer groups with their total lag.
    List,
    /// Members, committed offsets and lag per partition.
    Describe {
        /// Group id.
        group: String,
    },
}

/// Queue commands.
#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Create a queue.
    Create {
        /// Name.
        name: String,
        /// Default visibility timeout (ms).
        #[arg(long)]
        visibility_ms: Option<u64>,
        /// Default delivery delay (ms).
        #[arg(long)]
        delay_ms: Option<u64>,
        /// Retention (ms).
        #[arg(long)]
        retention_ms: Option<u64>,
        /// Dead-letter queue (with --max-receives).
        #[arg(long, requires = "max_receives")]
        dlq: Option<String>,
        /// Receives before a message moves to the dead-letter queue.
        #[arg(long, requires = "dlq")]
        max_receives: Option<u32>,
    },
    /// List queues with their message counts.
    List,
    /// Show a queue.
    Show {
        /// Name.
        name: String,
    },
    /// Send messages (the bodies given, else one per line of stdin).
    Send {
        /// Queue.
        queue: String,
        /// Bodies.
        bodies: Vec<String>,
        /// Delay (ms).
        #[arg(long)]
        delay_ms: Option<u64>,
    },
    /// Receive messages (and with --delete, delete them at once).
    Receive {
        /// Queue.
        queue: String,
        /// Most messages.
        #[arg(long, default_value_t = 1)]
        max: usize,
        /// Wait this long (ms) for one.
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
        /// Visibility timeout (ms; default: the queue's).
        #[arg(long)]
        visibility_ms: Option<u64>,
        /// Delete what was received.
        #[arg(long)]
        delete: bool,
    },
    /// Delete a queue; with --receipt, delete one message instead.
    Delete {
        /// Queue.
        name: String,
        /// A receipt handle.
        #[arg(long)]
        receipt: Option<String>,
    },
}

/// Stream job commands.
#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Create and start a stream job.
    Create {
        /// Job name.
        name: String,
        /// Input topic.
        #[arg(long)]
        input: String,
        /// Output topic (created if missing). (`--output` is the output
        /// format.)
        #[arg(long = "output-topic")]
        output_topic: String,
        /// JSON pointer to the key in each value, e.g. /sensor.
        #[arg(long)]
        key: String,
        /// Window: tumbling:SIZE_MS, hopping:SIZE_MS:ADVANCE_MS or session:GAP_MS.
        #[arg(long)]
        window: String,
        /// Grace period (ms).
        #[arg(long, default_value_t = 0)]
        grace_ms: u64,
        /// JSON pointer to an event time (ms) field (default: append time).
        #[arg(long)]
        event_time: Option<String>,
        /// Aggregate: count, or sum|min|max|avg:/field (repeatable).
        #[arg(long = "aggregate", required = true)]
        aggregates: Vec<String>,
        /// Filter `/field:op:value` (op: eq ne gt gte lt lte exists).
        #[arg(long)]
        filter: Option<String>,
        /// earliest, latest, or a timestamp in ms.
        #[arg(long, default_value = "earliest")]
        start: String,
    },
    /// List jobs with their state and lag.
    List,
    /// A job's spec, state, and per-task progress and lag.
    Show {
        /// Job name.
        name: String,
    },
    /// Stop a job (state and checkpoint stay).
    Stop {
        /// Job name.
        name: String,
    },
    /// Stop and forget a job.
    Delete {
        /// Job name.
        name: String,
    },
}

fn stdin_lines() -> anyhow::Result<Vec<String>> {
    std::io::stdin()
        .lock()
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .context("reading stdin")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn topic_rows(list: &[Value]) -> Vec<Vec<String>> {
    list.iter()
        .map(|t| {
            let parts = items(&t["partitions"]);
            let records: u64 = parts
                .iter()
                .map(|p| u(&p["next_offset"]) - u(&p["first_offset"]))
                .sum();
            let bytes: u64 = parts.iter().map(|p| u(&p["bytes"])).sum();
            vec![
                cell(&t["name"]),
                parts.len().to_string(),
                records.to_string(),
                bytes.to_string(),
                cell(&t["config"]["cleanup"]),
                cell(&t["config"]["retention_ms"]),
            ]
        })
        .collect()
}

/// Runs `topic ...`.
pub fn topic(conn: &Conn, cmd: TopicCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    let headers = [
        "NAME",
        "PARTITIONS",
        "RECORDS",
        "BYTES",
        "CLEANUP",
        "RETENTION_MS",
    ];
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
            compact,
        } => {
            let mut body = json!({ "name": name, "partitions": partitions });
            if let Some(r) = retention_ms {
                body["retention_ms"] = json!(r);
            }
            if let Some(r) = retention_bytes {
                body["retention_bytes"] = json!(r);
            }
            if compact {
                body["cleanup"] = json!("compact");
            }
            let v = c.post("/v1/topics", Some(body))?;
            out(conn, &v, |v| {
                println!(
                    "topic {} created with {} partition(s)",
                    cell(&v["name"]),
                    v["partitions"].as_array().map_or(0, Vec::len)
                )
            });
        }
        TopicCmd::List => {
            let v = c.get("/v1/topics")?;
            out(conn, &v, |v| {
                let list = items(&v["topics"]);
                table(&headers, &topic_rows(&list));
            });
        }
        TopicCmd::Describe { name } => {
            let v = c.get(&format!("/v1/topics/{name}"))?;
            out(conn, &v, |v| {
                table(&headers, &topic_rows(std::slice::from_ref(v)));
                println!();
                let rows: Vec<Vec<String>> = items(&v["partitions"])
                    .iter()
                    .map(|p| {
                        vec![
                            cell(&p["partition"]),
                            cell(&p["first_offset"]),
                            cell(&p["next_offset"]),
                            cell(&p["bytes"]),
                            cell(&p["segments"]),
                        ]
                    })
                    .collect();
                table(&["PARTITION", "FIRST", "NEXT", "BYTES", "SEGMENTS"], &rows);
            });
        }
        TopicCmd::Delete { name } => {
            c.delete(&format!("/v1/topics/{name}"))?;
            out(conn, &json!({ "deleted": name }), |_| {
                println!("deleted topic {name}")
            });
        }
        TopicCmd::AddPartitions { name, partitions } => {
            let v = c.post(
                &format!("/v1/topics/{name}/partitions"),
                Some(json!({ "partitions": partitions })),
            )?;
            out(conn, &v, |v| {
                println!(
                    "topic {} has {} partitions",
                    cell(&v["name"]),
                    v["partitions"].as_array().map_or(0, Vec::len)
                )
            });
        }
        TopicCmd::Produce {
            topic,
            values,
            key,
            partition,
            headers,
        } => {
            let values = if values.is_empty() {
                stdin_lines()?
            } else {
                values
            };
            if values.is_empty() {
                bail!("nothing to produce: give values or lines on stdin");
            }
            let mut hs = serde_json::Map::new();
            for h in headers {
                let (k, v) = h
                    .split_once('=')
                    .with_context(|| format!("header {h:?} is not name=value"))?;
                hs.insert(k.to_string(), json!(v));
            }
            let records: Vec<Value> = values
                .iter()
                .map(|v| {
                    let mut r = json!({ "value": v, "headers": hs });
                    if let Some(k) = &key {
                        r["key"] = json!(k);
                    }
                    if let Some(p) = partition {
                        r["partition"] = json!(p);
                    }
                    r
                })
                .collect();
            let v = c.post(
                &format!("/v1/topics/{topic}/records"),
                Some(json!({ "records": records })),
            )?;
            out(conn, &v, |v| {
                let offs = items(&v["offsets"]);
                let first = offs.first().cloned().unwrap_or(Value::Null);
                let last = offs.last().cloned().unwrap_or(Value::Null);
                println!(
                    "produced {} records to {topic} (first at partition {} offset {}, last at partition {} offset {}; {})",
                    offs.len(),
                    cell(&first["partition"]),
                    cell(&first["offset"]),
                    cell(&last["partition"]),
                    cell(&last["offset"]),
                    cell(&v["durability"])
                )
            });
        }
        TopicCmd::Consume {
            topic,
            partition,
            offset,
            timestamp,
            max,
            wait_ms,
        } => {
            let mut q = format!("max_records={max}&wait_ms={wait_ms}");
            if let Some(o) = offset {
                q.push_str(&format!("&offset={o}"));
            }
            if let Some(t) = timestamp {
                q.push_str(&format!("&timestamp={t}"));
            }
            let v = c.get(&format!(
                "/v1/topics/{topic}/partitions/{partition}/records?{q}"
            ))?;
            out(conn, &v, |v| {
                let rows: Vec<Vec<String>> = items(&v["records"])
                    .iter()
                    .map(|r| {
                        vec![
                            cell(&r["offset"]),
                            cell(&r["timestamp"]),
                            cell(&r["key"]),
                            if r["value"].is_null() {
                                cell(&r["value_hex"])
                            } else {
                                cell(&r["value"])
                            },
                        ]
                    })
                    .collect();
                table(&["OFFSET", "TIMESTAMP", "KEY", "VALUE"], &rows);
                println!(
                    "next offset {}, high watermark {}",
                    cell(&v["next_offset"]),
                    cell(&v["high_watermark"])
                );
            });
        }
    }
    Ok(())
}

/// Runs `group ...`.
pub fn group(conn: &Conn, cmd: GroupCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        GroupCmd::List => {
            let v = c.get("/v1/groups")?;
            out(conn, &v, |v| {
                let rows: Vec<Vec<String>> = items(&v["groups"])
                    .iter()
                    .map(|g| {
                        vec![
                            cell(&g["group"]),
                            cell(&g["generation"]),
                            cell(&g["members"]),
                            cell(&g["lag"]),
                        ]
                    })
                    .collect();
                table(&["GROUP", "GENERATION", "MEMBERS", "LAG"], &rows);
            });
        }
        GroupCmd::Describe { group } => {
            let v = c.get(&format!("/v1/groups/{group}"))?;
            out(conn, &v, |v| {
                println!(
                    "group {} generation {} strategy {} lag {}",
                    cell(&v["group"]),
                    cell(&v["generation"]),
                    cell(&v["strategy"]),
                    cell(&v["lag"])
                );
                let members: Vec<Vec<String>> = items(&v["members"])
                    .iter()
                    .map(|m| {
                        let parts: Vec<String> = items(&m["partitions"])
                            .iter()
                            .map(|tp| format!("{}/{}", cell(&tp["topic"]), cell(&tp["partition"])))
                            .collect();
                        vec![cell(&m["member_id"]), cell(&m["idle_ms"]), parts.join(",")]
                    })
                    .collect();
                table(&["MEMBER", "IDLE_MS", "PARTITIONS"], &members);
                println!();
                let rows: Vec<Vec<String>> = items(&v["partitions"])
                    .iter()
                    .map(|p| {
                        vec![
                            cell(&p["topic"]),
                            cell(&p["partition"]),
                            cell(&p["committed"]),
                            cell(&p["high_watermark"]),
                            cell(&p["lag"]),
                        ]
                    })
                    .collect();
                table(
                    &["TOPIC", "PARTITION", "COMMITTED", "HIGH_WATERMARK", "LAG"],
                    &rows,
                );
            });
        }
    }
    Ok(())
}

/// Runs `queue ...`.
pub fn queue(conn: &Conn, cmd: QueueCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    let row = |q: &Value| {
        vec![
            cell(&q["name"]),
            cell(&q["visible"]),
            cell(&q["in_flight"]),
            cell(&q["delayed"]),
            cell(&q["config"]["visibility_timeout_ms"]),
            cell(&q["config"]["redrive"]["dead_letter_queue"]),
        ]
    };
    let headers = [
        "NAME",
        "VISIBLE",
        "IN_FLIGHT",
        "DELAYED",
        "VISIBILITY_MS",
        "DLQ",
    ];
    match cmd {
        QueueCmd::Create {
            name,
            visibility_ms,
            delay_ms,
            retention_ms,
            dlq,
            max_receives,
        } => {
            let mut body = json!({ "name": name });
            for (k, v) in [
                ("visibility_timeout_ms", visibility_ms),
                ("delay_ms", delay_ms),
                ("retention_ms", retention_ms),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if let (Some(d), Some(m)) = (dlq, max_receives) {
                body["redrive"] = json!({ "dead_letter_queue": d, "max_receive_count": m });
            }
            let v = c.post("/v1/queues", Some(body))?;
            out(conn, &v, |v| println!("queue {} created", cell(&v["name"])));
        }
        QueueCmd::List => {
            let v = c.get("/v1/queues")?;
            out(conn, &v, |v| {
                let rows: Vec<Vec<String>> = items(&v["queues"]).iter().map(row).collect();
                table(&headers, &rows);
            });
        }
        QueueCmd::Show { name } => {
            let v = c.get(&format!("/v1/queues/{name}"))?;
            out(conn, &v, |v| table(&headers, &[row(v)]));
        }
        QueueCmd::Send {
            queue,
            bodies,
            delay_ms,
        } => {
            let bodies = if bodies.is_empty() {
                stdin_lines()?
            } else {
                bodies
            };
            if bodies.is_empty() {
                bail!("nothing to send: give bodies or lines on stdin");
            }
            let messages: Vec<Value> = bodies
                .iter()
                .map(|b| json!({ "body": b, "delay_ms": delay_ms }))
                .collect();
            let v = c.post(
                &format!("/v1/queues/{queue}/messages"),
                Some(json!({ "messages": messages })),
            )?;
            out(conn, &v, |v| {
                for id in items(&v["message_ids"]) {
                    println!("sent {}", cell(&id));
                }
            });
        }
        QueueCmd::Receive {
            queue,
            max,
            wait_ms,
            visibility_ms,
            delete,
        } => {
            let mut body = json!({ "max": max, "wait_ms": wait_ms });
            if let Some(v) = visibility_ms {
                body["visibility_ms"] = json!(v);
            }
            let v = c.post(&format!("/v1/queues/{queue}/receive"), Some(body))?;
            if delete {
                for m in items(&v["messages"]) {
                    let rh = m["receipt_handle"].as_str().unwrap_or_default();
                    c.delete(&format!("/v1/queues/{queue}/messages/{rh}"))?;
                }
            }
            out(conn, &v, |v| {
                let rows: Vec<Vec<String>> = items(&v["messages"])
                    .iter()
                    .map(|m| {
                        vec![
                            cell(&m["message_id"]),
                            cell(&m["receipt_handle"]),
                            cell(&m["receive_count"]),
                            cell(&m["body"]),
                        ]
                    })
                    .collect();
                table(&["MESSAGE_ID", "RECEIPT", "RECEIVES", "BODY"], &rows);
            });
        }
        QueueCmd::Delete { name, receipt } => {
            let (path, what) = match &receipt {
                Some(r) => (
                    format!("/v1/queues/{name}/messages/{r}"),
                    format!("message {r} of {name}"),
                ),
                None => (format!("/v1/queues/{name}"), format!("queue {name}")),
            };
            c.delete(&path)?;
            out(conn, &json!({ "deleted": what }), |_| {
                println!("deleted {what}")
            });
        }
    }
    Ok(())
}

fn parse_window(w: &str, grace_ms: u64, event_time: Option<String>) -> anyhow::Result<Value> {
    let parts: Vec<&str> = w.split(':').collect();
    let num = |s: &str| -> anyhow::Result<u64> {
        s.parse()
            .with_context(|| format!("window: {s:?} is not a number of ms"))
    };
    let mut v = match parts.as_slice() {
        ["tumbling", size] => json!({ "type": "tumbling", "size_ms": num(size)? }),
        ["hopping", size, adv] => {
            json!({ "type": "hopping", "size_ms": num(size)?, "advance_ms": num(adv)? })
        }
        ["session", gap] => json!({ "type": "session", "gap_ms": num(gap)? }),
        _ => bail!(
            "window {w:?}: expected tumbling:SIZE_MS, hopping:SIZE_MS:ADVANCE_MS or session:GAP_MS"
        ),
    };
    v["grace_ms"] = json!(grace_ms);
    if let Some(p) = event_time {
        v["time"] = json!({ "event_time": p });
    }
    Ok(v)
}

fn job_rows(list: &[Value]) -> Vec<Vec<String>> {
    list.iter()
        .map(|j| {
            let tasks = items(&j["tasks"]);
            let processed: u64 = tasks.iter().map(|t| u(&t["processed"])).sum();
            let emitted: u64 = tasks.iter().map(|t| u(&t["emitted"])).sum();
            vec![
                cell(&j["name"]),
                cell(&j["state"]),
                cell(&j["spec"]["input"]),
                cell(&j["spec"]["output"]),
                processed.to_string(),
                emitted.to_string(),
                cell(&j["lag"]),
            ]
        })
        .collect()
}

const JOB_HEADERS: [&str; 7] = [
    "NAME",
    "STATE",
    "INPUT",
    "OUTPUT",
    "PROCESSED",
    "EMITTED",
    "LAG",
];

/// Runs `job ...`.
pub fn job(conn: &Conn, cmd: JobCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        JobCmd::Create {
            name,
            input,
            output_topic,
            key,
            window,
            grace_ms,
            event_time,
            aggregates,
            filter,
            start,
        } => {
            let aggs = aggregates
                .iter()
                .map(|a| match a.split_once(':') {
                    None => Ok(json!({ "op": a })),
                    Some((op, field)) => Ok(json!({ "op": op, "field": field })),
                })
                .collect::<anyhow::Result<Vec<Value>>>()?;
            let mut body = json!({
                "name": name, "input": input, "output": output_topic, "key": key,
                "window": parse_window(&window, grace_ms, event_time)?,
                "aggregates": aggs,
            });
            body["start"] = match start.as_str() {
                "earliest" | "latest" => json!(start),
                ts => json!({ "timestamp": ts.parse::<i64>().with_context(|| {
                    format!("start {ts:?}: earliest, latest or a timestamp in ms")
                })? }),
            };
            if let Some(f) = filter {
                let mut it = f.splitn(3, ':');
                let field = it.next().unwrap_or_default();
                let op = it.next().context("filter: expected /field:op[:value]")?;
                let value = it.next().map_or(Value::Null, |s| {
                    serde_json::from_str(s).unwrap_or_else(|_| json!(s))
                });
                body["filter"] = json!({ "field": field, "op": op, "value": value });
            }
            let v = c.post("/v1/stream-jobs", Some(body))?;
            out(conn, &v, |v| {
                println!(
                    "job {} is {} ({} task(s))",
                    cell(&v["name"]),
                    cell(&v["state"]),
                    v["tasks"].as_array().map_or(0, Vec::len)
                )
            });
        }
        JobCmd::List => {
            let v = c.get("/v1/stream-jobs")?;
            out(conn, &v, |v| {
                let list = items(&v["jobs"]);
                table(&JOB_HEADERS, &job_rows(&list));
            });
        }
        JobCmd::Show { name } => {
            let v = c.get(&format!("/v1/stream-jobs/{name}"))?;
            out(conn, &v, |v| {
                table(&JOB_HEADERS, &job_rows(std::slice::from_ref(v)));
                println!();
                let rows: Vec<Vec<String>> = items(&v["tasks"])
                    .iter()
                    .map(|t| {
                        vec![
                            cell(&t["partition"]),
                            cell(&t["input_offset"]),
                            cell(&t["high_watermark"]),
                            cell(&t["lag"]),
                            cell(&t["processed"]),
                            cell(&t["emitted"]),
                            cell(&t["late_dropped"]),
                            cell(&t["open_windows"]),
                            cell(&t["error"]),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "PARTITION",
                        "OFFSET",
                        "HIGH_WATERMARK",
                        "LAG",
                        "PROCESSED",
                        "EMITTED",
                        "LATE",
                        "OPEN_WINDOWS",
                        "ERROR",
                    ],
                    &rows,
                );
            });
        }
        JobCmd::Stop { name } => {
            let v = c.post(&format!("/v1/stream-jobs/{name}/stop"), None)?;
            out(conn, &v, |v| {
                println!("job {} is {}", cell(&v["name"]), cell(&v["state"]))
            });
        }
        JobCmd::Delete { name } => {
            c.delete(&format!("/v1/stream-jobs/{name}"))?;
            out(conn, &json!({ "deleted": name }), |_| {
                println!("deleted job {name}")
            });
        }
    }
    Ok(())
}

/// `minicloud sink ...`
#[derive(Debug, Subcommand)]
pub enum SinkCmd {
    /// Write a topic's records into a bucket as newline-delimited JSON.
    Create {
        /// Sink name.
        name: String,
        /// Topic to read.
        #[arg(long)]
        topic: String,
        /// Bucket to write (the project's).
        #[arg(long)]
        bucket: String,
        /// Key prefix of the objects.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Records per object at most.
        #[arg(long, default_value_t = 1000)]
        max_records: i64,
        /// Longest a record waits for its object (ms).
        #[arg(long, default_value_t = 5000)]
        flush_ms: i64,
    },
    /// List the project's sinks.
    List,
    /// A sink with its progress.
    Show {
        /// Sink name.
        name: String,
    },
    /// Stop and remove a sink (its objects stay).
    Delete {
        /// Sink name.
        name: String,
    },
}

/// Runs `sink`.
pub fn sink(conn: &Conn, cmd: SinkCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        SinkCmd::Create {
            name,
            topic,
            bucket,
            prefix,
            max_records,
            flush_ms,
        } => {
            let v = c.post(
                "/v1/sinks",
                Some(
                    json!({"name": name, "topic": topic, "bucket": bucket, "prefix": prefix,
                            "max_records": max_records, "flush_ms": flush_ms}),
                ),
            )?;
            out(conn, &v, |_| {
                println!("created sink {name}: {topic} → s3://{bucket}/{prefix}")
            });
        }
        SinkCmd::List => {
            let v = c.get("/v1/sinks")?;
            out(conn, &v, |v| {
                let rows: Vec<Vec<String>> = v["sinks"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| {
                                vec![
                                    cell(&s["name"]),
                                    cell(&s["topic"]),
                                    format!("s3://{}/{}", cell(&s["bucket"]), cell(&s["prefix"])),
                                    cell(&s["stats"]["objects"]),
                                    cell(&s["stats"]["records"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                table(
                    &["NAME", "TOPIC", "DESTINATION", "OBJECTS", "RECORDS"],
                    &rows,
                );
            });
        }
        SinkCmd::Show { name } => {
            let v = c.get(&format!("/v1/sinks/{name}"))?;
            out(conn, &v, |v| {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())
            });
        }
        SinkCmd::Delete { name } => {
            c.delete(&format!("/v1/sinks/{name}"))?;
            if conn.output != super::output::Format::Json {
                println!("deleted sink {name}");
            }
        }
    }
    Ok(())
}
