//! Pull cookies.
//!
//! The client compares cookies by their `order` field and ignores a response whose cookie
//! equals the one it sent, so `order` must grow whenever the data or an lmid changes, and must
//! never go down. The server, for its part, needs to know which space version a cookie stands
//! for and whether that version still means what it meant (the store may have been wiped, as
//! an in-memory store is on every restart). A cookie is therefore an object:
//!
//! `{"order": 42, "version": 40, "epoch": "7f3a…", "t": 1795700000}`
//!
//! `version` is the space version the client's view reflects, `epoch` identifies the life of
//! the space's version counter, and `order` is `version` plus an offset that only changes when
//! the server had to reset a client from a cookie it could not serve from. `t` is when it was
//! issued (tombstones older than the GC horizon are gone, so an old cookie gets a reset). A
//! page of an incomplete sync also carries `p`: the lmid changes owed to the client, sent
//! with the page that completes the sync (never ahead of the effects the client has).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest integer the client compares exactly (2^53 - 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// What the client compares: a number, or (only after a reset from a cookie whose order was
/// a string, which the client compares as strings) a string `"<that string>~<16 digits>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Order {
    /// A number, at most 2^53 - 1.
    Number(u64),
    /// A string that sorts after the foreign cookie it replaced.
    Text(String),
}

/// A cookie this server issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cookie {
    /// What the client compares.
    pub order: Order,
    /// Space version of the snapshot.
    pub version: u64,
    /// Life of the space's version counter.
    pub epoch: String,
    /// When it was issued, in seconds since the Unix epoch (0: before cookies said).
    #[serde(default, rename = "t")]
    pub issued: u64,
    /// For a page of an incomplete sync: the lmid changes of the caller's group not sent yet.
    #[serde(default, rename = "p", skip_serializing_if = "Option::is_none")]
    pub pending: Option<std::collections::BTreeMap<String, u64>>,
}

/// Where a pull starts from, decided from the request's cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Base {
    /// No cookie: send `clear` and the whole view.
    Null,
    /// A cookie of ours at a version the server can diff from.
    Version(Cookie),
    /// A cookie the server cannot serve from (newer than the space, another epoch, or not
    /// ours): send `clear` and the whole view with an order strictly above `above`.
    Reset {
        /// The order the response must exceed.
        above: Order,
    },
}

impl Cookie {
    /// The cookie as JSON, as it goes into a pull response.
    pub(crate) fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a cookie always serializes")
    }
}

/// Decides how to answer a pull whose cookie is `cookie`, for a space now at `version` in
/// `epoch`.
pub(crate) fn base_for(cookie: &Value, version: u64, epoch: &str) -> Base {
    if cookie.is_null() {
        return Base::Null;
    }
    match serde_json::from_value::<Cookie>(cookie.clone()) {
        // Version 0 is the empty state in every epoch, so it is always a valid base.
        Ok(c) if c.version <= version && (c.epoch == epoch || c.version == 0) => Base::Version(c),
        Ok(c) => Base::Reset { above: c.order },
        Err(_) => Base::Reset {
            above: foreign_order(cookie),
        },
    }
}

/// The cookie answering a pull from `base` with the state at `version` of `epoch`.
pub(crate) fn next_cookie(base: &Base, version: u64, epoch: &str) -> Cookie {
    let order = match base {
        Base::Null => Order::Number(version.min(MAX_SAFE_INTEGER)),
        Base::Version(c) => advance(&c.order, version - c.version),
        Base::Reset {
            above: Order::Number(n),
        } => Order::Number(n.saturating_add(1).max(version).min(MAX_SAFE_INTEGER)),
        Base::Reset {
            above: Order::Text(t),
        } => Order::Text(format!("{t}~{:016}", version)),
    };
    Cookie {
        order,
        version,
        epoch: epoch.to_owned(),
        issued: 0,
        pending: None,
    }
}

