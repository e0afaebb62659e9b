//! What one connection has done, as far as its driver (`drive::drive`) must know to hold
//! it to its bounds: when it last started a request, which answers it has begun and not yet
//! handed over, how many bytes it has read, and whether a write has been waiting on the peer.
//!
//! An answer is *in flight* from the moment its request is taken until hyper lets go of its
//! body: taken whole into its write buffer (HTTP/1), or handed to HTTP/2 once the peer's
//! window lets it go out. A peer that advertises a zero window keeps answers in flight, and
//! with them a stream, a task and a body each; a peer that does not read its socket keeps a
//! write waiting, which is noted apart. [`Activity::stalled`] finds the connection whose
//! answers or writes have waited [`Limits::answer_timeout`], so that it is closed.
//!
//! Answers are counted in [`ANSWER_BUCKETS`] buckets, one of them taking new answers at a
//! time; each check moves on to the next. A bucket comes round again after `answer_timeout`,
//! so an answer still in it then has waited at least that long: no per-answer clock, no list,
//! two counters touched per answer.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::state::Limits;

/// Bytes a connection may read before its requests count: the TLS-less preface, settings and
/// window updates of HTTP/2 take a few hundred, one HTTP/1 head at most 8 KiB. A megabyte is
/// over a hundred times what any real client sends before its first answer, and a flood of
/// 13-byte `WINDOW_UPDATE` frames still reaches it within milliseconds.
pub const FLOOD_BASE_BYTES: u64 = 1024 * 1024;

/// Bytes each request a connection makes adds to what it may read: eight times the largest
/// request head (8 KiB), so that HTTP/2's control frames (pings, window updates, priorities)
/// and the odd ignored request body fit many times over beside every real request.
pub const FLOOD_BYTES_PER_REQUEST: u64 = 64 * 1024;

/// How many buckets answers are counted in: a bucket is checked again `ANSWER_BUCKETS - 1`
/// checks after it stopped taking answers, so a stalled answer is found between
/// `answer_timeout` and a third more (one check interval) after it began.
pub const ANSWER_BUCKETS: usize = 4;

/// A connection's activity, shared by its driver, its service, its answers' bodies and its
/// byte stream.
pub(crate) struct Activity {
    accepted: Instant,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    answer_timeout: Duration,
    /// Milliseconds from `accepted` to the latest request, or `NONE` before the first.
    last_request_ms: AtomicU64,
    /// Answers begun, per bucket; they only grow, and their sum is the requests made.
    begun: [AtomicU64; ANSWER_BUCKETS],
    /// Answers handed over or dropped, per bucket.
    finished: [AtomicU64; ANSWER_BUCKETS],
    /// The bucket new answers are counted in; only [`Activity::stalled`] moves it.
    current: AtomicUsize,
    /// Set once the connection has read far more than its requests need.
    flooded: AtomicBool,
    /// Milliseconds from `accepted` to when a write began waiting on the peer, or `NONE`.
    write_blocked_ms: AtomicU64,
}

impl Activity {
    const NONE: u64 = u64::MAX;

    pub(crate) fn new(accepted: Instant, limits: &Limits) -> Activity {
        Activity {
            accepted,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            answer_timeout: limits.answer_timeout,
            last_request_ms: AtomicU64::new(Activity::NONE),
            begun: Default::default(),
            finished: Default::default(),
            current: AtomicUsize::new(0),
            flooded: AtomicBool::new(false),
            write_blocked_ms: AtomicU64::new(Activity::NONE),
        }
    }

    /// Notes a request taken and its answer begun; the answer is in flight until the ticket
    /// is dropped.
    pub(crate) fn begin_answer(self: &Arc<Self>) -> AnswerTicket {
        self.last_request_ms
            .store(self.millis(Instant::now()), Ordering::Relaxed);
        let bucket = self.current.load(Ordering::Relaxed);
        self.begun[bucket].fetch_add(1, Ordering::Release);
        AnswerTicket {
            activity: Arc::clone(self),
            bucket,
        }
    }

    /// When the connection is to be closed as idle if nothing happens before then.
    pub(crate) fn deadline(&self) -> Instant {
        match self.last_request_ms.load(Ordering::Relaxed) {
            Activity::NONE => self.accepted + self.header_read_timeout,
            ms => self.accepted + Duration::from_millis(ms) + self.idle_timeout,
        }
    }

    /// How often [`Activity::stalled`] is to be asked while [`Activity::needs_watching`].
    pub(crate) fn check_interval(&self) -> Duration {
        self.answer_timeout / (ANSWER_BUCKETS as u32 - 1)
    }

    /// Whether answers are in flight or a write waits on the peer, so that the driver checks
    /// every [`Activity::check_interval`].
    pub(crate) fn needs_watching(&self) -> bool {
        (0..ANSWER_BUCKETS).any(|bucket| self.in_flight(bucket) > 0)
            || self.write_blocked_ms.load(Ordering::Relaxed) != Activity::NONE
    }

    /// Whether an answer has been in flight, or a write has waited, for `answer_timeout`.
    /// Called every [`Activity::check_interval`] while [`Activity::needs_watching`]: each
    /// call moves new answers on to the next bucket, the one that stopped taking answers
    /// `ANSWER_BUCKETS - 1` calls ago.
    pub(crate) fn stalled(&self, now: Instant) -> bool {
        let write_blocked = match self.write_blocked_ms.load(Ordering::Relaxed) {
            Activity::NONE => false,
            ms => now >= self.accepted + Duration::from_millis(ms) + self.answer_timeout,
        };
        let next = (self.current.load(Ordering::Relaxed) + 1) % ANSWER_BUCKETS;
        if self.in_flight(next) > 0 {
            return true;
        }
        self.current.store(next, Ordering::Relaxed);
        write_blocked
    }

