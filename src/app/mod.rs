//! The composition root of the daemon (`portier run`): wires the store, the snapshot channel
//! (its sender goes to the sync task), the access engine, the broker connection, the reader
//! loop and its watchdog, the HTTP listener, systemd notification and signals. It builds and
//! connects; the work happens in `access`, `readers`, `mqtt`, `locks` and the tasks here.
//! Nothing imports this module but the command line.
//!
//! Start-up order follows what systemd is promised: the cache is loaded and compiled and the
//! listener bound before `READY=1`; decisions are served from the cache at once, even when
//! Cobot cannot be reached (an empty cache denies everything until the first sync).

mod health;
mod http;
mod http_api;
mod http_doors;
mod http_serve;
mod member;
mod metrics;
mod notify;
mod page;
mod state;
mod status;
mod sync_task;
mod web;

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::access::{Engine, Inputs};
use crate::config::Config;
use crate::store::Store;
use state::{CloudState, Daemon};

/// Shutdown happens in three bounded steps, 9 s in all (the unit's `TimeoutStopSec` is 15 s):
/// the tasks stop (the reader loop finishes the frames it has, a sync talking to Cobot is
/// dropped) …
const TASKS_BOUND: Duration = Duration::from_secs(5);
/// … every door this process opened is locked again, while the broker connection still runs
/// so that MQTT locks hear it …
const RELOCK_BOUND: Duration = Duration::from_secs(3);
/// … and the broker connection closes last.
const BROKER_BOUND: Duration = Duration::from_secs(1);

