//! The bounds on analysts' SQL (docs/reference.md "Limits"): one memory pool
//! of `query_memory` bytes shared by every session of the process (queries
//! spill, then fail, past it), and `query_timeout` for the queries people
//! run (`tripwire query`, previews, the API). Both errors name their key.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use super::QueryError;

/// `query_memory` when no config set it (the default of the key).
pub const DEFAULT_QUERY_MEMORY: usize = 4 << 30;

/// The process's query runtime: its memory pool and spill files.
static RUNTIME: OnceLock<Arc<RuntimeEnv>> = OnceLock::new();
/// The pool's size, for messages.
static MEMORY: OnceLock<usize> = OnceLock::new();

/// Sets the memory every query of this process shares; the first call wins
/// (a process runs one command with one config), later ones change nothing.
pub fn configure(query_memory: usize) {
    let _ = MEMORY.set(query_memory);
}

fn memory() -> usize {
    *MEMORY.get_or_init(|| DEFAULT_QUERY_MEMORY)
}

/// The runtime every session is built on.
pub(super) fn runtime() -> Result<Arc<RuntimeEnv>, QueryError> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.clone());
    }
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(memory())))
        // `s3://` file lists (windows) read through the storage's clients.
        .with_object_store_registry(Arc::new(crate::store::objects::Registry::default()))
        .build_arc()
        .map_err(|e| QueryError::Engine(e.to_string()))?;
    Ok(RUNTIME.get_or_init(|| runtime).clone())
}

/// `message` with the key to raise when the engine ran out of memory.
pub fn explain_memory(message: String) -> String {
    if !message.contains("Resources exhausted") {
        return message;
    }
    format!(
        "{message}\nthe query needs more memory than query_memory ({} bytes) allows: \
         narrow it, or raise query_memory in tripwire.toml",
        memory()
    )
}

/// Runs an analyst's query (or a preview), stopped and its work dropped
/// after `timeout`: its own outcome, or the timeout's error.
pub async fn within<T>(timeout: Duration, query: impl Future<Output = T>) -> Result<T, QueryError> {
    match tokio::time::timeout(timeout, query).await {
        Ok(done) => Ok(done),
        Err(_) => Err(QueryError::Sql(format!(
            "the query ran longer than query_timeout ({}) and was stopped: narrow it, \
             or raise query_timeout in tripwire.toml",
            crate::duration::format_duration(timeout)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_query_over_its_time_is_stopped_with_the_key_named() {
        let slow = tokio::time::sleep(Duration::from_secs(3600));
        let error = within(Duration::from_millis(10), slow).await.unwrap_err();
        assert!(
            error.to_string().contains("query_timeout (10ms)"),
            "{error}"
        );
        assert_eq!(
            within(Duration::from_secs(1), async { 7 }).await.ok(),
            Some(7)
        );
    }

    #[test]
    fn running_out_of_memory_names_the_key() {
        let message = explain_memory("Resources exhausted: Failed to allocate".into());
        assert!(message.contains("query_memory ("), "{message}");
        assert_eq!(explain_memory("other".into()), "other");
    }
}
