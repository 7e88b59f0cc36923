//! Who may read the dashboard, without I/O: the dashboard token as a bearer token, or a session
//! cookie that a login link (or the token, typed into the login page) turned into. Links and
//! sessions are `<expiry>.<tag>`: the expiry in Unix seconds and an HMAC-SHA256 tag over it
//! under the dashboard token, so whoever holds the token (`ringrift up`, an operator) can mint a
//! link, and every controller replica checks it with no shared state. A changed token voids
//! every link and session.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// How long a login link works after it is made.
pub const LINK_VALIDITY_SECONDS: i64 = 3600;
/// How long a session lasts.
pub const SESSION_VALIDITY_SECONDS: i64 = 12 * 3600;
/// The session cookie's name.
pub const COOKIE: &str = "ringrift_dashboard";

/// What a credential is for: a login link's token is not a session and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A login link's `t` parameter.
    Login,
    /// The session cookie.
    Session,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Session => "session",
        }
    }
}

fn tag(token: &str, purpose: Purpose, expiry: i64) -> String {
    // HMAC takes keys of every length; an empty token is refused before this is reached.
    let Ok(mut mac) = <Hmac<Sha256> as hmac::Mac>::new_from_slice(token.as_bytes()) else {
        return String::new();
    };
    mac.update(purpose.label().as_bytes());
    mac.update(b":");
    mac.update(expiry.to_string().as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .fold(String::new(), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// A credential for `purpose` that lasts until `expiry` (Unix seconds).
pub fn mint(token: &str, purpose: Purpose, expiry: i64) -> String {
    format!("{expiry}.{}", tag(token, purpose, expiry))
}

/// Why a credential is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not `<expiry>.<tag>`, or the tag is not ours.
    #[error("the credential is not valid for this dashboard")]
    Invalid,
    /// Valid once, past its expiry.
    #[error("the credential has expired")]
    Expired,
}

/// Checks a credential minted by [`mint`] at `now` (Unix seconds).
///
/// # Errors
/// [`Refused`] when it is malformed, was not made with `token` for `purpose`, or expired.
pub fn check(token: &str, purpose: Purpose, credential: &str, now: i64) -> Result<(), Refused> {
    if token.is_empty() {
        return Err(Refused::Invalid);
    }
    let (expiry, given) = credential.split_once('.').ok_or(Refused::Invalid)?;
    let expiry: i64 = expiry.parse().map_err(|_| Refused::Invalid)?;
    if !ringrift_tls::secret::same(given.as_bytes(), tag(token, purpose, expiry).as_bytes()) {
        return Err(Refused::Invalid);
    }
    if now >= expiry {
        return Err(Refused::Expired);
    }
    Ok(())
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The login link's path and query for a link minted at `now`.
pub fn login_path(token: &str, now: i64) -> String {
    format!(
        "/login?t={}",
        mint(token, Purpose::Login, now + LINK_VALIDITY_SECONDS)
    )
}

/// How a request is let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The bearer token or a live session.
    Granted,
    /// Nothing that lets it in; the reason, for the login page.
    Denied(&'static str),
}

/// Whether a request with these `Authorization` and `Cookie` headers may read the dashboard.
pub fn access(token: &str, authorization: Option<&str>, cookies: Option<&str>, now: i64) -> Access {
    if ringrift_tls::secret::bearer_is(authorization, token) {
        return Access::Granted;
    }
    match cookie(cookies, COOKIE).map(|c| check(token, Purpose::Session, c, now)) {
        Some(Ok(())) => Access::Granted,
        Some(Err(Refused::Expired)) => Access::Denied("your session has expired; log in again"),
        Some(Err(Refused::Invalid)) => {
            Access::Denied("your session is not valid here (the dashboard token changed?); log in again")
        }
        None if authorization.is_some() => Access::Denied("wrong bearer token"),
        None => Access::Denied("log in with the dashboard token or a login link"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_link_checks_until_it_expires_and_only_for_its_purpose_and_token() {
        let link = mint("secret", Purpose::Login, 1_000);
        assert_eq!(check("secret", Purpose::Login, &link, 999), Ok(()));
        assert_eq!(
            check("secret", Purpose::Login, &link, 1_000),
            Err(Refused::Expired)
        );
        assert_eq!(
            check("secret", Purpose::Session, &link, 999),
            Err(Refused::Invalid)
        );
        assert_eq!(check("other", Purpose::Login, &link, 999), Err(Refused::Invalid));
        assert_eq!(check("", Purpose::Login, &link, 999), Err(Refused::Invalid));
        // A later expiry with the old tag does not check.
        let forged = link.replace("1000.", "9000.");
        assert_eq!(
            check("secret", Purpose::Login, &forged, 999),
            Err(Refused::Invalid)
        );
        for junk in ["", ".", "abc", "1000", "x.y", "1000.zz"] {
            assert_eq!(
                check("secret", Purpose::Login, junk, 0),
                Err(Refused::Invalid),
                "{junk}"
            );
        }
    }

    #[test]
    fn cookies_are_read_from_their_header() {
        let header = Some("a=1; ringrift_dashboard=42.ab ;b=2");
        assert_eq!(cookie(header, COOKIE), Some("42.ab"));
        assert_eq!(cookie(header, "b"), Some("2"));
        assert_eq!(cookie(header, "c"), None);
        assert_eq!(cookie(None, "a"), None);
    }

    #[test]
    fn access_takes_the_token_or_a_live_session() {
        let session = mint("tok", Purpose::Session, 100);
        let cookie_header = format!("{COOKIE}={session}");
        assert_eq!(access("tok", Some("Bearer tok"), None, 0), Access::Granted);
        assert_eq!(access("tok", None, Some(&cookie_header), 50), Access::Granted);
        assert!(
            matches!(access("tok", None, Some(&cookie_header), 100), Access::Denied(m) if m.contains("expired"))
        );
        assert!(
            matches!(access("new", None, Some(&cookie_header), 50), Access::Denied(m) if m.contains("not valid"))
        );
        assert!(
            matches!(access("tok", Some("Bearer no"), None, 0), Access::Denied(m) if m.contains("wrong"))
        );
        assert!(matches!(access("tok", None, None, 0), Access::Denied(_)));
        // A login link is no session.
        let link = mint("tok", Purpose::Login, 100);
        assert!(matches!(
            access("tok", None, Some(&format!("{COOKIE}={link}")), 50),
            Access::Denied(_)
        ));
        assert!(login_path("tok", 10).starts_with(&format!("/login?t={}.", 10 + LINK_VALIDITY_SECONDS)));
    }
}
