//! HTTP/2 written by hand, for the attack tests: frames and the few HPACK forms they need,
//! sent over a blocking socket exactly as an attacker would, with no library deciding for us.
#![allow(dead_code, unreachable_pub, missing_docs)] // Each test file uses a different part.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The client connection preface (RFC 9113, section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;

const END_STREAM_AND_HEADERS: u8 = 0x1 | 0x4;
const ACK: u8 = 0x1;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// One frame: its 9-byte header, then `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&length[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The preface, `SETTINGS_INITIAL_WINDOW_SIZE = window`, and the ACK of the server's SETTINGS
/// (sent ahead: the server's SETTINGS are never read).
pub fn opening(window: u32) -> Vec<u8> {
    let mut setting = SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes().to_vec();
    setting.extend_from_slice(&window.to_be_bytes());
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &setting));
    out.extend(frame(SETTINGS, ACK, 0, &[]));
    out
}

/// An HPACK integer with a `prefix`-bit prefix, its first byte or-ed with `first`.
fn integer(mut value: usize, prefix: u8, first: u8) -> Vec<u8> {
    let max = (1usize << prefix) - 1;
    if value < max {
        return vec![first | value as u8];
    }
    let mut out = vec![first | max as u8];
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
    out
}

/// A literal header field with incremental indexing, named by static-table `index`.
fn indexed_literal(index: usize, value: &[u8]) -> Vec<u8> {
    let mut out = integer(index, 6, 0x40);
    out.extend(integer(value.len(), 7, 0));
    out.extend_from_slice(value);
    out
}

/// `count` GET requests for `path` with `authority`, on streams 1, 3, 5…: the first puts
/// both into the HPACK table (`:path` at 63, `:authority` at 62), every later one names them
/// by index, so that each costs a few bytes. Both must fit the 4,096-byte table together.
pub fn indexed_requests(path: &str, authority: &str, count: u32) -> Vec<u8> {
    let method_get_scheme_http = [0x82, 0x86];
    let mut first = method_get_scheme_http.to_vec();
    first.extend(indexed_literal(4, path.as_bytes()));
    first.extend(indexed_literal(1, authority.as_bytes()));
    let mut later = method_get_scheme_http.to_vec();
    later.extend([0x80 | 63, 0x80 | 62]);
    let mut out = Vec::new();
    for n in 0..count {
        let block = if n == 0 { &first } else { &later };
        out.extend(frame(HEADERS, END_STREAM_AND_HEADERS, 1 + 2 * n, block));
    }
    out
}

/// A frame as read back: its type, stream and payload.
#[derive(Debug)]
pub struct ReadFrame {
    pub kind: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl ReadFrame {
    /// Whether it is a HEADERS frame whose block starts with `:status: 200` (HPACK's static
    /// entry 8, which every encoder uses for it).
    pub fn is_status_200(&self) -> bool {
        self.kind == HEADERS && self.payload.first() == Some(&0x88)
    }
}

/// Splits `bytes` into frames (a cut-off last frame is left out).
pub fn frames(bytes: &[u8]) -> Vec<ReadFrame> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let length = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        let stream = u32::from_be_bytes(bytes[at + 5..at + 9].try_into().unwrap()) & 0x7fff_ffff;
        if at + 9 + length > bytes.len() {
            break;
        }
        out.push(ReadFrame {
            kind: bytes[at + 3],
            stream,
            payload: bytes[at + 9..at + 9 + length].to_vec(),
        });
        at += 9 + length;
    }
    out
}

/// A raw connection to the server.
pub struct RawConnection {
    pub stream: TcpStream,
    /// Everything read from it so far.
    pub received: Vec<u8>,
}

impl RawConnection {
    pub fn open(addr: SocketAddr, first_bytes: &[u8]) -> RawConnection {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(first_bytes).unwrap();
        RawConnection {
            stream,
            received: Vec::new(),
        }
    }

    /// Reads until the server closes the connection, at most until `deadline`; returns
    /// whether it did close.
    pub fn read_to_close(&mut self, deadline: Instant) -> bool {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                // A reset is a close too: the server dropped it with bytes unread.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                Err(e) => panic!("reading from the server: {e}"),
            }
        }
    }

    /// The frames read so far.
    pub fn frames(&self) -> Vec<ReadFrame> {
        frames(&self.received)
    }
}

/// Writes `chunk` again and again until the server stops reading or closes, or `limit`
/// passes; returns the bytes written.
pub fn flood(stream: &mut TcpStream, chunk: &[u8], limit: Duration) -> u64 {
    let started = Instant::now();
    let mut written = 0;
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while started.elapsed() < limit {
        match stream.write(chunk) {
            Ok(n) => written += n as u64,
            // The server no longer reads: its buffers and ours are full. Keep pushing, as an
            // attacker would, until it closes.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    written
}
