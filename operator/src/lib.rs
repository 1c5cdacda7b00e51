//! Coffer operator: reconciles `Bucket` and `AccessKey` resources into Coffer's
//! metadata store (buckets, access keys, IAM policies) and Secrets.
//!
//! Shape (kube-rs `controller-rs`): CRD types in [`crd`], one reconciler per kind
//! ([`bucket`], [`access_key`]), a [`Context`] carrying the clients, one [`Error`]
//! enum. [`policy`] turns bucket grants into IAM policies, [`tenancy`] holds who may
//! name, adopt and share which buckets, [`conditions`] keeps
//! status conditions quiet, [`leader`] elects one active replica on a Lease, and
//! [`run`] wires the controllers, leader election, metrics and health endpoints.
//! [`secrets`] creates the key Secrets the chart must not render.

pub mod access_key;
pub mod bucket;
pub mod conditions;
pub mod crd;
pub mod duration;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod policy;
pub mod run;
pub mod secrets;
pub mod tenancy;
pub mod workload_identity;

mod context;
mod error;

pub use context::{Context, Settings};
pub use error::{Error, Result};

/// Field manager and finalizer owner: what the operator writes is attributed to it.
pub const MANAGER: &str = "coffer-operator";
