//! A MinIO stand-in for the tests of `--storage-minio-admin`.

use serde_json::Value;

/// tests/minio/fake_admin.py: moto's S3 plus MinIO's admin calls, checked by botocore and
/// minio-py; stopped when dropped.
pub struct FakeMinio {
    child: std::process::Child,
    /// Its S3 (and admin) endpoint.
    pub endpoint: String,
}

impl FakeMinio {
    /// Starts it with the root `access_key` and `secret_key`.
    pub fn start(access_key: &str, secret_key: &str) -> Self {
        use std::io::BufRead as _;
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/minio/fake_admin.py");
        let mut child = std::process::Command::new(super::test_python())
            .arg(script)
            .args([access_key, secret_key])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the MinIO stand-in");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{line}"));
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// What it holds: users, policies, refused requests.
    pub fn state(&self) -> Value {
        super::client()
            .get(format!("{}/_fake/state", self.endpoint))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// The buckets the policy attached to user `access_key` grants.
    pub fn buckets_of(&self, access_key: &str) -> Vec<String> {
        let state = self.state();
        let Some(policy) = state["user_policy"][access_key].as_str() else {
            return vec![];
        };
        let mut buckets: Vec<String> = state["policies"][policy]["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["Resource"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| {
                r.as_str()?
                    .strip_prefix("arn:aws:s3:::")
                    .map(str::to_string)
            })
            .filter(|r| !r.contains('/'))
            .collect();
        buckets.sort();
        buckets
    }
}

impl Drop for FakeMinio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
