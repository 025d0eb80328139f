//! Errors a request can get, each kind with its HTTP status and gRPC code.

/// What went wrong, in the protocol's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or does not fit the model (400 / INVALID_ARGUMENT).
    InvalidArgument,
    /// No such model, version or endpoint (404 / NOT_FOUND).
    NotFound,
    /// The body is larger than the configured limit (413 / INVALID_ARGUMENT).
    TooLarge,
    /// The queue is full or the server is shutting down (503 / UNAVAILABLE).
    Unavailable,
    /// The request waited longer than its timeout (504 / DEADLINE_EXCEEDED).
    Timeout,
    /// The model failed while running (500 / INTERNAL).
    Internal,
}

impl ErrorKind {
    /// The HTTP status code for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::TooLarge => 413,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Internal => 500,
        }
    }
}

/// An error returned to a client: a kind and a message that says what is wrong.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ServeError {
    /// The protocol-level kind.
    pub kind: ErrorKind,
    /// A message for the client.
    pub message: String,
}

impl ServeError {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ServeError {
        ServeError {
            kind,
            message: message.into(),
        }
    }
    /// A malformed request or one that does not fit the model.
    pub fn invalid(message: impl Into<String>) -> ServeError {
        ServeError::new(ErrorKind::InvalidArgument, message)
    }
    /// An unknown model, version or route.
    pub fn not_found(message: impl Into<String>) -> ServeError {
        ServeError::new(ErrorKind::NotFound, message)
    }
    /// The server cannot take the request now.
    pub fn unavailable(message: impl Into<String>) -> ServeError {
        ServeError::new(ErrorKind::Unavailable, message)
    }
    /// The model failed.
    pub fn internal(message: impl Into<String>) -> ServeError {
        ServeError::new(ErrorKind::Internal, message)
    }
}
