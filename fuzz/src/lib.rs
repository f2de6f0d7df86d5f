//! The parts of tripwire the fuzz targets exercise, compiled here from
//! tripwire's own source files (by path, in the crate's own module layout,
//! so their `crate::` paths resolve). Only parsers and the write-ahead log:
//! nothing here links DataFusion or the Delta libraries, so a target builds
//! in minutes and runs at full speed.
#![allow(dead_code, unused_imports)]

#[path = "../../src/duration.rs"]
pub mod duration;

#[path = "../../src/schedule.rs"]
pub mod schedule;

#[path = "../../src/config.rs"]
pub mod config;

#[path = "../../src/event/mod.rs"]
pub mod event;

#[path = "../../src/keys.rs"]
pub mod keys;

#[path = "../../src/project.rs"]
pub mod project;

pub mod import;

pub mod ingest;

pub mod store;

pub mod trigger;

pub mod window;

/// A config with one open workspace, `shop`, for the import targets.
pub fn shop_config() -> config::Config {
    config::Config::parse(
        "[[workspace]]\nid = \"shop\"\n",
        "fuzz",
        std::path::Path::new(""),
    )
    .expect("a valid config")
}

/// A chunk parser routing every event to `shop`.
pub fn shop_parser(max_line_bytes: usize) -> import::chunk::ChunkParser {
    let router = import::route::Router::new(&shop_config(), None).expect("one workspace");
    import::chunk::ChunkParser {
        router: std::sync::Arc::new(router),
        source: "fuzz".into(),
        received_at: 1_700_000_000_000_000,
        rows_hint: 16,
        max_line_bytes,
    }
}
