//! The query layer (docs/architecture.md "Query layer"): DataFusion
//! sessions with the JSON functions, filter pushdown and a memory cap;
//! workspace tables registered as table providers; read-only checks and
//! hints for analyst SQL. `session` composes a workspace's whole session.
//!
//! - `cluster`: `[engine] ballista`: analysts' sessions executed on a Ballista cluster.
//! - `json_memo`: a tick's JSON lookups, each document and path parsed once.
//! - `json_placement`: the JSON functions run on the rows filters keep.
//! - `ledger`: the ledger's views (`runs`, `matches`, `deliveries`, `attempts`).
//! - `limits`: `query_memory` (one pool for the process) and `query_timeout`.
//! - `locate`: the line of the query an error is about.
//! - `output`: query results as a table, CSV or JSON lines.

pub mod cluster;
pub mod json_member;
pub mod json_memo;
pub mod json_placement;
pub mod lazy_schema;
pub mod ledger;
pub mod limits;
pub mod locate;
pub mod output;

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Statement;
use deltalake_core::DeltaTable;

use crate::store::{StoreError, TableKind};

/// Why a query did not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The analyst's SQL is wrong or not allowed (the user's to fix).
    #[error("{0}")]
    Sql(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("query engine: {0}")]
    Engine(String),
}

/// A session with the JSON functions, filter pushdown and the process's
/// spilling memory pool (`query_memory`, see `limits`).
pub fn new_context() -> Result<SessionContext, QueryError> {
    let state = SessionStateBuilder::new()
        .with_config(session_config())
        .with_runtime_env(limits::runtime()?)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(json_placement::JsonConjunctsLast))
        .build();
    let mut ctx = SessionContext::new_with_state(state);
    datafusion_functions_json::register_all(&mut ctx)
        .map_err(|e| QueryError::Engine(e.to_string()))?;
    json_placement::keep_above_filters(&ctx);
    Ok(ctx)
}

/// The settings every session starts from: filter pushdown into Parquet.
pub fn session_config() -> SessionConfig {
    SessionConfig::new()
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true)
}

/// Registers `provider` as `name`, replacing a table of that name: sessions
/// shared by the runs of a tick register each run's tables over the last's.
pub fn replace_table(
    ctx: &SessionContext,
    name: &str,
    provider: Arc<dyn TableProvider>,
) -> datafusion::error::Result<()> {
    ctx.deregister_table(name)?;
    ctx.register_table(name, provider)?;
    Ok(())
}

/// A table provider over `table`, or an empty table of `kind`'s schema.
pub(crate) async fn delta_provider(
    ctx: &SessionContext,
    table: Option<DeltaTable>,
    kind: TableKind,
) -> Result<Arc<dyn TableProvider>, QueryError> {
    match table {
        Some(table) if cluster::scheduler().is_some() => cluster::file_list_provider(&table).await,
        Some(table) => {
            table
                .update_datafusion_session(&ctx.state())
                .map_err(|e| QueryError::Engine(e.to_string()))?;
            table.table_provider().await.map_err(engine)
        }
        None => Ok(Arc::new(
            MemTable::try_new(kind.schema(), vec![vec![]]).map_err(engine)?,
        )),
    }
}

pub(crate) fn engine(e: datafusion::error::DataFusionError) -> QueryError {
    QueryError::Engine(e.to_string())
}

