//! Poke listeners: the connections of a space recorded in the store, added at connect,
//! removed at disconnect or when a poke finds them gone, and poked after every push that
//! committed.

use tracing::{debug, warn};

use super::{Caller, Engine, EngineError};
use crate::access::Operation;
use crate::store::{
    Address, Connection, Expect, Listeners, Record, SpentTicket, StoreError, Write,
};
use crate::ticket::{Ticket, TicketKey};

impl Engine {
    /// A poke ticket signed with `key` for the caller, and when it expires, if the space
    /// policy lets them listen to the space (what `POST /api/replicache/poke-ticket`
    /// answers).
    pub async fn issue_ticket(
        &self,
        caller: &Caller,
        key: &TicketKey,
    ) -> Result<(String, u64), EngineError> {
        self.authorize(caller, Operation::Poke).await?;
        let expires_at = self.now() + crate::ticket::TICKET_SECS;
        Ok((
            key.issue(&caller.user, &caller.space, expires_at),
            expires_at,
        ))
    }

    /// Records connection `id` as listening to the caller's space, after the application's
    /// space policy allowed it. Costs two requests (a read and a write).
    pub async fn connect(&self, caller: &Caller, id: &str) -> Result<(), EngineError> {
        self.open_connection(caller, id, None).await
    }

    /// [`Engine::connect`] with `ticket` (verified by the caller, and naming the caller's
    /// user and space), which it spends: a ticket already spent answers
    /// [`EngineError::Unauthorized`]. At no extra request: the spent ticket is read with the
    /// listeners and written, conditioned on its absence, with the connection.
    pub async fn connect_with_ticket(
        &self,
        caller: &Caller,
        id: &str,
        ticket: &Ticket,
    ) -> Result<(), EngineError> {
        let spent = SpentTicket {
            id: ticket.id.clone(),
            expires_at: ticket.expires_at,
        };
        self.open_connection(caller, id, Some(spent)).await
    }

    async fn open_connection(
        &self,
        caller: &Caller,
        id: &str,
        ticket: Option<SpentTicket>,
    ) -> Result<(), EngineError> {
        super::validate_id("connection id", id)?;
        self.authorize(caller, Operation::Poke).await?;
        let now = self.config.clock.now();
        let expires_at = now.saturating_add(self.config.connection_ttl.as_secs());
        let owner = owner_digest(&caller.user);
        self.change_listeners(
            &caller.space,
            |listeners| {
                listeners.connections.retain(|_, expires| *expires > now);
                // The caller's own oldest make way for this one past their share.
                let mut own: Vec<(u64, String)> = listeners
                    .owners
                    .iter()
                    .filter(|(_, o)| **o == owner)
                    .filter_map(|(id, _)| Some((*listeners.connections.get(id)?, id.clone())))
                    .collect();
                own.sort_unstable();
                let keep = self.config.max_listeners_per_user.saturating_sub(1);
                for (_, old) in own.iter().take(own.len().saturating_sub(keep)) {
                    listeners.connections.remove(old);
                }
                if listeners.connections.len() >= self.config.max_listeners {
                    return Err(EngineError::Unavailable(format!(
                        "the space has {} poke connections, the most it takes",
                        listeners.connections.len()
                    )));
                }
                listeners.connections.insert(id.to_owned(), expires_at);
                listeners.owners.insert(id.to_owned(), owner.clone());
                Ok(true)
            },
            Some(Connection {
                id: id.to_owned(),
                space: caller.space.clone(),
                user: caller.user.clone(),
                expires_at,
            }),
            ticket,
        )
        .await
    }

    /// Forgets connection `id` (it closed). Unknown ids are ignored.
    pub async fn disconnect(&self, id: &str) -> Result<(), EngineError> {
        super::validate_id("connection id", id)?;
        let got = self
            .store
            .get(&[Address::Connection { id: id.to_owned() }])
            .await?;
        let Some(Some(Record::Connection(connection))) = got.into_iter().next() else {
            debug!(connection = id, "disconnect of an unknown connection");
            return Ok(());
        };
        self.forget_listeners(&connection.space, &[id.to_owned()])
            .await
    }

