//! Reading an admin request's body whole, bounded in size and in time: a route gets its body
//! as one buffer, and no request can make the server hold more than `admin.max_body_bytes`
//! of it, or hold a connection open with a body that never finishes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body;

use super::error::AdminError;

/// How long a body may take to arrive: a megabyte over a slow VPN link takes seconds, and
/// 30 s bounds how long a client that promises a body and stalls holds an admin connection.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads `body` whole, refusing it as soon as it is known to pass `limit` bytes: at once when
/// its declared length (`Content-Length`) does, or when the bytes that arrive do.
pub async fn read_bounded<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, AdminError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = AdminError::BodyTooLarge { limit };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large);
    }
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
        Ok(Err(e)) => Err(AdminError::BodyRead(e.to_string())),
        Err(_) => Err(AdminError::BodyTimeout {
            seconds: timeout.as_secs(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::stream;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;

    use super::*;

    /// A body that arrives in `chunks` and declares no length, as a chunked upload does.
    fn chunked(
        chunks: &[&'static [u8]],
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
        let frames: Vec<_> = chunks
            .iter()
            .map(|chunk| Ok(Frame::data(Bytes::from_static(chunk))))
            .collect();
        StreamBody::new(stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = read_bounded(chunked(&[b"{\"a\":", b"1}"]), 7, BODY_READ_TIMEOUT).await;
        assert_eq!(body.unwrap(), Bytes::from_static(b"{\"a\":1}"));
        let empty = read_bounded(Full::new(Bytes::new()), 1, BODY_READ_TIMEOUT).await;
        assert!(empty.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_declared_or_not() {
        let declared = Full::new(Bytes::from_static(b"12345678"));
        let refused = read_bounded(declared, 7, BODY_READ_TIMEOUT).await;
        assert!(
            matches!(refused, Err(AdminError::BodyTooLarge { limit: 7 })),
            "{refused:?}"
        );
        let streamed = read_bounded(chunked(&[b"1234", b"5678"]), 7, BODY_READ_TIMEOUT).await;
        assert!(
            matches!(streamed, Err(AdminError::BodyTooLarge { limit: 7 })),
            "{streamed:?}"
        );
    }

    #[tokio::test]
    async fn a_body_that_stalls_times_out() {
        let stalled = StreamBody::new(stream::pending::<Result<Frame<Bytes>, Infallible>>());
        let refused = read_bounded(stalled, 7, Duration::from_millis(50)).await;
        assert!(
            matches!(refused, Err(AdminError::BodyTimeout { .. })),
            "{refused:?}"
        );
    }
}
