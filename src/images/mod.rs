//! Container images: a content-addressed store of OCI layers, unpacked once each and shared
//! read-only through overlayfs (IMAGES.md).
//!
//! ```text
//! registry / archive ──► blobs (verified by digest) ──► layer applier (sandboxed child)
//!                                                          │ one directory per ChainID,
//!                                                          ▼ overlay-native whiteouts
//!                                    <state>/images/layers/<chainid>/fs  ──► overlay lowerdirs
//! ```
//!
//! The directory tree is the store's only database: an image exists when its manifest and
//! config blobs and every layer directory exist; `refs.json` only names the roots.

#![allow(unsafe_code)] // fd plumbing of the unpack child (each block says why it is sound)

pub mod compress;
pub mod digest;
pub mod gc;
pub mod image;
pub mod import;
pub mod layer;
pub mod merge;
#[cfg(feature = "registry")]
pub mod pull;
pub mod reference;
pub mod seeded;
pub mod store;
