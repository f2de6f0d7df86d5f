//! Performing one batch of due deliveries (docs/architecture.md
//! "Deliveries"): each is claimed just before it is performed (`claim`),
//! webhooks are paced per action (`pace`) and signed with the clock read
//! as each request goes, and what cannot start within the claim window
//! waits for a later batch. Nothing here records anything: the worker
//! records what was tried.
//!
//! ```text
//! due ─┬▶ webhooks: one driver per action ─▶ (claim, if rate-limited) ─▶ pace ─▶ slot (≤ concurrency)
//!      │                                      ─▶ (claim, if not yet) ─▶ sign (clock) ─▶ send
//!      └▶ file lines, events, unusable payloads ─▶ claim ─▶ write / emit / refuse
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use super::DeliverError;
use super::claim::{self, Claims, Taken};
use super::clock::Clock;
use super::emit::{Emission, emit};
use super::file::append_lines;
use super::pace::{ActionKey, Pacer, relieve, throttle, try_send};
use super::payload::Payload;
use super::retry::RetryAction;
use super::sign::signature;
use super::state::Due;
use super::webhook::{self, Attempted, Clients, Webhook};
use super::worker::note_unsigned_once;
use crate::config::Config;
use crate::flow::rate::RateLimit;
use crate::project::resolve_confined;
use crate::store::Store;

/// What became of one due delivery in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Performed {
    /// Tried at `at` (the worker's clock as it went): record it.
    Tried {
        outcome: Attempted,
        at: DateTime<Utc>,
    },
    /// Another worker holds its claim: it records it.
    Busy,
    /// Not started within the claim window (its action's rate limit, every
    /// request slot busy, or a slow storage taking claims): still due, for
    /// a later batch.
    Deferred,
    /// The storage could not take its claim: still due, left alone for now.
    Unclaimed,
}

/// What every delivery of a batch shares.
pub struct Performer<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
    pub workspace: &'a str,
    /// The signing secrets that resolve (none: webhooks go unsigned).
    pub secrets: Vec<String>,
    pub clock: Clock,
    pub claims: Arc<Claims>,
    pub pacer: Arc<Mutex<Pacer>>,
    /// Live replicas splitting each action's rate.
    pub share: u32,
    /// Webhook requests in flight at once.
    pub concurrency: usize,
    /// Nothing is claimed after this.
    pub deadline: Instant,
}

/// One webhook to send, owned by the task that sends it.
#[derive(Debug, Clone)]
struct Hook {
    delivery_id: String,
    attempt: i64,
    url: String,
    body: String,
    timeout: Duration,
    rate_limit: Option<RateLimit>,
}

/// A delivery performed here rather than over HTTP.
#[derive(Debug, Clone)]
enum Local {
    File {
        path: PathBuf,
        line: String,
    },
    Event {
        event: String,
    },
    /// An unusable payload: dead, with the reason.
    Refused(String),
}

/// What the webhook tasks of a batch share.
struct Sending {
    clients: &'static Clients,
    /// The workspace's `allow_private_networks`.
    allow_private_networks: bool,
    secrets: Vec<String>,
    clock: Clock,
    claims: Arc<Claims>,
    pacer: Arc<Mutex<Pacer>>,
    slots: Arc<Semaphore>,
    share: u32,
    deadline: Instant,
    lifetime: Duration,
}

