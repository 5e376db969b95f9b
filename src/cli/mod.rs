//! The command line: argument parsing, one function per command, and exit codes.
//!
//! Exit codes are part of the contract: 0 success, 1 runtime failure, 2 access denied
//! (`explain`), 64 usage or invalid configuration. clap's own usage errors would exit 2, which
//! here means "denied", so parse failures are mapped to 64.

mod backup;
mod commands;
#[cfg(feature = "demo")]
mod demo;
mod enrol;
mod lockdown;
mod osdp;
pub(crate) mod output;
mod owner;
mod remote;
mod status;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// The outcome of a command that did not succeed, with its exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Usage error or invalid configuration (exit 64); the message says what to fix.
    Usage(String),
    /// Runtime failure (exit 1).
    Runtime(String),
    /// Access denied by `explain` (exit 2); the decision has already been printed.
    Denied,
    /// The problem has already been printed (e.g. one line per configuration error).
    Reported(u8),
}

impl Failure {
    /// The process exit code for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 64,
            Failure::Runtime(_) => 1,
            Failure::Denied => 2,
            Failure::Reported(code) => *code,
        }
    }
}

/// `portier`: on-premise access gateway for coworking spaces that run on Cobot.
#[derive(Debug, Parser)]
#[command(name = "portier", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "PORTIER_CONFIG",
        default_value = "/etc/portier/portier.toml"
    )]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: serve decisions from the cache, sync in the background.
    Run,
    /// Validate the configuration and the secret files it names.
    CheckConfig,
    /// Sync from Cobot into the cache now.
    Sync(SyncArgs),
    /// List the members in the cache.
    Members(MembersArgs),
    /// Decide a request from the cache and show why.
    Explain(ExplainArgs),
    /// Cobot account commands.
    #[command(subcommand)]
    Cobot(CobotCommand),
    /// The whole chain against a simulated Cobot on loopback, with log-only locks.
    Demo(DemoArgs),
    /// Summarise the running daemon's health (its /v1/status): exit 0 ok, 1 degraded, 2 failing,
    /// 3 no daemon answers.
    #[command(long_about = STATUS_ABOUT)]
    Status(StatusArgs),
    /// Write a consistent copy of the state directory's store to PATH (through the running
    /// daemon when there is one).
    Backup(BackupArgs),
    /// Replace the state directory's store with the backup at PATH (stop the daemon first).
    Restore(RestoreArgs),
    /// Read one card on an enrolment reader (enrol = true) and print its id as each door
    /// reader sends it (through the running daemon when there is one).
    Enrol(EnrolArgs),
    /// Switch the lockdown on or off: while on, only `[lockdown] allow_groups` open (and staff
    /// through the admin API), and switching it on locks every door at once (through the
    /// running daemon when there is one).
    Lockdown(LockdownArgs),
    /// OSDP reader commands.
    #[command(subcommand)]
    Osdp(OsdpCommand),
}

/// `portier lockdown`.
#[derive(Debug, Args)]
pub struct LockdownArgs {
    /// `on` or `off`.
    pub state: OnOff,
    /// Why (shown in status, health and the log).
    #[arg(long)]
    pub reason: Option<String>,
}

/// A switch position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// `portier osdp ...`.
#[derive(Debug, Subcommand)]
pub enum OsdpCommand {
    /// Give an OSDP reader in install mode a new secure channel key, kept in its scbk_file
    /// (stop the daemon first: it holds the serial port).
    Keyset(KeysetArgs),
}

/// `portier osdp keyset`.
#[derive(Debug, Args)]
pub struct KeysetArgs {
    /// The OSDP reader's id.
    #[arg(long)]
    pub reader: String,
    /// How long to wait for the reader to take the key (1s to 10m).
    #[arg(long, default_value = "30s")]
    pub wait: String,
}

const STATUS_ABOUT: &str = "\
Summarise the running daemon's health from its /v1/status (asked on http.listen, over HTTPS \
when http.tls_cert_file is set; no admin token needed): version and site, sync age and the last \
error, the snapshot's members, the guard, every lock, the outbox, the clock, and the health \
reasons.

Exit status, the monitoring-plugin convention: 0 ok, 1 degraded, 2 failing, 3 no daemon \
answers (or its answer cannot be read); 64 invalid configuration.";

/// `portier status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the daemon's /v1/status JSON as it answered (the exit code is the same).
    #[arg(long)]
    pub json: bool,
}

/// `portier backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to write (replaced if it exists; mode 0600).
    pub path: PathBuf,
}

