//! Arrow rows as text for the page's tables: every value formatted as
//! `tripwire query` prints it, nulls kept apart (shown greyed, not as an
//! empty string), and times from the ledger's microseconds.

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Rows of text under named columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Table {
    pub columns: Vec<String>,
    /// `None` is SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    /// The rows of `batches`, at most `limit` of them.
    pub fn from_batches(batches: &[RecordBatch], limit: usize) -> Result<Table, String> {
        let mut table = Table::default();
        let options = FormatOptions::default().with_display_error(true);
        for batch in batches {
            if table.columns.is_empty() {
                table.columns = batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
            }
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            for row in 0..batch.num_rows() {
                if table.rows.len() >= limit {
                    return Ok(table);
                }
                let cells = batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(column, f)| (!column.is_null(row)).then(|| f.value(row).to_string()))
                    .collect();
                table.rows.push(cells);
            }
        }
        Ok(table)
    }

    /// The column's cell in `row`, if the column exists and is not null.
    pub fn cell(&self, row: usize, column: &str) -> Option<&str> {
        let at = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(at)?.as_deref()
    }

    /// The column's cell in `row` as a number (0 when null or not one).
    pub fn number(&self, row: usize, column: &str) -> i64 {
        self.cell(row, column)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// A time from microseconds since the epoch, as the page shows times
/// (UTC, to the second).
pub fn when(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// How long before `now` something happened: `12s`, `5m`, `3h`, `2d`.
pub fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - then).num_seconds().max(0);
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3_600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn rows_keep_nulls_apart_and_stop_at_the_limit() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(StringArray::from(vec![Some("a"), Some(""), None])),
            ],
        )
        .unwrap();
        let table = Table::from_batches(&[batch.clone(), batch], 4).unwrap();
        assert_eq!(table.columns, vec!["n", "s"]);
        assert_eq!(table.rows.len(), 4);
        assert_eq!(table.rows[1], vec![None, Some(String::new())]);
        assert_eq!(table.cell(0, "s"), Some("a"));
        assert_eq!(table.number(2, "n"), 3);
        assert_eq!(table.number(1, "n"), 0);
        assert_eq!(table.cell(0, "nope"), None);
    }

    #[test]
    fn times_and_ages() {
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(when(now.timestamp_micros()), "2027-01-15 08:00:00");
        assert_eq!(ago(now - chrono::Duration::seconds(42), now), "42s");
        assert_eq!(ago(now - chrono::Duration::minutes(90), now), "1h");
        assert_eq!(ago(now - chrono::Duration::days(3), now), "3d");
        assert_eq!(ago(now + chrono::Duration::days(3), now), "0s");
    }
}
