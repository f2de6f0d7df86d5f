//! Writes deterministic sample events as NDJSON (the example project's
//! `data/sample/`, the benches' input):
//! `cargo run --example gen_events -- --events 5000 --seed 7 > events.ndjson`

use std::io::{BufWriter, Write};

use clap::Parser;
use tripwire::sample::{SampleSpec, write_ndjson};

#[derive(Parser)]
struct Args {
    /// How many events (identify calls included).
    #[arg(long, default_value_t = 5_000)]
    events: u64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The collect envelope's partnerId.
    #[arg(long, default_value = "shop")]
    workspace: String,
    /// The collect envelope's partnerSecret (omitted when not given).
    #[arg(long)]
    secret: Option<String>,
    /// Time of the first event (RFC 3339).
    #[arg(long, default_value = "2026-11-01T00:00:00Z")]
    start: chrono::DateTime<chrono::Utc>,
    /// Seconds between events.
    #[arg(long, default_value_t = 60)]
    step_seconds: i64,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let spec = SampleSpec {
        events: args.events,
        seed: args.seed,
        start_ms: args.start.timestamp_millis(),
        step_ms: args.step_seconds * 1000,
        workspace: args.workspace,
        secret: args.secret,
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let totals = write_ndjson(&spec, &mut out)?;
    out.flush()?;
    eprintln!(
        "{} events: {:?}, {} identify calls",
        totals.events, totals.per_name, totals.identifies
    );
    Ok(())
}
