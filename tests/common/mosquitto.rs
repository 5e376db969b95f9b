//! A real mosquitto broker for integration tests: started from a temporary configuration on a
//! free loopback port, killed when dropped. Also a subscriber that hands incoming publishes to
//! a channel, and a helper that drives a client's event loop in the background.
//!
//! Use it from a test file with
//! `#[path = "common/mosquitto.rs"] mod mosquitto;` (it needs tokio, rumqttc and tempfile).

#![allow(dead_code)] // reason: each test binary uses a different part of the harness
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: test harness: failing loudly is the point

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

/// Where Debian installs the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// How long to wait for the broker to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running mosquitto; killed on drop.
pub struct Mosquitto {
    child: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
    /// Lines appended to the broker's configuration (e.g. the shipped drop-in).
    extra: String,
}

impl Mosquitto {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub async fn start() -> Mosquitto {
        let port = free_port();
        Self::start_on(port).await
    }

    /// Starts a broker on a free port with `extra` appended to its configuration.
    pub async fn start_with(extra: &str) -> Mosquitto {
        let mut broker = Mosquitto {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            extra: extra.to_owned(),
        };
        broker.restart().await;
        broker
    }

    /// Starts a broker on `port` (e.g. again after [`Mosquitto::stop`]).
    pub async fn start_on(port: u16) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut broker = Mosquitto {
            child: None,
            port,
            dir,
            extra: String::new(),
        };
        broker.restart().await;
        broker
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    /// The broker's log file (useful when a test fails).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Broker configuration lines that make it log every subscription (with the usual
    /// notices), for [`Mosquitto::wait_for_subscription`]; pass them to [`Mosquitto::start_with`].
    /// `user root` keeps a broker started as root (CI) from switching to the `mosquitto` user,
    /// which cannot write the log in the test's private temporary directory; started by
    /// another user it changes nothing.
    pub const LOG_SUBSCRIPTIONS: &str = "user root\nlog_type error\nlog_type warning\n\
                                         log_type notice\nlog_type information\n\
                                         log_type subscribe";

    /// Waits until the broker's log shows `client_id` subscribed to `topic` (a broker started
    /// with [`Mosquitto::LOG_SUBSCRIPTIONS`]); false after `within`. A publish before that is
    /// dropped by the broker, since nobody is subscribed yet.
    pub async fn wait_for_subscription(
        &self,
        client_id: &str,
        topic: &str,
        within: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if log.lines().any(|l| {
                let mut words = l.split_whitespace().skip(1);
                words.next() == Some(client_id) && words.nth(1) == Some(topic)
            }) {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Client options for this broker (clean session, 5 s keep-alive, packets up to 4 MiB so
    /// tests can publish oversized payloads).
    pub fn options(&self, client_id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", self.port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_session(true);
        options.set_max_packet_size(4 << 20, 4 << 20);
        options
    }

    /// Kills the broker (its clients see the connection drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.stop();
        let config = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest file {}\n{}\n",
            self.port,
            self.log_path().display(),
            self.extra
        );
        std::fs::write(self.config_path(), config).expect("write mosquitto.conf");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {MOSQUITTO}: {e} (apt-get install mosquitto)")
            });
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                panic!("mosquitto exited with {status}: {log}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mosquitto did not listen on {} within {START_TIMEOUT:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A client subscribed to `topic` (QoS 1); every publish it receives goes to the channel.
    /// Returns once the broker has acknowledged the subscription.
    pub async fn subscriber(&self, client_id: &str, topic: &str) -> (AsyncClient, Received) {
        let (client, mut eventloop) = AsyncClient::new(self.options(client_id), 64);
        client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if tx.send(publish).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(START_TIMEOUT, subscribed_rx.recv())
            .await
            .expect("SUBACK in time")
            .expect("subscriber task alive");
        (client, Received(rx))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Publishes a subscriber received.
pub struct Received(mpsc::UnboundedReceiver<Publish>);

impl Received {
    /// The next publish, or `None` if none comes within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Publish> {
        tokio::time::timeout(within, self.0.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next publish; panics if none comes within 5 s.
    pub async fn next(&mut self) -> Publish {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("a publish within 5 s")
    }
}

/// Drives `eventloop` in a background task, calling `on_poll` with every poll result (e.g.
/// `MqttLink::observe`), and pausing 100 ms after an error before reconnecting.
pub fn drive<F>(mut eventloop: EventLoop, mut on_poll: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut(&mut EventLoop, &Result<Event, rumqttc::ConnectionError>) + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let polled = eventloop.poll().await;
            on_poll(&mut eventloop, &polled);
            if polled.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}

/// A port nothing listens on right now.
///
/// Below the kernel's ephemeral range, like `common::free_port` (which says why).
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = rand::random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between 20000 and 32000")
}
