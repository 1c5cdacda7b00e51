//! End-to-end tests of the S3 API: a real server in-process, real clients,
//! against SQLite and Postgres.

mod common;

mod acl;
mod acl_grants;
mod attributes;
mod auth;
mod auth_attacks;
mod bad_input;
mod buckets;
mod conditional;
mod cors;
mod data_protection;
mod encryption;
mod endpoints;
mod fidelity;
mod kms;
mod lifecycle;
mod listing;
mod multipart;
mod object_cache;
mod object_lock;
mod objects;
mod post_object;
mod public_access;
mod quota;
mod tagging;
mod versioning;
