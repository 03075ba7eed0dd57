//! Who may see, use and change a service or a bucket, by OSCAR's rules: the administrator
//! anything; an OIDC user what they own, what is `public`, and what is `restricted` to a list
//! naming them (`allowed_users`); only the owner (or the administrator) changes or deletes.

use crate::oidc::User;
use crate::registry::{Deployed, Registry};
use crate::storage::bucket_records::{BucketRecord, BucketRecords, Visibility};
use crate::storage::spec::DEFAULT_PROVIDER;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Who made a request to /system.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The administrator (HTTP basic auth, or an open server).
    Admin,
    /// A user an OIDC token proved.
    User(Arc<User>),
}

impl Caller {
    /// The user, unless the administrator.
    pub fn user(&self) -> Option<&User> {
        match self {
            Self::Admin => None,
            Self::User(user) => Some(user),
        }
    }

    /// Whether the caller may see and invoke the service `definition` describes (OSCAR's
    /// hasPermission), and is in its VO when it names one.
    pub fn may_use(&self, definition: &Map<String, Value>) -> bool {
        match self {
            Self::Admin => true,
            Self::User(user) => may_use(&user.sub, definition) && in_vo(user, definition),
        }
    }

    /// Whether the caller may change or delete the service: its owner, or the administrator.
    pub fn may_change(&self, definition: &Map<String, Value>) -> bool {
        match self {
            Self::Admin => true,
            Self::User(user) => owner_of(definition) == Some(user.sub.as_str()),
        }
    }

    /// Whether the caller may read and write the bucket.
    pub fn may_use_bucket(&self, bucket: &BucketFacts) -> bool {
        match self {
            Self::Admin => true,
            Self::User(user) => bucket.open_to(&user.sub),
        }
    }

    /// Whether the caller may change or delete the bucket: a service's buckets follow the
    /// service, so only the administrator.
    pub fn may_change_bucket(&self, bucket: &BucketFacts) -> bool {
        match self {
            Self::Admin => true,
            Self::User(user) => bucket.services.is_empty() && bucket.record.owner == user.sub,
        }
    }

    /// How the caller is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Admin => "the administrator".into(),
            Self::User(user) => format!("user {}", user.sub),
        }
    }
}

/// The service's VO (`vo`), when it names one.
pub fn vo_of(definition: &Map<String, Value>) -> Option<&str> {
    definition
        .get("vo")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|vo| !vo.is_empty())
}

/// Whether `user` is in the VO of the service `definition` describes (any user, when it names
/// none): a service of a VO is its members' only, as OSCAR checks at create and update.
pub fn in_vo(user: &User, definition: &Map<String, Value>) -> bool {
    vo_of(definition).is_none_or(|vo| user.groups.iter().any(|g| g == vo))
}

/// The service's owner.
pub fn owner_of(definition: &Map<String, Value>) -> Option<&str> {
    definition.get("owner").and_then(Value::as_str)
}

/// OSCAR's rule for a user and a service.
pub fn may_use(sub: &str, definition: &Map<String, Value>) -> bool {
    let visibility = definition
        .get("visibility")
        .and_then(Value::as_str)
        .and_then(|v| Visibility::parse(v).ok())
        .unwrap_or_default();
    let owner = owner_of(definition) == Some(sub);
    match visibility {
        Visibility::Public => true,
        Visibility::Private => owner,
        Visibility::Restricted => {
            owner
                || definition
                    .get("allowed_users")
                    .and_then(Value::as_array)
                    .is_some_and(|users| users.iter().any(|u| u.as_str() == Some(sub)))
        }
    }
}

/// What is known of a bucket's owner and access.
#[derive(Clone)]
pub struct BucketFacts {
    /// Owner, visibility and allowed users: the bucket's record, else those of the first
    /// service (by name) that uses it, else the administrator's and private.
    pub record: BucketRecord,
    /// Set when the bucket is known through a service rather than a record.
    pub from_service: Option<String>,
    /// The services whose `minio.default` inputs or outputs are in the bucket, by name.
    pub services: Vec<Arc<Deployed>>,
}

impl BucketFacts {
    /// Whether `sub` may read and write it: by its record (OSCAR's rule for buckets), or by
    /// any service using it that `sub` may use.
    pub fn open_to(&self, sub: &str) -> bool {
        let by_record = self.from_service.is_none()
            && (self.record.owner == sub
                || match self.record.visibility {
                    Visibility::Public => true,
                    Visibility::Private => false,
                    Visibility::Restricted => self.record.allowed_users.iter().any(|u| u == sub),
                });
        by_record
            || self
                .services
                .iter()
                .any(|d| may_use(sub, &d.service.definition))
    }
}

