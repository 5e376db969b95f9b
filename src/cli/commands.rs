//! One function per command. Each loads what it needs, does its work, prints its output and
//! returns a [`Failure`] carrying the exit code when it did not succeed.

use std::path::Path;

use super::output::{self, out};
use super::remote::{self, Answer};
use super::{Cli, CobotCommand, Command, ConnectArgs, ExplainArgs, Failure, MembersArgs, SyncArgs};
use super::{owner, status};
use crate::clock;
use crate::config::Config;
use crate::domain::MemberView;
use crate::domain::Snapshot;
use crate::store::{Store, StoreError};
use crate::sync;
use crate::sync::SyncSummary;
use crate::views::{self, ExplainQuery, ExplainView};

/// Runs the parsed command.
pub(super) fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo(args) => super::demo::run(&args).map_err(Failure::Runtime),
        #[cfg(not(feature = "demo"))]
        Command::Demo(_) => Err(Failure::Runtime(
            "this portier was built without the demo (cargo feature `demo`); \
             the packaged build has it"
                .to_owned(),
        )),
        Command::CheckConfig => check_config(&cli.config),
        Command::Run => {
            let config = load_config(&cli.config)?;
            if let Some(problem) = config.check_admin_token() {
                eprintln!("{problem}");
                return Err(Failure::Reported(64));
            }
            owner::ensure_owner(&config.site.state_dir)?;
            crate::app::run(config).map_err(|e| Failure::Runtime(e.to_string()))
        }
        Command::Sync(args) => sync_command(&load_config(&cli.config)?, &args),
        Command::Members(args) => members(&load_config(&cli.config)?, &args),
        Command::Explain(args) => explain(&load_config(&cli.config)?, &args),
        Command::Cobot(CobotCommand::Connect(args)) => connect(&load_config(&cli.config)?, &args),
        Command::Cobot(CobotCommand::Link(args)) => link(&load_config(&cli.config)?, &args),
        Command::Status(args) => status::run(&load_config(&cli.config)?, &args),
        Command::Backup(args) => super::backup::backup(&load_config(&cli.config)?, &args),
        Command::Restore(args) => super::backup::restore(&load_config(&cli.config)?, &args),
        Command::Enrol(args) => super::enrol::enrol(&load_config(&cli.config)?, &args),
        Command::Lockdown(args) => super::lockdown::lockdown(&load_config(&cli.config)?, &args),
        Command::Osdp(super::OsdpCommand::Keyset(args)) => {
            super::osdp::keyset(&load_config(&cli.config)?, &args)
        }
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
    out!(
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

/// Where a command gets its data: the store itself, or the daemon that holds it.
enum Access {
    /// This process owns the store.
    Local(Store),
    /// `portier run` holds the store: ask it.
    Daemon(remote::Daemon),
}

/// The store when this user owns the state directory; else the daemon, if it holds the store
/// (a command never writes another user's state directory: see [`owner`]).
fn access(config: &Config) -> Result<Access, Failure> {
    let state_dir = &config.site.state_dir;
    if let Some(foreign) = owner::foreign_owner(state_dir) {
        return if owner::daemon_holds(state_dir) {
            Ok(Access::Daemon(remote::Daemon::new(config)?))
        } else {
            Err(foreign.refusal())
        };
    }
    match Store::open(state_dir) {
        Ok(store) => Ok(Access::Local(store)),
        Err(StoreError::Locked(_)) => Ok(Access::Daemon(remote::Daemon::new(config)?)),
        Err(other) => Err(Failure::Runtime(other.to_string())),
    }
}

/// The snapshot compiled from the cache with this configuration.
fn cached_snapshot(config: &Config, store: &Store) -> Result<Snapshot, Failure> {
    let stored = store
        .load_snapshot()
        .map_err(|e| Failure::Runtime(e.to_string()))?
        .ok_or_else(|| Failure::Runtime("no snapshot yet: run portier sync".into()))?;
    Ok(sync::compile_stored(&stored, &config.policy))
}

fn sync_command(config: &Config, args: &SyncArgs) -> Result<(), Failure> {
    let summary = match access(config)? {
        Access::Daemon(daemon) => {
            // Said before the wait, so nobody takes a spaced request for a hang.
            eprintln!(
                "asking the running daemon to sync; Cobot allows one membership request every \
                 {} s, so this waits up to that long after the daemon's last sync",
                sync::MEMBERSHIP_SPACING.as_secs()
            );
            let mut query = vec![("wait", "true")];
            if args.accept_revocations {
                query.push(("accept_revocations", "true"));
            }
            match runtime()?.block_on(daemon.post::<SyncSummary>("/v1/sync", &query))? {
                Answer::Ok(summary) => summary,
                Answer::Err(status, message) => return Err(remote::failure(status, message)),
            }
        }
        Access::Local(store) => {
            let token = crate::cobot::token_for(config).map_err(Failure::Usage)?;
            let client = crate::cobot::client_for(config, token)
                .map_err(|e| Failure::Runtime(e.to_string()))?;
            runtime()?
                .block_on(sync::sync_once(
                    config,
                    &store,
                    &client,
                    args.accept_revocations,
                    sync::Baseline::Stored,
                    clock::now,
                ))
                .map_err(|e| Failure::Runtime(e.to_string()))?
                .summary
        }
    };
    output::print_sync(&summary, args.json, &config.cobot);
    Ok(())
}

fn members(config: &Config, args: &MembersArgs) -> Result<(), Failure> {
    let at = views::parse_at(args.at.as_deref(), clock::now())
        .map_err(|e| Failure::Usage(format!("--{e}")))?;
    let members = match access(config)? {
        Access::Local(store) => cached_snapshot(config, &store)?.members_at(at),
        Access::Daemon(daemon) => {
            let at = at.to_rfc3339();
            match runtime()?
                .block_on(daemon.get::<Vec<MemberView>>("/v1/members", &[("at", &at)]))?
            {
                Answer::Ok(members) => members,
                Answer::Err(status, message) => return Err(remote::failure(status, message)),
            }
        }
    };
    output::print_members(&members, args.json);
    Ok(())
}

fn explain(config: &Config, args: &ExplainArgs) -> Result<(), Failure> {
    let query = ExplainQuery {
        member: args.member.clone(),
        credential: args.credential.clone(),
        unit: Some(args.unit.clone()),
        at: args.at.clone(),
    };
    let now = clock::now();
    // Usage errors come before "no snapshot": the unit and the moment are checked against the
    // configuration first.
    views::parse_at(query.at.as_deref(), now).map_err(|e| Failure::Usage(format!("--{e}")))?;
    if !config.policy.units.iter().any(|u| u.id == args.unit) {
        return Err(Failure::Usage(format!(
            "--unit: unknown unit \"{}\" (not in {})",
            args.unit,
            config.path.display()
        )));
    }
    let view = match access(config)? {
        Access::Local(store) => {
            let snapshot = cached_snapshot(config, &store)?;
            let last_event = store
                .last_event_time()
                .map_err(|e| Failure::Runtime(e.to_string()))?;
            let lockdown = store
                .lockdown()
                .map_err(|e| Failure::Runtime(e.to_string()))?
                .on;
            views::explain(
                &snapshot,
                &query,
                now,
                clock::trust(now, last_event),
                lockdown,
            )
            .map_err(|e| Failure::Usage(e.to_string()))?
        }
        Access::Daemon(daemon) => {
            let mut params = vec![("unit", args.unit.as_str())];
            if let Some(member) = &args.member {
                params.push(("member", member));
            }
            if let Some(card) = &args.credential {
                params.push(("credential", card));
            }
            if let Some(at) = &args.at {
                params.push(("at", at));
            }
            match runtime()?.block_on(daemon.get::<ExplainView>("/v1/explain", &params))? {
                Answer::Ok(view) => view,
                Answer::Err(status, message) => return Err(remote::failure(status, message)),
            }
        }
    };
    output::print_decision(&view, args.json);
    if view.granted {
        Ok(())
    } else {
        Err(Failure::Denied)
    }
}

/// How long `cobot connect` waits for the browser.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// `portier cobot link [--remove]`: the member portal's link to the member page.
fn link(config: &Config, args: &super::LinkArgs) -> Result<(), Failure> {
    let member_page = config.member_page.as_ref().ok_or_else(|| {
        Failure::Usage(
            "the member page is not enabled: set [member_page] (see the README) first".to_owned(),
        )
    })?;
    let target = member_page.url("m/");
    let token = crate::cobot::token_for(config).map_err(Failure::Usage)?;
    let client =
        crate::cobot::client_for(config, token).map_err(|e| Failure::Runtime(e.to_string()))?;
    let failed = |e: crate::cobot::CobotError| Failure::Runtime(format!("Cobot: {e}"));
    runtime()?.block_on(async {
        let ours: Vec<_> = client
            .navigation_links()
            .await
            .map_err(failed)?
            .into_iter()
            .filter(|l| l.iframe_url == target)
            .collect();
        if args.remove {
            if ours.is_empty() {
                out!("no member portal link to {target}: nothing to remove");
            }
            for link in ours {
                client
                    .remove_navigation_link(&link.id)
                    .await
                    .map_err(failed)?;
                out!(
                    "removed \"{}\" ({target}) from the member portal",
                    link.label
                );
            }
        } else if let Some(link) = ours.first() {
            out!(
                "the member portal links to {target} already (\"{}\")",
                link.label
            );
        } else {
            let link = client
                .add_navigation_link("members", &args.label, &target)
                .await
                .map_err(failed)?;
            out!(
                "added \"{}\" to the member portal: it opens {target}",
                link.label
            );
        }
        Ok(())
    })
}

fn connect(config: &Config, args: &ConnectArgs) -> Result<(), Failure> {
    use crate::cobot::{ConnectFlow, ConnectParams, store_token};

    owner::ensure_owner(&config.site.state_dir)?;
    let usage = |m: &str| Failure::Usage(m.to_owned());
    let client_id = config.cobot.client_id.clone().ok_or_else(|| {
        usage("cobot.client_id is not set: register an app at Cobot (see the README) and put its id there")
    })?;
    let secret_file = config.cobot.client_secret_file.as_ref().ok_or_else(|| {
        usage("cobot.client_secret_file is not set: put the app's client secret in a file (mode 0600) and name it there")
    })?;
    let client_secret = crate::config::read_secret(secret_file)
        .map_err(|e| Failure::Usage(format!("cobot.client_secret_file: {e}")))?;
    let subdomain = config.cobot.subdomain.clone().ok_or_else(|| {
        usage("cobot.subdomain is not set: it is needed to make the token space-bound")
    })?;
    let redirect_uri = url::Url::parse(&args.redirect_uri)
        .map_err(|e| Failure::Usage(format!("--redirect-uri: {e}")))?;
    let params = ConnectParams {
        www_url: config.cobot.www_url.clone(),
        subdomain,
        client_id,
        client_secret,
        redirect_uri,
        timeout: config.cobot.request_timeout,
    };
    let state_dir = &config.site.state_dir;
    std::fs::create_dir_all(state_dir)
        .map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", state_dir.display())))?;
    let failed = |e: crate::cobot::ConnectError| Failure::Runtime(e.to_string());
    runtime()?.block_on(async {
        let (flow, code) = match &args.code {
            Some(code) => (ConnectFlow::resume(params, state_dir).map_err(failed)?, code.clone()),
            None => {
                let (url, flow) = ConnectFlow::start(params).map_err(failed)?;
                flow.save_pending(state_dir).map_err(failed)?;
                out!("Open this address in a browser, log in as an admin of the space and approve:\n\n  {url}\n");
                let code = wait_for_code(&flow).await?;
                (flow, code)
            }
        };
        let token = flow.finish(&code).await.map_err(failed)?;
        let path = store_token(state_dir, &token).map_err(failed)?;
        ConnectFlow::clear_pending(state_dir);
        out!("Connected: a space-bound Cobot token is stored in {} (mode 0600).", path.display());
        out!("Next: portier sync");
        Ok(())
    })
}

/// Waits for Cobot's redirect on the redirect URI's port, or for the installer to paste the
/// redirected address (when the browser runs on another machine), whichever comes first.
async fn wait_for_code(flow: &crate::cobot::ConnectFlow) -> Result<String, Failure> {
    use tokio::io::AsyncBufReadExt;

    let listener = match flow.listen().await {
        Ok(listener) => {
            out!(
                "Waiting for the redirect. If the browser runs on another machine, paste the address \
                 it ends on here and press Enter (or run portier cobot connect --code CODE)."
            );
            Some(listener)
        }
        Err(e) => {
            out!("{e}.\nPaste the address the browser ends on here and press Enter:");
            None
        }
    };
    let redirect = async {
        match listener {
            Some(listener) => flow.wait_for_redirect(listener, CONNECT_WAIT).await,
            None => std::future::pending().await,
        }
    };
    let pasted = async {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) if line.trim().is_empty() => continue,
                Ok(Some(line)) => return flow.code_from_pasted_url(&line),
                // No terminal (or end of input): only the redirect can deliver the code.
                Ok(None) | Err(_) => std::future::pending::<()>().await,
            }
        }
    };
    tokio::select! {
        code = redirect => code,
        code = pasted => code,
    }
    .map_err(|e| Failure::Runtime(e.to_string()))
}
