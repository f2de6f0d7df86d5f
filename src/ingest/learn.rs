//! Learning (the Flows seed): which event names a workspace receives and
//! which fields their payloads carry, with types, counts and first/last
//! seen, for `GET /v1/schema` and `tripwire schema`.
//!
//! The flusher feeds it (off the acknowledgement path) and saves it as
//! `<storage>/<workspace>/state/schema.json`, at most every
//! [`SAVE_EVERY`]; a crash loses at most that much learning, never events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::record::StoredEvent;
use crate::store::{Store, StoreError};

/// The longest a learned change waits before it is saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Nesting deeper than this is learned as one `object` field.
const MAX_DEPTH: usize = 8;

/// The most field paths kept per event name (bounded memory).
const MAX_FIELDS: usize = 500;

/// What a workspace has been sent.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub events: BTreeMap<String, Seen>,
}

/// One event name, or one field path of it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub count: u64,
    /// Microseconds since the epoch.
    pub first_seen: i64,
    pub last_seen: i64,
    /// JSON types seen (fields only).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub types: BTreeSet<String>,
    /// Field paths (`properties.cart.value`, `traits.email`); event names only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Seen>,
}

impl Seen {
    fn touch(&mut self, at: i64) {
        if self.count == 0 || at < self.first_seen {
            self.first_seen = at;
        }
        self.last_seen = self.last_seen.max(at);
        self.count += 1;
    }
}

impl Schema {
    /// Learns from one stored event.
    pub fn observe(&mut self, event: &StoredEvent) {
        let name = match (&event.event_name, event.identify) {
            (_, true) => "identify".to_string(),
            (Some(name), false) => name.clone(),
            (None, false) => return,
        };
        let entry = self.events.entry(name).or_default();
        entry.touch(event.received_at);
        for (root, text) in [("properties", &event.properties), ("traits", &event.traits)] {
            if let Some(value) = text.as_deref().and_then(|t| serde_json::from_str(t).ok()) {
                learn_fields(&mut entry.fields, root, &value, event.received_at, 0);
            }
        }
    }
}

fn learn_fields(
    fields: &mut BTreeMap<String, Seen>,
    path: &str,
    value: &Value,
    at: i64,
    depth: usize,
) {
    if let Value::Object(object) = value
        && depth < MAX_DEPTH
    {
        for (key, inner) in object {
            learn_fields(fields, &format!("{path}.{key}"), inner, at, depth + 1);
        }
        return;
    }
    if depth == 0 {
        return;
    }
    if fields.len() >= MAX_FIELDS && !fields.contains_key(path) {
        return;
    }
    let field = fields.entry(path.to_string()).or_default();
    field.touch(at);
    field.types.insert(json_type(value).to_string());
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn location(
    store: &Store,
    workspace: &str,
) -> Result<(Box<dyn object_store::ObjectStore>, ObjectPath), StoreError> {
    let url = store
        .root()
        .join(&format!("{workspace}/state/schema.json"))
        .map_err(|e| root_error(store, e))?;
    object_store::parse_url(&url).map_err(|e| root_error(store, e))
}

fn root_error(store: &Store, e: impl std::fmt::Display) -> StoreError {
    StoreError::Root {
        root: store.root().to_string(),
        message: e.to_string(),
    }
}

/// The saved schema of `workspace` (empty when nothing was learned yet).
pub async fn load(store: &Store, workspace: &str) -> Result<Schema, StoreError> {
    let (objects, path) = location(store, workspace)?;
    match objects.get(&path).await {
        Ok(found) => {
            let bytes = found.bytes().await.map_err(|e| root_error(store, e))?;
            serde_json::from_slice(&bytes).map_err(|e| root_error(store, format!("{path}: {e}")))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(Schema::default()),
        Err(e) => Err(root_error(store, e)),
    }
}

/// Saves `schema` as `workspace`'s (replacing the earlier one whole).
pub async fn save(store: &Store, workspace: &str, schema: &Schema) -> Result<(), StoreError> {
    let (objects, path) = location(store, workspace)?;
    let bytes = serde_json::to_vec_pretty(schema).map_err(|e| root_error(store, e))?;
    objects
        .put(&path, bytes.into())
        .await
        .map_err(|e| root_error(store, e))?;
    Ok(())
}

/// One row per event name and field, for tables and `GET /v1/schema`.
pub fn rows(schema: &Schema) -> Vec<Value> {
    let time =
        |micros: i64| chrono::DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339());
    let mut rows = Vec::new();
    for (event, seen) in &schema.events {
        rows.push(serde_json::json!({
            "event": event, "field": null, "types": null, "count": seen.count,
            "first_seen": time(seen.first_seen), "last_seen": time(seen.last_seen),
        }));
        for (field, f) in &seen.fields {
            let types: Vec<&str> = f.types.iter().map(String::as_str).collect();
            rows.push(serde_json::json!({
                "event": event, "field": field, "types": types.join("|"), "count": f.count,
                "first_seen": time(f.first_seen), "last_seen": time(f.last_seen),
            }));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, properties: &str, at: i64) -> StoredEvent {
        StoredEvent {
            workspace: "shop".into(),
            received_at: at,
            event_id: "e".into(),
            identify: false,
            event_name: Some(name.into()),
            client_id: Some("c".into()),
            user_id: None,
            email: None,
            sent_at: None,
            properties: Some(properties.into()),
            traits: None,
            requires_identity: None,
            envelope: None,
        }
    }

    #[test]
    fn names_and_nested_field_paths_with_their_types() {
        let mut schema = Schema::default();
        schema.observe(&event(
            "cart",
            r#"{"value":10,"cart":{"sku":"A","n":1.5}}"#,
            20,
        ));
        schema.observe(&event("cart", r#"{"value":"ten","tags":["x"]}"#, 10));
        let cart = &schema.events["cart"];
        assert_eq!((cart.count, cart.first_seen, cart.last_seen), (2, 10, 20));
        let value = &cart.fields["properties.value"];
        assert_eq!(value.count, 2);
        assert_eq!(
            value.types.iter().map(String::as_str).collect::<Vec<_>>(),
            ["integer", "string"]
        );
        assert!(cart.fields["properties.cart.n"].types.contains("number"));
        assert!(cart.fields["properties.tags"].types.contains("array"));
        assert_eq!(rows(&schema).len(), 1 + cart.fields.len());
    }

    #[test]
    fn a_saved_schema_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(url::Url::from_directory_path(dir.path()).unwrap());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            assert_eq!(load(&store, "shop").await.unwrap(), Schema::default());
            let mut schema = Schema::default();
            schema.observe(&event("cart", r#"{"value":1}"#, 5));
            save(&store, "shop", &schema).await.unwrap();
            assert_eq!(load(&store, "shop").await.unwrap(), schema);
        });
    }
}
