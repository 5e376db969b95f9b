//! `portier demo`: the whole chain with no Cobot account and no files.
//!
//! It serves a simulated Cobot space on 127.0.0.1 (the same fake the tests use), writes a site
//! configuration and secrets into a temporary directory, and then runs the real commands —
//! `check-config`, `sync`, `members`, `explain` — exactly as an installer would, including an
//! internet outage. Locks are log-only. Nothing outside the temporary directory is touched.
//!
//! The walk-through is `cli::demo` (cargo feature `demo`, on by default, which brings the
//! simulated Cobot); the site's configuration is here, in every build, because tests use it.

/// The demo site's configuration; `{api}` is the simulated Cobot's URL. The integration
/// tests run against the same site.
pub const DEMO_CONFIG: &str = r#"# The demo site: a simulated Cobot space with four plans mapped to doors.
[site]
name = "demo-space"
timezone = "Europe/Berlin"
state_dir = "state"

[http]
admin_token_file = "admin.token"

[cobot]
subdomain = "co-up"
api_url = "{api}"
www_url = "{api}"
access_token_file = "cobot.token"
additional_groups_field = "smart_spaces_access_additional_units"
fallback_plan = "Part Time (weekdays)"

[[group]]
id = "full_time"
name = "Full Time"

[[group]]
id = "part_time"
name = "Part Time"

[[group]]
id = "flex"
name = "Flex"

[[group]]
id = "staff"
name = "Staff"

[[assignment]]
plan = "Full Time"
groups = ["full_time"]

[[assignment]]
plan = "Part Time (weekdays)"
groups = ["part_time"]

[[assignment]]
plan = "Flex (day passes)"
groups = ["flex"]
requires_booking = true

[[unit]]
id = "building"

[[unit]]
id = "front_door"
parent = "building"
lock = "front_lock"

[[unit]]
id = "office"
parent = "building"
lock = "office_lock"

[[permission]]
group = "full_time"
unit = "building"

[[permission]]
group = "part_time"
unit = "front_door"
schedule = ["Mon-Fri 08:00-18:00"]

[[permission]]
group = "flex"
unit = "front_door"

[[permission]]
group = "staff"
unit = "office"

[[lock]]
id = "front_lock"
driver = "log"

[[lock]]
id = "office_lock"
driver = "log"
"#;
