//! The open pixel: its markup, and finding the `{{ses:openTracker}}` marker in streamed text.

/// Where the sender asks for the open pixel, as in SES.
pub const OPEN_TRACKER_MARKER: &str = "{{ses:openTracker}}";

/// The open pixel's markup for the open URL `open_url`.
///
/// - `width`/`height` attributes as well as CSS, because Outlook's Word engine ignores CSS
///   sizes on images, and some webmail strips `style`.
/// - `alt=""`, so a client that blocks images shows no placeholder text, and screen readers
///   skip it.
/// - `border="0"` and zero margins and padding, so nothing around it shows.
/// - No `display:none`: a client need not fetch an image it does not render, and a 1×1
///   transparent GIF with no border is invisible anyway. This is the markup the large ESPs
///   send.
pub fn pixel_html(open_url: &str) -> String {
    format!(
        "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" border=\"0\" \
         style=\"height:1px!important;width:1px!important;border:0!important;\
         margin:0!important;padding:0!important\" />",
        htmlize::escape_attribute(open_url)
    )
}

/// Finds [`OPEN_TRACKER_MARKER`] in the chunks of text nodes, even when a chunk boundary
/// splits it.
///
/// lol_html cuts text nodes into chunks wherever its input buffers end, so the end of one chunk
/// that could begin the marker is held back and written with the next chunk of the same
/// text node.
#[derive(Debug, Default)]
pub(crate) struct MarkerScanner {
    /// The end of the previous chunk, a proper prefix of the marker, not yet written.
    held: String,
}

impl MarkerScanner {
    /// Takes one chunk and returns the text to write in its place, or `None` when the chunk is
    /// written as it is. `replace` appends what stands in for each marker found.
    ///
    /// `last` says the chunk ends its text node; nothing is held back past it.
    pub(crate) fn feed(
        &mut self,
        chunk: &str,
        last: bool,
        mut replace: impl FnMut(&mut String),
    ) -> Option<String> {
        if self.held.is_empty() && !chunk.contains('{') {
            return None;
        }
        let mut text = std::mem::take(&mut self.held);
        let held_before = text.len();
        text.push_str(chunk);

        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        let mut found = false;
        while let Some(at) = rest.find(OPEN_TRACKER_MARKER) {
            out.push_str(&rest[..at]);
            replace(&mut out);
            found = true;
            rest = &rest[at + OPEN_TRACKER_MARKER.len()..];
        }
        let hold = if last { 0 } else { partial_marker_len(rest) };
        out.push_str(&rest[..rest.len() - hold]);
        self.held.push_str(&rest[rest.len() - hold..]);

        let unchanged = !found && held_before == 0 && hold == 0;
        (!unchanged).then_some(out)
    }

    /// What is held back, for the end of the document: a text node cut off by the end of the
    /// input is written as it is.
    pub(crate) fn take_held(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The length of the longest end of `text` that is a proper prefix of the marker.
fn partial_marker_len(text: &str) -> usize {
    (1..OPEN_TRACKER_MARKER.len())
        .rev()
        .find(|&len| text.ends_with(&OPEN_TRACKER_MARKER[..len]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` as one text node and returns what is written, with `<P>` for the first
    /// marker and nothing for later ones.
    fn scan(chunks: &[&str]) -> String {
        let mut scanner = MarkerScanner::default();
        let mut placed = false;
        let mut written = String::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let replacement = scanner.feed(chunk, last, |out| {
                if !std::mem::replace(&mut placed, true) {
                    out.push_str("<P>");
                }
            });
            written.push_str(replacement.as_deref().unwrap_or(chunk));
        }
        written
    }

    #[test]
    fn replaces_the_marker_in_one_chunk_or_split_anywhere() {
        let text = "Hello {{ses:openTracker}} world";
        assert_eq!(scan(&[text]), "Hello <P> world");
        for split in 1..text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(scan(&[a, b]), "Hello <P> world", "split at {split}");
            assert_eq!(scan(&[a, b, ""]), "Hello <P> world", "split at {split}");
        }
        let bytes: Vec<String> = text.chars().map(String::from).collect();
        let one_by_one: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(scan(&one_by_one), "Hello <P> world");
    }

    #[test]
    fn later_markers_are_removed_and_near_misses_kept() {
        assert_eq!(
            scan(&["a{{ses:openTracker}}b{{ses:open", "Tracker}}c"]),
            "a<P>bc"
        );
        assert_eq!(scan(&["{{ses:open", "Trackr}}"]), "{{ses:openTrackr}}");
        assert_eq!(scan(&["{{ses:open"]), "{{ses:open");
        assert_eq!(scan(&["{{", "{{ses:openTracker}}"]), "{{<P>");
        assert_eq!(scan(&["price {5}"]), "price {5}");
    }

    #[test]
    fn untouched_chunks_are_not_rewritten() {
        let mut scanner = MarkerScanner::default();
        assert_eq!(scanner.feed("no braces", false, |_| {}), None);
        assert_eq!(scanner.feed("a {b} c", false, |_| {}), None);
        assert_eq!(
            scanner.feed("ends {", false, |_| {}),
            Some("ends ".to_owned())
        );
        assert_eq!(scanner.feed("x", true, |_| {}), Some("{x".to_owned()));
    }

    #[test]
    fn pixel_is_one_hidden_image_with_an_escaped_source() {
        let html = pixel_html("https://t.example/CI0/m/a&b=2");
        assert!(
            html.starts_with("<img src=\"https://t.example/CI0/m/a&amp;b=2\""),
            "{html}"
        );
        assert!(html.contains("width=\"1\" height=\"1\" alt=\"\""), "{html}");
        assert_eq!(html.matches('<').count(), 1);
    }
}
