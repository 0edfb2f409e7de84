//! A serving thread's drain: the signal that tells its connections the server is stopping,
//! and the wait until they have all ended.
//!
//! hyper-util's `GracefulShutdown` does this for a bare hyper connection, but its connection
//! trait is sealed: a connection can only be told to close at once, and an HTTP/1.1 connection
//! that has not read its first request yet then closes without an answer. A client that opened
//! its connection a moment before the drain could not have known, and clients retry only
//! requests sent on a reused connection, so [`serve_connection`](crate::server) waits for that
//! first request up to [`FIRST_REQUEST_GRACE`] before it closes. This module only signals and
//! counts; what a connection does on the signal is the server's business.

use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long after the drain began a connection that has not had a request yet may still send
/// its first one and get it answered. A client whose connection was accepted just before sends
/// its request within a round trip; one that sends nothing must not hold the drain longer.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);

/// The sending side, one per serving thread: starts the drain and waits for the connections.
#[derive(Debug)]
pub struct Drain {
    /// When the drain began, once it has.
    began: watch::Sender<Option<Instant>>,
}

/// A connection's handle on its thread's drain. The drain waits for every handle to be dropped,
/// so a connection holds one until it has ended.
#[derive(Debug)]
pub struct DrainWatcher {
    began: watch::Receiver<Option<Instant>>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl Drain {
    /// A drain that has not begun.
    pub fn new() -> Drain {
        Drain {
            began: watch::Sender::new(None),
        }
    }

    /// A handle for a new connection.
    pub fn watcher(&self) -> DrainWatcher {
        DrainWatcher {
            began: self.began.subscribe(),
        }
    }

    /// Tells every connection that the drain has begun, then waits until all of them have
    /// ended (dropped their [`DrainWatcher`]).
    pub async fn run(self) {
        self.began.send_replace(Some(Instant::now()));
        self.began.closed().await;
    }
}

impl DrainWatcher {
    /// Resolves when the drain begins, with the moment it began. Cancel-safe. If the drain is
    /// dropped without having begun (its thread ended), that counts as having begun now.
    pub async fn began(&self) -> Instant {
        let mut began = self.began.clone();
        let result = began.wait_for(Option::is_some).await.map(|b| *b);
        match result {
            Ok(Some(at)) => at,
            _ => Instant::now(),
        }
    }

    /// Resolves [`FIRST_REQUEST_GRACE`] after the drain began: when a connection that still has
    /// not had a request closes.
    pub async fn first_request_grace_over(&self) {
        tokio::time::sleep_until(self.began().await + FIRST_REQUEST_GRACE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_drain_waits_for_every_watcher_and_the_grace_counts_from_its_start() {
        let drain = Drain::new();
        let early = drain.watcher();
        let late = drain.watcher();
        let start = Instant::now();
        let running = tokio::spawn(drain.run());
        assert!(early.began().await >= start);
        // A watcher that asks later still counts the grace from the drain's start: over at
        // about 2 s, not 3.5 s (real time: tokio's paused clock needs a feature the
        // workspace does not build).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        late.first_request_grace_over().await;
        let waited = Instant::now() - start;
        assert!(
            waited >= FIRST_REQUEST_GRACE && waited < FIRST_REQUEST_GRACE + Duration::from_secs(1),
            "{waited:?}"
        );
        drop(early);
        tokio::task::yield_now().await;
        assert!(
            !running.is_finished(),
            "the drain ended with a connection left"
        );
        drop(late);
        running.await.unwrap();
    }
}
