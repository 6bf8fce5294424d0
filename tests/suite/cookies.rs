//! Properties of the cookies the server answers with, compared as the replicache client
//! compares them (`compareCookies`: null lowest; if either side is a string, as strings;
//! otherwise numerically, objects by their `order`).

use std::cmp::Ordering;

use proptest::prelude::*;
use replicache_dynamodb::cookie::{base_for, next_cookie, Base};
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
