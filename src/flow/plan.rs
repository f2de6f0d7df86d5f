//! Planning a run's deliveries (docs/reference.md "Flows"): for each
//! flow listening to the trigger, one DataFusion query over the run's
//! matches computes every row's segment membership, earlier fires (the
//! frequency cap), experiment bucket and branch: joins, hashes and CASE,
//! never a query per contact. Pure functions then turn those columns into
//! delivery records, each paired with its match by the match's ordinal.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use chrono::{DateTime, Utc};
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;

use super::file::{Experiment, Flow};
use super::render::{Rendering, render_payload};
use super::segment::{Keys, SegmentSource, register, table_name};
use crate::identity::resolve::{IDENTITY_COLUMNS, Resolution};
use crate::sql::replace_table;
use crate::store::ledger::{DeliveryRecord, MatchRecord, id_of};
use crate::window::Window;

/// Buckets of the experiment hash: an arm's share is counted in 1/10,000.
pub const BUCKETS: i64 = 10_000;

const MATCHES: &str = "__tripwire_matches";
const LEDGER: &str = "__tripwire_ledger";

/// What a run's planning needs besides its matches.
pub struct PlanRequest<'a> {
    pub workspace: &'a str,
    pub trigger: &'a str,
    pub run_id: &'a str,
    pub window: Window,
    pub now: DateTime<Utc>,
    pub flows: &'a [Flow],
    pub segments: &'a [(String, SegmentSource)],
    /// The fire ledger before this run (for frequency caps).
    pub ledger: Option<&'a DeltaTable>,
    /// A shadow backfill: what would be sent is recorded as `shadow`, and
    /// nothing is sent.
    pub shadow: bool,
}

/// The deliveries of every active flow of the trigger, in flow-name order.
pub async fn plan_deliveries(
    ctx: &SessionContext,
    request: &PlanRequest<'_>,
    resolution: &Resolution,
) -> Result<Vec<DeliveryRecord>, String> {
    let flows: Vec<&Flow> = request
        .flows
        .iter()
        .filter(|f| f.active && f.trigger == request.trigger)
        .collect();
    if flows.is_empty() || resolution.matches.is_empty() {
        return Ok(Vec::new());
    }
    let matches = matches_batch(resolution).map_err(|e| e.to_string())?;
    let provider =
        MemTable::try_new(matches.schema(), vec![vec![matches]]).map_err(|e| e.to_string())?;
    replace_table(ctx, MATCHES, Arc::new(provider)).map_err(|e| e.to_string())?;
    if let Some(ledger) = request.ledger {
        // The session's own way to read a table (a file list on a cluster).
        let kind = crate::store::TableKind::Ledger;
        let provider = crate::sql::delta_provider(ctx, Some(ledger.clone()), kind)
            .await
            .map_err(|e| e.to_string())?;
        replace_table(ctx, LEDGER, provider).map_err(|e| e.to_string())?;
    }
    let mut planned = Vec::new();
    for flow in flows {
        let rows = flow_columns(ctx, request, flow)
            .await
            .map_err(|e| format!("{}: {e}", flow.path.display()))?;
        let decided = decide(request, flow, &resolution.matches, &rows);
        planned.extend(match request.shadow {
            true => shadowed(decided),
            false => hold_over_limit(flow, request.run_id, decided),
        });
    }
    let _ = ctx.deregister_table(MATCHES);
    let _ = ctx.deregister_table(LEDGER);
    Ok(planned)
}

