//! Cobot-shaped JSON for the fake Cobot, `portier demo` and tests, built relative to a "today".
//!
//! Field names follow `reference/cobot-api.md` (F1 plans, F2 memberships); ids are 32-hex like
//! Cobot's. The standard set covers every case the sync must handle: active, not connected
//! (`"user": null` and no `user` key), unknown parent plan, future start, past and future
//! cancellation, an upcoming plan switch, a booking-only member with a booking today, card
//! tokens and the additional-groups custom field.

use chrono::{Days, NaiveDate};
use serde_json::{Value, json};

/// Plan "Full Time" (visible).
pub const PLAN_FULL_TIME: &str = "a1f0c3e2b4d54f6e8a9b0c1d2e3f4a51";
/// Plan "Part Time (weekdays)" (hidden).
pub const PLAN_PART_TIME: &str = "b2e1d4f3c5a64e7f9b0a1c2d3e4f5a62";
/// Plan "Flex (day passes)": booking-only members.
pub const PLAN_FLEX: &str = "c3d2e5a4b6f74a8c0d1e2f3a4b5c6d73";
/// A parent plan id that is not in `/api/plans` (a deleted plan).
pub const PLAN_UNKNOWN: &str = "ffffffffffffffffffffffffffffffff";
/// The resource booked by the Flex member.
pub const RESOURCE_FLEX_DESK: &str = "e5f6a7b8c9d04e1f8a2b3c4d5e6f7a81";
/// The meeting room (booked by an event, without membership).
pub const RESOURCE_MEETING_ROOM: &str = "f1a2b3c4d5e64f708192a3b4c5d6e7f8";

/// Active and connected, Full Time; has a card and the custom field "staff, unknown_group".
pub const ADA: &str = "0c4f75fa14924423810d6f12aeb56fbb";
/// Cancelled in the past (Part Time).
pub const CHARLES: &str = "1a5e86fb25035534921e7e23bfc67acc";
/// Confirmed, starting in 16 days (Full Time).
pub const GRACE: &str = "2b6f97ac36146645a32f8f34c0d78bdd";
/// Not connected: `"user": null` (Flex); has a card.
pub const ALAN: &str = "3c7a08bd47257756b4309045d1e89cee";
/// On a deleted plan (`parent_plan.id` = [`PLAN_UNKNOWN`]).
pub const KATHERINE: &str = "4d8b19ce58368867c541a156e2f90dff";
/// Not connected: no `user` key at all (Full Time).
pub const EDSGER: &str = "6e9c2adf69479978d652b267f3a01e00";
/// Cancelled to 10 days ahead (Part Time); has a card written with colons.
pub const BARBARA: &str = "7fad3be07a58a089e763c378a4b12f11";
/// Part Time now, switching to Full Time in 3 days.
pub const LINUS: &str = "8abe4cf18b69b19af874d489b5c23a22";
/// Flex (booking-only) with a booking today; has a card.
pub const MARGARET: &str = "9bcf5da29c7ac2ab0985e59ac6d34b33";

/// The label of the additional-groups custom field.
pub const ADDITIONAL_UNITS_FIELD: &str = "smart_spaces_access_additional_units";

/// Ada's card as Cobot returns it.
pub const ADA_CARD: &str = "04A1B2C3D4";
/// Barbara's card, written with colons.
pub const BARBARA_CARD: &str = "04:B2:C3:D4:E5";
/// Margaret's card.
pub const MARGARET_CARD: &str = "0A0B0C0D";
/// Alan's card (Alan is not connected, so it opens nothing).
pub const ALAN_CARD: &str = "0E0F1011";

/// The Cobot user id the fixtures give a connected member (the membership id, mirrored).
pub fn user_id_of(membership_id: &str) -> String {
    membership_id.chars().rev().collect()
}

/// Cobot's date format, `YYYY/MM/DD`.
pub fn date(d: NaiveDate) -> String {
    d.format("%Y/%m/%d").to_string()
}

/// Cobot's time format at a given hour of a day (UTC), `YYYY/MM/DD HH:00:00 +0000`.
pub fn time(d: NaiveDate, hour: u32) -> String {
    format!("{} {hour:02}:00:00 +0000", date(d))
}

fn plus(d: NaiveDate, days: u64) -> NaiveDate {
    d.checked_add_days(Days::new(days)).unwrap_or(d)
}

