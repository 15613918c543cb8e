//! `superd`: the daemon. Thin: role selection, flags, logging, wiring.
//!
//! The same binary is the in-container init shim: when executed (from the sealed memfd) with
//! argv[0] `superd-init: <name>` it takes that role before any thread or runtime exists.

#![deny(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use signal_hook::iterator::Signals;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use superd::api::PowerAction;
use superd::pid1::power::{PowerLatch, PowerMsg};
use superd::runtime::sync::SHIM_ARGV0_PREFIX;
use superd::{ctl, pid1, runtime, supervisor, watch};

const FILES_AND_SIGNALS: &str = "\
Files:
  /etc/workloads.d/*.toml   manifests: one workload each, named after the file
  /var/lib/superd/          state (mode 0700): superd.lock, instances/ (what runs),
                            logs/<name>.log (rotated .1 .2 ...), network/ leases,
                            images/ (the image store: blobs/, layers/, refs.json)
  /run/superd/superd.sock   control socket, for superctl (mode 0600)

Signals:
  SIGHUP                    re-read every manifest
  SIGTERM, SIGINT           stop every workload within its stop timeout, then exit 0
As PID 1 (or with --init-mode):
  SIGTERM, SIGPWR, SIGUSR2, SIGRTMIN+4   stop every workload, then power off
  SIGINT (ctrl-alt-del), SIGRTMIN+5      ... then reboot
  SIGUSR1, SIGRTMIN+3                    ... then halt
  kernel command line: superd.manifests=DIR, superd.log=FILTER

Environment:
  SUPERD_LOG      tracing filter, e.g. `debug` or `superd=trace`
  NOTIFY_SOCKET   set by systemd (Type=notify): superd reports READY=1 and STOPPING=1

The manifest reference is in README.md (/usr/share/doc/superd/ when installed as a package).";

/// A declarative workload supervisor: runs every manifest in a directory as an isolated,
/// supervised container.
#[derive(Debug, Parser)]
#[command(version, about, after_long_help = FILES_AND_SIGNALS)]
struct Cli {
    /// Directory of `*.toml` manifests.
    #[arg(long, default_value = "/etc/workloads.d")]
    manifests: PathBuf,
    /// Everything superd keeps (logs in `logs/` unless --log-dir).
    #[arg(long, default_value = "/var/lib/superd")]
    state_dir: PathBuf,
    /// Where workload logs go (default: <state-dir>/logs).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Size of one workload log file before it is rotated, for manifests without
    /// `[logs] max_size` (bytes, or K/M/G).
    #[arg(long, default_value = "10M", value_parser = parse_log_size)]
    log_max_size: u64,
    /// Log files kept per workload (the current one included), for manifests without
    /// `[logs] max_files`.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    log_max_files: u32,
    /// How long a changed manifest's new generation must run (and stay healthy) before its
    /// spec is the last good one, for manifests without `[rollout] bake`; one that crashes or
    /// turns unhealthy sooner is replaced by the last good spec. 0 (the default) turns
    /// rollback off.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    rollout_bake: std::time::Duration,
    /// A hardware watchdog device (e.g. /dev/watchdog) to pet while the supervisor answers
    /// and every `[watchdog] critical` workload runs healthy; the machine resets otherwise.
    /// Disarmed on an orderly poweroff or reboot. As PID 1: `superd.watchdog=DEVICE`.
    #[arg(long, value_name = "DEVICE")]
    watchdog: Option<PathBuf>,
    /// The watchdog's timeout (as PID 1: `superd.watchdog_timeout=SECONDS`); superd asks
    /// every third of it.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    watchdog_timeout: std::time::Duration,
    /// Control socket path.
    #[arg(long, default_value = superd::api::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Group (numeric gid) allowed to use the control socket besides root.
    #[arg(long)]
    socket_group: Option<u32>,
    /// Also serve Prometheus metrics (`GET /metrics`, nothing else) on this TCP address, e.g.
    /// `127.0.0.1:9469`; off by default (the control socket always serves `/metrics`).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Root of the workload cgroups: relative to superd's own cgroup in each hierarchy unless
    /// it starts with `/`.
    #[arg(long, default_value = "superd")]
    cgroup_root: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Bridge for `mode = "bridge"` workloads (created on first need, removed on exit).
    #[arg(long, default_value = "superd0", value_parser = parse_bridge)]
    bridge: String,
    /// Subnet of the bridge; the gateway is its first address.
    #[arg(long, default_value = "10.77.0.0/16")]
    subnet: superd::network::Subnet,
    /// Do not enable IPv4 forwarding or masquerade the subnet's outbound traffic.
    #[arg(long)]
    no_nat: bool,
    /// Act as the machine's init even when not PID 1 (PID 1 is detected by itself): early
    /// mounts, module loading, power signals, poweroff at the end.
    #[arg(long)]
    init_mode: bool,
    /// A registry spoken to over plain HTTP (`host[:port]`; repeat for more). Every other
    /// registry is HTTPS only.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// Registry credentials, Docker's `config.json` format (`{"auths": {"HOST": {"auth":
    /// "base64(user:password)"}}}`); must be owned by root, mode 0600. Missing = anonymous.
    #[arg(long, default_value = "/etc/superd/registry-auth.json")]
    registry_auth: PathBuf,
    /// A read-only image store searched after the main one (repeatable): a store directory,
    /// or a squashfs/erofs file of one that superd mounts read-only (pre-seeded images; see
    /// `superd image import --store`). In PID-1 mode /usr/lib/superd/images.img is used
    /// when it exists and none is given.
    #[arg(long = "image-store-ro", value_name = "PATH")]
    image_stores_ro: Vec<PathBuf>,
    /// Print this help as a man page (roff) and exit (used to package superd.8).
    #[arg(long, hide = true)]
    man: bool,
    /// A one-off job instead of the daemon.
    #[command(subcommand)]
    job: Option<Job>,
}

/// Jobs superd runs without becoming the daemon.
#[derive(Debug, clap::Subcommand)]
enum Job {
    /// Image store jobs for build hosts (a running daemon takes them through superctl).
    #[command(subcommand)]
    Image(ImageJob),
}

#[derive(Debug, clap::Subcommand)]
enum ImageJob {
    /// Import image archives (docker save, OCI archive or layout; `-` = stdin) into a store
    /// no daemon is using, e.g. an appliance's root before it is packed.
    Import {
        /// The store (default: <state-dir>/images).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Name for an archive holding one image without a full name.
        #[arg(long)]
        name: Option<String>,
        /// Archives or OCI layout directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `--log-max-size`: a size of at least 4K.
fn parse_log_size(s: &str) -> Result<u64, String> {
    let n = superd::manifest::parse_size(s)?;
    if n < 4096 {
        return Err(format!("`{s}` is too small: at least 4K"));
    }
    Ok(n)
}

/// A Linux interface name: 1-15 bytes, no `/`, whitespace, `:` or NUL, not `.` or `..`.
fn parse_bridge(s: &str) -> Result<String, String> {
    let bad = |c: char| c == '/' || c == ':' || c.is_whitespace() || c == '\0';
    if s.is_empty() || s.len() > 15 || s == "." || s == ".." || s.chars().any(bad) {
        return Err(format!(
            "`{s}` is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
        ));
    }
    Ok(s.to_string())
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    few_malloc_arenas();
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if argv0.to_string_lossy().starts_with(SHIM_ARGV0_PREFIX) {
        runtime::shim::main();
    }
    if argv0
        .to_string_lossy()
        .starts_with(runtime::exec::EXEC_ARGV0_PREFIX)
    {
        runtime::shim::exec::main();
    }
    if argv0 == superd::images::layer::sandbox::UNPACK_ARGV0 {
        superd::images::layer::sandbox::child_main();
    }
    let pid1 = pid1::is_pid1();
    let mut cli = if pid1 {
        // The kernel hands init every word of its command line it does not know (`single`,
        // `splash`): as PID 1 a command line clap rejects, or --help, must not end the
        // process (that would panic the kernel). Report it and run with the defaults.
        Cli::try_parse().unwrap_or_else(|e| {
            eprintln!(
                "superd: ignoring the command line {:?} as PID 1:\n{}",
                std::env::args_os().skip(1).collect::<Vec<_>>(),
                e.render()
            );
            Cli::parse_from(["superd"])
        })
    } else {
        Cli::parse()
    };
    if cli.man && !pid1 {
        use clap::CommandFactory;
        let man = clap_mangen::Man::new(Cli::command()).section("8");
        if let Err(e) = man.render(&mut std::io::stdout()) {
            eprintln!("superd: writing the man page: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let (Some(job), false) = (&cli.job, pid1) {
        std::process::exit(run_job(job, &cli.state_dir));
    }
    if cli.init_mode || pid1 {
        init_main(cli);
    }
    init_logging(cli.log_format, false);
    cli.init_mode = false;
    let signals = match Signals::new([libc::SIGTERM, libc::SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("superd: registering SIGTERM and SIGINT: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = run(cli, Some(signals)) {
        let text = superd::report::chain(e.as_ref());
        tracing::error!("{text}");
        eprintln!("superd: {text}");
        std::process::exit(1);
    }
}

/// Runs a daemonless job; returns the exit code.
fn run_job(job: &Job, state_dir: &std::path::Path) -> i32 {
    let Job::Image(ImageJob::Import { store, name, files }) = job;
    let root = store.clone().unwrap_or_else(|| state_dir.join("images"));
    let unpacker = superd::images::layer::sandbox::Unpacker::new("/proc/self/exe", None);
    let store = match superd::images::store::Store::open(&root, unpacker) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("superd: {}", superd::report::chain(&e));
            return 1;
        }
    };
    for f in files {
        let res = if f.as_os_str() == "-" {
            superd::images::import::import_stream(&store, std::io::stdin().lock(), name.as_deref())
        } else if f.is_dir() {
            superd::images::import::import_layout(&store, f, name.as_deref())
        } else {
            match std::fs::File::open(f) {
                Ok(file) => superd::images::import::import_stream(&store, file, name.as_deref()),
                Err(e) => {
                    eprintln!("superd: opening {}: {e}", f.display());
                    return 1;
                }
            }
        };
        match res {
            Ok(images) => {
                for i in images {
                    println!("imported {i}");
                }
            }
            Err(e) => {
                eprintln!(
                    "superd: importing {}: {}",
                    f.display(),
                    superd::report::chain(&e)
                );
                return 1;
            }
        }
    }
    0
}

/// glibc gives each thread that allocates an arena of its own (up to 8 per core), and memory
/// freed in one is not reused by the others: a burst of work on the blocking pool (reading a
/// directory of large manifests) would leave superd's RSS high. Two arenas are plenty for
/// a daemon of a few threads.
fn few_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt(3) before any thread exists; it only sets an allocator parameter.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Every 10 s, gives the pages of freed heap memory back to the kernel (`malloc_trim`).
/// glibc returns only the top of a heap by itself, so the few kilobytes a workload's start, a
/// probe or a request leave free in the middle stay resident after a burst (a hundred workloads
/// starting at once, their probes firing together) for as long as superd runs.
async fn return_freed_memory() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim(3) only releases free pages of the allocator's own arenas.
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// PID-1 mode: set the machine up, run the daemon, and end in poweroff/reboot/halt — never in
/// an exit, which would panic the kernel.
fn init_main(mut cli: Cli) -> ! {
    std::panic::set_hook(Box::new(|info| eprintln!("superd: panic: {info}")));
    // PID 1 only receives the signals it handles: a power signal sent during the early setup
    // would be lost. Blocked, it stays pending (across the re-exec too) until the handlers
    // below exist; then it waits in the iterator until the daemon reads it.
    let blocked = pid1::power::set_power_signals_blocked(true);
    let problems = std::panic::catch_unwind(pid1::early_setup)
        .unwrap_or_else(|_| vec!["the early setup panicked (see above)".to_string()]);
    let signals = Signals::new(pid1::power::power_signals());
    let unblocked = pid1::power::set_power_signals_blocked(false);
    let overrides = pid1::overrides();
    if let Some(m) = overrides.manifests {
        cli.manifests = m;
    }
    if let Some(w) = overrides.watchdog {
        cli.watchdog = Some(w);
    }
    if let Some(t) = overrides.watchdog_timeout {
        cli.watchdog_timeout = std::time::Duration::from_secs(t.into());
    }
    if let Some(filter) = overrides.log {
        // SAFETY: no other thread exists yet.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("SUPERD_LOG", filter)
        };
    }
    init_logging(cli.log_format, true);
    for p in problems {
        tracing::warn!("early setup: {p}");
    }
    if let Err(e) = blocked.and(unblocked) {
        tracing::warn!("holding power signals during the early setup: {e}");
    }
    let signals = signals
        .map_err(|e| {
            tracing::error!("registering the power signals: {e}; only superctl can power off")
        })
        .ok();
    cli.init_mode = true;
    // AssertUnwindSafe: after a panic nothing of the daemon is used again (emergency mode
    // registers its own signals).
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli, signals))) {
        Ok(Ok(Some(action))) => pid1::end(action),
        Ok(Ok(None)) => pid1::emergency("the daemon stopped without a power request"),
        Ok(Err(e)) => pid1::emergency(&superd::report::chain(e.as_ref())),
        Err(_) => pid1::emergency("superd panicked (see above)"),
    }
}

/// Text logs go to stderr; on a console (PID-1 mode) as plain `superd: …` lines without
/// colours or timestamps, so each state change reads `superd: <name> <state> …`.
fn init_logging(format: LogFormat, console: bool) {
    use tracing_subscriber::{fmt, prelude::*, EnvFilter};
    let filter = EnvFilter::builder()
        .with_env_var("SUPERD_LOG")
        .with_default_directive(tracing::Level::INFO.into())
        .from_env_lossy();
    let reg = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => reg
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Text if console => reg
            .with(
                fmt::layer()
                    .event_format(pid1::console::ConsoleFormat)
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Text => {
            // Colours only for a person at a terminal, never into a file or the journal.
            use std::io::IsTerminal;
            let ansi = std::io::stderr().is_terminal();
            reg.with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .init()
        }
    }
}

/// Runs the daemon until a stop request; returns the power action asked for in PID-1 mode.
fn run(cli: Cli, signals: Option<Signals>) -> anyhow::Result<Option<PowerAction>> {
    // Before anything is touched: a second superd on the same state directory must exit
    // here and change nothing (not the first one's cgroups, bridge or nftables table).
    let state = runtime::state::StateDir::lock(&cli.state_dir)?;
    // The reaper registers SIGCHLD before any child or runtime thread exists.
    let reaper = runtime::reaper::Reaper::start().context("starting the reaper")?;
    let cgroups =
        runtime::cgroups::CgroupManager::detect(&cli.cgroup_root).context("setting up cgroups")?;
    let log_dir = cli
        .log_dir
        .clone()
        .unwrap_or_else(|| cli.state_dir.join("logs"));
    let socket_dir = cli.socket.parent().unwrap_or(&cli.socket).to_path_buf();
    let rt = runtime::Runtime::new(reaper.clone(), cgroups, state, log_dir.clone())
        .with_context(|| format!("preparing state dir {}", cli.state_dir.display()))?
        .hide(&[&cli.state_dir, &log_dir, &socket_dir, &cli.manifests])
        .with_log_limits(runtime::sync::LogCfg {
            max_size: cli.log_max_size,
            max_files: cli.log_max_files,
        });
    let store_dir = cli.state_dir.join("images");
    let unpacker =
        superd::images::layer::sandbox::Unpacker::new("/proc/self/exe", Some(reaper.clone()));
    let mut ro = cli.image_stores_ro.clone();
    if ro.is_empty() && cli.init_mode && Path::new(pid1::SEEDED_IMAGES).is_file() {
        ro.push(PathBuf::from(pid1::SEEDED_IMAGES));
    }
    let store = superd::images::store::Store::open(&store_dir, unpacker)
        .with_context(|| format!("opening the image store {}", store_dir.display()))?;
    // A read-only store that cannot be used is logged and skipped: the workloads that need
    // its images fail to start with a clear error; every other one runs.
    let mut prepared = Vec::new();
    for (n, p) in ro.iter().enumerate() {
        match superd::images::seeded::prepare(p, &cli.state_dir.join("images-ro"), n) {
            Ok(d) => prepared.push(d),
            Err(e) => tracing::error!("read-only image store {}: {e}; not used", p.display()),
        }
    }
    let (store, skipped) =
        store.with_read_only(prepared.iter().map(|p| p.path().to_path_buf()).collect());
    for e in skipped {
        tracing::error!("{}; not used", superd::report::chain(&e));
    }
    for d in store.read_only() {
        tracing::info!("read-only image store {}", d.display());
    }
    let store = Arc::new(store);
    let rt = rt.with_images(Arc::clone(&store));
    #[cfg(feature = "registry")]
    let rt = rt.with_puller(Arc::new(superd::images::pull::Puller::new(
        store,
        superd::images::pull::RegistryConfig {
            insecure: cli.insecure_registries.clone(),
            auth_file: Some(cli.registry_auth.clone()),
        },
    )));
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = tokio_rt.block_on(async move {
        tokio::spawn(return_freed_memory());
        let net_cfg = runtime::net::NetConfig {
            bridge: cli.bridge.clone(),
            subnet: cli.subnet,
            nat: !cli.no_nat,
            dir: cli.state_dir.join("network"),
        };
        let (network, lost) = runtime::net::Network::new(net_cfg, reaper, &rt.adoptable_links())
            .await
            .context("setting up bridge networking")?;
        rt.give_up(&lost);
        daemon(cli, Arc::new(rt.with_network(Arc::new(network))), signals).await
    });
    // The read-only stores superd mounted go after every workload has stopped.
    drop(prepared);
    result
}

async fn daemon(
    cli: Cli,
    rt: Arc<runtime::Runtime>,
    signals: Option<Signals>,
) -> anyhow::Result<Option<PowerAction>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    // Stop requests: SIGTERM/SIGINT normally; as PID 1 every power signal, and superctl.
    // The signals were registered before anything else (see init_main); a thread turns each
    // into a message. The first signal or request to claim the latch decides; a later signal
    // escalates.
    let (power_tx, mut power_rx) = tokio::sync::mpsc::channel::<PowerMsg>(4);
    let latch = PowerLatch::default();
    if let Some(mut signals) = signals {
        let (tx, latch) = (power_tx.clone(), latch.clone());
        std::thread::Builder::new()
            .name("superd-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let action = pid1::power::action_for(sig).unwrap_or(PowerAction::Poweroff);
                    let msg = match latch.claim(action) {
                        Ok(()) => PowerMsg::Request(action),
                        Err(_) => PowerMsg::Again(action),
                    };
                    if tx.blocking_send(msg).is_err() {
                        break;
                    }
                }
            })
            .context("starting the signal thread")?;
    }

    // The error names the socket's path already.
    let listener = ctl::bind(&cli.socket, cli.socket_group)?;
    let (api_tx, api_rx) = tokio::sync::mpsc::channel(64);
    let events = std::sync::Arc::new(supervisor::events::EventHub::new());
    let limits = ctl::ServerLimits {
        events: Some(std::sync::Arc::clone(&events)),
        allowed_group: cli.socket_group,
        log_dir: Some(
            cli.log_dir
                .clone()
                .unwrap_or_else(|| cli.state_dir.join("logs")),
        ),
        images: rt.images().cloned(),
        state_dir: Some(cli.state_dir.clone()),
        #[cfg(feature = "registry")]
        puller: rt.puller().cloned(),
        ..ctl::ServerLimits::default()
    };
    if let Some(addr) = cli.metrics_listen {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr}"))?;
        tracing::info!("serving /metrics on http://{addr}/metrics");
        let own = limits.clone();
        tokio::spawn(ctl::metrics::serve_tcp(tcp, api_tx.clone(), move || {
            own.own_figures()
        }));
    }
    let watchdog = cli.watchdog.as_ref().and_then(|path| {
        match pid1::watchdog::Watchdog::open(path, cli.watchdog_timeout) {
            Ok(d) => {
                tracing::info!(
                    "watchdog {} armed with a {}s timeout: petted while every critical workload runs healthy",
                    path.display(),
                    d.timeout().as_secs()
                );
                Some(Arc::new(d))
            }
            Err(e) => {
                tracing::error!("opening the watchdog {}: {e}; running without it", path.display());
                None
            }
        }
    });
    let petting = watchdog
        .clone()
        .map(|dog| tokio::spawn(pet_watchdog(dog, api_tx.clone())));
    let server = tokio::spawn(async move {
        if let Err(e) = ctl::serve(listener, limits, api_tx).await {
            tracing::error!("control socket: {e}");
        }
    });

    let (msg_tx, msg_rx) = tokio::sync::mpsc::channel(64);
    let (ev_tx, ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sup = supervisor::Supervisor::new(rt.clone(), ev_tx)
        .with_state_dir(cli.state_dir.clone())
        .with_events(events)
        .with_rollout_bake(cli.rollout_bake);
    if cli.init_mode {
        sup = sup.with_power(power_tx.clone(), latch.clone());
    }
    match runtime::reexec::own_path() {
        Ok(exe) => sup = sup.with_reexec(exe),
        Err(e) => tracing::warn!("reading /proc/self/exe: {e}; `superctl reexec` is unavailable"),
    }
    let mut sup_task = tokio::spawn(sup.run(supervisor::Inbox {
        msgs: msg_rx,
        events: ev_rx,
        api: api_rx,
    }));
    let rescan = Arc::new(tokio::sync::Notify::new());
    let watcher = tokio::spawn(watch::run(
        cli.manifests.clone(),
        msg_tx.clone(),
        rescan.clone(),
    ));
    // On v2, the controllers the hierarchy offers (what limits can be enforced).
    let controllers = if rt.cgroups().is_v2() {
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .map(|c| c.trim().replace(' ', ","))
            .unwrap_or_default()
    } else {
        String::new()
    };
    tracing::info!(
        manifests = %cli.manifests.display(),
        socket = %cli.socket.display(),
        pid = std::process::id(),
        init = cli.init_mode,
        exe = %std::fs::read_link("/proc/self/exe")
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        hostname = %nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        cgroup_v2 = rt.cgroups().is_v2(),
        controllers = %controllers,
        "superd {} started",
        env!("CARGO_PKG_VERSION")
    );
    // Type=notify: ready once the control socket answers and the watcher runs.
    if let Err(e) = superd::notify::notify("READY=1\nSTATUS=supervising workloads") {
        tracing::warn!("telling the service manager we are ready: {e}");
    }

    let (action, mut escalated) = loop {
        tokio::select! {
            m = power_rx.recv() => break match m {
                Some(PowerMsg::Request(a)) => (a, false),
                // A signal that lost the race to a superctl request whose message is still
                // on its way: a second request already.
                Some(PowerMsg::Again(a)) => (latch.taken().unwrap_or(a), true),
                None => (PowerAction::Poweroff, false),
            },
            _ = hup.recv() => {
                tracing::info!("SIGHUP: re-reading {}", cli.manifests.display());
                rescan.notify_one();
            }
            // The single owner of workload state must never vanish unnoticed.
            r = &mut sup_task => {
                let why = match r {
                    Err(e) if e.is_panic() => "panicked".to_string(),
                    Err(e) => e.to_string(),
                    Ok(()) => "returned".to_string(),
                };
                anyhow::bail!("the supervisor stopped unexpectedly ({why}); workloads are unsupervised");
            }
        }
    };
    if cli.init_mode {
        tracing::info!("{} requested", action.as_str());
    }
    tracing::info!("stopping every workload");
    if let Err(e) = superd::notify::notify("STOPPING=1\nSTATUS=stopping every workload") {
        tracing::warn!("telling the service manager we are stopping: {e}");
    }
    watcher.abort();
    let (tx, rx) = tokio::sync::oneshot::channel();
    msg_tx
        .send(supervisor::Msg::Shutdown(tx))
        .await
        .context("supervisor is gone")?;
    if cli.init_mode {
        // A second power signal while the workloads stop (one may hang in the kernel) skips
        // the rest of the orderly stop: what is left is killed on the way to reboot(2).
        let mut rx = rx;
        while !escalated {
            tokio::select! {
                _ = &mut rx => break,
                m = power_rx.recv() => match m {
                    Some(PowerMsg::Again(_)) => escalated = true,
                    Some(PowerMsg::Request(_)) => {} // decided already (see the latch)
                    None => {
                        let _ = (&mut rx).await;
                        break;
                    }
                },
            }
        }
        if escalated {
            tracing::warn!(
                "{} requested again: not waiting for the workloads to stop",
                action.as_str()
            );
            force_cleanup(&rt).await;
            // Still a power action the operator asked for.
            if let Some(dog) = &watchdog {
                dog.disarm();
            }
            return Ok(Some(action));
        }
    } else {
        let _ = rx.await;
    }
    let _ = sup_task.await;
    server.abort();
    if let Some(net) = rt.network() {
        net.shutdown().await;
    }
    let _ = std::fs::remove_file(&cli.socket);
    rt.cgroups().remove_root();
    // An orderly end: the machine is not to be reset on its way down.
    if let (Some(task), Some(dog)) = (petting, &watchdog) {
        task.abort();
        dog.disarm();
    }
    tracing::info!("all workloads stopped; exiting");
    Ok(cli.init_mode.then_some(action))
}

/// Pets `dog` every third of its timeout while the supervisor answers (within that time) that
/// every critical workload runs healthy; says once when it stops petting, and why.
async fn pet_watchdog(
    dog: Arc<pid1::watchdog::Watchdog>,
    api: tokio::sync::mpsc::Sender<(
        superd::api::Request,
        tokio::sync::oneshot::Sender<superd::api::Response>,
    )>,
) {
    use superd::api::{Request, Response};
    let every = (dog.timeout() / 3).max(std::time::Duration::from_millis(200));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopped = false;
    loop {
        tick.tick().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let answer = async {
            api.send((Request::Watchdog, tx)).await.ok()?;
            rx.await.ok()
        };
        let problem = match tokio::time::timeout(every, answer).await {
            Ok(Some(Response::Ack(_))) => None,
            Ok(Some(Response::Error(why))) => Some(why),
            Ok(_) => Some("the supervisor is gone".to_string()),
            Err(_) => Some(format!(
                "the supervisor did not answer within {} ms",
                every.as_millis()
            )),
        };
        match problem {
            None => {
                if let Err(e) = dog.pet() {
                    tracing::warn!("petting the watchdog: {e}");
                }
                if stopped {
                    tracing::info!("petting the watchdog again");
                }
                stopped = false;
            }
            Some(why) => {
                if !stopped {
                    tracing::error!(
                        "not petting the watchdog: {why}; the machine resets within {}s",
                        dog.timeout().as_secs()
                    );
                }
                stopped = true;
            }
        }
    }
}

/// After a second power signal: kill and remove the workload cgroups and take the network
/// down, each for a few seconds at most (a process stuck in the kernel may not die), so
/// that superd as PID 1 of a container leaves nothing on its host.
async fn force_cleanup(rt: &Arc<runtime::Runtime>) {
    use std::time::Duration;
    let budget = Duration::from_secs(5);
    let cg = rt.clone();
    let removed = tokio::time::timeout(
        budget,
        tokio::task::spawn_blocking(move || {
            cg.cgroups().remove_stale(&Default::default());
            cg.cgroups().remove_root();
        }),
    )
    .await;
    if removed.is_err() {
        tracing::warn!("workload cgroups not removed within {budget:?}");
    }
    if let Some(net) = rt.network() {
        if tokio::time::timeout(budget, net.shutdown()).await.is_err() {
            tracing::warn!("network not taken down within {budget:?}");
        }
    }
}
