//! The server runner: binds the HTTP, gRPC and metrics listeners, serves them, and shuts down
//! gracefully (stop accepting, answer every request in flight, then return).
//!
//! [`start`] binds and returns the bound addresses at once (port 0 picks a free port), so tests
//! and embedders can find the server; [`run`] is `start`, print the addresses, wait for a
//! shutdown signal, drain. [`shutdown_signal`] resolves on Ctrl-C or SIGTERM.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ServeError;
use crate::http::{self, DEFAULT_MAX_BODY_BYTES};
use crate::state::ServerState;

/// Where and how to listen.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to bind (`0.0.0.0` for every interface, `127.0.0.1` for this machine only).
    pub host: String,
    /// REST port (Triton's default 8000); 0 picks a free port.
    pub http_port: u16,
    /// gRPC port (8001); 0 picks a free port.
    pub grpc_port: u16,
    /// Prometheus metrics port (8002), serving `GET /metrics`; 0 picks a free port.
    pub metrics_port: u16,
    /// Largest HTTP request body accepted (larger ones get 413), and largest gRPC request
    /// message (larger ones get OUT_OF_RANGE).
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            host: "0.0.0.0".to_string(),
            http_port: 8000,
            grpc_port: 8001,
            metrics_port: 8002,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// A started server: its bound addresses, and the handle to stop it.
pub struct Server {
    /// The REST listener's address.
    pub http_addr: SocketAddr,
    /// The gRPC listener's address.
    pub grpc_addr: SocketAddr,
    /// The metrics listener's address.
    pub metrics_addr: SocketAddr,
    state: Arc<ServerState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServeError>>,
}

async fn bind(host: &str, port: u16, what: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind((host, port)).await.map_err(|e| {
        ServeError::internal(format!("cannot listen for {what} on {host}:{port}: {e}"))
    })
}

fn local_addr(l: &TcpListener, what: &str) -> Result<SocketAddr, ServeError> {
    l.local_addr()
        .map_err(|e| ServeError::internal(format!("the {what} listener has no address: {e}")))
}

/// A future that resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn metrics(axum::extract::State(state): axum::extract::State<Arc<ServerState>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics_text(),
    )
        .into_response()
}

async fn metrics_not_found() -> Response {
    http::error_response(&ServeError::not_found(
        "the metrics port serves only GET /metrics",
    ))
}

/// Binds the three listeners and starts serving; returns at once with the bound addresses.
pub async fn start(state: Arc<ServerState>, config: &ServerConfig) -> Result<Server, ServeError> {
    let http_l = bind(&config.host, config.http_port, "HTTP").await?;
    let grpc_l = bind(&config.host, config.grpc_port, "gRPC").await?;
    let metrics_l = bind(&config.host, config.metrics_port, "metrics").await?;
    let http_addr = local_addr(&http_l, "HTTP")?;
    let grpc_addr = local_addr(&grpc_l, "gRPC")?;
    let metrics_addr = local_addr(&metrics_l, "metrics")?;

    let (stop, stop_rx) = watch::channel(false);
    let http_app = http::router(state.clone(), config.max_body_bytes);
    let metrics_app = Router::new()
        .route("/metrics", get(metrics))
        .fallback(metrics_not_found)
        .with_state(state.clone());

    let http_task = tokio::spawn(
        axum::serve(http_l, http_app)
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let metrics_task = tokio::spawn(
        axum::serve(metrics_l, metrics_app)
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    // gRPC requests have the same size limit as HTTP bodies (--max-body-size).
    let grpc_task = tokio::spawn(crate::grpc::serve_with(
        state.clone(),
        grpc_l,
        stopped(stop_rx.clone()),
        crate::grpc::GrpcOptions::with_request_limit(config.max_body_bytes),
    ));
    let drain_state = state.clone();
    let task = tokio::spawn(async move {
        // gRPC is optional: if it cannot serve, say so and keep HTTP up.
        let grpc_watch = tokio::spawn(async move {
            match grpc_task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("gRPC front end stopped: {e} (HTTP keeps serving)"),
                Err(e) => eprintln!("gRPC front end failed: {e} (HTTP keeps serving)"),
            }
        });
        let http_result = http_task.await;
        // HTTP has answered every request it accepted; wait for the rest (gRPC) too.
        drain_state.drained().await;
        let _ = grpc_watch.await;
        let _ = metrics_task.await;
        match http_result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServeError::internal(format!("the HTTP server failed: {e}"))),
            Err(e) => Err(ServeError::internal(format!("the HTTP server failed: {e}"))),
        }
    });
    Ok(Server {
        http_addr,
        grpc_addr,
        metrics_addr,
        state,
        stop,
        task,
    })
}

impl Server {
    /// Starts a graceful shutdown: readiness turns false, new inference requests get 503, the
    /// listeners stop accepting; requests in flight still get their answers.
    pub fn shutdown(&self) {
        self.state.begin_shutdown();
        let _ = self.stop.send(true);
    }

    /// Waits until the server has stopped (after [`Server::shutdown`], once every request in
    /// flight has been answered).
    pub async fn wait(self) -> Result<(), ServeError> {
        self.task
            .await
            .map_err(|e| ServeError::internal(format!("the server task failed: {e}")))?
    }
}

/// Serves until `shutdown` resolves, then drains and returns. Prints the bound addresses
/// (`HTTP listening on 127.0.0.1:8000`, ...) first.
pub async fn run(
    state: Arc<ServerState>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let mut server = start(state.clone(), config).await?;
    println!("HTTP listening on {}", server.http_addr);
    println!("gRPC listening on {}", server.grpc_addr);
    println!("metrics listening on {}", server.metrics_addr);
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => {}
        // The HTTP server stopped by itself (an error): report it.
        res = &mut server.task => {
            return res.map_err(|e| ServeError::internal(format!("the server task failed: {e}")))?;
        }
    }
    let n = state.in_flight();
    println!("shutting down: finishing {n} request(s) in flight");
    server.shutdown();
    server.wait().await?;
    println!("stopped");
    Ok(())
}

/// A future that resolves on Ctrl-C (SIGINT) or SIGTERM.
///
/// On Unix the handlers are installed when this is called, not when the future is first
/// polled, so a signal that comes while the server is still starting is not lost (when it is
/// called inside a runtime, e.g. under `Runtime::enter`; outside one, on the first poll). Where a signal cannot be watched, that
/// branch never resolves (the other still can).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let install = || {
            (
                signal(SignalKind::interrupt()).ok(),
                signal(SignalKind::terminate()).ok(),
            )
        };
        // Outside a runtime `signal` cannot register: do it on the first poll instead.
        let early = tokio::runtime::Handle::try_current()
            .ok()
            .map(|_| install());
        async move {
            let (int, term) = early.unwrap_or_else(install);
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(int) => {}
                _ = wait(term) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
