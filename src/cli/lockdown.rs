//! `portier lockdown on|off [--reason TEXT]`: through the running daemon (which also locks
//! every door at once), or straight into the store when no daemon runs (it then starts in
//! lockdown).

use super::output::out;
use super::remote::{self, Answer};
use super::{Failure, LockdownArgs, OnOff};
use crate::config::Config;
use crate::store::{Lockdown, Store, StoreError};

/// Switches the lockdown and says what it is now.
pub(super) fn lockdown(config: &Config, args: &LockdownArgs) -> Result<(), Failure> {
    let on = args.state == OnOff::On;
    let state_dir = &config.site.state_dir;
    let (state, via) = if super::owner::daemon_holds(state_dir) {
        let daemon = remote::Daemon::new(config)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Runtime(format!("cannot start the async runtime: {e}")))?;
        let body = serde_json::json!({"on": on, "reason": args.reason});
        match runtime.block_on(daemon.post_json::<Lockdown>("/v1/lockdown", &body))? {
            Answer::Ok(state) => (state, "the running daemon"),
            Answer::Err(status, message) => return Err(remote::failure(status, message)),
        }
    } else {
        if let Some(foreign) = super::owner::foreign_owner(state_dir) {
            return Err(foreign.refusal());
        }
        let store = match Store::open(state_dir) {
            Ok(store) => store,
            Err(StoreError::Locked(_)) => {
                return Err(Failure::Runtime(
                    "the store is held by another process; try again".to_owned(),
                ));
            }
            Err(e) => return Err(Failure::Runtime(e.to_string())),
        };
        let state = Lockdown {
            on,
            reason: args
                .reason
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
            since: Some(crate::clock::now()),
        };
        store
            .save_lockdown(&state)
            .map_err(|e| Failure::Runtime(e.to_string()))?;
        (state, "the store (the daemon is not running)")
    };
    let why = state
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    if state.on {
        out!("lockdown on{why}, through {via}: only lockdown.allow_groups and staff open");
    } else {
        out!("lockdown off{why}, through {via}");
    }
    Ok(())
}
