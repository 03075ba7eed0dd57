//! What the administrator changes at run time through `PUT /system/config`, as OSCAR keeps
//! it in its additional-configuration ConfigMap: the image repositories services may pull
//! from. Kept as the document `cluster-settings` ([`crate::documents`]):
//! `<data_dir>/cluster-settings.json`, or shared by a cluster.

use crate::documents::{Document, DocumentStore};
use crate::stores::StoreError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// At most this many repositories are kept.
pub const MAX_REPOSITORIES: usize = 1000;
/// A repository prefix longer than this is refused.
pub const MAX_REPOSITORY_LEN: usize = 512;

/// The settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// An image must contain one of these to be deployed; empty allows every image.
    #[serde(default)]
    pub allowed_image_repositories: Vec<String>,
}

impl Settings {
    /// Whether `image` may be deployed: OSCAR's rule, the image reference containing one of
    /// the allowed repositories.
    pub fn check_image(&self, image: &str) -> Result<(), String> {
        let repositories = &self.allowed_image_repositories;
        if repositories.is_empty() || repositories.iter().any(|r| image.contains(r.as_str())) {
            return Ok(());
        }
        Err(format!(
            "image {image} is not allowed for pull on this cluster: allowed_image_repositories (GET /system/config) lists {}",
            repositories.join(", ")
        ))
    }

    /// Checks the bounds above.
    pub fn check(&self) -> Result<(), String> {
        let repositories = &self.allowed_image_repositories;
        if repositories.len() > MAX_REPOSITORIES {
            return Err(format!(
                "allowed_image_repositories lists {}; at most {MAX_REPOSITORIES} are kept",
                repositories.len()
            ));
        }
        match repositories
            .iter()
            .find(|r| r.trim().is_empty() || r.len() > MAX_REPOSITORY_LEN)
        {
            Some(bad) => Err(format!(
                "allowed_image_repositories has an entry of {} bytes; entries have 1 to {MAX_REPOSITORY_LEN}, not blank",
                bad.len()
            )),
            None => Ok(()),
        }
    }
}

/// The settings, in memory and in their store.
#[derive(Debug)]
pub struct ClusterSettings {
    document: Document<Settings>,
}

/// The settings' document name.
pub const DOCUMENT: &str = "cluster-settings";

impl ClusterSettings {
    #[cfg(test)]
    /// Loads `<data_dir>/cluster-settings.json` (none yet: the defaults).
    pub async fn open(data_dir: &std::path::Path) -> Result<Self, StoreError> {
        Self::open_in(Arc::new(crate::documents::LocalDocuments::new(data_dir))).await
    }

    /// Loads the settings from `store`.
    pub async fn open_in(store: Arc<dyn DocumentStore>) -> Result<Self, StoreError> {
        Ok(Self {
            document: Document::open(store, DOCUMENT).await?,
        })
    }

    /// The current settings.
    pub fn get(&self) -> Settings {
        self.document.read(Settings::clone)
    }

    /// Replaces the settings, stored before memory follows.
    pub async fn set(&self, settings: Settings) -> Result<(), StoreError> {
        self.document
            .update(|current| *current = settings.clone())
            .await
    }

    /// Applies another server's version.
    pub fn apply(&self, bytes: &[u8], revision: crate::documents::Revision) -> bool {
        self.document.apply(bytes, revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_checked_as_oscar_checks_them() {
        let open = Settings::default();
        assert!(open.check_image("anything:1").is_ok());
        let narrow = Settings {
            allowed_image_repositories: vec!["ghcr.io/grycap/".into(), "docker.io/library".into()],
        };
        assert!(narrow.check_image("ghcr.io/grycap/imagemagick:1").is_ok());
        assert!(narrow.check_image("docker.io/library/alpine").is_ok());
        let refused = narrow.check_image("quay.io/x/y").unwrap_err();
        assert!(refused.contains("not allowed"), "{refused}");
    }

    #[tokio::test]
    async fn settings_survive_a_reopen_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ClusterSettings::open(dir.path()).await.unwrap();
        assert_eq!(settings.get(), Settings::default());
        let narrow = Settings {
            allowed_image_repositories: vec!["ghcr.io/".into()],
        };
        settings.set(narrow.clone()).await.unwrap();
        assert_eq!(
            ClusterSettings::open(dir.path()).await.unwrap().get(),
            narrow
        );
        let blank = Settings {
            allowed_image_repositories: vec![" ".into()],
        };
        assert!(blank.check().is_err());
    }
}
