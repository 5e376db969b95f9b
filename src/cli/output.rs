//! How command results are printed: human text by default, JSON with `--json`.

use serde::Serialize;

use crate::config::CobotConfig;
use crate::domain::MemberView;
use crate::sync::SyncSummary;
use crate::views::ExplainView;

fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("portier: cannot render JSON: {e}"),
    }
}

pub(crate) fn print_sync(summary: &SyncSummary, json: bool, cobot: &CobotConfig) {
    if json {
        print_json(summary);
        return;
    }
    println!(
        "Cobot: {} plans, {} members synced, {} skipped (not connected to a Cobot user), {} errors",
        summary.plans, summary.members, summary.skipped_not_connected, summary.errors
    );
    for warning in &summary.warnings {
        println!("  warning: {warning}");
    }
    if summary.applied {
        println!(
            "applied: snapshot version {} ({} of {} previously granted members lose access, \
             {} of {} lose their plan)",
            summary.version,
            summary.revoked,
            summary.granted_before,
            summary.plan_lost,
            summary.plan_known_before
        );
    } else {
        println!(
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
        println!("no members in the cache");
        return;
    }
    for m in members {
        let date = |d: Option<chrono::NaiveDate>| d.map_or("open".to_owned(), |d| d.to_string());
        println!(
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
            println!("    error: {e}");
        }
    }
    println!("{} members", members.len());
}

pub(crate) fn print_decision(view: &ExplainView, json: bool) {
    if json {
        print_json(view);
        return;
    }
    println!(
        "{} {}: {}",
        if view.granted { "GRANTED" } else { "DENIED" },
        view.unit,
        view.reason
    );
    for step in &view.chain {
        println!("  - {step}");
    }
}
