//! `crate::import`: reading and parsing input files, without committing.

#[path = "../../src/import/chunk.rs"]
pub mod chunk;

#[path = "../../src/import/lines.rs"]
pub mod lines;

#[path = "../../src/import/route.rs"]
pub mod route;

#[path = "../../src/import/source.rs"]
pub mod source;
