//! Pull cookies.
//!
//! The client compares cookies by their `order` field and ignores a response whose cookie
//! equals the one it sent, so `order` must grow whenever the data or an lmid changes, and must
//! never go down. The server, for its part, needs to know which space version a cookie stands
//! for and whether that version still means what it meant (the store may have been wiped, as
//! an in-memory store is on every restart). A cookie is therefore an object:
//!
//! `{"order": 42, "version": 40, "epoch": "7f3a…"}`
//!
//! `version` is the space version the client's view reflects, `epoch` identifies the life of
//! the space's version counter, and `order` is `version` plus an offset that only changes when
//! the server had to reset a client from a cookie it could not serve from.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest integer the client compares exactly (2^53 - 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A cookie this server issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cookie {
    /// What the client compares.
    pub order: u64,
    /// Space version of the snapshot.
    pub version: u64,
    /// Life of the space's version counter.
    pub epoch: String,
}

/// Where a pull starts from, decided from the request's cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// No cookie: send `clear` and the whole view.
    Null,
    /// A cookie of ours at a version the server can diff from.
    Version(Cookie),
    /// A cookie the server cannot serve from (newer than the space, another epoch, or not
    /// ours): send `clear` and the whole view with an order strictly above `min_order`.
    Reset {
        /// The order the response must exceed.
        min_order: u64,
    },
}

impl Cookie {
    /// The cookie as JSON, as it goes into a pull response.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a cookie always serializes")
    }
}

/// Decides how to answer a pull whose cookie is `cookie`, for a space now at `version` in
/// `epoch`.
pub fn base_for(cookie: &Value, version: u64, epoch: &str) -> Base {
    if cookie.is_null() {
        return Base::Null;
    }
    match serde_json::from_value::<Cookie>(cookie.clone()) {
        // Version 0 is the empty state in every epoch, so it is always a valid base.
        Ok(c) if c.version <= version && (c.epoch == epoch || c.version == 0) => Base::Version(c),
        Ok(c) => Base::Reset { min_order: c.order },
        Err(_) => Base::Reset {
            min_order: foreign_order(cookie),
        },
    }
}

/// The cookie answering a pull from `base` with the state at `version` of `epoch`.
pub fn next_cookie(base: &Base, version: u64, epoch: &str) -> Cookie {
    let order = match base {
        Base::Null => version,
        Base::Version(c) => c.order + (version - c.version),
        Base::Reset { min_order } => (*min_order + 1).max(version),
    };
    Cookie {
        order: order.min(MAX_SAFE_INTEGER),
        version,
        epoch: epoch.to_owned(),
    }
}

/// The numeric order of a cookie some other server issued, as the client would compare it.
fn foreign_order(cookie: &Value) -> u64 {
    let n = match cookie {
        Value::Object(map) => map.get("order").and_then(Value::as_f64),
        other => other.as_f64(),
    };
    n.filter(|n| *n >= 0.0)
        .map(|n| n.ceil() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cookie(order: u64, version: u64, epoch: &str) -> Value {
        json!({"order": order, "version": version, "epoch": epoch})
    }

    #[test]
    fn null_cookie_is_a_full_pull() {
        assert_eq!(base_for(&Value::Null, 5, "e"), Base::Null);
        assert_eq!(next_cookie(&Base::Null, 5, "e").order, 5);
    }

    #[test]
    fn a_cookie_of_the_same_epoch_is_diffed_and_order_moves_with_version() {
        let base = base_for(&cookie(12, 10, "e"), 15, "e");
        assert!(matches!(base, Base::Version(_)));
        let next = next_cookie(&base, 15, "e");
        assert_eq!((next.order, next.version), (17, 15));
    }

    #[test]
    fn a_cookie_newer_than_the_space_resets_with_a_greater_order() {
        let base = base_for(&cookie(100, 100, "e"), 5, "e");
        assert_eq!(base, Base::Reset { min_order: 100 });
        let next = next_cookie(&base, 5, "e");
        assert!(next.order > 100);
        assert_eq!(next.version, 5);
    }

    #[test]
    fn a_cookie_of_another_epoch_resets() {
        let base = base_for(&cookie(3, 3, "old"), 7, "new");
        assert_eq!(base, Base::Reset { min_order: 3 });
        assert_eq!(next_cookie(&base, 7, "new").order, 7);
    }

    #[test]
    fn version_zero_is_valid_in_any_epoch() {
        assert!(matches!(
            base_for(&cookie(0, 0, ""), 4, "e"),
            Base::Version(_)
        ));
    }

    #[test]
    fn foreign_cookies_reset_above_their_numeric_value() {
        assert_eq!(base_for(&json!(41), 3, "e"), Base::Reset { min_order: 41 });
        assert_eq!(
            base_for(&json!({"order": 9.5}), 3, "e"),
            Base::Reset { min_order: 10 }
        );
        assert_eq!(
            base_for(&json!("abc"), 3, "e"),
            Base::Reset { min_order: 0 }
        );
    }
}
