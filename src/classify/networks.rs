//! Network lists: prefix tables of addresses that say who is asking.
//!
//! A list is a set of IPv4 and IPv6 prefixes in [`prefix_trie`]'s tries (a longest-prefix
//! trie per family; a lookup walks at most 32 or 128 bits). Lists come from:
//!
//! - Microsoft EOP's mail-flow ranges, built in ([`MICROSOFT_EOP`]);
//! - Apple's egress list, `prefix,country,region,city,` a line (about 287,000 lines at
//!   `mask-api.icloud.com/egress-ip-ranges.csv`; not shipped, configured by path);
//! - the user's own files: one prefix, or address, a line; anything after a comma is
//!   ignored, so Apple's format reads too; `#` starts a comment.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixSet;

use crate::config::{Certainty, ListKind};

/// Microsoft Exchange Online Protection's mail-flow ranges, from Microsoft's "Exchange
/// Online" URL and IP address ranges (ID 10, SMTP). Safe Links' clicks come from here; the
/// wider Exchange Online and Azure ranges carry real people's opens, so they are not listed.
pub const MICROSOFT_EOP: [&str; 6] = [
    "40.92.0.0/15",
    "40.107.0.0/16",
    "52.100.0.0/14",
    "104.47.0.0/17",
    "2a01:111:f400::/48",
    "2a01:111:f403::/48",
];

/// Why a list file was not used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The file could not be read.
    #[error("list {name:?} ({}): {source}", file.display())]
    Read {
        /// The list's name.
        name: String,
        /// Its file.
        file: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line is not a prefix or an address.
    #[error("list {name:?} ({}): line {line}: {text:?} is not an IP prefix or address", file.display())]
    Line {
        /// The list's name.
        name: String,
        /// Its file.
        file: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What it held (cut to 64 bytes).
        text: String,
    },
    /// The file holds no prefix: most likely a download cut short.
    #[error("list {name:?} ({}): no prefix in the file; an empty list is refused, as it is most likely a download cut short", file.display())]
    Empty {
        /// The list's name.
        name: String,
        /// Its file.
        file: PathBuf,
    },
}

/// One list: its prefixes, what they are, and how sure a match is.
#[derive(Debug)]
pub struct NetworkList {
    /// The list's name.
    pub name: Arc<str>,
    /// `list:NAME`, the signal a match gives.
    pub signal: Arc<str>,
    /// What its addresses are.
    pub kind: ListKind,
    /// How sure a match is.
    pub certainty: Certainty,
    v4: PrefixSet<Ipv4Net>,
    v6: PrefixSet<Ipv6Net>,
}

impl NetworkList {
    /// A list of `prefixes`.
    pub fn new(
        name: &str,
        kind: ListKind,
        certainty: Certainty,
        prefixes: impl IntoIterator<Item = IpNet>,
    ) -> NetworkList {
        let mut list = NetworkList {
            name: name.into(),
            signal: format!("list:{name}").into(),
            kind,
            certainty,
            v4: PrefixSet::new(),
            v6: PrefixSet::new(),
        };
        for prefix in prefixes {
            list.insert(prefix);
        }
        list
    }

    /// Microsoft EOP's ranges, a certain scanner list.
    pub fn microsoft_eop() -> NetworkList {
        // Constants checked by `tests::eop_ranges_match`.
        let prefixes = MICROSOFT_EOP
            .iter()
            .map(|p| p.parse().expect("a valid prefix"));
        NetworkList::new(
            "microsoft_eop",
            ListKind::Scanner,
            Certainty::Certain,
            prefixes,
        )
    }

