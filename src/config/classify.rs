//! `[classify]`: what `serve`'s classifier reads besides its built-in signals: Apple's egress
//! list, the user's own network lists, the burst window, and how soon after sending a click
//! is too soon for a person.
//!
//! The kinds and certainties a list may name live here, beside the config that names them;
//! the classifier (`crate::classify`) uses the same types.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::server::{check_name, Refusal};

/// How long a burst lasts: the "a second or two". Link scanners open every link of a
/// message within a few hundred milliseconds; a person reads between two clicks.
pub const DEFAULT_BURST_WINDOW: Duration = Duration::from_secs(2);

/// From which distinct link of one message, from one network, within the window, a click is
/// a burst's: the third. A person may middle-click two links into tabs within two seconds;
/// three distinct ones that fast is a scanner's pace.
pub const DEFAULT_BURST_LINKS: usize = 3;

/// A click this many seconds after sending, or sooner, is probably a scanner's: delivery
/// takes seconds, and a person must then see the mail, open it and read it. Scanners come
/// later too (mautic#16263: a median of 43 s), so this catches only the quickest of them;
/// it is kept low so that a person watching the inbox is not marked.
pub const DEFAULT_QUICK_CLICK_SECONDS: u64 = 10;

/// How often list files are checked for a change: a changed list is in use within this long,
/// and checking a few file times costs nothing at this rate.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// Whether Microsoft EOP's mail-flow ranges are used, when not configured: yes. They carry
/// Safe Links' clicks and no person's browsing.
pub const DEFAULT_MICROSOFT_EOP: bool = true;

/// The most lists a config may name: each one is a lookup per request.
pub const MAX_LISTS: usize = 32;

/// What the addresses of a network list are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// A link scanner or security gateway (Safe Links, Mimecast, Proofpoint …): its clicks
    /// and opens are a machine's.
    Scanner,
    /// A caching image proxy: its opens are real but only the first is seen; its clicks are
    /// a machine's.
    ImageProxy,
    /// Apple's Private Relay / Mail Privacy Protection egress: a bare `Mozilla/5.0` open from
    /// here is Apple's prefetch. Says nothing about clicks (Private Relay shares it).
    AppleEgress,
}

impl ListKind {
    /// The word used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Scanner => "scanner",
            ListKind::ImageProxy => "image_proxy",
            ListKind::AppleEgress => "apple_egress",
        }
    }

    fn parse(text: &str) -> Option<ListKind> {
        [
            ListKind::Scanner,
            ListKind::ImageProxy,
            ListKind::AppleEgress,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// How sure a signal, or a verdict, is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Certainty {
    /// Likely, but a person could look the same.
    Probable,
    /// Only a machine does this.
    Certain,
}

impl Certainty {
    /// `certain` or `probable`, as in the config and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Certainty::Probable => "probable",
            Certainty::Certain => "certain",
        }
    }

    fn parse(text: &str) -> Option<Certainty> {
        match text {
            "probable" => Some(Certainty::Probable),
            "certain" => Some(Certainty::Certain),
            _ => None,
        }
    }
}

/// Whether `serve` classifies, when not configured: yes. Off, events carry no verdict (the
/// benchmark's peer, and a way out should the classifier ever misbehave).
pub const DEFAULT_ENABLED: bool = true;

/// The validated `[classify]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyConfig {
    /// Whether `serve` labels opens and clicks at all.
    pub enabled: bool,
    /// Apple's egress list (`prefix,country,region,city,`), resolved against the config's
    /// folder; `None`: no Apple list, so no open is certain to be Apple's.
    pub apple_egress: Option<PathBuf>,
    /// Whether Microsoft EOP's ranges are a built-in scanner list.
    pub microsoft_eop: bool,
    /// The user's own lists.
    pub lists: Vec<ListConfig>,
    /// How long a burst lasts.
    pub burst_window: Duration,
    /// From which distinct link within the window a click is a burst's; 0 turns bursts off.
    pub burst_links: usize,
    /// A click this soon after sending is probably a machine's; 0 turns the signal off.
    pub quick_click_seconds: u64,
    /// How often list files are checked for a change; 0 turns watching off (SIGHUP still
    /// reloads).
    pub watch_interval: Duration,
}

/// One `[[classify.list]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListConfig {
    /// Names it in signals (`list:NAME`), metrics and logs.
    pub name: String,
    /// One prefix per line (the first comma-separated field), `#` comments; resolved against
    /// the config's folder.
    pub file: PathBuf,
    /// What its addresses are.
    pub kind: ListKind,
    /// How sure a match is.
    pub certainty: Certainty,
}

