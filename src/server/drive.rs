//! Driving a served connection to its end: [`drive`] polls it, and tells it to close when it
//! has been idle too long, its answers have stalled, it floods, or the server shuts down
//! (see the `connection` module docs for the bounds, and [`super::activity`] for how a
//! connection's answers and reads are counted).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::activity::Activity;
use super::connection::CLOSE_LINGER;
use super::state::State;

/// Drives `connection` until it is over, telling it to close when it has been idle too long,
/// its answers have stalled, it floods, or the server shuts down; once told, it has
/// [`CLOSE_LINGER`] to finish, or at shutdown the grace period.
///
/// A poll loop rather than a `select!`: after every turn of the connection it looks at the
/// connection's [`Activity`] (a few loads, no lock), so that a flood is cut off, and answers
/// just begun are watched, at once rather than at the next deadline.
pub(crate) async fn drive(
    mut connection: Pin<Box<dyn HttpConnection>>,
    activity: &Activity,
    state: &State,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut shutdown = pin!(shutdown.changed());
    let mut timer = pin!(sleep_until(activity.deadline()));
    let mut watch = Watch::Idle;
    let mut closing = false;
    poll_fn(move |cx| loop {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return Poll::Ready(());
        }
        let mut close = None;
        if !closing {
            if shutdown.as_mut().poll(cx).is_ready() {
                close = Some(Close::Shutdown);
            } else if activity.flooded() {
                close = Some(Close::Flood);
            } else if watch == Watch::Idle && activity.needs_watching() {
                let check = Instant::now() + activity.check_interval();
                watch = Watch::Until(check);
                if check < timer.deadline() {
                    timer.as_mut().reset(check);
                }
            }
        }
        if close.is_none() {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if closing {
                return Poll::Ready(());
            }
            close = watch.check(activity, Instant::now());
            if close.is_none() {
                timer.as_mut().reset(watch.next_deadline(activity));
            }
        }
        if let Some(close) = close {
            if let Some(reason) = close.reason() {
                state.shared().metrics.connection_closed(reason);
                tracing::debug!(reason, "closing a connection");
            }
            connection.as_mut().close();
            closing = true;
            // At shutdown the accept loop's drain bounds what is left, by `shutdown_grace`.
            let linger = match close {
                Close::Shutdown => state.limits().shutdown_grace,
                Close::Idle | Close::Flood | Close::Stalled => CLOSE_LINGER,
            };
            timer.as_mut().reset(Instant::now() + linger);
        }
        // Round again: a connection told to close must be polled to start closing, and a
        // timer just reset must be polled to wake this task.
    })
    .await
}

/// Why [`drive`] tells a connection to close.
#[derive(Clone, Copy)]
enum Close {
    /// No request within the idle (or first request's) deadline.
    Idle,
    /// The server is shutting down.
    Shutdown,
    /// It read past its allowance.
    Flood,
    /// An answer waited `answer_timeout` for the peer.
    Stalled,
}

impl Close {
    /// The reason `connections_closed_total` counts it under, for the closes a client
    /// caused.
    fn reason(self) -> Option<&'static str> {
        match self {
            Close::Idle | Close::Shutdown => None,
            Close::Flood => Some("flood"),
            Close::Stalled => Some("stalled"),
        }
    }
}

/// Whether [`drive`] is checking a connection's answers, and when next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// No answer was in flight at the last look.
    Idle,
    /// Answers are in flight: check them at this instant.
    Until(Instant),
}

impl Watch {
    /// At a wake-up: whether the connection is to be closed, as stalled or idle.
    fn check(&mut self, activity: &Activity, now: Instant) -> Option<Close> {
        if let Watch::Until(at) = *self {
            if now >= at {
                if activity.stalled(now) {
                    return Some(Close::Stalled);
                }
                *self = match activity.needs_watching() {
                    true => Watch::Until(now + activity.check_interval()),
                    false => Watch::Idle,
                };
            }
        }
        (activity.deadline() <= now).then_some(Close::Idle)
    }

    /// When to wake next: the idle deadline, or the next check if that is sooner.
    fn next_deadline(&self, activity: &Activity) -> Instant {
        match *self {
            Watch::Idle => activity.deadline(),
            Watch::Until(at) => at.min(activity.deadline()),
        }
    }
}

/// An HTTP/1 or HTTP/2 connection being served, as [`drive`] sees it.
pub(crate) trait HttpConnection: Future<Output = hyper::Result<()>> + Send {
    /// Asks it to close once the requests in flight are answered: HTTP/1 `Connection:
    /// close`, HTTP/2 `GOAWAY`.
    fn close(self: Pin<&mut Self>);
}