impl Performer<'_> {
    /// Performs what it can of `due`; one [`Performed`] per delivery, in
    /// order. An error only when webhooks cannot be sent at all.
    pub async fn perform(&self, due: &[Due]) -> Result<Vec<Performed>, DeliverError> {
        let mut performed = vec![Performed::Deferred; due.len()];
        let mut hooks: BTreeMap<ActionKey, Vec<(usize, Hook)>> = BTreeMap::new();
        let mut others = Vec::new();
        for (i, d) in due.iter().enumerate() {
            match Payload::parse(d.payload.as_deref()) {
                Ok(Payload::Webhook {
                    url,
                    body,
                    timeout_ms,
                    rate_limit,
                }) => {
                    let key = ActionKey {
                        workspace: self.workspace.to_string(),
                        flow: d.flow.clone(),
                        action: d.action.clone(),
                    };
                    let hook = Hook {
                        delivery_id: d.delivery_id.clone(),
                        attempt: d.last_attempt + 1,
                        url,
                        body,
                        timeout: Duration::from_millis(timeout_ms),
                        rate_limit,
                    };
                    hooks.entry(key).or_default().push((i, hook));
                }
                Ok(Payload::File { path, line }) => {
                    match resolve_confined(&self.config.project_dir, &path) {
                        Ok(path) => others.push((i, Local::File { path, line })),
                        Err(reason) => others.push((i, Local::Refused(reason))),
                    }
                }
                Ok(Payload::Event { event }) => others.push((i, Local::Event { event })),
                Err(reason) => others.push((i, Local::Refused(reason))),
            }
        }
        let longest = hooks
            .values()
            .flatten()
            .map(|(_, h)| h.timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        let lifetime = claim::lifetime(longest);
        let (sent, rest) = tokio::join!(
            self.send(hooks, lifetime),
            self.perform_others(due, others, lifetime)
        );
        for (i, outcome) in sent?.into_iter().chain(rest) {
            performed[i] = outcome;
        }
        Ok(performed)
    }

    /// Sends the webhooks: one driver per action, all in flight together
    /// bounded by `concurrency`.
    async fn send(
        &self,
        hooks: BTreeMap<ActionKey, Vec<(usize, Hook)>>,
        lifetime: Duration,
    ) -> Result<Vec<(usize, Performed)>, DeliverError> {
        if hooks.is_empty() {
            return Ok(Vec::new());
        }
        if self.secrets.is_empty() {
            note_unsigned_once(self.config, self.workspace);
        }
        let clients = Clients::get().map_err(DeliverError::Http)?;
        let sending = Arc::new(Sending {
            clients,
            allow_private_networks: self
                .config
                .workspace(self.workspace)
                .is_some_and(|w| w.allow_private_networks),
            secrets: self.secrets.clone(),
            clock: self.clock.clone(),
            claims: self.claims.clone(),
            pacer: self.pacer.clone(),
            slots: Arc::new(Semaphore::new(self.concurrency.max(1))),
            share: self.share,
            deadline: self.deadline,
            lifetime,
        });
        let drivers: Vec<_> = hooks
            .into_iter()
            .map(|(key, hooks)| tokio::spawn(drive(sending.clone(), key, hooks)))
            .collect();
        let mut performed = Vec::new();
        for driver in drivers {
            // A driver that panicked leaves its deliveries deferred.
            performed.extend(driver.await.unwrap_or_default());
        }
        Ok(performed)
    }

    /// Claims, then performs, the file lines and events (and refuses the
    /// unusable payloads) of the batch.
    async fn perform_others(
        &self,
        due: &[Due],
        others: Vec<(usize, Local)>,
        lifetime: Duration,
    ) -> Vec<(usize, Performed)> {
        let mut performed = Vec::new();
        let claimed = self.claim_all(due, others, lifetime, &mut performed).await;
        let (mut lines, mut events) = (Vec::new(), Vec::new());
        for (i, local) in claimed {
            match local {
                Local::File { path, line } => lines.push((i, (path, line))),
                Local::Event { event } => events.push((i, event)),
                Local::Refused(reason) => performed.push((
                    i,
                    Performed::Tried {
                        outcome: Attempted::refused(reason),
                        at: self.clock.now(),
                    },
                )),
            }
        }
        let (written, emitted) = tokio::join!(self.write(&lines), self.emit(due, &events));
        performed.extend(written);
        performed.extend(emitted);
        performed
    }

    /// Claims each of `others` within the claim window; the busy, the
    /// unclaimable and those past the window go to `performed`.
    async fn claim_all(
        &self,
        due: &[Due],
        others: Vec<(usize, Local)>,
        lifetime: Duration,
        performed: &mut Vec<(usize, Performed)>,
    ) -> Vec<(usize, Local)> {
        let attempts: Vec<(&str, i64)> = others
            .iter()
            .map(|(i, _)| (due[*i].delivery_id.as_str(), due[*i].last_attempt + 1))
            .collect();
        let taken = self
            .claims
            .take_all(&attempts, self.clock.now(), lifetime, self.deadline)
            .await;
        let taken = others
            .into_iter()
            .zip(taken)
            .map(|((i, local), taken)| (i, local, taken));
        let mut claimed = Vec::new();
        for (i, local, taken) in taken {
            let Some(taken) = taken else {
                performed.push((i, Performed::Deferred));
                continue;
            };
            match taken {
                Ok(Taken::Mine(_)) => claimed.push((i, local)),
                Ok(Taken::Busy) => performed.push((i, Performed::Busy)),
                Err(e) => {
                    tracing::warn!("delivery {}: cannot claim: {e}", due[i].delivery_id);
                    performed.push((i, Performed::Unclaimed));
                }
            }
        }
        claimed.sort_by_key(|(i, _)| *i);
        claimed
    }

    /// Appends the file deliveries' lines, off the async workers.
    async fn write(&self, lines: &[(usize, (PathBuf, String))]) -> Vec<(usize, Performed)> {
        if lines.is_empty() {
            return Vec::new();
        }
        let at = self.clock.now();
        let owned: Vec<(PathBuf, String)> = lines.iter().map(|(_, l)| l.clone()).collect();
        let outcomes = tokio::task::spawn_blocking(move || append_lines(&owned))
            .await
            .unwrap_or_else(|e| {
                let failed = Attempted::transient(format!("file writer stopped: {e}"));
                vec![failed; lines.len()]
            });
        lines
            .iter()
            .zip(outcomes)
            .map(|((i, _), outcome)| (*i, Performed::Tried { outcome, at }))
            .collect()
    }

    /// Stores the events of event deliveries (see `emit`).
    async fn emit(&self, due: &[Due], events: &[(usize, String)]) -> Vec<(usize, Performed)> {
        if events.is_empty() {
            return Vec::new();
        }
        let at = self.clock.now();
        let emissions: Vec<Emission> = events
            .iter()
            .map(|(i, event)| Emission {
                delivery_id: &due[*i].delivery_id,
                run_id: &due[*i].run_id,
                event,
            })
            .collect();
        let outcomes = emit(self.store, self.workspace, &emissions, at).await;
        events
            .iter()
            .zip(outcomes)
            .map(|((i, _), outcome)| (*i, Performed::Tried { outcome, at }))
            .collect()
    }
}

