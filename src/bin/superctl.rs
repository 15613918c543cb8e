//! `superctl`: the command-line client of a running superd.

#![deny(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use superd::api;
use superd::ctl::{table, Client, ClientError};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  no such workload, or invalid manifests (validate, status --check)
  2  superd cannot be reached (also: invalid command line)
  3  superd answered with an error or an invalid reply
plan: 0 no change, 2 changes, 1 rejected manifests, 3 superd error";

/// Control a running superd.
#[derive(Debug, Parser)]
#[command(name = "superctl", version, after_help = EXIT_CODES)]
struct Cli {
    /// The control socket of superd.
    #[arg(long, global = true, env = "SUPERD_SOCKET", default_value = api::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show workloads: state, PID, restarts, uptime, memory, last exit.
    Status {
        /// Only these workloads.
        names: Vec<String>,
        /// Print the API's JSON (`{"workloads":[...]}`) instead of a table.
        #[arg(long)]
        json: bool,
        /// Print again every second (Ctrl-C ends it).
        #[arg(long, conflicts_with = "check")]
        watch: bool,
        /// Exit with 1 when any manifest is invalid (its workload keeps its last good spec).
        #[arg(long)]
        check: bool,
    },
    /// Follow what happens: state changes, exits (with code, signal and reason), health
    /// verdicts, manifest errors, image fetches.
    Events {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// First the events kept since T (an RFC 3339 time or a duration ago: `10m`).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// `name=WORKLOAD` or `kind=state|exit|health|manifest|image` (repeatable; the
        /// same key twice means either).
        #[arg(long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// Stop after the kept events instead of following new ones.
        #[arg(long)]
        no_follow: bool,
    },
    /// What each workload uses, like `docker stats`: CPU %, memory and its limit, tasks, block
    /// IO, OOM kills and (cgroup v2) pressure, refreshed every second.
    Stats {
        /// Only these workloads.
        names: Vec<String>,
        /// One sample (taken over a second), then exit.
        #[arg(long)]
        no_stream: bool,
        /// One JSON array of rows per sample.
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside a running workload: its namespaces, cgroup, root filesystem,
    /// user, capabilities, rlimits, seccomp filter and no_new_privs. The exit code is the
    /// command's (126: it could not run, 127: not found, 128+N: killed by signal N).
    Exec {
        /// Copy stdin to the command.
        #[arg(short, long)]
        interactive: bool,
        /// Run it on a terminal (a pty inside the container).
        #[arg(short, long)]
        tty: bool,
        /// `uid[:gid]` or `name[:group]` (default: the workload's user).
        #[arg(short, long)]
        user: Option<String>,
        /// Working directory (default: the workload's).
        #[arg(short, long)]
        workdir: Option<String>,
        /// `KEY=VALUE` added to the workload's environment (repeatable).
        #[arg(short, long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The workload.
        name: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stop a workload and keep it stopped, across superd restarts, until `superctl start`.
    Stop {
        /// The workload.
        name: String,
    },
    /// Start a workload `superctl stop` stopped.
    Start {
        /// The workload.
        name: String,
    },
    /// What applying a manifest directory would do against what runs now (without a daemon:
    /// against nothing).
    Plan {
        /// The manifest directory.
        #[arg(default_value = "/etc/workloads.d")]
        dir: PathBuf,
        /// The bridge subnet static addresses must lie in (superd's `--subnet`).
        #[arg(long, default_value = "10.77.0.0/16")]
        subnet: superd::network::Subnet,
        /// Print JSON rows instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a workload's log (stdout records to stdout, stderr records to stderr).
    Logs {
        /// The workload.
        name: String,
        /// Keep printing new records as they are written (across rotations).
        #[arg(short, long)]
        follow: bool,
        /// Only the last N records.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Only records since T: an RFC 3339 time or a duration ago (`10m`, `1h 30m`).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
    },
    /// Restart a workload now (resets its backoff).
    Restart {
        /// The workload.
        name: String,
    },
    /// Stop every workload, then power the machine off (superd as PID 1 only).
    Poweroff,
    /// Stop every workload, then reboot (superd as PID 1 only).
    Reboot,
    /// Stop every workload, then halt (superd as PID 1 only).
    Halt,
    /// Write Kubernetes objects equivalent to manifests: per workload a Pod (or a
    /// Deployment), a Service for its ports and a PersistentVolumeClaim per named volume;
    /// what does not map is reported on stderr, never dropped.
    Export {
        /// Export to Kubernetes (the one target there is).
        #[arg(long, required = true)]
        kubernetes: bool,
        /// Deployments of one replica instead of Pods.
        #[arg(long)]
        deployment: bool,
        /// Write NAME.yaml files into DIR instead of one stream to stdout.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Where workload names are looked up.
        #[arg(long, default_value = "/etc/workloads.d")]
        manifests: PathBuf,
        /// Manifest files, directories of manifests, or workload names.
        #[arg(required = true, value_name = "DIR|FILE|NAME")]
        targets: Vec<String>,
    },
    /// Re-execute superd in place (after an upgrade of its binary): every workload keeps
    /// running and the new superd adopts it. Waits until the new superd answers.
    Reexec {
        /// Return once the request is taken, without waiting for the new superd.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the new superd (it re-executes once no workload is
        /// starting or stopping).
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Named volumes (ls, rm).
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage superd's image store (import, ls, inspect, rm).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Write the man pages (roff) superctl.8 and superctl-<command>.8 into DIR (used to
    /// package them).
    #[command(hide = true)]
    Man {
        /// Output directory.
        dir: PathBuf,
    },
    /// Check manifests without a running superd (for a directory, also ports, addresses and
    /// names claimed by two files, as at a cold start).
    Validate {
        /// Manifest paths to check.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The bridge subnet static addresses must lie in (superd's `--subnet`).
        #[arg(long, default_value = "10.77.0.0/16")]
        subnet: superd::network::Subnet,
    },
}

#[derive(Debug, Subcommand)]
enum VolumeCommand {
    /// List volumes: name, size, the workloads whose manifests mount it, where it is.
    Ls {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a volume and its data (refused while a manifest mounts it).
    Rm {
        /// The volume.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Import image archives: docker save, docker >= 25 and OCI archives (optionally gzip or
    /// zstd compressed); `-` reads stdin (`ssh box superctl image import - < img.tar`).
    /// superd reads the file itself: superctl passes it the open file.
    Import {
        /// Archives, or `-`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Name for an archive holding one image without a full name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Pull an image from its registry through superd (a tag is resolved again and recorded).
    Pull {
        /// `registry/repository[:tag][@sha256:…]`.
        reference: String,
        /// From a multi-platform index, the entry for OS/ARCH[/VARIANT] (e.g. linux/arm64)
        /// instead of the daemon machine's.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
    },
    /// List images: names, digest, size on disk, bytes shared with other images, users.
    Ls {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one image's config, layers and users (JSON).
    Inspect {
        /// `name[:tag]` or `name@sha256:…`.
        reference: String,
    },
    /// Remove what no manifest needs: names unused for an hour, then unreachable layers and
    /// blobs (layers a running workload has mounted are kept).
    Prune {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove an image's name (refused while a manifest uses the image).
    Rm {
        /// `name[:tag]`.
        reference: String,
    },
}

/// Exit codes (keep in sync with `EXIT_CODES`).
const NOT_FOUND: u8 = 1;
const UNREACHABLE: u8 = 2;
const SERVER_ERROR: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed stdout (`superctl status | head -1`) is not worth a message.
            let broken_pipe = e
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
            if !broken_pipe {
                eprintln!("superctl: {}", superd::report::chain(e.as_ref()));
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::new(&cli.socket);
    // Before stdout is locked below: the exec's output is copied to it from other threads.
    let command = match cli.command {
        Command::Exec {
            interactive,
            tty,
            user,
            workdir,
            env,
            name,
            command,
        } => {
            let req = superd::runtime::exec::ExecRequest {
                argv: command,
                user,
                workdir,
                env,
                tty,
            };
            // No timeout for the command itself, only for reaching superd.
            return match superd::ctl::execio::run(&client, &name, &req, interactive) {
                Ok(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(255))),
                Err(e) => Ok(report(&e, Some(&name))),
            };
        }
        other => other,
    };
    let mut out = std::io::stdout().lock();
    match command {
        Command::Status {
            names,
            json,
            watch,
            check,
        } => {
            if watch {
                return status_watch(&client, &names, json, &mut out);
            }
            let resp = match statuses(&client, &names) {
                Ok(resp) => resp,
                Err((e, name)) => return Ok(report(&e, name.as_deref())),
            };
            print_status(&resp, json, &mut out)?;
            if check && resp.workloads.iter().any(|w| w.invalid_manifest) {
                out.flush()?;
                return Ok(ExitCode::from(NOT_FOUND));
            }
        }
        Command::Events {
            json,
            since,
            filter,
            no_follow,
        } => {
            return events(
                &client,
                json,
                since.as_deref(),
                &filter,
                no_follow,
                &mut out,
            )
        }
        Command::Stats {
            names,
            no_stream,
            json,
        } => return stats(&client, &names, no_stream, json, &mut out),
        // Run above, before stdout was locked.
        Command::Exec { .. } => {}
        Command::Stop { name } => match client.stop(&name) {
            Ok(ack) => writeln!(out, "{}", ack.message)?,
            Err(e) => return Ok(report(&e, Some(&name))),
        },
        Command::Start { name } => match client.start(&name) {
            Ok(ack) => writeln!(out, "{}", ack.message)?,
            Err(e) => return Ok(report(&e, Some(&name))),
        },
        Command::Plan { dir, subnet, json } => return plan(&client, &dir, &subnet, json, &mut out),
        Command::Logs {
            name,
            follow,
            tail,
            since,
            timestamps,
        } => {
            let since = match since.as_deref().map(since_time).transpose() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("superctl: --since: {e}");
                    return Ok(ExitCode::from(UNREACHABLE));
                }
            };
            drop(out);
            return logs(&client, &name, follow, tail, since, timestamps);
        }
        Command::Restart { name } => match client.restart(&name) {
            Ok(ack) => writeln!(out, "{}", ack.message)?,
            Err(e) => return Ok(report(&e, Some(&name))),
        },
        power @ (Command::Poweroff | Command::Reboot | Command::Halt) => {
            let action = match power {
                Command::Reboot => api::PowerAction::Reboot,
                Command::Halt => api::PowerAction::Halt,
                _ => api::PowerAction::Poweroff,
            };
            match client.power(action) {
                Ok(ack) => writeln!(out, "{}", ack.message)?,
                Err(e) => return Ok(report(&e, None)),
            }
        }
        Command::Export {
            kubernetes: _,
            deployment,
            out: dir,
            manifests,
            targets,
        } => {
            let kind = if deployment {
                superd::ctl::kube::Kind::Deployment
            } else {
                superd::ctl::kube::Kind::Pod
            };
            let code = superd::ctl::export::run(
                &targets,
                &manifests,
                kind,
                dir.as_deref(),
                &mut out,
                &mut std::io::stderr(),
            )?;
            out.flush()?;
            return Ok(ExitCode::from(code));
        }
        Command::Reexec { no_wait, timeout } => return reexec(&client, no_wait, timeout, &mut out),
        Command::Volume(VolumeCommand::Ls { json }) => match client.volumes() {
            Ok(r) if json => writeln!(out, "{}", serde_json::to_string(&r)?)?,
            Ok(r) => {
                writeln!(
                    out,
                    "{:<20}  {:>10}  {:<20}  PATH",
                    "NAME", "SIZE", "USED BY"
                )?;
                for v in r.volumes {
                    let used = if v.used_by.is_empty() {
                        "-".to_string()
                    } else {
                        v.used_by.join(",")
                    };
                    writeln!(
                        out,
                        "{:<20}  {:>10}  {:<20}  {}",
                        table::clean(&v.name),
                        format!("{:.1} MiB", v.bytes as f64 / (1024.0 * 1024.0)),
                        used,
                        table::clean(&v.path)
                    )?;
                }
            }
            Err(e) => return Ok(report(&e, None)),
        },
        Command::Volume(VolumeCommand::Rm { name }) => match client.volume_rm(&name) {
            Ok(ack) => writeln!(out, "{}", ack.message)?,
            Err(ClientError::NotFound(m)) => {
                eprintln!("superctl: {m}");
                return Ok(ExitCode::from(NOT_FOUND));
            }
            Err(e) => return Ok(report(&e, None)),
        },
        Command::Image(cmd) => {
            drop(out);
            return image(&client, cmd);
        }
        Command::Man { dir } => write_man_pages(&dir)?,
        Command::Validate { paths, subnet } => {
            let mut report = superd::manifest::validate_paths(&paths);
            for dir in paths.iter().filter(|p| p.is_dir()) {
                let Ok(desired) = superd::manifest::load_dir(dir) else {
                    continue; // already reported by validate_paths
                };
                for err in superd::network::claim_errors(&subnet, &desired) {
                    if let Some(entry) = report.files.iter_mut().find(|f| f.0 == err.file) {
                        entry.1 = Err(err);
                    }
                }
            }
            writeln!(out, "{report}")?;
            if !report.ok() {
                return Ok(ExitCode::from(NOT_FOUND));
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The status of `names` (every workload when empty); an unknown name is an error naming it.
fn statuses(
    client: &Client,
    names: &[String],
) -> Result<api::StatusResponse, (ClientError, Option<String>)> {
    let mut resp = client.status(None).map_err(|e| (e, None))?;
    if names.is_empty() {
        return Ok(resp);
    }
    if let Some(missing) = names
        .iter()
        .find(|n| !resp.workloads.iter().any(|w| &w.name == *n))
    {
        let e = ClientError::NotFound(format!("no workload named {missing}"));
        return Err((e, Some(missing.clone())));
    }
    resp.workloads.retain(|w| names.contains(&w.name));
    Ok(resp)
}

fn print_status(
    resp: &api::StatusResponse,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if json {
        let text = serde_json::to_string(resp).context("encoding status as JSON")?;
        writeln!(out, "{text}")?;
    } else {
        out.write_all(table::render_status(resp, SystemTime::now()).as_bytes())?;
    }
    Ok(())
}

/// `status --watch`: the table again every second (the screen cleared first on a
/// terminal), until interrupted; superd going away is shown, not fatal.
fn status_watch(
    client: &Client,
    names: &[String],
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal();
    loop {
        if tty && !json {
            write!(out, "\x1b[H\x1b[2J")?;
        }
        match statuses(client, names) {
            Ok(resp) => print_status(&resp, json, out)?,
            Err((ClientError::NotFound(m), _)) => writeln!(out, "{m}")?,
            Err((e, _)) => writeln!(out, "superd: {e}")?,
        }
        out.flush()?;
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `superctl stats`: a sample every second, rates from the last two.
fn stats(
    client: &Client,
    names: &[String],
    no_stream: bool,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    use superd::ctl::stats;
    let tty = std::io::stdout().is_terminal();
    let mut before = match client.stats() {
        Ok(s) => s,
        Err(e) => return Ok(report(&e, None)),
    };
    if let Some(missing) = names
        .iter()
        .find(|n| !before.workloads.iter().any(|w| &w.name == *n))
    {
        eprintln!("superctl: no workload named {missing}");
        return Ok(ExitCode::from(NOT_FOUND));
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let after = match client.stats() {
            Ok(s) => s,
            Err(e) => return Ok(report(&e, None)),
        };
        let rows = stats::rows(&before, &after, names);
        if json {
            writeln!(out, "{}", serde_json::to_string(&rows)?)?;
        } else {
            if tty && !no_stream {
                write!(out, "\x1b[H\x1b[2J")?;
            }
            out.write_all(stats::render(&rows).as_bytes())?;
        }
        out.flush()?;
        if no_stream {
            return Ok(ExitCode::SUCCESS);
        }
        before = after;
    }
}

/// `superctl events`.
fn events(
    client: &Client,
    json: bool,
    since: Option<&str>,
    filters: &[String],
    no_follow: bool,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let mut query = Vec::new();
    if let Some(s) = since {
        let t = since_time(s).map_err(anyhow::Error::msg)?;
        query.push(format!("since={}", superd::ctl::http::encode_segment(&t)));
    }
    for f in filters {
        let (key, value) = f
            .split_once('=')
            .filter(|(k, _)| matches!(*k, "name" | "kind"))
            .with_context(|| format!("--filter {f}: expected name=WORKLOAD or kind=KIND"))?;
        if key == "kind" {
            superd::ctl::events::kind(value).map_err(anyhow::Error::msg)?;
        }
        query.push(format!(
            "{key}={}",
            superd::ctl::http::encode_segment(value)
        ));
    }
    if no_follow {
        query.push("follow=false".into());
    }
    let mut failed = None;
    let result = client.events(&query.join("&"), |e| {
        let written = if json {
            serde_json::to_string(&e)
                .map_err(std::io::Error::other)
                .and_then(|t| writeln!(out, "{t}"))
        } else {
            writeln!(out, "{}", table::render_event(&e))
        };
        match written.and_then(|()| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(report(&e, None)),
    }
}

/// `superctl plan DIR`.
fn plan(
    client: &Client,
    dir: &std::path::Path,
    subnet: &superd::network::Subnet,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    use superd::ctl::plan;
    let desired = superd::manifest::load_dir(dir)
        .with_context(|| format!("reading the manifest directory {}", dir.display()))?;
    let claims = superd::network::claim_errors(subnet, &desired)
        .into_iter()
        .map(|e| (e.file.clone(), e.to_string()))
        .collect();
    let running = match client.specs() {
        Ok(r) => r.workloads,
        Err(ClientError::Unreachable { .. }) => {
            if !json {
                writeln!(out, "(superd is not running: planning against nothing)")?;
            }
            Default::default()
        }
        Err(e) => return Ok(report(&e, None)),
    };
    let rows = plan::plan(&desired, &running, &claims);
    if json {
        let text = serde_json::to_string(&rows).context("encoding the plan as JSON")?;
        writeln!(out, "{text}")?;
    } else {
        out.write_all(plan::render(&rows).as_bytes())?;
    }
    out.flush()?;
    let code = if rows
        .iter()
        .any(|r| matches!(r.verdict, plan::Verdict::Rejected { .. }))
    {
        1
    } else if rows.iter().any(|r| r.verdict.is_change()) {
        2
    } else {
        0
    };
    Ok(ExitCode::from(code))
}

/// Writes superctl.8 and one page per visible subcommand into `dir`.
/// `superctl reexec`: asks for the re-exec, then waits until a superd with a later start time
/// answers on the socket.
fn reexec(
    client: &Client,
    no_wait: bool,
    timeout: std::time::Duration,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let before = match client.daemon() {
        Ok(d) => d,
        Err(e) => return Ok(report(&e, None)),
    };
    match client.reexec() {
        Ok(ack) => writeln!(out, "{}", ack.message)?,
        // The exec may have closed the connection before the answer was out: whether it
        // happened, the next superd's start time tells.
        Err(ClientError::Io { .. }) if !no_wait => {}
        Err(e) => return Ok(report(&e, None)),
    }
    if no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    out.flush()?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        match client.daemon() {
            Ok(d) if d.started_unix_ms != before.started_unix_ms => {
                writeln!(
                    out,
                    "superd {} re-executed as {} (PID {}): {} of its {} workloads adopted",
                    before.version, d.version, d.pid, d.adopted, d.workloads
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            _ if std::time::Instant::now() > deadline => {
                eprintln!(
                    "superctl: no re-executed superd answered within {}",
                    humantime::format_duration(timeout)
                );
                return Ok(ExitCode::from(SERVER_ERROR));
            }
            _ => {}
        }
    }
}

fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let write = |name: &str, cmd: clap::Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.8"));
        let mut file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        clap_mangen::Man::new(cmd)
            .section("8")
            .render(&mut file)
            .with_context(|| format!("writing {}", path.display()))
    };
    let top = Cli::command();
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("superctl-{}", sub.get_name());
        write(&name, sub.clone().name(name.clone()))?;
    }
    write("superctl", top)
}

/// Prints a client error to stderr and picks the exit code.
/// `--since`: an RFC 3339 time as it is, or a duration ago.
fn since_time(s: &str) -> Result<String, String> {
    if humantime::parse_rfc3339_weak(s).is_ok() {
        return Ok(s.to_string());
    }
    let ago = humantime::parse_duration(s)
        .map_err(|_| format!("`{s}` is neither an RFC 3339 time nor a duration such as 10m"))?;
    let t = SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(humantime::format_rfc3339_nanos(t).to_string())
}

/// `superctl logs`: prints the records, then with `follow` asks for newer ones four times a
/// second (the last record's time is the cursor, exact since times are unique).
fn logs(
    client: &Client,
    name: &str,
    follow: bool,
    tail: Option<usize>,
    since: Option<String>,
    timestamps: bool,
) -> anyhow::Result<ExitCode> {
    // A workload's bytes reach a terminal escaped (no escape sequences from a hostile
    // workload), a pipe or file as they are.
    use std::io::IsTerminal;
    let raw = !std::io::stdout().is_terminal();
    let mut after: Option<String> = None;
    let mut first = true;
    loop {
        let resp = client.logs(
            name,
            if first { tail } else { None },
            if first { since.as_deref() } else { None },
            after.as_deref(),
        );
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Ok(report(&e, Some(name))),
        };
        first = false;
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
        for r in &resp.records {
            let w: &mut dyn Write = if r.stream == "stderr" {
                &mut err
            } else {
                &mut out
            };
            if timestamps {
                write!(w, "{} ", r.time)?;
            }
            if raw {
                w.write_all(r.text.as_bytes())?;
            } else {
                w.write_all(table::clean(&r.text).as_bytes())?;
            }
            if !r.partial {
                w.write_all(b"\n")?;
            }
        }
        out.flush()?;
        if let Some(last) = resp.records.last() {
            after = Some(last.time.clone());
        }
        if resp.truncated {
            continue; // more is waiting: no pause
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// `superctl image …`.
fn image(client: &Client, cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        ImageCommand::Import { files, name } => {
            // An import runs as long as the archive takes to read and unpack.
            let client = client
                .clone()
                .with_timeout(superd::ctl::images::IMPORT_TIMEOUT);
            for f in files {
                let file;
                let stdin = std::io::stdin();
                let fd = if f.as_os_str() == "-" {
                    use std::os::fd::AsFd;
                    stdin.as_fd()
                } else {
                    use std::os::fd::AsFd;
                    file = std::fs::File::open(&f)
                        .with_context(|| format!("opening {}", f.display()))?;
                    file.as_fd()
                };
                match client.image_import(fd, name.as_deref()) {
                    Ok(resp) => {
                        for i in resp.images {
                            writeln!(out, "imported {i}")?;
                        }
                        for w in resp.restarted {
                            writeln!(out, "restarted {w} (its tag now names this image)")?;
                        }
                    }
                    Err(e) => return Ok(report(&e, None)),
                }
            }
        }
        ImageCommand::Pull {
            reference,
            platform,
        } => {
            let long = client
                .clone()
                .with_timeout(superd::ctl::images::IMPORT_TIMEOUT);
            let r = reference.clone();
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = done_tx.send(long.image_pull(&r, platform.as_deref()));
            });
            // Layer by layer, from a second connection, while the pull runs.
            let mut shown = Vec::new();
            let mut running = false;
            let tick = std::time::Duration::from_millis(250);
            let result = loop {
                match done_rx.recv_timeout(tick) {
                    Ok(result) => break result,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        anyhow::bail!("the pull thread ended without an answer")
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                }
                if let Ok(p) = client.image_pull_progress(&reference) {
                    // Until this pull has begun, what is there is the previous one's.
                    running |= !p.finished;
                    if running {
                        out.write_all(table::layer_changes(&p, &mut shown).as_bytes())?;
                    }
                }
            };
            if result.is_ok() {
                if let Ok(p) = client.image_pull_progress(&reference) {
                    out.write_all(table::layer_changes(&p, &mut shown).as_bytes())?;
                }
            }
            match result {
                Ok(resp) => {
                    for i in resp.images {
                        writeln!(out, "pulled {i}")?;
                    }
                    for w in resp.restarted {
                        writeln!(out, "restarted {w} (its tag now names this image)")?;
                    }
                }
                Err(e) => return Ok(report(&e, None)),
            }
        }
        ImageCommand::Ls { json } => match client.images() {
            Ok(resp) if json => writeln!(out, "{}", serde_json::to_string(&resp)?)?,
            Ok(resp) => out.write_all(table::render_images(&resp).as_bytes())?,
            Err(e) => return Ok(report(&e, None)),
        },
        ImageCommand::Inspect { reference } => match client.image(&reference) {
            Ok(row) => writeln!(out, "{}", serde_json::to_string_pretty(&row)?)?,
            Err(ClientError::NotFound(m)) => {
                eprintln!("superctl: {m}");
                return Ok(ExitCode::from(NOT_FOUND));
            }
            Err(e) => return Ok(report(&e, None)),
        },
        ImageCommand::Prune { dry_run } => match client.image_prune(dry_run) {
            Ok(r) => {
                let verb = if dry_run { "would remove" } else { "removed" };
                for n in &r.refs {
                    writeln!(out, "{verb} name {n}")?;
                }
                for l in &r.layers {
                    writeln!(out, "{verb} layer {}", l.short())?;
                }
                writeln!(
                    out,
                    "{verb} {} names, {} layers, {} blobs: {:.1} MiB ({} unused layers kept: in use)",
                    r.refs.len(),
                    r.layers.len(),
                    r.blobs.len(),
                    r.bytes as f64 / (1024.0 * 1024.0),
                    r.held.len()
                )?;
            }
            Err(e) => return Ok(report(&e, None)),
        },
        ImageCommand::Rm { reference } => match client.image_rm(&reference) {
            Ok(ack) => writeln!(out, "{}", ack.message)?,
            Err(ClientError::NotFound(m)) => {
                eprintln!("superctl: {m}");
                return Ok(ExitCode::from(NOT_FOUND));
            }
            Err(e) => return Ok(report(&e, None)),
        },
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn report(e: &ClientError, name: Option<&str>) -> ExitCode {
    let code = match (e, name) {
        (ClientError::NotFound(_), Some(name)) => {
            eprintln!("superctl: no workload named {name}");
            return ExitCode::from(NOT_FOUND);
        }
        (ClientError::Unreachable { .. }, _) => UNREACHABLE,
        _ => SERVER_ERROR,
    };
    eprintln!("superctl: {e}");
    ExitCode::from(code)
}
