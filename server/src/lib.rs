//! Coffer server: an S3-compatible object store.
//!
//! A request enters in [`http`] (axum: health, metrics, and the s3s service),
//! is authenticated and authorized in [`auth`] (SigV4 via s3s, IAM policies from
//! [`iam`]), and is served by one handler per operation family in [`s3`], which
//! writes metadata through [`meta`] and bytes through [`cluster`] (the replicated
//! data plane) onto each node's [`storage`].

pub mod auth;
pub mod cluster;
pub mod console;
pub mod crypto;
pub mod http;
pub mod iam;
pub mod kms;
pub mod lifecycle;
pub mod limits;
pub mod meta;
pub mod metrics;
pub mod s3;
pub mod serve;
pub mod storage;
pub mod tls;
