//! Kernel modules listed in `/etc/modules-load.d/*.conf` (the systemd convention: one name
//! per line, `#` and `;` start comments), loaded from `/lib/modules/$(uname -r)` with their
//! dependencies from `modules.dep`, through `finit_module(2)`.

// finit_module(2) has no safe wrapper.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Module names from the text of one `.conf` file.
pub fn parse_conf(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| l.replace('-', "_"))
        .collect()
}

/// `modules.dep`: module name → (path relative to the modules dir, dependency paths).
pub fn parse_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let deps = deps.split_whitespace().map(str::to_string).collect();
        out.insert(module_name(path), (path.to_string(), deps));
    }
    out
}

/// `kernel/net/bridge/bridge.ko.xz` → `bridge` (dashes as underscores, as the kernel does).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The files to load for `wanted`, dependencies first, each once. Unknown names are returned
/// separately (they may be built in).
pub fn load_order(
    wanted: &[String],
    dep: &BTreeMap<String, (String, Vec<String>)>,
) -> (Vec<String>, Vec<String>) {
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    let mut unknown = Vec::new();
    for name in wanted {
        let Some((path, deps)) = dep.get(name) else {
            unknown.push(name.clone());
            continue;
        };
        // modules.dep lists every transitive dependency, the deepest last.
        for d in deps.iter().rev().chain(std::iter::once(path)) {
            if seen.insert(d.clone()) {
                order.push(d.clone());
            }
        }
    }
    (order, unknown)
}

/// Loads every module listed under `conf_dir`; returns one line per problem (a module that is
/// neither in `modules.dep` nor built in is reported, not fatal).
pub fn load_all(conf_dir: &Path, modules_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut confs: Vec<PathBuf> = match std::fs::read_dir(conf_dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect(),
        Err(_) => return problems,
    };
    confs.sort();
    let wanted: Vec<String> = confs
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| parse_conf(&t))
        .collect();
    if wanted.is_empty() {
        return problems;
    }
    let dep = std::fs::read_to_string(modules_dir.join("modules.dep"))
        .map(|t| parse_dep(&t))
        .unwrap_or_default();
    let builtin = std::fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
    let (order, unknown) = load_order(&wanted, &dep);
    for name in unknown {
        let built_in = builtin.lines().any(|l| module_name(l) == name);
        if !built_in && !Path::new("/sys/module").join(&name).exists() {
            problems.push(format!(
                "module {name}: not found in {}",
                modules_dir.display()
            ));
        }
    }
    for rel in order {
        if let Err(e) = finit(&modules_dir.join(&rel)) {
            problems.push(format!("module {}: {e}", module_name(&rel)));
        }
    }
    problems
}

/// `finit_module(2)`; an already loaded module is fine. Compressed modules are handed to the
/// kernel to decompress (`MODULE_INIT_COMPRESSED_FILE`).
fn finit(path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    let compressed = path
        .extension()
        .is_some_and(|e| e == "xz" || e == "zst" || e == "gz");
    let flags: libc::c_int = if compressed { 4 } else { 0 };
    // SAFETY: finit_module on an fd we own with an empty parameter string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EEXIST) {
        return Ok(());
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_and_dep_give_a_dependency_first_order() {
        let wanted = parse_conf("# net\nbridge\n\n; x\nveth\nnft-masq\nbridge\nmissing\n");
        assert_eq!(wanted, ["bridge", "veth", "nft_masq", "bridge", "missing"]);
        let dep = parse_dep(
            "kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko\n\
             kernel/net/802/stp.ko: kernel/net/llc/llc.ko\n\
             kernel/net/llc/llc.ko:\n\
             kernel/drivers/net/veth.ko.xz:\n\
             kernel/net/netfilter/nft_masq.ko: kernel/net/netfilter/nf_nat.ko kernel/net/netfilter/nf_tables.ko\n",
        );
        let (order, unknown) = load_order(&wanted, &dep);
        assert_eq!(
            order,
            [
                "kernel/net/llc/llc.ko",
                "kernel/net/802/stp.ko",
                "kernel/net/bridge/bridge.ko",
                "kernel/drivers/net/veth.ko.xz",
                "kernel/net/netfilter/nf_tables.ko",
                "kernel/net/netfilter/nf_nat.ko",
                "kernel/net/netfilter/nft_masq.ko",
            ]
        );
        assert_eq!(unknown, ["missing"]);
        assert_eq!(module_name("a/b/nf-nat.ko.zst"), "nf_nat");
    }
}
