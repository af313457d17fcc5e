//! `canh-collector`: the command-line shell. Errors are reported once, here.

use anyhow::Context;
use canh_collector::admin::{self, AdminState};
use canh_collector::metrics::Metrics;
use canh_collector::{api, config, consume, lag, rollup, store};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod commands;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::watch;

/// mimalloc instead of glibc's malloc: the consumer allocates a batch's events, rows and detection
/// inputs (a `serde_json::Value` tree per event) and frees them all after the write, a pattern
/// where glibc spent a quarter of the collector's CPU consolidating and unlinking free chunks
/// (BENCHMARKS.md, storage section, "Round 4").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turn transparent huge pages off for this process. mimalloc asks for them on its arenas
/// (`madvise(MADV_HUGEPAGE)`), and a batch's short-lived event trees keep taking fresh memory: each
/// fault then zeroes a whole 2 MiB page, a quarter of the collector's CPU with the rule pack
/// (`clear_page_erms`; BENCHMARKS.md, storage section, eighth round). The flag is the process's and
/// is read at every fault, so pages mapped before this call are covered too. A kernel without it
/// (before 3.15) refuses it; the collector then runs as before.
#[allow(unsafe_code)]
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and reads or writes no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "transparent huge pages left on");
    }
}

#[derive(Parser)]
#[command(name = "canh-collector", version, about = "Canh collector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume events from Kafka and store them in ClickHouse.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create the database and apply the schema migrations, then exit.
    Migrate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Drop the daily partitions past each table's retention once, then exit.
    Retention {
        #[arg(long)]
        config: PathBuf,
    },
    /// Serve the HTTP API and the dashboards (the `[api]` section).
    Api {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create an API token: prints the token once and the users-file entry holding its hash.
    Token {
        #[arg(long)]
        name: String,
        /// viewer, analyst, responder or admin.
        #[arg(long)]
        role: String,
        /// An organization id, or "*" for the national centre.
        #[arg(long)]
        tenant: String,
    },
    /// Run Sigma rules over events (JSON lines) and print the alerts as JSON lines.
    Detect(commands::DetectArgs),
    /// Work with rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load a directory (e.g. SigmaHQ's rules) and report what applies to Canh's events.
    Report { dir: PathBuf },
    /// Run each rule's test file (`x.test.yml` beside `x.yml`).
    Test {
        #[arg(default_value = "rules")]
        dir: PathBuf,
    },
    /// Check rule files: they load, carry ATT&CK tags, have tests, use Canh's fields.
    Lint {
        #[arg(default_value = "rules")]
        dir: PathBuf,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CANH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let offline = match &cli.command {
        Command::Detect(args) => Some(commands::detect(args)),
        Command::Rules { command: RulesCommand::Report { dir } } => Some(commands::report(dir)),
        Command::Rules { command: RulesCommand::Test { dir } } => Some(commands::test(dir)),
        Command::Rules { command: RulesCommand::Lint { dir } } => Some(commands::lint(dir)),
        _ => None,
    };
    if let Some(result) = offline {
        match result {
            Ok(true) => return,
            Ok(false) => std::process::exit(1),
            Err(err) => {
                eprintln!("canh-collector: error: {err:#}");
                std::process::exit(1);
            }
        }
    }
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("canh-collector: error: starting the runtime: {err}");
                std::process::exit(1);
            }
        };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run(&config).await,
            Command::Migrate { config } => migrate(&config).await,
            Command::Retention { config } => retention(&config).await,
            Command::Detect { .. } | Command::Rules { .. } => Ok(()),
            Command::Api { config } => api(&config).await,
            Command::Token { name, role, tenant } => token(&name, &role, &tenant),
        }
    });
    if let Err(err) = result {
        eprintln!("canh-collector: error: {err:#}");
        std::process::exit(1);
    }
}

async fn migrate(path: &std::path::Path) -> anyhow::Result<()> {
    let settings = config::load(path)?;
    let ch = &settings.config.clickhouse;
    let applied = store::migrate(&ch.url, &ch.user, &ch.database).await?;
    println!("database {}: {} migration(s) applied now", ch.database, applied.len());
    Ok(())
}