fn minus(d: NaiveDate, days: u64) -> NaiveDate {
    d.checked_sub_days(Days::new(days)).unwrap_or(d)
}

fn plan(id: &str, name: &str, description: &str, hidden: bool, cents: u32) -> Value {
    json!({
        "id": id, "name": name, "color": "#b4c300", "photo": "/url/to/photo.jpg",
        "price_per_cycle": format!("{}.0", cents / 100), "price_per_cycle_in_cents": cents,
        "cycle_duration": 1, "currency": "EUR", "terms": "", "description": description,
        "cancellation_period": 30, "minimum_commitment": 1, "hidden": hidden,
        "tax_rate": "19.0", "welcome_message": "", "signup_charge": null,
        "booking_credits": [], "time_passes": [], "extras": []
    })
}

/// `GET /api/plans`: "Full Time", hidden "Part Time (weekdays)", "Flex (day passes)".
pub fn plans() -> Value {
    json!([
        plan(
            PLAN_FULL_TIME,
            "Full Time",
            "24/7 access to all doors",
            false,
            25000
        ),
        plan(
            PLAN_PART_TIME,
            "Part Time (weekdays)",
            "Front door Mon-Fri",
            true,
            15000
        ),
        plan(
            PLAN_FLEX,
            "Flex (day passes)",
            "Access only with a booking",
            false,
            0
        ),
    ])
}

/// A membership's plan copy.
pub fn plan_copy(name: &str, parent_plan_id: &str, canceled_to: Option<NaiveDate>) -> Value {
    json!({
        "name": name, "description": "", "parent_plan": { "id": parent_plan_id },
        "price_per_cycle_in_cents": 10000, "price_per_cycle": "100.0", "tax_rate": "19.0",
        "cycle_duration": 1, "currency": "EUR", "cancellation_period": 14,
        "canceled_to": canceled_to.map(date), "total_price_per_cycle": "100.00",
        "booking_credits": [], "extras": [], "time_passes": []
    })
}

/// One membership in F2's shape; `user` is the connected user id (`None` gives `"user": null`).
pub fn membership(
    id: &str,
    name: &str,
    user: Option<&str>,
    plan: Value,
    starts_at: NaiveDate,
    canceled_to: Option<NaiveDate>,
) -> Value {
    let email = format!("{}@example.com", name.to_lowercase().replace(' ', "."));
    json!({
        "id": id, "name": name, "email": email, "phone": null,
        "user": user.map(|u| json!({ "id": u, "email": email })),
        "address": { "company": null, "name": name, "full_address": "", "country": "Germany" },
        "billing_emails": [email], "charge_taxes": true, "customer_number": "10000",
        "plan": plan, "upcoming_plan": null,
        "payment_method": { "name": "cash", "automated": false },
        "confirmed_at": time(minus(starts_at, 1), 9),
        "starts_at": date(starts_at), "canceled_to": canceled_to.map(date),
        "next_invoice_at": null
    })
}

fn connected(
    id: &str,
    name: &str,
    plan: Value,
    starts: NaiveDate,
    canceled: Option<NaiveDate>,
) -> Value {
    membership(id, name, Some(&user_id_of(id)), plan, starts, canceled)
}

/// `GET /api/memberships?all=true`: the standard cases, relative to `today`.
pub fn memberships(today: NaiveDate) -> Value {
    let long_ago = minus(today, 500);
    let full = || plan_copy("Full Time", PLAN_FULL_TIME, None);
    let part = |c| plan_copy("Part Time (weekdays)", PLAN_PART_TIME, c);
    let flex = || plan_copy("Flex (day passes)", PLAN_FLEX, None);
    let past_cancel = minus(today, 76);
    let future_cancel = plus(today, 10);

    let mut edsger = membership(EDSGER, "Edsger Dijkstra", None, full(), long_ago, None);
    if let Some(obj) = edsger.as_object_mut() {
        obj.remove("user");
    }
    let mut linus = connected(LINUS, "Linus Torvalds", part(None), long_ago, None);
    if let Some(obj) = linus.as_object_mut() {
        let mut upcoming = full();
        if let Some(up) = upcoming.as_object_mut() {
            up.insert("starts_at".into(), json!(date(plus(today, 3))));
        }
        obj.insert("upcoming_plan".into(), upcoming);
    }
    let legacy = plan_copy("Legacy Night Owl", PLAN_UNKNOWN, None);
    json!([
        connected(ADA, "Ada Lovelace", full(), long_ago, None),
        connected(
            CHARLES,
            "Charles Babbage",
            part(Some(past_cancel)),
            long_ago,
            Some(past_cancel)
        ),
        connected(GRACE, "Grace Hopper", full(), plus(today, 16), None),
        membership(ALAN, "Alan Turing", None, flex(), long_ago, None),
        connected(KATHERINE, "Katherine Johnson", legacy, long_ago, None),
        edsger,
        connected(
            BARBARA,
            "Barbara Liskov",
            part(Some(future_cancel)),
            long_ago,
            Some(future_cancel)
        ),
        linus,
        connected(MARGARET, "Margaret Hamilton", flex(), long_ago, None),
    ])
}

