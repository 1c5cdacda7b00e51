//! The operator's one error enum. Variants that describe a problem with a user's
//! resource carry the condition reason they are reported under.

use coffer_server::meta::MetaError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("metadata store: {0}")]
    Meta(#[from] MetaError),
    #[error("finalizer: {0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    #[error("{message}")]
    /// The resource cannot be reconciled as written; retrying will not help until
    /// it (or something it refers to) changes.
    Invalid {
        reason: &'static str,
        message: String,
    },
    #[error("resource has no {0}")]
    MissingField(&'static str),
}

impl Error {
    pub fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            reason,
            message: message.into(),
        }
    }

    /// Condition reason and metric label for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesError",
            Error::Meta(_) => "MetadataStoreError",
            Error::Finalizer(_) => "FinalizerError",
            Error::Serialization(_) => "SerializationError",
            Error::Invalid { reason, .. } => reason,
            Error::MissingField(_) => "InvalidResource",
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        match e {
            kube::runtime::finalizer::Error::ApplyFailed(inner)
            | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner,
            other => Error::Finalizer(Box::new(other)),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
