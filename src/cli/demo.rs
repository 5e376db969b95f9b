//! `portier demo`'s walk-through: the simulated Cobot, the site ([`DEMO_CONFIG`]) on disk, and
//! the commands run on it as an installer would.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::{Datelike, Days, NaiveDate, TimeZone, Weekday};

use crate::cli;
use crate::cli::output::out;
use crate::demo::DEMO_CONFIG;
use portier_fake_cobot::{FakeCobot, Fixture, fixtures};

/// Runs the demo; the error says what failed.
pub fn run(args: &crate::cli::DemoArgs) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("portier-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    // The simulated Cobot runs on its own runtime threads; the commands below start their own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let now = crate::clock::now();
    let tz = chrono_tz::Europe::Berlin;
    let today = now.with_timezone(&tz).date_naive();
    let fixture = Fixture::standard(today);
    let admin_token = fixture.admin_token.clone();
    let cobot = runtime
        .block_on(FakeCobot::start(fixture))
        .map_err(|e| format!("cannot start the simulated Cobot: {e}"))?;
    let api = cobot.url().to_string();
    let config = dir.path().join("portier.toml");
    std::fs::write(
        &config,
        DEMO_CONFIG.replace("{api}", api.trim_end_matches('/')),
    )
    .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    write_secret(&dir.path().join("cobot.token"), &admin_token)?;
    write_secret(&dir.path().join("admin.token"), "demo-admin-token")?;

    let at = |day: NaiveDate, h: u32, m: u32| {
        day.and_hms_opt(h, m, 0)
            .and_then(|t| tz.from_local_datetime(&t).earliest())
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    };
    let wednesday = next(today, Weekday::Wed);
    let saturday = next(today, Weekday::Sat);

    out!("Portier demo");
    out!("============");
    out!("A simulated Cobot space is serving on {api} with 9 memberships.");
    out!(
        "The site's configuration and cache live in {}.",
        dir.path().display()
    );

    step(&config, "Check the configuration", &["check-config"]);
    step(
        &config,
        "Sync from Cobot (plans, memberships, custom fields, cards, bookings)",
        &["sync"],
    );
    step(&config, "The members in the cache", &["members"]);
    step(
        &config,
        "Ada taps her card (Cobot stores it as 04A1B2C3D4) at the front door",
        &[
            "explain",
            "--credential",
            "04:a1:b2:c3:d4",
            "--unit",
            "front_door",
        ],
    );
    step(
        &config,
        "Ada opens the office: her custom field adds the group staff",
        &[
            "explain",
            "--member",
            "ada.lovelace@example.com",
            "--unit",
            "office",
        ],
    );
    step(
        &config,
        "Barbara (Part Time, Mon-Fri 08:00-18:00) on Wednesday at 10:00",
        &[
            "explain",
            "--member",
            fixtures::BARBARA,
            "--unit",
            "front_door",
            "--at",
            &at(wednesday, 10, 0),
        ],
    );
    step(
        &config,
        "Barbara on Saturday at 10:00",
        &[
            "explain",
            "--member",
            fixtures::BARBARA,
            "--unit",
            "front_door",
            "--at",
            &at(saturday, 10, 0),
        ],
    );
    step(
        &config,
        "Alan's card: his membership is not connected to a Cobot user, so it is not synced",
        &[
            "explain",
            "--credential",
            fixtures::ALAN_CARD,
            "--unit",
            "front_door",
        ],
    );
    step(
        &config,
        "Linus switches from Part Time to Full Time in 3 days (upcoming_plan): the office building then",
        &[
            "explain",
            "--member",
            fixtures::LINUS,
            "--unit",
            "building",
            "--at",
            &at(today + Days::new(3), 9, 0),
        ],
    );

    if args.serve {
        return serve(args, &config, &cobot);
    }
    runtime.block_on(async { drop(cobot) });
    out!();
    out!("--- The internet goes down: the simulated Cobot is stopped. ---");
    step(
        &config,
        "A sync now fails, and the cached snapshot stays in force",
        &["sync"],
    );
    step(
        &config,
        "Ada's card still opens the front door, decided from the cache",
        &[
            "explain",
            "--credential",
            fixtures::ADA_CARD,
            "--unit",
            "front_door",
        ],
    );
    step(
        &config,
        "Charles' membership ended in the past: denied, online or not",
        &[
            "explain",
            "--member",
            fixtures::CHARLES,
            "--unit",
            "front_door",
        ],
    );
    out!();
    out!("Demo finished; the temporary directory is removed now.");
    Ok(())
}

/// `--serve`: the daemon on the demo site until Ctrl-C.
fn serve(args: &crate::cli::DemoArgs, config: &Path, cobot: &FakeCobot) -> Result<(), String> {
    let mut text = std::fs::read_to_string(config)
        .map_err(|e| format!("cannot read {}: {e}", config.display()))?
        .replace(
            "[http]\n",
            &format!("[http]\nlisten = \"{}\"\n", args.listen),
        );
    if let Some(url) = &args.mqtt {
        text = text.replace(
            "[[lock]]\nid = \"front_lock\"\ndriver = \"log\"",
            "[[lock]]\nid = \"front_lock\"\ndriver = \"mqtt\"\ntopic = \"portier/locks/front/set\"\n\
             unlock_payload = '{\"state\":\"UNLOCK\",\"decision\":\"{decision_id}\"}'\n\
             lock_payload = '{\"state\":\"LOCK\"}'",
        );
        text.push_str(&format!(
            "\n[mqtt]\nurl = \"{url}\"\nclient_id = \"portier-demo\"\n\n\
             [[reader]]\nid = \"front_reader\"\nunit = \"front_door\"\ntopic = \"portier/readers/front\"\n"
        ));
    }
    std::fs::write(config, text).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let config = crate::config::Config::load(config).map_err(|e| e.to_string())?;
    let base = format!("http://{}", args.listen);
    let ada = fixtures::ADA;
    out!();
    out!("--- The daemon now runs on the demo site ({base}); Ctrl-C stops it. ---");
    out!(
        "The simulated Cobot keeps serving on {}. Try, in another terminal:",
        cobot.url()
    );
    out!("  curl -s -X POST -H 'Authorization: Bearer app-{ada}' {base}/v1/units/front_door/open");
    out!("  curl -s -X POST -H 'Authorization: Bearer wrong' {base}/v1/units/front_door/open");
    out!("  curl -s {base}/healthz; curl -s {base}/v1/status");
    out!("  curl -s -H 'Authorization: Bearer demo-admin-token' {base}/v1/events");
    if args.mqtt.is_some() {
        out!("  mosquitto_sub -t 'portier/#' -v &");
        out!(
            "  mosquitto_pub -t portier/readers/front -m {}",
            fixtures::ADA_CARD
        );
    }
    out!(
        "Each request shows in the log below as \"access decided\", with opened=true when the door opened."
    );
    crate::app::run(config).map_err(|e| e.to_string())
}

fn next(day: NaiveDate, weekday: Weekday) -> NaiveDate {
    let mut d = day;
    while d.weekday() != weekday {
        d = d + Days::new(1);
    }
    d
}

fn write_secret(path: &Path, content: &str) -> Result<(), String> {
    std::fs::write(path, content)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Prints a heading and the command line, then runs the command in this process.
fn step(config: &Path, title: &str, args: &[&str]) {
    let mut shown = String::from("$ portier");
    for a in args {
        let _ = write!(shown, " {a}");
    }
    out!();
    out!("## {title}");
    out!("{shown}");
    let mut argv = vec![
        "portier".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let code = cli::run_args(argv);
    out!("(exit code {code})");
}
