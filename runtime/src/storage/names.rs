//! One canonical form for bucket names and object keys, checked at every edge that takes one:
//! the embedded store's S3 listener (paths, copy sources, multi-object deletes, list prefixes),
//! `/system/buckets` (folders, presigned keys), storage events and service definitions.
//!
//! The embedded store keeps objects as files under `<bucket>/<key>`, so a key with `..`
//! segments would name another bucket's file; other stores treat such keys as plain strings,
//! and a key that means different things to different stores is refused everywhere. The rule:
//! a key is `/`-separated segments, none of them empty, `.` or `..`; it may end in one `/` (a
//! folder marker); it holds no backslash and no control character, and has at most
//! [`MAX_KEY_LEN`] bytes. Keys are judged after percent-decoding, as every S3 server reads them.

/// S3's limit on an object key's length, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a bucket name by S3's rules.
    #[error(
        "'{0}' is not a valid bucket name: use 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or a digit"
    )]
    Bucket(String),
    /// Not a canonical object key, folder or prefix.
    #[error("{what} {name:?} is not canonical: {reason}")]
    Key {
        /// "the object key", "the folder", "the prefix".
        what: &'static str,
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

/// S3's bucket naming rules (3 to 63 lowercase letters, digits, `.` and `-`, starting and
/// ending with a letter or digit, no `..`).
pub fn check_bucket(name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-';
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(3..=63).contains(&bytes.len())
        || !bytes.iter().all(allowed)
        || !edge(bytes.first())
        || !edge(bytes.last())
        || name.contains("..")
    {
        return Err(NameError::Bucket(name.to_string()));
    }
    Ok(())
}

/// An object key: a file (`a/b.txt`) or a folder marker (`a/b/`).
pub fn check_key(key: &str) -> Result<(), NameError> {
    let body = key.strip_suffix('/').unwrap_or(key);
    check_segments("the object key", key, body, false)
}

/// A folder inside a bucket, without leading or trailing `/` (`in`, `photos/2026`).
pub fn check_folder(folder: &str) -> Result<(), NameError> {
    check_segments("the folder", folder, folder, false)
}

/// A listing prefix: empty, or a key's beginning (its last segment may be partial or empty).
pub fn check_prefix(prefix: &str) -> Result<(), NameError> {
    if prefix.is_empty() {
        return Ok(());
    }
    let complete = match prefix.rfind('/') {
        Some(end) => &prefix[..end],
        None => "",
    };
    check_characters("the prefix", prefix)?;
    if complete.is_empty() && prefix.starts_with('/') {
        return Err(key_error("the prefix", prefix, "it starts with '/'"));
    }
    if complete.is_empty() {
        return Ok(());
    }
    check_segments("the prefix", prefix, complete, false)
}

fn key_error(what: &'static str, name: &str, reason: &'static str) -> NameError {
    NameError::Key {
        what,
        name: name.to_string(),
        reason,
    }
}

fn check_characters(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.len() > MAX_KEY_LEN {
        return Err(key_error(what, name, "it is longer than 1024 bytes"));
    }
    if name.contains('\\') {
        return Err(key_error(what, name, "it holds a backslash"));
    }
    if name.chars().any(char::is_control) {
        return Err(key_error(what, name, "it holds a control character"));
    }
    Ok(())
}

/// `body` (`name` without an allowed trailing `/`) as non-empty segments, none `.` or `..`.
fn check_segments(
    what: &'static str,
    name: &str,
    body: &str,
    allow_empty: bool,
) -> Result<(), NameError> {
    check_characters(what, name)?;
    if body.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err(key_error(what, name, "it is empty"))
        };
    }
    for segment in body.split('/') {
        match segment {
            "" => {
                return Err(key_error(
                    what,
                    name,
                    "it has an empty segment ('//' or a leading or trailing '/')",
                ));
            }
            "." | ".." => return Err(key_error(what, name, "it has a '.' or '..' segment")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_keys_pass() {
        for key in [
            "a",
            "a/b.txt",
            "in/photos/2026/x y+é.png",
            "folder/",
            "..a",
            "a..",
            ".hidden",
            "a/.b/c..d",
        ] {
            assert_eq!(check_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn non_canonical_keys_are_refused() {
        for key in [
            "", "/", "/a", "a//b", "a/", "..", "../b/f", "a/../b", "a/./b", ".", "./a", "a/..",
            "a\\..\\b", "a\\b", "a\0b", "a\nb", "a//", "a/b//",
        ] {
            if key == "a/" {
                // A folder marker is a key.
                assert_eq!(check_key(key), Ok(()));
                continue;
            }
            assert!(check_key(key).is_err(), "{key:?} was accepted");
        }
        assert!(check_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn folders_and_prefixes() {
        assert_eq!(check_folder("in/photos"), Ok(()));
        for folder in ["", "in/", "/in", "in/../x", "in//x"] {
            assert!(check_folder(folder).is_err(), "{folder:?}");
        }
        for prefix in ["", "in", "in/", "in/pho", "in/.", "in/.."] {
            assert_eq!(check_prefix(prefix), Ok(()), "{prefix:?}");
        }
        for prefix in ["/in", "../", "in/../x", "in//", "a\\b"] {
            assert!(check_prefix(prefix).is_err(), "{prefix:?}");
        }
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket.1", "a1b"] {
            assert_eq!(check_bucket(ok), Ok(()));
        }
        for bad in [
            "ab",
            "Abc",
            "a..b",
            "-ab",
            "ab-",
            "a_b",
            "..",
            "a/b",
            &"a".repeat(64),
        ] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
    }

    /// What a store on a file system would make of a key: the segments after resolving `.`
    /// and `..` (None when it climbs out).
    fn resolved(key: &str) -> Option<Vec<&str>> {
        let mut out = Vec::new();
        for segment in key.split(['/', '\\']) {
            match segment {
                "" | "." => {}
                ".." => {
                    out.pop()?;
                }
                s => out.push(s),
            }
        }
        Some(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Every accepted key means the same thing to a store that resolves paths and to one
        /// that keeps keys as strings: its segments, unchanged.
        #[test]
        fn accepted_keys_resolve_to_themselves(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("".to_string()), Just(".".to_string()), Just("..".to_string()),
                    Just("a\\..".to_string()), Just("%2e%2e".to_string()),
                    "[a-z.]{1,4}",
                ],
                1..6,
            ),
            trailing in any::<bool>(),
        ) {
            let mut key = parts.join("/");
            if trailing {
                key.push('/');
            }
            if check_key(&key).is_ok() {
                let body = key.strip_suffix('/').unwrap_or(&key);
                let literal: Vec<&str> = body.split('/').collect();
                prop_assert_eq!(resolved(body), Some(literal));
            }
        }
    }
}
