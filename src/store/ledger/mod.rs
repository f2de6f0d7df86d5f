//! The fire ledger (docs/architecture.md "The ledger"): one Delta table per
//! workspace holding trigger runs, their matches and their planned
//! deliveries, one `kind` of row each. A run, its matches, its deliveries
//! and its cursor move land in one commit (`txn("trigger:<name>",
//! watermark)`): Delta has no multi-table commit, so they share a table,
//! and the cursor is simply that application transaction's version.
//! Readers see one plain view per kind (`sql::ledger`), never the union.
//!
//! - `rows`: the records and the Arrow batch of one run's rows.
//! - `migrate`: ledgers written before the `kind` layout, rewritten once.
//! - `attempts`: the attempts table, every try of every delivery.

pub mod attempts;
pub mod migrate;
mod rows;

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub use rows::{
    DeliveryRecord, MatchRecord, PendingRecord, RunRecord, RunRows, Settled, backfill_batch,
    cursor_batch, resume_batch, run_batch,
};

/// The kinds of ledger row; the `kind` column holds [`Kind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One per committed (or failed) run: its window and counts.
    Run,
    /// One per match: the contact a run fires for, and the row's data.
    Match,
    /// One per flow, match and action: what the flow does with the match.
    Delivery,
    /// An operator moved a trigger's cursor (`tripwire cursor --set`):
    /// `from_version` is where it was, `to_version` where it went.
    Cursor,
    /// A row that needs an identity it does not have yet: it waits (its
    /// query row in `row`) until `wait_until` for a later run to resolve it.
    Pending,
    /// A pending row's end: `resolved` by a later run, or `expired`.
    Settled,
    /// `tripwire resume`: a paused trigger runs again; with `--skip` its
    /// cursor moved past the failing window `(from_version, to_version]`.
    Resume,
    /// `tripwire backfill`: a trigger run over events from before it
    /// started (its matches and deliveries follow, as a run's do), which
    /// moves no cursor.
    Backfill,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Match => "match",
            Kind::Delivery => "delivery",
            Kind::Cursor => "cursor",
            Kind::Pending => "pending",
            Kind::Settled => "settled",
            Kind::Resume => "resume",
            Kind::Backfill => "backfill",
        }
    }
}

/// Which columns each kind of row fills (the others are null on it).
pub const RUN_COLUMNS: &[&str] = &[
    "run_id",
    "trigger",
    "from_version",
    "to_version",
    "started_at",
    "finished_at",
    "clock",
    "matched",
    "resolved",
    "unresolved",
    "dropped",
    "pending",
    "expired",
    "held",
    "error",
];
pub const MATCH_COLUMNS: &[&str] = &[
    "run_id",
    "trigger",
    "finished_at",
    "clock",
    "ordinal",
    "contact",
    "event_id",
    "email",
    "user_id",
    "client_id",
    "data",
];
pub const PENDING_COLUMNS: &[&str] = &[
    "run_id",
    "trigger",
    "finished_at",
    "clock",
    "pending_id",
    "row",
    "wait_until",
    "email",
    "user_id",
    "client_id",
];
pub const SETTLED_COLUMNS: &[&str] = &[
    "run_id",
    "trigger",
    "finished_at",
    "clock",
    "pending_id",
    "settled",
];
pub const DELIVERY_COLUMNS: &[&str] = &[
    "run_id",
    "trigger",
    "finished_at",
    "clock",
    "ordinal",
    "contact",
    "delivery_id",
    "flow",
    "action",
    "variant",
    "branch",
    "status",
    "reason",
    "payload",
];

static LEDGER_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let number = |name: &str| Field::new(name, DataType::Int64, true);
    let time = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        )
    };
    Arc::new(Schema::new(vec![
        text("kind", false),
        text("run_id", false),
        text("trigger", false),
        // When the run finished (a delivery's planned_at) and its clock.
        time("finished_at"),
        time("clock"),
        // Run rows.
        number("from_version"),
        number("to_version"),
        time("started_at"),
        number("matched"),
        number("resolved"),
        number("unresolved"),
        number("dropped"),
        text("error", true),
        // Match and delivery rows: the match's place in its run, its contact.
        number("ordinal"),
        text("contact", true),
        // Match rows.
        text("event_id", true),
        text("email", true),
        text("user_id", true),
        text("client_id", true),
        text("data", true),
        // Delivery rows.
        text("delivery_id", true),
        text("flow", true),
        text("action", true),
        text("variant", true),
        number("branch"),
        text("status", true),
        text("reason", true),
        text("payload", true),
        // Run rows: rows deferred for a late identity, and given up on.
        number("pending"),
        number("expired"),
        // Run rows: deliveries held over a flow's max_deliveries_per_run.
        number("held"),
        // Pending and settled rows.
        text("pending_id", true),
        text("row", true),
        time("wait_until"),
        text("settled", true),
    ]))
});

/// The schema of a workspace's `ledger` table.
pub fn ledger_schema() -> SchemaRef {
    LEDGER_SCHEMA.clone()
}

/// The application id under which a trigger's cursor is committed.
pub fn cursor_app_id(trigger: &str) -> String {
    format!("trigger:{trigger}")
}

/// A hash id of `parts` that no choice of part texts can make collide with
/// another list: each part is hashed with its length in front. Run and
/// delivery ids are made so (docs/architecture.md "Deterministic ids").
pub fn id_of(parts: &[&str]) -> String {
    hex_of(digest_of(parts))
}

/// The digest (xxh3, 128 bits) an id of `parts` spells ([`id_of`]): each
/// part hashed with its length in front, streamed into the hasher.
pub fn digest_of(parts: &[&str]) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.digest128()
}

/// `format!("{:032x}", digest)`, without the formatting machinery (a run
/// makes an id per row it defers or matches).
fn hex_of(digest: u128) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for byte in digest.to_be_bytes() {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_do_not_collide_when_parts_hold_delimiters() {
        assert_ne!(id_of(&["a|b", "c"]), id_of(&["a", "b|c"]));
        assert_ne!(id_of(&["a\u{1f}b", "c"]), id_of(&["a", "b\u{1f}c"]));
        assert_eq!(id_of(&["x", "y"]), id_of(&["x", "y"]));
        assert_eq!(id_of(&["x", "y"]).len(), 32);
        // Ids are stored: their spelling is the digest's 32 hex digits.
        let mut key = Vec::new();
        for part in ["x", "y"] {
            key.extend_from_slice(&(part.len() as u64).to_le_bytes());
            key.extend_from_slice(part.as_bytes());
        }
        let digest = xxhash_rust::xxh3::xxh3_128(&key);
        assert_eq!(id_of(&["x", "y"]), format!("{digest:032x}"));
        assert_eq!(
            id_of(&[]),
            format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&[]))
        );
        for digest in [0, 1, 0xab << 120, u128::MAX] {
            assert_eq!(hex_of(digest), format!("{digest:032x}"));
        }
    }

    #[test]
    fn every_kind_names_real_columns() {
        let schema = ledger_schema();
        let kinds = [
            RUN_COLUMNS,
            MATCH_COLUMNS,
            DELIVERY_COLUMNS,
            PENDING_COLUMNS,
            SETTLED_COLUMNS,
        ];
        for column in kinds.iter().flat_map(|k| k.iter()) {
            assert!(schema.column_with_name(column).is_some(), "{column}");
        }
    }
}
