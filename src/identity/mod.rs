//! Who is who (docs/reference.md "Identity"): the `identities` and
//! `contacts` tables, measured against a clock so a run pinned with `--now`
//! sees the same people on every machine, and the resolution of a trigger's
//! rows to contacts.
//!
//! - `views`: `identities` and `contacts` as SQL over `events`.
//! - `index`: each client's and user's latest identify, kept as state.
//! - `resolve`: each row's contact, and rows collapsed to matches.
//! - `pending`: rows waiting for a late identity.

pub mod index;
pub mod pending;
pub mod resolve;
mod views;
pub mod waiting;

pub use views::{defer_views, identities_from_index};
