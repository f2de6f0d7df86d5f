//! A webhook receiver on loopback for the delivery tests, served in the
//! test's own runtime (unlike `receiver`, which runs its own for plain
//! `#[test]`s): it records every request (headers, body, when it arrived)
//! and answers with scripted replies, a delay, or a refusal of stale
//! signatures, as a test sets it up.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: String,
    pub signature: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
    /// When it arrived (the receiver's clock).
    pub at: Instant,
    /// What the receiver answered.
    pub status: u16,
}

/// A scripted answer: status and `Retry-After`.
pub type Reply = (u16, Option<&'static str>);

/// How the receiver answers, besides its scripted replies.
#[derive(Default)]
struct Behaviour {
    replies: VecDeque<Reply>,
    /// Answer only after this long.
    delay: Duration,
    /// Refuse (`400`) a `Tripwire-Signature` that does not verify with this
    /// secret or whose `t` is further than this from the receiver's clock.
    fresh_within: Option<(String, Duration)>,
    /// Answer the first request of every key with this status.
    first_try: Option<u16>,
    seen: HashSet<String>,
}

/// A receiver that records every request and answers 200 unless told otherwise.
#[derive(Clone, Default)]
pub struct Recorder {
    log: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    /// TCP connections accepted.
    connections: Arc<AtomicUsize>,
}

impl Recorder {
    /// Serves on `addr` (port 0 for any); returns the hook URL.
    pub async fn start(&self, addr: &str) -> String {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = self.connections.clone();
        let listener = listener.tap_io(move |_| {
            accepted.fetch_add(1, Ordering::SeqCst);
        });
        let app = axum::Router::new()
            .route("/hook", post(answer))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hook")
    }

    /// The next `times` requests get `status` (with `Retry-After`).
    pub fn fail_next(&self, status: u16, retry_after: Option<&'static str>, times: usize) {
        let mut behaviour = self.behaviour.lock().unwrap();
        behaviour
            .replies
            .extend(std::iter::repeat_n((status, retry_after), times));
    }

    /// Every answer waits `delay`.
    pub fn delay(&self, delay: Duration) {
        self.behaviour.lock().unwrap().delay = delay;
    }

    /// Signatures must verify with `secret` and be within `age` of now.
    pub fn refuse_stale_signatures(&self, secret: &str, age: Duration) {
        self.behaviour.lock().unwrap().fresh_within = Some((secret.to_string(), age));
    }

    /// The first request of each key gets `status`.
    pub fn fail_first_try(&self, status: u16) {
        self.behaviour.lock().unwrap().first_try = Some(status);
    }

    /// How many TCP connections the receiver accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// How many requests each Idempotency-Key came with.
    pub fn per_key(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.requests() {
            *counts.entry(r.key).or_default() += 1;
        }
        counts
    }
}

/// Whether `signature` (`t=<unix>,v1=<hex>`) verifies over `body` with
/// `secret` and its `t` is within `age` of the receiver's clock.
pub fn fresh(
    signature: Option<&str>,
    body: &str,
    secret: &str,
    age: Duration,
) -> Result<(), String> {
    let signature = signature.ok_or("no signature")?;
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .ok_or("not t=<unix>,v1=<hex>")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    if hex::encode(mac.finalize().into_bytes()) != v1 {
        return Err("the signature does not verify".into());
    }
    let t: i64 = t.parse().map_err(|_| "t is not a number")?;
    let skew = (chrono::Utc::now().timestamp() - t).unsigned_abs();
    if skew > age.as_secs() {
        return Err(format!("stale signature: t is {skew} s from now"));
    }
    Ok(())
}

async fn answer(State(receiver): State<Recorder>, headers: HeaderMap, body: String) -> Response {
    let at = Instant::now();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let key = header("idempotency-key").unwrap_or_default();
    let signature = header("tripwire-signature");
    let (reply, delay) = {
        let mut behaviour = receiver.behaviour.lock().unwrap();
        let first = behaviour.seen.insert(key.clone());
        let refusal = behaviour
            .fresh_within
            .as_ref()
            .and_then(|(secret, age)| fresh(signature.as_deref(), &body, secret, *age).err());
        let reply = match (refusal, behaviour.first_try) {
            (Some(why), _) => Err(why),
            (None, Some(status)) if first => Ok(Some((status, None))),
            (None, _) => Ok(behaviour.replies.pop_front()),
        };
        (reply, behaviour.delay)
    };
    let (status, response) = match reply {
        Err(why) => (400, (StatusCode::BAD_REQUEST, why).into_response()),
        Ok(None) => (200, StatusCode::OK.into_response()),
        Ok(Some((status, retry_after))) => {
            let code = StatusCode::from_u16(status).unwrap();
            let response = match retry_after {
                Some(after) => (code, [("retry-after", after)], "slow down").into_response(),
                None => (code, "receiver says no").into_response(),
            };
            (status, response)
        }
    };
    receiver.log.lock().unwrap().push(Received {
        key,
        signature,
        content_type: header("content-type"),
        body,
        at,
        status,
    });
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

/// A free loopback port nothing listens on (yet).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
