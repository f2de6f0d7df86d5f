//! The object stores behind storage URLs (docs/architecture.md "Storage on
//! S3"): a local file system for `file://`, and for `s3://bucket` one S3
//! client per bucket, built from `[storage]` over the `AWS_*` variables and
//! shared by every table, state object, import and query of the process.
//!
//! deltalake-core and DataFusion find the same clients: [`register`] puts an
//! `s3://` object-store factory and Delta's default log store (commits are
//! create-only puts, `If-None-Match: *`, so several writers are safe without
//! a lock table) into deltalake's registries, and [`Registry`] serves
//! DataFusion's `s3://` file lists (windows read as plain Parquet files).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once, RwLock};

use deltalake_core::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake_core::{DeltaResult, DeltaTableError};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use url::Url;

use super::local_log::LocalLog;

/// `[storage]`'s S3 options (object_store's names), set once per command.
static OPTIONS: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());
/// One S3 client per bucket, built on first use.
static BUCKETS: Mutex<Option<HashMap<String, Arc<dyn ObjectStore>>>> = Mutex::new(None);

/// Sets the S3 options every later client is built with (`[storage]`, over
/// the `AWS_*` variables) and registers `s3://` with deltalake. A process
/// runs one command with one config; a second call replaces the options and
/// forgets the clients built so far.
pub fn configure(options: &[(&str, String)]) {
    if let Ok(mut current) = OPTIONS.write() {
        *current = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
    }
    if let Ok(mut buckets) = BUCKETS.lock() {
        *buckets = None;
    }
    register();
}

/// Puts the `s3://` object-store and log-store factories, and the local
/// file system's whose log listings read names only (`local_log`), into
/// deltalake's registries (once per process; opening a table calls it).
pub fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        if let Ok(scheme) = Url::parse("s3://") {
            object_store_factories().insert(scheme.clone(), Arc::new(S3Factory));
            logstore_factories().insert(scheme, Arc::new(DefaultLogStoreFactory));
        }
        if let Ok(scheme) = Url::parse("file://") {
            object_store_factories().insert(scheme, Arc::new(LocalFactory));
        }
    });
}

/// The store holding `url` (at the root of its bucket or file system) and
/// the path of `url` in it.
pub fn for_url(url: &Url) -> Result<(Arc<dyn ObjectStore>, ObjectPath), String> {
    match url.scheme() {
        "s3" => {
            let path = ObjectPath::from_url_path(url.path()).map_err(|e| e.to_string())?;
            Ok((bucket(url)?, path))
        }
        _ => object_store::parse_url(url)
            .map(|(store, path)| (Arc::from(store), path))
            .map_err(|e| e.to_string()),
    }
}

/// The shared client of `url`'s bucket.
fn bucket(url: &Url) -> Result<Arc<dyn ObjectStore>, String> {
    let name = url.host_str().unwrap_or_default().to_string();
    let mut buckets = BUCKETS.lock().map_err(|e| e.to_string())?;
    let buckets = buckets.get_or_insert_with(HashMap::new);
    if let Some(found) = buckets.get(&name) {
        return Ok(found.clone());
    }
    let built: Arc<dyn ObjectStore> = Arc::new(build_s3(&name)?);
    buckets.insert(name, built.clone());
    Ok(built)
}

/// An S3 client for `bucket`: the `AWS_*` variables, then `[storage]`.
fn build_s3(bucket: &str) -> Result<object_store::aws::AmazonS3, String> {
    let options = OPTIONS.read().map_err(|e| e.to_string())?.clone();
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in options {
        let key: AmazonS3ConfigKey = key.parse().map_err(|e| format!("{key}: {e}"))?;
        builder = builder.with_config(key, value);
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up S3 for bucket {bucket:?}: {e}"))
}

/// deltalake's `s3://` stores: the shared bucket client.
struct S3Factory;

impl ObjectStoreFactory for S3Factory {
    fn parse_url_opts(
        &self,
        url: &Url,
        _config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, ObjectPath)> {
        for_url(url).map_err(DeltaTableError::Generic)
    }
}

/// deltalake's `file://` stores: the local file system, its log listings
/// read by name ([`LocalLog`]).
struct LocalFactory;

impl ObjectStoreFactory for LocalFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, ObjectPath)> {
        let (store, path) = object_store::parse_url_opts(url, &config.raw)?;
        Ok((Arc::new(LocalLog::new(Arc::from(store))), path))
    }
}

/// Delta's default log store: commits are create-only puts.
struct DefaultLogStoreFactory;

impl LogStoreFactory for DefaultLogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// DataFusion's object stores: what was registered, else (for `s3://`) the
/// shared bucket client, else the local file system.
#[derive(Debug, Default)]
pub struct Registry {
    inner: datafusion::execution::object_store::DefaultObjectStoreRegistry,
}

impl datafusion::execution::object_store::ObjectStoreRegistry for Registry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        match self.inner.get_store(url) {
            Err(_) if url.scheme() == "s3" => {
                bucket(url).map_err(|m| datafusion::error::DataFusionError::External(m.into()))
            }
            found => found,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls_are_the_file_system_and_s3_urls_a_bucket_and_key() {
        let (_, path) = for_url(&Url::parse("file:///tmp/x/y.json").unwrap()).unwrap();
        assert_eq!(path.as_ref(), "tmp/x/y.json");
        configure(&[
            ("aws_endpoint", "http://127.0.0.1:1".into()),
            ("aws_region", "us-east-1".into()),
            ("aws_access_key_id", "k".into()),
            ("aws_secret_access_key", "s".into()),
            ("aws_allow_http", "true".into()),
        ]);
        let url = Url::parse("s3://bkt/pre/fix/a.json").unwrap();
        let (first, path) = for_url(&url).unwrap();
        assert_eq!(path.as_ref(), "pre/fix/a.json");
        let (second, _) = for_url(&Url::parse("s3://bkt/other").unwrap()).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "one client per bucket");
        let (third, _) = for_url(&Url::parse("s3://other/x").unwrap()).unwrap();
        assert!(!Arc::ptr_eq(&first, &third));
    }
}
