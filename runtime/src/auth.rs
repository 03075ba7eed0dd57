//! Who may do what, as OSCAR decides it: the administrator (HTTP basic auth) may do anything;
//! a service's token (`Authorization: Bearer`) may invoke that service only.
//!
//! Secrets are compared through their SHA-256 digests with constant-time equality, so neither
//! the content nor the length of a secret leaks through response times.

use sha2::Digest as _;
use subtle::ConstantTimeEq;

/// The administrator's credentials; without a password the server is open (loopback only,
/// unless the operator insisted).
#[derive(Clone)]
pub struct AdminCredentials {
    user: [u8; 32],
    password: Option<[u8; 32]>,
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

fn digest(secret: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(secret).into()
}

/// Constant-time equality of two secrets of any lengths.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    digest(a).ct_eq(&digest(b)).into()
}

impl AdminCredentials {
    /// Credentials for `user`; `None` or an empty password leaves the server open.
    pub fn new(user: &str, password: Option<&str>) -> Self {
        Self {
            user: digest(user.as_bytes()),
            password: password
                .filter(|p| !p.is_empty())
                .map(|p| digest(p.as_bytes())),
        }
    }

    /// No password: every request is allowed.
    pub fn is_open(&self) -> bool {
        self.password.is_none()
    }

    /// Whether `user`/`password` are the administrator's.
    pub fn matches(&self, user: &[u8], password: &[u8]) -> bool {
        let Some(expected) = &self.password else {
            return true;
        };
        // Both compared, always: no early exit on a wrong user name.
        let user_ok = self.user.ct_eq(&digest(user));
        let password_ok = expected.ct_eq(&digest(password));
        (user_ok & password_ok).into()
    }
}

/// What a request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// Nothing, or an unreadable Authorization header.
    Nothing,
    /// HTTP basic credentials.
    Basic {
        /// User name.
        user: Vec<u8>,
        /// Password.
        password: Vec<u8>,
    },
    /// A bearer token.
    Bearer(Vec<u8>),
}

/// The decision on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// No valid credentials (401).
    Unauthenticated,
    /// Valid credentials, but not for this (403).
    Forbidden,
}

/// Decides an administrative request (/system/*).
pub fn admin(creds: &AdminCredentials, presented: &Presented) -> Decision {
    if creds.is_open() {
        return Decision::Allow;
    }
    match presented {
        Presented::Basic { user, password } if creds.matches(user, password) => Decision::Allow,
        // A service token is a valid credential, but not for administration.
        Presented::Bearer(_) => Decision::Unauthenticated,
        _ => Decision::Unauthenticated,
    }
}

/// Decides an invocation of the service whose token is `service_token`; `other_tokens` are
/// the tokens of every service, to tell a wrong service's token (403) from garbage (401).
pub fn invoke<'a>(
    creds: &AdminCredentials,
    presented: &Presented,
    service_token: Option<&str>,
    other_tokens: impl Iterator<Item = &'a str>,
) -> Decision {
    if creds.is_open() {
        return Decision::Allow;
    }
    match presented {
        Presented::Basic { user, password } => {
            if creds.matches(user, password) {
                Decision::Allow
            } else {
                Decision::Unauthenticated
            }
        }
        Presented::Bearer(token) => {
            if service_token.is_some_and(|t| secrets_equal(t.as_bytes(), token)) {
                Decision::Allow
            } else if other_tokens
                .into_iter()
                .any(|t| secrets_equal(t.as_bytes(), token))
            {
                Decision::Forbidden
            } else {
                Decision::Unauthenticated
            }
        }
        Presented::Nothing => Decision::Unauthenticated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Presented {
        Presented::Basic {
            user: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn open_server_allows_everything() {
        let c = AdminCredentials::new("oscar", None);
        assert_eq!(admin(&c, &Presented::Nothing), Decision::Allow);
        assert_eq!(
            admin(
                &AdminCredentials::new("oscar", Some("")),
                &Presented::Nothing
            ),
            Decision::Allow
        );
        assert_eq!(
            invoke(&c, &Presented::Nothing, Some("t"), [].into_iter()),
            Decision::Allow
        );
    }

    #[test]
    fn admin_needs_user_and_password() {
        let c = AdminCredentials::new("oscar", Some("pw"));
        assert_eq!(admin(&c, &basic("oscar", "pw")), Decision::Allow);
        assert_eq!(admin(&c, &basic("oscar", "pw2")), Decision::Unauthenticated);
        assert_eq!(admin(&c, &basic("root", "pw")), Decision::Unauthenticated);
        assert_eq!(
            admin(&c, &Presented::Bearer(b"pw".to_vec())),
            Decision::Unauthenticated
        );
        assert_eq!(admin(&c, &Presented::Nothing), Decision::Unauthenticated);
    }

    #[test]
    fn tokens_open_only_their_service() {
        let c = AdminCredentials::new("oscar", Some("pw"));
        let others = ["aaa", "bbb"];
        let bearer = |t: &str| Presented::Bearer(t.into());
        assert_eq!(
            invoke(&c, &bearer("aaa"), Some("aaa"), others.into_iter()),
            Decision::Allow
        );
        assert_eq!(
            invoke(&c, &bearer("bbb"), Some("aaa"), others.into_iter()),
            Decision::Forbidden
        );
        assert_eq!(
            invoke(&c, &bearer("ccc"), Some("aaa"), others.into_iter()),
            Decision::Unauthenticated
        );
        assert_eq!(
            invoke(&c, &basic("oscar", "pw"), Some("aaa"), others.into_iter()),
            Decision::Allow
        );
        assert_eq!(
            invoke(&c, &Presented::Nothing, Some("aaa"), others.into_iter()),
            Decision::Unauthenticated
        );
    }

    #[test]
    fn secrets_of_different_lengths_compare() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abcd"));
        assert!(!secrets_equal(b"", b"a"));
    }
}
