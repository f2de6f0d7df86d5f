//! `crate::window`, as far as the trigger header needs it. The real module
//! reads windows through DataFusion, which the fuzz targets do without, so
//! the header's value is declared here the same way: if the two drift in the
//! variants the header builds, this crate stops compiling.

/// How much history a trigger's first run reads (its `backfill` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backfill {
    #[default]
    Nothing,
    All,
    Recent(std::time::Duration),
}
