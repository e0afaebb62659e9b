//! What a `POST` to an unsubscribe link says: RFC 8058's one-click form, from a mail client
//! or from the unsubscribe page's button, or anything else, which unsubscribes no one.
//!
//! RFC 8058 (section 3.2) has the mail client post `List-Unsubscribe=One-Click` as
//! `multipart/form-data` or `application/x-www-form-urlencoded`; both are read. The page's
//! button adds one field of its own ([`PAGE_SOURCE_FIELD`]). A body with any other field,
//! a field twice, or another value is refused: the form is fixed, and a body that is not it
//! was not sent by a mail client or by our page.

use hyper::header::HeaderValue;

use crate::events::SubscriptionSource;

use super::super::interstitial::PAGE_SOURCE_FIELD;

/// RFC 8058's one field, as posted.
const ONE_CLICK: (&str, &str) = ("List-Unsubscribe", "One-Click");

/// The two encodings RFC 8058 allows a one-click body in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FormEncoding {
    /// `application/x-www-form-urlencoded`, as browsers and most mail clients send it.
    UrlEncoded,
    /// `multipart/form-data` with its boundary: what RFC 8058 says a client should send.
    Multipart {
        /// The `Content-Type` header whole, which the multipart reader takes the boundary
        /// from.
        content_type: String,
    },
}

impl FormEncoding {
    /// The encoding a `Content-Type` names, if it is one of the two; `None` for any other
    /// type, or none.
    pub(crate) fn of(content_type: Option<&HeaderValue>) -> Option<FormEncoding> {
        let text = content_type?.to_str().ok()?;
        let media_type = text.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Some(FormEncoding::UrlEncoded)
        } else if media_type.eq_ignore_ascii_case("multipart/form-data") {
            Some(FormEncoding::Multipart {
                content_type: text.to_owned(),
            })
        } else {
            None
        }
    }

    /// Who posted `body`: a mail client's one-click `POST`, the page's button, or (`None`)
    /// neither.
    pub(crate) fn source(&self, body: &[u8]) -> Option<SubscriptionSource> {
        let fields = match self {
            FormEncoding::UrlEncoded => url::form_urlencoded::parse(body)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
            FormEncoding::Multipart { content_type } => multipart_fields(content_type, body)?,
        };
        source_of(&fields)
    }
}

/// The fields of a `multipart/form-data` body: each part's `name` and its value.
///
/// mailparse reads the parts (boundaries, headers, transfer encodings) as it does a MIME
/// message's: the body is given the request's `Content-Type` as its one header.
fn multipart_fields(content_type: &str, body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut message = Vec::with_capacity(content_type.len() + body.len() + 20);
    message.extend_from_slice(b"Content-Type: ");
    message.extend_from_slice(content_type.as_bytes());
    message.extend_from_slice(b"\r\n\r\n");
    message.extend_from_slice(body);
    let parsed = mailparse::parse_mail(&message).ok()?;
    if parsed.subparts.is_empty() {
        return None;
    }
    parsed
        .subparts
        .iter()
        .map(|part| {
            let disposition = part.get_content_disposition();
            let name = disposition.params.get("name")?.clone();
            let value = part.get_body().ok()?;
            Some((name, value))
        })
        .collect()
}

/// The source the fields say, if they are exactly the one-click form, with or without the
/// page's field.
fn source_of(fields: &[(String, String)]) -> Option<SubscriptionSource> {
    let is = |(name, value): &(String, String), (want_name, want_value): (&str, &str)| {
        name == want_name && value == want_value
    };
    match fields {
        [one] if is(one, ONE_CLICK) => Some(SubscriptionSource::UnsubscribeHeader),
        [a, b]
            if (is(a, ONE_CLICK) && is(b, PAGE_SOURCE_FIELD))
                || (is(a, PAGE_SOURCE_FIELD) && is(b, ONE_CLICK)) =>
        {
            Some(SubscriptionSource::UnsubscribeLink)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_encoded(body: &str) -> Option<SubscriptionSource> {
        FormEncoding::UrlEncoded.source(body.as_bytes())
    }

    #[test]
    fn the_one_click_form_and_the_pages_are_told_apart() {
        assert_eq!(
            url_encoded("List-Unsubscribe=One-Click"),
            Some(SubscriptionSource::UnsubscribeHeader)
        );
        for page in [
            "source=page&List-Unsubscribe=One-Click",
            "List-Unsubscribe=One-Click&source=page",
        ] {
            assert_eq!(
                url_encoded(page),
                Some(SubscriptionSource::UnsubscribeLink),
                "{page}"
            );
        }
    }

    #[test]
    fn any_other_body_is_refused() {
        for body in [
            "",
            "List-Unsubscribe=one-click",
            "List-Unsubscribe=One-Click&List-Unsubscribe=One-Click",
            "List-Unsubscribe=One-Click&source=mail",
            "List-Unsubscribe=One-Click&email=a%40example.com",
            "source=page",
            "List-Unsubscribe",
            "list-unsubscribe=One-Click",
        ] {
            assert_eq!(url_encoded(body), None, "{body:?}");
        }
    }

    #[test]
    fn content_types_name_the_encoding() {
        let of = |text: &'static str| FormEncoding::of(Some(&HeaderValue::from_static(text)));
        assert_eq!(
            of("application/x-www-form-urlencoded"),
            Some(FormEncoding::UrlEncoded)
        );
        assert_eq!(
            of("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
            Some(FormEncoding::UrlEncoded)
        );
        assert!(matches!(
            of("multipart/form-data; boundary=x"),
            Some(FormEncoding::Multipart { .. })
        ));
        assert_eq!(of("text/plain"), None);
        assert_eq!(of("application/json"), None);
        assert_eq!(FormEncoding::of(None), None);
    }

    #[test]
    fn multipart_bodies_are_read() {
        let content_type = "multipart/form-data; boundary=----b0undary".to_owned();
        let encoding = FormEncoding::Multipart { content_type };
        let body = "------b0undary\r\n\
                    Content-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n\
                    One-Click\r\n\
                    ------b0undary--\r\n";
        assert_eq!(
            encoding.source(body.as_bytes()),
            Some(SubscriptionSource::UnsubscribeHeader)
        );
        let other = body.replace("One-Click", "Two-Clicks");
        assert_eq!(encoding.source(other.as_bytes()), None);
        assert_eq!(encoding.source(b"List-Unsubscribe=One-Click"), None);
    }
}
