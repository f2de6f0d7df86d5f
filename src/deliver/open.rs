//! The open-deliveries index (docs/architecture.md "Open deliveries"): the
//! deliveries of a workspace that may still be sent (`pending`, `failed`
//! with a next try, `held` until an operator decides), with what sending
//! one needs, kept in memory so that choosing a batch costs the batch, not
//! the history of every delivery ever planned.
//!
//! It is a pure fold of two streams of rows: planned deliveries (the
//! ledger's `kind = 'delivery'` rows) and attempts rows, applied in that
//! order for each pair of table versions it covers. Its state of each
//! delivery is the `deliveries` view's: the latest attempts row (by
//! `attempt`), else the planned status. A delivery whose history closes it
//! (`delivered`, `dead`, `discarded`) leaves the index; what the index
//! cannot decide from the new rows alone (a closed delivery reopened, rows
//! out of order) is an [`Anomaly`], and the caller rebuilds the index from
//! the tables.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::DateTime;

use super::state::{Cap, Due};

/// A planned delivery, as the ledger holds it (only `pending` and `held`
/// ones are ever open).
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub delivery_id: String,
    pub run_id: String,
    pub flow: String,
    pub action: String,
    pub payload: Option<String>,
    /// Its run's `finished_at` (µs): batches go oldest planned first.
    pub planned_at: i64,
    /// Planned `held` (over a flow's `max_deliveries_per_run`), not `pending`.
    pub held: bool,
}

/// One attempts row, as the index needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    pub delivery_id: String,
    pub attempt: i64,
    pub status: String,
    /// µs since the epoch.
    pub attempted_at: i64,
    pub next_attempt_at: Option<i64>,
}

/// Where an open delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Due now: never tried, released or redelivered.
    Pending,
    /// Failed; due again at `next` (µs; `None`: never, as the view has it).
    Failed { next: Option<i64> },
    /// Held over its flow's `max_deliveries_per_run`: not due until released.
    Held,
}

impl Standing {
    /// The `deliveries` view's status.
    pub fn status(self) -> &'static str {
        match self {
            Standing::Pending => "pending",
            Standing::Failed { .. } => "failed",
            Standing::Held => "held",
        }
    }
}

/// One open delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub run_id: Box<str>,
    pub flow: Arc<str>,
    pub action: Arc<str>,
    pub payload: Option<Box<str>>,
    pub planned_at: i64,
    pub standing: Standing,
    /// The highest `attempt` of its history (0: none).
    pub last_attempt: i64,
    /// The `attempt` of its latest `pending` row (a reset; 0: none).
    pub reset_attempt: i64,
    /// When its first try after that reset was made (µs).
    pub first_try: Option<i64>,
}

impl Entry {
    /// Failed tries since it was planned or reset.
    pub fn tries(&self) -> u32 {
        u32::try_from(self.last_attempt - self.reset_attempt).unwrap_or(0)
    }
}

/// Why the index cannot be caught up by folding: rebuild it from the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// A delivery the index does not hold (closed, or never open) got a
    /// row that makes it open again (a `redeliver` of a dead delivery).
    Reopened(String),
    /// A row numbered at or below what the index already folded for it.
    OutOfOrder(String),
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anomaly::Reopened(id) => write!(f, "delivery {id} was reopened"),
            Anomaly::OutOfOrder(id) => write!(f, "delivery {id} got a row out of order"),
        }
    }
}

/// `(planned_at, delivery_id)`: the order batches take deliveries in.
type Key = (i64, Arc<str>);

/// One action's open deliveries, in batch order.
#[derive(Debug, Clone, Default, PartialEq)]
struct Queue {
    /// `pending`: due at any clock.
    ready: BTreeSet<Key>,
    /// `failed` with a next try: `(next_attempt_at, key)`.
    waiting: BTreeSet<(i64, Key)>,
}

/// The open deliveries of one workspace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenDeliveries {
    entries: HashMap<Arc<str>, Entry>,
    /// Per (flow, action).
    queues: HashMap<(Arc<str>, Arc<str>), Queue>,
}

/// Whether an attempts row's status leaves its delivery open.
fn reopens(status: &str) -> bool {
    matches!(status, "pending" | "failed")
}

impl OpenDeliveries {
    pub fn new() -> OpenDeliveries {
        OpenDeliveries::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, delivery_id: &str) -> Option<&Entry> {
        self.entries.get(delivery_id)
    }

