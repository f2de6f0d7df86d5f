//! The accept loop of `tripwire serve`: at most `server.max_connections`
//! connections at once (more wait in the kernel's backlog, costing no
//! descriptor), each served by hyper's HTTP/1 behind the header and idle
//! deadlines of `deadline`, each request bounded by
//! `server.request_timeout`. The descriptor limit is raised to its hard
//! limit at start, and the connection cap kept below it, so a flood of
//! connections can never starve the write-ahead log of descriptors.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::deadline::{Clock, Timeouts, Watched};
use crate::config::Server;
use crate::http::ApiError;

/// Descriptors kept free for everything but connections: the WAL, table
/// files, webhook deliveries, query spills.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// How long the loop pauses after a failed accept (out of descriptors, say)
/// before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// The most connections to allow: the configured cap, lowered to leave
/// [`RESERVED_DESCRIPTORS`] of the descriptor limit free (at least one).
pub fn connection_cap(configured: usize, descriptor_limit: Option<u64>) -> usize {
    match descriptor_limit {
        Some(limit) => {
            let room = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
            configured.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
        None => configured,
    }
}

/// Raises the soft limit on open descriptors to the hard limit where
/// allowed; returns the soft limit in force afterwards.
#[cfg(unix)]
pub fn raise_descriptor_limit() -> Option<u64> {
    /// Enough for any cap; an unlimited hard limit is not taken literally.
    const MOST: u64 = 1 << 20;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the current limits into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let wanted = limit.rlim_max.min(MOST);
    if limit.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; failure leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(wanted);
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(not(unix))]
pub fn raise_descriptor_limit() -> Option<u64> {
    None
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting, lets every connection finish its request in flight, and
/// returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &Server,
    shutdown: impl Future<Output = ()>,
) {
    let cap = connection_cap(settings.max_connections, raise_descriptor_limit());
    if cap < settings.max_connections {
        tracing::warn!(
            max_connections = settings.max_connections,
            cap,
            "server.max_connections lowered to fit the descriptor limit"
        );
    }
    let permits = Arc::new(Semaphore::new(cap));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => None,
            accepted = accept(&listener, &permits) => accepted,
        };
        let Some((stream, permit)) = accepted else {
            break;
        };
        let connection = Connection {
            router: router.clone(),
            timeouts: Timeouts {
                header: settings.header_timeout,
                idle: settings.idle_timeout,
            },
            request_timeout: settings.request_timeout,
        };
        let stopping = stopping.clone();
        connections.spawn(async move {
            connection.serve(stream, stopping).await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

/// The next connection, once one of the cap's permits is free (`None` if
/// the permits were closed, which nothing does).
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    loop {
        let permit = permits.clone().acquire_owned().await.ok()?;
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                return Some((stream, permit));
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed; trying again shortly");
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

/// What serving one connection needs.
struct Connection {
    router: Router,
    timeouts: Timeouts,
    request_timeout: Duration,
}

impl Connection {
    async fn serve(self, stream: TcpStream, mut stopping: watch::Receiver<bool>) {
        let clock = Clock::accepted(Instant::now(), self.timeouts);
        let io = TokioIo::new(Watched::new(stream, clock.clone()));
        let router = self.router;
        let request_timeout = self.request_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let router = router.clone();
            let clock = clock.clone();
            async move {
                clock.busy();
                let response = answer(router, request, request_timeout).await;
                clock.answered(Instant::now());
                Ok::<Response, Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        tokio::pin!(connection);
        let served = tokio::select! {
            served = connection.as_mut() => served,
            _ = async { stopping.wait_for(|stop| *stop).await.map(|_| ()) } => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = served {
            tracing::debug!(%error, "connection closed");
        }
    }
}

/// The router's answer to `request`, or 408 once `timeout` has passed
/// (reading a slow body included).
async fn answer(router: Router, request: hyper::Request<Incoming>, timeout: Duration) -> Response {
    let request = request.map(Body::new);
    match tokio::time::timeout(timeout, router.oneshot(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => {
            let message = format!(
                "the request took longer than server.request_timeout ({})",
                crate::duration::format_duration(timeout)
            );
            ApiError::RequestTimeout(message).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(connection_cap(1024, Some(20_000)), 1024);
        assert_eq!(connection_cap(1024, Some(1024)), 768);
        assert_eq!(connection_cap(1024, Some(100)), 1);
        assert_eq!(connection_cap(1024, None), 1024);
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let soft = raise_descriptor_limit().expect("getrlimit works");
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, soft);
        assert_eq!(soft, limit.rlim_max.min(1 << 20));
    }
}
