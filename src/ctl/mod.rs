//! The control plane: HTTP/1.1 + JSON over a Unix socket (see [`crate::api`] for the routes).
//!
//! ```text
//! superctl ── client (hyper) ──► socket ──► server (hyper on tokio) ──► ApiTx ──► supervisor
//!                                                                   ◄── oneshot Response
//! ```
//!
//! - [`server`]: [`bind`] the socket safely, then [`serve`] it: peer credentials checked on every
//!   connection before hyper sees a byte; request size, time and concurrency bounded; one
//!   request per connection.
//! - [`client`]: [`Client`], used by `superctl`.
//! - [`fdio`]: the byte stream under hyper on both sides (descriptors with `SCM_RIGHTS`, a read
//!   bound).
//! - [`http`]: requests and answers as handlers see them, and their mapping to the API (pure).
//! - [`table`]: `superctl status` rendering (pure).
//! - [`images`]: the `/v1/images…` routes (the image store, through its one writer).

pub mod access;
pub mod client;
pub mod events;
pub mod exec;
#[allow(unsafe_code)] // ioctls on the pty and adopting the received master
pub mod execio;
pub mod export;
#[allow(unsafe_code)] // adopting fds received with SCM_RIGHTS
pub mod fdio;
pub mod http;
pub mod images;
pub mod kube;
pub mod logs;
pub mod metrics;
pub mod plan;
#[allow(unsafe_code)] // adopting fds received with SCM_RIGHTS
pub mod server;
pub mod stats;
pub mod table;
pub mod volumes;

pub use client::{Client, ClientError};
pub use server::{bind, serve, ApiTx, CtlError, ServerLimits};
