//! Who the caller is.

use std::str::FromStr;

/// The user of requests without an `Authorization` header in header mode.
pub(crate) const ANONYMOUS: &str = "anonymous";

/// Where the user id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// The `sub` claim API Gateway's JWT authorizer verified; no claims: 401.
    Jwt,
    /// The raw `Authorization` header (`anonymous` when absent or empty; 401 when it is not
    /// visible ASCII). For local runs and trials: anyone can claim any user.
    Header,
}

impl FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "jwt" => Ok(AuthMode::Jwt),
            "header" => Ok(AuthMode::Header),
            other => Err(format!("{other:?} is neither \"jwt\" nor \"header\"")),
        }
    }
}

/// Longest user id accepted, in bytes (OpenID Connect caps `sub` at 255 characters). The
/// client group record holds it, so an unbounded one could make a commit too large to store.
pub(crate) const MAX_USER_BYTES: usize = 512;

/// The user id of a request, or why there is none.
pub(crate) fn user_id(
    mode: AuthMode,
    jwt_sub: Option<&str>,
    authorization: Option<&str>,
) -> Result<String, String> {
    let user = match mode {
        AuthMode::Jwt => jwt_sub
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| "the request carries no verified JWT claims (sub)".to_owned())?,
        AuthMode::Header => authorization
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(ANONYMOUS)
            .to_owned(),
    };
    if user.len() > MAX_USER_BYTES {
        return Err(format!(
            "the user id takes {} bytes; at most {MAX_USER_BYTES} are accepted",
            user.len()
        ));
    }
    Ok(user)
}
