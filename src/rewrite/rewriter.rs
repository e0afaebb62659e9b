//! [`Rewriter`]: the streaming rewriter, which wires the link and pixel handlers into lol_html
//! and writes the result to any [`Write`].

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use lol_html::html_content::{ContentType, DocumentEnd, Element, TextChunk, TextType};
use lol_html::{doc_comments, doc_text, element, end, HtmlRewriter, OutputSink, Settings};

use super::links::LinkTracker;
use super::pixel::{pixel_html, MarkerScanner};
use super::report::{PixelPosition, RewriteReport};
use super::{PixelPlacement, RewriteError, RewriteOptions};

/// Rewrites one message fed to it in pieces of any size, writing the result to `W` as it goes.
///
/// Input is read as UTF-8, the encoding of nearly all HTML mail; a message in another charset
/// must be converted first. The rewriter looks for `{{ses:openTracker}}` in the text, so
/// lol_html writes text back from its UTF-8 decoding: a byte sequence that is not UTF-8 comes
/// out as U+FFFD. [`rewrite_bytes`](super::rewrite_bytes), which sees the whole message, skips
/// that when the message has no marker, and passes such bytes through as they are.
///
/// ```
/// use mailtrack::rewrite::{RewriteOptions, Rewriter};
/// use mailtrack::link::MessageId;
///
/// let options = RewriteOptions::new(mailtrack::testing::fixed_signer(), MessageId::new("m-1")?);
/// let mut rewriter = Rewriter::new(Vec::new(), &options);
/// rewriter.write(b"<p><a href=\"https://example.com/\">Hi</a></p>")?;
/// let (html, report) = rewriter.end()?;
/// assert_eq!(report.tracked.len(), 1);
/// let html = String::from_utf8(html)?;
/// // A version 2 link: its version segment starts with `2~` and the send time (now).
/// assert!(html.contains("/CL0/https:%2F%2Fexample.com%2F/2~"));
/// assert!(html.contains("/m-1/"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Rewriter<W: Write> {
    /// `None` once it has failed: lol_html must not be written to after an error.
    html: Option<HtmlRewriter<'static, SharedOutput<W>>>,
    state: Rc<RefCell<State>>,
    output: Rc<RefCell<Output<W>>>,
}

/// What the handlers share.
struct State {
    links: LinkTracker,
    pixel: Pixel,
}

/// The open pixel and whether it has been placed.
struct Pixel {
    html: String,
    placement: PixelPlacement,
    placed: Option<PixelPosition>,
    body_seen: bool,
    marker: MarkerScanner,
}

impl Pixel {
    /// The pixel's markup the first time it is placed, `None` after.
    fn place(&mut self, position: PixelPosition) -> Option<&str> {
        if self.placed.is_some() || self.placement == PixelPlacement::Omitted {
            return None;
        }
        self.placed = Some(position);
        Some(&self.html)
    }
}

/// The writer and the first error it returned.
struct Output<W> {
    writer: W,
    error: Option<std::io::Error>,
}

/// lol_html's output sink: writes to the shared writer, and keeps the first error for
/// [`Rewriter`] to return, since a sink cannot return one.
struct SharedOutput<W>(Rc<RefCell<Output<W>>>);

impl<W: Write> OutputSink for SharedOutput<W> {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        let mut output = self.0.borrow_mut();
        if output.error.is_none() && !chunk.is_empty() {
            if let Err(e) = output.writer.write_all(chunk) {
                output.error = Some(e);
            }
        }
    }
}

impl<W: Write> Rewriter<W> {
    /// A rewriter for one message that writes to `writer`.
    pub fn new(writer: W, options: &RewriteOptions) -> Rewriter<W> {
        Rewriter::build(writer, options, true)
    }

    /// A rewriter for a message known to hold no `{{ses:openTracker}}`: it does not look at
    /// text at all, which halves lol_html's work on a typical message.
    pub(crate) fn without_marker(writer: W, options: &RewriteOptions) -> Rewriter<W> {
        Rewriter::build(writer, options, false)
    }

    fn build(writer: W, options: &RewriteOptions, find_marker: bool) -> Rewriter<W> {
        let state = Rc::new(RefCell::new(State {
            links: LinkTracker::new(options),
            pixel: Pixel {
                html: pixel_html(&options.signer.open_url(&options.stamp())),
                placement: options.pixel,
                placed: None,
                body_seen: false,
                marker: MarkerScanner::default(),
            },
        }));
        let output = Rc::new(RefCell::new(Output {
            writer,
            error: None,
        }));
        let settings = settings(&state, find_marker);
        let html = HtmlRewriter::new(settings, SharedOutput(Rc::clone(&output)));
        Rewriter {
            html: Some(html),
            state,
            output,
        }
    }

    /// Rewrites the next piece of the message.
    pub fn write(&mut self, data: &[u8]) -> Result<(), RewriteError> {
        let html = self.html.as_mut().ok_or(RewriteError::AlreadyFailed)?;
        let result = html.write(data).map_err(RewriteError::Html);
        let result = result.and_then(|()| self.take_write_error());
        if result.is_err() {
            self.html = None;
        }
        result
    }

