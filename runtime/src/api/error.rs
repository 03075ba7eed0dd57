//! The one place where failures become HTTP statuses and plain-text bodies, as OSCAR answers.

use crate::deployer::DeployError;
use crate::executor::invocation::InvokeError;
use crate::faas::BodyError;
use crate::modules::ModuleError;
use crate::registry::RegistryError;
use crate::stores::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Deploy-time failures.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// Invocation failures that are not the module's own.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// An HTTP service's request that its guest did not answer (timeout, trap).
    #[error(transparent)]
    Serve(crate::executor::http::ServeError),
    /// A body FaaS Supervisor's rules cannot turn into an input file.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// A job that cannot be accepted: 429 when its service is at its pending limit, 503 when
    /// the server is.
    #[error(transparent)]
    Submit(#[from] crate::jobs::CreateError),
    /// A request body that took longer than the server waits for one.
    #[error("{0}")]
    Timeout(String),
    /// A request body over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A request that is malformed for another reason.
    #[error("{0}")]
    BadRequest(String),
    /// A bucket operation failed.
    #[error(transparent)]
    Bucket(#[from] crate::storage::buckets::BucketError),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request clashes with the current state.
    #[error("{0}")]
    Conflict(String),
    /// A route parameter names nothing.
    #[error("{0}")]
    NotFound(String),
    /// A storage provider failed (download or upload): the gateway's fault, 502 as in OSCAR.
    #[error("storage: {0}")]
    Storage(String),
    /// An exposed image service's pods could not be reached.
    #[error("{0}")]
    Upstream(String),
    /// An exposed image service did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// A store the server depends on (a cluster's NATS) is away for now: 503, retry.
    #[error("unavailable, retry: {0}")]
    Unavailable(String),
    /// A failure of the server itself.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A failed read or write of the server's own stores: 503 with `Retry-After` while they
    /// are away, 409 and 404 for what they say of the key, 500 otherwise.
    pub fn store(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable(e.to_string()),
            StoreError::Conflict(_) => Self::Conflict(e.to_string()),
            StoreError::NotFound(_) => Self::NotFound(e.to_string()),
            StoreError::Io(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::store(e)
    }
}

/// The status of a store's failure inside another error.
fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ModuleError> for ApiError {
    fn from(e: ModuleError) -> Self {
        Self::Deploy(e.into())
    }
}

impl From<crate::packages::PackageError> for ApiError {
    fn from(e: crate::packages::PackageError) -> Self {
        use crate::packages::PackageError;
        match e {
            PackageError::Invalid(_) => Self::BadRequest(e.to_string()),
            PackageError::NotFound(_) => Self::NotFound(e.to_string()),
            PackageError::Store(e) => Self::store(e),
            PackageError::Io(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        Self::Deploy(e.into())
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Deploy(e) => match e {
                DeployError::Definition(_) | DeployError::UnknownModule(_) => {
                    StatusCode::BAD_REQUEST
                }
                DeployError::Registry(RegistryError::Exists(_) | RegistryError::Conflict(_)) => {
                    StatusCode::CONFLICT
                }
                DeployError::Registry(RegistryError::NotFound(_)) => StatusCode::NOT_FOUND,
                DeployError::Registry(RegistryError::Store(e)) => store_status(e),
                DeployError::Module(ModuleError::Compile(_)) => StatusCode::BAD_REQUEST,
                DeployError::Module(ModuleError::NotFound(_)) => StatusCode::NOT_FOUND,
                DeployError::Module(ModuleError::Store(e)) => store_status(e),
                DeployError::Module(_) | DeployError::Internal(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                DeployError::ModuleInUse { .. } => StatusCode::CONFLICT,
                DeployError::Cluster(_) => StatusCode::BAD_GATEWAY,
                // The registry's failure is an upstream's; the reference's is the caller's.
                DeployError::Image(e) if e.is_upstream() => StatusCode::BAD_GATEWAY,
                DeployError::Image(_) => StatusCode::BAD_REQUEST,
            },
            Self::Invoke(e) => match e {
                InvokeError::Overloaded | InvokeError::Unavailable(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                InvokeError::Outputs(crate::faas::outputs::OutputError::Io(_))
                | InvokeError::Host(_) => StatusCode::INTERNAL_SERVER_ERROR,
                // The cluster's API failed: an upstream's failure.
                InvokeError::Backend(_) | InvokeError::Mount(_) => StatusCode::BAD_GATEWAY,
                InvokeError::WrongKind(_) => StatusCode::BAD_REQUEST,
                // More than the limit itself: no retry will fit.
                InvokeError::Quota(e) if e.asked > e.max => StatusCode::FORBIDDEN,
                // The user's own limit, not the server's: retry once their calls end.
                InvokeError::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
                // Too many or too large outputs: the module's doing, reported as its failure.
                InvokeError::Outputs(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::Submit(e) => match e {
                crate::jobs::CreateError::ServiceFull { .. } => StatusCode::TOO_MANY_REQUESTS,
                crate::jobs::CreateError::ServerFull(_) => StatusCode::SERVICE_UNAVAILABLE,
                crate::jobs::CreateError::NoService(_) => StatusCode::NOT_FOUND,
                // A cluster's NATS away for now: try again.
                crate::jobs::CreateError::Store(e) => store_status(e),
            },
            Self::Serve(crate::executor::http::ServeError::Timeout(_)) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::Serve(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Bucket(e) => match e {
                crate::storage::buckets::BucketError::NotFound(_) => StatusCode::NOT_FOUND,
                crate::storage::buckets::BucketError::Exists(_) => StatusCode::CONFLICT,
                crate::storage::buckets::BucketError::Refused(_) => StatusCode::BAD_REQUEST,
                // The store's failure: an upstream's.
                crate::storage::buckets::BucketError::Store { .. }
                | crate::storage::buckets::BucketError::Unreachable { .. } => {
                    StatusCode::BAD_GATEWAY
                }
            },
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Storage(_) | Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::executor::http::ServeError> for ApiError {
    fn from(e: crate::executor::http::ServeError) -> Self {
        match e {
            crate::executor::http::ServeError::Invoke(e) => Self::Invoke(e),
            other => Self::Serve(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (status, format!("{self}\n")).into_response();
        // What may work a moment later says when to try again (a module that could not be
        // loaded, or a backend this server lacks, will not).
        let retry = (status == StatusCode::SERVICE_UNAVAILABLE
            && !matches!(self, Self::Invoke(InvokeError::Unavailable(_))))
            || matches!(
                self,
                Self::Submit(crate::jobs::CreateError::ServiceFull { .. })
            );
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
