//! Manifests: the TOML schema, validation (every error at once) and directory loading.
//!
//! A manifest `/etc/workloads.d/web.toml` describes the workload `web`. [`parse`] turns its
//! text into a [`Spec`] — a value that is valid by construction — or a [`ManifestError`] listing
//! every problem with its line, column and field. [`load_dir`] reads a whole directory into the
//! [`Desired`] set the reconciler works from. Nothing here touches the kernel beyond reading
//! files (and `stat` for [`warnings`]).
//!
//! Layout: `raw` (the TOML as written, strict serde structs) → `check` + `values` (typed leaves
//! and their string forms) → `parse` (assemble a `Spec`) ; `load` (files and directories),
//! `validate` (`superctl validate`), `error` (reporting), `locate` (positioning errors found
//! later, by the daemon).

mod check;
mod deps;
pub mod error;
pub mod health;
mod limits;
mod load;
mod locate;
mod parse;
mod raw;
mod security;
pub mod spec;
mod storage;
mod validate;
mod values;

#[cfg(test)]
mod tests;

/// Renders one key of a field path as error messages do (quoted unless a bare TOML key).
pub use check::key_segment as key_path_segment;
pub use error::{bound_text, FieldError, ManifestError, Snippet};
pub use health::{Condition, Dependency, OnUnhealthy, Probe};
pub use load::{
    is_manifest_file_name, load_dir, load_file, Desired, DesiredEntry, MAX_MANIFEST_BYTES,
};
pub use locate::locate;
pub use parse::parse;
pub use spec::*;
pub use validate::{validate_paths, warnings, ValidateReport};
/// Parses a size such as `64M` (1024-based) into bytes.
pub use values::parse_size;
pub use values::parse_user as values_parse_user;
