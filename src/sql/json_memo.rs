//! JSON lookups remembered for a tick (docs/architecture.md "Ticks"): the
//! same document and the same path give the same answer, so a tick parses
//! each `properties` document once per path, however many of its triggers
//! ask. A trigger reads a key in its `WHERE` and again in its `SELECT`,
//! and the triggers of one event read the same keys of the same rows; each
//! read was a parse. [`install`] wraps the session's JSON getters so that a
//! lookup first digests the document (xxh3, 128 bits, seeded by the path
//! and a salt drawn per session) and answers from the tick's memo, parsing
//! only the documents it has not seen. The digest is not cryptographic: two
//! documents with one digest would share an answer. The random salt keeps
//! a sender from crafting such a pair against a known seed.
//!
//! Only calls whose path is literal are remembered (`json_get_float(
//! properties, 'cart_value')`); a path taken from a column is passed
//! through. The memo lives as long as the session (one tick) and stops
//! growing when its answers and index hold [`MEMO_BYTES`] (all functions
//! together); lookups past that parse as before.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::json_member;
use crate::digest_map::DigestMap;
use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::compute::{interleave, take};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;
use xxhash_rust::xxh3::{xxh3_64_with_seed, xxh3_128_with_seed};

/// The getters whose answers are remembered: each returns one scalar per
/// document and path.
const REMEMBERED: &[&str] = &[
    "json_get_str",
    "json_get_int",
    "json_get_float",
    "json_get_bool",
    "json_get_json",
    "json_as_text",
    "json_contains",
    "json_length",
];

/// Memory a session's memo may hold, answers and index together: a
/// 200,000-row window's numbers over a few paths take a few MB; long text
/// answers (`json_get_json` of big objects) stop being remembered here.
pub const MEMO_BYTES: usize = 64 << 20;

/// Index memory per remembered answer (digest, place, the map's slack).
const INDEX_BYTES_PER_ANSWER: usize = 48;

/// Replaces the session's JSON getters with remembering ones; on a
/// cluster the executors run the plain functions, so nothing changes.
pub fn install(ctx: &SessionContext) {
    if super::cluster::scheduler().is_some() {
        return;
    }
    let held = Arc::new(AtomicUsize::new(0));
    let salt = uuid::Uuid::new_v4().as_u64_pair().0;
    for name in REMEMBERED {
        if let Ok(inner) = ctx.udf(name) {
            let memo = Remembering {
                inner: Arc::clone(inner.inner()),
                memo: Arc::default(),
                held: Arc::clone(&held),
                salt,
            };
            ctx.register_udf(ScalarUDF::new_from_impl(memo));
        }
    }
}

/// A JSON function with a memo of its answers.
#[derive(Debug)]
struct Remembering {
    inner: Arc<dyn ScalarUDFImpl>,
    memo: Arc<Mutex<Memo>>,
    /// Bytes the session's memos hold, against [`MEMO_BYTES`].
    held: Arc<AtomicUsize>,
    /// Mixed into every seed, drawn per session.
    salt: u64,
}

impl PartialEq for Remembering {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.memo, &other.memo)
    }
}

impl Eq for Remembering {}

impl Hash for Remembering {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
    }
}

/// Answers computed so far: `chunks` hold them as arrays, `at` finds a
/// (document digest → chunk, row).
#[derive(Debug, Default)]
struct Memo {
    chunks: Vec<ArrayRef>,
    at: DigestMap<u128, (u32, u32)>,
}

impl ScalarUDFImpl for Remembering {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn placement(
        &self,
        args: &[datafusion::logical_expr::ExpressionPlacement],
    ) -> datafusion::logical_expr::ExpressionPlacement {
        self.inner.placement(args)
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(seed) = literal_path_seed(&args.args, args.return_type(), self.salt) else {
            return self.inner.invoke_with_args(args);
        };
        let ColumnarValue::Array(documents) = &args.args[0] else {
            return self.inner.invoke_with_args(args);
        };
        let Some(digests) = digests(documents, seed) else {
            return self.inner.invoke_with_args(args);
        };
        let documents = Arc::clone(documents);
        self.answer(args, &documents, &digests)
            .map(ColumnarValue::Array)
    }
}

impl Remembering {
    /// The answers for `documents`: remembered ones looked up, the rest
    /// computed by the wrapped function in one call and remembered.
    fn answer(
        &self,
        args: ScalarFunctionArgs,
        documents: &ArrayRef,
        digests: &[Option<u128>],
    ) -> Result<ArrayRef> {
        let mut found = Vec::with_capacity(digests.len());
        let mut missing = Vec::new();
        {
            let memo = self.memo.lock().expect("json memo lock");
            for (row, digest) in digests.iter().enumerate() {
                match digest.and_then(|d| memo.at.get(&d)) {
                    Some(&(chunk, at)) => found.push(Some((chunk, at))),
                    None => {
                        found.push(None);
                        missing.push(row as u32);
                    }
                }
            }
        }
        if missing.len() == digests.len() {
            let answers = self.compute(args, documents, None)?;
            self.remember(&answers, digests.iter().copied());
            return Ok(answers);
        }
        let computed = match missing.is_empty() {
            true => None,
            false => {
                let rows = UInt32Array::from(missing);
                let answers = self.compute(args, documents, Some(&rows))?;
                let missed = rows.values().iter().map(|&row| digests[row as usize]);
                self.remember(&answers, missed);
                Some(answers)
            }
        };
        self.assemble(&found, computed)
    }

