//! Pokes: after a push commits, every connection listening to that space is told to pull.
//!
//! One abstraction, [`Poker`], two worlds, and in both the connections are recorded in the
//! store (so that the engine decides, in one place, whom a poke reaches and whom the space
//! policy no longer admits): in one process ([`Pokes`], the dev server) each WebSocket
//! connection's task watches its own signal; deployed, the connections are API Gateway's,
//! and the push function posts to each through the management API, and closes those refused
//! (`lambda::ApiGatewayPoker`). The message is the same: the text [`POKE`].

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;

/// Text of a poke message: the client pulls when it receives it.
pub const POKE: &str = "poke";

/// Tells a space's listeners that it changed.
#[async_trait]
pub trait Poker: Send + Sync {
    /// Pokes `space`, whose recorded (unexpired) connections are `connections`. Called once
    /// per push that committed, after its last commit, never before; it bounds its own time.
    /// Returns the connections found gone, which the engine then forgets.
    async fn poke(&self, space: &str, connections: &[String]) -> Vec<String>;

    /// Closes `connections` of `space`, whose user the space policy now refuses; the engine
    /// forgets them. Bounds its own time; a failure is the implementation's to log.
    async fn close(&self, space: &str, connections: &[String]);
}

#[async_trait]
impl Poker for Pokes {
    async fn poke(&self, _space: &str, connections: &[String]) -> Vec<String> {
        let open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        connections
            .iter()
            .filter(|id| match open.get(*id) {
                // Its task ended without being forgotten yet.
                Some(signal) if signal.is_closed() => true,
                Some(signal) => {
                    signal.send_modify(|s| s.pokes = s.pokes.wrapping_add(1));
                    false
                }
                None => true,
            })
            .cloned()
            .collect()
    }

    async fn close(&self, _space: &str, connections: &[String]) {
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        for id in connections {
            if let Some(signal) = open.remove(id) {
                signal.send_modify(|s| s.closed = true);
            }
        }
    }
}

/// What a connection's task is told: how many pokes so far, and whether to close.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signal {
    /// Pokes sent so far (the task sends one poke for all it has not sent yet).
    pub pokes: u64,
    /// The space policy refused the connection's user: close it, poking no more.
    pub closed: bool,
}

/// The poke connections of one process (the dev server), each recorded in the store like
/// API Gateway's, by id. Poking never waits on a connection: each has its own task watching
/// its [`Signal`], so a slow or dead connection only ever delays its own pokes, and one that
/// fell behind gets one poke for all it missed.
#[derive(Debug, Default)]
pub struct Pokes {
    connections: Mutex<HashMap<String, watch::Sender<Signal>>>,
}

impl Pokes {
    /// Opens connection `id`: the receiver its task watches.
    pub fn open(&self, id: &str) -> watch::Receiver<Signal> {
        let (signal, receiver) = watch::channel(Signal::default());
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        open.insert(id.to_owned(), signal);
        receiver
    }

    /// Forgets connection `id` (it closed).
    pub fn forget(&self, id: &str) {
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_that_never_reads_does_not_block_pokes() {
        let pokes = Pokes::default();
        let _stuck = pokes.open("stuck");
        let mut live = pokes.open("live");
        let both = ["stuck".to_owned(), "live".to_owned()];
        for _ in 0..1000 {
            assert!(pokes.poke("s", &both).await.is_empty());
        }
        // The live one fell behind too, but learns that it must pull, once.
        assert!(live.has_changed().unwrap());
        assert_eq!(live.borrow_and_update().pokes, 1000);
        assert!(!live.has_changed().unwrap());
    }

    #[tokio::test]
    async fn pokes_reach_only_the_connections_named_and_closed_ones_hear_no_more() {
        let pokes = Pokes::default();
        let mut a = pokes.open("a");
        let mut b = pokes.open("b");
        assert_eq!(
            pokes.poke("s", &["a".to_owned(), "gone".to_owned()]).await,
            ["gone"]
        );
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        a.borrow_and_update();
        pokes.close("s", &["a".to_owned()]).await;
        assert!(a.borrow_and_update().closed);
        assert_eq!(pokes.poke("s", &["a".to_owned()]).await, ["a"]);
        pokes.forget("b");
        assert!(
            b.changed().await.is_err(),
            "a forgotten connection's task ends"
        );
    }
}
