//! Identity resolution (docs/reference.md "Triggers"): each row a trigger
//! returns is resolved to a contact (its `email`, else `identities` from
//! `client_id`, else from `user_id`), unresolved rows are dropped or kept
//! per `requires_identity`, and rows of the same match key (the contact,
//! and the `event_id` when selected) collapse to one match.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{cast, interleave_record_batch};
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;

use super::index::{AsOf, IdentityIndex, RowKeys};
use crate::digest_map::DigestMap;
use crate::store::ledger::{MatchRecord, digest_of};

/// Columns with a meaning of their own; every other column is the match's data.
pub const IDENTITY_COLUMNS: &[&str] = &["email", "user_id", "client_id", "requires_identity"];
/// Columns the resolution query adds.
const RESOLVED_EMAIL: &str = "__tripwire_email";
const RESOLVED_USER: &str = "__tripwire_user_id";
/// True when `identities` knew the row's client or user.
const IDENTIFIED: &str = "__tripwire_identified";
/// The row's position in the query's result, to keep its order.
const ROW: &str = "__tripwire_row";

/// What resolution made of a trigger's rows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resolution {
    /// Rows the query returned.
    pub matched: i64,
    /// Rows with a contact email, from the row or from identities.
    pub resolved: i64,
    pub unresolved: i64,
    /// Rows naming nobody (no email, user id or client id): dropped.
    pub dropped: i64,
    /// The rows (by their place in the query's result) that require an
    /// identity they do not have: they wait for one, or are dropped, as the
    /// trigger's `wait_for_identity` says (`identity::pending`).
    pub waiting: Vec<usize>,
    /// One per match key, in first-seen order (`ordinal` is the position).
    pub matches: Vec<MatchRecord>,
    /// The resolved rows, with the query's columns.
    pub rows: Vec<RecordBatch>,
    /// For each match, the (batch, row) in `rows` it was made from.
    pub chosen: Vec<(usize, usize)>,
}

