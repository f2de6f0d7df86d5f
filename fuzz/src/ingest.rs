//! `crate::ingest`: the WAL record and the write-ahead log.

#[path = "../../src/ingest/record.rs"]
pub mod record;

#[path = "../../src/ingest/wal/mod.rs"]
pub mod wal;