    /// Every open delivery, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(id, e)| (id.as_ref(), e))
    }

    /// The shared text of a flow or action name (one copy per action).
    fn intern(&self, flow: &str, action: &str) -> (Arc<str>, Arc<str>) {
        match self
            .queues
            .keys()
            .find(|(f, a)| f.as_ref() == flow && a.as_ref() == action)
        {
            Some((f, a)) => (f.clone(), a.clone()),
            None => (Arc::from(flow), Arc::from(action)),
        }
    }

    /// Adds a planned delivery, not yet tried (one already held is kept).
    pub fn plan(&mut self, planned: Planned) {
        if self.entries.contains_key(planned.delivery_id.as_str()) {
            return;
        }
        let entry = Entry {
            run_id: planned.run_id.into(),
            flow: planned.flow.into(),
            action: planned.action.into(),
            payload: planned.payload.map(Into::into),
            planned_at: planned.planned_at,
            standing: match planned.held {
                true => Standing::Held,
                false => Standing::Pending,
            },
            last_attempt: 0,
            reset_attempt: 0,
            first_try: None,
        };
        self.insert(Arc::from(planned.delivery_id), entry);
    }

    /// Puts an entry in, with its place in its action's queue.
    pub fn insert(&mut self, id: Arc<str>, mut entry: Entry) {
        self.remove(&id);
        (entry.flow, entry.action) = self.intern(&entry.flow, &entry.action);
        self.enqueue(&id, &entry);
        self.entries.insert(id, entry);
    }

    fn enqueue(&mut self, id: &Arc<str>, entry: &Entry) {
        let key = (entry.planned_at, id.clone());
        let queue = self
            .queues
            .entry((entry.flow.clone(), entry.action.clone()))
            .or_default();
        match entry.standing {
            Standing::Pending => {
                queue.ready.insert(key);
            }
            Standing::Failed { next: Some(next) } => {
                queue.waiting.insert((next, key));
            }
            Standing::Failed { next: None } | Standing::Held => {}
        }
    }

    fn dequeue(&mut self, id: &Arc<str>, entry: &Entry) {
        let action = (entry.flow.clone(), entry.action.clone());
        let Some(queue) = self.queues.get_mut(&action) else {
            return;
        };
        let key = (entry.planned_at, id.clone());
        match entry.standing {
            Standing::Pending => {
                queue.ready.remove(&key);
            }
            Standing::Failed { next: Some(next) } => {
                queue.waiting.remove(&(next, key));
            }
            Standing::Failed { next: None } | Standing::Held => {}
        }
    }

    /// Takes a delivery out (it closed).
    fn remove(&mut self, id: &str) -> Option<Entry> {
        let (id, entry) = self.entries.remove_entry(id)?;
        self.dequeue(&id, &entry);
        Some(entry)
    }

    /// Folds attempts rows in (any order; each delivery's rows are applied
    /// by `attempt`). Rows of deliveries the index does not hold are closed
    /// ones' and change nothing, unless their latest reopens the delivery.
    pub fn apply(&mut self, mut rows: Vec<Tried>) -> Result<(), Anomaly> {
        rows.sort_by(|a, b| (&a.delivery_id, a.attempt).cmp(&(&b.delivery_id, b.attempt)));
        for rows in rows.chunk_by(|a, b| a.delivery_id == b.delivery_id) {
            let id = rows[0].delivery_id.as_str();
            let Some((key, mut entry)) = self.entries.remove_entry(id) else {
                if rows.last().is_some_and(|r| reopens(&r.status)) {
                    return Err(Anomaly::Reopened(id.to_string()));
                }
                continue;
            };
            self.dequeue(&key, &entry);
            let mut open = true;
            for row in rows {
                if row.attempt <= entry.last_attempt {
                    return Err(Anomaly::OutOfOrder(id.to_string()));
                }
                open = step(&mut entry, row);
            }
            if open {
                self.enqueue(&key, &entry);
                self.entries.insert(key, entry);
            }
        }
        Ok(())
    }

    /// Up to `limit` deliveries due at `now` (µs), oldest planned first, at
    /// most each cap's `max` of its action, none that is `excluded` (in flight).
    pub fn due(
        &self,
        now: i64,
        limit: usize,
        caps: &[Cap],
        excluded: &dyn Fn(&str) -> bool,
    ) -> Vec<Due> {
        let mut chosen: Vec<&Key> = Vec::new();
        for ((flow, action), queue) in &self.queues {
            let cap = caps
                .iter()
                .find(|c| c.flow == flow.as_ref() && c.action == action.as_ref())
                .map_or(limit, |c| c.max.min(limit));
            chosen.extend(queue.due(now, cap, excluded));
        }
        chosen.sort_unstable();
        chosen.truncate(limit);
        chosen
            .into_iter()
            .filter_map(|(_, id)| Some(self.due_row(id, self.entries.get(id)?)))
            .collect()
    }

    fn due_row(&self, id: &str, entry: &Entry) -> Due {
        Due {
            delivery_id: id.to_string(),
            run_id: entry.run_id.to_string(),
            flow: entry.flow.to_string(),
            action: entry.action.to_string(),
            payload: entry.payload.as_deref().map(str::to_string),
            first_try: entry.first_try.and_then(DateTime::from_timestamp_micros),
            tries: entry.tries(),
            last_attempt: entry.last_attempt,
        }
    }
}