/// Resolves `rows` (a trigger's result) against the identity index when
/// one is given and can answer at its clock, else against the session's
/// `identities` view.
pub async fn resolve(
    ctx: &SessionContext,
    rows: Vec<RecordBatch>,
    schema: arrow::datatypes::SchemaRef,
    requires_identity_default: bool,
    index: Option<(&IdentityIndex, AsOf)>,
) -> Result<Resolution, String> {
    let has = |name: &str| schema.column_with_name(name).is_some();
    if !has("email") && !has("user_id") && !has("client_id") {
        return Err(
            "the query must return at least one of the columns email, user_id, client_id".into(),
        );
    }
    let (numbered_schema, numbered) = number_rows(&schema, rows).map_err(|e| e.to_string())?;
    if let Some((index, at)) = index {
        match with_index(&numbered, index, at).map_err(|e| e.to_string())? {
            Some(resolved) => {
                let mut resolution = collapse(&resolved, requires_identity_default);
                resolution.rows = resolved;
                return Ok(resolution);
            }
            None => tracing::debug!(
                "identity index cannot answer at this clock: resolving with the identities view"
            ),
        }
    }
    let table = MemTable::try_new(numbered_schema, vec![numbered]).map_err(|e| e.to_string())?;
    let scoped = ctx.clone();
    crate::sql::replace_table(&scoped, "__tripwire_rows", std::sync::Arc::new(table))
        .map_err(|e| e.to_string())?;
    let column = |name: &str| format!("r.{name}");
    // A row's own user id wins over its client's: a shared device must not
    // pair one user with another's email (docs/reference.md "Identity").
    let sql = format!(
        "WITH by_user AS (SELECT user_id, email FROM identities WHERE client_id IS NULL)
         SELECT r.*,
                COALESCE({email}, own.email, by_client.email, client_user.email) AS {RESOLVED_EMAIL},
                COALESCE({user}, by_client.user_id) AS {RESOLVED_USER},
                (own.user_id IS NOT NULL OR by_client.client_id IS NOT NULL) AS {IDENTIFIED}
         FROM __tripwire_rows r
         LEFT JOIN by_user own ON own.user_id = {user}
         LEFT JOIN identities by_client ON by_client.client_id = {client}
         LEFT JOIN by_user client_user ON client_user.user_id = by_client.user_id
         ORDER BY r.{ROW}",
        email = column("email"),
        user = column("user_id"),
        client = column("client_id"),
    );
    let resolved = scoped
        .sql(&sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let _ = scoped.deregister_table("__tripwire_rows");
    let mut resolution = collapse(&resolved, requires_identity_default);
    resolution.rows = resolved;
    Ok(resolution)
}

/// `numbered` with the resolution's columns appended from `index`, or
/// `None` when a row's keys have identifies later than the clock.
fn with_index(
    numbered: &[RecordBatch],
    index: &IdentityIndex,
    at: AsOf,
) -> Result<Option<Vec<RecordBatch>>, arrow::error::ArrowError> {
    use arrow::array::{BooleanBuilder, StringBuilder};
    let mut out = Vec::with_capacity(numbered.len());
    for batch in numbered {
        let text = |name: &str| {
            cast(
                batch.column_by_name(name).expect("numbered"),
                &DataType::Utf8,
            )
        };
        let (email, user, client) = (text("email")?, text("user_id")?, text("client_id")?);
        let (email, user, client) = (
            email.as_string::<i32>(),
            user.as_string::<i32>(),
            client.as_string::<i32>(),
        );
        fn get(a: &arrow::array::StringArray, row: usize) -> Option<&str> {
            a.is_valid(row).then(|| a.value(row))
        }
        let mut emails = StringBuilder::new();
        let mut users = StringBuilder::new();
        let mut identified = BooleanBuilder::new();
        for row in 0..batch.num_rows() {
            let keys = RowKeys {
                email: get(email, row),
                user_id: get(user, row),
                client_id: get(client, row),
            };
            let Ok(resolved) = index.resolve(keys, at) else {
                return Ok(None);
            };
            emails.append_option(resolved.email);
            users.append_option(resolved.user_id);
            identified.append_value(resolved.identified);
        }
        let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(RESOLVED_EMAIL, DataType::Utf8, true)));
        fields.push(Arc::new(Field::new(RESOLVED_USER, DataType::Utf8, true)));
        fields.push(Arc::new(Field::new(IDENTIFIED, DataType::Boolean, true)));
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(emails.finish()));
        columns.push(Arc::new(users.finish()));
        columns.push(Arc::new(identified.finish()));
        out.push(RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(fields)),
            columns,
        )?);
    }
    Ok(Some(out))
}

