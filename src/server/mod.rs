//! `tripwire serve`: the ingest API, its flusher, the admin API, the
//! scheduler and the delivery worker in one process.
//!
//! It fails closed: it refuses to start while a configured key names an
//! unset variable, and every route but `/healthz` and the ingest API (write
//! keys) is behind a workspace's `admin_secret` ([`admin_routes`]).
//!
//! The app is a value: [`App::build`] binds the listener (port 0 picks a
//! free port, which [`App::addr`] reports), and [`App::run_until_stopped`]
//! serves until its shutdown future resolves, then lets the scheduler finish
//! the runs in flight.

mod api;
mod deadline;
mod deliveries;
mod listen;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::config::ConfigError;
use crate::deliver::run_delivery_loop;
use crate::error::Error;
use crate::http::ApiError;
use crate::http::auth::{Keyring, header_key};
use crate::identity::index::IndexCache;
use crate::ingest::flusher::spawn_flusher;
use crate::ingest::{self, Ingest, IngestState};
use crate::maintain::run_maintenance_loop;
use crate::scheduler::run_scheduler;
use crate::store::Store;

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub ingest: Arc<Ingest>,
    pub keys: Arc<Keyring>,
    /// Each workspace's identity index, shared by previews and scheduled runs.
    pub identities: Arc<IndexCache>,
}

/// A bound, not yet running server.
pub struct App {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl App {
    /// Binds `config.listen` and readies ingest: the WAL is opened and
    /// what an earlier process left in it is committed first.
    pub async fn build(config: Config) -> Result<App, Error> {
        let keys = Arc::new(keyring(&config)?);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Server(format!("cannot listen on {}: {e}", config.listen)))?;
        let store = Store::new(config.storage.clone());
        let ingest = Arc::new(Ingest::start(&config, &store).await?);
        let state = Arc::new(AppState {
            config: Arc::new(config),
            store,
            ingest,
            identities: Arc::new(IndexCache::new()),
            keys,
        });
        Ok(App { listener, state })
    }

    /// The address actually bound (the real port when the config said 0).
    pub fn addr(&self) -> Result<SocketAddr, Error> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Server(e.to_string()))
    }

    /// Serves the API, the flusher and the scheduler until `shutdown`
    /// resolves; then answers the requests in flight, commits everything
    /// acknowledged, and lets the runs in flight finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let (stop_scheduler, scheduler_stopped) = watch::channel(false);
        let (stop_flusher, flusher_stopped) = watch::channel(false);
        let deliveries = tokio::spawn(run_delivery_loop(
            self.state.config.clone(),
            scheduler_stopped.clone(),
        ));
        let maintenance = tokio::spawn(run_maintenance_loop(
            self.state.config.clone(),
            scheduler_stopped.clone(),
        ));
        let scheduler = tokio::spawn(run_scheduler(
            self.state.config.clone(),
            self.state.identities.clone(),
            scheduler_stopped,
        ));
        let flusher = spawn_flusher(
            self.state.ingest.clone(),
            self.state.store.clone(),
            flusher_stopped,
        );
        let settings = self.state.config.server.clone();
        listen::serve(self.listener, router(self.state), &settings, async move {
            shutdown.await;
            let _ = stop_scheduler.send(true);
        })
        .await;
        // Every acknowledged request is in the WAL now: commit it all.
        let _ = stop_flusher.send(true);
        let _ = flusher.await;
        let _ = scheduler.await;
        let _ = deliveries.await;
        let _ = maintenance.await;
        Ok(())
    }
}

/// The keys of `config`, or the refusal to serve that names every
/// configured key whose variable is unset: there is no open mode.
fn keyring(config: &Config) -> Result<Keyring, Error> {
    let unresolved = config.unresolved_secrets();
    if !unresolved.is_empty() {
        return Err(Error::Config(ConfigError::Invalid {
            origin: config.origin.clone(),
            message: format!(
                "serve refuses to start: {} (export it, or remove the key)",
                unresolved.join("; ")
            ),
        }));
    }
    Ok(Keyring::new(config))
}

fn router(state: Arc<AppState>) -> Router {
    let ingest = Arc::new(IngestState {
        config: state.config.clone(),
        ingest: state.ingest.clone(),
        keys: state.keys.clone(),
    });
    admin_routes()
        .merge(crate::web::routes(
            &state.config,
            &state.store,
            &state.keys,
            &state.ingest,
            &state.identities,
        ))
        .route("/healthz", get(api::healthz))
        .with_state(state)
        .merge(ingest::routes(ingest))
}

/// Every route that reads or acts, in one place: each handler checks the
/// workspace's `admin_secret` before it looks at anything else.
fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/schema", get(api::schema))
        .route("/v1/triggers", get(api::triggers))
        .route("/v1/triggers/{name}/preview", post(api::preview))
        .route("/v1/runs", get(api::runs))
        .route("/v1/deliveries", get(deliveries::list))
        .route("/v1/deliveries/redeliver", post(deliveries::redeliver))
        .route("/v1/runs/{run_id}/release", post(deliveries::release))
        .route("/v1/runs/{run_id}/discard", post(deliveries::discard))
        .route("/metrics", get(metrics))
}

/// `GET /metrics`: Prometheus text, behind an admin key unless `metrics_public`.
async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let key = header_key(&headers);
    match state
        .keys
        .metrics(key.as_deref(), state.config.metrics_public)
    {
        Ok(()) => ingest::metrics_page(&state.ingest),
        Err(refusal) => ApiError::from(refusal).into_response(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