/// Runs one read-only statement and returns its rows (executing the plan
/// its check made: a query is planned once).
pub async fn run_read_only(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<RecordBatch>, QueryError> {
    let (_, plan) = plan_read_only_physical(ctx, sql).await?;
    datafusion::physical_plan::collect(plan, ctx.task_ctx())
        .await
        .map_err(|e| QueryError::Sql(limits::explain_memory(explain_error(sql, &e.to_string()))))
}

/// Plans one read-only statement, down to the physical plan so type errors
/// surface here rather than mid-run. DDL, DML, COPY and SET are refused
/// before anything runs.
pub async fn plan_read_only(ctx: &SessionContext, sql: &str) -> Result<DataFrame, QueryError> {
    plan_read_only_physical(ctx, sql)
        .await
        .map(|(frame, _)| frame)
}

/// [`plan_read_only`], with the physical plan it made: run it (a trigger's
/// evaluation) rather than plan the frame a second time.
pub async fn plan_read_only_physical(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(DataFrame, Arc<dyn ExecutionPlan>), QueryError> {
    refuse_writes(sql)?;
    if let Some(pitfall) = json_precedence_pitfall(sql) {
        return Err(QueryError::Sql(pitfall));
    }
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let explain =
        |e: datafusion::error::DataFusionError| QueryError::Sql(explain_error(sql, &e.to_string()));
    let frame = ctx.sql_with_options(sql, options).await.map_err(explain)?;
    let plan = frame
        .clone()
        .create_physical_plan()
        .await
        .map_err(explain)?;
    Ok((frame, plan))
}

/// Checks the statement kind up front (with DataFusion's own parser, which
/// knows its `COPY … TO` and `CREATE EXTERNAL TABLE`), so the refusal names
/// what was refused.
fn refuse_writes(sql: &str) -> Result<(), QueryError> {
    let statements = DFParser::parse_sql(sql).map_err(|e| {
        let message = e.to_string();
        QueryError::Sql(match message.contains("RecursionLimitExceeded") {
            true => format!(
                "the query nests expressions too deeply for the parser (recursion limit exceeded: {message}); \
                 flatten it, e.g. with IN (...) lists or CASE"
            ),
            false => format!("SQL syntax error: {e}"),
        })
    })?;
    if statements.len() != 1 {
        return Err(QueryError::Sql(format!(
            "give exactly one SQL statement (found {})",
            statements.len()
        )));
    }
    match refused_kind(&statements[0]) {
        None => Ok(()),
        Some(refused) => Err(QueryError::Sql(format!(
            "{refused} refused: tripwire's SQL is read-only (SELECT, WITH, EXPLAIN)"
        ))),
    }
}

/// What kind of write `statement` is, if it is one.
fn refused_kind(statement: &DFStatement) -> Option<&'static str> {
    match statement {
        DFStatement::CopyTo(_) => Some("COPY"),
        DFStatement::CreateExternalTable(_) => Some("DDL and other statements"),
        DFStatement::Reset(_) => Some("SET"),
        DFStatement::Explain(explain) => refused_kind(&explain.statement),
        DFStatement::Statement(statement) => match statement.as_ref() {
            Statement::Query(_) => None,
            Statement::Explain { statement, .. } => {
                refused_kind(&DFStatement::Statement(statement.clone()))
            }
            Statement::Copy { .. } | Statement::CopyIntoSnowflake { .. } => Some("COPY"),
            Statement::Set(_) => Some("SET"),
            Statement::Insert(_)
            | Statement::Update { .. }
            | Statement::Delete(_)
            | Statement::Merge { .. } => Some("data changes (INSERT, UPDATE, DELETE, MERGE)"),
            _ => Some("DDL and other statements"),
        },
    }
}

/// Operators that bind tighter than `->>`, so `x->>'k' = 'v'` means
/// `x->>('k' = 'v')`: never what the analyst meant.
const BINDS_TIGHTER: &[&str] = &[
    "=", "<", ">", "!", "+", "-", "*", "/", "%", "|", "LIKE", "ILIKE", "IS ", "IN ", "IN(",
];

/// Finds `->'key' <op>` / `->>'key' <op>`, which DataFusion reads as the
/// operator applied to the key. Found before planning so `tripwire check`
/// reports it, not just the first run that reaches it.
fn json_precedence_pitfall(sql: &str) -> Option<String> {
    let mut from = 0;
    while let Some(found) = sql[from..].find("->") {
        let arrow = from + found;
        let after_arrow = arrow
            + if sql[arrow..].starts_with("->>") {
                3
            } else {
                2
            };
        from = after_arrow;
        let rest = sql[after_arrow..].trim_start();
        let Some(key) = rest.strip_prefix('\'') else {
            continue;
        };
        let Some(end) = key.find('\'') else {
            continue;
        };
        let next = key[end + 1..].trim_start();
        if next.starts_with("->") {
            continue; // a chained path: x->'a'->>'b'
        }
        let upper = next.get(..6).unwrap_or(next).to_ascii_uppercase();
        if BINDS_TIGHTER.iter().any(|op| upper.starts_with(op)) {
            let line = sql[..arrow].matches('\n').count() + 1;
            let operand = sql[..arrow]
                .split_whitespace()
                .last()
                .unwrap_or("properties");
            let key_text = &key[..end];
            return Some(format!(
                "at Line: {line}: `{operand}{}'{key_text}'` is followed by an operator, which \
                 applies to '{key_text}' first: `->>` binds more loosely than comparisons and \
                 arithmetic; write ({operand}{}'{key_text}') …, or json_get_float({operand}, \
                 '{key_text}') for numbers",
                &sql[arrow..after_arrow],
                &sql[arrow..after_arrow],
            ));
        }
    }
    None
}

/// Adds a hint an analyst understands to errors the JSON operators cause.
pub fn explain_error(sql: &str, message: &str) -> String {
    let json_operator = sql.contains("->>") || sql.contains("->");
    let type_trouble = [
        "coerce",
        "Cannot infer",
        "No function matches",
        "type",
        "Type",
    ]
    .iter()
    .any(|t| message.contains(t));
    if json_operator && type_trouble {
        format!(
            "{message}\nhint: `->>` binds more loosely than comparisons and arithmetic: write \
             (properties->>'x') = 'v', and use json_get_float(properties, 'x') or \
             json_get_int(...) for numbers"
        )
    } else {
        cluster::explain_unreachable(message, cluster::scheduler())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3 MB file of 100k rows (a compacted window) is read by two cores:
    /// written with tripwire's settings it has two row groups, and a session
    /// splits files over 1 MB by row groups (DataFusion's
    /// `repartition_file_min_size`).
    #[tokio::test]
    async fn a_compacted_window_file_is_read_by_two_cores() {
        use arrow::array::{Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use datafusion::prelude::ParquetReadOptions;
        let rows: usize = 100_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("seq", DataType::Int64, false),
            Field::new("properties", DataType::Utf8, false),
        ]));
        // Text that compresses little, so the file is a few MB as a window's is.
        let mut state = 7u64;
        let text: Vec<String> = (0..rows)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                format!("{{\"cart_value\":{}}}", state)
            })
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                Arc::new(StringArray::from_iter_values(text)),
            ],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("window.parquet");
        let file = std::fs::File::create(&path).unwrap();
        let properties = crate::store::table::writer_properties();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(file, schema, Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        let metadata = writer.close().unwrap();
        assert_eq!(metadata.num_row_groups(), 2, "100k rows in 64k-row groups");
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size > 1 << 20, "{size} bytes");

        let ctx = SessionContext::new_with_config(session_config().with_target_partitions(2));
        let path = path.to_str().unwrap();
        ctx.register_parquet("window", path, ParquetReadOptions::default())
            .await
            .unwrap();
        let frame = ctx
            .sql("SELECT seq FROM window WHERE seq % 7 = 0")
            .await
            .unwrap();
        let plan = frame.create_physical_plan().await.unwrap();
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        assert!(text.contains("file_groups={2 groups"), "{text}");
        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
            .await
            .unwrap();
        let counted: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(counted, rows.div_ceil(7));
    }

    #[test]
    fn the_json_operator_pitfall_is_found_with_its_line() {
        let wrong = "SELECT 1\nFROM events WHERE properties->>'coupon' = 'FALL10'";
        let message = json_precedence_pitfall(wrong).unwrap();
        assert!(message.contains("Line: 2"), "{message}");
        assert!(message.contains("(properties->>'coupon')"), "{message}");
        assert!(json_precedence_pitfall("SELECT properties->'a' + 1 FROM events").is_some());
        assert!(json_precedence_pitfall("SELECT x->>'k' LIKE 'a%' FROM t").is_some());
        for right in [
            "SELECT (properties->>'coupon') = 'FALL10' FROM events",
            "SELECT properties->>'coupon' AS c FROM events",
            "SELECT properties->>'coupon', 1 FROM events",
            "SELECT properties->>'coupon' FROM events WHERE x = 1",
            "SELECT properties->'shipping'->>'city' FROM events",
        ] {
            assert_eq!(json_precedence_pitfall(right), None, "{right}");
        }
    }

    #[test]
    fn writes_are_refused_by_kind_with_datafusion_syntax_too() {
        let kind = |sql: &str| match refuse_writes(sql) {
            Ok(()) => "allowed".to_string(),
            Err(e) => e.to_string(),
        };
        assert!(
            kind("COPY (SELECT 1) TO 'x.parquet' STORED AS PARQUET").starts_with("COPY refused")
        );
        assert!(kind("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 'x.csv'").starts_with("DDL"));
        assert!(kind("EXPLAIN COPY (SELECT 1) TO 'x.parquet'").starts_with("COPY refused"));
        assert_eq!(kind("WITH a AS (SELECT 1) SELECT * FROM a"), "allowed");
        assert_eq!(kind("EXPLAIN SELECT 1"), "allowed");
    }
}
