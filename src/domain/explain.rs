//! Explanations: a [`Decision`]'s reason (one sentence) and chain (member → plan, fallback and
//! extra groups → permission → schedule window → validity), rendered for space managers.
//!
//! `decide` records indices only; everything here is recomputed from the snapshot the decision
//! was made from, so rendering costs nothing on the door's hot path. Rendering never panics: an
//! index that does not resolve renders as an empty name.

use chrono::{NaiveDate, NaiveDateTime};

use super::decide::{ClockProblem, ClockTrust, Decision, Denial, Outcome, Source, Via};
use super::snapshot::{Member, PLAN_ERROR, PlanRef, Snapshot};

impl Decision {
    /// One sentence saying why the door opens or not.
    pub fn reason(&self, s: &Snapshot) -> String {
        let r = Render::new(self, s);
        let unit = s.unit_id(self.unit);
        let who = r.who();
        match &self.outcome {
            Outcome::Staff => format!("remote open of {unit} by staff through the admin API"),
            Outcome::Granted { group, perm, .. } => format!(
                "{who} may open {unit} through group {} ({})",
                r.group(*group),
                r.perm_short(*perm)
            ),
            Outcome::Denied(denial) => match denial {
                Denial::UnknownUnit => "unknown unit".to_owned(),
                Denial::UnknownMember(key) => {
                    format!("unknown member or email \"{key}\": no synced member has it")
                }
                Denial::UnknownCard(card) => {
                    format!("unknown card \"{card}\": it is not registered to a synced member")
                }
                Denial::UnknownUser(user) => {
                    format!("unknown Cobot user \"{user}\": no synced member is connected to it")
                }
                Denial::SharedEmail(a, b) => format!(
                    "email \"{}\" is shared by members {} and {}; name the member by id",
                    s.member(*a)
                        .and_then(|m| m.email.as_deref())
                        .unwrap_or_default(),
                    r.member_id(*a),
                    r.member_id(*b)
                ),
                Denial::CardConflict(c) => {
                    let (token, ids) = r.card(*c);
                    let owners = s.cards.get(*c as usize).map_or(0, |c| c.owners.len());
                    let count = if owners == 2 { "two" } else { "several" };
                    format!(
                        "card {token} is registered to {count} members ({ids}) and opens nothing"
                    )
                }
                Denial::Blocked(o) => format!("{who} is blocked by {}", r.override_name(*o)),
                Denial::NotConfirmed => format!("{who}'s membership is not confirmed in Cobot"),
                Denial::NotYetValid => {
                    format!("{who} is valid from {}, not on {}", r.from(), r.date())
                }
                Denial::Ended => {
                    format!("{who} was valid until {}, not on {}", r.until(), r.date())
                }
                Denial::NoGroups => format!("{who} holds no groups"),
                Denial::NoPermission => format!(
                    "no group of {who} ({}) has a permission covering {unit}",
                    r.held_groups()
                ),
                Denial::NeedsBooking(g) => format!(
                    "group {} opens {unit} only during a booking (±{}), and {who} has none now",
                    r.group(*g),
                    humantime::format_duration(s.booking_grace_std)
                ),
                Denial::OutsideSchedule(p) => format!(
                    "{} is limited to {}, and {} is outside it",
                    r.perm_phrase(*p),
                    r.schedule(*p),
                    r.local_time()
                ),
                Denial::Holiday(p) => format!(
                    "{} is a holiday, so schedule-limited {} grants nothing",
                    r.date(),
                    r.perm_phrase(*p)
                ),
                Denial::ClockUntrusted(p) => format!(
                    "the clock is untrusted ({}), so schedule-limited {} is refused",
                    clock_problem(self.moment.clock),
                    r.perm_phrase(*p)
                ),
                Denial::Offline(g) => format!(
                    "the last sync is older than offline.max_age ({}), and group {} is not in offline.keep_groups",
                    r.max_age(),
                    r.group(*g)
                ),
                Denial::Lockdown(g) => format!(
                    "lockdown is on: only lockdown.allow_groups open, and group {} is not one of them",
                    r.group(*g)
                ),
            },
        }
    }

