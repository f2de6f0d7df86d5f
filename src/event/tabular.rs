//! Rows of CSV or Parquet files whose columns are named as the `events`
//! table's (docs/reference.md "Tables"). Any other column becomes a field of `properties`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::scan::{MAX_JSON_DEPTH, check_json};
use super::{EventKind, ParsedEvent, parse_time};

/// What a column of an input file means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    EventId,
    Type,
    EventName,
    ClientId,
    UserId,
    Email,
    SentAt,
    Properties,
    Traits,
    RequiresIdentity,
    /// Assigned by tripwire on import (`seq`, `received_at`, `envelope`).
    Ignored,
    /// Not a table column: becomes `properties.<name>`.
    Payload,
}

/// The column layout of one input file, read from its header.
#[derive(Debug, Clone)]
pub struct Columns {
    names: Vec<String>,
    roles: Vec<Role>,
}

impl Columns {
    pub fn new(names: Vec<String>) -> Result<Columns, String> {
        let roles: Vec<Role> = names.iter().map(|n| role_of(n)).collect();
        let has = |r: Role| roles.contains(&r);
        if !has(Role::EventName) && !has(Role::Type) {
            return Err(format!(
                "no event_name column (columns are: {}); columns are named as the events table's",
                names.join(", ")
            ));
        }
        Ok(Columns { names, roles })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Parses one row; `value(i)` is column `i`'s text, `None` or empty when missing.
    pub fn parse_row<'a>(
        &self,
        value: impl Fn(usize) -> Option<&'a str>,
    ) -> Result<ParsedEvent<'a>, String> {
        let get = |role: Role| {
            self.roles
                .iter()
                .position(|r| *r == role)
                .and_then(&value)
                .filter(|v| !v.is_empty())
        };
        let kind = get(Role::Type).map_or(Ok(EventKind::Track), EventKind::parse)?;
        let mut event = ParsedEvent::new(kind);
        event.event_id = get(Role::EventId).map(Cow::Borrowed);
        event.event_name = get(Role::EventName).map(Cow::Borrowed);
        event.client_id = get(Role::ClientId).map(Cow::Borrowed);
        event.user_id = get(Role::UserId).map(Cow::Borrowed);
        event.email = get(Role::Email).map(Cow::Borrowed);
        event.sent_at = get(Role::SentAt)
            .map(|t| parse_time(t).map_err(|e| format!("sent_at: {e}")))
            .transpose()?;
        event.requires_identity = get(Role::RequiresIdentity).map(parse_bool).transpose()?;
        event.traits = get(Role::Traits)
            .map(|t| json_object(t, "traits"))
            .transpose()?
            .map(Cow::Borrowed);
        event.properties = self.properties(get(Role::Properties), &value)?;
        event.validate()
    }

    /// The `properties` column merged with every payload column.
    fn properties<'a>(
        &self,
        column: Option<&'a str>,
        value: &impl Fn(usize) -> Option<&'a str>,
    ) -> Result<Option<Cow<'a, str>>, String> {
        let extras: Vec<(&str, &str)> = self
            .roles
            .iter()
            .enumerate()
            .filter(|(_, r)| **r == Role::Payload)
            .filter_map(|(i, _)| {
                value(i)
                    .filter(|v| !v.is_empty())
                    .map(|v| (self.names[i].as_str(), v))
            })
            .collect();
        let base = column.map(|t| json_object(t, "properties")).transpose()?;
        if extras.is_empty() {
            return Ok(base.map(Cow::Borrowed));
        }
        let mut object: Map<String, Value> = match base {
            Some(text) => serde_json::from_str(text).map_err(|e| format!("properties: {e}"))?,
            None => Map::new(),
        };
        for (name, text) in extras {
            object.insert(name.to_string(), infer_value(text));
        }
        Ok(Some(Cow::Owned(Value::Object(object).to_string())))
    }
}

/// What a typed input's column (Parquet) must hold, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Text only: `type`, `event_name`, `email`, `properties`, `traits`.
    Text,
    /// Text or an integer (ids are often numeric): `event_id`, `client_id`, `user_id`.
    Id,
    /// A timestamp, a date, integer epoch milliseconds, or text: `sent_at`.
    Time,
    /// A boolean or text: `requires_identity`.
    Bool,
    /// Anything: payload columns and the ones tripwire assigns itself.
    Free,
}

