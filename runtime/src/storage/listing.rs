//! Object listings of the embedded store, paged as S3 pages them: at most 1,000 keys a page,
//! resumed after `start-after` or a continuation token, with prefix and delimiter.
//!
//! Objects are files under the bucket's folder, a key's `/`s its folders. Visiting each
//! folder's entries sorted by name (a folder's name with `/` after it) yields keys in S3's
//! order, so a page is one walk that skips every folder that lies wholly before the resume
//! point or outside the prefix, and stops once the page is full: a page costs the folders on
//! its way and its own keys (each listed object is `stat`ed), not the whole bucket. A folder
//! on the way is read and sorted whole, though: listing a flat folder of N objects page by
//! page reads it N / 1,000 times (20,000 objects: 20 reads of 20,000 names, tens of
//! milliseconds each), which keys spread over folders avoid.
//!
//! Objects and folders removed while a page is listed are left out of it, as S3 leaves out
//! keys deleted before it reads them.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Most keys a page holds, whatever the client asks (S3's own cap).
pub const MAX_KEYS: usize = 1000;

/// What a page asks for.
#[derive(Debug, Default, Clone, Copy)]
pub struct Query<'a> {
    /// Only keys starting with it.
    pub prefix: &'a str,
    /// Keys with it after the prefix are rolled up into common prefixes.
    pub delimiter: Option<&'a str>,
    /// Only keys (and common prefixes) after it.
    pub after: Option<&'a str>,
    /// Most entries (objects and common prefixes together), capped at [`MAX_KEYS`].
    pub max_keys: usize,
}

/// A listed object.
#[derive(Debug, PartialEq)]
pub struct Object {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// One page.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    /// Objects, in key order.
    pub objects: Vec<Object>,
    /// Common prefixes, in order.
    pub prefixes: Vec<String>,
    /// Whether more entries follow; then `next` is where the next page resumes.
    pub truncated: bool,
    /// The last entry of this page, when truncated.
    pub next: Option<String>,
}

/// An entry of one folder: its name as it sorts (a folder's with `/` after it).
struct Entry {
    sorted: String,
    is_dir: bool,
}

/// A folder being walked: its key prefix (`a/b/`), its entries sorted, and the next one.
struct Level {
    path: PathBuf,
    key: String,
    entries: Vec<Entry>,
    next: usize,
}

impl Level {
    /// A folder's entries, starting at the first that may hold a key after `after`.
    fn open(path: PathBuf, key: String, after: Option<&str>) -> io::Result<Self> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            // A name that is not UTF-8 is no key S3 could name.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_dir = entry.file_type()?.is_dir();
            let sorted = if is_dir { format!("{name}/") } else { name };
            entries.push(Entry { sorted, is_dir });
        }
        entries.sort_unstable_by(|a, b| a.sorted.cmp(&b.sorted));
        // Entries wholly before the resume point come first (keys grow along the sorted
        // entries, and a folder's keys are one range): skip them at once.
        let next = after.map_or(0, |after| {
            entries.partition_point(|e| {
                let full = format!("{key}{}", e.sorted);
                if e.is_dir {
                    full.as_str() < after && !after.starts_with(&full)
                } else {
                    full.as_str() <= after
                }
            })
        });
        Ok(Self {
            path,
            key,
            entries,
            next,
        })
    }
}

/// One page of the bucket folder `root`.
pub fn list(root: &Path, query: &Query<'_>) -> io::Result<Page> {
    let max_keys = query.max_keys.min(MAX_KEYS);
    let mut page = Page::default();
    let mut stack = vec![Level::open(root.to_path_buf(), String::new(), query.after)?];
    let mut last_prefix: Option<String> = None;
    let mut listed = 0;
    while let Some(level) = stack.last_mut() {
        let Some(entry) = level.entries.get(level.next) else {
            stack.pop();
            continue;
        };
        level.next += 1;
        let key = format!("{}{}", level.key, entry.sorted);
        let path = level.path.join(entry.sorted.trim_end_matches('/'));
        let is_dir = entry.is_dir;
        if is_dir {
            if !may_hold(&key, query) {
                continue;
            }
            if let Some(rolled) = rolled_up(&key, query) {
                // Every key under this folder rolls up into one common prefix.
                if last_prefix.as_deref() == Some(rolled.as_str())
                    || query.after.is_some_and(|after| rolled.as_str() <= after)
                    || !gone_is_none(holds_an_object(&path))?.unwrap_or(false)
                {
                    continue;
                }
            } else {
                if let Some(level) = gone_is_none(Level::open(path, key, query.after))? {
                    stack.push(level);
                }
                continue;
            }
        } else if !key.starts_with(query.prefix) {
            continue;
        }
        // One more entry: an object, or a common prefix of objects.
        let rolled = rolled_up(&key, query);
        let name = rolled.as_deref().unwrap_or(&key);
        if query.after.is_some_and(|after| name <= after) || last_prefix.as_deref() == Some(name) {
            continue;
        }
        let meta = match rolled {
            Some(_) => None,
            None => match gone_is_none(std::fs::symlink_metadata(&path))? {
                Some(meta) => Some(meta),
                None => continue,
            },
        };
        if listed == max_keys {
            page.truncated = max_keys > 0;
            page.next = page.truncated.then(|| last_listed(&page)).flatten();
            break;
        }
        listed += 1;
        match (rolled, meta) {
            (Some(prefix), _) => {
                page.prefixes.push(prefix.clone());
                last_prefix = Some(prefix);
            }
            (None, None) => {}
            (None, Some(meta)) => {
                page.objects.push(Object {
                    key,
                    size: meta.len(),
                    modified: meta.modified()?,
                });
            }
        }
    }
    Ok(page)
}