/// Turns resolved rows into matches: one per contact (and `event_id`, if
/// selected). Rows are only compared while they compete; each match's
/// record is made once, from the row that won, and only the chosen rows'
/// data is written as JSON.
fn collapse(batches: &[RecordBatch], requires_identity_default: bool) -> Resolution {
    let mut out = Resolution::default();
    let columns: Vec<RowColumns> = batches.iter().map(RowColumns::of).collect();
    // Match key (`match_key`) to the match's place and the seq of the row
    // it is made from; each place's kind of contact.
    let mut index: DigestMap<u128, (usize, Option<i64>)> = DigestMap::default();
    let mut kinds: Vec<ContactKind> = Vec::new();
    let mut position = 0;
    for (batch_index, columns) in columns.iter().enumerate() {
        for row in 0..batches[batch_index].num_rows() {
            let at = position;
            position += 1;
            out.matched += 1;
            let (email, user_id, client_id) = columns.contact(row);
            let requires_identity = columns.requires(row).unwrap_or(requires_identity_default);
            let (kind, id) = match (email, user_id, client_id) {
                (None, None, None) => {
                    out.unresolved += 1;
                    out.dropped += 1;
                    continue;
                }
                (Some(e), _, _) => {
                    out.resolved += 1;
                    (ContactKind::Email, e)
                }
                // Known to identities by a user id only: a contact keyed by it.
                (None, Some(u), _) if columns.identified(row) => {
                    out.resolved += 1;
                    (ContactKind::User, u)
                }
                _ if requires_identity => {
                    out.unresolved += 1;
                    out.waiting.push(at);
                    continue;
                }
                (None, Some(u), _) => {
                    out.unresolved += 1;
                    (ContactKind::User, u)
                }
                (None, None, Some(c)) => {
                    out.unresolved += 1;
                    (ContactKind::Client, c)
                }
            };
            let digest = match_key(kind.prefix(), id, columns.event_id(row));
            let seq = columns.seq(row);
            let place = match index.get_mut(&digest) {
                // The row with the highest seq wins, else the first.
                Some((place, best)) => match (*best, seq) {
                    (Some(best_seq), Some(s)) if s > best_seq => {
                        *best = seq;
                        *place
                    }
                    _ => continue,
                },
                None => {
                    index.insert(digest, (kinds.len(), seq));
                    kinds.push(kind);
                    out.chosen.push((batch_index, row));
                    continue;
                }
            };
            out.chosen[place] = (batch_index, row);
        }
    }
    out.matches = out
        .chosen
        .iter()
        .zip(&kinds)
        .enumerate()
        .map(|(place, (&(batch, row), kind))| columns[batch].record(row, place, *kind))
        .collect();
    fill_data(&mut out, batches);
    out
}

/// Which of a row's keys names its contact.
#[derive(Debug, Clone, Copy)]
enum ContactKind {
    Email,
    User,
    Client,
}

impl ContactKind {
    fn prefix(self) -> &'static str {
        match self {
            ContactKind::Email => "email:",
            ContactKind::User => "user_id:",
            ContactKind::Client => "client_id:",
        }
    }
}

/// The digest of a row's match key: its contact (`kind`'s prefix and id)
/// and the `event_id` when selected, each part with its length in front
/// (`ledger::digest_of`), so no sender text can spell another key. Rows of
/// one digest are one match; two keys meeting on a digest is a 2^-128
/// chance, as ingest's dedupe accepts.
fn match_key(prefix: &str, id: &str, event_id: Option<&str>) -> u128 {
    match event_id {
        Some(event_id) => digest_of(&[prefix, id, event_id]),
        None => digest_of(&[prefix, id]),
    }
}

/// The columns of a resolved batch that make its rows' matches, as text
/// (absent columns read as null).
struct RowColumns {
    email: Option<ArrayRef>,
    user: Option<ArrayRef>,
    client: Option<ArrayRef>,
    event_id: Option<ArrayRef>,
    identified: Option<ArrayRef>,
    requires: Option<ArrayRef>,
    seq: Option<ArrayRef>,
}

impl RowColumns {
    fn of(batch: &RecordBatch) -> RowColumns {
        let typed =
            |name: &str, to: &DataType| batch.column_by_name(name).and_then(|c| cast(c, to).ok());
        RowColumns {
            email: typed(RESOLVED_EMAIL, &DataType::Utf8),
            user: typed(RESOLVED_USER, &DataType::Utf8),
            client: typed("client_id", &DataType::Utf8),
            event_id: typed("event_id", &DataType::Utf8),
            identified: typed(IDENTIFIED, &DataType::Boolean),
            requires: typed("requires_identity", &DataType::Boolean),
            seq: typed("seq", &DataType::Int64),
        }
    }

    /// The row's resolved email and user id, and its client id.
    fn contact(&self, row: usize) -> (Option<&str>, Option<&str>, Option<&str>) {
        (
            text(&self.email, row),
            text(&self.user, row),
            text(&self.client, row),
        )
    }

