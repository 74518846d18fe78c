//! Conduit control plane: a wire-compatible rewrite of the Conduit v0.1.0
//! controller, built around a high-throughput telemetry ingester.
//!
//! Module layout follows dependency direction. Floors: `proto` (the wire
//! types and every contract two sides share), `core`, `k8s`, `ingest`,
//! `stat`, `remote_write`, `admin`, `grpc`, `component`. Rooms: the six components
//! (`telemetry`, `public_api`, `destination`, `proxy_api`, `tap`, `web`),
//! `client`, `simulate` and `install`, which name only floors, never one
//! another. `core` and `ingest` import neither tonic nor kube; `k8s` never
//! imports tonic. `cli` and `run` wire the rooms together.
//! `tests/layering.rs` checks all of it.

pub mod admin;
pub mod cli;
pub mod client;
pub mod component;
pub mod core;
pub mod destination;
pub mod grpc;
pub mod ingest;
pub mod install;
pub mod k8s;
pub mod proto;
pub mod proxy_api;
pub mod public_api;
pub mod remote_write;
pub mod run;
pub mod simulate;
pub mod stat;
pub mod tap;
pub mod telemetry;
pub mod web;