    /// Runs the wrapped function on `documents` (or the `rows` of them):
    /// on the values of a top-level key when the scan finds them
    /// ([`super::json_member`]), else on the whole documents.
    fn compute(
        &self,
        mut args: ScalarFunctionArgs,
        documents: &ArrayRef,
        rows: Option<&UInt32Array>,
    ) -> Result<ArrayRef> {
        if let Some(rows) = rows {
            args.args[0] = ColumnarValue::Array(take(documents.as_ref(), rows, None)?);
            args.number_rows = rows.len();
        }
        let rows = args.number_rows;
        if let Some(by_member) = json_member::by_member(self.inner.name(), &args) {
            args = by_member;
        }
        self.inner.invoke_with_args(args)?.into_array(rows)
    }

    /// Keeps `answers` and where each digest's answer is in them.
    fn remember(&self, answers: &ArrayRef, digests: impl Iterator<Item = Option<u128>>) {
        let cost = answers.get_array_memory_size() + answers.len() * INDEX_BYTES_PER_ANSWER;
        let mut memo = self.memo.lock().expect("json memo lock");
        let held = self.held.fetch_add(cost, Ordering::Relaxed);
        if held + cost > MEMO_BYTES || memo.chunks.len() >= u32::MAX as usize {
            self.held.fetch_sub(cost, Ordering::Relaxed);
            return;
        }
        let chunk = memo.chunks.len() as u32;
        memo.chunks.push(Arc::clone(answers));
        for (row, digest) in digests.enumerate() {
            if let Some(digest) = digest {
                memo.at.insert(digest, (chunk, row as u32));
            }
        }
    }

    /// The batch's answers in row order, from the memo's chunks and the
    /// ones just `computed` (for the rows not `found`, in order).
    fn assemble(
        &self,
        found: &[Option<(u32, u32)>],
        computed: Option<ArrayRef>,
    ) -> Result<ArrayRef> {
        let memo = self.memo.lock().expect("json memo lock");
        let mut sources: Vec<&dyn Array> = Vec::new();
        let mut source_of: HashMap<u32, usize> = HashMap::new();
        if let Some(computed) = computed.as_ref() {
            sources.push(computed.as_ref());
        }
        let mut next_missing = 0;
        let mut picks = Vec::with_capacity(found.len());
        for slot in found {
            match *slot {
                Some((chunk, at)) => {
                    let source = *source_of.entry(chunk).or_insert_with(|| {
                        sources.push(memo.chunks[chunk as usize].as_ref());
                        sources.len() - 1
                    });
                    picks.push((source, at as usize));
                }
                None => {
                    picks.push((0, next_missing));
                    next_missing += 1;
                }
            }
        }
        Ok(interleave(&sources, &picks)?)
    }
}

/// A seed naming the path (and the answer's type) when every argument
/// after the document is a literal (none: the path varies by row, nothing
/// is remembered).
fn literal_path_seed(args: &[ColumnarValue], answer: &DataType, salt: u64) -> Option<u64> {
    let mut path = format!("{answer:?}\u{0}");
    for arg in args.get(1..)? {
        match arg {
            ColumnarValue::Scalar(value) => path.push_str(&path_part(value)),
            ColumnarValue::Array(_) => return None,
        }
    }
    Some(xxh3_64_with_seed(path.as_bytes(), salt))
}

/// One path element, typed so that `'1'` and `1` differ.
fn path_part(value: &ScalarValue) -> String {
    format!("{:?}\u{0}", value)
}

