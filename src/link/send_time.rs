//! The send time that version 2 links carry: whole Unix seconds, written in base 36.
//!
//! Base 36 (`0-9a-z`, lower case) keeps every link short: six characters until
//! 2038-12-24T05:45:36Z (36^6 seconds), seven after, where decimal takes ten. Its alphabet is
//! letters and digits only, which no mail client or proxy rewrites.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The latest send time a link may carry: 9999-12-31T23:59:59Z.
///
/// Events write the send time in RFC 3339, whose years have four digits; a later time could
/// not be written there, so it is refused when signing and when decoding.
pub const MAX_SEND_TIME: u64 = 253_402_300_799;

/// The base-36 digits, in order.
const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Characters in the base-36 form of [`MAX_SEND_TIME`]: nothing longer is read.
const MAX_CHARS: usize = 8;

/// When a message was sent, at one-second resolution, between 1970 and the end of 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SendTime(u64);

/// Why a send time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendTimeError {
    /// Before 1970-01-01T00:00:00Z.
    #[error("send time is before 1970-01-01T00:00:00Z")]
    BeforeEpoch,
    /// After [`MAX_SEND_TIME`].
    #[error("send time is after 9999-12-31T23:59:59Z")]
    TooLate,
    /// Neither RFC 3339 nor a number of Unix seconds.
    #[error("send time {0:?} is neither RFC 3339 (2026-12-02T16:00:00Z) nor Unix seconds")]
    Unreadable(String),
}

impl SendTime {
    /// The current time, to the second.
    pub fn now() -> SendTime {
        // The clock is past 1970 and before 9999 on any machine that sends mail; a clock that
        // is not gets the nearest end rather than a panic.
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        SendTime(seconds.min(MAX_SEND_TIME))
    }

    /// The send time `seconds` after 1970-01-01T00:00:00Z.
    pub fn from_unix_seconds(seconds: u64) -> Result<SendTime, SendTimeError> {
        if seconds > MAX_SEND_TIME {
            return Err(SendTimeError::TooLate);
        }
        Ok(SendTime(seconds))
    }

    /// `time`, with anything below a second dropped.
    pub fn from_system_time(time: SystemTime) -> Result<SendTime, SendTimeError> {
        let since = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| SendTimeError::BeforeEpoch)?;
        SendTime::from_unix_seconds(since.as_secs())
    }

    /// Reads a send time as a sender gives it: RFC 3339 (`2026-12-02T16:00:00Z`, any offset,
    /// fractions of a second dropped) or a whole number of Unix seconds.
    pub fn parse(text: &str) -> Result<SendTime, SendTimeError> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let seconds = text.parse::<u64>().map_err(|_| SendTimeError::TooLate)?;
            return SendTime::from_unix_seconds(seconds);
        }
        let unreadable = || SendTimeError::Unreadable(text.to_owned());
        // humantime reads UTC only (`Z`); a numeric offset is read here and applied after.
        let (utc, offset) = split_offset(text).ok_or_else(unreadable)?;
        let utc = humantime::parse_rfc3339_weak(&format!("{utc}Z")).map_err(|_| unreadable())?;
        let seconds = utc
            .duration_since(UNIX_EPOCH)
            .map_err(|_| SendTimeError::BeforeEpoch)?
            .as_secs();
        let seconds = seconds
            .checked_add_signed(-offset)
            .ok_or(SendTimeError::BeforeEpoch)?;
        SendTime::from_unix_seconds(seconds)
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub fn unix_seconds(self) -> u64 {
        self.0
    }

    /// The send time as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        // At most MAX_SEND_TIME seconds, which every platform's SystemTime holds.
        UNIX_EPOCH + Duration::from_secs(self.0)
    }

    /// Whole seconds from the send time to `now`; zero when `now` is earlier (a clock skewed
    /// between the sender and the proxy).
    pub fn seconds_until(self, now: SystemTime) -> u64 {
        now.duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs().saturating_sub(self.0))
    }

    /// Appends the base-36 form, as the link carries it.
    pub(crate) fn write_base36(self, out: &mut String) {
        let mut digits = [0u8; 13];
        let mut at = digits.len();
        let mut rest = self.0;
        loop {
            at -= 1;
            digits[at] = DIGITS[(rest % 36) as usize];
            rest /= 36;
            if rest == 0 {
                break;
            }
        }
        for &digit in &digits[at..] {
            out.push(char::from(digit));
        }
    }

    /// Reads the base-36 form written by [`SendTime::write_base36`], and only that: lower case,
    /// no leading zero, no sign, at most [`MAX_SEND_TIME`].
    pub(crate) fn read_base36(text: &str) -> Option<SendTime> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_CHARS || (bytes.len() > 1 && bytes[0] == b'0') {
            return None;
        }
        let mut seconds = 0u64;
        for &b in bytes {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'z' => b - b'a' + 10,
                _ => return None,
            };
            // Eight digits are below 36^8 < 2^42: no overflow.
            seconds = seconds * 36 + u64::from(digit);
        }
        SendTime::from_unix_seconds(seconds).ok()
    }
}

