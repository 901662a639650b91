//! The dispatcher: a background task that delivers pending alerts, per channel in the order
//! they were created, retrying with backoff until the receiver acknowledges with a 2xx.
//!
//! Each channel is worked by at most one task at a time, which sends its oldest pending
//! delivery; a failure schedules that same delivery again (after `alerts.retry_schedule`) and
//! newer alerts of the channel wait behind it, so a receiver that comes back gets them in
//! creation order. A 410 Gone disables the channel (its alerts stay pending until it is enabled
//! again); an exhausted schedule marks the delivery `failed`. Every attempt is written through
//! the writer before the next one starts. Delivery is at-least-once: a crash between a 2xx and
//! its record sends the alert again, with the same `webhook-id` so the receiver can drop it.
//!
//! The task sleeps until the earliest due delivery, a commit that wrote alerts wakes it, and a
//! periodic tick covers anything else (such as a channel enabled again).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;

use super::delivery::{ChannelKind, Sender};
use super::Engine;
use crate::store::queries::budgets::{self as sql, AfterAttempt, Attempt, Head};
use crate::store::Store;

/// Longest sleep between looks at the queue.
const TICK: Duration = Duration::from_secs(30);

/// A running dispatcher.
pub struct Dispatcher {
    task: JoinHandle<()>,
}

impl Dispatcher {
    /// Starts delivering.
    pub fn spawn(store: Store, engine: Arc<Engine>) -> anyhow::Result<Dispatcher> {
        let sender = Sender::new(engine.settings().timeout)?;
        let task = tokio::spawn(run(store, engine, sender));
        Ok(Dispatcher { task })
    }

    /// Stops: no new attempt starts; one in flight finishes (bounded by the HTTP timeout).
    pub async fn stop(self, engine: &Engine, grace: Duration) {
        engine.request_stop();
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("the alert dispatcher did not stop in time");
        }
    }
}

async fn run(store: Store, engine: Arc<Engine>, sender: Sender) {
    let mut workers: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        if engine.stopping() {
            break;
        }
        workers.retain(|_, h| !h.is_finished());
        let heads = match store.read(sql::channel_heads).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pending alert deliveries");
                Vec::new()
            }
        };
        let now = Utc::now();
        let mut sleep = TICK;
        for (channel, due) in heads {
            if workers.contains_key(&channel) {
                continue;
            }
            if due <= now {
                let worker = tokio::spawn(work_channel(
                    store.clone(),
                    engine.clone(),
                    sender.clone(),
                    channel.clone(),
                ));
                workers.insert(channel, worker);
            } else {
                let wait = (due - now).to_std().unwrap_or(Duration::ZERO);
                sleep = sleep.min(wait);
            }
        }
        tokio::select! {
            _ = engine.wake.notified() => {}
            _ = engine.stop_signal.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
    for (_, w) in workers {
        let _ = w.await;
    }
}

/// Sends one channel's due deliveries in order until one fails or none is due.
async fn work_channel(store: Store, engine: Arc<Engine>, sender: Sender, channel_id: String) {
    loop {
        if engine.stopping() {
            break;
        }
        let id = channel_id.clone();
        let head = match store.read(move |conn| sql::head(conn, &id)).await {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, channel_id = %channel_id, "cannot read the next delivery");
                break;
            }
        };
        if head.next_attempt_at > Utc::now() {
            break;
        }
        match attempt(&store, &engine, &sender, head).await {
            Sent::Delivered => continue,
            Sent::Failed => break,
            Sent::NotRecorded => {
                // Do not hammer the receiver while the database refuses writes.
                tokio::select! {
                    _ = engine.stop_signal.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                break;
            }
        }
    }
    // Let the main loop plan the next wake-up (a retry time, or more work).
    engine.wake.notify_one();
}

/// How an attempt ended.
enum Sent {
    Delivered,
    Failed,
    NotRecorded,
}

/// One attempt, recorded.
async fn attempt(store: &Store, engine: &Engine, sender: &Sender, head: Head) -> Sent {
    let kind = ChannelKind::parse(&head.channel.kind).unwrap_or(ChannelKind::Webhook);
    let at = Utc::now();
    let result = sender
        .send(
            kind,
            &head.channel.url,
            &head.channel.secret,
            &head.alert_id,
            &head.payload,
        )
        .await;
    let schedule = &engine.settings().retry_schedule;
    let round = head.round_attempts + 1;
    let after = if result.ok() {
        AfterAttempt::Delivered
    } else if result.status == Some(410) {
        AfterAttempt::Gone
    } else {
        match schedule.get(round as usize) {
            Some(wait) => AfterAttempt::Retry(
                Utc::now() + chrono::Duration::from_std(*wait).unwrap_or(chrono::Duration::zero()),
            ),
            None => AfterAttempt::GiveUp,
        }
    };
    match after {
        AfterAttempt::Delivered => {
            tracing::info!(alert_id = %head.alert_id, channel_id = %head.channel.id, status = ?result.status, "alert delivered")
        }
        AfterAttempt::Gone => {
            tracing::warn!(alert_id = %head.alert_id, channel_id = %head.channel.id, "the receiver answered 410 Gone; channel disabled")
        }
        AfterAttempt::Retry(t) => {
            tracing::warn!(alert_id = %head.alert_id, channel_id = %head.channel.id, status = ?result.status, error = ?result.error, retry_at = %t, "alert delivery failed; will retry")
        }
        AfterAttempt::GiveUp => {
            tracing::error!(alert_id = %head.alert_id, channel_id = %head.channel.id, status = ?result.status, error = ?result.error, attempts = head.attempts + 1, "alert delivery failed; retries exhausted")
        }
    }
    let record = Attempt {
        alert_id: head.alert_id.clone(),
        channel_id: head.channel.id.clone(),
        project: head.channel.project.clone(),
        attempt: head.attempts + 1,
        at,
        status_code: result.status,
        error: result.error.clone(),
        duration_ms: result.duration_ms,
        response: result.response.clone(),
    };
    if let Err(e) = store
        .writer()
        .exec(move |conn| sql::record_attempt(conn, &record, round, after))
        .await
    {
        // Not recorded: the delivery stays due and is sent again (same webhook-id).
        tracing::error!(error = %e, alert_id = %head.alert_id, "cannot record a delivery attempt");
        return Sent::NotRecorded;
    }
    if after == AfterAttempt::Delivered {
        Sent::Delivered
    } else {
        Sent::Failed
    }
}
