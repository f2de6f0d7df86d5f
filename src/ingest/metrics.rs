//! `GET /metrics`: the ingest API's counters in Prometheus' text format.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// The page's `Content-Type`: Prometheus' text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// What every metric's name starts with (`tripwire_…`).
const PREFIX: &str = "tripwire";

/// Counters shared by the handlers and the flusher. Each is an atomic
/// behind an `Arc`, so counting an event never takes a lock.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by (endpoint, status).
    requests: Family<Request, Counter>,
    events_accepted: Counter,
    events_rejected: Counter,
    events_duplicate: Counter,
    events_flushed: Counter,
    flush_errors: Counter,
    /// When the oldest acknowledged but not yet committed record arrived
    /// (microseconds; 0 when everything is committed).
    pub oldest_unflushed: AtomicI64,
}

/// The labels of `tripwire_http_requests_total`, in the order they print.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Request {
    endpoint: &'static str,
    status: u16,
}

/// The WAL's own numbers, read when the page is rendered.
#[derive(Debug, Default, Clone, Copy)]
pub struct WalGauges {
    pub bytes_written: u64,
    pub fsyncs: u64,
    pub bytes_pending: u64,
    /// Failed writes, fsyncs and segment creations.
    pub errors: u64,
    /// Bytes of records waiting for the WAL's writer.
    pub queued_bytes: u64,
}

impl Metrics {
    pub fn request(&self, endpoint: &'static str, status: u16) {
        self.requests
            .get_or_create(&Request { endpoint, status })
            .inc();
    }

    /// One acknowledged request's events: stored, rejected, already stored.
    pub fn accepted(&self, stored: u64, rejected: u64, duplicates: u64) {
        self.events_accepted.inc_by(stored);
        self.events_rejected.inc_by(rejected);
        self.events_duplicate.inc_by(duplicates);
    }

    /// Events committed from the WAL to the tables.
    pub fn flushed(&self, events: u64) {
        self.events_flushed.inc_by(events);
    }

    /// A failed attempt to commit the WAL.
    pub fn flush_failed(&self) {
        self.flush_errors.inc();
    }

    /// The page, with the WAL's gauges and the flush lag at `now` (microseconds).
    pub fn render(&self, wal: WalGauges, now: i64) -> Result<String, std::fmt::Error> {
        let mut page = String::new();
        prometheus_text::encode(&mut page, &self.registry(wal, now))?;
        Ok(page)
    }

    /// A registry for one scrape: the live counters (shared, not copied)
    /// next to the WAL's numbers and the flush lag as they are now.
    /// Counter names leave out `_total`: the encoder appends it.
    fn registry(&self, wal: WalGauges, now: i64) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "http_requests",
            "HTTP requests by endpoint and status",
            self.requests.clone(),
        );
        let counters = [
            (
                "events_accepted",
                "Events acknowledged (stored durably)",
                &self.events_accepted,
            ),
            (
                "events_rejected",
                "Events rejected with a reason",
                &self.events_rejected,
            ),
            (
                "events_duplicate",
                "Events whose id was already stored",
                &self.events_duplicate,
            ),
            (
                "events_flushed",
                "Events committed from the WAL to the tables",
                &self.events_flushed,
            ),
            (
                "flush_errors",
                "Failed attempts to commit a WAL segment",
                &self.flush_errors,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "wal_bytes_written",
            "Bytes written to the WAL",
            ConstCounter::new(wal.bytes_written),
        );
        registry.register(
            "wal_fsyncs",
            "WAL fsyncs (group commits)",
            ConstCounter::new(wal.fsyncs),
        );
        registry.register(
            "wal_bytes_pending",
            "WAL bytes not yet committed to the tables",
            ConstGauge::new(wal.bytes_pending),
        );
        registry.register(
            "wal_errors",
            "Failed WAL writes, fsyncs and segment creations",
            ConstCounter::new(wal.errors),
        );
        registry.register(
            "wal_queued_bytes",
            "Bytes of requests waiting for the WAL",
            ConstGauge::new(wal.queued_bytes),
        );
        let oldest = self.oldest_unflushed.load(Ordering::Relaxed);
        registry.register_with_unit(
            "flush_lag",
            "Age of the oldest acknowledged event not yet in the tables",
            Unit::Seconds,
            ConstGauge::new(flush_lag_seconds(oldest, now)),
        );
        registry
    }
}

