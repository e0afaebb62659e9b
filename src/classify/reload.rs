//! The lists in use, and reloading them: on SIGHUP, and when a list file changes.
//!
//! The lists in use sit behind an [`ArcSwap`]: a request reads them without a lock, and a
//! reload swaps in a whole new set. A list that fails to load keeps its old version (and
//! the failure is logged); at start-up, when there is no old version, it is an error.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::config::{Certainty, ClassifyConfig, ListKind};

use super::networks::{ListError, NetworkList};

/// Every list in use.
#[derive(Debug, Default)]
pub struct NetworkLists {
    /// In config order: Apple's, the user's, then Microsoft EOP's.
    pub lists: Vec<Arc<NetworkList>>,
}

/// A list file: where it is, and the modification time of the version in use.
#[derive(Debug)]
struct Source {
    name: String,
    file: PathBuf,
    kind: ListKind,
    certainty: Certainty,
    loaded_at: Option<SystemTime>,
}

/// The lists in use and the files they come from.
#[derive(Debug)]
pub struct ListStore {
    current: ArcSwap<NetworkLists>,
    sources: Mutex<Vec<Source>>,
    microsoft_eop: Option<Arc<NetworkList>>,
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Lists read again.
    pub loaded: usize,
    /// Lists that failed and kept their old version.
    pub failed: usize,
}

impl ListStore {
    /// Loads every list `config` names. Any list that cannot be loaded is an error: there is
    /// no old version to keep.
    pub fn load(config: &ClassifyConfig) -> Result<ListStore, ListError> {
        let mut sources = Vec::new();
        if let Some(file) = &config.apple_egress {
            sources.push(Source {
                name: "apple_egress".to_owned(),
                file: file.clone(),
                kind: ListKind::AppleEgress,
                certainty: Certainty::Certain,
                loaded_at: None,
            });
        }
        sources.extend(config.lists.iter().map(|list| Source {
            name: list.name.clone(),
            file: list.file.clone(),
            kind: list.kind,
            certainty: list.certainty,
            loaded_at: None,
        }));
        let mut lists = Vec::with_capacity(sources.len() + 1);
        for source in &mut sources {
            source.loaded_at = modified(&source.file);
            lists.push(Arc::new(source.load()?));
        }
        let microsoft_eop = config
            .microsoft_eop
            .then(|| Arc::new(NetworkList::microsoft_eop()));
        lists.extend(microsoft_eop.clone());
        Ok(ListStore {
            current: ArcSwap::from_pointee(NetworkLists { lists }),
            sources: Mutex::new(sources),
            microsoft_eop,
        })
    }

    /// The built-in lists only: what a server uses whose lists could not be loaded.
    pub fn built_in(config: &ClassifyConfig) -> ListStore {
        let microsoft_eop = config
            .microsoft_eop
            .then(|| Arc::new(NetworkList::microsoft_eop()));
        let lists = microsoft_eop.clone().into_iter().collect();
        ListStore {
            current: ArcSwap::from_pointee(NetworkLists { lists }),
            sources: Mutex::new(Vec::new()),
            microsoft_eop,
        }
    }

    /// The lists in use now.
    pub fn current(&self) -> arc_swap::Guard<Arc<NetworkLists>> {
        self.current.load()
    }

    /// Reads again every list file (`all`, for SIGHUP) or only those whose modification
    /// time changed. A list that fails keeps its old version; the failure is logged.
    pub fn reload(&self, all: bool) -> Reloaded {
        // A poisoned lock means a reload panicked midway; the sources are still whole.
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current.load_full();
        let mut done = Reloaded::default();
        let mut lists = Vec::with_capacity(old.lists.len());
        for (index, source) in sources.iter_mut().enumerate() {
            let modified = modified(&source.file);
            let keep = &old.lists[index];
            if !all && modified == source.loaded_at {
                lists.push(Arc::clone(keep));
                continue;
            }
            match source.load() {
                Ok(list) => {
                    tracing::info!(list = %source.name, prefixes = list.len(), "list loaded");
                    source.loaded_at = modified;
                    done.loaded += 1;
                    lists.push(Arc::new(list));
                }
                Err(error) => {
                    // Not retried until the file changes again, so one bad file logs once.
                    source.loaded_at = modified;
                    done.failed += 1;
                    tracing::error!(%error, prefixes = keep.len(), "list reload failed; keeping the old one");
                    lists.push(Arc::clone(keep));
                }
            }
        }
        lists.extend(self.microsoft_eop.clone());
        if done.loaded > 0 {
            self.current.store(Arc::new(NetworkLists { lists }));
        }
        done
    }
}

impl Source {
    fn load(&self) -> Result<NetworkList, ListError> {
        NetworkList::load(&self.name, &self.file, self.kind, self.certainty)
    }
}

/// A file's modification time, or `None` when it cannot be read (then a reload tries it).
fn modified(file: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::config::ListConfig;

    fn config(file: PathBuf) -> ClassifyConfig {
        ClassifyConfig {
            lists: vec![ListConfig {
                name: "mine".into(),
                file,
                kind: ListKind::Scanner,
                certainty: Certainty::Probable,
            }],
            ..ClassifyConfig::default()
        }
    }

    fn contains(store: &ListStore, ip: &str) -> bool {
        let ip: IpAddr = ip.parse().unwrap();
        store.current().lists[0].contains(ip)
    }

    #[test]
    fn a_changed_file_reloads_and_a_bad_one_keeps_the_old_list() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("mine.txt");
        std::fs::write(&file, "192.0.2.0/24\n").unwrap();
        let store = ListStore::load(&config(file.clone())).unwrap();
        assert!(contains(&store, "192.0.2.9"));
        assert_eq!(store.current().lists.len(), 2, "mine and EOP");
        assert_eq!(store.reload(false), Reloaded::default(), "nothing changed");

        std::fs::write(&file, "198.51.100.0/24\n").unwrap();
        // A file time may not move within the filesystem's resolution: SIGHUP reads all.
        assert_eq!(store.reload(true).loaded, 1);
        assert!(contains(&store, "198.51.100.1") && !contains(&store, "192.0.2.9"));

        std::fs::write(&file, "198.51.100.0/24\ngarbage\n").unwrap();
        assert_eq!(
            store.reload(true),
            Reloaded {
                loaded: 0,
                failed: 1
            }
        );
        assert!(contains(&store, "198.51.100.1"), "the old list stays");

        std::fs::remove_file(&file).unwrap();
        assert_eq!(store.reload(true).failed, 1);
        assert!(contains(&store, "198.51.100.1"));
    }

    #[test]
    fn at_start_a_bad_list_is_an_error_naming_it() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("missing.txt");
        let err = ListStore::load(&config(file)).unwrap_err().to_string();
        assert!(err.starts_with("list \"mine\" ("), "{err}");
        let empty = folder.path().join("empty.txt");
        std::fs::write(&empty, "# nothing\n").unwrap();
        let err = ListStore::load(&config(empty)).unwrap_err().to_string();
        assert!(err.contains("no prefix"), "{err}");
    }
}