impl ColumnKind {
    /// The kind of the column named `name`.
    pub fn of(name: &str) -> ColumnKind {
        match role_of(name) {
            Role::Type | Role::EventName | Role::Email | Role::Properties | Role::Traits => {
                ColumnKind::Text
            }
            Role::EventId | Role::ClientId | Role::UserId => ColumnKind::Id,
            Role::SentAt => ColumnKind::Time,
            Role::RequiresIdentity => ColumnKind::Bool,
            Role::Ignored | Role::Payload => ColumnKind::Free,
        }
    }

    /// What the column must hold, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            ColumnKind::Text => "text",
            ColumnKind::Id => "text or integers",
            ColumnKind::Time => "a timestamp, a date, integer epoch milliseconds or text",
            ColumnKind::Bool => "booleans or text",
            ColumnKind::Free => "any value",
        }
    }
}

fn role_of(name: &str) -> Role {
    match name {
        "event_id" => Role::EventId,
        "type" => Role::Type,
        "event_name" => Role::EventName,
        "client_id" => Role::ClientId,
        "user_id" => Role::UserId,
        "email" => Role::Email,
        "sent_at" => Role::SentAt,
        "properties" => Role::Properties,
        "traits" => Role::Traits,
        "requires_identity" => Role::RequiresIdentity,
        "seq" | "received_at" | "envelope" => Role::Ignored,
        _ => Role::Payload,
    }
}

/// `text` if it is a JSON object held to the rules of every event's JSON
/// (`scan`: nesting, escapes, numbers).
fn json_object<'a>(text: &'a str, column: &str) -> Result<&'a str, String> {
    check_json(text, MAX_JSON_DEPTH).map_err(|e| format!("{column}: {e}"))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(_)) => Ok(text),
        Ok(_) => Err(format!("{column} must be a JSON object")),
        Err(e) => Err(format!("{column} is not JSON: {e}")),
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("requires_identity: {text:?} is not true or false")),
    }
}

/// A payload cell as JSON: numbers and booleans keep their type, the rest is text.
fn infer_value(text: &str) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
    {
        return Value::from(f);
    }
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> Columns {
        Columns::new(names.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn payload_columns_become_properties() {
        let cols = columns(&["event_name", "email", "sent_at", "cart_value", "sku"]);
        let row = [
            "cart_abandoned",
            "a@b.c",
            "2024-01-01T00:00:00Z",
            "120.5",
            "X1",
        ];
        let e = cols.parse_row(|i| Some(row[i])).unwrap();
        assert_eq!(e.event_name.as_deref(), Some("cart_abandoned"));
        let props: Value = serde_json::from_str(e.properties.as_deref().unwrap()).unwrap();
        assert_eq!(props["cart_value"], 120.5);
        assert_eq!(props["sku"], "X1");
    }

    #[test]
    fn properties_column_is_merged() {
        let cols = columns(&["event_name", "user_id", "properties", "n"]);
        let row = ["e", "u", r#"{"a":1}"#, "2"];
        let e = cols.parse_row(|i| Some(row[i])).unwrap();
        let props: Value = serde_json::from_str(e.properties.as_deref().unwrap()).unwrap();
        assert_eq!(props, serde_json::json!({"a": 1, "n": 2}));
    }

    #[test]
    fn bad_rows_say_why() {
        let cols = columns(&["event_name", "user_id", "requires_identity", "properties"]);
        let bad = ["e", "u", "maybe", ""];
        assert!(
            cols.parse_row(|i| Some(bad[i]))
                .unwrap_err()
                .contains("requires_identity")
        );
        let bad = ["e", "u", "", "[1]"];
        assert!(
            cols.parse_row(|i| Some(bad[i]))
                .unwrap_err()
                .contains("properties")
        );
        assert!(
            Columns::new(vec!["x".into()])
                .unwrap_err()
                .contains("event_name")
        );
    }

    #[test]
    fn json_columns_are_held_to_the_rules_of_every_event() {
        let cols = columns(&["event_name", "user_id", "properties"]);
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70));
        for (properties, why) in [
            (deep.as_str(), "deeper than 64"),
            (r#"{"n":1e999}"#, "64-bit float"),
            (r#"{"s":"\ud800"}"#, "surrogate"),
        ] {
            let row = ["e", "u", properties];
            let err = cols.parse_row(|i| Some(row[i])).unwrap_err();
            assert!(
                err.starts_with("properties: ") && err.contains(why),
                "{err}"
            );
        }
    }
}
