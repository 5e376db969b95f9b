//! How command results are printed: human text by default, JSON with `--json`.
//!
//! Everything a command prints goes through [`out!`]: when the reader of stdout goes away
//! (`portier members | head -1`), the rest of the output is dropped quietly and the command
//! ends with the exit code its work earned, instead of the panic `println!` gives on a broken
//! pipe.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::config::CobotConfig;
use crate::domain::MemberView;
use crate::sync::SyncSummary;
use crate::views::ExplainView;

/// Set once stdout cannot be written any more; later output is skipped.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout, like `println!`, but never panics: a closed pipe ends the
/// output quietly; another write error is said once on stderr.
pub(crate) fn write_line(args: std::fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"));
    if let Err(e) = written {
        STDOUT_GONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("portier: cannot write the output: {e}");
        }
    }
}

/// `println!` for command output, through [`write_line`].
macro_rules! out {
    () => {
        $crate::cli::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use out;

pub(crate) fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => out!("{text}"),
        Err(e) => eprintln!("portier: cannot render JSON: {e}"),
    }
}

pub(crate) fn print_sync(summary: &SyncSummary, json: bool, cobot: &CobotConfig) {
    if json {
        print_json(summary);
        return;
    }
    out!(
        "Cobot: {} plans, {} members synced, {} skipped (not connected to a Cobot user), {} errors",
        summary.plans,
        summary.members,
        summary.skipped_not_connected,
        summary.errors
    );
    for warning in &summary.warnings {
        out!("  warning: {warning}");
    }
    if summary.applied {
        out!(
            "applied: snapshot version {} ({} of {} previously granted members lose access, \
             {} of {} lose their plan)",
            summary.version,
            summary.revoked,
            summary.granted_before,
            summary.plan_lost,
            summary.plan_known_before
        );
    } else {
        out!(
            "NOT applied: it would remove access from {} of {} granted members (limit {:.0}%) \
             and take the plan from {} of {} members whose plan was known (limit {:.0}%); \
             snapshot version {} stays in force. If this is intended, run: portier sync --accept-revocations",
            summary.revoked,
            summary.granted_before,
            cobot.max_revoke_ratio * 100.0,
            summary.plan_lost,
            summary.plan_known_before,
            cobot.max_plan_loss_ratio * 100.0,
            summary.version
        );
    }
}

pub(crate) fn print_members(members: &[MemberView], json: bool) {
    if json {
        print_json(&members);
        return;
    }
    if members.is_empty() {
        out!("no members in the cache");
        return;
    }
    for m in members {
        let date = |d: Option<chrono::NaiveDate>| d.map_or("open".to_owned(), |d| d.to_string());
        out!(
            "{}  {}  <{}>  plan: {}  groups: {}  valid: {} .. {}",
            m.id,
            m.name,
            m.email.as_deref().unwrap_or("-"),
            m.plan.as_deref().unwrap_or("-"),
            if m.groups.is_empty() {
                "-".to_owned()
            } else {
                m.groups.join(",")
            },
            date(m.valid_from),
            date(m.valid_until),
        );
        for e in &m.errors {
            out!("    error: {e}");
        }
    }
    out!("{} members", members.len());
}

pub(crate) fn print_decision(view: &ExplainView, json: bool) {
    if json {
        print_json(view);
        return;
    }
    out!(
        "{} {}: {}",
        if view.granted { "GRANTED" } else { "DENIED" },
        view.unit,
        view.reason
    );
    for step in &view.chain {
        out!("  - {step}");
    }
}
