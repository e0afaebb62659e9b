//! The verdict: who made a request, how sure that is, and the signals that say so.
//!
//! In an event it sits under `mailtrack.verdict`:
//!
//! ```json
//! {"class":"machine_click","certainty":"certain","signals":["ua:curl"]}
//! {"class":"person","certainty":"probable","signals":[]}
//! ```
//!
//! - `person`: no signal of a machine or a proxy. Never `certain`: nothing proves a person.
//! - `proxy_open`: a real open fetched through a caching image proxy (Gmail, Yahoo). It
//!   counts, but only the first fetch of a message reaches us; later ones are the proxy's
//!   cache.
//! - `machine_open`: fetched by a machine whether or not the mail was read (Apple Mail
//!   Privacy Protection, a prefetcher, a scanner).
//! - `machine_click`: a link followed by a machine: a link scanner, a `HEAD`, a prefetch,
//!   an HTTP library or a headless browser.

use std::fmt;
use std::sync::Arc;

use crate::config::Certainty;

/// Who made the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// No sign of a machine.
    Person,
    /// A real open, through a caching image proxy.
    ProxyOpen,
    /// An open that says nothing about whether the mail was read.
    MachineOpen,
    /// A click no person made.
    MachineClick,
}

impl Class {
    /// Every class, in the order metrics list them.
    pub const ALL: [Class; 4] = [
        Class::Person,
        Class::ProxyOpen,
        Class::MachineOpen,
        Class::MachineClick,
    ];

    /// The word in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Person => "person",
            Class::ProxyOpen => "proxy_open",
            Class::MachineOpen => "machine_open",
            Class::MachineClick => "machine_click",
        }
    }

    /// Whether a machine made it (a proxy open is a person's, seen through a proxy).
    pub fn is_machine(self) -> bool {
        matches!(self, Class::MachineOpen | Class::MachineClick)
    }
}

/// One reason behind a verdict, as events name it: `ua:curl`, `list:microsoft_eop`,
/// `method:head`, `header:prefetch`, `burst`, `quick_after_send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A built-in signal, named by a constant.
    Fixed(&'static str),
    /// A list's match: `list:` and the list's name.
    List(Arc<str>),
}

impl Signal {
    /// The signal's name, as in events.
    pub fn as_str(&self) -> &str {
        match self {
            Signal::Fixed(name) => name,
            Signal::List(name) => name,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The classifier's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Who made it.
    pub class: Class,
    /// How sure: `certain` only when a signal that only machines give is behind it.
    pub certainty: Certainty,
    /// The signals that made it, in the order they were found; empty for a person.
    pub signals: Vec<Signal>,
}

impl Verdict {
    /// A person's: no signal.
    pub fn person() -> Verdict {
        Verdict {
            class: Class::Person,
            certainty: Certainty::Probable,
            signals: Vec::new(),
        }
    }

    /// The signals' names, for the event.
    pub fn signal_names(&self) -> Vec<&str> {
        self.signals.iter().map(Signal::as_str).collect()
    }
}
