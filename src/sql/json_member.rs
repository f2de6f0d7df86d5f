//! A top-level member's value found by a quick scan, for the JSON getters
//! (docs/architecture.md "Query layer"). `json_get_float(properties,
//! 'cart_value')` parsed each whole document with jiter to reach one key:
//! every key before it decoded, every value before it walked token by
//! token. Most trigger conditions read one top-level key, and `properties`
//! holds JSON tripwire checked when it stored it, so the scan here only
//! steps over what comes before the key, with the scan that splits checked
//! objects at import (`event::members`): strings to their closing quote,
//! objects and arrays to their matching bracket. The getter then reads the
//! value's text alone, with the same function (`json_get_float(value)`),
//! so its answer is the one the whole document gives.
//!
//! What the scan cannot answer exactly as jiter would it reports as
//! [`Member::Unsure`] (a key with escapes, which jiter compares unescaped;
//! an array at the top, whose elements a key may index; anything that does
//! not split as an object), and the caller asks jiter about the whole
//! document instead. Only a document that is not JSON at all can be
//! answered differently: jiter refuses grammar it meets before the key,
//! the scan steps over it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};

use crate::event::members::{Pairs, skip_blanks};

/// The getters whose answer for a top-level key is their answer for that
/// key's value: each returns null for a missing key, as for a null value.
/// (`json_contains`, `json_length` and the JSON-returning ones differ.)
pub const BY_MEMBER: &[&str] = &[
    "json_get_str",
    "json_get_int",
    "json_get_float",
    "json_get_bool",
];

/// What the scan found for one key of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member<'a> {
    /// The JSON text of the first member with the key.
    Value(&'a str),
    /// No such member (or not an object, which the getters answer null).
    Absent,
    /// Ask a full parser.
    Unsure,
}

/// The first top-level member `key` of `document`, found with the scan
/// that splits checked objects (`event::members`).
pub fn member<'a>(document: &'a str, key: &str) -> Member<'a> {
    let bytes = document.as_bytes();
    let open = skip_blanks(bytes, 0);
    match bytes.get(open) {
        Some(b'{') => {}
        Some(b'[') => return Member::Unsure,
        _ => return Member::Absent,
    }
    for pair in Pairs::after(document, open) {
        let Ok((token, value)) = pair else {
            return Member::Unsure;
        };
        let name = &token[1..token.len() - 1];
        if name.contains('\\') {
            return Member::Unsure;
        }
        if name == key {
            return Member::Value(value);
        }
    }
    Member::Absent
}

/// The getter `name`'s arguments with the document replaced by the value
/// of its top-level key, and no path: when `name` answers so, the path is
/// one literal key, and the scan is sure of every document. `None` leaves
/// the call as it was.
pub fn by_member(name: &str, args: &ScalarFunctionArgs) -> Option<ScalarFunctionArgs> {
    if !BY_MEMBER.contains(&name) {
        return None;
    }
    let [ColumnarValue::Array(documents), ColumnarValue::Scalar(path)] = &args.args[..] else {
        return None;
    };
    let key = match path {
        ScalarValue::Utf8(Some(key))
        | ScalarValue::LargeUtf8(Some(key))
        | ScalarValue::Utf8View(Some(key)) => key.as_str(),
        _ => return None,
    };
    let values: ArrayRef = Arc::new(values_of(documents, key)?);
    let mut field = args.arg_fields.first()?.as_ref().clone();
    field.set_data_type(DataType::Utf8);
    Some(ScalarFunctionArgs {
        args: vec![ColumnarValue::Array(values)],
        arg_fields: vec![Arc::new(field)],
        number_rows: args.number_rows,
        return_field: Arc::clone(&args.return_field),
        config_options: Arc::clone(&args.config_options),
    })
}

/// Each document's value of `key` (null when absent), or `None` when the
/// documents are not text or the scan is unsure of one.
fn values_of(documents: &ArrayRef, key: &str) -> Option<StringArray> {
    match documents.data_type() {
        DataType::Utf8 => values(documents.as_string::<i32>().iter(), key),
        DataType::LargeUtf8 => values(documents.as_string::<i64>().iter(), key),
        DataType::Utf8View => values(documents.as_string_view().iter(), key),
        _ => None,
    }
}