/// Whether the folder with key prefix `key` may hold keys of this page: it is compatible with
/// the prefix and not wholly before the resume point.
fn may_hold(key: &str, query: &Query<'_>) -> bool {
    let in_prefix = key.starts_with(query.prefix) || query.prefix.starts_with(key);
    // Keys under `key` all start with it: if `key` sorts before `after` without being a start
    // of it, every one of them does too.
    let before = query
        .after
        .is_some_and(|after| key < after && !after.starts_with(key));
    in_prefix && !before
}

/// The common prefix `key` (an object's key, or a folder's key prefix) rolls up into, when
/// the delimiter appears after the query's prefix.
fn rolled_up(key: &str, query: &Query<'_>) -> Option<String> {
    let delimiter = query.delimiter.filter(|d| !d.is_empty())?;
    let rest = key.strip_prefix(query.prefix)?;
    let at = rest.find(delimiter)?;
    Some(format!("{}{}", query.prefix, &rest[..at + delimiter.len()]))
}

/// Whether a folder holds at least one object, however deep (empty folders are no prefix).
fn holds_an_object(dir: &Path) -> io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir()
            || gone_is_none(holds_an_object(&entry.path()))?.unwrap_or(false)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `None` for what was removed meanwhile (not found), the value or the error otherwise.
fn gone_is_none<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The key or common prefix a page ended on.
fn last_listed(page: &Page) -> Option<String> {
    let object = page.objects.last().map(|o| o.key.as_str());
    let prefix = page.prefixes.last().map(String::as_str);
    object.max(prefix).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(keys: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for key in keys {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, key.as_bytes()).unwrap();
        }
        dir
    }

    fn keys(page: &Page) -> Vec<&str> {
        page.objects.iter().map(|o| o.key.as_str()).collect()
    }

    /// Every entry (objects and prefixes in one order), page by page, resuming where each
    /// page said; and the number of pages.
    fn all_pages(root: &Path, query: Query<'_>) -> (Vec<String>, usize) {
        let (mut seen, mut pages) = (Vec::new(), 0);
        let mut after: Option<String> = None;
        loop {
            let page = list(
                root,
                &Query {
                    after: after.as_deref(),
                    ..query
                },
            )
            .unwrap();
            pages += 1;
            let mut entries: Vec<String> = page.objects.iter().map(|o| o.key.clone()).collect();
            entries.extend(page.prefixes.iter().cloned());
            entries.sort();
            seen.extend(entries);
            if !page.truncated {
                return (seen, pages);
            }
            after = page.next;
        }
    }

    #[test]
    fn keys_come_in_s3_order_across_folders() {
        // '-' < '/' < '0': "a-b" before "a/…" before "a0".
        let root = bucket(&["a0", "a/z", "a-b", "a/b/c", "b", "a.txt"]);
        let page = list(
            root.path(),
            &Query {
                max_keys: 1000,
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(keys(&page), ["a-b", "a.txt", "a/b/c", "a/z", "a0", "b"]);
        assert!(!page.truncated);
        assert_eq!(page.objects[0].size, 3);
    }

    #[test]
    fn pages_resume_after_the_marker_and_cap_at_1000() {
        let names: Vec<String> = (0..2500).map(|i| format!("in/{i:05}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let root = bucket(&refs);
        let page = list(
            root.path(),
            &Query {
                max_keys: 5000,
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(page.objects.len(), 1000);
        assert!(page.truncated);
        assert_eq!(page.next.as_deref(), Some("in/00999"));
        let (seen, pages) = all_pages(
            root.path(),
            Query {
                max_keys: 1000,
                ..Query::default()
            },
        );
        assert_eq!(pages, 3);
        assert_eq!(seen, names);
        // start-after in the middle of a folder, and past the end.
        let page = list(
            root.path(),
            &Query {
                after: Some("in/02497"),
                max_keys: 10,
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(keys(&page), ["in/02498", "in/02499"]);
        let page = list(
            root.path(),
            &Query {
                after: Some("z"),
                max_keys: 10,
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(page, Page::default());
    }

    #[test]
    fn prefixes_and_delimiters_roll_up_like_s3() {
        let root = bucket(&["in/a/1", "in/a/2", "in/b/1", "in/c", "in2/x", "out/y"]);
        std::fs::create_dir_all(root.path().join("in/empty/deeper")).unwrap();
        let query = Query {
            prefix: "in/",
            delimiter: Some("/"),
            max_keys: 1000,
            ..Query::default()
        };
        let page = list(root.path(), &query).unwrap();
        assert_eq!(keys(&page), ["in/c"]);
        assert_eq!(page.prefixes, ["in/a/", "in/b/"]);
        // One entry a page: prefixes count as entries and resume after themselves.
        let (seen, pages) = all_pages(
            root.path(),
            Query {
                max_keys: 1,
                ..query
            },
        );
        assert_eq!(seen, ["in/a/", "in/b/", "in/c"]);
        assert_eq!(pages, 3);
        // A prefix that is not a folder boundary.
        let page = list(
            root.path(),
            &Query {
                prefix: "in",
                max_keys: 1000,
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(keys(&page), ["in/a/1", "in/a/2", "in/b/1", "in/c", "in2/x"]);
        let page = list(
            root.path(),
            &Query {
                prefix: "in",
                delimiter: Some("/"),
                max_keys: 1000,
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(page.prefixes, ["in/", "in2/"]);
        // A delimiter other than '/'.
        let page = list(
            root.path(),
            &Query {
                delimiter: Some("2"),
                max_keys: 1000,
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(keys(&page), ["in/a/1", "in/b/1", "in/c", "out/y"]);
        assert_eq!(page.prefixes, ["in/a/2", "in2"]);
    }
}