/// The bucket's owner and access, as this server knows them.
pub fn bucket_facts(records: &BucketRecords, registry: &Registry, bucket: &str) -> BucketFacts {
    let mut services: Vec<_> = registry
        .list()
        .into_iter()
        .filter(|d| {
            let storage = &d.service.spec.storage;
            storage
                .paths()
                .any(|p| p.provider == DEFAULT_PROVIDER && p.bucket == bucket)
        })
        .collect();
    services.sort_by(|a, b| a.service.spec.name.cmp(&b.service.spec.name));
    // A bucket a user created with a service follows its services while any uses it, and its
    // record once none does.
    if let Some(record) = records.get(bucket)
        && (record.service.is_none() || services.is_empty())
    {
        return BucketFacts {
            record,
            from_service: None,
            services,
        };
    }
    let Some(first) = services.first() else {
        return BucketFacts {
            record: BucketRecord {
                owner: String::new(),
                owner_name: ADMIN_BUCKET_OWNER.into(),
                visibility: Visibility::Private,
                allowed_users: Vec::new(),
                service: None,
            },
            from_service: None,
            services,
        };
    };
    let definition = &first.service.definition;
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_string);
    let record = BucketRecord {
        owner: text(definition.get("owner"))
            .unwrap_or_else(|| crate::oscar_definition::ADMIN_OWNER.into()),
        owner_name: text(definition.get("labels").and_then(|l| l.get("owner_name")))
            .unwrap_or_else(|| ADMIN_BUCKET_OWNER.into()),
        visibility: text(definition.get("visibility"))
            .and_then(|v| Visibility::parse(&v).ok())
            .unwrap_or_default(),
        allowed_users: definition
            .get("allowed_users")
            .and_then(Value::as_array)
            .map(|users| users.iter().filter_map(|u| text(Some(u))).collect())
            .unwrap_or_default(),
        service: None,
    };
    BucketFacts {
        record,
        from_service: Some(first.service.spec.name.clone()),
        services,
    }
}

/// The buckets of the embedded store (`minio.default`) that `user` owns: those they created
/// (their records) and those their services name, which OSCAR tags with the service's owner.
pub fn owned_buckets(
    records: &BucketRecords,
    registry: &Registry,
    user: &str,
) -> std::collections::BTreeSet<String> {
    let mut owned: std::collections::BTreeSet<String> =
        records.owned_by(user).into_iter().collect();
    for deployed in registry.list() {
        if owner_of(&deployed.service.definition) == Some(user) {
            owned.extend(
                deployed
                    .service
                    .spec
                    .storage
                    .paths()
                    .filter(|p| p.provider == DEFAULT_PROVIDER)
                    .map(|p| p.bucket.clone()),
            );
        }
    }
    owned
}

/// OSCAR's owner, and owner name, of buckets the administrator creates (its cluster's name).
pub const ADMIN_BUCKET_OWNER: &str = "oscar";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(sub: &str) -> Caller {
        Caller::User(Arc::new(User {
            sub: sub.into(),
            name: String::new(),
            groups: vec![],
        }))
    }

    fn definition(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn services_follow_oscars_visibility() {
        let private = definition(json!({"owner": "alice", "visibility": "private"}));
        let public = definition(json!({"owner": "alice", "visibility": "public"}));
        let restricted = definition(
            json!({"owner": "alice", "visibility": "restricted", "allowed_users": ["bob"]}),
        );
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        for d in [&private, &public, &restricted] {
            assert!(alice.may_use(d) && alice.may_change(d) && Caller::Admin.may_change(d));
            assert!(!bob.may_change(d));
        }
        assert!(!bob.may_use(&private) && bob.may_use(&public) && bob.may_use(&restricted));
        assert!(!carol.may_use(&private) && carol.may_use(&public) && !carol.may_use(&restricted));
        // No visibility is private, as OSCAR defaults it.
        assert!(!bob.may_use(&definition(json!({"owner": "alice"}))));
    }

    #[test]
    fn a_services_vo_is_its_members_only() {
        let member = Caller::User(Arc::new(User {
            sub: "bob".into(),
            name: String::new(),
            groups: vec!["vo.a".into(), "vo.b".into()],
        }));
        let public =
            |vo: &str| definition(json!({"owner": "alice", "visibility": "public", "vo": vo}));
        assert!(member.may_use(&public("vo.b")) && member.may_use(&public("")));
        assert!(!member.may_use(&public("vo.c")) && !user("carol").may_use(&public("vo.a")));
        assert!(Caller::Admin.may_use(&public("vo.c")));
    }

    #[test]
    fn buckets_follow_the_same_rule() {
        let facts = BucketFacts {
            record: BucketRecord {
                owner: "alice".into(),
                owner_name: "Alice".into(),
                visibility: Visibility::Restricted,
                allowed_users: vec!["bob".into()],
                service: None,
            },
            from_service: None,
            services: vec![],
        };
        assert!(user("alice").may_change_bucket(&facts));
        assert!(user("bob").may_use_bucket(&facts) && !user("bob").may_change_bucket(&facts));
        assert!(!user("carol").may_use_bucket(&facts));
    }
}
