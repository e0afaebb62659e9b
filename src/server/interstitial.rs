//! The pages the proxy shows people: the interstitial for a link that could be read but not
//! verified, the unsubscribe page and its confirmation, and the small error pages.
//!
//! The interstitial names the destination's host in large type and links to it. It never
//! leaves by itself: no meta refresh, no script (the Content-Security-Policy forbids any).
//! Everything from the request is HTML-escaped, and the page asks not to be indexed.

use url::Url;

/// The interstitial for `target`, a best-effort destination that did not verify.
pub fn interstitial_page(target: &str) -> String {
    // The decoder only offers http(s) destinations; a host-less one still shows its text.
    let host = Url::parse(target)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_else(|| target.to_owned());
    let host = escape(&host);
    let href = escape(target);
    page(
        "Check this link",
        &format!(
            "<p>This link may have been changed on its way to you, so it was not followed \
             automatically. It leads to:</p>\n\
             <p class=\"host\">{host}</p>\n\
             <p class=\"target\">{href}</p>\n\
             <p><a class=\"go\" href=\"{href}\" rel=\"noopener noreferrer nofollow\">Continue to {host}</a></p>\n\
             <p>If you did not expect this, close this page.</p>"
        ),
    )
}

/// The page for a request that is not a usable link.
pub fn bad_request_page() -> String {
    page(
        "This link is broken",
        "<p>This link could not be read. It may have been cut short or changed by the program \
         that showed it to you.</p>",
    )
}

/// The page for a path the proxy does not serve.
pub fn not_found_page() -> String {
    page("Not found", "<p>There is nothing here.</p>")
}

/// The page for a method other than GET or HEAD (or, for an unsubscribe link, POST).
pub fn method_not_allowed_page() -> String {
    page(
        "Method not allowed",
        "<p>Only GET and HEAD are served here, and POST to an unsubscribe link.</p>",
    )
}

/// What the unsubscribe page's button posts besides RFC 8058's `List-Unsubscribe=One-Click`,
/// so that the event can tell the page's button from a mail client's one-click `POST`.
pub const PAGE_SOURCE_FIELD: (&str, &str) = ("source", "page");

/// The page an unsubscribe link shows to a `GET`: one sentence and one button, which posts
/// back to the same link. Opening it unsubscribes no one: link scanners open every link.
pub fn unsubscribe_page() -> String {
    let (name, value) = PAGE_SOURCE_FIELD;
    page(
        "Unsubscribe",
        &format!(
            "<p>Press the button to stop receiving these emails.</p>\n\
             <form method=\"post\">\
             <input type=\"hidden\" name=\"{name}\" value=\"{value}\">\
             <button class=\"go\" type=\"submit\" name=\"List-Unsubscribe\" value=\"One-Click\">Unsubscribe</button>\
             </form>"
        ),
    )
}

/// The page the unsubscribe page's button leads to.
pub fn unsubscribed_page() -> String {
    page(
        "Unsubscribed",
        "<p>You are unsubscribed, and will not receive these emails again.</p>",
    )
}

/// The security headers every page carries: no script, no framing, no sniffing, no referrer
/// (the destination must not learn the tracking link), no indexing.
pub const PAGE_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-robots-tag", "noindex"),
    ("x-frame-options", "DENY"),
];

/// The `Content-Security-Policy` of the unsubscribe page: [`PAGE_HEADERS`]' own, but that
/// its form may post back to the tracking domain (`form-action 'self'`). Still no script.
pub const UNSUBSCRIBE_PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"robots\" content=\"noindex\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;padding:2rem;color:#222}\
main{max-width:40rem;margin:auto}.host{font-size:2.2rem;font-weight:bold;word-break:break-all}\
.target{font-family:monospace;color:#555;word-break:break-all}\
.go{display:inline-block;padding:.7rem 1.2rem;background:#1a5fb4;color:#fff;border:0;border-radius:.3rem;text-decoration:none;font:inherit;cursor:pointer}";

/// Escapes text for HTML content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interstitial_names_the_host_and_never_leaves_by_itself() {
        let page = interstitial_page("https://example.com/a?b=1&c=\"><script>");
        assert!(page.contains("<p class=\"host\">example.com</p>"), "{page}");
        assert!(page.contains("href=\"https://example.com/a?b=1&amp;c=&quot;&gt;&lt;script&gt;\""));
        assert!(page.contains("<meta name=\"robots\" content=\"noindex\">"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("http-equiv"));
    }

    #[test]
    fn unsubscribe_page_has_one_form_with_one_button_and_no_script() {
        let page = unsubscribe_page();
        assert_eq!(page.matches("<form method=\"post\">").count(), 1, "{page}");
        assert_eq!(page.matches("<button").count(), 1, "{page}");
        assert!(page.contains("name=\"source\" value=\"page\""), "{page}");
        assert!(
            !page.contains("<script") && !page.contains("action="),
            "{page}"
        );
    }

    #[test]
    fn escape_covers_attribute_quotes() {
        assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
    }
}