fn values<'a>(documents: impl Iterator<Item = Option<&'a str>>, key: &str) -> Option<StringArray> {
    documents
        .map(|document| match document.map(|d| member(d, key)) {
            None | Some(Member::Absent) => Some(None),
            Some(Member::Value(text)) => Some(Some(text)),
            Some(Member::Unsure) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use datafusion::logical_expr::ScalarUDF;
    use datafusion_functions_json::udfs;

    /// Documents of every kind a getter meets: the scan must answer each
    /// as jiter answers the whole document, or leave it to jiter.
    const DOCUMENTS: &[&str] = &[
        r#"{"v": 1.5, "w": "x", "n": 7, "b": true}"#,
        r#"{"cart": {"items": [{"sku": "S-1", "qty": 3, "price": 1.5}], "v": 9}, "v": "964.05"}"#,
        r#"{"v": 2, "v": 3, "w": null, "b": false}"#,
        r#"{"w": "a \"quoted\" {text}", "v": [1, 2], "n": "12"}"#,
        r#"{"w": "\u00e9t\u00e9", "v": -0.0, "n": 9007199254740993}"#,
        r#"{"v": 1e400, "n": -12, "b": "true"}"#,
        r#"{"n": 12.0, "v": {"v": 1}, "w": ["x"]}"#,
        r#"  {  "v"  :  4  ,  "w" : "é"  }  "#,
        r#"{"v\u0077": 1, "v": 5}"#,
        r#"[{"v": 1}, 2]"#,
        r#"{}"#,
        r#""v""#,
        r#"17"#,
        r#"not json"#,
        r#"{"v": 1"#,
        r#"{"w": "x", "v": tru}"#,
    ];

    /// `name(document, key)` for each document, with or without the scan.
    fn answers(udf: &ScalarUDF, documents: &ArrayRef, key: &str, scan: bool) -> Option<ArrayRef> {
        let return_field = udf
            .return_field_from_args(datafusion::logical_expr::ReturnFieldArgs {
                arg_fields: &[
                    Arc::new(Field::new("p", DataType::Utf8, true)),
                    Arc::new(Field::new("k", DataType::Utf8, false)),
                ],
                scalar_arguments: &[None, Some(&ScalarValue::from(key))],
            })
            .unwrap();
        let mut args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(Arc::clone(documents)),
                ColumnarValue::Scalar(ScalarValue::from(key)),
            ],
            arg_fields: vec![
                Arc::new(Field::new("p", DataType::Utf8, true)),
                Arc::new(Field::new("k", DataType::Utf8, false)),
            ],
            number_rows: documents.len(),
            return_field,
            config_options: Arc::default(),
        };
        if scan {
            args = by_member(udf.name(), &args)?;
        }
        let rows = args.number_rows;
        Some(
            udf.invoke_with_args(args)
                .unwrap()
                .into_array(rows)
                .unwrap(),
        )
    }

    #[test]
    fn each_getter_answers_from_the_value_as_from_the_whole_document() {
        let getters = [
            udfs::json_get_str_udf(),
            udfs::json_get_int_udf(),
            udfs::json_get_float_udf(),
            udfs::json_get_bool_udf(),
        ];
        let names: Vec<&str> = getters.iter().map(|g| g.name()).collect();
        assert_eq!(names, BY_MEMBER);
        let mut scanned = 0;
        for document in DOCUMENTS {
            let one: ArrayRef = Arc::new(StringArray::from(vec![Some(*document), None]));
            for getter in &getters {
                for key in ["v", "w", "n", "b", "vw", "missing", "0"] {
                    let whole = answers(getter, &one, key, false).unwrap();
                    if let Some(by_value) = answers(getter, &one, key, true) {
                        scanned += 1;
                        assert_eq!(&by_value, &whole, "{}({document}, {key})", getter.name());
                    }
                }
            }
        }
        assert!(scanned > 300, "most answers come from the scan ({scanned})");
    }

    #[test]
    fn a_batch_the_scan_is_unsure_of_is_left_as_it_was() {
        let documents: ArrayRef = Arc::new(StringArray::from(vec![r#"{"v": 1}"#, r#"[1]"#]));
        let getter = udfs::json_get_float_udf();
        assert!(answers(&getter, &documents, "v", true).is_none());
        let contains = udfs::json_contains_udf();
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(Arc::clone(&documents)),
                ColumnarValue::Scalar(ScalarValue::from("v")),
            ],
            arg_fields: vec![],
            number_rows: 2,
            return_field: Arc::new(Field::new("c", DataType::Boolean, true)),
            config_options: Arc::default(),
        };
        assert!(
            by_member(contains.name(), &args).is_none(),
            "not a getter by member"
        );
    }

    #[test]
    fn finds_the_first_member_with_the_key_after_any_value() {
        let document = r#" { "a" : {"x": "}\"]", "y": [1, {"z": "{"}]}, "b":"q\\\"" ,
            "n": -1.5e3, "t": true, "cart_value": 964.05, "cart_value": 1 } "#;
        assert_eq!(member(document, "cart_value"), Member::Value("964.05"));
        assert_eq!(member(document, "n"), Member::Value("-1.5e3"));
        assert_eq!(member(document, "t"), Member::Value("true"));
        assert_eq!(member(document, "b"), Member::Value(r#""q\\\"""#));
        assert_eq!(
            member(document, "a"),
            Member::Value(r#"{"x": "}\"]", "y": [1, {"z": "{"}]}"#)
        );
        assert_eq!(member(document, "x"), Member::Absent, "not at the top");
        assert_eq!(member(document, "missing"), Member::Absent);
    }

    #[test]
    fn what_a_full_parser_must_answer_is_left_to_it() {
        // jiter compares keys unescaped; an array's elements are indexed.
        assert_eq!(member(r#"{"c\u0061rt": 1}"#, "cart"), Member::Unsure);
        assert_eq!(member(r#"[{"a": 1}]"#, "0"), Member::Unsure);
        for broken in [
            r#"{"a" 1}"#,
            r#"{"a": 1 "b": 2}"#,
            r#"{"a": "#,
            r#"{"a": {"b": 1}"#,
            r#"{1: 2}"#,
        ] {
            assert_eq!(member(broken, "b"), Member::Unsure, "{broken}");
        }
        // Not an object: every getter answers null.
        for other in ["", "  ", "1", r#""{\"a\": 1}""#, "{}", "{ }"] {
            assert_eq!(member(other, "a"), Member::Absent, "{other:?}");
        }
    }
}