    /// The reasoning step by step, one sentence each.
    pub fn chain(&self, s: &Snapshot) -> Vec<String> {
        let r = Render::new(self, s);
        let mut chain = Vec::new();
        match self.via {
            Via::Admin => {
                chain.push(self.reason(s));
                return chain;
            }
            Via::Card(c) => {
                let (token, ids) = r.card(c);
                match r.member {
                    Some(_)
                        if !matches!(self.outcome, Outcome::Denied(Denial::CardConflict(_))) =>
                    {
                        chain.push(format!("card {token} is registered to {}", r.who()))
                    }
                    _ => chain.push(format!("card {token} is registered to {ids}")),
                }
            }
            Via::User => {
                if let Some(m) = r.member {
                    let user = m.user_id.as_deref().unwrap_or_default();
                    chain.push(format!("Cobot user {user} is member {}", r.who()));
                }
            }
            Via::Member => {}
        }
        let Some(member) = r.member else {
            if chain.is_empty() {
                chain.push(self.reason(s));
            }
            return chain;
        };
        r.plan_lines(member, &mut chain);
        if !member.extra.is_empty() {
            let label = s
                .additional_groups_field
                .as_deref()
                .unwrap_or("custom field");
            chain.push(format!(
                "custom field {label} adds groups {}",
                r.groups(&member.extra)
            ));
        }
        r.override_lines(member, &mut chain);
        if r.stale() {
            let keep: Vec<u32> = (0u32..)
                .zip(&s.groups)
                .filter(|(_, g)| g.keep_offline)
                .map(|(i, _)| i)
                .collect();
            chain.push(format!(
                "the last sync ({}) is older than offline.max_age ({}): only groups {} are granted",
                s.synced_at.to_rfc3339(),
                r.max_age(),
                r.groups(&keep)
            ));
        }
        if let Some(line) = r.permission_line(&self.outcome) {
            chain.push(line);
        }
        chain.push(r.validity_line(member));
        chain
    }
}

fn clock_problem(clock: ClockTrust) -> &'static str {
    match clock {
        ClockTrust::Trusted => "trusted",
        ClockTrust::Untrusted(ClockProblem::BeforeBuild) => "it reads a time before the build",
        ClockTrust::Untrusted(ClockProblem::JumpedBack) => {
            "it jumped back past the last recorded event"
        }
    }
}

/// What rendering needs, computed once.
struct Render<'a> {
    d: &'a Decision,
    s: &'a Snapshot,
    member: Option<&'a Member>,
    local: NaiveDateTime,
}

impl<'a> Render<'a> {
    fn new(d: &'a Decision, s: &'a Snapshot) -> Self {
        Self {
            d,
            s,
            member: d.member.and_then(|m| s.member(m.0)),
            local: d.moment.at.with_timezone(&s.tz).naive_local(),
        }
    }

    fn date(&self) -> NaiveDate {
        self.local.date()
    }

    fn local_time(&self) -> String {
        format!(
            "{} ({})",
            self.local.format("%a %Y-%m-%d %H:%M"),
            self.s.tz.name()
        )
    }

    fn who(&self) -> String {
        match self.member {
            Some(m) if m.name.is_empty() => m.id.clone(),
            Some(m) => format!("{} ({})", m.name, m.id),
            None => "unknown member".to_owned(),
        }
    }

    fn member_id(&self, m: u32) -> &str {
        self.s.member(m).map_or("", |m| m.id.as_str())
    }

    fn group(&self, g: u32) -> &str {
        self.s.group_id(g).unwrap_or_default()
    }

    fn groups(&self, gs: &[u32]) -> String {
        if gs.is_empty() {
            return "none".to_owned();
        }
        let ids: Vec<&str> = gs.iter().map(|&g| self.group(g)).collect();
        ids.join(", ")
    }

    fn held_groups(&self) -> String {
        let Some(m) = self.member else {
            return "none".to_owned();
        };
        let mut gs: Vec<u32> = self.s.effective_groups(m, self.date()).collect();
        gs.sort_unstable();
        gs.dedup();
        self.groups(&gs)
    }

    fn card(&self, c: u32) -> (&str, String) {
        let card = self.s.cards.get(c as usize);
        let ids: Vec<&str> = card
            .map(|c| c.owners.iter().map(|&m| self.member_id(m)).collect())
            .unwrap_or_default();
        (card.map_or("", |c| c.token.as_str()), ids.join(", "))
    }

    fn override_name(&self, o: u32) -> String {
        match self.s.overrides.get(o as usize) {
            Some(ov) => match ov.until {
                Some(until) => format!("override \"{}\" until {until}", ov.key),
                None => format!("override \"{}\"", ov.key),
            },
            None => "an override".to_owned(),
        }
    }

