//! `minicloud`: `minicloud serve` runs the control plane; every other
//! subcommand is the CLI, a client of its REST API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use api::cli::{self, Conn, HostCmd, ProjectCmd, QuotaCmd, VmCmd};
use api::serve::{self, ServeOptions};
use clap::{Parser, Subcommand};

/// minicloud: a cloud on one Linux machine.
#[derive(Parser, Debug)]
#[command(name = "minicloud", version, about)]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the control plane daemon.
    Serve {
        /// State directory.
        #[arg(long, env = "MINICLOUD_DATA")]
        data_dir: Option<PathBuf>,
        /// Address of the REST API.
        #[arg(long, env = "MINICLOUD_LISTEN", default_value = "127.0.0.1:7070")]
        listen: SocketAddr,
        /// Guest image cache.
        #[arg(long, env = "MINICLOUD_IMAGES")]
        images_dir: Option<PathBuf>,
        /// The minicloud-vmm binary.
        #[arg(long, env = "MINICLOUD_VMM")]
        vmm: Option<PathBuf>,
        /// Do not write the CLI config on first start.
        #[arg(long)]
        no_cli_config: bool,
        /// vCPUs per host CPU for shared instances (overcommit).
        #[arg(long, env = "MINICLOUD_CPU_RATIO", default_value_t = 4.0)]
        cpu_allocation_ratio: f64,
        /// Address of the S3-compatible endpoint.
        #[arg(long, env = "MINICLOUD_S3_LISTEN", default_value = "127.0.0.1:7071")]
        s3_listen: SocketAddr,
    },
    /// Instances (VMs).
    #[command(subcommand)]
    Vm(VmCmd),
    /// Projects (admin).
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Quotas.
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// This host.
    #[command(subcommand)]
    Host(HostCmd),
    /// Stream topics: create, list, describe, delete, produce, consume.
    #[command(subcommand)]
    Topic(api::cli::streams::TopicCmd),
    /// Consumer groups: list, describe (with lag).
    #[command(subcommand)]
    Group(api::cli::streams::GroupCmd),
    /// SQS-style queues: create, list, send, receive, delete.
    #[command(subcommand)]
    Queue(api::cli::streams::QueueCmd),
    /// Stream jobs: create, list, show (progress and lag), stop.
    #[command(subcommand)]
    Job(api::cli::streams::JobCmd),
    /// What the project's resources cost (this month by default).
    Bill(api::cli::billing::BillArgs),
    /// Access keys of the S3-compatible endpoint.
    #[command(subcommand, name = "s3-key")]
    S3Key(api::cli::storage::S3KeyCmd),
    /// Block volumes: create, list, show, resize, delete, snapshot.
    #[command(subcommand)]
    Volume(api::cli::storage::VolumeCmd),
    /// Run the hosted stream pipeline end to end (sensor VMs, a stream
    /// job, a sink into a bucket, a consumer VM, a Kappa replay, the bill).
    Pipeline(api::cli::pipeline::PipelineArgs),
    /// Object-storage buckets: create, list, ls, cat.
    #[command(subcommand)]
    Bucket(api::cli::storage::BucketCmd),
    /// Object-storage sinks of topics: create, list, show, delete.
    #[command(subcommand)]
    Sink(api::cli::streams::SinkCmd),
    /// Volume snapshots: list, show, delete.
    #[command(subcommand)]
    Snapshot(api::cli::storage::SnapshotCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Serve { .. }) {
        // A CLI whose output is piped into `head` ends quietly, as Unix
        // tools do, instead of panicking on EPIPE.
        // SAFETY: setting a signal disposition to its default is always sound.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.cmd {
        Cmd::Serve {
            data_dir,
            listen,
            images_dir,
            vmm,
            no_cli_config,
            cpu_allocation_ratio,
            s3_listen,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,tower_http=warn,sqlx=warn".into()),
                )
                .init();
            let opts = ServeOptions {
                data_dir: data_dir.unwrap_or_else(serve::default_data_dir),
                listen,
                images_dir: images_dir.unwrap_or_else(api::compute::images::default_dir),
                vmm: vmm.unwrap_or_else(serve::default_vmm),
                write_cli_config: !no_cli_config,
                cpu_allocation_ratio,
                s3_listen,
            };
            match tokio::runtime::Runtime::new() {
                Ok(rt) => rt.block_on(serve::run(opts)),
                Err(e) => Err(e.into()),
            }
        }
        Cmd::Vm(c) => cli::vm(&cli.conn, c),
        Cmd::Project(c) => cli::project(&cli.conn, c),
        Cmd::Quota(c) => cli::quota(&cli.conn, c),
        Cmd::Host(c) => cli::host(&cli.conn, c),
        Cmd::Topic(c) => api::cli::streams::topic(&cli.conn, c),
        Cmd::Group(c) => api::cli::streams::group(&cli.conn, c),
        Cmd::Queue(c) => api::cli::streams::queue(&cli.conn, c),
        Cmd::Job(c) => api::cli::streams::job(&cli.conn, c),
        Cmd::Bill(a) => api::cli::billing::bill(&cli.conn, a),
        Cmd::S3Key(c) => api::cli::storage::s3_key(&cli.conn, c),
        Cmd::Volume(c) => api::cli::storage::volume(&cli.conn, c),
        Cmd::Snapshot(c) => api::cli::storage::snapshot(&cli.conn, c),
        Cmd::Pipeline(a) => api::cli::pipeline::run(&cli.conn, a),
        Cmd::Bucket(c) => api::cli::storage::bucket(&cli.conn, c),
        Cmd::Sink(c) => api::cli::streams::sink(&cli.conn, c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minicloud: {e:#}");
            ExitCode::FAILURE
        }
    }
}
