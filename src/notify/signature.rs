//! Standard Webhooks signatures, and the `webhook-id` of a delivery.
//!
//! Each delivery carries three headers (the Standard Webhooks specification):
//!
//! - `webhook-id`: the same for every attempt of one delivery, so a receiver dedupes retries;
//! - `webhook-timestamp`: the attempt's Unix time in seconds, which receivers check against
//!   replays;
//! - `webhook-signature`: `v1,{base64 of HMAC-SHA256("{id}.{timestamp}.{body}")}`, one per
//!   secret, separated by spaces, so that during a rotation either secret verifies.
//!
//! The signature is made over the body's exact bytes, which are sent as they are: no
//! re-serialisation between signing and sending can break it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::{digest, hmac};

use crate::config::notify::WebhookSecret;

/// `webhook-signature`'s value for one attempt: a `v1,…` signature per secret.
pub fn sign(secrets: &[WebhookSecret], id: &str, timestamp: u64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let mut header = String::with_capacity(secrets.len() * 48);
    for secret in secrets {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.key());
        let mut context = hmac::Context::with_key(&key);
        for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
            context.update(part);
        }
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str("v1,");
        STANDARD.encode_string(context.sign().as_ref(), &mut header);
    }
    header
}

/// The `webhook-id` of a delivery to `endpoint` of the events `names` names (their stream
/// entries' ids, or their `eventId`s): `msg_` and 32 hex digits of a SHA-256 over both. It
/// depends on nothing but what is delivered, so every attempt of it (by this process or,
/// after a crash, by another) carries the same id.
pub fn webhook_id<'a>(endpoint: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(endpoint.as_bytes());
    for id in names {
        // Length-prefixed, so that no two lists of ids hash alike.
        context.update(&(id.len() as u64).to_be_bytes());
        context.update(id.as_bytes());
    }
    let digest = context.finish();
    let mut text = String::with_capacity(36);
    text.push_str("msg_");
    for byte in &digest.as_ref()[..16] {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example (its reference libraries' tests):
    /// this secret, id, timestamp and payload sign to this signature.
    #[test]
    fn signs_as_the_specification_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_secret_signs() {
        let old = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let new = WebhookSecret::parse("whsec_b2xkLW9sZC1vbGQtb2xkLW9sZC1vbGQtb2xk").unwrap();
        let both = sign(&[old.clone(), new.clone()], "msg_1", 1, b"[]");
        let (first, second) = both.split_once(' ').unwrap();
        assert_eq!(first, sign(&[old], "msg_1", 1, b"[]"));
        assert_eq!(second, sign(&[new], "msg_1", 1, b"[]"));
    }

    #[test]
    fn webhook_ids_follow_the_content() {
        let id = webhook_id("billing", ["e1", "e2"]);
        assert_eq!(id.len(), 36);
        assert!(id.starts_with("msg_"));
        assert_eq!(id, webhook_id("billing", ["e1", "e2"]));
        assert_ne!(id, webhook_id("billing", ["e1e2"]));
        assert_ne!(id, webhook_id("crm", ["e1", "e2"]));
        assert_ne!(id, webhook_id("billing", ["e2", "e1"]));
    }
}
