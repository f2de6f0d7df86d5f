//! Webhook body templates (docs/reference.md "Flows"): minijinja with JSON
//! auto-escaping, so `{{ data.note }}` prints a JSON value (a string comes
//! out quoted and escaped) and no event property can add keys to a body.
//! The `safe` filter, which would print a value raw, is removed. Each
//! template is compiled once, when its flow file is read; a rendered body
//! that is not valid JSON is refused. `check` renders every template
//! against a sample match typed like its trigger's output ([`sample_data`]).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow::datatypes::{Field, Schema};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::{Map, Value};

/// The name the template is kept under in its environment.
const NAME: &str = "body";

/// How much of an invalid body an error message quotes.
const QUOTED_BODY_CHARS: usize = 200;

/// The sample every text column and contact field gets in `check`: quotes,
/// braces and a backslash, which break a body that does not escape them.
pub const HOSTILE_SAMPLE: &str = r#"he said "hi"}, "x": {"y": 1} \ {{ z }}"#;

/// Sample texts tried, in order, for a column of any type: the first that
/// casts to the column's type without becoming null is its sample.
const TYPED_SAMPLES: [&str; 5] = [
    HOSTILE_SAMPLE,
    "42",
    "true",
    "2026-11-05T00:00:00",
    "2026-11-05",
];

/// A compiled body template; compared and printed by its source.
#[derive(Clone)]
pub struct BodyTemplate {
    source: String,
    env: Arc<Environment<'static>>,
}

impl BodyTemplate {
    /// Compiles `source`; the error says what is wrong with it.
    pub fn compile(source: &str) -> Result<BodyTemplate, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::Json);
        env.remove_filter("safe");
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| format!("body template: {e}"))?;
        Ok(BodyTemplate {
            source: source.to_string(),
            env: Arc::new(env),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The body for `context`: valid JSON, or why not.
    pub fn render(&self, context: &Value) -> Result<String, String> {
        let body = self
            .env
            .get_template(NAME)
            .and_then(|t| t.render(context))
            .map_err(|e| format!("body template: {e}"))?;
        match serde_json::from_str::<serde::de::IgnoredAny>(&body) {
            Ok(_) => Ok(body),
            Err(e) => Err(format!(
                "body template: the body is not valid JSON ({e}); values print as JSON, so write \
                 {{\"note\": {{{{ data.note }}}}}}, not \"{{{{ data.note }}}}\": {}",
                quoted(&body)
            )),
        }
    }
}

impl PartialEq for BodyTemplate {
    fn eq(&self, other: &BodyTemplate) -> bool {
        self.source == other.source
    }
}

impl std::fmt::Debug for BodyTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BodyTemplate").field(&self.source).finish()
    }
}

fn quoted(body: &str) -> String {
    let mut start: String = body.chars().take(QUOTED_BODY_CHARS).collect();
    if start.len() < body.len() {
        start.push('…');
    }
    start
}

/// A match's `data` for `columns` (the data columns of a trigger's output):
/// one typed, non-null sample per column where the type allows one, in the
/// JSON form a run gives it (Arrow's JSON writer, as `identity::resolve`).
pub fn sample_data(columns: &[Field]) -> Value {
    let arrays: Vec<ArrayRef> = columns.iter().map(|f| sample_value(f)).collect();
    let fields: Vec<Field> = columns
        .iter()
        .map(|f| f.clone().with_nullable(true))
        .collect();
    let written = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .ok()
        .and_then(|batch| {
            let mut out = Vec::new();
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(&mut out);
            writer.write(&batch).ok()?;
            writer.finish().ok()?;
            drop(writer);
            serde_json::from_slice::<Value>(&out).ok()
        });
    written.unwrap_or_else(|| {
        let nulls: Map<String, Value> = columns
            .iter()
            .map(|f| (f.name().clone(), Value::Null))
            .collect();
        Value::Object(nulls)
    })
}

/// One row of `field`'s type: the first of [`TYPED_SAMPLES`] that casts to
/// it, else null (structs and other types with no text form).
fn sample_value(field: &Field) -> ArrayRef {
    TYPED_SAMPLES
        .iter()
        .find_map(|text| {
            let cast = arrow::compute::cast(&StringArray::from(vec![*text]), field.data_type());
            cast.ok().filter(|array| array.is_valid(0))
        })
        .unwrap_or_else(|| new_null_array(field.data_type(), 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, TimeUnit};
    use serde_json::json;

    #[test]
    fn values_print_as_json_so_a_hostile_string_stays_one_value() {
        let template =
            BodyTemplate::compile(r#"{"note": {{ data.note }}, "n": {{ data.n }}}"#).unwrap();
        let note = r#"he said "hi"}, "x": 1"#;
        let body = template
            .render(&json!({"data": {"note": note, "n": 1.5}}))
            .unwrap();
        assert_eq!(body, r#"{"note": "he said \"hi\"}, \"x\": 1", "n": 1.5}"#);
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed, json!({"note": note, "n": 1.5}));
    }

    #[test]
    fn a_body_that_is_not_json_and_the_safe_filter_are_refused() {
        let quoted = BodyTemplate::compile(r#"{"note": "{{ data.note }}"}"#).unwrap();
        let e = quoted.render(&json!({"data": {"note": "x"}})).unwrap_err();
        assert!(e.contains("not valid JSON"), "{e}");
        let raw = BodyTemplate::compile(r#"{"note": {{ data.note | safe }}}"#).unwrap();
        let e = raw
            .render(&json!({"data": {"note": "1, \"x\": 2"}}))
            .unwrap_err();
        assert!(e.contains("safe"), "{e}");
        assert!(BodyTemplate::compile("{{ data.note ").is_err());
    }

    #[test]
    fn samples_are_typed_like_the_columns_and_not_null() {
        let columns = [
            Field::new("note", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("v", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("day", DataType::Date32, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            Field::new(
                "pair",
                DataType::Struct(vec![Field::new("a", DataType::Int64, true)].into()),
                true,
            ),
        ];
        let data = sample_data(&columns);
        assert_eq!(data["note"], HOSTILE_SAMPLE);
        assert_eq!(data["n"], 42);
        assert_eq!(data["v"], 42.0);
        assert_eq!(data["ok"], true);
        assert!(data["at"].as_str().unwrap().starts_with("2026-11-05"));
        assert_eq!(data["day"], "2026-11-05");
        assert_eq!(data["tags"], json!([HOSTILE_SAMPLE]));
        assert_eq!(data["pair"], Value::Null, "no text form: null, but present");
    }
}
