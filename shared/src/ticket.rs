//! Poke tickets: short-lived credentials a client trades its token for, to open a poke
//! WebSocket (browsers cannot set headers on a WebSocket, and a long-lived token in a URL
//! ends up in access logs).
//!
//! A ticket names a user, a space, an expiry and a random id, signed with HMAC-SHA256:
//! `<base64url(JSON)>.<base64url(MAC)>`. Whoever holds the key can mint tickets, so the key
//! lives only in the functions' configuration (the stack generates it) and is never logged.
//! A ticket opens one connection: the first `$connect` with it records its id as spent
//! (see `Engine::connect_with_ticket`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// How long a ticket is valid, in seconds.
pub const TICKET_SECS: u64 = 60;

/// The key tickets are signed with.
#[derive(Clone)]
pub struct TicketKey(Vec<u8>);

/// What a valid ticket says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The user it was issued to.
    #[serde(rename = "u")]
    pub user: String,
    /// The space it opens.
    #[serde(rename = "s")]
    pub space: String,
    /// When it expires, in seconds since the Unix epoch.
    #[serde(rename = "e")]
    pub expires_at: u64,
    /// Random, so that each ticket issued is distinct and can be spent once.
    #[serde(rename = "n")]
    pub id: String,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a ticket, or not signed with this key.
    #[error("the ticket is not valid")]
    Invalid,
    /// Signed, but expired.
    #[error("the ticket has expired")]
    Expired,
    /// None was given.
    #[error("a poke connection needs a ticket")]
    Missing,
    /// Valid, but for another space than the connection's.
    #[error("the ticket is for another space")]
    OtherSpace,
}

/// A ticket key too short to be safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a ticket key takes at least {MIN_KEY_BYTES} bytes, not {bytes}")]
pub struct KeyTooShort {
    /// The bytes it has.
    pub bytes: usize,
}

impl TicketKey {
    /// A key from secret bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(secret: &[u8]) -> Result<Self, KeyTooShort> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyTooShort {
                bytes: secret.len(),
            });
        }
        Ok(TicketKey(secret.to_vec()))
    }

    /// The key in `POKE_TICKET_KEY` (its UTF-8 bytes), `None` when unset or empty.
    pub fn from_env() -> Result<Option<Self>, KeyTooShort> {
        Self::from_value(std::env::var("POKE_TICKET_KEY").ok())
    }

    fn from_value(value: Option<String>) -> Result<Option<Self>, KeyTooShort> {
        match value.filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(v) => Self::new(v.trim().as_bytes()).map(Some),
        }
    }

    /// A random key, for a single process (the dev server).
    pub fn random() -> Self {
        let mut secret = vec![0u8; 32];
        // The operating system's generator does not fail on the platforms this runs on; a
        // key from fastrand would still be unpredictable to a remote client.
        if getrandom::fill(&mut secret).is_err() {
            secret.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        TicketKey(secret)
    }

    /// A ticket for `user` in `space`, valid until `expires_at`, with an id of its own.
    pub fn issue(&self, user: &str, space: &str, expires_at: u64) -> String {
        let mut id = [0u8; 16];
        if getrandom::fill(&mut id).is_err() {
            id.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        let payload = serde_json::to_vec(&Ticket {
            user: user.to_owned(),
            space: space.to_owned(),
            expires_at,
            id: URL_SAFE_NO_PAD.encode(id),
        })
        .expect("a ticket serializes");
        let mac = self.mac(&payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// The ticket a poke connection to `space` opens with, the one check of the dev server
    /// and the poke function: given, signed with this key, unexpired at `now`, for `space`.
    pub fn admit(
        &self,
        ticket: Option<&str>,
        space: &str,
        now: u64,
    ) -> Result<Ticket, TicketError> {
        let ticket = self.verify(ticket.ok_or(TicketError::Missing)?, now)?;
        if ticket.space != space {
            return Err(TicketError::OtherSpace);
        }
        Ok(ticket)
    }

    /// What `ticket` says, if this key signed it and it has not expired at `now`.
    pub fn verify(&self, ticket: &str, now: u64) -> Result<Ticket, TicketError> {
        let (payload, mac) = ticket.split_once('.').ok_or(TicketError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TicketError::Invalid)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TicketError::Invalid)?;
        // Constant-time comparison.
        self.mac(&payload)
            .verify_slice(&mac)
            .map_err(|_| TicketError::Invalid)?;
        let ticket: Ticket = serde_json::from_slice(&payload).map_err(|_| TicketError::Invalid)?;
        if ticket.expires_at <= now {
            return Err(TicketError::Expired);
        }
        Ok(ticket)
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any size");
        mac.update(payload);
        mac
    }
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.write_str("TicketKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_verify_until_they_expire_and_only_under_their_key() {
        let key = TicketKey::random();
        let ticket = key.issue("alice", "room", 100);
        let read = key.verify(&ticket, 99).unwrap();
        assert_eq!((read.user.as_str(), read.space.as_str()), ("alice", "room"));
        let again = key.verify(&key.issue("alice", "room", 100), 99).unwrap();
        assert_ne!(read.id, again.id, "each ticket has its own id");
        assert_eq!(key.verify(&ticket, 100), Err(TicketError::Expired));
        assert_eq!(
            TicketKey::random().verify(&ticket, 0),
            Err(TicketError::Invalid)
        );
        // A payload changed after signing (another user, another space) does not verify.
        let (_, mac) = ticket.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"u":"mallory","s":"room","e":100}"#);
        assert_eq!(
            key.verify(&format!("{forged_payload}.{mac}"), 0),
            Err(TicketError::Invalid)
        );
        for junk in ["", ".", "a.b", "not a ticket", &ticket[1..]] {
            assert_eq!(key.verify(junk, 0), Err(TicketError::Invalid), "{junk:?}");
        }
        assert!(TicketKey::new(b"short").is_err());
        assert!(TicketKey::from_value(Some("  ".into())).unwrap().is_none());
        let short = TicketKey::from_value(Some("short".into())).unwrap_err();
        assert_eq!(short, KeyTooShort { bytes: 5 });
        assert!(TicketKey::from_value(Some("k".repeat(40)))
            .unwrap()
            .is_some());
        assert_eq!(format!("{key:?}"), "TicketKey(..)");
    }
}