/// Splits an RFC 3339 text into its date and time and its offset from UTC in seconds: `Z`
/// is 0, `+08:00` is 28,800. `None` when it has neither, since a time without its offset
/// could be any of 26 hours.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(utc) = text.strip_suffix(['Z', 'z']) {
        return Some((utc, 0));
    }
    let at = text.len().checked_sub(6)?;
    let (local, offset) = (text.get(..at)?, text.get(at..)?.as_bytes());
    let sign = match offset[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let two = |pair: &[u8]| -> Option<i64> {
        pair.iter().try_fold(0, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let (hours, minutes) = (two(&offset[1..3])?, two(&offset[4..6])?);
    (offset[3] == b':' && hours < 24 && minutes < 60)
        .then_some((local, sign * (hours * 3600 + minutes * 60)))
}

impl fmt::Display for SendTime {
    /// RFC 3339, UTC, whole seconds: `2026-12-02T16:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_seconds(self.to_system_time())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base36(seconds: u64) -> String {
        let mut out = String::new();
        SendTime(seconds).write_base36(&mut out);
        out
    }

    #[test]
    fn base36_round_trips_and_stays_short() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        // 2026-12-02T16:00:00Z: six characters, where decimal takes ten.
        assert_eq!(base36(1_796_227_200), "tpfds0");
        assert_eq!(base36(36u64.pow(6) - 1), "zzzzzz");
        assert_eq!(base36(36u64.pow(6)), "1000000");
        assert_eq!(base36(MAX_SEND_TIME), "38et6qnz");
        assert_eq!(base36(MAX_SEND_TIME).len(), MAX_CHARS);
        for seconds in [0, 1, 35, 36, 1_796_227_200, 36u64.pow(6), MAX_SEND_TIME] {
            assert_eq!(
                SendTime::read_base36(&base36(seconds)),
                Some(SendTime(seconds))
            );
        }
    }

    #[test]
    fn only_the_canonical_base36_form_reads() {
        for text in [
            "", "0tpfds0", "TPFDS0", "tpfDs0", "+1", "-1", "tp fd", "tpfd.0", "zzzzzzzz",
        ] {
            assert_eq!(SendTime::read_base36(text), None, "{text:?}");
        }
        // One past the latest time is refused, though it fits in eight characters.
        assert_eq!(SendTime::read_base36(&base36(MAX_SEND_TIME + 1)), None);
    }

    #[test]
    fn parses_rfc3339_and_unix_seconds() {
        let expected = SendTime(1_796_227_200);
        for text in [
            "1796227200",
            "2026-12-02T16:00:00Z",
            "2026-12-02T16:00:00.999Z",
            "2026-12-03T00:00:00+08:00",
            " 2026-12-02T16:00:00z ",
        ] {
            assert_eq!(SendTime::parse(text), Ok(expected), "{text:?}");
        }
        assert_eq!(expected.to_string(), "2026-12-02T16:00:00Z");
        assert!(matches!(
            SendTime::parse("2026-12-02 16:00"),
            Err(SendTimeError::Unreadable(_))
        ));
        assert!(matches!(
            SendTime::parse("2026-12-02T16:00:00"),
            Err(SendTimeError::Unreadable(_))
        ));
        assert!(matches!(
            SendTime::parse("-5"),
            Err(SendTimeError::Unreadable(_))
        ));
        assert_eq!(SendTime::parse("253402300800"), Err(SendTimeError::TooLate));
        assert_eq!(
            SendTime::parse("99999999999999999999999"),
            Err(SendTimeError::TooLate)
        );
        assert_eq!(
            SendTime::from_system_time(UNIX_EPOCH - Duration::from_secs(1)),
            Err(SendTimeError::BeforeEpoch)
        );
    }

    #[test]
    fn seconds_until_never_goes_negative() {
        let sent = SendTime(1_000);
        assert_eq!(
            sent.seconds_until(UNIX_EPOCH + Duration::from_secs(1_043)),
            43
        );
        assert_eq!(sent.seconds_until(UNIX_EPOCH + Duration::from_secs(10)), 0);
    }
}
