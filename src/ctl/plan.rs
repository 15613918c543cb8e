//! `superctl plan`: what applying a manifest directory would do against what runs now (pure:
//! the directory is already loaded, the running specs already fetched).
//!
//! A change is classified the way the supervisor classifies it: only the sections in
//! [`LIVE_SECTIONS`] differ → an update in place; anything else → a recreate, listing the
//! fields that force it.

use crate::api::{RunningSpec, State};
use crate::manifest::Desired;
pub use crate::reconcile::change::LIVE_SECTIONS;
use serde::Serialize;
use std::collections::BTreeMap;

/// What applying the directory does to one workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Verdict {
    /// It starts (new, or not running and changed).
    Start,
    /// It stops and is removed (its manifest is gone).
    Stop,
    /// It is stopped and started with the new spec, because these fields changed.
    Recreate {
        /// The fields that force it (`command`, `env.MODE`).
        fields: Vec<String>,
    },
    /// The running instance is updated in place.
    UpdateLive {
        /// The fields that change (`resources.memory`).
        fields: Vec<String>,
    },
    /// Nothing changes.
    Unchanged,
    /// The manifest is refused; a running workload keeps its last good spec.
    Rejected {
        /// The errors, with file, line and column.
        error: String,
    },
}

impl Verdict {
    /// True for everything but `Unchanged` and `Rejected`.
    pub fn is_change(&self) -> bool {
        !matches!(self, Verdict::Unchanged | Verdict::Rejected { .. })
    }
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The workload.
    pub name: String,
    /// What happens to it.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The plan for `desired` against `running` (empty without a daemon), in name order.
/// `claim_errors` are the cross-manifest errors (ports, addresses) by file.
pub fn plan(
    desired: &Desired,
    running: &BTreeMap<String, RunningSpec>,
    claim_errors: &BTreeMap<std::path::PathBuf, String>,
) -> Vec<Row> {
    let mut names: Vec<&String> = desired.keys().chain(running.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let verdict = match (desired.get(name), running.get(name)) {
                (Some(entry), old) => match (&entry.spec, claim_errors.get(&entry.file)) {
                    (Err(e), _) => Verdict::Rejected {
                        error: e.to_string(),
                    },
                    (Ok(_), Some(e)) => Verdict::Rejected { error: e.clone() },
                    (Ok(spec), None) => {
                        let new = serde_json::to_value(&**spec).unwrap_or_default();
                        match old {
                            None => Verdict::Start,
                            Some(old) => compare(old, &new),
                        }
                    }
                },
                (None, _) => Verdict::Stop,
            };
            Row {
                name: name.clone(),
                verdict,
            }
        })
        .collect()
}

fn compare(old: &RunningSpec, new: &serde_json::Value) -> Verdict {
    let mut fields = Vec::new();
    diff(&old.spec, new, "", &mut fields);
    // A workload that finished or was stopped by an operator is not started by an
    // unchanged manifest; a changed one starts.
    let running = matches!(
        old.state,
        State::Starting | State::Running | State::Backoff | State::Waiting
    );
    if fields.is_empty() {
        return Verdict::Unchanged;
    }
    if old.state == State::Stopped {
        return Verdict::Unchanged;
    }
    if !running {
        return Verdict::Start;
    }
    let forced: Vec<String> = fields.iter().filter(|f| !is_live(f)).cloned().collect();
    if forced.is_empty() {
        Verdict::UpdateLive { fields }
    } else {
        Verdict::Recreate { fields: forced }
    }
}

fn is_live(field: &str) -> bool {
    let top = field.split(['.', '[']).next().unwrap_or_default();
    LIVE_SECTIONS.contains(&top)
}

/// The paths where `a` and `b` differ: object keys recursively, arrays and scalars whole.
fn diff(a: &serde_json::Value, b: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    use serde_json::Value::Object;
    match (a, b) {
        (Object(x), Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = if path.is_empty() {
                    crate::manifest::key_path_segment(k)
                } else {
                    format!("{path}.{}", crate::manifest::key_path_segment(k))
                };
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => diff(p, q, &sub, out),
                    _ => out.push(sub),
                }
            }
        }
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