/// `portier enrol`.
#[derive(Debug, Args)]
pub struct EnrolArgs {
    /// The enrolment reader's id.
    #[arg(long)]
    pub reader: String,
    /// How long to wait for a card (1s to 10m).
    #[arg(long, default_value = "60s")]
    pub wait: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `portier restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file written by `portier backup`.
    pub path: PathBuf,
}

/// `portier sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Apply the sync even if it revokes more members than `cobot.max_revoke_ratio` allows.
    #[arg(long)]
    pub accept_revocations: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `portier members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Show groups at this moment (RFC 3339) instead of now.
    #[arg(long)]
    pub at: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `portier explain`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["member", "credential"]))]
pub struct ExplainArgs {
    /// Membership id or email.
    #[arg(long)]
    pub member: Option<String>,
    /// Card id.
    #[arg(long)]
    pub credential: Option<String>,
    /// The unit to open.
    #[arg(long)]
    pub unit: String,
    /// Decide at this moment (RFC 3339) instead of now.
    #[arg(long)]
    pub at: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `portier demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Afterwards keep the daemon running on the demo site (until Ctrl-C), to try the HTTP API
    /// and, with --mqtt, card readers and locks on a broker.
    #[arg(long)]
    pub serve: bool,
    /// Where the demo daemon listens (with --serve).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// A broker for a demo reader and MQTT lock (with --serve), e.g. mqtt://127.0.0.1:1883.
    #[arg(long)]
    pub mqtt: Option<String>,
}

/// `portier cobot …`.
#[derive(Debug, Subcommand)]
pub enum CobotCommand {
    /// Connect Portier to the Cobot space (OAuth with PKCE) and store a space-bound token.
    Connect(ConnectArgs),
    /// Add an "Open doors" link to the member portal pointing at the member page (Cobot's
    /// navigation links; the sync token needs the `navigation` scope), or remove it.
    Link(LinkArgs),
}

/// `portier cobot link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// Remove the link instead of adding it.
    #[arg(long)]
    pub remove: bool,
    /// The link's text in the member portal.
    #[arg(long, default_value = "Open doors")]
    pub label: String,
}

/// `portier cobot connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The redirect URI registered for the Cobot app; Portier listens on its port.
    #[arg(long, default_value = "http://localhost:8765/callback")]
    pub redirect_uri: String,
    /// The `code` of the redirected URL, when the browser ran on another machine.
    #[arg(long)]
    pub code: Option<String>,
}

/// Parses the arguments, runs the command and returns the process exit code.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    crate::tls::install_provider();
    ExitCode::from(run_args(args))
}

/// Parses the arguments (the first is the program name), runs the command, prints its errors
/// and returns the exit code.
pub(crate) fn run_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            // Printing help or a usage error to the terminal cannot meaningfully fail.
            let _ = e.print();
            return code;
        }
    };
    init_tracing(matches!(
        cli.command,
        Command::Run | Command::Demo(DemoArgs { serve: true, .. })
    ));
    match commands::run(cli) {
        Ok(()) => 0,
        Err(failure) => {
            match &failure {
                Failure::Usage(message) | Failure::Runtime(message) => {
                    eprintln!("portier: {message}");
                }
                Failure::Denied | Failure::Reported(_) => {}
            }
            failure.exit_code()
        }
    }
}

/// Logs go to the journal when systemd runs the daemon (it sets `JOURNAL_STREAM`), else to
/// stderr: plain text, with colours only when stderr is a terminal, or one JSON object per
/// line with `PORTIER_LOG_FORMAT=json` (which also replaces the journal). `RUST_LOG` overrides
/// the level: `info` for the daemon, `warn` for commands. libosdp's own log is off unless
/// asked for (`RUST_LOG=info,libosdp=debug`): it says "going offline" every 2 s while a reader
/// is away, which Portier says once, with the reason, and keeps in status and health.
fn init_tracing(daemon: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;

    let default = if daemon {
        "info,libosdp=off"
    } else {
        "warn,libosdp=off"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let json = match std::env::var("PORTIER_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") | Ok("") | Err(_) => false,
        Ok(other) => {
            eprintln!("portier: PORTIER_LOG_FORMAT={other:?} is not text or json; logging text");
            false
        }
    };
    let journald = if daemon && !json && std::env::var_os("JOURNAL_STREAM").is_some() {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let registry = tracing_subscriber::registry().with(filter);
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // A second initialisation (tests calling in-process) keeps the first subscriber.
    let _ = match (journald, json) {
        (Some(layer), _) => registry.with(layer).try_init(),
        (None, true) => registry
            .with(stderr.json().with_current_span(false).with_span_list(false))
            .try_init(),
        (None, false) => registry
            .with(stderr.with_ansi(std::io::stderr().is_terminal()))
            .try_init(),
    };
}