async fn retention(path: &std::path::Path) -> anyhow::Result<()> {
    let settings = config::load(path)?;
    let ch = &settings.config.clickhouse;
    let db = store::client(&ch.url, &ch.user, Some(&ch.database));
    let dropped =
        store::apply_retention(&db, &ch.database, &settings.retention_days, api::now_ns())
            .await
            .context("applying retention")?;
    for (table, partition) in &dropped {
        println!("dropped {table} partition {partition}");
    }
    println!("{} partition(s) dropped", dropped.len());
    Ok(())
}

async fn api(path: &std::path::Path) -> anyhow::Result<()> {
    let settings = config::load(path)?;
    let ch = &settings.config.clickhouse;
    let api = &settings.config.api;
    let users_text = std::fs::read_to_string(&settings.api_users)
        .with_context(|| format!("reading users file {}", settings.api_users.display()))?;
    let users = canh_collector::auth::Users::parse(&users_text)
        .with_context(|| format!("users file {}", settings.api_users.display()))?;
    let users_count = users.len();
    let state = canh_collector::api::ApiState {
        db: store::client(&ch.url, &ch.user, Some(&ch.database)),
        users: Arc::new(users),
        limits: canh_collector::api::Limits {
            max_rows: api.max_rows,
            max_window_ns: i64::try_from(settings.api_max_window.as_nanos()).unwrap_or(i64::MAX),
            query_timeout_secs: settings.api_query_timeout.as_secs().max(1),
        },
        kafka: match lag::LagProbe::new(&settings, LAG_TIMEOUT) {
            Ok(probe) => Some(Arc::new(probe)),
            Err(err) => {
                tracing::warn!(error = %err, "no kafka lag on the health page");
                None
            }
        },
    };
    let listener = tokio::net::TcpListener::bind(api.listen)
        .await
        .with_context(|| format!("binding the api port {}", api.listen))?;
    let app = canh_collector::api::app(state);
    if let (Some(cert), Some(key)) = (&api.tls_cert, &api.tls_key) {
        let acceptor = canh_collector::tls::acceptor(cert, key)?;
        let listener = canh_collector::tls::TlsListener::new(listener, acceptor)
            .context("starting the tls listener")?;
        tracing::info!(listen = %api.listen, users = users_count, "api listening (https)");
        axum::serve(listener, app)
            .with_graceful_shutdown(wait_for_signal())
            .await
            .context("serving the api")?;
    } else {
        tracing::info!(listen = %api.listen, users = users_count, "api listening (http)");
        axum::serve(listener, app)
            .with_graceful_shutdown(wait_for_signal())
            .await
            .context("serving the api")?;
    }
    tracing::info!("api stopped");
    Ok(())
}

fn token(name: &str, role: &str, tenant: &str) -> anyhow::Result<()> {
    if !["viewer", "analyst", "responder", "admin"].contains(&role) {
        anyhow::bail!("role {role:?}: use viewer, analyst, responder or admin");
    }
    if name.is_empty() || tenant.is_empty() {
        anyhow::bail!("name and tenant must not be empty");
    }
    let (token, hash) = canh_collector::auth::new_token().context("reading /dev/urandom")?;
    eprintln!("token for {name} (shown once; give it to the user): {token}");
    println!(
        "[[user]]\nname = {name:?}\nrole = {role:?}\ntenant = {tenant:?}\ntoken_sha256 = {hash:?}"
    );
    Ok(())
}

async fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let settings = config::load(path)?;
    let ch = &settings.config.clickhouse;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(settings.config.admin.listen)
        .await
        .with_context(|| format!("binding the admin port {}", settings.config.admin.listen))?;
    let admin_app = admin::app(AdminState { metrics: metrics.clone(), ready: ready.clone() });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut admin_stop = stop_rx.clone();
    let admin = tokio::spawn(async move {
        let server = axum::serve(listener, admin_app).with_graceful_shutdown(async move {
            let _ = admin_stop.changed().await;
        });
        if let Err(err) = server.await {
            tracing::error!(error = %err, "admin server failed");
        }
    });

    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping on signal");
        let _ = stop_tx.send(true);
    });

    // The group's lag, measured from the start: it grows while ClickHouse is not there yet.
    let probe = lag::LagProbe::new(&settings, LAG_TIMEOUT).context("creating the lag probe")?;
    tokio::spawn(measure_lag(
        Arc::new(probe),
        metrics.clone(),
        settings.lag_interval,
        stop_rx.clone(),
    ));

    // ClickHouse may come up after the collector (a host reboot): retry the schema until it does.
    let mut backoff = std::time::Duration::from_millis(500);
    let mut migrate_stop = stop_rx.clone();
    loop {
        match store::migrate(&ch.url, &ch.user, &ch.database).await {
            Ok(_) => break,
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "cannot apply the schema yet");
                tokio::select! {
                    _ = migrate_stop.changed() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(settings.max_backoff);
            }
        }
    }
    let mut db = store::client(&ch.url, &ch.user, Some(&ch.database));
    if ch.compression == "none" {
        db = db.with_compression(clickhouse::Compression::None);
    }

    // Retention: drop expired daily partitions now and then at every interval.
    let retention_db = db.clone();
    let database = ch.database.clone();
    let days = settings.retention_days.clone();
    let interval = settings.retention_interval;
    let mut retention_stop = stop_rx.clone();
    tokio::spawn(async move {
        loop {
            if let Err(err) =
                store::apply_retention(&retention_db, &database, &days, api::now_ns()).await
            {
                tracing::warn!(error = %err, "retention failed; will retry at the next interval");
            }
            tokio::select! {
                _ = retention_stop.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    });

    // The hourly top sources for long overviews (rollup.rs), every few minutes.
    let rollup_db = db.clone();
    let mut rollup_stop = stop_rx.clone();
    tokio::spawn(async move {
        loop {
            let now_secs = api::now_ns().div_euclid(1_000_000_000);
            match rollup::summarize(&rollup_db, now_secs).await {
                Ok(hours) if !hours.is_empty() => {
                    tracing::info!(hours = hours.len(), "top sources summarized")
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "summarizing top sources failed; will retry")
                }
            }
            tokio::select! {
                _ = rollup_stop.changed() => return,
                _ = tokio::time::sleep(ROLLUP_INTERVAL) => {}
            }
        }
    });

    // SIGHUP reloads the detection rules; the counter only says "again".
    let (reload_tx, reload_rx) = watch::channel(0u64);
    tokio::spawn(async move {
        let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot watch SIGHUP; rule reload is off");
            return;
        };
        let mut count = 0u64;
        while hangup.recv().await.is_some() {
            count += 1;
            tracing::info!("reloading rules on SIGHUP");
            if reload_tx.send(count).is_err() {
                return;
            }
        }
    });
    consume::run(Arc::new(settings), db, metrics.clone(), stop_rx, reload_rx, ready).await?;
    let _ = admin.await;
    tracing::info!(
        stored = metrics.records.with_label_values(&["stored"]).get(),
        dead_letters = metrics.records.with_label_values(&["dead_letter"]).get(),
        "collector stopped"
    );
    Ok(())
}

/// How often settled hours are looked for to summarize their top sources.
const ROLLUP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// Longest wait for one Kafka answer while measuring the lag.
const LAG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Measure the group's lag every `every` until stopped; a failed measurement is counted, logged
/// and leaves the last values in place.
async fn measure_lag(
    probe: Arc<lag::LagProbe>,
    metrics: Arc<Metrics>,
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let p = probe.clone();
        match tokio::task::spawn_blocking(move || p.measure()).await {
            Ok(Ok(partitions)) => metrics.set_kafka_lag(&partitions),
            Ok(Err(err)) => {
                metrics.errors.with_label_values(&["lag", "kafka"]).inc();
                tracing::warn!(error = %err, "measuring the kafka lag failed; will retry");
            }
            Err(err) => tracing::warn!(error = %err, "the lag measurement task failed"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
