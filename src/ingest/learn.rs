//! Learning (the Flows seed): which event names a workspace receives and
//! which fields their payloads carry, with types, counts and first/last
//! seen, for `GET /v1/schema` and `tripwire schema`.
//!
//! The flusher feeds it (off the acknowledgement path) and saves it as
//! `<storage>/<workspace>/state/schema.json` when it changed, at most every
//! [`SAVE_EVERY`]; a crash loses at most that much learning, never events.
//!
//! Its size is bounded whatever senders invent: at most
//! `max_learned_names` event names per workspace (events with a new name
//! beyond that are counted in `unlearned`, not stored), at most
//! `max_learned_fields` field paths per name, and [`MAX_DEPTH`] levels.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::record::StoredEvent;
use crate::event::members::members;
use crate::store::{Store, StoreError};

/// The longest a learned change waits before it is saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Nesting deeper than this is learned as one `object` field.
const MAX_DEPTH: usize = 8;

/// How much one workspace's schema may hold (`max_learned_names`,
/// `max_learned_fields`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub names: usize,
    /// Field paths per event name.
    pub fields: usize,
}

/// What a workspace has been sent.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub events: BTreeMap<String, Seen>,
    /// Events whose name was new when the schema already held the most
    /// names it may: counted, never stored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unlearned: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// A field seen at `at` with a value of type `kind`.
    fn note(&mut self, kind: &str, at: i64) {
        self.touch(at);
        if !self.types.contains(kind) {
            self.types.insert(kind.to_string());
        }
    }

    fn touch(&mut self, at: i64) {
        if self.count == 0 || at < self.first_seen {
            self.first_seen = at;
        }
        self.last_seen = self.last_seen.max(at);
        self.count += 1;
    }
}

impl Schema {
    /// Learns from one stored event, within `bounds`.
    pub fn observe(&mut self, event: &StoredEvent, bounds: Bounds) {
        let name = match (&event.event_name, event.identify) {
            (_, true) => "identify",
            (Some(name), false) => name.as_ref(),
            (None, false) => return,
        };
        if !self.events.contains_key(name) {
            if self.events.len() >= bounds.names {
                self.unlearned += 1;
                return;
            }
            self.events.insert(name.to_string(), Seen::default());
        }
        let Some(entry) = self.events.get_mut(name) else {
            return;
        };
        entry.touch(event.received_at);
        let mut learning = Learning {
            fields: &mut entry.fields,
            path: String::with_capacity(64),
            at: event.received_at,
            most: bounds.fields,
        };
        for (root, text) in [("properties", &event.properties), ("traits", &event.traits)] {
            if let Some(text) = text.as_deref() {
                learning.path.clear();
                learning.path.push_str(root);
                learning.object(text, 0);
            }
        }
    }

    /// Cuts a schema saved under looser bounds down to `bounds`, keeping the
    /// most recently seen names and fields.
    pub fn bound(&mut self, bounds: Bounds) {
        keep_newest(&mut self.events, bounds.names);
        for seen in self.events.values_mut() {
            keep_newest(&mut seen.fields, bounds.fields);
        }
    }
}

/// Keeps the `most` entries seen last.
fn keep_newest(entries: &mut BTreeMap<String, Seen>, most: usize) {
    if entries.len() <= most {
        return;
    }
    let mut newest: Vec<(i64, String)> = entries
        .iter()
        .map(|(key, seen)| (seen.last_seen, key.clone()))
        .collect();
    newest.sort_unstable_by(|a, b| b.cmp(a));
    let kept: BTreeSet<String> = newest.into_iter().take(most).map(|(_, k)| k).collect();
    entries.retain(|key, _| kept.contains(key));
}

/// Learning the field paths of one event's objects. Values are read as
/// the JSON texts they were stored as (checked when they arrived): no
/// value is built, and nothing is allocated for a path already known.
struct Learning<'a> {
    fields: &'a mut BTreeMap<String, Seen>,
    /// The path of the object being read (`properties.cart`).
    path: String,
    at: i64,
    most: usize,
}

impl Learning<'_> {
    /// Learns each member of the object `text`, `depth` levels down, in
    /// key order; a key sent twice counts once, with its last value (as a
    /// JSON object has it).
    fn object(&mut self, text: &str, depth: usize) {
        let Some(mut members) = members(text) else {
            return;
        };
        members.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, (key, value)) in members.iter().enumerate() {
            if members.get(i + 1).is_some_and(|(next, _)| next == key) {
                continue;
            }
            let length = self.path.len();
            self.path.push('.');
            self.path.push_str(key);
            self.value(value, depth + 1);
            self.path.truncate(length);
        }
    }

    /// Learns the value at `path`: an object's members while within
    /// [`MAX_DEPTH`], else the value's type.
    fn value(&mut self, value: &str, depth: usize) {
        let kind = json_type(value);
        if kind == "object" && depth < MAX_DEPTH {
            return self.object(value, depth);
        }
        // One search of the map for a known path (a search compares keys).
        if let Some(field) = self.fields.get_mut(self.path.as_str()) {
            return field.note(kind, self.at);
        }
        if self.fields.len() < self.most {
            let field = self.fields.entry(self.path.clone()).or_default();
            field.note(kind, self.at);
        }
    }
}