impl Queue {
    /// Up to `cap` of the queue's keys due at `now`, in order, skipping `excluded`.
    fn due<'a>(&'a self, now: i64, cap: usize, excluded: &dyn Fn(&str) -> bool) -> Vec<&'a Key> {
        if cap == 0 {
            return Vec::new();
        }
        let free = |key: &&Key| !excluded(&key.1);
        let mut retried: Vec<&Key> = self
            .waiting
            .range(..(now.saturating_add(1), (i64::MIN, Arc::from(""))))
            .map(|(_, key)| key)
            .filter(free)
            .collect();
        if retried.len() > cap {
            retried.select_nth_unstable(cap - 1);
            retried.truncate(cap);
        }
        retried.sort_unstable();
        let mut ready = self.ready.iter().filter(free).take(cap).peekable();
        let mut retried = retried.into_iter().peekable();
        let mut out = Vec::with_capacity(cap.min(self.ready.len() + self.waiting.len()));
        while out.len() < cap {
            let next = match (ready.peek(), retried.peek()) {
                (Some(a), Some(b)) if a <= b => ready.next(),
                (Some(_), Some(_)) => retried.next(),
                (Some(_), None) => ready.next(),
                (None, _) => retried.next(),
            };
            match next {
                Some(key) => out.push(key),
                None => break,
            }
        }
        out
    }
}