/// `GET /api/custom_fields`: Ada's additional groups "staff, unknown_group" and an RFID field.
pub fn custom_fields() -> Value {
    json!([
        { "membership_id": ADA, "fields": [
            { "id": "eee69b28fed5806e62be5ce3cf6a1733", "label": ADDITIONAL_UNITS_FIELD,
              "value": "staff, unknown_group" },
            { "id": "f0120b28fed5806e62be5ce3cf6af087", "label": "RFID card", "value": ADA_CARD }
        ]},
        { "membership_id": BARBARA, "fields": [
            { "id": "f0120b28fed5806e62be5ce3cf6af087", "label": "RFID card", "value": null }
        ]}
    ])
}

/// `GET /api/check_in_tokens`: cards of Ada, Barbara, Margaret and (unconnected) Alan.
pub fn check_in_tokens() -> Value {
    json!([
        { "token": ADA_CARD, "membership": { "id": ADA, "name": "Ada Lovelace" } },
        { "token": BARBARA_CARD, "membership": { "id": BARBARA, "name": "Barbara Liskov" } },
        { "token": MARGARET_CARD, "membership": { "id": MARGARET, "name": "Margaret Hamilton" } },
        { "token": ALAN_CARD, "membership": { "id": ALAN, "name": "Alan Turing" } }
    ])
}

fn booking(id: &str, day: NaiveDate, from: u32, to: u32, resource: (&str, &str)) -> Value {
    json!({
        "from": time(day, from), "to": time(day, to), "tax_rate": "19.0", "title": "",
        "resource": { "name": resource.1, "id": resource.0 }, "price": 15.0,
        "has_custom_price": false, "currency": "EUR", "accounting_code": "",
        "url": format!("https://co-up.cobot.me/api/bookings/{id}"), "id": id,
        "can_change": false, "comments": "", "units": 1,
        "created_at": time(day, 0), "updated_at": time(day, 0)
    })
}

/// `GET /api/bookings`: Margaret today 08:00–16:00 UTC and in a week, plus an event booking
/// without membership (to be ignored).
pub fn bookings(today: NaiveDate) -> Value {
    let desk = (RESOURCE_FLEX_DESK, "Flex Desk");
    let member = json!({ "id": MARGARET, "name": "Margaret Hamilton" });
    let mut today_booking = booking("20723075", today, 8, 16, desk);
    let mut next_week = booking("20723076", plus(today, 7), 8, 12, desk);
    for b in [&mut today_booking, &mut next_week] {
        if let Some(obj) = b.as_object_mut() {
            obj.insert("membership".into(), member.clone());
        }
    }
    let event = booking(
        "20723077",
        today,
        18,
        20,
        (RESOURCE_MEETING_ROOM, "Meeting Room"),
    );
    json!([today_booking, next_week, event])
}

/// `n` connected, active Full Time memberships (for benchmarks: 10,000 build in milliseconds).
pub fn large(n: usize) -> Value {
    let starts = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default();
    let items = (0..n)
        .map(|i| {
            let id = format!("{i:032x}");
            let user = format!("{:032x}", (i as u128) | (1u128 << 124));
            let name = format!("Member {i}");
            membership(
                &id,
                &name,
                Some(&user),
                plan_copy("Full Time", PLAN_FULL_TIME, None),
                starts,
                None,
            )
        })
        .collect();
    Value::Array(items)
}