/// The plan as text: a line per workload, then the counts.
pub fn render(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        let name = super::table::clean(&r.name);
        let (mark, word, detail) = match &r.verdict {
            Verdict::Start => ("+", "start", String::new()),
            Verdict::Stop => ("-", "stop", String::new()),
            Verdict::Recreate { fields } => ("~", "recreate", format!("  ({})", fields.join(", "))),
            Verdict::UpdateLive { fields } => {
                ("~", "update", format!("  live: {}", fields.join(", ")))
            }
            Verdict::Unchanged => ("=", "unchanged", String::new()),
            Verdict::Rejected { .. } => ("!", "rejected", String::new()),
        };
        *counts.entry(word).or_default() += 1;
        let line = format!(
            "{mark} {word:<9}  {name:<width$}{}",
            super::table::clean(&detail)
        );
        let _ = writeln!(out, "{}", line.trim_end());
        if let Verdict::Rejected { error } = &r.verdict {
            for line in error.trim_end().lines() {
                let _ = writeln!(out, "    {}", super::table::clean(line));
            }
        }
    }
    let order = [
        "start",
        "stop",
        "recreate",
        "update",
        "unchanged",
        "rejected",
    ];
    let summary: Vec<String> = order
        .iter()
        .filter_map(|w| counts.get(w).map(|n| format!("{n} {w}")))
        .collect();
    let _ = writeln!(
        out,
        "plan: {}",
        if summary.is_empty() {
            "nothing declared".to_string()
        } else {
            summary.join(", ")
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{DesiredEntry, Name, Spec};
    use std::sync::Arc;

    fn spec(name: &str) -> Spec {
        Spec::with_defaults(Name::new(name).unwrap(), vec!["sleep".into(), "60".into()])
    }

    fn entry(s: Spec) -> (String, DesiredEntry) {
        let name = s.name.to_string();
        let e = DesiredEntry {
            file: format!("/m/{name}.toml").into(),
            spec: Ok(Arc::new(s)),
            text: Arc::from(""),
        };
        (name, e)
    }

    fn running(s: &Spec, state: State) -> (String, RunningSpec) {
        let r = RunningSpec {
            state,
            spec: serde_json::to_value(s).unwrap(),
        };
        (s.name.to_string(), r)
    }

    #[test]
    fn every_verdict() {
        let mut live = spec("db");
        live.resources.memory = Some(64 << 20);
        let mut recreate = spec("web");
        recreate.env.insert("MODE".into(), "new".into());
        recreate.resources.pids = Some(10);
        let mut bad = DesiredEntry {
            file: "/m/api.toml".into(),
            spec: Err(crate::manifest::locate(
                std::path::Path::new("/m/api.toml"),
                "command = 1\n",
                "command",
                "expected an array",
            )),
            text: Arc::from(""),
        };
        bad.text = Arc::from("");
        let desired: Desired = [
            entry(live),
            entry(recreate),
            entry(spec("new")),
            entry(spec("same")),
            entry(spec("done")),
            entry(spec("held")),
            ("api".to_string(), bad),
            entry(spec("taken")),
        ]
        .into_iter()
        .collect();
        let mut changed_done = spec("done");
        changed_done.command = vec!["true".into()];
        let mut changed_held = spec("held");
        changed_held.command = vec!["true".into()];
        let running: BTreeMap<String, RunningSpec> = [
            running(&spec("db"), State::Running),
            running(&spec("web"), State::Running),
            running(&spec("same"), State::Running),
            running(&spec("old"), State::Running),
            running(&changed_done, State::Exited),
            running(&changed_held, State::Stopped),
        ]
        .into_iter()
        .collect();
        let claims = BTreeMap::from([(
            std::path::PathBuf::from("/m/taken.toml"),
            "port 80 is taken".to_string(),
        )]);
        let rows = plan(&desired, &running, &claims);
        let got: BTreeMap<&str, &Verdict> =
            rows.iter().map(|r| (r.name.as_str(), &r.verdict)).collect();
        assert!(
            matches!(got["api"], Verdict::Rejected { error } if error.contains("api.toml:1:11"))
        );
        assert_eq!(
            *got["db"],
            Verdict::UpdateLive {
                fields: vec!["resources.memory".into()]
            }
        );
        assert_eq!(
            *got["web"],
            Verdict::Recreate {
                fields: vec!["env.MODE".into()]
            }
        );
        assert_eq!(*got["new"], Verdict::Start);
        assert_eq!(*got["same"], Verdict::Unchanged);
        assert_eq!(*got["old"], Verdict::Stop);
        assert_eq!(*got["done"], Verdict::Start);
        assert_eq!(*got["held"], Verdict::Unchanged);
        assert!(matches!(got["taken"], Verdict::Rejected { .. }));
        let text = render(&rows);
        assert!(text.contains("~ recreate   web    (env.MODE)\n"), "{text}");
        assert!(
            text.ends_with(
                "plan: 2 start, 1 stop, 1 recreate, 1 update, 2 unchanged, 2 rejected\n"
            ),
            "{text}"
        );
        // Nothing declared, nothing running.
        assert_eq!(
            render(&plan(&Desired::new(), &BTreeMap::new(), &BTreeMap::new())),
            "plan: nothing declared\n"
        );
    }
}