/// Sends one action's webhooks in order, each when the action's bucket
/// lets it go and a slot is free; the rest are deferred once that would
/// be past the claim window. A rate-limited action claims a delivery
/// before it spends a token on it, so what another worker holds costs
/// none (a claim then not used is released); others claim as they send.
async fn drive(
    sending: Arc<Sending>,
    key: ActionKey,
    hooks: Vec<(usize, Hook)>,
) -> Vec<(usize, Performed)> {
    let mut performed = Vec::new();
    let mut sends = Vec::new();
    let mut hooks = hooks.into_iter();
    for (i, hook) in hooks.by_ref() {
        if Instant::now() > sending.deadline {
            performed.push((i, Performed::Deferred));
            break;
        }
        let held = match hook.rate_limit {
            Some(_) => match claim(&sending, &hook).await {
                Ok(generation) => Some(generation),
                Err(other) => {
                    performed.push((i, other));
                    continue;
                }
            },
            None => None,
        };
        let slot = match pace(&sending, &key, hook.rate_limit).await {
            true => sending.slots.clone().acquire_owned().await.ok(),
            false => None,
        };
        let Some(slot) = slot.filter(|_| Instant::now() <= sending.deadline) else {
            release(&sending, &hook, held).await;
            performed.push((i, Performed::Deferred));
            break;
        };
        let (sending, key) = (sending.clone(), key.clone());
        sends.push((
            i,
            tokio::spawn(async move {
                let performed = send(&sending, &key, &hook, held).await;
                drop(slot);
                performed
            }),
        ));
    }
    performed.extend(hooks.map(|(i, _)| (i, Performed::Deferred)));
    for (i, send) in sends {
        performed.push((i, send.await.unwrap_or(Performed::Deferred)));
    }
    performed
}

