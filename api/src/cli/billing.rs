//! `minicloud bill`: what the project's resources cost, as a table per
//! resource, CSV or JSON, with a chart of daily cost.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::Conn;
use super::output::{Format, cell, items, table};

/// `minicloud bill` flags.
#[derive(Debug, Args)]
pub struct BillArgs {
    /// Start (YYYY-MM-DD or RFC 3339, UTC); default: this month's start.
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive; default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// resource, meter or day.
    #[arg(long, default_value = "resource")]
    pub group_by: String,
    /// table, csv or json (overrides --output).
    #[arg(long)]
    pub format: Option<String>,
    /// Also write an SVG chart of daily cost per meter to this file.
    #[arg(long)]
    pub chart: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub cmd: Option<BillCmd>,
}

/// `minicloud bill ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum BillCmd {
    /// Show one invoice: a number, or a month YYYY-MM.
    Invoice {
        /// Invoice number or month.
        id: String,
    },
    /// Set monthly budget thresholds (e.g. 5.00 20.00).
    Budget {
        /// Thresholds.
        thresholds: Vec<String>,
    },
}

fn query(a: &BillArgs) -> String {
    let mut q = vec![format!("group_by={}", a.group_by)];
    if let Some(f) = &a.from {
        q.push(format!("from={f}"));
    }
    if let Some(t) = &a.to {
        q.push(format!("to={t}"));
    }
    q.join("&")
}

/// Runs `bill`.
pub fn bill(conn: &Conn, a: BillArgs) -> anyhow::Result<()> {
    let c = conn.client()?;
    let format = match a.format.as_deref() {
        Some("csv") => "csv",
        Some("json") => "json",
        Some("table") => "table",
        Some(other) => anyhow::bail!("--format must be table, csv or json, not {other:?}"),
        None if conn.output == Format::Json => "json",
        None => "table",
    };
    match a.cmd {
        Some(BillCmd::Invoice { id }) => {
            if format == "csv" {
                print!(
                    "{}",
                    c.get_text(&format!("/v1/billing/invoices/{id}?format=csv"))?
                );
                return Ok(());
            }
            let inv = c.get(&format!("/v1/billing/invoices/{id}"))?;
            if format == "json" {
                super::output::json(&inv);
                return Ok(());
            }
            println!(
                "invoice {} for project {} ({}), {}",
                cell(&inv["id"]),
                cell(&inv["project"]),
                cell(&inv["status"]),
                cell(&inv["currency"])
            );
            let rows: Vec<Vec<String>> = items(&inv["lines"])
                .iter()
                .map(|l| {
                    vec![
                        cell(&l["resource_id"]),
                        cell(&l["meter"]),
                        cell(&l["quantity"]),
                        cell(&l["unit"]),
                        cell(&l["unit_price"]),
                        cell(&l["amount"]),
                    ]
                })
                .collect();
            table(
                &[
                    "RESOURCE",
                    "METER",
                    "QUANTITY",
                    "UNIT",
                    "UNIT_PRICE",
                    "AMOUNT",
                ],
                &rows,
            );
            println!("total {} {}", cell(&inv["total"]), cell(&inv["currency"]));
            return Ok(());
        }
        Some(BillCmd::Budget { thresholds }) => {
            let v = c.put(
                "/v1/billing/budget",
                serde_json::json!({ "thresholds": thresholds }),
            )?;
            println!("budget thresholds: {}", v["thresholds"]);
            return Ok(());
        }
        None => {}
    }
    let q = query(&a);
    if format == "csv" {
        print!(
            "{}",
            c.get_text(&format!("/v1/billing/usage?{q}&format=csv"))?
        );
    } else {
        let report = c.get(&format!("/v1/billing/usage?{q}"))?;
        if format == "json" {
            super::output::json(&report);
        } else {
            print_report(&report);
        }
    }
    let costs = c.get(&format!("/v1/billing/costs?{q}"))?;
    if format == "table" {
        let totals: Vec<i64> = items(&costs["totals"]).iter().map(micros).collect();
        if !totals.is_empty() {
            println!("daily cost {}", metering::sparkline(&totals));
        }
    }
    if let Some(path) = a.chart {
        let svg = c.get_text(&format!("/v1/billing/costs?{q}&format=svg"))?;
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        if format == "table" {
            println!("chart written to {}", path.display());
        }
    }
    Ok(())
}

fn micros(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse::<metering::Money>().ok())
        .map_or(0, |m| m.micros())
}

fn print_report(r: &Value) {
    println!(
        "usage of project {} ({}), grouped by {}",
        cell(&r["project"]),
        cell(&r["currency"]),
        cell(&r["group_by"])
    );
    let rows: Vec<Vec<String>> = items(&r["rows"])
        .iter()
        .map(|row| {
            let key = row
                .get("resource_id")
                .or_else(|| row.get("date"))
                .map(cell)
                .unwrap_or_else(|| "-".into());
            vec![
                key,
                cell(&row["meter"]),
                cell(&row["quantity"]),
                cell(&row["unit"]),
                cell(&row["cost"]),
            ]
        })
        .collect();
    table(
        &["RESOURCE/DAY", "METER", "QUANTITY", "UNIT", "COST"],
        &rows,
    );
    println!("total {} {}", cell(&r["total"]), cell(&r["currency"]));
}