/// `order` moved on by `delta` versions.
fn advance(order: &Order, delta: u64) -> Order {
    match order {
        Order::Number(n) => Order::Number(n.saturating_add(delta).min(MAX_SAFE_INTEGER)),
        Order::Text(t) => {
            let counted = t
                .rsplit_once('~')
                .filter(|(_, n)| n.len() == 16)
                .and_then(|(prefix, n)| Some((prefix, n.parse::<u64>().ok()?)));
            match counted {
                Some((prefix, n)) => {
                    Order::Text(format!("{prefix}~{:016}", n.saturating_add(delta)))
                }
                None => Order::Text(format!("{t}~{delta:016}")),
            }
        }
    }
}

/// The order of a cookie some other server issued, as the client would compare it.
fn foreign_order(cookie: &Value) -> Order {
    let compared = match cookie {
        Value::Object(map) => map.get("order").unwrap_or(&Value::Null),
        other => other,
    };
    match compared {
        Value::String(s) => Order::Text(s.clone()),
        other => Order::Number(
            other
                .as_f64()
                .filter(|n| *n >= 0.0)
                .map(|n| n.ceil().min(MAX_SAFE_INTEGER as f64) as u64)
                .unwrap_or(0),
        ),
    }
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
        assert_eq!(next_cookie(&Base::Null, 5, "e").order, Order::Number(5));
    }

    #[test]
    fn a_cookie_of_the_same_epoch_is_diffed_and_order_moves_with_version() {
        let base = base_for(&cookie(12, 10, "e"), 15, "e");
        assert!(matches!(base, Base::Version(_)));
        let next = next_cookie(&base, 15, "e");
        assert_eq!((next.order, next.version), (Order::Number(17), 15));
    }

    #[test]
    fn a_cookie_newer_than_the_space_resets_with_a_greater_order() {
        let base = base_for(&cookie(100, 100, "e"), 5, "e");
        assert_eq!(
            base,
            Base::Reset {
                above: Order::Number(100)
            }
        );
        let next = next_cookie(&base, 5, "e");
        assert_eq!(next.order, Order::Number(101));
        assert_eq!(next.version, 5);
    }

    #[test]
    fn a_cookie_of_another_epoch_resets() {
        let base = base_for(&cookie(3, 3, "old"), 7, "new");
        assert_eq!(
            base,
            Base::Reset {
                above: Order::Number(3)
            }
        );
        assert_eq!(next_cookie(&base, 7, "new").order, Order::Number(7));
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
        assert_eq!(
            base_for(&json!(41), 3, "e"),
            Base::Reset {
                above: Order::Number(41)
            }
        );
        assert_eq!(
            base_for(&json!({"order": 9.5}), 3, "e"),
            Base::Reset {
                above: Order::Number(10)
            }
        );
    }

    #[test]
    fn string_cookies_start_a_string_lineage_that_keeps_growing() {
        // The client compares as strings when either side is a string ("10" < "9").
        let base = base_for(&json!("9"), 10, "e");
        let first = next_cookie(&base, 10, "e");
        let Order::Text(t1) = &first.order else {
            panic!("{first:?}")
        };
        assert!(t1.as_str() > "9");
        let next = next_cookie(&base_for(&first.to_json(), 12, "e"), 12, "e");
        let Order::Text(t2) = &next.order else {
            panic!("{next:?}")
        };
        assert!(t2 > t1, "{t2} > {t1}");
        assert_eq!(next.version, 12);
    }

    #[test]
    fn huge_orders_saturate_instead_of_overflowing() {
        let crafted = json!({"order": u64::MAX, "version": 0, "epoch": ""});
        let next = next_cookie(&base_for(&crafted, 5, "e"), 5, "e");
        assert_eq!(next.order, Order::Number(MAX_SAFE_INTEGER));
        let next = next_cookie(&base_for(&json!({"order": 1e300}), 5, "e"), 5, "e");
        assert_eq!(next.order, Order::Number(MAX_SAFE_INTEGER));
    }
}

