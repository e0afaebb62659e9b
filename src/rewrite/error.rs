//! Why a rewrite failed.
//!
//! A link that cannot be tracked is not an error: it is left as it is and reported with its
//! reason in the [`RewriteReport`](super::RewriteReport). An error means the message as a
//! whole could not be rewritten, and nothing written so far should be sent.

/// Why the message could not be rewritten.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The HTML could not be read from its source.
    #[error("reading the HTML: {0}")]
    Read(#[source] std::io::Error),
    /// The rewritten HTML could not be written to its destination.
    #[error("writing the rewritten HTML: {0}")]
    Write(#[source] std::io::Error),
    /// lol_html refused the markup. In practice this is markup whose parse depends on a tree
    /// the streaming parser does not keep (such as `<script>` inside `<select>` in foreign
    /// content): rather than guess, and perhaps rewrite a link inside a script, the rewrite
    /// stops. Fix the markup, or send the message untracked.
    #[error("the HTML cannot be rewritten safely: {0}")]
    Html(#[source] lol_html::errors::RewritingError),
    /// A write after the rewriter had already failed; its output is incomplete.
    #[error("the rewriter failed earlier; its output is incomplete, so start again")]
    AlreadyFailed,
}
