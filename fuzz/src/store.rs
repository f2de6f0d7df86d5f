//! `crate::store`: only the quarantine rows import builds.

#[path = "../../src/store/quarantine.rs"]
pub mod quarantine;
