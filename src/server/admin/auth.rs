//! The admin listener's bearer token: with `[admin] token_file` set, every request must carry
//! `Authorization: Bearer <token>` (RFC 6750), checked before anything else is looked at.

use hyper::header::{self, HeaderMap};

use super::error::AdminError;
use crate::config::AdminToken;

/// Checks `headers` against `token`; with no token configured (a loopback listener) every
/// request passes. One `Authorization` header, scheme `Bearer` in any case (RFC 9110,
/// section 11.1), the token compared in constant time ([`AdminToken::matches`]).
pub fn authorize(token: Option<&AdminToken>, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(token) = token else {
        return Ok(());
    };
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // None, or several: a client that sends two tokens is not believed for either.
        return match headers.contains_key(header::AUTHORIZATION) {
            false => Err(AdminError::MissingToken),
            true => Err(AdminError::WrongToken),
        };
    };
    let presented = value.as_bytes();
    let scheme = b"bearer ";
    let is_bearer =
        presented.len() > scheme.len() && presented[..scheme.len()].eq_ignore_ascii_case(scheme);
    if !is_bearer {
        return Err(AdminError::MissingToken);
    }
    let credentials = presented[scheme.len()..].trim_ascii();
    match token.matches(credentials) {
        true => Ok(()),
        false => Err(AdminError::WrongToken),
    }
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    const TOKEN: &str = "c2VjcmV0LXRva2VuLWZvci10aGUtYWRtaW4tbGlzdGVuZXI=";

    fn check(values: &[&'static str]) -> Result<(), AdminError> {
        let token = AdminToken::new(TOKEN).unwrap();
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::AUTHORIZATION, HeaderValue::from_static(value));
        }
        authorize(Some(&token), &headers)
    }

    #[test]
    fn only_the_configured_bearer_token_passes() {
        let right = "Bearer c2VjcmV0LXRva2VuLWZvci10aGUtYWRtaW4tbGlzdGVuZXI=";
        assert!(check(&[right]).is_ok());
        assert!(check(&["bearer  c2VjcmV0LXRva2VuLWZvci10aGUtYWRtaW4tbGlzdGVuZXI= "]).is_ok());
        assert!(matches!(check(&[]), Err(AdminError::MissingToken)));
        assert!(matches!(
            check(&["Basic YWRtaW46YWRtaW4="]),
            Err(AdminError::MissingToken)
        ));
        assert!(matches!(
            check(&["Bearer wrong"]),
            Err(AdminError::WrongToken)
        ));
        assert!(matches!(
            check(&[right, right]),
            Err(AdminError::WrongToken)
        ));
        let prefix = "Bearer c2VjcmV0LXRva2VuLWZvci10aGUtYWRtaW4tbGlzdGVuZX";
        assert!(matches!(check(&[prefix]), Err(AdminError::WrongToken)));
    }

    #[test]
    fn without_a_token_everything_passes() {
        assert!(authorize(None, &HeaderMap::new()).is_ok());
    }
}
