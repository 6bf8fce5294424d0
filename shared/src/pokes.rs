//! Pokes: after a push commits, every connection listening to that space is told to pull.
//!
//! Publishing never waits on a connection: each space has a broadcast channel, and each
//! connection has its own task draining it, so a slow or dead connection only ever delays
//! (or loses) its own pokes. A connection that fell behind gets one poke for all it missed.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Text of a poke message: the client pulls when it receives it.
pub const POKE: &str = "poke";

/// The spaces' poke channels, in one process.
#[derive(Debug, Default)]
pub struct Pokes {
    spaces: Mutex<HashMap<String, broadcast::Sender<()>>>,
}

impl Pokes {
    /// Tells every connection of `space` to pull. Never blocks.
    pub fn poke(&self, space: &str) {
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
            pokes.poke("s");
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
        pokes.poke("a");
        assert_eq!(a.try_recv(), Ok(()));
        assert!(b.try_recv().is_err());
    }
}