/// Seconds since `oldest` (microseconds) at `now`; 0 when nothing waits.
fn flush_lag_seconds(oldest: i64, now: i64) -> f64 {
    if oldest == 0 {
        0.0
    } else {
        (now - oldest).max(0) as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(metrics: &Metrics) -> String {
        let wal = WalGauges {
            bytes_written: 10,
            fsyncs: 1,
            bytes_pending: 5,
            errors: 2,
            queued_bytes: 7,
        };
        metrics.render(wal, 3_500_000).expect("the page renders")
    }

    #[test]
    fn every_metric_keeps_its_name_and_type() {
        let metrics = Metrics::default();
        assert!(
            !page(&metrics).contains("http_requests"),
            "a label family shows once it has a series"
        );
        metrics.request("/v1/track", 200);
        let page = page(&metrics);
        let types: Vec<&str> = page
            .lines()
            .filter(|line| line.starts_with("# TYPE "))
            .collect();
        assert_eq!(
            types,
            [
                "# TYPE tripwire_http_requests_total counter",
                "# TYPE tripwire_events_accepted_total counter",
                "# TYPE tripwire_events_rejected_total counter",
                "# TYPE tripwire_events_duplicate_total counter",
                "# TYPE tripwire_events_flushed_total counter",
                "# TYPE tripwire_flush_errors_total counter",
                "# TYPE tripwire_wal_bytes_written_total counter",
                "# TYPE tripwire_wal_fsyncs_total counter",
                "# TYPE tripwire_wal_bytes_pending gauge",
                "# TYPE tripwire_wal_errors_total counter",
                "# TYPE tripwire_wal_queued_bytes gauge",
                "# TYPE tripwire_flush_lag_seconds gauge",
            ]
        );
        assert!(page.contains(
            "# HELP tripwire_events_accepted_total Events acknowledged (stored durably).\n"
        ));
        assert!(!page.contains("# EOF"), "the classic format has no EOF");
    }

    #[test]
    fn counters_and_gauges_carry_their_values_and_labels() {
        let metrics = Metrics::default();
        metrics.request("/v1/track", 200);
        metrics.request("/v1/track", 200);
        metrics.request("/v1/batch", 400);
        metrics.accepted(3, 1, 2);
        metrics.flushed(3);
        metrics.flush_failed();
        metrics.oldest_unflushed.store(1_000_000, Ordering::Relaxed);
        let page = page(&metrics);
        for sample in [
            "tripwire_http_requests_total{endpoint=\"/v1/track\",status=\"200\"} 2",
            "tripwire_http_requests_total{endpoint=\"/v1/batch\",status=\"400\"} 1",
            "tripwire_events_accepted_total 3",
            "tripwire_events_rejected_total 1",
            "tripwire_events_duplicate_total 2",
            "tripwire_events_flushed_total 3",
            "tripwire_flush_errors_total 1",
            "tripwire_wal_bytes_written_total 10",
            "tripwire_wal_fsyncs_total 1",
            "tripwire_wal_bytes_pending 5",
            "tripwire_wal_errors_total 2",
            "tripwire_wal_queued_bytes 7",
            "tripwire_flush_lag_seconds 2.5",
        ] {
            assert!(page.lines().any(|line| line == sample), "{sample}\n{page}");
        }
    }

    #[test]
    fn the_lag_is_zero_when_nothing_waits_and_never_negative() {
        assert_eq!(flush_lag_seconds(0, 3_500_000), 0.0);
        assert_eq!(flush_lag_seconds(1_000_000, 3_500_000), 2.5);
        assert_eq!(flush_lag_seconds(4_000_000, 3_500_000), 0.0);
    }
}