impl Default for ClassifyConfig {
    fn default() -> ClassifyConfig {
        ClassifyConfig {
            enabled: DEFAULT_ENABLED,
            apple_egress: None,
            microsoft_eop: DEFAULT_MICROSOFT_EOP,
            lists: Vec::new(),
            burst_window: DEFAULT_BURST_WINDOW,
            burst_links: DEFAULT_BURST_LINKS,
            quick_click_seconds: DEFAULT_QUICK_CLICK_SECONDS,
            watch_interval: DEFAULT_WATCH_INTERVAL,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClassify {
    enabled: Option<bool>,
    apple_egress: Option<PathBuf>,
    microsoft_eop: Option<bool>,
    #[serde(default)]
    list: Vec<RawList>,
    burst_window_ms: Option<u64>,
    burst_links: Option<usize>,
    quick_click_seconds: Option<u64>,
    watch_interval: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    name: String,
    file: PathBuf,
    kind: String,
    certainty: Option<String>,
}

impl RawClassify {
    pub(super) fn validate(self, folder: &Path) -> Result<ClassifyConfig, Refusal> {
        let window_ms = self
            .burst_window_ms
            .unwrap_or(DEFAULT_BURST_WINDOW.as_millis() as u64);
        if !(1..=60_000).contains(&window_ms) {
            let message = format!("{window_ms} is not 1 to 60000 milliseconds");
            return Err(("classify.burst_window_ms", message));
        }
        if self.list.len() > MAX_LISTS {
            let message = format!("{} lists; at most {MAX_LISTS}", self.list.len());
            return Err(("classify.list", message));
        }
        let mut lists: Vec<ListConfig> = Vec::new();
        for raw in self.list {
            let list = raw.validate(folder)?;
            if lists.iter().any(|l| l.name == list.name) || reserved(&list.name) {
                let message = format!("{:?} is named twice, or is a built-in list", list.name);
                return Err(("classify.list.name", message));
            }
            lists.push(list);
        }
        Ok(ClassifyConfig {
            enabled: self.enabled.unwrap_or(DEFAULT_ENABLED),
            apple_egress: self.apple_egress.map(|file| folder.join(file)),
            microsoft_eop: self.microsoft_eop.unwrap_or(DEFAULT_MICROSOFT_EOP),
            lists,
            burst_window: Duration::from_millis(window_ms),
            burst_links: self.burst_links.unwrap_or(DEFAULT_BURST_LINKS),
            quick_click_seconds: self
                .quick_click_seconds
                .unwrap_or(DEFAULT_QUICK_CLICK_SECONDS),
            watch_interval: self
                .watch_interval
                .map_or(DEFAULT_WATCH_INTERVAL, Duration::from_secs),
        })
    }
}

/// The built-in lists' names, which a user list may not take.
fn reserved(name: &str) -> bool {
    name == "apple_egress" || name == "microsoft_eop"
}

impl RawList {
    fn validate(self, folder: &Path) -> Result<ListConfig, Refusal> {
        let name = self.name;
        check_name(&name, "classify.list.name")?;
        let Some(kind) = ListKind::parse(&self.kind) else {
            let message = format!(
                "list {name:?}: {:?} is not \"scanner\", \"image_proxy\" or \"apple_egress\"",
                self.kind
            );
            return Err(("classify.list.kind", message));
        };
        let certainty = match self.certainty.as_deref() {
            None => Certainty::Probable,
            Some(text) => Certainty::parse(text).ok_or_else(|| {
                let message = format!("list {name:?}: {text:?} is not \"certain\" or \"probable\"");
                ("classify.list.certainty", message)
            })?,
        };
        Ok(ListConfig {
            name,
            file: folder.join(self.file),
            kind,
            certainty,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<ClassifyConfig, String> {
        let raw: RawClassify = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.validate(Path::new("/etc/mailtrack"))
            .map_err(|(key, message)| format!("{key}: {message}"))
    }

    #[test]
    fn defaults_and_lists() {
        assert_eq!(validate("").unwrap(), ClassifyConfig::default());
        let config = validate(
            "apple_egress = \"egress.csv\"\nburst_window_ms = 1500\n\
             [[list]]\nname = \"mimecast\"\nfile = \"/var/lib/mimecast.txt\"\nkind = \"scanner\"\n\
             certainty = \"certain\"\n",
        )
        .unwrap();
        assert_eq!(
            config.apple_egress.as_deref(),
            Some(Path::new("/etc/mailtrack/egress.csv"))
        );
        assert_eq!(config.burst_window, Duration::from_millis(1500));
        assert_eq!(config.lists[0].kind, ListKind::Scanner);
        assert_eq!(config.lists[0].certainty, Certainty::Certain);
    }

    #[test]
    fn errors_name_the_key() {
        let list = |extra: &str| format!("[[list]]\nname = \"a\"\nfile = \"a\"\n{extra}");
        let err = validate(&list("kind = \"robot\"\n")).unwrap_err();
        assert!(err.starts_with("classify.list.kind: list \"a\""), "{err}");
        let err = validate(&list("kind = \"scanner\"\ncertainty = \"maybe\"\n")).unwrap_err();
        assert!(err.starts_with("classify.list.certainty:"), "{err}");
        let two = format!(
            "{}{}",
            list("kind = \"scanner\"\n"),
            list("kind = \"scanner\"\n")
        );
        let err = validate(&two).unwrap_err();
        assert!(err.starts_with("classify.list.name:"), "{err}");
        let err = validate("burst_window_ms = 0").unwrap_err();
        assert!(err.starts_with("classify.burst_window_ms:"), "{err}");
    }
}