    /// The list in `file`, read now, a line at a time: a 300,000-line list is never held
    /// whole in memory beside its tries.
    pub fn load(
        name: &str,
        file: &Path,
        kind: ListKind,
        certainty: Certainty,
    ) -> Result<NetworkList, ListError> {
        let read_error = |source| ListError::Read {
            name: name.to_owned(),
            file: file.to_owned(),
            source,
        };
        let reader = BufReader::new(File::open(file).map_err(read_error)?);
        let mut list = NetworkList::new(name, kind, certainty, []);
        for (number, line) in reader.lines().enumerate() {
            let line = line.map_err(read_error)?;
            match parse_line(&line) {
                Ok(None) => {}
                Ok(Some(prefix)) => list.insert(prefix),
                Err(text) => {
                    return Err(ListError::Line {
                        name: name.to_owned(),
                        file: file.to_owned(),
                        line: number + 1,
                        text,
                    })
                }
            }
        }
        if list.is_empty() {
            return Err(ListError::Empty {
                name: name.to_owned(),
                file: file.to_owned(),
            });
        }
        Ok(list)
    }

    fn insert(&mut self, prefix: IpNet) {
        match prefix.trunc() {
            IpNet::V4(net) => self.v4.insert(net),
            IpNet::V6(net) => self.v6.insert(net),
        };
    }

    /// Whether `ip` is in a prefix of the list.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.v4.get_spm(&Ipv4Net::from(v4)).is_some(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.v4.get_spm(&Ipv4Net::from(v4)).is_some(),
                None => self.v6.get_spm(&Ipv6Net::from(v6)).is_some(),
            },
        }
    }

    /// How many prefixes it holds.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// The bytes its tries hold, as `prefix_trie` counts them.
    pub fn mem_size(&self) -> usize {
        self.v4.mem_size() + self.v6.mem_size()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The prefixes of a list file's text, or the first bad line (from 1) and what it held.
pub fn parse_prefixes(text: &str) -> Result<Vec<IpNet>, (usize, String)> {
    let mut prefixes = Vec::new();
    for (number, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(prefix) => prefixes.extend(prefix),
            Err(text) => return Err((number + 1, text)),
        }
    }
    Ok(prefixes)
}

/// One line: its prefix (the first comma-separated field, an address as a /32 or /128),
/// nothing for a blank or comment line, or what the field held (cut to 64 bytes).
fn parse_line(line: &str) -> Result<Option<IpNet>, String> {
    let line = line.split('#').next().unwrap_or("");
    let field = line.split(',').next().unwrap_or("").trim();
    if field.is_empty() {
        return Ok(None);
    }
    let prefix = field
        .parse::<IpNet>()
        .or_else(|_| field.parse::<IpAddr>().map(IpNet::from));
    prefix.map(Some).map_err(|_| {
        let mut end = field.len().min(64);
        while !field.is_char_boundary(end) {
            end -= 1;
        }
        field[..end].to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn eop_ranges_match() {
        let eop = NetworkList::microsoft_eop();
        assert_eq!(eop.len(), 6);
        for inside in [
            "40.92.1.1",
            "40.93.255.255",
            "104.47.127.1",
            "2a01:111:f403::9",
        ] {
            assert!(eop.contains(ip(inside)), "{inside}");
        }
        for outside in ["40.94.0.1", "104.47.128.1", "2a01:111:f401::1", "52.96.0.1"] {
            assert!(!eop.contains(ip(outside)), "{outside}");
        }
        assert!(eop.contains(ip("::ffff:40.107.3.4")), "mapped IPv4 is IPv4");
    }

    #[test]
    fn apple_csv_and_plain_lines_parse() {
        let csv = "172.224.226.0/27,GB,GB-EN,London,\n2a02:26f7:b3c0:4000::/64,US,US-CA,Los Angeles,\n\n# a comment\n192.0.2.7\n";
        let prefixes = parse_prefixes(csv).unwrap();
        assert_eq!(prefixes.len(), 3);
        assert_eq!(prefixes[2], "192.0.2.7/32".parse::<IpNet>().unwrap());
        assert_eq!(
            parse_prefixes("10.0.0.0/8\nnot-an-ip,US\n"),
            Err((2, "not-an-ip".to_owned()))
        );
    }
}
