//! Which HTML part the reader sees, and so which one gets the open pixel: one pixel per
//! message, so that one open is one open.
//!
//! - In `multipart/alternative`, a client shows the last alternative it can: the last one
//!   that holds HTML.
//! - In `multipart/related`, the root is the first part (RFC 2387's default): the HTML that
//!   refers to the others by `cid:`.
//! - In `multipart/mixed` and the rest, the first part that holds HTML; attachments are not
//!   read as the body.

use super::part::Part;

/// The part of `root` the reader sees as the message, among the HTML parts that
/// `rewritable` says will be rewritten.
pub(crate) fn reader_html<'a>(
    root: &'a Part,
    rewritable: &impl Fn(&Part) -> bool,
) -> Option<&'a Part> {
    if root.attachment {
        return None;
    }
    if root.media_type == "text/html" {
        return rewritable(root).then_some(root);
    }
    match root.media_type.as_str() {
        "multipart/alternative" => root
            .children
            .iter()
            .rev()
            .find_map(|child| reader_html(child, rewritable)),
        "multipart/related" => root
            .children
            .first()
            .and_then(|child| reader_html(child, rewritable)),
        _ => root
            .children
            .iter()
            .find_map(|child| reader_html(child, rewritable)),
    }
}
