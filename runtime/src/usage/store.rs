//! Where the ledger's documents are kept ([`super::ledger::HourDoc`]): on one machine a file
//! per hour in `<data dir>/usage/` ([`LocalUsage`]), written atomically; in a cluster a key
//! per hour and server of a NATS key-value bucket whose entries age out with the retention
//! (`crate::cluster::usage`), which every server watches.

use super::ledger::HourDoc;
use crate::stores::{StoreError, blocking};
use std::path::{Path, PathBuf};

/// Where usage documents are kept.
#[async_trait::async_trait]
pub trait UsageStore: Send + Sync {
    /// This server's name in its documents.
    fn source(&self) -> String;
    /// Every document of hour `oldest_hour` or later.
    async fn load(&self, oldest_hour: u64) -> Result<Vec<HourDoc>, StoreError>;
    /// Stores (replaces) one of this server's documents.
    async fn save(&self, doc: &HourDoc) -> Result<(), StoreError>;
    /// Forgets documents of hours before `oldest_hour`.
    async fn prune(&self, oldest_hour: u64) -> Result<(), StoreError>;
    /// Documents other servers save, for a store shared with them; `None` otherwise.
    fn follow(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<HourDoc>> {
        None
    }
}

/// Documents as files `<hour>.json` in one folder; this server is their only writer.
pub struct LocalUsage {
    dir: PathBuf,
}

impl LocalUsage {
    /// Documents in `<data_dir>/usage`, made owner-only when missing.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("usage");
        crate::fsutil::create_private_dir(&dir)?;
        crate::fsutil::remove_stale_temporaries(&dir)?;
        Ok(Self { dir })
    }
}

/// The hour a document's file is of, from its name.
fn hour_of(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// Every document file's path and hour.
fn files(dir: &Path) -> Result<Vec<(PathBuf, u64)>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(hour) = hour_of(&path) {
            found.push((path, hour));
        }
    }
    Ok(found)
}

#[async_trait::async_trait]
impl UsageStore for LocalUsage {
    fn source(&self) -> String {
        "local".into()
    }

    async fn load(&self, oldest_hour: u64) -> Result<Vec<HourDoc>, StoreError> {
        let dir = self.dir.clone();
        blocking(move || {
            let mut docs = Vec::new();
            for (path, hour) in files(&dir)? {
                if hour < oldest_hour {
                    continue;
                }
                // A file this server wrote atomically does not tear; one that does not parse
                // was put there by hand, and is left for its author rather than lost.
                match serde_json::from_slice::<HourDoc>(&std::fs::read(&path)?) {
                    Ok(doc) if doc.hour == hour => docs.push(doc),
                    Ok(_) | Err(_) => tracing::warn!(
                        file = %path.display(),
                        "a usage file is not a usage document of its hour; it is left out"
                    ),
                }
            }
            Ok(docs)
        })
        .await
    }

    async fn save(&self, doc: &HourDoc) -> Result<(), StoreError> {
        let path = self.dir.join(format!("{}.json", doc.hour));
        let bytes = serde_json::to_vec(doc).map_err(std::io::Error::other)?;
        blocking(move || Ok(crate::fsutil::atomic_write(&path, &bytes)?)).await
    }

    async fn prune(&self, oldest_hour: u64) -> Result<(), StoreError> {
        let dir = self.dir.clone();
        blocking(move || {
            for (path, hour) in files(&dir)? {
                if hour < oldest_hour {
                    std::fs::remove_file(&path)?;
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::ledger::Row;
    use crate::usage::meters::{Channel, Totals};

    fn doc(hour: u64) -> HourDoc {
        HourDoc {
            hour,
            source: "local".into(),
            rows: vec![Row {
                minute: hour * 60,
                service: "a".into(),
                user: "alice".into(),
                channel: Channel::Sync,
                totals: Totals {
                    invocations: 2,
                    ..Totals::default()
                },
            }],
        }
    }

    #[tokio::test]
    async fn saves_loads_and_prunes_documents_by_hour() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalUsage::open(dir.path()).unwrap();
        store.save(&doc(10)).await.unwrap();
        store.save(&doc(11)).await.unwrap();
        std::fs::write(dir.path().join("usage/12.json"), b"not json").unwrap();
        let mut loaded = store.load(0).await.unwrap();
        loaded.sort_by_key(|d| d.hour);
        assert_eq!(loaded, vec![doc(10), doc(11)]);
        assert_eq!(store.load(11).await.unwrap(), vec![doc(11)]);
        store.prune(11).await.unwrap();
        assert!(!dir.path().join("usage/10.json").exists());
        assert!(dir.path().join("usage/11.json").exists());
    }
}