    /// The bytes the connection may have read by now: see [`FLOOD_BASE_BYTES`].
    pub(crate) fn read_allowance(&self) -> u64 {
        let requests: u64 = self
            .begun
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum();
        FLOOD_BASE_BYTES.saturating_add(requests.saturating_mul(FLOOD_BYTES_PER_REQUEST))
    }

    /// Notes that the connection read past its [`Activity::read_allowance`].
    pub(crate) fn flood(&self) {
        self.flooded.store(true, Ordering::Relaxed);
    }

    pub(crate) fn flooded(&self) -> bool {
        self.flooded.load(Ordering::Relaxed)
    }

    /// Notes that writes began (`true`) or stopped (`false`) waiting on the peer.
    pub(crate) fn write_blocked(&self, blocked: bool) {
        let ms = match blocked {
            true => self.millis(Instant::now()),
            false => Activity::NONE,
        };
        self.write_blocked_ms.store(ms, Ordering::Relaxed);
    }

    fn in_flight(&self, bucket: usize) -> u64 {
        // `finished` first: an answer is begun before it finishes (Release, then Acquire
        // here), so the `begun` read after it counts every answer `finished` does.
        let finished = self.finished[bucket].load(Ordering::Acquire);
        let begun = self.begun[bucket].load(Ordering::Acquire);
        begun.saturating_sub(finished)
    }

    fn millis(&self, at: Instant) -> u64 {
        let ms = at.saturating_duration_since(self.accepted).as_millis();
        u64::try_from(ms).unwrap_or(Activity::NONE - 1)
    }
}

/// One answer in flight; dropping it (with the answer's body) finishes the answer.
pub(crate) struct AnswerTicket {
    activity: Arc<Activity>,
    bucket: usize,
}

impl Drop for AnswerTicket {
    fn drop(&mut self) {
        self.activity.finished[self.bucket].fetch_add(1, Ordering::Release);
    }
}

/// An answer's body, holding its [`AnswerTicket`]: hyper drops the body once it has handed
/// the last of it over, or when the connection or stream is gone.
pub(crate) struct AnswerBody {
    body: Full<Bytes>,
    _ticket: AnswerTicket,
}

impl AnswerBody {
    pub(crate) fn new(body: Full<Bytes>, ticket: AnswerTicket) -> AnswerBody {
        AnswerBody {
            body,
            _ticket: ticket,
        }
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(answer_timeout: Duration) -> Arc<Activity> {
        let limits = Limits {
            max_connections: 1,
            max_connections_per_ip: 1,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            answer_timeout,
            shutdown_grace: Duration::from_secs(1),
        };
        Arc::new(Activity::new(Instant::now(), &limits))
    }

    #[test]
    fn an_answer_in_flight_stalls_only_once_its_bucket_comes_round() {
        let activity = activity(Duration::from_secs(3));
        let interval = activity.check_interval();
        assert_eq!(interval, Duration::from_secs(1));
        let stuck = activity.begin_answer();
        let mut now = Instant::now();
        for _ in 0..ANSWER_BUCKETS - 1 {
            assert!(activity.needs_watching());
            now += interval;
            assert!(!activity.stalled(now), "not before answer_timeout");
            // Answers that come and go meanwhile change nothing.
            drop(activity.begin_answer());
        }
        now += interval;
        assert!(activity.stalled(now), "answer_timeout after it began");
        drop(stuck);
        assert!(!activity.needs_watching());
        assert!(!activity.stalled(now + interval));
    }

    #[test]
    fn answers_that_finish_never_stall() {
        let activity = activity(Duration::from_secs(3));
        let mut now = Instant::now();
        let mut held = activity.begin_answer();
        for _ in 0..20 {
            now += activity.check_interval();
            assert!(!activity.stalled(now));
            // Each answer is taken by the next check, and another has begun by then: the
            // connection is never without an answer in flight.
            let next = activity.begin_answer();
            drop(std::mem::replace(&mut held, next));
        }
        drop(held);
        assert!(!activity.needs_watching());
    }

    #[test]
    fn a_write_waiting_answer_timeout_stalls() {
        let activity = activity(Duration::from_secs(3));
        activity.write_blocked(true);
        assert!(activity.needs_watching());
        let now = Instant::now();
        assert!(!activity.stalled(now + Duration::from_secs(1)));
        assert!(activity.stalled(now + Duration::from_secs(4)));
        activity.write_blocked(false);
        assert!(!activity.needs_watching());
        assert!(!activity.stalled(now + Duration::from_secs(5)));
    }

    #[test]
    fn each_request_adds_to_the_read_allowance() {
        let activity = activity(Duration::from_secs(3));
        assert_eq!(activity.read_allowance(), FLOOD_BASE_BYTES);
        let _answers = [activity.begin_answer(), activity.begin_answer()];
        assert_eq!(
            activity.read_allowance(),
            FLOOD_BASE_BYTES + 2 * FLOOD_BYTES_PER_REQUEST
        );
        assert!(!activity.flooded());
        activity.flood();
        assert!(activity.flooded());
    }
}
