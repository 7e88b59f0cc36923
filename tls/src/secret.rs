//! Comparing secrets: constant-time equality (the time taken does not say how much of a guess
//! matched) and the `Authorization: Bearer <token>` check every server of the project makes
//! (the API server's tokens, the agents' REST API, the controller's admin port and dashboard).

/// Whether `a` and `b` are equal, in time that depends on their lengths only.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an `Authorization` header is `Bearer <token>` (surrounding spaces of the presented
/// token ignored). An empty `token` never matches.
pub fn bearer_is(header: Option<&str>, token: &str) -> bool {
    header
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|given| !token.is_empty() && same(given.trim().as_bytes(), token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly_and_an_empty_one_never() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"abc", b"ab") && !same(b"", b"a"));
        assert!(bearer_is(Some("Bearer abc"), "abc"));
        assert!(bearer_is(Some("Bearer  abc "), "abc"));
        assert!(!bearer_is(Some("Bearer abd"), "abc"));
        assert!(!bearer_is(Some("Bearer ab"), "abc"));
        assert!(!bearer_is(Some("Basic abc"), "abc"));
        assert!(!bearer_is(None, "abc"));
        assert!(!bearer_is(Some("Bearer "), ""));
    }
}
