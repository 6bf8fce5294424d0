//! Pokes: after a push commits, every WebSocket connected to that space is told to pull.
//!
//! Publishing never waits on a connection: each space has a broadcast channel, and each
//! connection has its own task draining it, so a slow or dead connection only ever delays
//! (or loses) its own pokes. A connection that fell behind gets one poke for all it missed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use tokio::sync::{broadcast, watch};
use tracing::debug;

/// Text of a poke message (the same as the deployed WebSocket API sends).
pub const POKE: &str = "poke";

/// How long one send to a connection may take before the connection is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The spaces' poke channels.
#[derive(Default)]
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

/// Serves one poke connection until it closes, fails, or the server shuts down; sends a
/// ping every `heartbeat` so that proxies and browsers keep an idle connection open.
pub async fn serve(
    mut socket: WebSocket,
    mut pokes: broadcast::Receiver<()>,
    heartbeat: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    loop {
        let outgoing = tokio::select! {
            // Pokes first: a poke already due goes out before anything read after it is
            // answered (so a client's ping round trip also flushes its pokes).
            biased;
            poke = pokes.recv() => match poke {
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => Message::Text(POKE.into()),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = ticks.tick() => Message::Ping(Vec::new().into()),
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            _ = shutdown.changed() => {
                let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(None))).await;
                break;
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(outgoing)).await {
            Ok(Ok(())) => {}
            _ => {
                debug!("poke connection too slow or gone; closing it");
                break;
            }
        }
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