    /// Removes `ids` (and any expired entry) from the space's listeners.
    pub(crate) async fn forget_listeners(
        &self,
        space: &str,
        ids: &[String],
    ) -> Result<(), EngineError> {
        let now = self.config.clock.now();
        self.change_listeners(
            space,
            |listeners| {
                let before = listeners.connections.len();
                listeners
                    .connections
                    .retain(|id, expires| *expires > now && !ids.contains(id));
                Ok(listeners.connections.len() != before)
            },
            None,
            None,
        )
        .await
    }

    /// Pokes the listeners of `space` (as a push read them) after the push committed, then
    /// forgets those expired or found gone. Failures are logged: the commit stands.
    pub(crate) async fn poke(&self, space: &str, listeners: Option<Listeners>) {
        let Some(poker) = &self.poker else {
            return;
        };
        let now = self.config.clock.now();
        let (mut live, mut stale) = (Vec::new(), Vec::new());
        for (id, expires) in listeners.map(|l| l.connections).unwrap_or_default() {
            if expires > now {
                live.push(id);
            } else {
                stale.push(id);
            }
        }
        stale.extend(poker.poke(space, &live).await);
        if !stale.is_empty() {
            if let Err(e) = self.forget_listeners(space, &stale).await {
                warn!(space, error = %e, "could not forget gone poke connections");
            }
        }
    }

    /// Read-modify-write of the space's listeners: `change` edits them and says whether it
    /// changed anything; the write is conditioned on the revision read, and retried. With
    /// `ticket`, it is read too and refused if spent, and written as spent with the change
    /// (a `$connect` that raced with another on the same ticket finds it spent on its retry).
    async fn change_listeners(
        &self,
        space: &str,
        change: impl Fn(&mut Listeners) -> Result<bool, EngineError>,
        also: Option<Connection>,
        ticket: Option<SpentTicket>,
    ) -> Result<(), EngineError> {
        let mut addresses = vec![Address::Listeners {
            space: space.to_owned(),
        }];
        if let Some(t) = &ticket {
            addresses.push(Address::SpentTicket { id: t.id.clone() });
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut got = self.store.get(&addresses).await?.into_iter();
            let listeners = got.next().flatten();
            if let Some(Some(Record::SpentTicket(_))) = got.next() {
                return Err(EngineError::Unauthorized(
                    "the ticket has already opened a connection: get another".to_owned(),
                ));
            }
            let (mut listeners, expect) = match listeners {
                Some(Record::Listeners(l)) => {
                    let expect = Expect::Version(l.rev);
                    (l, expect)
                }
                _ => (
                    Listeners {
                        space: space.to_owned(),
                        ..Listeners::default()
                    },
                    Expect::Absent,
                ),
            };
            let changed = change(&mut listeners)?;
            let Listeners {
                connections,
                owners,
                ..
            } = &mut listeners;
            owners.retain(|id, _| connections.contains_key(id));
            if !changed && also.is_none() {
                return Ok(());
            }
            listeners.rev += 1;
            let mut writes = vec![Write::Put {
                record: Record::Listeners(listeners),
                expect,
            }];
            if let Some(connection) = &also {
                writes.push(Write::Put {
                    record: Record::Connection(connection.clone()),
                    expect: Expect::Any,
                });
            }
            if let Some(t) = &ticket {
                writes.push(Write::Put {
                    record: Record::SpentTicket(t.clone()),
                    expect: Expect::Absent,
                });
            }
            match self.store.write(writes).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict(why)) if attempt < self.config.max_attempts => {
                    debug!(attempt, %why, "listeners changed meanwhile; retrying");
                    self.back_off(attempt).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A short digest of a user id, as the listeners record keeps it: the record holds up to
/// [`super::EngineConfig::max_listeners`] entries, and a user id may take 512 bytes.
fn owner_digest(user: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(user.as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}
