//! Layers: a tar stream → one overlay-ready directory.
//!
//! [`plan`] decides (pure), [`apply`] executes, [`sandbox`] runs the applier in a confined
//! child process. `tar` is used as a parser only: nothing of its `unpack` runs on image input.

pub mod apply;
pub mod plan;
pub mod sandbox;

use plan::{EntryType, RawEntry};
use std::io::Read;

/// Reads every entry of the (uncompressed) tar `input` into `applier`.
pub fn apply_stream(input: impl Read, mut applier: apply::Applier) -> Result<apply::Stats, String> {
    let mut archive = tar::Archive::new(input);
    let entries = archive
        .entries()
        .map_err(|e| format!("reading the layer: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("reading the layer: {e}"))?;
        applier.count_entry()?;
        let raw = raw_entry(&mut entry)?;
        let planned = plan::plan(&raw)?;
        if let Some(w) = planned.warning {
            applier.warn(w);
        }
        applier.apply(planned.op, &mut entry)?;
    }
    applier.finish()
}

/// The planner's view of a tar entry: name, link, type, owner, mode, times and xattrs.
fn raw_entry<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<RawEntry, String> {
    let path = entry.path_bytes().into_owned();
    let shown = plan::show(&path);
    let bad = |what: &str, e: std::io::Error| format!("{shown}: reading the {what}: {e}");
    let link = entry.link_name_bytes().map(|l| l.into_owned());
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(|e| bad("PAX records", e))? {
        for ext in exts {
            let ext = ext.map_err(|e| bad("PAX records", e))?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    let h = entry.header();
    let t = h.entry_type();
    let kind = match t {
        tar::EntryType::Regular | tar::EntryType::Continuous => EntryType::Regular,
        tar::EntryType::Directory => EntryType::Dir,
        tar::EntryType::Symlink => EntryType::Symlink,
        tar::EntryType::Link => EntryType::HardLink,
        tar::EntryType::Char => EntryType::Char,
        tar::EntryType::Block => EntryType::Block,
        tar::EntryType::Fifo => EntryType::Fifo,
        tar::EntryType::XGlobalHeader => EntryType::GlobalHeader,
        other => EntryType::Other(other.as_byte()),
    };
    let num = |r: std::io::Result<u64>, what: &str| r.map_err(|e| bad(what, e));
    // Only devices carry numbers; other entries often leave the fields blank.
    let is_dev = matches!(kind, EntryType::Char | EntryType::Block);
    let dev = |r: std::io::Result<Option<u32>>, what: &str| {
        if is_dev {
            r.map(|v| v.unwrap_or(0)).map_err(|e| bad(what, e))
        } else {
            Ok(0)
        }
    };
    Ok(RawEntry {
        path,
        link,
        kind,
        mode: h.mode().map_err(|e| bad("mode", e))?,
        uid: num(h.uid(), "uid")?,
        gid: num(h.gid(), "gid")?,
        mtime: num(h.mtime(), "mtime")?,
        size: entry.size(),
        major: dev(h.device_major(), "device major")?,
        minor: dev(h.device_minor(), "device minor")?,
        xattrs,
    })
}
