//! Checks of `after` across the whole manifest directory: every name must be declared, a
//! `healthy` condition needs a dependency with a `[health]` check, and the graph must have no
//! cycle. A manifest that fails becomes an error entry positioned at its `after[i]`, so the
//! workload keeps running on its last good spec.

use super::load::Desired;
use super::locate::locate;
use super::spec::Spec;
use super::Condition;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Turns every valid manifest whose `after` is wrong against the others into an error.
pub fn check_start_order(desired: &mut Desired) {
    let valid: BTreeMap<String, Arc<Spec>> = desired
        .iter()
        .filter_map(|(k, e)| e.spec.as_ref().ok().map(|s| (k.clone(), Arc::clone(s))))
        .collect();
    let in_cycle = cyclic_edges(&valid);
    for (name, spec) in &valid {
        let mut problem = None;
        for (i, dep) in spec.start_order.after.iter().enumerate() {
            let other = dep.name.as_str();
            let why = match desired.get(other).map(|e| e.spec.as_ref()) {
                None => Some(format!(
                    "no manifest declares `{other}` (there is no {other}.toml in this directory)"
                )),
                Some(Ok(o)) if dep.condition == Condition::Healthy && o.health.is_none() => {
                    Some(format!(
                        "`{other}` has no [health] check, so it can never be healthy: add one \
                         to {other}.toml or write \"{other}:started\""
                    ))
                }
                _ if in_cycle.contains(&(name.clone(), other.to_string())) => Some(format!(
                    "`{other}` starts after `{name}` too (directly or through others): the \
                     start order has a cycle"
                )),
                _ => None,
            };
            if let Some(why) = why {
                problem = Some((i, why));
                break;
            }
        }
        if let Some((i, why)) = problem {
            if let Some(entry) = desired.get_mut(name) {
                entry.spec = Err(locate(
                    &entry.file,
                    &entry.text,
                    &format!("after[{i}]"),
                    why,
                ));
            }
        }
    }
}

/// The edges (dependent, dependency) that lie on a cycle: both ends in one strongly connected
/// component (Kosaraju's algorithm, iterative, linear in names and edges).
fn cyclic_edges(
    specs: &BTreeMap<String, Arc<Spec>>,
) -> std::collections::BTreeSet<(String, String)> {
    let names: Vec<&String> = specs.keys().collect();
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let n = names.len();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut inc: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (u, name) in names.iter().enumerate() {
        for dep in &specs[*name].start_order.after {
            if let Some(&v) = index.get(dep.name.as_str()) {
                out[u].push(v);
                inc[v].push(u);
            }
        }
    }
    // First pass: finishing order on the graph.
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for start in 0..n {
        if seen[start] {
            continue;
        }
        seen[start] = true;
        let mut stack = vec![(start, 0usize)];
        while let Some((u, next)) = stack.pop() {
            if let Some(&v) = out[u].get(next) {
                stack.push((u, next + 1));
                if !seen[v] {
                    seen[v] = true;
                    stack.push((v, 0));
                }
            } else {
                order.push(u);
            }
        }
    }
    // Second pass: components on the reversed graph, in reverse finishing order.
    let mut comp = vec![usize::MAX; n];
    for (c, &root) in order.iter().rev().enumerate() {
        if comp[root] != usize::MAX {
            continue;
        }
        comp[root] = c;
        let mut stack = vec![root];
        while let Some(u) = stack.pop() {
            for &v in &inc[u] {
                if comp[v] == usize::MAX {
                    comp[v] = c;
                    stack.push(v);
                }
            }
        }
    }
    let mut edges = std::collections::BTreeSet::new();
    for (u, targets) in out.iter().enumerate() {
        for &v in targets {
            if comp[u] == comp[v] {
                edges.insert((names[u].clone(), names[v].clone()));
            }
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::super::load_dir;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("a temporary directory");
        for (name, text) in files {
            std::fs::write(d.path().join(format!("{name}.toml")), text).expect("written");
        }
        d
    }

    fn error_of(d: &tempfile::TempDir, name: &str) -> Option<String> {
        let desired = load_dir(d.path()).expect("listed");
        desired[name].spec.as_ref().err().map(|e| e.to_string())
    }

    #[test]
    fn unknown_names_missing_health_and_cycles_are_errors_at_their_entry() {
        let d = dir(&[
            (
                "app",
                "command = [\"x\"]\nafter = [\"db:healthy\", \"cache\"]\n",
            ),
            ("db", "command = [\"x\"]\n[health]\ntcp = 5432\n"),
            ("web", "command = [\"x\"]\nafter = [\"app\", \"nope\"]\n"),
            ("cache", "command = [\"x\"]\nafter = [\"db:healthy\"]\n"),
            ("a", "command = [\"x\"]\nafter = [\"b\"]\n"),
            ("b", "command = [\"x\"]\nafter = [\"c\"]\n"),
            ("c", "command = [\"x\"]\nafter = [\"a\"]\n"),
            ("plain", "command = [\"x\"]\n"),
            ("wants", "command = [\"x\"]\nafter = [\"plain:healthy\"]\n"),
        ]);
        assert_eq!(error_of(&d, "app"), None);
        assert_eq!(error_of(&d, "cache"), None);
        let web = error_of(&d, "web").expect("an error");
        assert!(
            web.contains("web.toml:2:17") && web.contains("after[1]"),
            "{web}"
        );
        assert!(web.contains("no manifest declares `nope`"), "{web}");
        for n in ["a", "b", "c"] {
            let e = error_of(&d, n).expect("a cycle error");
            assert!(e.contains(":2:10") && e.contains("cycle"), "{e}");
        }
        let wants = error_of(&d, "wants").expect("an error");
        assert!(wants.contains("has no [health] check"), "{wants}");
    }
}
