//! Which protocol a connection speaks, and the byte stream it is then served over: the bytes
//! read to tell put back in front, every read counted against the connection's allowance,
//! and every write that must wait on the peer noted (see [`super::activity`]).

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::activity::Activity;

/// The HTTP/2 connection preface (RFC 9113, section 3.4), which a client with prior
/// knowledge sends first. A connection whose first bytes are anything else is HTTP/1.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection speaks.
pub(crate) enum Protocol {
    Http1,
    Http2,
}

/// Reads a connection's first bytes until they depart from the HTTP/2 preface or complete it,
/// and hands back `io` with those bytes put back in front. A connection closed at once is
/// HTTP/1's to answer (hyper closes it quietly).
pub(crate) async fn detect<I: AsyncRead + Unpin>(
    mut io: I,
    activity: Arc<Activity>,
) -> io::Result<(Protocol, Rewind<I>)> {
    let mut prefix = [0; H2_PREFACE.len()];
    let mut filled = 0;
    let protocol = loop {
        if filled == prefix.len() {
            break Protocol::Http2;
        }
        let n = io.read(&mut prefix[filled..]).await?;
        let preface_so_far = n > 0 && prefix[filled..filled + n] == H2_PREFACE[filled..filled + n];
        filled += n;
        if !preface_so_far {
            break Protocol::Http1;
        }
    };
    let rewind = Rewind {
        prefix,
        unread: 0..filled,
        io,
        allowance: activity.read_allowance(),
        activity,
        read: filled as u64,
        flooded: false,
        write_blocked: false,
    };
    Ok((protocol, rewind))
}

/// `io` with the bytes [`detect`] read from it put back in front, for hyper to read again.
///
/// It also keeps the connection's [`Activity`] up to date: past its read allowance it reads
/// no more (the connection is being closed as a flood), and it notes when a write starts and
/// stops waiting on the peer.
pub(crate) struct Rewind<I> {
    prefix: [u8; H2_PREFACE.len()],
    /// The part of `prefix` not yet read again.
    unread: Range<usize>,
    io: I,
    activity: Arc<Activity>,
    /// Bytes read from `io` so far.
    read: u64,
    /// The allowance when last asked: it only grows, so it is asked again only once `read`
    /// passes it.
    allowance: u64,
    flooded: bool,
    write_blocked: bool,
}

impl<I> Rewind<I> {
    /// Counts `n` bytes read; past the allowance, marks the connection a flood.
    fn count_read(&mut self, n: usize) {
        self.read += n as u64;
        if self.read > self.allowance {
            self.allowance = self.activity.read_allowance();
            if self.read > self.allowance {
                self.flooded = true;
                self.activity.flood();
            }
        }
    }

    /// Notes whether the latest write or flush had to wait for the peer.
    fn note_write<T>(&mut self, result: &Poll<T>) {
        let blocked = result.is_pending();
        if blocked != self.write_blocked {
            self.write_blocked = blocked;
            self.activity.write_blocked(blocked);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.flooded {
            // Read nothing more: the driver has seen the flood and closes the connection,
            // and until then only the GOAWAY is to be written. Nothing needs waking.
            return Poll::Pending;
        }
        if this.unread.is_empty() {
            let before = buf.filled().len();
            let result = Pin::new(&mut this.io).poll_read(cx, buf);
            if let Poll::Ready(Ok(())) = result {
                this.count_read(buf.filled().len() - before);
            }
            return result;
        }
        let n = this.unread.len().min(buf.remaining());
        let start = this.unread.start;
        buf.put_slice(&this.prefix[start..start + n]);
        this.unread.start += n;
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note_write(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.note_write(&result);
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
