//! Log fields made from request input: bounded, so that no request can make its log lines
//! arbitrarily large, and logged with `?` (Debug) so that a newline or control character is
//! escaped instead of starting a forged line.

/// Longest field logged from request input, in bytes.
pub(crate) const MAX_FIELD_BYTES: usize = 200;

/// What the library's rejection of arguments that do not deserialize starts with
/// ([`crate::Mutators`]).
const INVALID_ARGUMENTS: &str = "invalid arguments: ";

/// `s`, cut to at most [`MAX_FIELD_BYTES`] at a character boundary.
pub(crate) fn bounded(s: &str) -> &str {
    if s.len() <= MAX_FIELD_BYTES {
        return s;
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A rejection reason as it may be logged: bounded, and for arguments that did not
/// deserialize, serde's description without the values it quotes (they are the user's data).
pub(crate) fn rejection_reason(reason: &str) -> String {
    let reason = match reason.strip_prefix(INVALID_ARGUMENTS) {
        Some(detail) => format!("{INVALID_ARGUMENTS}{}", without_values(detail)),
        None => reason.to_owned(),
    };
    bounded(&reason).to_owned()
}

/// serde's description of a deserialization error without the input it quotes. Its messages
/// are "invalid type: <value>, expected <what>", likewise "invalid value", "unknown variant
/// `<input>`, expected …", "unknown field `<input>`, expected …", "invalid length <n>,
/// expected …", "missing field `<name>`" and "duplicate field `<name>`"; anything else
/// (a type's own message) may quote anything, and is withheld.
fn without_values(detail: &str) -> String {
    if let Some((head, expected)) = detail.rsplit_once(", expected ") {
        let kind = head.split([':', '`']).next().unwrap_or_default().trim_end();
        return format!("{kind}, expected {expected}");
    }
    if detail.starts_with("missing field `") || detail.starts_with("duplicate field `") {
        return detail.to_owned();
    }
    "(withheld: it may quote the arguments)".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_at_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_FIELD_BYTES);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_FIELD_BYTES && cut.len() >= MAX_FIELD_BYTES - 1);
        assert!(long.starts_with(cut));
    }

    #[test]
    fn argument_values_are_left_out_of_logged_reasons() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Args {
            id: String,
            order: u64,
        }
        let cases = [
            serde_json::json!({"id": "x", "order": "SECRET, expected u64"}),
            serde_json::json!({"id": "x", "order": -7_123_456}),
            serde_json::json!({"id": ["SECRET"], "order": 1}),
            serde_json::json!({"order": 1}),
        ];
        for args in cases {
            let e = serde_json::from_value::<Args>(args.clone()).unwrap_err();
            let logged = rejection_reason(&format!("{INVALID_ARGUMENTS}{e}"));
            assert!(logged.starts_with(INVALID_ARGUMENTS), "{logged}");
            assert!(
                !logged.contains("SECRET") && !logged.contains("7123456"),
                "{logged}"
            );
            assert!(!logged.ends_with(": "), "says what was wrong: {logged}");
        }
        assert_eq!(
            rejection_reason("order must be positive"),
            "order must be positive"
        );
    }
}
