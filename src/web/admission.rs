//! Admission to the write endpoints: at most `ingest.max_concurrent_requests` requests are
//! between reading their body and the answer after their commit.
//!
//! A request in that stretch holds its body as sent, the decompressed text, the parsed records
//! and their Arrow columns: tens of MB for a body of 10,000 events, up to the body limits for
//! the largest. Nothing else bounded how many there were, so the server's memory grew with the
//! number of clients sending at once. A request over the limit waits for a slot before its
//! body is read: the bytes stay in the socket, and TCP's flow control slows the sender rather
//! than the server buffering for it. A request that waits longer than `ingest.max_wait_ms` is
//! answered 503 with `Retry-After`, as when the writer's queue stays full, so clients handle
//! both the same way. Slots are taken after authentication, so requests without a valid key
//! never hold one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::web::Error;

/// The slots of the write endpoints, shared by every request.
pub struct Admission {
    slots: Semaphore,
    max: usize,
    wait: Duration,
    waiting: AtomicUsize,
}

impl Admission {
    /// `max` slots (at least one), a request waiting at most `wait` for one.
    pub fn new(max: usize, wait: Duration) -> Self {
        let max = max.max(1);
        Self {
            slots: Semaphore::new(max),
            max,
            wait,
            waiting: AtomicUsize::new(0),
        }
    }

    /// A slot, at once or within the wait; `None` when none came free in time.
    async fn acquire(&self) -> Option<SemaphorePermit<'_>> {
        if let Ok(slot) = self.slots.try_acquire() {
            return Some(slot);
        }
        let _waiting = Waiting::new(&self.waiting);
        // The semaphore is never closed; a timeout is the only way to `None`.
        tokio::time::timeout(self.wait, self.slots.acquire())
            .await
            .ok()?
            .ok()
    }

    /// Requests holding a slot now, for `/metrics`.
    pub fn in_use(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// Requests waiting for a slot now, for `/metrics`.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Counts a request as waiting for as long as it exists, including when the client goes away
/// and the request's future is dropped mid-wait.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The middleware: holds a slot from before the handler reads the body until its answer.
pub async fn admit(State(admission): State<Arc<Admission>>, req: Request, next: Next) -> Response {
    let Some(_slot) = admission.acquire().await else {
        crate::metrics::add("tally_ingest_backpressure_total", &[("reason", "busy")], 1);
        return Error::Unavailable {
            message: format!(
                "{} write requests are being processed (ingest.max_concurrent_requests) \
                 and none finished within {} ms; retry",
                admission.max,
                admission.wait.as_millis()
            ),
            retry_after_secs: 1,
        }
        .into_response();
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_slots_in_use_and_waiters_including_abandoned_ones() {
        let a = Arc::new(Admission::new(1, Duration::from_secs(60)));
        assert_eq!((a.in_use(), a.waiting()), (0, 0));
        let held = a.slots.try_acquire().unwrap();
        assert_eq!(a.in_use(), 1);
        // A waiter whose future is dropped (the client went away) stops counting.
        let a2 = a.clone();
        let waiter = tokio::spawn(async move {
            let _ = a2.acquire().await;
        });
        while a.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(a.waiting(), 0);
        drop(held);
        assert_eq!(a.in_use(), 0);
    }

    #[test]
    fn zero_slots_means_one() {
        assert_eq!(Admission::new(0, Duration::ZERO).max, 1);
    }
}
