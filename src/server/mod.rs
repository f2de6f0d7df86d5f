//! `tripwire serve`: the ingest API, its flusher, the trigger API, the
//! scheduler and the delivery worker in one process.
//!
//! The app is a value: [`App::build`] binds the listener (port 0 picks a
//! free port, which [`App::addr`] reports), and [`App::run_until_stopped`]
//! serves until its shutdown future resolves, then lets the scheduler finish
//! the runs in flight.

mod api;
mod deadline;
mod listen;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::deliver::run_delivery_loop;
use crate::error::Error;
use crate::ingest::flusher::run_flusher;
use crate::ingest::{self, Ingest, IngestState};
use crate::maintain::run_maintenance_loop;
use crate::scheduler::run_scheduler;
use crate::store::Store;

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub ingest: Arc<Ingest>,
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
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Server(format!("cannot listen on {}: {e}", config.listen)))?;
        let store = Store::new(config.storage.clone());
        let ingest = Arc::new(Ingest::start(&config, &store).await?);
        let state = Arc::new(AppState {
            config: Arc::new(config),
            store,
            ingest,
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
        let scheduler = tokio::spawn(run_scheduler(self.state.config.clone(), scheduler_stopped));
        let flusher = tokio::spawn(run_flusher(
            self.state.ingest.clone(),
            self.state.store.clone(),
            flusher_stopped,
        ));
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

fn router(state: Arc<AppState>) -> Router {
    let ingest = Arc::new(IngestState {
        config: state.config.clone(),
        ingest: state.ingest.clone(),
    });
    Router::new()
        .route("/v1/schema", get(api::schema))
        .route("/healthz", get(api::healthz))
        .route("/v1/triggers", get(api::triggers))
        .route("/v1/triggers/{name}/preview", post(api::preview))
        .route("/v1/runs", get(api::runs))
        .with_state(state)
        .merge(ingest::routes(ingest))
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