    fn from(&self) -> String {
        self.member
            .and_then(|m| m.valid_from)
            .map_or_else(|| "any day".to_owned(), |d| d.to_string())
    }

    fn until(&self) -> String {
        self.member
            .and_then(|m| m.valid_until)
            .map_or_else(|| "any day".to_owned(), |d| d.to_string())
    }

    fn stale(&self) -> bool {
        self.s
            .offline_max_age
            .is_some_and(|max| self.d.moment.at - self.s.synced_at > max)
    }

    fn max_age(&self) -> String {
        self.s
            .offline_max_age_std
            .map_or_else(String::new, |d| humantime::format_duration(d).to_string())
    }

    /// `permission full_time on building (covering front_door)`.
    fn perm_phrase(&self, p: u32) -> String {
        let Some(perm) = self.s.perms.get(p as usize) else {
            return "a permission".to_owned();
        };
        let on = self
            .s
            .units
            .get(perm.unit as usize)
            .map_or("", |u| u.id.as_str());
        let unit = self.s.unit_id(self.d.unit);
        let group = self.group(perm.group);
        if on == unit {
            format!("permission {group} on {on}")
        } else {
            format!("permission {group} on {on} (covering {unit})")
        }
    }

    /// `permission on building, 24/7` for the granted reason.
    fn perm_short(&self, p: u32) -> String {
        let Some(perm) = self.s.perms.get(p as usize) else {
            return String::new();
        };
        let on = self
            .s
            .units
            .get(perm.unit as usize)
            .map_or("", |u| u.id.as_str());
        match &perm.schedule {
            None => format!("permission on {on}, 24/7"),
            Some(sch) => format!("permission on {on}, within {sch}"),
        }
    }

    fn schedule(&self, p: u32) -> String {
        match self
            .s
            .perms
            .get(p as usize)
            .and_then(|p| p.schedule.as_ref())
        {
            Some(sch) => sch.to_string(),
            None => "24/7".to_owned(),
        }
    }

    fn plan_groups_line(&self, plan: Option<u32>) -> String {
        match plan.and_then(|p| self.s.plans.get(p as usize)) {
            Some(p) if p.groups.is_empty() && p.booking.is_empty() => {
                "no groups (the plan has no assignment)".to_owned()
            }
            Some(p) if p.groups.is_empty() => "no groups outside bookings".to_owned(),
            Some(p) => format!("groups {}", self.groups(&p.groups)),
            None => "no plan groups".to_owned(),
        }
    }

    fn plan_lines(&self, m: &Member, chain: &mut Vec<String>) {
        let who = self.who();
        let (plan, upcoming) = m.plan_on(self.date());
        let groups = self.plan_groups_line(plan.plan());
        let mut line = match plan {
            PlanRef::Known(p) if upcoming => {
                let since = m
                    .upcoming
                    .as_ref()
                    .map(|u| u.starts.to_string())
                    .unwrap_or_default();
                let name = self.s.plan_name(p);
                format!("{who} is on plan {name} since {since} (upcoming plan) → {groups}")
            }
            PlanRef::Known(p) => format!("{who} is on plan {} → {groups}", self.s.plan_name(p)),
            PlanRef::Fallback(p) => format!(
                "{who}: {PLAN_ERROR}, so the fallback plan {} applies → {groups}",
                self.s.plan_name(p)
            ),
            PlanRef::Missing => match &self.s.report.fallback_problem {
                Some(problem) => format!("{who}: {PLAN_ERROR}, and {problem} → {groups}"),
                None => {
                    format!("{who}: {PLAN_ERROR}, and no fallback plan is configured → {groups}")
                }
            },
        };
        if let Some(up) = m.upcoming.as_ref().filter(|u| u.starts > self.date()) {
            let next = up
                .plan
                .plan()
                .map_or("an unknown plan", |p| self.s.plan_name(p));
            line.push_str(&format!(" (switches to plan {next} on {})", up.starts));
        }
        chain.push(line);
        let Some(p) = plan.plan().and_then(|p| self.s.plans.get(p as usize)) else {
            return;
        };
        for rule in &p.booking {
            let on = if rule.resources.is_empty() {
                String::new()
            } else {
                format!(" of resource {}", rule.resources.join(", "))
            };
            let booked = m.booked_at(&rule.resources, self.d.moment.at, self.s.booking_grace);
            chain.push(format!(
                "plan {} gives groups {} only during a booking{on} (±{}): {}",
                p.name,
                self.groups(&rule.groups),
                humantime::format_duration(self.s.booking_grace_std),
                if booked {
                    "a booking covers now"
                } else {
                    "no booking covers now"
                }
            ));
        }
    }

