//! Pokes: after a push commits, every connection listening to that space is told to pull.
//!
//! One abstraction, [`Poker`], two worlds: in one process ([`Pokes`], the dev server) each
//! space has a broadcast channel that its WebSocket connections drain; deployed, the
//! connections are API Gateway's, recorded in the store, and the push function posts to each
//! through the management API (`lambda::ApiGatewayPoker`). The message is the same: the
//! text [`POKE`].

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::broadcast;

/// Text of a poke message: the client pulls when it receives it.
pub const POKE: &str = "poke";

/// Tells a space's listeners that it changed.
#[async_trait]
pub trait Poker: Send + Sync {
    /// Pokes `space`, whose recorded (unexpired) connections are `connections`. Called once
    /// per push that committed, after its last commit, never before; it bounds its own time.
    /// Returns the connections found gone, which the engine then forgets.
    async fn poke(&self, space: &str, connections: &[String]) -> Vec<String>;
}

#[async_trait]
impl Poker for Pokes {
    async fn poke(&self, space: &str, _recorded: &[String]) -> Vec<String> {
        // In one process the subscribers are the connections; none are recorded in the store.
        self.publish(space);
        Vec::new()
    }
}

/// The spaces' poke channels, in one process. Publishing never waits on a connection: each
/// connection has its own task draining the channel, so a slow or dead connection only ever
/// delays (or loses) its own pokes; one that fell behind gets one poke for all it missed.
#[derive(Debug, Default)]
pub struct Pokes {
    spaces: Mutex<HashMap<String, broadcast::Sender<()>>>,
}

impl Pokes {
    /// Tells every connection of `space` to pull. Never blocks.
    pub fn publish(&self, space: &str) {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = spaces.get(space) {
            if tx.send(()).is_err() {
                // Nobody listens any more.
                spaces.remove(space);
            }
        }
    }

    /// A receiver of `space`'s pokes.
    pub fn subscribe(&self, space: &str) -> broadcast::Receiver<()> {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        spaces
            .entry(space.to_owned())
            .or_insert_with(|| broadcast::channel(16).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subscriber_that_never_reads_does_not_block_pokes() {
        let pokes = Pokes::default();
        let _stuck = pokes.subscribe("s");
        let mut live = pokes.subscribe("s");
        for _ in 0..1000 {
            pokes.publish("s");
        }
        // The live subscriber lagged too, but learns that it must pull.
        assert!(matches!(
            live.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }

    #[tokio::test]
    async fn pokes_reach_only_their_space() {
        let pokes = Pokes::default();
        let mut a = pokes.subscribe("a");
        let mut b = pokes.subscribe("b");
        pokes.publish("a");
        assert_eq!(a.try_recv(), Ok(()));
        assert!(b.try_recv().is_err());
    }
}
