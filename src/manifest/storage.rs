//! `[[volumes]]` (named volumes superd keeps) and `[tmpfs] mounts` (extra sized tmpfs
//! directories): the writable places a packaged daemon needs on a read-only or throwaway root.

use super::check::Checker;
use super::raw::{RawTmpfs, RawVolume, Table, Val};
use super::spec::{AbsPath, Mount, Name, TmpfsMount, Volume};
use super::values;
use std::collections::BTreeMap;
use toml::Spanned;

/// Size of a `[tmpfs] mounts` entry without one.
pub const DEFAULT_TMPFS_MOUNT: u64 = 16 << 20;

/// Container paths nothing may be mounted over (superd mounts them itself).
const RESERVED: &[&str] = &["/", "/proc", "/sys", "/dev"];

fn reserved(t: &AbsPath) -> bool {
    RESERVED.iter().any(|r| {
        let r = *r;
        t.as_str() == r || (r != "/" && t.as_str().starts_with(&format!("{r}/")))
    })
}

/// Every target already taken: `[[mounts]]` first, then volumes, then tmpfs mounts.
struct Targets(BTreeMap<AbsPath, String>);

impl Targets {
    fn claim(&mut self, ck: &mut Checker<'_>, v: &Spanned<Val>, field: &str, t: &AbsPath) -> bool {
        if reserved(t) {
            let msg = format!("`{t}` is mounted by superd itself; choose another directory");
            ck.error(v.span(), field, msg);
            return false;
        }
        if let Some(first) = self.0.get(t) {
            let msg = format!("`{t}` is already the target of {first}");
            ck.error(v.span(), field, msg);
            return false;
        }
        self.0.insert(t.clone(), field.to_string());
        true
    }
}

/// Parses `[[volumes]]` and `[tmpfs] mounts`, refusing targets `mounts` already uses.
pub(crate) fn storage(
    ck: &mut Checker<'_>,
    raw: Option<&[Spanned<Table<RawVolume>>]>,
    tmpfs: Option<&RawTmpfs>,
    mounts: &[Mount],
) -> (Vec<Volume>, Vec<TmpfsMount>) {
    let mut targets = Targets(
        mounts
            .iter()
            .enumerate()
            .map(|(i, m)| (m.target.clone(), format!("mounts[{i}]")))
            .collect(),
    );
    let mut volumes = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, v) in raw.unwrap_or_default().iter().enumerate() {
        let field = |key: &str| format!("volumes[{i}].{key}");
        let span = v.span();
        let v = v.get_ref();
        for (leaf, key, what) in [
            (&v.name, "name", "the volume's name, e.g. \"pgdata\""),
            (&v.target, "target", "the path inside the container"),
        ] {
            if leaf.is_none() {
                let msg = format!("missing: every [[volumes]] entry needs `{key}` ({what})");
                ck.error(span.clone(), &field(key), msg);
            }
        }
        let name = v.name.as_ref().and_then(|n| {
            let s = ck.string(n, &field("name"))?;
            match Name::new(s) {
                Ok(_) if names.contains_key(s) => {
                    let msg = format!("volume `{s}` is already mounted by volumes[{}]", names[s]);
                    ck.error(n.span(), &field("name"), msg);
                    None
                }
                Ok(_) => {
                    names.insert(s.to_string(), i);
                    Some(s.to_string())
                }
                Err(e) => {
                    ck.error(
                        n.span(),
                        &field("name"),
                        format!("invalid volume name: {e}"),
                    );
                    None
                }
            }
        });
        let target = v.target.as_ref().and_then(|t| {
            let p = ck.path(t, &field("target"))?;
            targets.claim(ck, t, &field("target"), &p).then_some(p)
        });
        let readonly = match &v.readonly {
            Some(b) => ck.boolean(b, &field("readonly")),
            None => Some(false),
        };
        if let (Some(name), Some(target), Some(readonly)) = (name, target, readonly) {
            volumes.push(Volume {
                name,
                target,
                readonly,
            });
        }
    }
    let mut tmpfs_mounts = Vec::new();
    if let Some(list) = tmpfs.and_then(|t| t.mounts.as_ref()) {
        let Val::Array(items) = list.get_ref() else {
            let msg = format!(
                "expected an array such as [\"/var/lib/nginx\", \"/var/cache/app:32M\"], found {}",
                list.get_ref().type_name()
            );
            ck.error(list.span(), "tmpfs.mounts", msg);
            return (volumes, tmpfs_mounts);
        };
        for (i, item) in items.iter().enumerate() {
            let field = format!("tmpfs.mounts[{i}]");
            let Some(s) = ck.string(item, &field) else {
                continue;
            };
            let (path, size) = match s.rsplit_once(':') {
                Some((p, sz)) => match values::parse_size(sz) {
                    Ok(n) if n >= 64 << 10 => (p, n),
                    Ok(_) => {
                        ck.error(item.span(), &field, "the size is too small: at least 64K");
                        continue;
                    }
                    Err(e) => {
                        ck.error(item.span(), &field, e);
                        continue;
                    }
                },
                None => (s, DEFAULT_TMPFS_MOUNT),
            };
            let target = match AbsPath::new(path) {
                Ok(t) => t,
                Err(e) => {
                    ck.error(item.span(), &field, e);
                    continue;
                }
            };
            if targets.claim(ck, item, &field, &target) {
                tmpfs_mounts.push(TmpfsMount { target, size });
            }
        }
    }
    (volumes, tmpfs_mounts)
}
