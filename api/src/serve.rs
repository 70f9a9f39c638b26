//! `minicloud serve`: opens the state, bootstraps the admin project on
//! first start, reconciles VMs left by a previous daemon, and serves the
//! API until SIGTERM or Ctrl-C (VMs keep running).

use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use scheduler::{Scheduler, SchedulerConfig};
use tokio::sync::broadcast;

use crate::cli::config::CliConfig;
use crate::compute::{Compute, ComputeConfig};
use crate::routes;
use crate::state::AppState;
use crate::store::{Store, projects, tokens};

/// Daemon settings.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// State directory (database, VM directories, admin token).
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Image cache.
    pub images_dir: PathBuf,
    /// The `minicloud-vmm` binary.
    pub vmm: PathBuf,
    /// Write the CLI config (~/.config/minicloud/config.json) on first start.
    pub write_cli_config: bool,
    /// vCPUs per host CPU (overcommit; OpenStack's default is 4.0).
    pub cpu_allocation_ratio: f64,
    /// Address of the S3-compatible endpoint (the `storage` crate).
    pub s3_listen: SocketAddr,
}

/// Finds `minicloud-vmm`: `$MINICLOUD_VMM`, else next to this binary.
pub fn default_vmm() -> PathBuf {
    if let Some(p) = std::env::var_os("MINICLOUD_VMM") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("minicloud-vmm")))
        .unwrap_or_else(|| PathBuf::from("minicloud-vmm"))
}

/// The default data directory.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("MINICLOUD_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::compute::images::home().join(".local/share/minicloud"))
}

/// Creates the admin project and token on first start.
async fn bootstrap(store: &Store, opts: &ServeOptions) -> anyhow::Result<()> {
    if projects::admin(&store.pool).await?.is_some() {
        return Ok(());
    }
    let mut tx = store.write().await?;
    let quotas = projects::Quotas {
        max_instances: 1000,
        max_vcpus: 4096,
        max_memory_mib: 4 << 20,
        max_volumes: 1000,
        max_buckets: 1000,
        max_topics: 1000,
    };
    let admin = projects::create(&mut tx, "admin", true, quotas).await?;
    let token = tokens::create(&mut tx, &admin.id, "admin").await?;
    tx.commit().await?;
    let path = opts.data_dir.join("admin.token");
    write_secret(&path, &token)?;
    let url = format!("http://{}", opts.listen);
    if opts.write_cli_config {
        let cfg = CliConfig {
            url: url.clone(),
            token: token.clone(),
        };
        match cfg.save() {
            Ok(p) => println!("minicloud: CLI configured in {}", p.display()),
            Err(e) => eprintln!("minicloud: could not write the CLI config: {e:#}"),
        }
    }
    println!("minicloud: first start: created the admin project");
    println!(
        "minicloud: admin token written to {} (mode 0600)",
        path.display()
    );
    println!("minicloud: try: minicloud vm launch --image mini --vcpus 1 --memory 128 --wait");
    println!(
        "minicloud:  or: curl -H \"Authorization: Bearer $(cat {})\" {url}/v1/instances",
        path.display()
    );
    Ok(())
}