/// Why the daemon could not start. Once it serves, nothing stops it but a signal: faults
/// after that are logged, shown in health, and retried.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DaemonError {
    /// Tokio could not build its runtime (threads, epoll).
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The state directory's database or snapshot file.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The HTTP address is taken or not allowed.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// `http.listen`.
        address: std::net::SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The HTTPS certificate or key cannot be read or used.
    #[error("http.tls_cert_file / http.tls_key_file ({}, {}): {source}", cert.display(), key.display())]
    Tls {
        /// `http.tls_cert_file`.
        cert: std::path::PathBuf,
        /// `http.tls_key_file`.
        key: std::path::PathBuf,
        /// What reading or parsing them said.
        #[source]
        source: std::io::Error,
    },
    /// `mqtt.password_file` cannot be used.
    #[error("mqtt.password_file: {0}")]
    MqttPassword(#[source] crate::config::SecretError),
    /// The broker settings cannot make a client (TLS files, client id).
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttSetupError),
    /// A lock's driver cannot be set up.
    #[error(transparent)]
    Lock(#[from] crate::locks::LockError),
    /// The Cobot client cannot be built (TLS roots).
    #[error(transparent)]
    Cobot(#[from] crate::cobot::CobotError),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), DaemonError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(serve(config))
}

/// How many events the feed holds for a listener that fell behind.
const FEED_CAPACITY: usize = 256;

/// How often every lock is probed (Modbus read, broker connection, Bluetooth adapter).
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// The admin token from `http.admin_token_file`, or `None` (admin endpoints then answer 401):
/// no such key, or the file cannot be used (logged here; health says so while it lasts).
fn read_admin_token(config: &Config) -> Option<String> {
    let file = config.http.admin_token_file.as_ref()?;
    match crate::config::read_secret(file) {
        Ok(token) => Some(token),
        Err(e) => {
            tracing::warn!(error = %e, "admin token unusable: admin endpoints answer 401");
            None
        }
    }
}

/// Sets the admin token and the installer page's password from `config`.
fn apply_admin_token(daemon: &Daemon, config: &Config) {
    *daemon
        .admin_token
        .write()
        .unwrap_or_else(PoisonError::into_inner) = read_admin_token(config);
    let password = config.http.page_password_file.as_ref().and_then(|file| {
        crate::config::read_secret(file)
            .map_err(|e| {
                tracing::warn!(error = %e, "installer page password unusable: the page answers only on loopback");
            })
            .ok()
    });
    *daemon
        .page_password
        .write()
        .unwrap_or_else(PoisonError::into_inner) = password;
}

/// Settings a SIGHUP does not apply, compared with the configuration the daemon started
/// with: the state directory, the HTTP listener and TLS, and the broker connection (`[mqtt]`,
/// opened once at start). Locks, readers, units and the policy are applied by a reload.
fn needs_restart(started: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if started.site.state_dir != new.site.state_dir {
        changed.push("site.state_dir");
    }
    if started.http.listen != new.http.listen {
        changed.push("http.listen");
    }
    if started.http.tls_cert_file != new.http.tls_cert_file
        || started.http.tls_key_file != new.http.tls_key_file
    {
        changed.push("http.tls_cert_file/tls_key_file");
    }
    if started.site.gateway_id != new.site.gateway_id {
        changed.push("site.gateway_id");
    }
    if started.mqtt != new.mqtt {
        changed.push("[mqtt]");
    }
    changed
}

/// Where the installer page answers, as others on the network reach it: the listen address,
/// or this machine's host name when it listens on every address.
fn page_url(config: &Config) -> String {
    let listen = config.http.listen;
    let scheme = if config.http.tls_cert_file.is_some() {
        "https"
    } else {
        "http"
    };
    let host = if listen.ip().is_unspecified() {
        nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    } else {
        match listen.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    };
    format!("{scheme}://{host}:{}/", listen.port())
}

/// Probes every lock now and then every [`PROBE_INTERVAL`], until shutdown.
async fn probe_task(locks: Arc<crate::locks::Locks>, mut shutdown: watch::Receiver<bool>) {
    loop {
        locks.probe_all().await;
        tokio::select! {
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The one-line state for `systemctl status`.
pub(crate) fn status_line(daemon: &Daemon) -> String {
    let health = health::health(daemon, crate::clock::now());
    match daemon.current() {
        Some(s) => format!(
            "{:?}: snapshot v{} with {} members, synced {}",
            health.status,
            s.version(),
            s.report().members,
            s.synced_at().format("%Y-%m-%d %H:%M UTC")
        ),
        None => "failing: no snapshot yet, every request is denied".to_owned(),
    }
}

async fn serve(config: Config) -> Result<(), DaemonError> {
    let store = Arc::new(Store::open(&config.site.state_dir)?);
    let (writer, snapshot, unreadable_snapshot) = sync_task::open_snapshot(&store, &config.policy)?;
    let sync_status = store.sync_status()?;
    let last_event = store.last_event_time()?;
    let (sync_tx, sync_rx) = mpsc::channel(8);
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            address: config.http.listen,
            source,
        })?;

    // MQTT: one connection for readers and MQTT locks, when the site has either.
    let mqtt = match &config.mqtt {
        None => None,
        Some(mqtt) => {
            let password = match &mqtt.password_file {
                Some(file) => {
                    Some(crate::config::read_secret(file).map_err(DaemonError::MqttPassword)?)
                }
                None => None,
            };
            // Reader messages arrive on a connection of their own (see `crate::mqtt`), opened
            // even without readers so that a reload can add some.
            Some(crate::mqtt::connect(
                mqtt,
                password,
                true,
                Some(config.site.status_topic()),
            )?)
        }
    };
    let locks = Arc::new(crate::locks::Locks::new(
        &config.locks,
        mqtt.as_ref().map(crate::mqtt::Connection::link),
        Arc::new(crate::locks::BluerBackend::new()),
    )?);
    let users = crate::cobot::client_for(
        &config,
        crate::cobot::token_for(&config).unwrap_or_default(),
    )?;

    let lock_ids: Vec<&str> = config.locks.iter().map(|l| l.id.as_str()).collect();
    let metrics = Arc::new(metrics::Metrics::new(lock_ids));
    let clock = Arc::new(crate::access::EventClock::new(last_event));
    let (reader_table_tx, reader_table) = watch::channel(Arc::default());
    let enrolment = crate::readers::enrol::Enrolment::default();
    let lockdown = store.lockdown()?;
    if lockdown.on {
        tracing::warn!(
            reason = lockdown.reason.as_deref().unwrap_or(""),
            "lockdown is on: only lockdown.allow_groups open"
        );
    }
    let (doors_tx, doors) = watch::channel(crate::doors::Doors::default());
    let (door_notices, _) = tokio::sync::broadcast::channel(FEED_CAPACITY);
    let daemon = Arc::new(Daemon {
        doors: doors.clone(),
        readers: reader_table.clone(),
        enrolment: enrolment.clone(),
        lockdown: Arc::new(crate::access::LockdownSwitch::new(
            Arc::clone(&store),
            lockdown,
            Arc::clone(&locks),
        )),
        admin_token: RwLock::new(None),
        page_password: RwLock::new(None),
        problems: Mutex::new(state::ConfigProblems::default()),
        mqtt: mqtt.as_ref().map(crate::mqtt::Connection::link),
        mqtt_readers: mqtt
            .as_ref()
            .and_then(crate::mqtt::Connection::receiving_link),
        config: watch::Sender::new(Arc::new(config)),
        snapshot,
        store: Arc::clone(&store),
        sync_jobs: sync_tx,
        cloud: Mutex::new(CloudState {
            sync: sync_status,
            unreadable_snapshot,
            ..CloudState::default()
        }),
        metrics: Arc::clone(&metrics),
        clock: Arc::clone(&clock),
        locks: Arc::clone(&locks),
    });
    apply_admin_token(&daemon, &daemon.config());
    let started = daemon.config();
    let outbox_wake = Arc::new(tokio::sync::Notify::new());
    let (feed, _) = tokio::sync::broadcast::channel(FEED_CAPACITY);
    let engine = Arc::new(Engine::new(Inputs {
        snapshot: daemon.snapshot.clone(),
        config: daemon.config.subscribe(),
        store: Arc::clone(&store),
        locks: Arc::clone(&locks),
        clock,
        metrics,
        outbox: Arc::clone(&outbox_wake),
        lockdown: daemon.lockdown.subscribe(),
        feed: feed.clone(),
    }));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let (checks, probes) = crate::readers::SelfChecks::new();
    let (frames_tx, frames) = mpsc::channel(256);
    tasks.spawn(sync_task::run(
        Arc::clone(&daemon),
        writer,
        sync_rx,
        shutdown_rx.clone(),
    ));
    tasks.spawn(outbox_task(
        Arc::clone(&daemon),
        outbox_wake,
        shutdown_rx.clone(),
    ));
    tasks.spawn(retention_task(Arc::clone(&daemon), shutdown_rx.clone()));
    tasks.spawn(probe_task(Arc::clone(&locks), shutdown_rx.clone()));
    tasks.spawn(crate::access::hold::run(
        Arc::clone(&engine),
        shutdown_rx.clone(),
    ));
    // The readers' transports hand their messages to the reader loop, which decides them and
    // answers the watchdog's self-checks.
    let readers = crate::readers::Readers::new(
        &started.readers,
        crate::readers::Transports {
            mqtt: mqtt.as_ref(),
            keyboards: Arc::new(crate::readers::hid::Evdev),
            gpio: Arc::new(crate::readers::wiegand::Gpiocdev),
        },
        frames_tx,
        reader_table_tx,
    );
    tasks.spawn(crate::doors::run(
        crate::doors::Inputs {
            config: daemon.config.subscribe(),
            locks: Arc::clone(&locks),
            topics: mqtt.as_ref().map(crate::mqtt::Connection::topics),
            notices: door_notices.clone(),
            doors: doors_tx,
        },
        shutdown_rx.clone(),
    ));
    tasks.spawn(count_door_alarms(
        door_notices.subscribe(),
        Arc::clone(&daemon.metrics),
        shutdown_rx.clone(),
    ));
    if let Some(connection) = &mqtt {
        tasks.spawn(crate::site::run(
            crate::site::Inputs {
                config: daemon.config.subscribe(),
                snapshot: daemon.snapshot.clone(),
                link: connection.link(),
                topics: connection.topics(),
                feed: feed.subscribe(),
                locks: Arc::clone(&locks),
                lockdown: Arc::clone(&daemon.lockdown),
                engine: Arc::clone(&engine),
                configuration_url: page_url(&started),
                door_notices: door_notices.subscribe(),
                doors: doors.clone(),
            },
            shutdown_rx.clone(),
        ));
    }
    // The broker connection stops last, after the doors are locked again (see `TASKS_BOUND`).
    let (broker_stop, broker_stopped) = watch::channel(false);
    let broker = mqtt.map(|connection| tokio::spawn(connection.run(broker_stopped)));
    tasks.spawn(crate::readers::run(
        reader_table,
        frames,
        Arc::clone(&engine),
        enrolment,
        checks,
        shutdown_rx.clone(),
    ));
    if let Some(interval) = notify::watchdog_interval() {
        tasks.spawn(crate::readers::watchdog(
            probes,
            interval,
            notify::watchdog,
            shutdown_rx.clone(),
        ));
    }
    let api = Arc::new(http_api::Api {
        daemon: Arc::clone(&daemon),
        engine,
        limiter: Mutex::new(http_api::RateLimiter::default()),
        users,
        page: page::Page::default(),
        members: member::Members::default(),
        feed: feed.clone(),
        door_notices: door_notices.clone(),
        stopping: shutdown_rx.clone(),
    });
    let app = http::router(api);
    let tls = {
        let config = daemon.config();
        config
            .http
            .tls_cert_file
            .clone()
            .zip(config.http.tls_key_file.clone())
    };
    let transport = match tls {
        // App tokens cross the LAN: with a certificate, Portier serves HTTPS itself.
        Some((cert, key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .map_err(|source| DaemonError::Tls { cert, key, source })?;
            http_serve::Transport::Tls(tls)
        }
        None => http_serve::Transport::Plain,
    };
    tasks.spawn(http_serve::serve(
        listener,
        app,
        transport,
        shutdown_rx.clone(),
    ));

    let listen = daemon.config().http.listen;
    tracing::info!(%listen, "portier is serving decisions");
    notify::ready(&status_line(&daemon));

    wait_for_stop(&daemon, &started, &readers).await;
    notify::stopping();
    tracing::info!("stopping");
    // Nobody may still be listening; the tasks stop either way.
    let _ = shutdown_tx.send(true);
    if tokio::time::timeout(TASKS_BOUND, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("tasks did not stop in time; locking the doors anyway");
        tasks.abort_all();
    }
    // Doors opened by this process are locked again before it exits.
    match tokio::time::timeout(RELOCK_BOUND, locks.relock_all()).await {
        Ok(failures) => {
            for e in failures {
                tracing::warn!(error = %e, "relock at shutdown failed");
            }
        }
        Err(_) => tracing::error!("relocking at shutdown took too long; a door may be open"),
    }
    let _ = broker_stop.send(true);
    if let Some(broker) = broker
        && tokio::time::timeout(BROKER_BOUND, broker).await.is_err()
    {
        tracing::warn!("the broker connection did not close in time");
    }
    Ok(())
}

/// Counts door alarms in `portier_door_alarms_total`.
async fn count_door_alarms(
    mut notices: tokio::sync::broadcast::Receiver<crate::doors::DoorNotice>,
    metrics: Arc<metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Ok(notice) => {
                    if let kind @ ("forced_open" | "held_open") = notice.event.as_str() {
                        metrics.door_alarm(&notice.unit, kind);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Sends the outbox's check-ins to Cobot (see `crate::outbox`).
async fn outbox_task(
    daemon: Arc<Daemon>,
    wake: Arc<tokio::sync::Notify>,
    shutdown: watch::Receiver<bool>,
) {
    let client_daemon = Arc::clone(&daemon);
    let client = move || {
        let config = client_daemon.config();
        let token = crate::cobot::token_for(&config)?;
        crate::cobot::client_for(&config, token).map_err(|e| e.to_string())
    };
    let timezone = daemon.config().site.timezone;
    crate::outbox::run(
        Arc::clone(&daemon.store),
        client,
        timezone,
        wake,
        shutdown,
        crate::clock::now,
    )
    .await;
}

/// Drops events older than `events.retention` (never one whose check-in has not reached
/// Cobot) and app tokens older than `cobot.token_cache_ttl`, once an hour.
async fn retention_task(daemon: Arc<Daemon>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let config = daemon.config();
        if let Err(e) = daemon
            .store
            .prune_app_tokens(crate::clock::now(), config.cobot.token_cache_ttl)
        {
            tracing::warn!(error = %e, "cannot drop expired app tokens");
        }
        match daemon.store.prune_member_sessions(crate::clock::now()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(dropped = n, "expired member page sessions dropped"),
            Err(e) => tracing::warn!(error = %e, "cannot drop expired member page sessions"),
        }
        let retention = config.events.retention;
        if let Ok(retention) = chrono::Duration::from_std(retention) {
            match daemon.store.prune_events(crate::clock::now() - retention) {
                Ok(0) => {}
                Ok(n) => tracing::info!(dropped = n, "old events dropped"),
                Err(e) => tracing::warn!(error = %e, "cannot drop old events"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Waits for SIGTERM or SIGINT, reloading the configuration on every SIGHUP meanwhile.
async fn wait_for_stop(daemon: &Daemon, started: &Config, readers: &crate::readers::Readers) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                // A stop signal during a reload stops at once.
                tokio::select! {
                    () = reload(daemon, started, readers) => {}
                    _ = term.recv() => return,
                    _ = int.recv() => return,
                }
            }
        }
    }
}

/// Reloads the configuration file; an invalid file is reported and the old one kept (a health
/// reason until a reload succeeds). Settings only a restart applies are a health reason too.
/// The sync task applies the new configuration together with the snapshot compiled from it;
/// then the locks and readers of the new file go into service (a lock taken out or changed is
/// locked again first if it is open).
async fn reload(daemon: &Daemon, started: &Config, readers: &crate::readers::Readers) {
    notify::reloading();
    let path = daemon.config().path.clone();
    let rejected = |why: String| {
        daemon.update_problems(|p| {
            p.reload_rejected = Some(format!(
                "configuration reload rejected, the previous configuration still runs: {why}; \
                 fix {} and reload again (systemctl reload portier)",
                path.display()
            ));
        });
    };
    match Config::load(&path) {
        Err(errors) => {
            tracing::error!(file = %path.display(), errors = %errors, "new configuration is invalid; keeping the old one");
            rejected(errors.to_string());
        }
        Ok(config) => {
            // Every lock of the new file is built before anything changes: one that cannot be
            // set up rejects the whole reload.
            let locks = match daemon.locks.prepare(&config.locks) {
                Ok(locks) => locks,
                Err(e) => {
                    tracing::error!(error = %e, "keeping the old configuration");
                    rejected(e.to_string());
                    notify::ready(&status_line(daemon));
                    return;
                }
            };
            let config = Arc::new(config);
            let (reply, applied) = tokio::sync::oneshot::channel();
            let job = state::Job::Reload {
                config: Arc::clone(&config),
                reply,
            };
            let applied = match daemon.sync_jobs.send(job).await {
                Ok(()) => applied
                    .await
                    .unwrap_or_else(|_| Err("the daemon is shutting down".into())),
                Err(_) => Err("the daemon is shutting down".into()),
            };
            if let Err(why) = applied {
                tracing::error!(error = %why, "keeping the old configuration");
                rejected(why);
                notify::ready(&status_line(daemon));
                return;
            }
            let retired = daemon.locks.install(locks);
            if !retired.is_empty() {
                tokio::spawn(async move {
                    for e in crate::locks::retire(retired).await {
                        tracing::warn!(error = %e, "cannot lock a door whose lock a reload took out");
                    }
                });
            }
            readers.apply(&config.readers);
            apply_admin_token(daemon, &config);
            let restart = needs_restart(started, &config);
            if !restart.is_empty() {
                tracing::warn!(changed = %restart.join(", "), "these settings need a restart to apply");
            }
            daemon.update_problems(|p| {
                p.reload_rejected = None;
                p.restart_needed = (!restart.is_empty()).then(|| {
                    format!(
                        "{} changed in {} since the start: this change needs a restart, a \
                         reload does not apply it (systemctl restart portier)",
                        restart.join(", "),
                        path.display()
                    )
                });
            });
            tracing::info!(file = %path.display(), "configuration reloaded");
        }
    }
    notify::ready(&status_line(daemon));
}