    fn override_lines(&self, m: &Member, chain: &mut Vec<String>) {
        for &o in &m.overrides {
            let Some(ov) = self.s.overrides.get(o as usize) else {
                continue;
            };
            let name = self.override_name(o);
            if !ov.active_on(self.date()) {
                chain.push(format!("{name} has ended and no longer applies"));
                continue;
            }
            if ov.blocked {
                chain.push(format!("{name} blocks the member"));
            }
            if !ov.add_groups.is_empty() {
                chain.push(format!(
                    "{name} adds groups {}",
                    self.groups(&ov.add_groups)
                ));
            }
        }
    }

    fn permission_line(&self, outcome: &Outcome) -> Option<String> {
        let unit = self.s.unit_id(self.d.unit);
        let window = |p: u32, verdict: &str| -> String {
            format!(
                "{}, schedule {}: {verdict}",
                self.perm_phrase(p),
                self.schedule(p)
            )
        };
        Some(match outcome {
            Outcome::Granted { source, perm, .. } => {
                let via = match source {
                    Source::Plan => String::new(),
                    Source::Booking(_) => " (during a booking)".to_owned(),
                    Source::Field => " (from the custom field)".to_owned(),
                    Source::Override(o) => format!(" (from {})", self.override_name(*o)),
                };
                match self
                    .s
                    .perms
                    .get(*perm as usize)
                    .and_then(|p| p.schedule.as_ref())
                {
                    None => format!("{}{via}, 24/7", self.perm_phrase(*perm)),
                    Some(_) => {
                        let inside = format!("{} is inside", self.local_time());
                        format!("{}{via}", window(*perm, &inside))
                    }
                }
            }
            Outcome::Denied(Denial::OutsideSchedule(p)) => {
                window(*p, &format!("{} is outside", self.local_time()))
            }
            Outcome::Denied(Denial::Holiday(p)) => window(
                *p,
                &format!("{} is a holiday, no schedule-limited access", self.date()),
            ),
            Outcome::Denied(Denial::ClockUntrusted(p)) => window(
                *p,
                &format!(
                    "refused, the clock is untrusted ({})",
                    clock_problem(self.d.moment.clock)
                ),
            ),
            Outcome::Denied(Denial::NoPermission) => {
                format!(
                    "no permission of groups {} covers {unit}",
                    self.held_groups()
                )
            }
            Outcome::Denied(Denial::NoGroups) => format!("{} holds no groups", self.who()),
            Outcome::Denied(Denial::NeedsBooking(g)) => format!(
                "group {} has a permission covering {unit} but only during a booking",
                self.group(*g)
            ),
            Outcome::Denied(Denial::Offline(g)) => format!(
                "group {} has a permission covering {unit} but is not in offline.keep_groups",
                self.group(*g)
            ),
            Outcome::Denied(Denial::Lockdown(g)) => format!(
                "group {} has a permission covering {unit} but is not in lockdown.allow_groups \
                 (lockdown is on)",
                self.group(*g)
            ),
            _ => return None,
        })
    }

    fn validity_line(&self, m: &Member) -> String {
        let (date, tz) = (self.date(), self.s.tz.name());
        if !m.confirmed {
            return "the membership is not confirmed in Cobot (no confirmed_at): no access".into();
        }
        let range = match (m.valid_from, m.valid_until) {
            (Some(from), Some(until)) => format!("valid from {from} through {until} ({tz})"),
            (Some(from), None) => format!("valid from {from}, with no end date ({tz})"),
            (None, Some(until)) => format!("valid through {until} ({tz})"),
            (None, None) => "valid with no start or end date".to_owned(),
        };
        match m.validity_on(date) {
            super::snapshot::Validity::NotYet => format!("{range}: {date} is before it"),
            super::snapshot::Validity::Ended => format!("{range}: {date} is after it"),
            _ => format!("{range}: {date} is inside"),
        }
    }
}