/// Writes a file readable by its owner only.
pub fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Builds the state and the router (tests use this too).
pub async fn build(opts: &ServeOptions) -> anyhow::Result<(AppState, axum::Router)> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating {}", opts.data_dir.display()))?;
    std::fs::set_permissions(&opts.data_dir, std::fs::Permissions::from_mode(0o700))?;
    let store = Store::open(&opts.data_dir.join("minicloud.db"))
        .await
        .context("opening the database")?;
    metering::migrate(&store.pool)
        .await
        .context("metering schema")?;
    storage::migrate(&store.pool)
        .await
        .context("storage schema")?;
    bootstrap(&store, opts).await?;
    let book_path = opts.data_dir.join("pricebook.toml");
    let prices = if book_path.exists() {
        metering::PriceBook::from_path(&book_path)
            .with_context(|| format!("price book {}", book_path.display()))?
    } else {
        metering::PriceBook::default_book().context("the default price book")?
    };
    let prices = std::sync::Arc::new(prices);
    let capability = hypervisor::probe::probe();
    let host = scheduler::discover_local_host("local")
        .context("discovering this host's CPUs and memory")?;
    let scheduler = Scheduler::new(SchedulerConfig {
        cpu_allocation_ratio: opts.cpu_allocation_ratio,
        ..SchedulerConfig::default()
    })
    .context("scheduler config")?;
    scheduler
        .add_host(host)
        .context("adding this host to the scheduler")?;
    let (events, _) = broadcast::channel(4096);
    let guest = crate::guest::GuestApi::new(crate::guest::GuestLimits::from_env());
    let compute = Compute::new(
        store.clone(),
        ComputeConfig {
            vmm: opts.vmm.clone(),
            images_dir: opts.images_dir.clone(),
            vms_dir: opts.data_dir.join("vms"),
            scheduler,
            host_id: "local".into(),
            capability,
            guest: guest.clone(),
        },
        events,
    );
    compute
        .reconcile()
        .await
        .map_err(|e| anyhow::anyhow!(e.message))
        .context("reconciling VMs")?;
    let streams =
        streams::Streams::open(streams::StreamsConfig::new(opts.data_dir.join("streams")))
            .map_err(|e| anyhow::anyhow!("opening streams: {e}"))?;
    streams
        .spawn_maintenance(std::time::Duration::from_secs(1))
        .map_err(|e| anyhow::anyhow!("streams maintenance: {e}"))?;
    let resumed = streams
        .resume_jobs()
        .await
        .map_err(|e| anyhow::anyhow!("resuming stream jobs: {e}"))?;
    if !resumed.is_empty() {
        tracing::info!(jobs = ?resumed, "resumed stream jobs");
    }
    spawn_budget_checks(store.clone(), prices.clone(), compute.clone());
    crate::streams_usage::spawn(store.clone(), streams.clone());
    let volumes = storage::volumes::Volumes::open(store.pool.clone(), &opts.data_dir)
        .await
        .context("opening volumes")?;
    let mut objects = storage::s3::Backend::open(store.pool.clone(), &opts.data_dir.join("s3"))
        .await
        .context("opening the object store")?;
    objects.set_bucket_quota(routes::storage::bucket_quota(store.pool.clone()));
    let sinks = crate::sinks::Sinks::new(store.clone(), streams.clone(), objects.clone());
    let resumed = sinks.resume_all().await.context("resuming sinks")?;
    if resumed > 0 {
        tracing::info!(sinks = resumed, "resumed sinks");
    }
    let state = AppState {
        objects,
        sinks,
        volumes,
        store,
        compute,
        streams,
        prices,
    };
    let app = routes::app(state.clone());
    guest.set_router(app.clone());
    Ok((state, app))
}

/// Every minute, emits budget crossings as lifecycle events
/// (`billing.budget_crossed`), which `GET /v1/events` and the CLI show.
fn spawn_budget_checks(
    store: Store,
    prices: std::sync::Arc<metering::PriceBook>,
    compute: std::sync::Arc<Compute>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            close_last_month(&store, &prices).await;
            let crossed =
                match metering::check_budgets(&store.pool, &prices, crate::store::now_ms()).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "budget check failed");
                        continue;
                    }
                };
            for b in crossed {
                let msg = format!(
                    "accrued {} {} crossed the budget threshold {} for {}",
                    b.accrued, b.currency, b.threshold, b.month
                );
                compute
                    .publish(&b.project, "billing.budget_crossed", &b.project, &msg)
                    .await;
            }
        }
    });
}

/// Closes the previous calendar month once it is over, making its
/// invoices immutable (later usage for it becomes adjustments).
async fn close_last_month(store: &Store, prices: &metering::PriceBook) {
    let now = crate::store::now_ms();
    let last = metering::Month::containing(metering::Month::containing(now).start() - 1);
    match metering::invoice::closed_months(&store.pool).await {
        Ok(closed) if closed.contains(&last) => {}
        Ok(_) => match metering::invoice::close_month(&store.pool, prices, last, now).await {
            Ok(_) => tracing::info!(month = %last, "closed the month's invoices"),
            Err(e) => tracing::debug!(month = %last, error = %e, "month not closed"),
        },
        Err(e) => tracing::warn!(error = %e, "listing closed months"),
    }
}

/// Runs the daemon.
pub async fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let (state, app) = build(&opts).await?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listening on {}", opts.listen))?;
    println!(
        "minicloud: API on http://{} (OpenAPI at /openapi.json)",
        listener.local_addr()?
    );
    // A busy S3 port does not keep the control plane down (several daemons
    // may share a host in tests): the endpoint is then off, loudly.
    let s3 = storage::s3::serve_backend(
        opts.s3_listen,
        state.store.pool.clone(),
        state.objects.clone(),
        storage::s3::Options::default(),
    )
    .await;
    // Stored bytes are billed whether or not the endpoint is up (sinks
    // write objects without it); requests only count when it is.
    let s3_usage = match &s3 {
        Ok(s) => {
            println!("minicloud: S3 on http://{}", s.local_addr);
            s.usage.clone()
        }
        Err(e) => {
            eprintln!(
                "minicloud: S3 endpoint off: cannot serve on {}: {e}",
                opts.s3_listen
            );
            std::sync::Arc::new(storage::s3::usage::S3Usage::default())
        }
    };
    crate::s3_usage::spawn(state.store.clone(), s3_usage);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    if let Err(e) = state.streams.shutdown().await {
        eprintln!("minicloud: closing streams: {e}");
    }
    println!("minicloud: stopped (VMs keep running; the next start reattaches to them)");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