#[cfg(test)]
mod properties {
    // Properties of the cookies the server answers with, compared as the replicache client
    // compares them (`compareCookies`: null lowest; if either side is a string, as strings;
    // otherwise numerically, objects by their `order`).

    use std::cmp::Ordering;

    use super::{base_for, next_cookie, Base};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// The value the client compares a cookie by.
    enum Compared {
        Null,
        Number(f64),
        Text(String),
    }

    fn compared(cookie: &Value) -> Compared {
        let v = match cookie {
            Value::Object(o) => o.get("order").cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        match v {
            Value::Null => Compared::Null,
            Value::String(s) => Compared::Text(s),
            other => Compared::Number(other.as_f64().unwrap_or(f64::NAN)),
        }
    }

    fn js_string(c: &Compared) -> String {
        match c {
            Compared::Null => "null".into(),
            Compared::Number(n) if n.fract() == 0.0 && n.abs() < 1e21 => format!("{}", *n as i64),
            Compared::Number(n) => n.to_string(),
            Compared::Text(s) => s.clone(),
        }
    }

    /// The client's comparison; `None` where it is meaningless (NaN).
    fn compare(a: &Value, b: &Value) -> Option<Ordering> {
        if a == b {
            return Some(Ordering::Equal);
        }
        let (ca, cb) = (compared(a), compared(b));
        match (&ca, &cb) {
            (Compared::Null, Compared::Null) => Some(Ordering::Equal),
            (Compared::Null, _) => Some(Ordering::Less),
            (_, Compared::Null) => Some(Ordering::Greater),
            (Compared::Text(_), _) | (_, Compared::Text(_)) => {
                // JavaScript compares UTF-16 code units.
                let (x, y) = (js_string(&ca), js_string(&cb));
                Some(x.encode_utf16().cmp(y.encode_utf16()))
            }
            (Compared::Number(x), Compared::Number(y)) => x.partial_cmp(y),
        }
    }

    fn any_cookie() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            (0u64..1 << 53).prop_map(|n| json!(n)),
            "[a-z0-9~]{0,6}".prop_map(|s| json!(s)),
            (
                0u64..1000,
                0u64..1000,
                prop_oneof![Just("e"), Just("other")]
            )
                .prop_map(|(o, v, e)| json!({"order": o, "version": v, "epoch": e})),
            ("[a-z0-9~]{0,6}", 0u64..1000)
                .prop_map(|(o, v)| json!({"order": o, "version": v, "epoch": "e"})),
        ]
    }

    proptest! {
        #[test]
        fn answers_never_go_back_and_move_whenever_the_state_may_differ(
            sent in any_cookie(),
            version in 0u64..2000,
            epoch in prop_oneof![Just("e"), Just("other")],
        ) {
            let base = base_for(&sent, version, epoch);
            let answer = next_cookie(&base, version, epoch).to_json();
            let ordering = compare(&answer, &sent);
            prop_assume!(ordering.is_some());
            let must_move = match &base {
                Base::Version(c) => c.version < version,
                Base::Null | Base::Reset { .. } => true,
            };
            if must_move {
                prop_assert_eq!(ordering, Some(Ordering::Greater), "{} after {}", answer, sent);
            } else {
                prop_assert_eq!(ordering, Some(Ordering::Equal), "{} after {}", answer, sent);
            }
        }

        #[test]
        fn a_chain_of_pulls_keeps_growing(
            first in any_cookie(),
            steps in proptest::collection::vec(0u64..5, 1..10),
        ) {
            let mut cookie = first;
            let mut version = 0;
            for step in steps {
                version += step;
                let base = base_for(&cookie, version, "e");
                let next = next_cookie(&base, version, "e").to_json();
                let ordering = compare(&next, &cookie);
                prop_assume!(ordering.is_some());
                prop_assert!(ordering != Some(Ordering::Less), "{} after {}", next, cookie);
                cookie = next;
            }
        }
    }
}
