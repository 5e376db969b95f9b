//! The reader loop: one task for every reader of every kind.
//!
//! Messages are handled one at a time for what must be ordered — recognising a repeat,
//! parsing, deciding — and each decision is then carried out (lock command, then the durable
//! event with the lock's outcome, then the answer to the reader) in its own task, so a slow
//! lock never holds up the next card. Between messages the loop answers the watchdog's
//! self-checks.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::enrol::{EnrolRead, Enrolment};
use super::repeat::RecentAnswers;
use super::selfcheck::SelfChecks;
use super::{Frame, Reader, ReaderPayload, Table};
use crate::access::{Credential, Engine, Outcome, Request};
use crate::store::CredentialKind;

/// How long in-flight requests may take to finish after shutdown.
const DRAIN_BOUND: Duration = Duration::from_secs(5);

/// Handles frames until shutdown, then finishes the frames already received and the requests
/// in flight (bounded).
pub(crate) async fn run(
    readers: watch::Receiver<Arc<Table>>,
    mut frames: mpsc::Receiver<Frame>,
    engine: Arc<Engine>,
    enrolment: Enrolment,
    mut checks: SelfChecks,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut state = Loop {
        readers,
        engine,
        enrolment,
        recent: RecentAnswers::default(),
        in_flight: JoinSet::new(),
    };
    loop {
        tokio::select! {
            Some(frame) = frames.recv() => state.handle(frame),
            Some(probe) = checks.next() => {
                state.engine.self_check();
                // The watchdog may have timed out and gone; that is its business.
                let _ = probe.send(());
            }
            _ = shutdown.changed() => break,
        }
    }
    frames.close();
    let _ = tokio::time::timeout(DRAIN_BOUND, async {
        while let Some(frame) = frames.recv().await {
            state.handle(frame);
        }
        while state.in_flight.join_next().await.is_some() {}
    })
    .await;
}

/// What the loop keeps between frames.
struct Loop {
    /// The readers in service (a reload replaces the table).
    readers: watch::Receiver<Arc<Table>>,
    engine: Arc<Engine>,
    /// Where enrolment readers' reads go.
    enrolment: Enrolment,
    recent: RecentAnswers<Arc<Outcome>>,
    in_flight: JoinSet<()>,
}

impl Loop {
    fn handle(&mut self, frame: Frame) {
        // Reap finished tasks so the set does not grow.
        while self.in_flight.try_join_next().is_some() {}
        // A reader a reload took out: its late frames are not answered.
        let Some(reader) = self.readers.borrow().get(&frame.reader).cloned() else {
            return;
        };
        reader.seen(crate::clock::now());
        let Some(unit) = reader.config.unit.clone() else {
            self.enrol(&reader, frame);
            return;
        };
        let engine = Arc::clone(&self.engine);
        let config = &reader.config;
        if frame.replayed {
            // A stored message replayed by the transport: never acted on, no answer.
            let refused = engine.refuse(
                &unit,
                CredentialKind::Card,
                Some(&config.id),
                "stale reader message: a retained message replayed by the broker is never acted on"
                    .into(),
            );
            self.in_flight.spawn(async move {
                let _ = engine.carry_out(refused).await;
            });
            return;
        }
        let now = Instant::now();
        if let Some(mut first) = self.recent.repeat(frame.reader, &frame.payload, now) {
            // The first one's answer, once its event is durable (it may still be at the lock).
            self.in_flight.spawn(async move {
                if let Ok(outcome) = first.wait_for(Option::is_some).await
                    && let Some(outcome) = outcome.as_ref()
                {
                    reader.kind.answer(&reader.config, outcome);
                }
            });
            return;
        }
        let parsed = reader.kind.parse(&frame.payload, crate::clock::now());
        engine.record_stage("receive", frame.received);
        let decided = match parsed {
            ReaderPayload::Card(card) => {
                let request = Request {
                    unit,
                    credential: Credential::Card(card),
                    reader: Some(config.id.clone()),
                    via: None,
                };
                match engine.decide(&request) {
                    Ok(decided) => decided,
                    Err(e) => {
                        tracing::error!(reader = %config.id, error = ?e, "reader's unit cannot be decided");
                        return;
                    }
                }
            }
            ReaderPayload::Malformed(reason)
            | ReaderPayload::Stale(reason)
            | ReaderPayload::ClockSkew(reason) => {
                engine.refuse(&unit, CredentialKind::Card, Some(&config.id), reason)
            }
        };
        let answer = self.recent.remember(frame.reader, &frame.payload, now);
        self.in_flight.spawn(async move {
            // Stages: actuate, persist (in carry_out), then publish. The reader hears the
            // answer only once the event is durable (or failed to be: that is logged, and the
            // reader still learns whether the door opened).
            let outcome = Arc::new(engine.carry_out(decided).await);
            answer.send_replace(Some(Arc::clone(&outcome)));
            let publishing = crate::clock::instant();
            reader.kind.answer(&reader.config, &outcome);
            engine.record_stage("publish", publishing);
        });
    }

    /// A read on an enrolment reader: for `portier enrol`, never for a door.
    fn enrol(&self, reader: &Reader, frame: Frame) {
        if let Some(read) = EnrolRead::of(reader, frame) {
            self.enrolment.publish(read);
        }
    }
}
