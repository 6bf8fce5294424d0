//! A [`Poker`] that records what it is asked to poke, and can report connections as gone.

use std::sync::Mutex;

use async_trait::async_trait;
use replicache_dynamodb::pokes::Poker;

/// Records every poke: the space and the connections it was given; and every close.
#[derive(Default)]
pub struct RecordingPoker {
    heard: Mutex<Vec<(String, Vec<String>)>>,
    gone: Mutex<Vec<String>>,
    closed: Mutex<Vec<String>>,
}

impl RecordingPoker {
    /// The pokes so far; clears them.
    pub fn take(&self) -> Vec<(String, Vec<String>)> {
        std::mem::take(&mut self.heard.lock().unwrap())
    }

    /// The connections closed so far; clears them.
    pub fn take_closed(&self) -> Vec<String> {
        std::mem::take(&mut self.closed.lock().unwrap())
    }

    /// Reports `id` as gone when it is poked.
    pub fn make_gone(&self, id: &str) {
        self.gone.lock().unwrap().push(id.to_owned());
    }
}

#[async_trait]
impl Poker for RecordingPoker {
    async fn poke(&self, space: &str, connections: &[String]) -> Vec<String> {
        self.heard
            .lock()
            .unwrap()
            .push((space.to_owned(), connections.to_vec()));
        let gone = self.gone.lock().unwrap();
        connections
            .iter()
            .filter(|c| gone.contains(c))
            .cloned()
            .collect()
    }

    async fn close(&self, _space: &str, connections: &[String]) {
        self.closed
            .lock()
            .unwrap()
            .extend(connections.iter().cloned());
    }
}
