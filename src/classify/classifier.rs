//! The classifier: reads a request's signals and makes its verdict.
//!
//! Every signal says "machine" or "proxy" (with a certainty), or nothing:
//!
//! - `method:head`: a `HEAD` (certain): browsers follow links and load images with `GET`.
//! - `header:prefetch`: `Sec-Purpose`/`Purpose`/`X-Purpose`/`X-Moz` saying prefetch
//!   (certain): the browser fetched it before anyone clicked.
//! - `ua:…`: a user-agent pattern ([`super::user_agents`]); `ua:empty` for no user agent
//!   (probable).
//! - `list:…`: the address is in a network list ([`super::networks`]). An `apple_egress`
//!   match says something only with a bare `Mozilla/5.0` open, which it makes certain.
//! - `burst` (clicks, probable): see [`super::burst`].
//! - `quick_after_send` (clicks, probable): the click came within `quick_click_seconds` of
//!   the send time.
//!
//! Any machine signal makes a machine's verdict; else any proxy signal a proxy open; else a
//! person. The verdict is certain when a certain signal of its class is behind it.

use std::sync::Arc;

use crate::config::{Certainty, ClassifyConfig, ListKind};
use crate::link::LinkKind;

use super::burst::BurstDetector;
use super::facts::RequestFacts;
use super::networks::ListError;
use super::reload::{ListStore, Reloaded};
use super::user_agents::{Effect, UserAgentPatterns};
use super::verdict::{Class, Signal, Verdict};

/// The signal of a `HEAD`.
pub const SIGNAL_HEAD: &str = "method:head";
/// The signal of a prefetch header.
pub const SIGNAL_PREFETCH: &str = "header:prefetch";
/// The signal of an empty `User-Agent`.
pub const SIGNAL_EMPTY_USER_AGENT: &str = "ua:empty";
/// The signal of a burst.
pub const SIGNAL_BURST: &str = "burst";
/// The signal of a click soon after sending.
pub const SIGNAL_QUICK: &str = "quick_after_send";

/// People, proxies and machines: the signals and their lists.
#[derive(Debug)]
pub struct Classifier {
    user_agents: &'static UserAgentPatterns,
    lists: ListStore,
    bursts: BurstDetector,
    quick_click_seconds: u64,
}

/// The signals found so far, and the strongest certainty each class has.
#[derive(Default)]
struct Tally {
    machine: Option<Certainty>,
    proxy: Option<Certainty>,
    signals: Vec<Signal>,
}

impl Tally {
    fn add(&mut self, effect: Effect, certainty: Certainty, signal: Signal) {
        let class = match effect {
            Effect::None => return,
            Effect::Machine => &mut self.machine,
            Effect::Proxy => &mut self.proxy,
        };
        *class = Some(class.map_or(certainty, |c| c.max(certainty)));
        self.signals.push(signal);
    }
}

impl Classifier {
    /// A classifier with every list `config` names, loaded now.
    pub fn load(config: &ClassifyConfig) -> Result<Classifier, ListError> {
        Ok(Classifier::with_lists(config, ListStore::load(config)?))
    }

    /// A classifier with the built-in signals and lists only, none read from files.
    pub fn built_in(config: &ClassifyConfig) -> Classifier {
        Classifier::with_lists(config, ListStore::built_in(config))
    }

    fn with_lists(config: &ClassifyConfig, lists: ListStore) -> Classifier {
        Classifier {
            user_agents: UserAgentPatterns::shipped(),
            lists,
            bursts: BurstDetector::new(config.burst_window, config.burst_links),
            quick_click_seconds: config.quick_click_seconds,
        }
    }

    /// Reads the list files again: all of them (`all`, for SIGHUP) or the changed ones.
    pub fn reload(&self, all: bool) -> Reloaded {
        self.lists.reload(all)
    }

    /// The verdict for one verified open or click. Never fails and never waits on anything
    /// but the burst table's shard lock, held for a few comparisons.
    pub fn classify(&self, request: &RequestFacts<'_>) -> Verdict {
        let open = request.kind == LinkKind::Open;
        let machine = Effect::Machine;
        let mut tally = Tally::default();
        if request.method.eq_ignore_ascii_case("HEAD") {
            tally.add(machine, Certainty::Certain, Signal::Fixed(SIGNAL_HEAD));
        }
        if request.prefetch {
            tally.add(machine, Certainty::Certain, Signal::Fixed(SIGNAL_PREFETCH));
        }
        let mut bare_mozilla = false;
        if request.user_agent.is_empty() {
            let signal = Signal::Fixed(SIGNAL_EMPTY_USER_AGENT);
            tally.add(machine, Certainty::Probable, signal);
        }
        let user_agents = self.user_agents;
        user_agents.each_match(request.user_agent, |found| {
            let pattern = found.pattern;
            bare_mozilla |= pattern.name == "bare_mozilla";
            let effect = if open { pattern.open } else { pattern.click };
            tally.add(effect, pattern.certainty, Signal::Fixed(found.signal));
        });
        for list in &self.lists.current().lists {
            // Apple's list says something only of a bare `Mozilla/5.0` open, so only then is
            // it looked up: a lookup in its 300,000 prefixes is a walk of cache misses that
            // cost every click more than the rest of the classifier.
            let says_nothing = list.kind == ListKind::AppleEgress && !(open && bare_mozilla);
            if says_nothing || !list.contains(request.client_ip) {
                continue;
            }
            let effect = match (list.kind, open) {
                (ListKind::Scanner, _) | (ListKind::ImageProxy, false) => Effect::Machine,
                (ListKind::ImageProxy, true) => Effect::Proxy,
                // Apple's egress is also iCloud Private Relay's: people browse from it.
                (ListKind::AppleEgress, true) if bare_mozilla => Effect::Machine,
                (ListKind::AppleEgress, _) => Effect::None,
            };
            tally.add(
                effect,
                list.certainty,
                Signal::List(Arc::clone(&list.signal)),
            );
        }
        if !open {
            self.click_signals(request, &mut tally);
        }
        verdict(open, tally)
    }

    /// The signals only clicks have: bursts and the time since sending.
    fn click_signals(&self, request: &RequestFacts<'_>, tally: &mut Tally) {
        let burst = self.bursts.click(
            request.message_id,
            request.client_ip,
            request.target,
            request.received,
        );
        if burst {
            tally.add(
                Effect::Machine,
                Certainty::Probable,
                Signal::Fixed(SIGNAL_BURST),
            );
        }
        let quick = request
            .seconds_since_send
            .is_some_and(|seconds| seconds <= self.quick_click_seconds);
        if quick && self.quick_click_seconds > 0 {
            tally.add(
                Effect::Machine,
                Certainty::Probable,
                Signal::Fixed(SIGNAL_QUICK),
            );
        }
    }
}

fn verdict(open: bool, tally: Tally) -> Verdict {
    let (class, certainty) = match (tally.machine, tally.proxy) {
        (Some(certainty), _) if open => (Class::MachineOpen, certainty),
        (Some(certainty), _) => (Class::MachineClick, certainty),
        (None, Some(certainty)) if open => (Class::ProxyOpen, certainty),
        // A click through a proxy is no person's: the data gives no such pattern.
        (None, Some(certainty)) => (Class::MachineClick, certainty),
        (None, None) => return Verdict::person(),
    };
    Verdict {
        class,
        certainty,
        signals: tally.signals,
    }
}
