//! One function per command. Each loads what it needs, does its work, prints its output and
//! returns a [`Failure`] carrying the exit code when it did not succeed.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::output;
use super::{Cli, CobotCommand, Command, ConnectArgs, ExplainArgs, Failure, MembersArgs, SyncArgs};
use crate::clock;
use crate::cobot::CobotClient;
use crate::config::{self, Config};
use crate::domain::{ClockProblem, ClockTrust, Credential, Moment, Request, Snapshot, decide};
use crate::store::{Store, StoreError};
use crate::sync;

/// Runs the parsed command.
pub(super) fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Demo => crate::demo::run().map_err(Failure::Runtime),
        Command::CheckConfig => check_config(&cli.config),
        Command::Run => {
            let config = load_config(&cli.config)?;
            crate::app::run(config).map_err(Failure::Runtime)
        }
        Command::Sync(args) => sync_command(&load_config(&cli.config)?, &args),
        Command::Members(args) => members(&load_config(&cli.config)?, &args),
        Command::Explain(args) => explain(&load_config(&cli.config)?, &args),
        Command::Cobot(CobotCommand::Connect(args)) => connect(&load_config(&cli.config)?, &args),
    }
}

/// Loads the configuration; every error is printed as its own line and the command exits 64.
fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        Failure::Reported(64)
    })
}

fn check_config(path: &Path) -> Result<(), Failure> {
    let config = load_config(path)?;
    let secret_errors = config.check_secrets();
    if !secret_errors.is_empty() {
        for e in &secret_errors {
            eprintln!("{e}");
        }
        return Err(Failure::Reported(64));
    }
    let policy = &config.policy;
    println!(
        "{}: ok ({} groups, {} assignments, {} units, {} permissions, {} locks, {} readers)",
        path.display(),
        policy.groups.len(),
        policy.assignments.len(),
        policy.units.len(),
        policy.permissions.len(),
        config.locks.len(),
        config.readers.len(),
    );
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the async runtime: {e}")))
}

fn open_store(config: &Config) -> Result<Store, Failure> {
    Store::open(&config.site.state_dir).map_err(|e| match e {
        StoreError::Locked(dir) => Failure::Runtime(format!(
            "the store in {} is held by a running portier daemon; stop it or ask it over its HTTP API",
            dir.display()
        )),
        other => Failure::Runtime(other.to_string()),
    })
}

/// The snapshot compiled from the cache with this configuration.
fn cached_snapshot(config: &Config, store: &Store) -> Result<Snapshot, Failure> {
    let stored = store
        .load_snapshot()
        .map_err(|e| Failure::Runtime(e.to_string()))?
        .ok_or_else(|| Failure::Runtime("no snapshot yet: run portier sync".into()))?;
    Ok(sync::compile_stored(&stored, &config.policy))
}

/// The Cobot token: `cobot.access_token_file`, else the one `portier cobot connect` stored.
pub(crate) fn cobot_token(config: &Config) -> Result<String, Failure> {
    if let Some(file) = &config.cobot.access_token_file {
        return config::read_secret(file)
            .map_err(|e| Failure::Usage(format!("cobot.access_token_file: {e}")));
    }
    crate::cobot::connect::load_stored_token(&config.site.state_dir).ok_or_else(|| {
        Failure::Usage(
            "no Cobot token: set cobot.access_token_file or run portier cobot connect".into(),
        )
    })
}

pub(crate) fn cobot_client(config: &Config, token: String) -> Result<CobotClient, Failure> {
    CobotClient::new(
        config.cobot.api_url.clone(),
        config.cobot.www_url.clone(),
        token,
        config.cobot.request_timeout,
    )
    .map_err(|e| Failure::Runtime(e.to_string()))
}

fn sync_command(config: &Config, args: &SyncArgs) -> Result<(), Failure> {
    let token = cobot_token(config)?;
    let client = cobot_client(config, token)?;
    let store = open_store(config)?;
    let result = runtime()?
        .block_on(sync::sync_once(
            config,
            &store,
            &client,
            args.accept_revocations,
            clock::now,
        ))
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    output::print_sync(&result.summary, args.json, config.cobot.max_revoke_ratio);
    Ok(())
}

/// Parses `--at`: RFC 3339, or now when absent.
fn moment_arg(at: Option<&str>) -> Result<DateTime<Utc>, Failure> {
    match at {
        None => Ok(clock::now()),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                Failure::Usage(format!(
                    "--at: `{text}` is not an RFC 3339 time like 2026-11-24T09:00:00+01:00 ({e})"
                ))
            }),
    }
}

fn members(config: &Config, args: &MembersArgs) -> Result<(), Failure> {
    let at = moment_arg(args.at.as_deref())?;
    let store = open_store(config)?;
    let snapshot = cached_snapshot(config, &store)?;
    output::print_members(&snapshot.members_at(at), args.json);
    Ok(())
}

/// Whether the clock can be trusted right now. `--at` never changes this.
pub(crate) fn clock_trust(now: DateTime<Utc>) -> ClockTrust {
    if now < clock::build_time() {
        ClockTrust::Untrusted(ClockProblem::BeforeBuild)
    } else {
        ClockTrust::Trusted
    }
}

fn explain(config: &Config, args: &ExplainArgs) -> Result<(), Failure> {
    let now = clock::now();
    let at = match &args.at {
        None => now,
        Some(_) => moment_arg(args.at.as_deref())?,
    };
    if !config.policy.units.iter().any(|u| u.id == args.unit) {
        return Err(Failure::Usage(format!(
            "--unit: unknown unit \"{}\" (not in {})",
            args.unit,
            config.path.display()
        )));
    }
    let store = open_store(config)?;
    let snapshot = cached_snapshot(config, &store)?;
    let unit = snapshot.unit(&args.unit).ok_or_else(|| {
        Failure::Usage(format!("--unit: unknown unit \"{}\"", args.unit))
    })?;
    let credential = match (&args.member, &args.credential) {
        (Some(member), _) => Credential::Member(member),
        (None, Some(card)) => Credential::Card(card),
        (None, None) => return Err(Failure::Usage("give --member or --credential".into())),
    };
    let moment = Moment {
        at,
        clock: clock_trust(now),
    };
    let decision = decide(&snapshot, &Request { unit, credential }, &moment);
    output::print_decision(&snapshot, &decision, args.json);
    if decision.granted() {
        Ok(())
    } else {
        Err(Failure::Denied)
    }
}

fn connect(config: &Config, args: &ConnectArgs) -> Result<(), Failure> {
    runtime()?.block_on(crate::cobot::connect::run_cli(config, &args.redirect_uri, args.code.as_deref()))
        .map_err(|e| Failure::Runtime(e.to_string()))
}
