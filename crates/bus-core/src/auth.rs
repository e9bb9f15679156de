//! The optional bearer token of the services' HTTP APIs.

use axum::http::{HeaderMap, header};

/// Whether `headers` carry `Authorization: Bearer <expected>`.
///
/// The comparison takes time that depends only on the lengths, never on where the bytes
/// differ, so the token cannot be guessed byte by byte from response times.
pub fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    same_secret(given.as_bytes(), expected.as_bytes())
}

fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ e);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cres", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3cret!", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }

    #[test]
    fn the_header_must_be_a_bearer_token() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, "t"));
        headers.insert(header::AUTHORIZATION, "Basic t".parse().unwrap());
        assert!(!bearer_matches(&headers, "t"));
        headers.insert(header::AUTHORIZATION, "Bearer t".parse().unwrap());
        assert!(bearer_matches(&headers, "t"));
    }
}
