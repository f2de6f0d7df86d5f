//! `storage`: where everything durable lives (docs/reference.md "Storage"):
//! a path, a `file://` URL or `s3://bucket/prefix`, written as a string or
//! as a `[storage]` table that also says how to reach S3 (endpoint, region,
//! credentials, plain HTTP). What the table leaves out comes from the usual
//! `AWS_*` environment variables.

use std::path::Path;

use serde::Deserialize;
use url::Url;

use super::Secret;

/// The storage root and how to reach it.
#[derive(Debug, Clone)]
pub struct Storage {
    /// Root URL of all durable state (docs/architecture.md "Storage").
    pub url: Url,
    /// `[storage]`'s S3 settings (empty for a string, or for local storage).
    pub s3: S3Settings,
}

/// `[storage]`'s S3 keys; each one left out falls back to its `AWS_*`
/// variable (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub allow_http: Option<bool>,
}

/// `[storage]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    #[serde(default = "default_url")]
    url: String,
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    allow_http: Option<bool>,
}

fn default_url() -> String {
    super::default_storage()
}

impl S3Settings {
    fn is_empty(&self) -> bool {
        *self == S3Settings::default()
    }

    /// The settings as object_store's S3 option names, secrets resolved;
    /// a secret naming an unset variable is an error naming its key.
    pub fn options(&self) -> Result<Vec<(&'static str, String)>, String> {
        let mut options = Vec::new();
        let mut text = |name: &'static str, value: &Option<String>| {
            if let Some(value) = value {
                options.push((name, value.clone()));
            }
        };
        text("aws_endpoint", &self.endpoint);
        text("aws_region", &self.region);
        for (key, name, secret) in [
            ("access_key_id", "aws_access_key_id", &self.access_key_id),
            (
                "secret_access_key",
                "aws_secret_access_key",
                &self.secret_access_key,
            ),
        ] {
            let Some(secret) = secret else { continue };
            let value = secret.resolve().ok_or_else(|| {
                format!(
                    "storage.{key}: names {}, which is not set (or empty)",
                    secret.describe()
                )
            })?;
            options.push((name, value));
        }
        if let Some(allow) = self.allow_http {
            options.push(("aws_allow_http", allow.to_string()));
        }
        Ok(options)
    }
}

/// Reads `storage`: a string (path or URL), or a `[storage]` table.
/// Relative paths resolve against `base` (the config file's folder).
pub(super) fn parse(value: toml::Value, base: &Path) -> Result<Storage, String> {
    let raw = match value {
        toml::Value::String(url) => RawStorage {
            url,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: None,
        },
        toml::Value::Table(table) => toml::Value::Table(table)
            .try_into::<RawStorage>()
            .map_err(|e| format!("storage: {}", e.message()))?,
        other => {
            return Err(format!(
                "storage: expected a path or URL (a string) or a [storage] table, found {}",
                other.type_str()
            ));
        }
    };
    let url = storage_url(&raw.url, base).map_err(|m| format!("storage: {m}"))?;
    let secret = |key: &str, text: Option<String>| match text {
        Some(text) if text.is_empty() || text == "env:" => Err(format!(
            "storage.{key}: must name a value or \"env:VARIABLE\""
        )),
        text => Ok(text.map(|t| Secret::parse(&t))),
    };
    let s3 = S3Settings {
        access_key_id: secret("access_key_id", raw.access_key_id)?,
        secret_access_key: secret("secret_access_key", raw.secret_access_key)?,
        endpoint: raw.endpoint,
        region: raw.region,
        allow_http: raw.allow_http,
    };
    if let Some(endpoint) = &s3.endpoint {
        Url::parse(endpoint)
            .map_err(|e| format!("storage.endpoint: {endpoint:?} is not a URL: {e}"))?;
    }
    if url.scheme() != "s3" && !s3.is_empty() {
        return Err(format!(
            "storage: endpoint, region, credentials and allow_http apply to s3:// storage only \
             (url is {url})"
        ));
    }
    Ok(Storage { url, s3 })
}

/// Turns the `storage` value into a URL; plain paths become `file://` URLs.
fn storage_url(value: &str, base: &Path) -> Result<Url, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some((scheme, _)) = value.split_once("://") {
        return match scheme {
            "file" => Url::parse(value).map_err(|e| format!("{value:?} is not a URL: {e}")),
            "s3" => s3_url(value),
            "gs" | "az" | "abfss" => Err(format!(
                "{value:?}: {scheme}:// storage is planned but not built into this version; \
                 use a local path or s3://"
            )),
            _ => Err(format!(
                "{value:?}: unknown scheme {scheme}:// (use a path, file:// or s3://)"
            )),
        };
    }
    let path = base.join(value);
    let absolute = std::path::absolute(&path).map_err(|e| format!("{value:?}: {e}"))?;
    Url::from_directory_path(&absolute).map_err(|_| format!("{value:?} is not a usable path"))
}

/// `s3://bucket[/prefix]`: a bucket is required; no query or fragment.
fn s3_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{value:?}: name a bucket, as in s3://bucket/prefix"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{value:?}: write s3://bucket/prefix only; credentials and options go in [storage] \
             or AWS_* variables"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Storage, String> {
        let value: toml::Table = toml::from_str(text).unwrap();
        parse(value["storage"].clone(), Path::new("/proj"))
    }

    #[test]
    fn a_string_or_a_table() {
        let local = parse_text("storage = \"./data\"").unwrap();
        assert_eq!(local.url.as_str(), "file:///proj/data/");
        assert!(local.s3.options().unwrap().is_empty());
        let s3 = parse_text(
            "[storage]\nurl = \"s3://bkt/pre\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             region = \"eu-west-1\"\naccess_key_id = \"AKIA\"\n\
             secret_access_key = \"env:TRIPWIRE_TEST_SURELY_UNSET_VAR\"\nallow_http = true",
        )
        .unwrap();
        assert_eq!(s3.url.as_str(), "s3://bkt/pre");
        let error = s3.s3.options().unwrap_err();
        assert!(
            error.contains("storage.secret_access_key")
                && error.contains("TRIPWIRE_TEST_SURELY_UNSET_VAR"),
            "{error}"
        );
        let plain = S3Settings {
            secret_access_key: None,
            ..s3.s3
        };
        assert_eq!(
            plain.options().unwrap(),
            [
                ("aws_endpoint", "http://127.0.0.1:9000".to_string()),
                ("aws_region", "eu-west-1".into()),
                ("aws_access_key_id", "AKIA".into()),
                ("aws_allow_http", "true".into()),
            ]
        );
    }

    #[test]
    fn mistakes_name_the_key() {
        for (text, named) in [
            ("[storage]\nurl = \"s3://b\"\nendpont = \"x\"", "endpont"),
            (
                "[storage]\nurl = \"s3://b\"\nendpoint = \"not a url\"",
                "storage.endpoint",
            ),
            (
                "[storage]\nurl = \"s3://b\"\nallow_http = \"yes\"",
                "storage",
            ),
            (
                "[storage]\nurl = \"s3://b\"\naccess_key_id = \"\"",
                "storage.access_key_id",
            ),
            (
                "[storage]\nurl = \"./local\"\nregion = \"x\"",
                "s3:// storage only",
            ),
            ("storage = \"s3://\"", "name a bucket"),
            ("storage = \"s3://k:s@b/p\"", "[storage]"),
            ("storage = \"gs://b\"", "not built"),
            ("storage = 3", "a [storage] table"),
        ] {
            let error = parse_text(text).unwrap_err();
            assert!(
                error.starts_with("storage") && error.contains(named),
                "{text}: {error}"
            );
        }
    }
}