/// The JSON type of a value's text, as serde_json reads it: an integer is
/// a number without point or exponent that fits 64 bits (`-0` is not).
fn json_type(value: &str) -> &'static str {
    match value.as_bytes().first() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ if value.parse::<u64>().is_ok() => "integer",
        _ if value.parse::<i64>().is_ok_and(|n| n < 0) => "integer",
        _ => "number",
    }
}

fn location(
    store: &Store,
    workspace: &str,
) -> Result<(std::sync::Arc<dyn object_store::ObjectStore>, ObjectPath), StoreError> {
    store.state_location(&format!("{workspace}/state/schema.json"))
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
    let bytes = serde_json::to_vec(schema).map_err(|e| root_error(store, e))?;
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

    const BOUNDS: Bounds = Bounds {
        names: 100,
        fields: 100,
    };

    fn event<'a>(name: &'a str, properties: &'a str, at: i64) -> StoredEvent<'a> {
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
        schema.observe(
            &event("cart", r#"{"value":10,"cart":{"sku":"A","n":1.5}}"#, 20),
            BOUNDS,
        );
        schema.observe(
            &event("cart", r#"{"value":"ten","tags":["x"]}"#, 10),
            BOUNDS,
        );
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
    fn types_are_those_serde_json_reads() {
        fn read(value: &Value) -> &'static str {
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
        for text in [
            "0",
            "-0",
            "7",
            "-7",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1.0",
            "1e2",
            "-0.0",
            r#""s""#,
            "true",
            "false",
            "null",
            "[1]",
            "{}",
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(json_type(text), read(&value), "{text}");
        }
    }

    #[test]
    fn a_key_sent_twice_counts_once_with_its_last_value() {
        let mut schema = Schema::default();
        let text = r#"{ "b" : {"x":1}, "a":"s", "b":true, "deep":{"c":{"d":[]}} }"#;
        schema.observe(&event("e", text, 1), BOUNDS);
        let fields = &schema.events["e"].fields;
        let paths: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            ["properties.a", "properties.b", "properties.deep.c.d"]
        );
        assert_eq!(fields["properties.b"].count, 1);
        assert!(fields["properties.b"].types.contains("boolean"));
    }

    #[test]
    fn a_saved_schema_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(url::Url::from_directory_path(dir.path()).unwrap());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            assert_eq!(load(&store, "shop").await.unwrap(), Schema::default());
            let mut schema = Schema::default();
            schema.observe(&event("cart", r#"{"value":1}"#, 5), BOUNDS);
            save(&store, "shop", &schema).await.unwrap();
            assert_eq!(load(&store, "shop").await.unwrap(), schema);
        });
    }

    #[test]
    fn names_and_fields_beyond_the_bounds_are_counted_not_stored() {
        let bounds = Bounds {
            names: 2,
            fields: 3,
        };
        let mut schema = Schema::default();
        for (i, name) in ["a", "b", "c", "d", "a"].iter().enumerate() {
            schema.observe(&event(name, r#"{"x":1}"#, i as i64), bounds);
        }
        assert_eq!(schema.events.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(schema.events["a"].count, 2, "known names still count");
        assert_eq!(schema.unlearned, 2);
        schema.observe(&event("a", r#"{"p":1,"q":2,"r":3,"s":4}"#, 9), bounds);
        assert_eq!(schema.events["a"].fields.len(), 3);
        let text = serde_json::to_string(&schema).unwrap();
        assert_eq!(serde_json::from_str::<Schema>(&text).unwrap(), schema);
    }

    #[test]
    fn a_schema_saved_under_looser_bounds_is_cut_to_the_newest() {
        let loose = Bounds {
            names: 10,
            fields: 10,
        };
        let mut schema = Schema::default();
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            schema.observe(&event(name, r#"{"x":1,"y":2}"#, i as i64), loose);
        }
        schema.bound(Bounds {
            names: 2,
            fields: 1,
        });
        assert_eq!(schema.events.keys().collect::<Vec<_>>(), ["mid", "new"]);
        assert!(schema.events.values().all(|s| s.fields.len() == 1));
    }
}
