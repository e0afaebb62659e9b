//! User-agent patterns, shipped as data (`user_agents.toml`, each pattern with its source),
//! matched in one pass over the header.
//!
//! `contains` patterns are one Aho-Corasick automaton, so a browser's 150-byte user agent is
//! scanned once however many there are (its prefilter skips most bytes); `prefix` and
//! `exact` ones are a comparison each, which fails on the first byte for a browser. An
//! overlapping search over all patterns cost a person's click 400 ns; this costs about 60.

use aho_corasick::{AhoCorasick, MatchKind};
use serde::Deserialize;

use crate::config::Certainty;

/// The shipped patterns.
pub const USER_AGENTS_TOML: &str = include_str!("user_agents.toml");

/// What a pattern makes a request of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Says nothing.
    None,
    /// A real open, through a caching image proxy (opens only).
    Proxy,
    /// A machine's.
    Machine,
}

/// How a pattern's text is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MatchRule {
    Exact,
    Prefix,
    Contains,
}

/// One pattern of the data file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// The signal's name without `ua:`.
    pub name: String,
    #[serde(rename = "match")]
    rule: MatchRule,
    /// What is matched.
    pub text: String,
    /// What it makes an open.
    pub open: Effect,
    /// What it makes a click.
    pub click: Effect,
    /// How sure.
    #[serde(deserialize_with = "certainty")]
    pub certainty: Certainty,
    /// Where the string is documented.
    pub source: String,
}

/// A pattern that matched, with its signal's name (`ua:NAME`).
#[derive(Debug, Clone, Copy)]
pub struct UserAgentMatch<'a> {
    /// The pattern.
    pub pattern: &'a Pattern,
    /// `ua:NAME`.
    pub signal: &'a str,
}

/// The patterns, ready to match.
#[derive(Debug)]
pub struct UserAgentPatterns {
    patterns: Vec<Pattern>,
    /// `ua:NAME` of each pattern, made once, so that a match allocates nothing.
    signals: Vec<String>,
    /// The `contains` patterns, by index into `patterns`.
    automaton: AhoCorasick,
    automaton_patterns: Vec<usize>,
    /// The `exact` and `prefix` patterns, by index into `patterns`.
    anchored: Vec<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternFile {
    pattern: Vec<Pattern>,
}

fn certainty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Certainty, D::Error> {
    match String::deserialize(d)?.as_str() {
        "certain" => Ok(Certainty::Certain),
        "probable" => Ok(Certainty::Probable),
        other => Err(serde::de::Error::custom(format!(
            "{other:?} is not \"certain\" or \"probable\""
        ))),
    }
}

impl UserAgentPatterns {
    /// The shipped patterns. `tests::shipped_patterns_load` checks the data, so this does
    /// not fail.
    pub fn shipped() -> &'static UserAgentPatterns {
        static SHIPPED: std::sync::OnceLock<UserAgentPatterns> = std::sync::OnceLock::new();
        SHIPPED.get_or_init(|| {
            UserAgentPatterns::parse(USER_AGENTS_TOML).expect("the shipped patterns are valid")
        })
    }

    /// Patterns from a data file's text.
    pub fn parse(text: &str) -> Result<UserAgentPatterns, String> {
        let file: PatternFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let patterns = file.pattern;
        let (automaton_patterns, anchored): (Vec<usize>, Vec<usize>) =
            (0..patterns.len()).partition(|&i| patterns[i].rule == MatchRule::Contains);
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(automaton_patterns.iter().map(|&i| &patterns[i].text))
            .map_err(|e| e.to_string())?;
        let signals = patterns.iter().map(|p| format!("ua:{}", p.name)).collect();
        Ok(UserAgentPatterns {
            patterns,
            signals,
            automaton,
            automaton_patterns,
            anchored,
        })
    }

    /// Every pattern.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Calls `found` with each pattern that `user_agent` matches.
    pub fn each_match<'a>(&'a self, user_agent: &str, mut found: impl FnMut(UserAgentMatch<'a>)) {
        let mut hit = |index: usize| {
            found(UserAgentMatch {
                pattern: &self.patterns[index],
                signal: &self.signals[index],
            })
        };
        // A browser's user agent starts with `M`, as only the exact `Mozilla/5.0…` patterns
        // do: comparing first bytes skips the other patterns without a call to `memcmp`
        // each, which cost a person's click more than the automaton's whole scan.
        let first = user_agent.as_bytes().first().copied();
        for &index in &self.anchored {
            let pattern = &self.patterns[index];
            if pattern.text.as_bytes().first().copied() != first {
                continue;
            }
            let matched = match pattern.rule {
                MatchRule::Exact => pattern.text == user_agent,
                _ => user_agent.starts_with(pattern.text.as_str()),
            };
            if matched {
                hit(index);
            }
        }
        // Non-overlapping: two `contains` patterns inside one another would both be named
        // only if they did not overlap; none of the shipped ones do.
        for m in self.automaton.find_iter(user_agent) {
            hit(self.automaton_patterns[m.pattern().as_usize()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(user_agent: &str) -> Vec<&'static str> {
        let mut names = Vec::new();
        let shipped: &'static UserAgentPatterns = UserAgentPatterns::shipped();
        shipped.each_match(user_agent, |m| names.push(m.signal));
        names
    }

    #[test]
    fn shipped_patterns_load() {
        let patterns = UserAgentPatterns::parse(USER_AGENTS_TOML).unwrap();
        assert!(patterns.patterns().len() >= 20);
        for pattern in patterns.patterns() {
            assert!(!pattern.source.is_empty(), "{} has a source", pattern.name);
            assert!(!pattern.text.is_empty());
            assert_ne!(
                pattern.click,
                Effect::Proxy,
                "{}: a click is never a proxy's",
                pattern.name
            );
        }
    }

    #[test]
    fn prefix_exact_and_contains() {
        assert_eq!(names("curl/8.5.0"), ["ua:curl"]);
        assert!(
            names("Mozilla/5.0 curl/8.5.0").is_empty(),
            "curl/ is a prefix"
        );
        assert_eq!(names("Mozilla/5.0"), ["ua:bare_mozilla"]);
        assert!(names("Mozilla/5.0 (X11; Linux x86_64)").is_empty());
        assert_eq!(
            names("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"),
            ["ua:google_image_proxy"]
        );
    }

    #[test]
    fn a_bad_file_says_why() {
        let err = UserAgentPatterns::parse("[[pattern]]\nname = \"x\"\n").unwrap_err();
        assert!(err.contains("missing field"), "{err}");
    }
}