    /// The match made from `row`, the `place`th of the run, whose contact
    /// is its `kind` of key.
    fn record(&self, row: usize, place: usize, kind: ContactKind) -> MatchRecord {
        let (email, user_id, client_id) = self.contact(row);
        let id = match kind {
            ContactKind::Email => email,
            ContactKind::User => user_id,
            ContactKind::Client => client_id,
        };
        let owned = |v: Option<&str>| v.map(str::to_string);
        MatchRecord {
            ordinal: place as i64,
            contact: [kind.prefix(), id.unwrap_or_default()].concat(),
            event_id: owned(self.event_id(row)),
            email: owned(email),
            user_id: owned(user_id),
            client_id: owned(client_id),
            data: String::new(),
        }
    }

    fn event_id(&self, row: usize) -> Option<&str> {
        text(&self.event_id, row)
    }

    fn identified(&self, row: usize) -> bool {
        flag(&self.identified, row).unwrap_or(false)
    }

    fn requires(&self, row: usize) -> Option<bool> {
        flag(&self.requires, row)
    }

    fn seq(&self, row: usize) -> Option<i64> {
        let seq = self.seq.as_ref().filter(|a| a.is_valid(row))?;
        Some(seq.as_primitive::<arrow::datatypes::Int64Type>().value(row))
    }
}

fn text(column: &Option<ArrayRef>, row: usize) -> Option<&str> {
    let column = column.as_ref().filter(|a| a.is_valid(row))?;
    Some(column.as_string::<i32>().value(row))
}

fn flag(column: &Option<ArrayRef>, row: usize) -> Option<bool> {
    let column = column.as_ref().filter(|a| a.is_valid(row))?;
    Some(column.as_boolean().value(row))
}

/// Each match's `data`: its chosen row's data columns as a JSON object.
/// The chosen rows are picked out of all batches at once (as deferral picks
/// its rows), not looked for batch by batch.
fn fill_data(out: &mut Resolution, batches: &[RecordBatch]) {
    // arrow's interleave wants a batch to take its schema from.
    if out.chosen.is_empty() {
        return;
    }
    let batches: Vec<&RecordBatch> = batches.iter().collect();
    let chosen = interleave_record_batch(&batches, &out.chosen);
    let mut data = chosen
        .map(|c| data_json(&c))
        .unwrap_or_default()
        .into_iter();
    for found in &mut out.matches {
        found.data = data.next().unwrap_or_else(|| "{}".into());
    }
}

/// `rows` with a row-number column appended, so resolution keeps their order.
fn number_rows(
    schema: &arrow::datatypes::SchemaRef,
    rows: Vec<RecordBatch>,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>), arrow::error::ArrowError> {
    use arrow::datatypes::Field;
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    // Contact columns the query did not select are there, all null, so the
    // identity joins are always plain equi-joins (a join ON a NULL literal
    // is planned as a cross join).
    let absent: Vec<&str> = ["email", "user_id", "client_id"]
        .into_iter()
        .filter(|name| schema.column_with_name(name).is_none())
        .collect();
    for name in &absent {
        fields.push(std::sync::Arc::new(Field::new(*name, DataType::Utf8, true)));
    }
    fields.push(std::sync::Arc::new(Field::new(ROW, DataType::Int64, false)));
    let numbered_schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    let mut next = 0i64;
    let mut numbered = Vec::with_capacity(rows.len());
    for batch in rows {
        let count = batch.num_rows() as i64;
        let mut columns = batch.columns().to_vec();
        for _ in &absent {
            columns.push(arrow::array::new_null_array(
                &DataType::Utf8,
                batch.num_rows(),
            ));
        }
        columns.push(std::sync::Arc::new(
            arrow::array::Int64Array::from_iter_values(next..next + count),
        ));
        next += count;
        numbered.push(RecordBatch::try_new(numbered_schema.clone(), columns)?);
    }
    Ok((numbered_schema, numbered))
}

