//! `crate::trigger`: trigger files and their header.

#[path = "../../src/trigger/file.rs"]
pub mod file;
