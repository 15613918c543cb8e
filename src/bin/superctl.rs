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
  1  no such workload, or invalid manifests (validate)
  2  superd cannot be reached (also: invalid command line)
  3  superd answered with an error or an invalid reply";

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
        /// Only this workload.
        name: Option<String>,
        /// Print the API's JSON (`{"workloads":[...]}`) instead of a table.
        #[arg(long)]
        json: bool,
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
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Status { name, json } => match client.status(name.as_deref()) {
            Ok(resp) if json => {
                let text = serde_json::to_string(&resp).context("encoding status as JSON")?;
                writeln!(out, "{text}")?;
            }
            Ok(resp) => out.write_all(table::render_status(&resp, SystemTime::now()).as_bytes())?,
            Err(e) => return Ok(report(&e, name.as_deref())),
        },
        Command::Restart { name } => match client.restart(&name) {
            Ok(ack) => writeln!(out, "{}", ack.message)?,
            Err(e) => return Ok(report(&e, Some(&name))),
        },
        Command::Poweroff | Command::Reboot | Command::Halt => {
            let action = match cli.command {
                Command::Reboot => api::PowerAction::Reboot,
                Command::Halt => api::PowerAction::Halt,
                _ => api::PowerAction::Poweroff,
            };
            match client.power(action) {
                Ok(ack) => writeln!(out, "{}", ack.message)?,
                Err(e) => return Ok(report(&e, None)),
            }
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

/// Writes superctl.8 and one page per visible subcommand into `dir`.
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
