//! Where the JSON functions run in a plan (docs/architecture.md "Query
//! layer"): on the rows a query's other conditions keep, not on every row.
//! Parsing `properties` is most of a trigger's cost, and a tick runs many
//! triggers over one window: `WHERE event_name = 'x' AND
//! json_get_float(properties, 'v') > 10` must parse only the `x` events.
//!
//! - The functions over a literal path ask DataFusion to move them next to
//!   the scan (`MoveTowardsLeafNodes`, meant for cheap struct field
//!   access), which computes them for every row below the filter: the two
//!   rules that move them are dropped ([`keep_above_filters`]).
//! - DataFusion evaluates `a AND b` lazily only when `a` keeps at most a
//!   fifth of a batch; [`JsonConjunctsLast`] splits a filter so that its
//!   conditions without JSON run first, as a filter of their own, and the
//!   JSON ones see only the rows that passed. (A filter pushed into a
//!   Parquet scan already applies its conditions one after the other.)

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr, conjunction, split_conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::prelude::SessionContext;

/// Drops DataFusion's rules that move "cheap" expressions (the JSON
/// functions among them) below filters, next to the scan.
pub fn keep_above_filters(ctx: &SessionContext) {
    for rule in ["extract_leaf_expressions", "push_down_leaf_projections"] {
        ctx.remove_optimizer_rule(rule);
    }
}

/// The physical rule splitting a filter's JSON conditions from the rest.
#[derive(Debug, Default)]
pub struct JsonConjunctsLast;

impl PhysicalOptimizerRule for JsonConjunctsLast {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(split_filter).map(|t| t.data)
    }

    fn name(&self) -> &str {
        "json_conjuncts_last"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `Filter(plain AND json)` → `Filter(json)` over `Filter(plain)`; the
/// outer filter keeps the original's projection and limit.
fn split_filter(node: Arc<dyn ExecutionPlan>) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    let Some(filter) = node.downcast_ref::<FilterExec>() else {
        return Ok(Transformed::no(node));
    };
    let (json, plain): (Vec<_>, Vec<_>) = split_conjunction(filter.predicate())
        .into_iter()
        .cloned()
        .partition(calls_json);
    if json.is_empty() || plain.is_empty() {
        return Ok(Transformed::no(node));
    }
    let first = FilterExecBuilder::new(conjunction(plain), filter.input().clone())
        .with_default_selectivity(filter.default_selectivity())
        .build()?;
    let then = FilterExecBuilder::from(filter)
        .with_input(Arc::new(first))
        .with_predicate(conjunction(json))
        .build()?;
    Ok(Transformed::yes(Arc::new(then)))
}

/// Whether `expr` calls a JSON function anywhere.
fn calls_json(expr: &Arc<dyn PhysicalExpr>) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        let json = e
            .downcast_ref::<ScalarFunctionExpr>()
            .is_some_and(|f| f.name().starts_with("json_"));
        found |= json;
        Ok(match json {
            true => TreeNodeRecursion::Stop,
            false => TreeNodeRecursion::Continue,
        })
    });
    found
}

#[cfg(test)]
mod tests {
    use arrow::array::{RecordBatch, StringArray};
    use datafusion::catalog::MemTable;

    use crate::sql::new_context;

    use super::*;

    /// The plan of `sql` over a two-row table `t(name, properties)`, and its row count.
    async fn plan_and_rows(sql: &str) -> (String, usize) {
        let ctx = new_context().unwrap();
        let batch = RecordBatch::try_from_iter([
            ("name", Arc::new(StringArray::from(vec!["a", "b"])) as _),
            (
                "properties",
                Arc::new(StringArray::from(vec![r#"{"v":1}"#, r#"{"v":2}"#])) as _,
            ),
        ])
        .unwrap();
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let frame = ctx.sql(sql).await.unwrap();
        let plan = frame.clone().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string();
        let rows = frame.collect().await.unwrap();
        (shown, rows.iter().map(RecordBatch::num_rows).sum())
    }

    /// The plan's filters, outermost first.
    fn filters(plan: &str) -> Vec<&str> {
        plan.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("FilterExec"))
            .collect()
    }

    #[tokio::test]
    async fn json_conditions_run_after_the_others_on_the_rows_they_keep() {
        let sql = "SELECT json_get_float(properties, 'v') AS v FROM t \
                   WHERE json_get_int(properties, 'v') > 0 AND name = 'a'";
        let (plan, rows) = plan_and_rows(sql).await;
        let filters = filters(&plan);
        assert_eq!(filters.len(), 2, "{plan}");
        assert!(filters[0].contains("json_get_int"), "{plan}");
        assert!(!filters[1].contains("json_"), "{plan}");
        assert!(filters[1].contains("name@0 = a"), "{plan}");
        let below = plan.split(filters[1]).nth(1).unwrap();
        assert!(!below.contains("json_"), "nothing parses below: {plan}");
        assert_eq!(rows, 1);
    }

    #[tokio::test]
    async fn filters_of_only_json_or_no_json_stay_whole() {
        for sql in [
            "SELECT name FROM t WHERE json_get_int(properties, 'v') > 1",
            "SELECT name FROM t WHERE name = 'b' OR name = 'a'",
        ] {
            let (plan, rows) = plan_and_rows(sql).await;
            assert_eq!(filters(&plan).len(), 1, "{plan}");
            assert!(rows >= 1, "{sql}");
        }
    }
}
