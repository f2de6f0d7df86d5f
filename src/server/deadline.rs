//! The clock of one connection: what it is doing (waiting for a request,
//! receiving a request's head, or being answered) and when it is cut off,
//! enforced by a wrapper around its socket. Hyper sees a request only once
//! its head is complete, so the header and idle timeouts live here, below
//! it; a request being answered is bounded by `server.request_timeout` in
//! the service instead.
//!
//! - A new connection must deliver its first request's head within
//!   `header_timeout` of being accepted.
//! - After an answer, a connection may sit idle up to `idle_timeout`; once
//!   the next request's first byte arrives, its head must be complete
//!   within `header_timeout`.
//! - An answer the client does not read within `idle_timeout` cuts it off.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What a connection is doing, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No request under way (after an answer).
    Idle { since: Instant },
    /// A request's head is arriving (since its first byte, or since the
    /// connection was accepted).
    Head { since: Instant },
    /// A request is being answered.
    Busy,
}

/// The two timeouts the wrapper enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

impl Phase {
    /// When a connection in this phase is cut off; never while busy.
    pub fn deadline(self, timeouts: Timeouts) -> Option<Instant> {
        match self {
            Phase::Idle { since } => Some(since + timeouts.idle),
            Phase::Head { since } => Some(since + timeouts.header),
            Phase::Busy => None,
        }
    }

    /// The phase after bytes of a request arrived at `now`.
    pub fn on_bytes(self, now: Instant) -> Phase {
        match self {
            Phase::Idle { .. } => Phase::Head { since: now },
            other => other,
        }
    }
}

/// The phase, shared by the socket wrapper and the connection's service.
#[derive(Debug, Clone)]
pub struct Clock {
    phase: Arc<Mutex<Phase>>,
    timeouts: Timeouts,
}

impl Clock {
    /// A connection accepted at `now`: its first head is due.
    pub fn accepted(now: Instant, timeouts: Timeouts) -> Clock {
        Clock {
            phase: Arc::new(Mutex::new(Phase::Head { since: now })),
            timeouts,
        }
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) -> Phase {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        *phase = change(*phase);
        *phase
    }

    /// The service took a request.
    pub fn busy(&self) {
        self.update(|_| Phase::Busy);
    }

    /// The service answered at `now`.
    pub fn answered(&self, now: Instant) {
        self.update(|_| Phase::Idle { since: now });
    }

    fn deadline(&self) -> Option<Instant> {
        self.update(|phase| phase).deadline(self.timeouts)
    }
}

/// A socket that fails with `TimedOut` when its connection's deadline passes
/// while it waits.
pub struct Watched<S> {
    inner: S,
    clock: Clock,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, clock: Clock) -> Watched<S> {
        Watched {
            inner,
            clock,
            timer: None,
        }
    }

    /// Called when the socket would block: arms the timer for the current
    /// deadline, and fails once it has passed.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(deadline) = self.clock.deadline() else {
            return Poll::Pending;
        };
        let timer = match &mut self.timer {
            Some(timer) => {
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection's header or idle timeout passed",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let now = Instant::now();
                    self.clock.update(|phase| phase.on_bytes(now));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_deadline(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, bytes) {
            Poll::Pending => self.check_deadline(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.check_deadline(cx).map(Err),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.check_deadline(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[test]
    fn each_phase_has_its_deadline() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(
            Phase::Head { since: t0 }.deadline(TIMEOUTS),
            Some(t0 + s(10))
        );
        assert_eq!(
            Phase::Idle { since: t0 }.deadline(TIMEOUTS),
            Some(t0 + s(60))
        );
        assert_eq!(Phase::Busy.deadline(TIMEOUTS), None);
    }

    #[test]
    fn the_first_byte_after_idling_starts_the_header_clock_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let idle = Phase::Idle { since: t0 };
        let head = idle.on_bytes(t0 + s(50));
        assert_eq!(head, Phase::Head { since: t0 + s(50) });
        assert_eq!(
            head.on_bytes(t0 + s(55)),
            head,
            "trickling bytes buy no time"
        );
        assert_eq!(Phase::Busy.on_bytes(t0), Phase::Busy);
    }

    /// Short real timeouts: the tests assert what happens, not when.
    const SHORT: Timeouts = Timeouts {
        header: Duration::from_millis(50),
        idle: Duration::from_millis(80),
    };

    #[tokio::test]
    async fn a_silent_socket_times_out_at_the_header_deadline() {
        use tokio::io::AsyncReadExt;
        let (_client, server) = tokio::io::duplex(64);
        let accepted = Instant::now();
        let mut watched = Watched::new(server, Clock::accepted(accepted, SHORT));
        let mut byte = [0u8; 1];
        let error = watched.read(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(accepted.elapsed() >= SHORT.header);
    }

    #[tokio::test]
    async fn a_busy_connection_has_no_deadline_then_idles_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64);
        let clock = Clock::accepted(Instant::now(), SHORT);
        clock.busy();
        let mut watched = Watched::new(server, clock.clone());
        let mut byte = [0u8; 1];
        let waited = tokio::time::timeout(4 * SHORT.idle, watched.read(&mut byte)).await;
        assert!(waited.is_err(), "no deadline while busy: {waited:?}");
        client.write_all(b"x").await.unwrap();
        watched
            .read_exact(&mut byte)
            .await
            .expect("a byte while busy");
        let answered = Instant::now();
        clock.answered(answered);
        let error = watched.read(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(answered.elapsed() >= SHORT.idle);
    }
}