/// Each row's data columns (all but the identity ones) as a JSON object.
fn data_json(batch: &RecordBatch) -> Vec<String> {
    let schema = batch.schema();
    let keep: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            !IDENTITY_COLUMNS.contains(&f.name().as_str()) && !f.name().starts_with("__tripwire")
        })
        .map(|(i, _)| i)
        .collect();
    batch
        .project(&keep)
        .and_then(|projected| json_lines(&projected))
        .unwrap_or_default()
}

/// Each row of `batch` as a JSON object, by arrow's JSON writer: it escapes
/// every newline inside a value, so its lines are the rows.
pub(super) fn json_lines(batch: &RecordBatch) -> Result<Vec<String>, ArrowError> {
    let mut out = Vec::new();
    let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    let text = String::from_utf8(out).map_err(|e| ArrowError::JsonError(e.to_string()))?;
    Ok(text.split_terminator('\n').map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use arrow::array::{BooleanArray, Int64Array, StringArray};
    use arrow::datatypes::Schema;

    use super::*;

    /// Resolved rows of (email, event id, seq, cart).
    fn resolved(rows: &[(Option<&str>, Option<&str>, i64, &str)]) -> RecordBatch {
        let text = |values: Vec<Option<&str>>| Arc::new(StringArray::from(values)) as ArrayRef;
        let schema = Schema::new(vec![
            Field::new(RESOLVED_EMAIL, DataType::Utf8, true),
            Field::new(RESOLVED_USER, DataType::Utf8, true),
            Field::new("client_id", DataType::Utf8, true),
            Field::new(IDENTIFIED, DataType::Boolean, true),
            Field::new("event_id", DataType::Utf8, true),
            Field::new("seq", DataType::Int64, true),
            Field::new("cart", DataType::Utf8, true),
        ]);
        let columns = vec![
            text(rows.iter().map(|r| r.0).collect()),
            text(vec![None; rows.len()]),
            text(vec![None; rows.len()]),
            Arc::new(BooleanArray::from(vec![false; rows.len()])) as ArrayRef,
            text(rows.iter().map(|r| r.1).collect()),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            text(rows.iter().map(|r| Some(r.3)).collect()),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    #[test]
    fn rows_of_one_contact_collapse_to_the_highest_seq_with_its_data() {
        let first = resolved(&[
            (Some("a@x.com"), None, 5, "one"),
            (Some("b@x.com"), None, 1, "two"),
            (None, None, 2, "nobody"),
        ]);
        let second = resolved(&[(Some("a@x.com"), None, 9, "three")]);
        let resolution = collapse(&[first, second], false);
        assert_eq!((resolution.matched, resolution.resolved), (4, 3));
        assert_eq!(resolution.dropped, 1);
        let matches: Vec<(&str, &str, i64)> = resolution
            .matches
            .iter()
            .map(|m| (m.contact.as_str(), m.data.as_str(), m.ordinal))
            .collect();
        assert_eq!(
            matches,
            [
                ("email:a@x.com", r#"{"seq":9,"cart":"three"}"#, 0),
                ("email:b@x.com", r#"{"seq":1,"cart":"two"}"#, 1),
            ]
        );
        assert_eq!(resolution.chosen, [(1, 0), (0, 1)]);
    }

    #[test]
    fn no_contact_and_event_id_spell_another_pairs_match_key() {
        // Sender-controlled text: an email holding what would separate a
        // contact from an event id must not merge two matches.
        let rows = resolved(&[
            (Some("a+x"), None, 1, "one"),
            (Some("a"), Some("x"), 2, "two"),
            (Some("a-"), None, 3, "three"),
            (Some("a"), None, 4, "four"),
        ]);
        let resolution = collapse(&[rows], false);
        assert_eq!(resolution.matches.len(), 4);
    }

    #[test]
    fn a_run_with_no_rows_or_no_contacts_makes_no_matches() {
        assert!(collapse(&[], false).matches.is_empty());
        let nobody = resolved(&[]);
        assert!(collapse(&[nobody], false).matches.is_empty());
    }
}
