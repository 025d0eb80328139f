//! The gRPC front end: `inference.GRPCInferenceService` (KServe v2 / Triton).
//!
//! Placeholder until the service lands: it refuses to start, so no one mistakes it for a server.

use std::future::Future;
use std::sync::Arc;

use crate::error::ServeError;
use crate::state::ServerState;

/// Serves gRPC on `listener` until `shutdown` resolves.
pub async fn serve(
    _state: Arc<ServerState>,
    _listener: tokio::net::TcpListener,
    _shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Err(ServeError::internal("the gRPC front end is not built yet"))
}
