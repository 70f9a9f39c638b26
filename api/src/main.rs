//! `minicloud`: the control plane daemon (`minicloud serve`) and its CLI.
//!
//! The daemon lands with issue #5; today the binary only reports its version.

use clap::Parser;

/// minicloud: a small cloud on one Linux machine.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    println!("minicloud {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