    /// Finishes the message: places the pixel if nothing else has, flushes the writer, and
    /// returns it with the report.
    pub fn end(mut self) -> Result<(W, RewriteReport), RewriteError> {
        let html = self.html.take().ok_or(RewriteError::AlreadyFailed)?;
        html.end().map_err(RewriteError::Html)?;
        self.take_write_error()?;
        let output = Rc::try_unwrap(self.output)
            .ok()
            .expect("lol_html's sink, the only other owner, was dropped by end()")
            .into_inner();
        let mut writer = output.writer;
        writer.flush().map_err(RewriteError::Write)?;
        let mut state = self.state.borrow_mut();
        let report = RewriteReport {
            tracked: std::mem::take(&mut state.links.tracked),
            skipped: std::mem::take(&mut state.links.skipped),
            pixel: state.pixel.placed,
            unsubscribe: std::mem::take(&mut state.links.unsubscribe),
        };
        Ok((writer, report))
    }

    fn take_write_error(&self) -> Result<(), RewriteError> {
        match self.output.borrow_mut().error.take() {
            Some(e) => Err(RewriteError::Write(e)),
            None => Ok(()),
        }
    }
}

/// lol_html's settings: a handler for links, one for `<body>`, one for comments (to report
/// links in Outlook's conditional comments), one for text (the marker, when `find_marker`)
/// and one for the end of the document (the pixel's last resort).
///
/// `strict` stays on, lol_html's default: markup whose parse lol_html cannot be sure of is an
/// error rather than a guess that might rewrite a link inside a script.
fn settings(state: &Rc<RefCell<State>>, find_marker: bool) -> Settings<'static, 'static> {
    let (links, comments, body, text, doc_end) = (
        Rc::clone(state),
        Rc::clone(state),
        Rc::clone(state),
        Rc::clone(state),
        Rc::clone(state),
    );
    let settings = Settings::new()
        .append_element_content_handler(element!("a, area", move |el| {
            links.borrow_mut().links.rewrite(el);
            Ok(())
        }))
        .append_element_content_handler(element!("body", move |el| {
            on_body(&body, el);
            Ok(())
        }))
        .append_document_content_handler(doc_comments!(move |comment| {
            comments.borrow_mut().links.conditional_comment(comment);
            Ok(())
        }))
        .append_document_content_handler(end!(move |end| {
            on_end(&doc_end, end);
            Ok(())
        }))
        .with_strict(true);
    if !find_marker {
        return settings;
    }
    settings.append_document_content_handler(doc_text!(move |chunk| {
        on_text(&text, chunk);
        Ok(())
    }))
}

/// At the first `<body>`: the pixel goes right after it, or a handler is left for `</body>`.
fn on_body(state: &Rc<RefCell<State>>, body: &mut Element<'_, '_>) {
    let mut guard = state.borrow_mut();
    let pixel = &mut guard.pixel;
    if std::mem::replace(&mut pixel.body_seen, true) {
        return;
    }
    match pixel.placement {
        PixelPlacement::BodyStart => {
            let can_have_content = body.can_have_content();
            if let Some(html) = pixel.place(PixelPosition::BodyStart) {
                if can_have_content {
                    body.prepend(html, ContentType::Html);
                } else {
                    body.after(html, ContentType::Html);
                }
            }
        }
        PixelPlacement::Omitted => {}
        PixelPlacement::BodyEnd => {
            if let Some(handlers) = body.end_tag_handlers() {
                let state = Rc::clone(state);
                handlers.push(Box::new(move |end| {
                    if let Some(html) = state.borrow_mut().pixel.place(PixelPosition::BodyEnd) {
                        end.before(html, ContentType::Html);
                    }
                    Ok(())
                }));
            }
        }
    }
}

/// On text: the first `{{ses:openTracker}}` becomes the pixel (unless it is placed already),
/// and later ones are removed. Only in ordinary text: never in `<script>`, `<style>`,
/// `<textarea>` or `<title>`, whose text is not markup.
fn on_text(state: &Rc<RefCell<State>>, chunk: &mut TextChunk<'_>) {
    if chunk.text_type() != TextType::Data {
        return;
    }
    let mut guard = state.borrow_mut();
    let Pixel {
        html,
        placed,
        marker,
        placement,
        ..
    } = &mut guard.pixel;
    let omitted = *placement == PixelPlacement::Omitted;
    let replacement = marker.feed(chunk.as_str(), chunk.last_in_text_node(), |out| {
        if placed.is_none() && !omitted {
            *placed = Some(PixelPosition::Marker);
            out.push_str(html);
        }
    });
    if let Some(text) = replacement {
        chunk.set_str(text);
    }
}

/// At the end of the document: the pixel goes here if nothing placed it.
fn on_end(state: &Rc<RefCell<State>>, end: &mut DocumentEnd<'_>) {
    let mut guard = state.borrow_mut();
    let held = guard.pixel.marker.take_held();
    if !held.is_empty() {
        end.append(&held, ContentType::Html);
    }
    if let Some(html) = guard.pixel.place(PixelPosition::DocumentEnd) {
        end.append(html, ContentType::Html);
    }
}
