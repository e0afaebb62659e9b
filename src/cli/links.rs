//! `mailtrack keygen`, `sign`, `pixel` and `decode`: the link contract from the command line.

use std::process::ExitCode;

use serde_json::json;

use mailtrack::link::{decode as decode_link, key_ring, Decoded, MessageId};
use mailtrack::Config;

use super::{parse_tags, Failure, StampArgs, EXIT_NOT_VERIFIED};

/// Prints a new `[[key]]` table.
pub(super) fn keygen(id: u32) -> Result<(), Failure> {
    let table = key_ring::generate_key_table(id)
        .map_err(|_| Failure::Io(std::io::Error::other("no system randomness")))?;
    print!("{table}");
    Ok(())
}

/// Prints the tracked click link for `url`.
pub(super) fn sign(
    config: &Config,
    stamp: &StampArgs,
    tags: &[String],
    url: &str,
) -> Result<(), Failure> {
    let stamp = stamp.stamp()?;
    let tags = parse_tags(tags)?;
    let signer = config.signer()?;
    let link = signer
        .click_url(url, &stamp, &tags)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    println!("{link}");
    Ok(())
}

/// Prints the open pixel's URL.
pub(super) fn pixel(config: &Config, stamp: &StampArgs) -> Result<(), Failure> {
    let stamp = stamp.stamp()?;
    let signer = config.signer()?;
    println!("{}", signer.open_url(&stamp));
    Ok(())
}

/// Prints what `request_target` is, as one JSON line; exits 0 only when it verified.
pub(super) fn decode(config: &Config, request_target: &str) -> Result<ExitCode, Failure> {
    let ring = config.key_ring()?;
    let decoded = decode_link(request_target, &ring);
    println!("{}", decoded_json(&decoded));
    Ok(match decoded {
        Decoded::Verified(_) => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_NOT_VERIFIED),
    })
}

/// The one-line JSON that `decode` prints.
fn decoded_json(decoded: &Decoded) -> serde_json::Value {
    match decoded {
        Decoded::Verified(link) => json!({
            "status": "verified",
            "kind": link.kind.as_str(),
            "target": (link.kind == mailtrack::link::LinkKind::Click).then_some(&link.target),
            "message_id": link.message_id.as_str(),
            "version": link.version(),
            "send_time": link.send_time.map(|t| t.to_string()),
            "message_tags": link.message_tags.to_map(),
            "tags": link.tags.to_map(),
            "key_id": link.key_id,
            "repair": link.repair_label(),
        }),
        Decoded::Unverified(link) => json!({
            "status": "unverified",
            "kind": link.kind.as_str(),
            "target": link.target,
            "message_id": link.message_id.as_ref().map(MessageId::as_str),
            "tags": null,
            "key_id": link.key_id,
            "repair": null,
            "reason": link.reason.as_str(),
        }),
        Decoded::Invalid(reason) => json!({
            "status": "invalid",
            "kind": null,
            "target": null,
            "message_id": null,
            "tags": null,
            "key_id": null,
            "repair": null,
            "reason": reason.as_str(),
        }),
    }
}
