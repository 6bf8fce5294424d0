//! How the replicache client compares cookies (`compareCookies`): the one model the suite
//! and the fuzz checks hold the server's cookies to.

use std::cmp::Ordering;

use serde_json::Value;

/// `Number.MAX_SAFE_INTEGER`: the largest integer the client compares exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// What the client compares a cookie by, for cookies it can hold: null, a number (not beyond
/// what it compares exactly) or a string, alone or as the `order` of an object (where null
/// counts as 0: the client subtracts). Crafted string orders whose 16-digit counter is about
/// to overflow into a 17th digit are left out (the server's counters are space versions).
enum Compared {
    Null,
    Number(f64),
    Text(String),
}

fn compared(cookie: &Value) -> Option<Compared> {
    let value = match cookie {
        Value::Null => return Some(Compared::Null),
        Value::Object(o) => o.get("order")?,
        other => other,
    };
    match value {
        Value::Null => Some(Compared::Number(0.0)),
        Value::Number(n) => n
            .as_f64()
            .filter(|n| n.abs() <= MAX_SAFE_INTEGER / 2.0)
            .map(Compared::Number),
        Value::String(s) => {
            let counter = s
                .rsplit_once('~')
                .filter(|(_, n)| n.len() == 16)
                .and_then(|(_, n)| n.parse::<u64>().ok());
            let near_overflow = counter.is_some_and(|n| n >= 9_000_000_000_000_000);
            (!near_overflow).then(|| Compared::Text(s.clone()))
        }
        _ => None,
    }
}

/// `compareCookies` of the replicache client: null lowest, strings (if either is one) by UTF-16
/// code units, numbers numerically. `None` where the client could not hold `b`.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    let (a, b) = (compared(a)?, compared(b)?);
    let text = |c: &Compared| match c {
        Compared::Null => "null".to_owned(),
        Compared::Number(n) => n.to_string(),
        Compared::Text(s) => s.clone(),
    };
    Some(match (&a, &b) {
        (Compared::Null, Compared::Null) => Ordering::Equal,
        (Compared::Null, _) => Ordering::Less,
        (_, Compared::Null) => Ordering::Greater,
        (Compared::Number(x), Compared::Number(y)) => x.partial_cmp(y)?,
        _ => text(&a).encode_utf16().cmp(text(&b).encode_utf16()),
    })
}

/// Whether the client takes cookie `a` as newer than `b`.
pub fn above(a: &Value, b: &Value) -> bool {
    compare(a, b) == Some(Ordering::Greater)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_is_lowest_an_order_of_null_counts_as_zero_strings_compare_as_text() {
        assert!(above(&json!(0), &Value::Null));
        assert!(above(&json!({"order": 1}), &json!({"order": null})));
        assert_eq!(
            compare(&json!({"order": null}), &json!(0)),
            Some(Ordering::Equal)
        );
        assert!(above(&json!("b"), &json!("a~0000000000000009")));
        // Text when either is text: "10" sorts before "9".
        assert!(above(&json!(9), &json!("10")));
    }
}