/// Claims `hook`'s attempt: its generation, or what to make of it.
async fn claim(sending: &Sending, hook: &Hook) -> Result<u32, Performed> {
    let now = sending.clock.now();
    let taken = sending
        .claims
        .take(&hook.delivery_id, hook.attempt, now, sending.lifetime)
        .await;
    match taken {
        Ok(Taken::Mine(generation)) => Ok(generation),
        Ok(Taken::Busy) => Err(Performed::Busy),
        Err(e) => {
            tracing::warn!("delivery {}: cannot claim: {e}", hook.delivery_id);
            Err(Performed::Unclaimed)
        }
    }
}

/// Gives back a claim that was not used (nothing was sent under it).
async fn release(sending: &Sending, hook: &Hook, held: Option<u32>) {
    if let Some(generation) = held {
        sending
            .claims
            .release(
                &hook.delivery_id,
                hook.attempt,
                generation,
                sending.clock.now(),
            )
            .await;
    }
}

/// Waits until the action's bucket lets one request go; false when that
/// would be past the claim window.
async fn pace(sending: &Sending, key: &ActionKey, rate: Option<RateLimit>) -> bool {
    loop {
        let now = Instant::now();
        let verdict = {
            let Ok(mut pacer) = sending.pacer.lock() else {
                return false;
            };
            let bucket = pacer.bucket(key);
            bucket.rate = rate;
            try_send(bucket, sending.share, now)
        };
        match verdict {
            Ok(()) => return true,
            Err(at) if at > sending.deadline => return false,
            Err(at) => tokio::time::sleep_until(at.into()).await,
        }
    }
}

/// Claims (unless `held`), signs and sends one webhook; a `429` slows its
/// whole action. A claim is only taken, and used, within the claim window
/// (a task started late, or a slow storage, defers the delivery): what a
/// claim excludes rests on the read of what is due being that fresh.
async fn send(sending: &Sending, key: &ActionKey, hook: &Hook, held: Option<u32>) -> Performed {
    if held.is_none() {
        if Instant::now() > sending.deadline {
            return Performed::Deferred;
        }
        let generation = match claim(sending, hook).await {
            Ok(generation) => generation,
            Err(other) => return other,
        };
        if Instant::now() > sending.deadline {
            release(sending, hook, Some(generation)).await;
            return Performed::Deferred;
        }
    }
    let at = sending.clock.now();
    let signed = (!sending.secrets.is_empty())
        .then(|| signature(&sending.secrets, at.timestamp(), &hook.body));
    let webhook = Webhook {
        delivery_id: &hook.delivery_id,
        url: &hook.url,
        body: &hook.body,
        timeout: hook.timeout,
    };
    let outcome = webhook::send(
        sending.clients,
        sending.allow_private_networks,
        &webhook,
        signed,
        at,
    )
    .await;
    if let Ok(mut pacer) = sending.pacer.lock() {
        let bucket = pacer.bucket(key);
        match (&outcome.action, outcome.http_status) {
            (RetryAction::Retry { after }, Some(429)) => throttle(bucket, *after, Instant::now()),
            (RetryAction::Successful, _) => relieve(bucket),
            _ => {}
        }
    }
    Performed::Tried { outcome, at }
}
