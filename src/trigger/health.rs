//! Whether a trigger is paused (docs/reference.md "Triggers"): a run that
//! fails because of its data is retried on the same window, but after
//! `max_run_failures` failures in a row the trigger is paused, with its
//! last error shown, until `tripwire resume TRIGGER [--skip]`. Its failed
//! runs and resumes are in the ledger; this module reads them.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use deltalake_core::DeltaTable;

use crate::sql::{QueryError, delta_provider, engine, new_context};
use crate::store::TableKind;

/// A trigger's latest failures in a row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Streak {
    /// Failed runs since its last committed run or resume.
    pub failures: u32,
    /// The latest failure's error.
    pub last_error: Option<String>,
}

impl Streak {
    /// Whether the trigger is paused at `max_failures` (0: never paused).
    pub fn paused(&self, max_failures: u32) -> bool {
        max_failures > 0 && self.failures >= max_failures
    }
}

/// One ledger row of a trigger's history, newest first: its kind and error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub kind: String,
    pub error: Option<String>,
}

/// Counts the failures at the head of `newest_first` (a run without an
/// error or a resume ends the streak).
pub fn streak(newest_first: &[Outcome]) -> Streak {
    let mut streak = Streak::default();
    for outcome in newest_first {
        match (outcome.kind.as_str(), &outcome.error) {
            ("run", Some(error)) => {
                streak.failures += 1;
                streak.last_error.get_or_insert_with(|| error.clone());
            }
            _ => break,
        }
    }
    streak
}

/// The trigger's current streak, reading at most `limit` of its latest
/// runs and resumes.
pub async fn current_streak(
    ledger: &DeltaTable,
    trigger: &str,
    limit: u32,
) -> Result<Streak, QueryError> {
    let mut streaks = current_streaks(ledger, &[trigger], limit).await?;
    Ok(streaks.remove(trigger).unwrap_or_default())
}

/// Each of `triggers`' current streak, in one read of the ledger (a tick's
/// triggers share it); a trigger without runs has none.
pub async fn current_streaks(
    ledger: &DeltaTable,
    triggers: &[&str],
    limit: u32,
) -> Result<HashMap<String, Streak>, QueryError> {
    if triggers.is_empty() {
        return Ok(HashMap::new());
    }
    let ctx = new_context()?;
    let rows = delta_provider(&ctx, Some(ledger.clone()), TableKind::Ledger).await?;
    ctx.register_table("ledger", rows).map_err(engine)?;
    let sql = format!(
        "SELECT trigger, kind, error FROM (
           SELECT trigger, kind, error, finished_at,
                  row_number() OVER (PARTITION BY trigger ORDER BY finished_at DESC) AS newest
           FROM ledger
           WHERE kind IN ('run', 'resume') AND trigger IN ({})
         ) WHERE newest <= {}
         ORDER BY trigger, finished_at DESC",
        quoted_list(triggers),
        limit.saturating_add(1)
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?;
    let mut histories: HashMap<String, Vec<Outcome>> = HashMap::new();
    for batch in &batches {
        let text = |i: usize| {
            arrow::compute::cast(batch.column(i), &DataType::Utf8)
                .map_err(|e| QueryError::Engine(e.to_string()))
        };
        let (names, kinds, errors) = (text(0)?, text(1)?, text(2)?);
        let (names, kinds, errors) = (
            names.as_string::<i32>(),
            kinds.as_string::<i32>(),
            errors.as_string::<i32>(),
        );
        for i in 0..batch.num_rows() {
            histories
                .entry(names.value(i).to_string())
                .or_default()
                .push(Outcome {
                    kind: kinds.value(i).to_string(),
                    error: errors.is_valid(i).then(|| errors.value(i).to_string()),
                });
        }
    }
    Ok(histories
        .into_iter()
        .map(|(name, history)| (name, streak(&history)))
        .collect())
}

/// `'a', 'b'`: names as SQL string literals.
pub fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(error: Option<&str>) -> Outcome {
        Outcome {
            kind: "run".into(),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn failures_count_back_to_the_last_success_or_resume() {
        let resume = Outcome {
            kind: "resume".into(),
            error: None,
        };
        let history = [run(Some("b")), run(Some("a")), run(None), run(Some("old"))];
        let s = streak(&history);
        assert_eq!((s.failures, s.last_error.as_deref()), (2, Some("b")));
        assert!(!s.paused(3) && s.paused(2) && !s.paused(0));
        assert_eq!(
            streak(&[run(Some("x")), resume, run(Some("y"))]).failures,
            1
        );
        assert_eq!(streak(&[]).failures, 0);
    }
}