/// Each document's digest (none for a null document), or none when the
/// documents are not text.
fn digests(documents: &ArrayRef, seed: u64) -> Option<Vec<Option<u128>>> {
    let digest = |text: Option<&str>| text.map(|t| xxh3_128_with_seed(t.as_bytes(), seed));
    Some(match documents.data_type() {
        DataType::Utf8 => documents.as_string::<i32>().iter().map(digest).collect(),
        DataType::LargeUtf8 => documents.as_string::<i64>().iter().map(digest).collect(),
        DataType::Utf8View => documents.as_string_view().iter().map(digest).collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};
    use datafusion::catalog::MemTable;

    fn documents() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("properties", DataType::Utf8, true),
        ]));
        let names = StringArray::from(vec!["a", "b", "a", "b", "a"]);
        let properties = StringArray::from(vec![
            Some(r#"{"v": 1.5, "w": "x"}"#),
            Some(r#"{"v": 2}"#),
            None,
            Some(r#"{"v": 1.5, "w": "x"}"#),
            Some(r#"not json"#),
        ]);
        RecordBatch::try_new(schema, vec![Arc::new(names), Arc::new(properties)]).unwrap()
    }

    async fn session(remembering: bool) -> SessionContext {
        let ctx = crate::sql::new_context().unwrap();
        if remembering {
            install(&ctx);
        }
        let batch = documents();
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches).unwrap();
        text.to_string().lines().map(str::to_string).collect()
    }

    #[tokio::test]
    async fn remembered_answers_equal_parsed_ones_in_every_shape_of_query() {
        let queries = [
            "SELECT json_get_float(properties, 'v') AS v, json_get_str(properties, 'w') AS w FROM t",
            "SELECT name, json_get_float(properties, 'v') AS v FROM t \
             WHERE name = 'a' AND json_get_float(properties, 'v') > 1",
            "SELECT json_get_int(properties, 'v') AS i, json_contains(properties, 'w') AS c, \
             json_length(properties) AS n FROM t WHERE name = 'b'",
            "SELECT json_get_str(properties, name) AS by_column FROM t",
        ];
        let plain = session(false).await;
        let remembering = session(true).await;
        for name in REMEMBERED {
            let udf = remembering.udf(name).unwrap();
            let inner: &dyn std::any::Any = udf.inner().as_ref();
            assert!(inner.is::<Remembering>(), "{name} is remembering");
        }
        for sql in queries {
            let expected = rows(&plain, sql).await;
            // Twice: the second answers from the memo.
            assert_eq!(rows(&remembering, sql).await, expected, "{sql}");
            assert_eq!(rows(&remembering, sql).await, expected, "{sql}");
        }
    }

    #[tokio::test]
    async fn a_path_is_part_of_what_is_remembered() {
        let ctx = session(true).await;
        let first = rows(&ctx, "SELECT json_get_str(properties, 'w') AS w FROM t").await;
        let other = rows(&ctx, "SELECT json_get_str(properties, 'v') AS w FROM t").await;
        assert_ne!(first, other, "a different key is looked up, not remembered");
    }

    /// `json_get_float(document, 'v')` through `getter`, for each document.
    fn get_v(getter: &Remembering, docs: Vec<Option<&str>>) -> Float64Array {
        let documents: ArrayRef = Arc::new(StringArray::from(docs));
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(Arc::clone(&documents)),
                ColumnarValue::Scalar(ScalarValue::from("v")),
            ],
            arg_fields: vec![
                Arc::new(Field::new("p", DataType::Utf8, true)),
                Arc::new(Field::new("k", DataType::Utf8, false)),
            ],
            number_rows: documents.len(),
            return_field: Arc::new(Field::new("v", DataType::Float64, true)),
            config_options: Arc::default(),
        };
        let ColumnarValue::Array(answers) = getter.invoke_with_args(args).unwrap() else {
            panic!("an array")
        };
        answers
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone()
    }

    /// A remembering `json_get_float` whose session already holds `held` bytes.
    fn float_getter(held: usize) -> Remembering {
        Remembering {
            inner: Arc::clone(datafusion_functions_json::udfs::json_get_float_udf().inner()),
            memo: Arc::default(),
            held: Arc::new(AtomicUsize::new(held)),
            salt: 7,
        }
    }

    #[test]
    fn a_batch_mixing_remembered_and_new_documents_keeps_its_row_order() {
        let getter = float_getter(0);
        let first = get_v(&getter, vec![Some(r#"{"v": 1}"#), Some(r#"{"v": 2}"#)]);
        assert_eq!(first, Float64Array::from(vec![1.0, 2.0]));
        let mixed = get_v(
            &getter,
            vec![
                Some(r#"{"v": 3}"#),
                Some(r#"{"v": 2}"#),
                None,
                Some(r#"{"v": 1}"#),
                Some(r#"{"v": 4}"#),
            ],
        );
        let expected = Float64Array::from(vec![Some(3.0), Some(2.0), None, Some(1.0), Some(4.0)]);
        assert_eq!(mixed, expected);
        assert_eq!(
            getter.memo.lock().unwrap().at.len(),
            4,
            "each document once"
        );
        assert!(
            getter.held.load(Ordering::Relaxed) > 0,
            "what it holds is counted"
        );
    }

    #[test]
    fn a_full_memo_answers_by_parsing_and_remembers_nothing_more() {
        let getter = float_getter(MEMO_BYTES);
        for _ in 0..2 {
            let answers = get_v(&getter, vec![Some(r#"{"v": 7}"#), None]);
            assert_eq!(answers, Float64Array::from(vec![Some(7.0), None]));
        }
        assert!(getter.memo.lock().unwrap().at.is_empty());
        assert_eq!(getter.held.load(Ordering::Relaxed), MEMO_BYTES);
    }
}