/// Applies one attempts row (numbered above what `entry` holds) to it;
/// whether the delivery is still open.
fn step(entry: &mut Entry, row: &Tried) -> bool {
    entry.last_attempt = row.attempt;
    match row.status.as_str() {
        "pending" => {
            entry.standing = Standing::Pending;
            entry.reset_attempt = row.attempt;
            entry.first_try = None;
            true
        }
        "failed" => {
            entry.standing = Standing::Failed {
                next: row.next_attempt_at,
            };
            entry.first_try.get_or_insert(row.attempted_at);
            true
        }
        // delivered, dead, discarded (and anything unknown): closed.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(id: &str, action: &str, at: i64) -> Planned {
        Planned {
            delivery_id: id.into(),
            run_id: "run".into(),
            flow: "f".into(),
            action: action.into(),
            payload: Some(format!("{{\"id\":\"{id}\"}}")),
            planned_at: at,
            held: false,
        }
    }

    fn tried(id: &str, attempt: i64, status: &str, at: i64, next: Option<i64>) -> Tried {
        Tried {
            delivery_id: id.into(),
            attempt,
            status: status.into(),
            attempted_at: at,
            next_attempt_at: next,
        }
    }

    fn ids(due: &[Due]) -> Vec<&str> {
        due.iter().map(|d| d.delivery_id.as_str()).collect()
    }

    fn none(_: &str) -> bool {
        false
    }

    #[test]
    fn pending_deliveries_are_due_oldest_planned_first() {
        let mut open = OpenDeliveries::new();
        for (id, at) in [("c", 3), ("a", 1), ("b", 2), ("a2", 1)] {
            open.plan(planned(id, "hook", at));
        }
        assert_eq!(ids(&open.due(0, 10, &[], &none)), ["a", "a2", "b", "c"]);
        assert_eq!(ids(&open.due(0, 2, &[], &none)), ["a", "a2"]);
        assert_eq!(ids(&open.due(0, 2, &[], &|id| id == "a")), ["a2", "b"]);
    }

    #[test]
    fn a_failed_delivery_is_due_at_its_next_try_in_its_planned_place() {
        let mut open = OpenDeliveries::new();
        open.plan(planned("old", "hook", 1));
        open.plan(planned("new", "hook", 5));
        open.apply(vec![tried("old", 1, "failed", 10, Some(100))])
            .unwrap();
        assert_eq!(ids(&open.due(99, 10, &[], &none)), ["new"]);
        let due = open.due(100, 10, &[], &none);
        assert_eq!(ids(&due), ["old", "new"]);
        assert_eq!((due[0].tries, due[0].last_attempt), (1, 1));
        assert_eq!(due[0].first_try.map(|t| t.timestamp_micros()), Some(10));
        assert_eq!(open.get("old").unwrap().standing.status(), "failed");
    }

    #[test]
    fn delivered_dead_and_discarded_close_a_delivery() {
        let mut open = OpenDeliveries::new();
        for id in ["d", "x", "z", "keep"] {
            open.plan(planned(id, "hook", 1));
        }
        open.apply(vec![
            tried("d", 1, "failed", 5, Some(6)),
            tried("d", 2, "delivered", 7, None),
            tried("x", 1, "dead", 5, None),
            tried("z", 1, "discarded", 5, None),
        ])
        .unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(ids(&open.due(i64::MAX, 10, &[], &none)), ["keep"]);
        assert!(open.queues.values().all(|q| q.waiting.is_empty()));
    }

    #[test]
    fn a_reset_restarts_the_tries_and_the_first_try() {
        let mut open = OpenDeliveries::new();
        open.plan(planned("d", "hook", 1));
        open.apply(vec![
            tried("d", 1, "failed", 10, Some(20)),
            tried("d", 2, "failed", 20, Some(40)),
        ])
        .unwrap();
        let entry = open.get("d").unwrap();
        assert_eq!((entry.tries(), entry.first_try), (2, Some(10)));
        open.apply(vec![tried("d", 3, "pending", 50, Some(50))])
            .unwrap();
        let entry = open.get("d").unwrap();
        assert_eq!((entry.tries(), entry.first_try), (0, None));
        assert_eq!(entry.standing, Standing::Pending);
        open.apply(vec![tried("d", 4, "failed", 60, Some(70))])
            .unwrap();
        assert_eq!(open.get("d").unwrap().first_try, Some(60));
    }

    #[test]
    fn a_held_delivery_waits_for_its_release_or_discard() {
        let mut open = OpenDeliveries::new();
        let mut held = planned("h", "hook", 1);
        held.held = true;
        open.plan(held);
        open.plan(planned("other", "hook", 2));
        assert_eq!(ids(&open.due(i64::MAX, 10, &[], &none)), ["other"]);
        assert_eq!(open.get("h").unwrap().standing.status(), "held");
        open.apply(vec![tried("h", 1, "pending", 5, Some(5))])
            .unwrap();
        assert_eq!(ids(&open.due(0, 10, &[], &none)), ["h", "other"]);
        assert_eq!(open.get("h").unwrap().tries(), 0);
    }

    #[test]
    fn caps_bound_each_action_and_the_others_fill_the_batch() {
        let mut open = OpenDeliveries::new();
        for i in 0..5 {
            open.plan(planned(&format!("slow{i}"), "slow", i));
            open.plan(planned(&format!("fast{i}"), "fast", 10 + i));
        }
        let caps = [Cap {
            flow: "f".into(),
            action: "slow".into(),
            max: 2,
        }];
        assert_eq!(
            ids(&open.due(0, 6, &caps, &none)),
            ["slow0", "slow1", "fast0", "fast1", "fast2", "fast3"]
        );
        let stopped = [Cap {
            max: 0,
            ..caps[0].clone()
        }];
        assert_eq!(ids(&open.due(0, 2, &stopped, &none)), ["fast0", "fast1"]);
    }

    #[test]
    fn rows_it_cannot_fold_ask_for_a_rebuild() {
        let mut open = OpenDeliveries::new();
        open.plan(planned("d", "hook", 1));
        open.apply(vec![tried("d", 1, "failed", 5, Some(6))])
            .unwrap();
        assert_eq!(
            open.apply(vec![tried("d", 1, "delivered", 7, None)]),
            Err(Anomaly::OutOfOrder("d".into()))
        );
        assert_eq!(
            open.apply(vec![tried("gone", 4, "pending", 7, Some(7))]),
            Err(Anomaly::Reopened("gone".into()))
        );
        // A closed delivery's closing rows change nothing.
        open.apply(vec![tried("gone", 5, "delivered", 8, None)])
            .unwrap();
    }

    #[test]
    fn a_failed_delivery_without_a_next_try_stays_open_but_never_due() {
        let mut open = OpenDeliveries::new();
        open.plan(planned("d", "hook", 1));
        open.apply(vec![tried("d", 1, "failed", 5, None)]).unwrap();
        assert_eq!(open.len(), 1);
        assert!(open.due(i64::MAX, 10, &[], &none).is_empty());
    }
}
