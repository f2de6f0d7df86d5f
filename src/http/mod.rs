//! What the HTTP endpoints of `tripwire serve` share, below both the ingest
//! API and the admin API: who may call (`auth`), and every way a request
//! fails, mapped to a status in one place (`error`).

pub mod auth;
pub mod error;

pub use error::ApiError;
