//! millrace's inference server.
//!
//! It speaks the Open Inference Protocol (KServe v2, also spoken by NVIDIA Triton), so clients
//! written for Triton or KServe work unchanged:
//!
//! - [`types`]: the protocol's data model (datatypes, requests, responses, metadata) and the
//!   raw little-endian tensor encoding shared by HTTP's binary extension and gRPC's raw contents;
//! - [`error`]: [`ServeError`], each kind mapped to one HTTP status and one gRPC code;
//! - [`state`]: [`ServerState`], the models being served and `infer`, shared by the front ends;
//! - [`config`]: `config.pbtxt` (Triton's model configuration) and how it combines with
//!   [`ServeOptions`]; [`repository`]: scanning a model repository;
//! - [`batcher`]: dynamic batching (a bounded queue and worker instances per model version);
//! - [`metrics`]: Triton-named Prometheus counters;
//! - [`http`]: the REST endpoints (with Triton's binary tensor data extension);
//! - [`server`]: [`run`] binds HTTP, gRPC and metrics listeners and shuts down gracefully.
//!
//! The front ends (HTTP, gRPC, metrics) only translate between wire formats and [`ServerState`].

pub mod batcher;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod repository;
pub mod server;
pub mod state;
pub mod types;

pub use error::{ErrorKind, ServeError};
pub use server::{run, shutdown_signal, start, Server, ServerConfig};
pub use state::{ServeOptions, ServerState};
pub use types::{
    Datatype, InferInput, InferRequest, InferResponse, ModelMetadata, ServerMetadata,
    TensorMetadata,
};
