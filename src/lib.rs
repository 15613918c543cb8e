//! superd: a declarative workload supervisor for Linux.
//!
//! Data flows one way:
//!
//! ```text
//! /etc/workloads.d/*.toml
//!    │  watcher (inotify; a completed write or delete is acted on at once; SIGHUP = full rescan)
//!    ▼
//! manifest::load_dir ──► Desired { name → Result<Spec, ManifestError> }     pure
//!    ▼
//! network::admit(desired, holders, leases) ──► addresses, rejections, hosts  pure
//!    ▼
//! reconcile::plan(desired, observed, now) ──► Vec<Action>                    pure
//!    ▼
//! supervisor (the single owner of workload state; one tokio task)
//!    │  executes actions through runtime; receives exits, timers and API requests as messages
//!    ▼
//! runtime: cgroups · net · rootfs · spawn · reaper ──► init shim (PID 1 in the container) ──► workload
//!    ▲
//! ctl (HTTP/JSON on a Unix socket) ◄── superctl
//! ```
//!
//! `manifest`, `network` and `reconcile` never touch the kernel: the whole decision engine is unit-tested
//! without root. Every side effect lives under `runtime`.

// Unsafe code only where the kernel is called directly: the runtime, PID-1 mode, and the
// one uid lookup of the manifest loader (each module says so with an `allow`).
#![deny(unsafe_code)]

pub mod api;
pub mod ctl;
pub mod durable;
pub mod images;
pub mod manifest;
pub mod network;
pub mod notify;
pub mod pid1;
pub mod reconcile;
pub mod report;
pub mod runtime;
pub mod supervisor;
pub mod watch;

#[doc(hidden)]
pub mod testing;
