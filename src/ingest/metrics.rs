//! `GET /metrics`: the ingest API's counters in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters shared by the handlers and the flusher.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by (endpoint, status).
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub events_accepted: AtomicU64,
    pub events_rejected: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub events_flushed: AtomicU64,
    pub flush_errors: AtomicU64,
    /// When the oldest acknowledged but not yet committed record arrived
    /// (microseconds; 0 when everything is committed).
    pub oldest_unflushed: AtomicI64,
}

/// The WAL's own numbers, read when the page is rendered.
#[derive(Debug, Default, Clone, Copy)]
pub struct WalGauges {
    pub bytes_written: u64,
    pub fsyncs: u64,
    pub bytes_pending: u64,
}

impl Metrics {
    pub fn request(&self, endpoint: &'static str, status: u16) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((endpoint, status)).or_default() += 1;
        }
    }

    /// The page, with the WAL's gauges and the flush lag at `now` (microseconds).
    pub fn render(&self, wal: WalGauges, now: i64) -> String {
        let mut out = String::from(
            "# HELP tripwire_http_requests_total HTTP requests by endpoint and status.\n\
             # TYPE tripwire_http_requests_total counter\n",
        );
        let requests = self.requests.lock().map(|r| r.clone()).unwrap_or_default();
        for ((endpoint, status), n) in requests {
            let _ = writeln!(
                out,
                "tripwire_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let counters = [
            (
                "events_accepted_total",
                "Events acknowledged (stored durably).",
                &self.events_accepted,
            ),
            (
                "events_rejected_total",
                "Events rejected with a reason.",
                &self.events_rejected,
            ),
            (
                "events_duplicate_total",
                "Events whose id was already stored.",
                &self.events_duplicate,
            ),
            (
                "events_flushed_total",
                "Events committed from the WAL to the tables.",
                &self.events_flushed,
            ),
            (
                "flush_errors_total",
                "Failed attempts to commit a WAL segment.",
                &self.flush_errors,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP tripwire_{name} {help}\n# TYPE tripwire_{name} counter\ntripwire_{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let oldest = self.oldest_unflushed.load(Ordering::Relaxed);
        let lag = if oldest == 0 {
            0.0
        } else {
            (now - oldest).max(0) as f64 / 1e6
        };
        let gauges = [
            (
                "wal_bytes_written_total",
                "counter",
                "Bytes written to the WAL.",
                wal.bytes_written as f64,
            ),
            (
                "wal_fsyncs_total",
                "counter",
                "WAL fsyncs (group commits).",
                wal.fsyncs as f64,
            ),
            (
                "wal_bytes_pending",
                "gauge",
                "WAL bytes not yet committed to the tables.",
                wal.bytes_pending as f64,
            ),
            (
                "flush_lag_seconds",
                "gauge",
                "Age of the oldest acknowledged event not yet in the tables.",
                lag,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP tripwire_{name} {help}\n# TYPE tripwire_{name} {kind}\ntripwire_{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_prometheus_text() {
        let metrics = Metrics::default();
        metrics.request("/v1/track", 200);
        metrics.request("/v1/track", 200);
        metrics.events_accepted.fetch_add(3, Ordering::Relaxed);
        metrics.oldest_unflushed.store(1_000_000, Ordering::Relaxed);
        let page = metrics.render(
            WalGauges {
                bytes_written: 10,
                fsyncs: 1,
                bytes_pending: 5,
            },
            3_500_000,
        );
        assert!(
            page.contains("tripwire_http_requests_total{endpoint=\"/v1/track\",status=\"200\"} 2")
        );
        assert!(page.contains("tripwire_events_accepted_total 3"));
        assert!(page.contains("tripwire_flush_lag_seconds 2.5"));
        assert!(page.contains("# TYPE tripwire_wal_bytes_pending gauge"));
    }
}