/// The run's matches as a table: the query's data columns (with their
/// types), the resolved contact columns, the key, the contact and the order.
fn matches_batch(resolution: &Resolution) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    if let Some(first) = resolution.rows.first() {
        let schema = first.schema();
        let all = concat_batches(&schema, &resolution.rows)?;
        let mut offsets = Vec::with_capacity(resolution.rows.len());
        let mut offset = 0u64;
        for batch in &resolution.rows {
            offsets.push(offset);
            offset += batch.num_rows() as u64;
        }
        let indices = UInt64Array::from_iter_values(
            resolution
                .chosen
                .iter()
                .map(|(batch, row)| offsets[*batch] + *row as u64),
        );
        for (i, field) in schema.fields().iter().enumerate() {
            let name = field.name();
            if IDENTITY_COLUMNS.contains(&name.as_str()) || name.starts_with("__tripwire") {
                continue;
            }
            fields.push(field.as_ref().clone().with_nullable(true));
            columns.push(take(all.column(i), &indices, None)?);
        }
    }
    let matches = &resolution.matches;
    let text = |f: fn(&MatchRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(matches.iter().map(f)))
    };
    for (name, column) in [
        ("email", text(|m| m.email.as_deref())),
        ("user_id", text(|m| m.user_id.as_deref())),
        ("client_id", text(|m| m.client_id.as_deref())),
        ("__tripwire_contact", text(|m| Some(&m.contact))),
    ] {
        fields.push(Field::new(name, DataType::Utf8, true));
        columns.push(column);
    }
    fields.push(Field::new("__tripwire_ord", DataType::Int64, false));
    columns.push(Arc::new(Int64Array::from_iter_values(
        matches.iter().map(|m| m.ordinal),
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Per match: the columns that decide its fate in `flow`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRow {
    /// The match (its `ordinal`) the row is about.
    pub ordinal: i64,
    pub excluded_by: Option<String>,
    pub included: bool,
    pub prior_fires: i64,
    pub rank: i64,
    pub bucket: i64,
    pub branch: Option<i64>,
}

async fn flow_columns(
    ctx: &SessionContext,
    request: &PlanRequest<'_>,
    flow: &Flow,
) -> Result<Vec<FlowRow>, String> {
    let mut joins = Vec::new();
    let mut membership = |name: &str, keys: Keys| -> String {
        let table = table_name(name);
        let mut tests = Vec::new();
        for (key, offered) in [("email", keys.email), ("user_id", keys.user_id)] {
            if offered {
                let alias = format!("j{}", joins.len());
                joins.push(format!(
                    "LEFT JOIN (SELECT DISTINCT {key} AS k FROM {table} WHERE {key} IS NOT NULL) {alias} \
                     ON {alias}.k = m.{key}"
                ));
                tests.push(format!("{alias}.k IS NOT NULL"));
            }
        }
        format!("({})", tests.join(" OR "))
    };
    let mut excluded = Vec::new();
    for name in &flow.exclude_segments {
        let keys = segment_keys(ctx, request, name).await?;
        excluded.push(format!(
            "WHEN {} THEN {}",
            membership(name, keys),
            quote(name)
        ));
    }
    let mut included = Vec::new();
    for name in &flow.include_segments {
        let keys = segment_keys(ctx, request, name).await?;
        included.push(membership(name, keys));
    }
    let excluded_by = match excluded.is_empty() {
        true => "CAST(NULL AS VARCHAR)".to_string(),
        false => format!("CASE {} END", excluded.join(" ")),
    };
    let included = match included.is_empty() {
        true => "TRUE".to_string(),
        false => included.join(" OR "),
    };
    let (fires_join, prior) = fires_sql(request, flow);
    let sql = format!(
        "SELECT ordinal, excluded_by, included, prior_fires,
                row_number() OVER (
                  PARTITION BY contact, excluded_by IS NULL AND included AND branch IS NOT NULL
                  ORDER BY ordinal) AS rank,
                bucket, branch
         FROM (
           SELECT m.__tripwire_ord AS ordinal, m.__tripwire_contact AS contact,
                  {excluded_by} AS excluded_by,
                  {included} AS included,
                  {prior} AS prior_fires,
                  {bucket} AS bucket,
                  {branch} AS branch
           FROM {MATCHES} m {fires_join} {joins}
         )
         ORDER BY ordinal",
        bucket = bucket_sql(&flow.name, "m.__tripwire_contact"),
        branch = branch_sql(flow),
        joins = joins.join(" "),
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    flow_rows(&batches).map_err(|e| e.to_string())
}

async fn segment_keys(
    ctx: &SessionContext,
    request: &PlanRequest<'_>,
    name: &str,
) -> Result<Keys, String> {
    let source = request
        .segments
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
        .ok_or_else(|| format!("unknown segment {name:?}"))?;
    register(ctx, name, source).await
}

/// Earlier fires of this flow per contact within the cap's period.
fn fires_sql(request: &PlanRequest<'_>, flow: &Flow) -> (String, String) {
    let (Some(cap), Some(_)) = (&flow.frequency_cap, request.ledger) else {
        return (String::new(), "CAST(0 AS BIGINT)".into());
    };
    let since = chrono::Duration::from_std(cap.per)
        .ok()
        .and_then(|per| request.now.checked_sub_signed(per))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let join = format!(
        "LEFT JOIN (
           SELECT contact,
                  count(DISTINCT concat(run_id, ':', CAST(ordinal AS VARCHAR))) AS fires
           FROM {LEDGER}
           WHERE kind = 'delivery' AND flow = {flow} AND status = 'pending'
             AND clock > TIMESTAMP '{since}' AND clock <= TIMESTAMP '{now}'
           GROUP BY contact
         ) fires ON fires.contact = m.__tripwire_contact",
        flow = quote(&flow.name),
        since = since.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        now = request.now.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
    );
    (join, "COALESCE(fires.fires, 0)".into())
}

/// The experiment bucket of `contact` in `flow`, in plain SQL (README
/// "Experiments" shows it): the first 8 hex digits of
/// sha256(flow || ':' || contact) as a number, modulo [`BUCKETS`].
pub fn bucket_sql(flow: &str, contact: &str) -> String {
    let hex = format!(
        "encode(sha256(concat({}, ':', {contact})), 'hex')",
        quote(flow)
    );
    let digits: Vec<String> = (0..8)
        .map(|i| {
            format!(
                "(strpos('0123456789abcdef', substr({hex}, {}, 1)) - 1) * {}",
                i + 1,
                16i64.pow(7 - i)
            )
        })
        .collect();
    format!("(({}) % {BUCKETS})", digits.join(" + "))
}

/// The index of the first branch whose `when` holds (the else branch's if none).
fn branch_sql(flow: &Flow) -> String {
    let mut cases = String::new();
    let mut otherwise = "NULL".to_string();
    for (i, branch) in flow.branches.iter().enumerate() {
        match &branch.when {
            Some(when) => cases.push_str(&format!(" WHEN ({when}) THEN {i}")),
            None => otherwise = i.to_string(),
        }
    }
    if cases.is_empty() {
        return format!("CAST({otherwise} AS BIGINT)");
    }
    format!("CAST(CASE{cases} ELSE {otherwise} END AS BIGINT)")
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn flow_rows(batches: &[RecordBatch]) -> Result<Vec<FlowRow>, arrow::error::ArrowError> {
    let mut rows = Vec::new();
    for batch in batches {
        let ordinal = cast(batch.column(0), &DataType::Int64)?;
        let excluded = cast(batch.column(1), &DataType::Utf8)?;
        let included = cast(batch.column(2), &DataType::Boolean)?;
        let prior = cast(batch.column(3), &DataType::Int64)?;
        let rank = cast(batch.column(4), &DataType::Int64)?;
        let bucket = cast(batch.column(5), &DataType::Int64)?;
        let branch = cast(batch.column(6), &DataType::Int64)?;
        let (excluded, included) = (excluded.as_string::<i32>(), included.as_boolean());
        let number = |a: &ArrayRef, i: usize| {
            a.is_valid(i)
                .then(|| a.as_primitive::<Int64Type>().value(i))
        };
        for i in 0..batch.num_rows() {
            rows.push(FlowRow {
                ordinal: number(&ordinal, i).unwrap_or(-1),
                excluded_by: excluded.is_valid(i).then(|| excluded.value(i).to_string()),
                included: included.is_valid(i) && included.value(i),
                prior_fires: number(&prior, i).unwrap_or(0),
                rank: number(&rank, i).unwrap_or(1),
                bucket: number(&bucket, i).unwrap_or(0),
                branch: number(&branch, i),
            });
        }
    }
    Ok(rows)
}

/// The experiment arm of a bucket: `holdout` for the first `holdout`
/// percent, then the variants in name order, each over a share of the rest
/// proportional to its weight. `None` without an experiment.
pub fn arm(experiment: Option<&Experiment>, bucket: i64) -> Option<String> {
    let experiment = experiment?;
    let held = i64::from(experiment.holdout) * BUCKETS / 100;
    if bucket < held {
        return Some("holdout".into());
    }
    let total: i64 = experiment.variants.iter().map(|(_, w)| i64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let (rest, position) = (BUCKETS - held, bucket - held);
    let mut cumulative = 0;
    for (name, weight) in &experiment.variants {
        cumulative += i64::from(*weight);
        if position * total < cumulative * rest {
            return Some(name.clone());
        }
    }
    experiment.variants.last().map(|(name, _)| name.clone())
}

/// What happens to one match in one flow, before actions are expanded.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    Filtered(String),
    HeldOut { branch: Option<i64> },
    Act { branch: i64 },
}

/// Segment filters, then branches, then the frequency cap (counting only
/// this run's rows that would be delivered), then the holdout.
pub fn fate(flow: &Flow, row: &FlowRow, variant: Option<&str>) -> Fate {
    if let Some(segment) = &row.excluded_by {
        return Fate::Filtered(format!("in excluded segment {segment:?}"));
    }
    if !row.included {
        return Fate::Filtered(format!(
            "in none of the included segments ({})",
            flow.include_segments.join(", ")
        ));
    }
    let Some(branch) = row.branch else {
        return Fate::Filtered("no branch matched".into());
    };
    if let Some(cap) = &flow.frequency_cap
        && row.prior_fires + row.rank > i64::from(cap.max)
    {
        return Fate::Filtered(format!(
            "frequency cap: {} fire(s) per {}s reached",
            cap.max,
            cap.per.as_secs()
        ));
    }
    match variant == Some("holdout") {
        true => Fate::HeldOut {
            branch: Some(branch),
        },
        false => Fate::Act { branch },
    }
}

fn decide(
    request: &PlanRequest<'_>,
    flow: &Flow,
    matches: &[MatchRecord],
    rows: &[FlowRow],
) -> Vec<DeliveryRecord> {
    let by_ordinal: HashMap<i64, &MatchRecord> = matches.iter().map(|m| (m.ordinal, m)).collect();
    let mut out = Vec::new();
    for row in rows {
        let Some(m) = by_ordinal.get(&row.ordinal).copied() else {
            continue;
        };
        let variant = arm(flow.experiment.as_ref(), row.bucket);
        let fate = fate(flow, row, variant.as_deref());
        let (branch, status, reason) = match &fate {
            Fate::Filtered(reason) => (None, "filtered", Some(reason.clone())),
            Fate::HeldOut { branch } => (*branch, "held_out", Some("experiment holdout".into())),
            Fate::Act { branch } => (Some(*branch), "pending", None),
        };
        let actions: Vec<String> = branch
            .and_then(|b| flow.branches.get(b as usize))
            .map(|b| b.actions.clone())
            .unwrap_or_else(|| vec![String::new()]);
        for action in actions {
            let delivery_id = delivery_id(request, &flow.name, m, &action);
            let mut record = DeliveryRecord {
                delivery_id,
                flow: flow.name.clone(),
                action: action.clone(),
                ordinal: m.ordinal,
                contact: m.contact.clone(),
                variant: variant.clone(),
                branch,
                status: status.into(),
                reason: reason.clone(),
                payload: None,
            };
            if status == "pending"
                && let Some(spec) = flow.actions.get(&action)
            {
                let rendering = Rendering {
                    workspace: request.workspace,
                    trigger: request.trigger,
                    run_id: request.run_id,
                    now: request.now,
                };
                match render_payload(&rendering, m, &record, spec) {
                    Ok(payload) => record.payload = Some(payload),
                    Err(e) => {
                        record.status = "filtered".into();
                        record.reason = Some(e);
                    }
                }
            }
            out.push(record);
        }
    }
    out
}

/// docs/architecture.md "Deterministic ids": a hash of workspace, flow,
/// trigger, window, match key (contact and event id) and action.
pub fn delivery_id(request: &PlanRequest<'_>, flow: &str, m: &MatchRecord, action: &str) -> String {
    id_of(&[
        request.workspace,
        flow,
        request.trigger,
        &request.window.from.to_string(),
        &request.window.to.to_string(),
        &m.contact,
        m.event_id.as_deref().unwrap_or(""),
        if m.event_id.is_some() {
            "event"
        } else {
            "contact"
        },
        action,
    ])
}

/// A flow's deliveries, all `held` when more than its
/// `max_deliveries_per_run` would be sent (nothing goes out until an
/// operator releases them; `tripwire release`).
pub fn hold_over_limit(
    flow: &Flow,
    run_id: &str,
    mut planned: Vec<DeliveryRecord>,
) -> Vec<DeliveryRecord> {
    let sending = planned.iter().filter(|d| d.status == "pending").count() as u64;
    if sending <= flow.max_deliveries_per_run {
        return planned;
    }
    let reason = format!(
        "held: {sending} deliveries planned, over max_deliveries_per_run {}; \
         `tripwire release {run_id} --flow {}` sends them, `tripwire discard` drops them",
        flow.max_deliveries_per_run, flow.name
    );
    for delivery in planned.iter_mut().filter(|d| d.status == "pending") {
        delivery.status = "held".into();
        delivery.reason = Some(reason.clone());
    }
    planned
}

/// A shadow backfill's deliveries: what would be sent is `shadow` (never
/// due, never counted by caps), its id made distinct by the mode, so a
/// later live run of the same events is not a duplicate.
pub fn shadowed(mut planned: Vec<DeliveryRecord>) -> Vec<DeliveryRecord> {
    for delivery in planned.iter_mut().filter(|d| d.status == "pending") {
        delivery.status = "shadow".into();
        delivery.delivery_id = id_of(&[&delivery.delivery_id, "shadow"]);
    }
    planned
}

/// The segment names flows refer to.
pub fn segments_used(flows: &[Flow]) -> BTreeSet<String> {
    flows
        .iter()
        .flat_map(|f| f.exclude_segments.iter().chain(&f.include_segments))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(holdout: u32, variants: &[(&str, u32)]) -> Experiment {
        Experiment {
            holdout,
            variants: variants.iter().map(|(n, w)| (n.to_string(), *w)).collect(),
        }
    }

    #[test]
    fn arms_split_the_buckets_by_holdout_then_weight() {
        let e = experiment(10, &[("a", 50), ("b", 50)]);
        assert_eq!(arm(Some(&e), 0).as_deref(), Some("holdout"));
        assert_eq!(arm(Some(&e), 999).as_deref(), Some("holdout"));
        assert_eq!(arm(Some(&e), 1_000).as_deref(), Some("a"));
        assert_eq!(arm(Some(&e), 5_499).as_deref(), Some("a"));
        assert_eq!(arm(Some(&e), 5_500).as_deref(), Some("b"));
        assert_eq!(arm(Some(&e), 9_999).as_deref(), Some("b"));
        let uneven = experiment(0, &[("a", 1), ("b", 3)]);
        let count_a = (0..BUCKETS)
            .filter(|b| arm(Some(&uneven), *b).as_deref() == Some("a"))
            .count();
        assert_eq!(count_a, 2_500);
        assert_eq!(arm(None, 5), None);
        assert_eq!(
            arm(Some(&experiment(100, &[])), 9_999).as_deref(),
            Some("holdout")
        );
    }
}
