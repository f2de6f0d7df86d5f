//! One webhook delivery: build the request (body byte for byte, the
//! `Idempotency-Key`, the signature), send it over `http://` or `https://`
//! (rustls, with the roots of `trust`), and turn the answer into a
//! [`RetryAction`]. A workspace that keeps webhooks off private networks
//! sends through a client whose resolver refuses them (`network`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Response};
use url::Url;

use super::network::{PublicOnly, check_literal, refusal};
use super::retry::{RetryAction, classify_http};
use super::sign::SIGNATURE_HEADER;
use super::trust::trusted_roots;

/// Connecting to a receiver gives up after this (the payload's timeout
/// bounds the whole request).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of a refusing receiver's answer is kept as the attempt's error.
pub const ERROR_BODY_BYTES: usize = 512;

/// A successful answer's body is read (so the connection is reused) up to this.
pub const DRAINED_BODY_BYTES: usize = 64 << 10;

/// One webhook to send.
#[derive(Debug, Clone)]
pub struct Webhook<'a> {
    pub delivery_id: &'a str,
    pub url: &'a str,
    pub body: &'a str,
    pub timeout: Duration,
}

/// What one try of a delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempted {
    pub action: RetryAction,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

impl Attempted {
    pub fn delivered(http_status: Option<u16>) -> Attempted {
        Attempted {
            action: RetryAction::Successful,
            http_status,
            error: None,
        }
    }

    /// A failure that may pass.
    pub fn transient(error: String) -> Attempted {
        Attempted {
            action: RetryAction::Retry { after: None },
            http_status: None,
            error: Some(error),
        }
    }

    /// A failure that trying again cannot fix.
    pub fn refused(reason: String) -> Attempted {
        Attempted {
            action: RetryAction::DontRetry {
                reason: reason.clone(),
            },
            http_status: None,
            error: Some(reason),
        }
    }
}

/// The process's HTTP clients (one connection pool each), built once.
pub struct Clients {
    /// For workspaces that allow private networks.
    open: Client,
    /// Resolves through [`PublicOnly`] and ignores `HTTP(S)_PROXY` (a proxy
    /// would resolve names itself, beyond the check).
    public_only: Client,
    /// Why https cannot be trusted, when no CA certificate could be loaded.
    trust_problem: Option<String>,
}

impl Clients {
    /// The clients; an error only when one cannot be built at all.
    pub fn get() -> Result<&'static Clients, String> {
        static CLIENTS: OnceLock<Result<Clients, String>> = OnceLock::new();
        CLIENTS
            .get_or_init(Clients::build)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn build() -> Result<Clients, String> {
        let (roots, trust_problem) = match trusted_roots() {
            Ok(roots) => (roots, None),
            Err(problem) => {
                tracing::warn!("https webhooks cannot be delivered: {problem}");
                (Vec::new(), Some(problem))
            }
        };
        let builder = || {
            let mut builder = Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("tripwire/", env!("CARGO_PKG_VERSION")));
            for root in &roots {
                builder = builder.add_root_certificate(root.clone());
            }
            builder
        };
        let fail = |e: reqwest::Error| format!("cannot build the HTTP client: {e}");
        Ok(Clients {
            open: builder().build().map_err(fail)?,
            public_only: builder()
                .no_proxy()
                .dns_resolver(Arc::new(PublicOnly))
                .build()
                .map_err(fail)?,
            trust_problem,
        })
    }

    fn client(&self, allow_private_networks: bool) -> &Client {
        match allow_private_networks {
            true => &self.open,
            false => &self.public_only,
        }
    }
}

/// Sends `hook` once at `now`, with its `Tripwire-Signature` header value
/// when the workspace signs; `allow_private_networks` is the workspace's.
pub async fn send(
    clients: &Clients,
    allow_private_networks: bool,
    hook: &Webhook<'_>,
    signature: Option<String>,
    now: DateTime<Utc>,
) -> Attempted {
    let url = match check_url(hook.url) {
        Ok(url) => url,
        Err(reason) => return Attempted::refused(reason),
    };
    if !allow_private_networks && let Err(reason) = check_literal(&url) {
        return Attempted::refused(reason);
    }
    if url.scheme() == "https"
        && let Some(problem) = &clients.trust_problem
    {
        return Attempted::transient(format!("https: {problem}"));
    }
    let mut request = clients
        .client(allow_private_networks)
        .post(url)
        .timeout(hook.timeout)
        .header(CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", hook.delivery_id)
        .body(hook.body.to_string());
    if let Some(signature) = signature {
        request = request.header(SIGNATURE_HEADER, signature);
    }
    match request.send().await {
        Ok(response) => answered(response, now).await,
        Err(e) => match refusal(&e) {
            Some(private) => Attempted::refused(private.to_string()),
            None => failed_to_send(&e, hook.timeout),
        },
    }
}

/// `http://` and `https://` URLs with a host can be sent to.
fn check_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("bad webhook URL {url:?}: {e}"))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(parsed),
        "http" | "https" => Err(format!("bad webhook URL {url:?}: no host")),
        other => Err(format!(
            "webhook URL {url:?}: scheme {other:?} is not http or https"
        )),
    }
}

/// The decision on an answer; a refusal keeps the start of its body.
async fn answered(response: Response, now: DateTime<Utc>) -> Attempted {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let action = classify_http(status, retry_after.as_deref(), now);
    if action == RetryAction::Successful {
        let _ = read_prefix(response, DRAINED_BODY_BYTES).await;
        return Attempted::delivered(Some(status));
    }
    let body = read_prefix(response, ERROR_BODY_BYTES).await;
    let mut error = format!("HTTP {status}");
    if let RetryAction::DontRetry { reason } = &action {
        error = reason.clone();
    }
    let body = body.trim();
    if !body.is_empty() {
        error.push_str(": ");
        error.push_str(body);
    }
    Attempted {
        action,
        http_status: Some(status),
        error: Some(error),
    }
}

/// Up to `limit` bytes of the body, as text; reading stops at the limit.
async fn read_prefix(mut response: Response, limit: usize) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(limit);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A request that got no answer: timeouts and connection failures may pass.
fn failed_to_send(e: &reqwest::Error, timeout: Duration) -> Attempted {
    if e.is_builder() {
        return Attempted::refused(format!("cannot build the request: {e}"));
    }
    let what = if e.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        format!("cannot connect: {}", source_chain(e))
    } else {
        format!("request failed: {}", source_chain(e))
    };
    Attempted::transient(what)
}

/// An error with its causes, which say what actually went wrong.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_urls_are_sent_to() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("https://example.com/").is_ok());
        assert!(check_url("ftp://example.com/").unwrap_err().contains("ftp"));
        assert!(check_url("not a url").is_err());
    }
}
