//! Spec change classification: what it takes to move a workload from its old spec to a new one.
//!
//! `[resources]`, `[restart]` and `[stop]` can be applied to a running instance (cgroup limits are
//! rewritten; restart and stop settings are only read later). Everything else — command, env,
//! mounts, rootfs, user, hostname, init, network, workdir — is baked in at spawn time, so changing
//! it means stopping the workload and starting it again. The split is defined once, by
//! [`Spec::core_hash`], so this module and the hash cannot disagree.

use crate::manifest::Spec;

/// The top-level fields of a serialised [`Spec`] a running instance takes in place; every
/// other field is fixed at spawn. [`Spec::core_hash`] resets exactly these.
pub const LIVE_SECTIONS: &[&str] = &[
    "resources",
    "restart",
    "stop",
    "health",
    "start_order",
    "rollout",
    "watchdog",
];

/// How an old spec relates to a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeClass {
    /// The specs are equal: nothing to do.
    Same,
    /// Only live sections differ (`[resources]`, `[restart]`, `[stop]`): update in place.
    Live,
    /// Something fixed at spawn time differs: stop the workload and start the new spec.
    Recreate,
}

/// Classifies the change from `old` to `new`.
///
/// [`ChangeClass::Same`] if the specs are equal, [`ChangeClass::Live`] if their core hashes are
/// equal (only live sections differ), otherwise [`ChangeClass::Recreate`].
#[must_use]
pub fn classify(old: &Spec, new: &Spec) -> ChangeClass {
    if std::ptr::eq(old, new) || old == new {
        ChangeClass::Same
    } else if old.core_hash() == new.core_hash() {
        ChangeClass::Live
    } else {
        ChangeClass::Recreate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{
        AbsPath, IdOrName, Mount, Name, NetworkMode, RestartPolicy, Rootfs, Signal, User, Writable,
    };
    use std::time::Duration;

    fn base() -> Spec {
        Spec::with_defaults(Name::new("web").unwrap(), vec!["sleep".into(), "60".into()])
    }

    fn path(s: &str) -> AbsPath {
        AbsPath::new(s).unwrap()
    }

    type Edit = fn(&mut Spec);

    #[test]
    fn the_live_sections_are_what_core_hash_ignores() {
        let mut a = base();
        a.health = Some(crate::manifest::HealthCheck::tcp(1));
        a.start_order.restart_with = true;
        a.rollout.bake = Some(Duration::from_secs(30));
        a.watchdog.critical = true;
        let value = serde_json::to_value(&a).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        for live in LIVE_SECTIONS {
            assert!(keys.iter().any(|k| k == live), "{live} is not a field");
        }
        // Every other field changes the core hash (spot check on each kind of value).
        let mut b = a.clone();
        b.hostname = "other".into();
        assert_ne!(a.core_hash(), b.core_hash());
        let mut c = a.clone();
        c.health = None;
        c.start_order = Default::default();
        c.resources.memory = Some(1 << 30);
        c.restart.max_retries = 9;
        c.stop.timeout = Duration::from_secs(1);
        c.rollout.bake = None;
        c.watchdog.critical = false;
        assert_eq!(a.core_hash(), c.core_hash());
    }

    #[test]
    fn equal_specs_are_same() {
        let a = base();
        assert_eq!(classify(&a, &a), ChangeClass::Same);
        assert_eq!(classify(&a, &a.clone()), ChangeClass::Same);
    }

    #[test]
    fn live_sections_are_live() {
        let table: &[(&str, Edit)] = &[
            ("resources.memory", |s| s.resources.memory = Some(64 << 20)),
            ("rollout.bake", |s| {
                s.rollout.bake = Some(Duration::from_secs(9))
            }),
            ("resources.cpu_millis", |s| {
                s.resources.cpu_millis = Some(500)
            }),
            ("resources.pids", |s| s.resources.pids = Some(32)),
            ("restart.policy", |s| {
                s.restart.policy = RestartPolicy::Never
            }),
            ("restart.initial_delay", |s| {
                s.restart.initial_delay = Duration::from_secs(1)
            }),
            ("restart.max_delay", |s| {
                s.restart.max_delay = Duration::from_secs(5)
            }),
            ("restart.reset_after", |s| {
                s.restart.reset_after = Duration::from_secs(60)
            }),
            ("restart.max_retries", |s| s.restart.max_retries = 3),
            ("stop.signal", |s| s.stop.signal = Signal::parse("INT")),
            ("stop.timeout", |s| s.stop.timeout = Duration::from_secs(1)),
            ("all live sections at once", |s| {
                s.resources.memory = Some(1 << 30);
                s.restart.max_retries = 9;
                s.stop.timeout = Duration::from_secs(2);
            }),
        ];
        for (label, edit) in table {
            let old = base();
            let mut new = base();
            edit(&mut new);
            assert_eq!(classify(&old, &new), ChangeClass::Live, "{label}");
            assert_eq!(classify(&new, &old), ChangeClass::Live, "{label} (reverse)");
        }
    }

    #[test]
    fn spawn_time_fields_recreate() {
        let table: &[(&str, Edit)] = &[
            ("command", |s| s.command.push("--verbose".into())),
            ("env", |s| {
                s.env.insert("RUST_LOG".into(), "debug".into());
            }),
            ("mounts", |s| {
                s.mounts.push(Mount {
                    source: path("/srv/data"),
                    target: path("/data"),
                    readonly: true,
                })
            }),
            ("rootfs", |s| {
                s.rootfs = Rootfs::Dir {
                    path: path("/var/lib/rootfs/alpine"),
                    writable: Writable::Tmpfs,
                }
            }),
            ("user", |s| {
                s.user = Some(User {
                    user: IdOrName::Name("nobody".into()),
                    group: None,
                })
            }),
            ("hostname", |s| s.hostname = "other".into()),
            ("init", |s| s.init = false),
            ("network", |s| s.network.mode = NetworkMode::Host),
            ("workdir", |s| s.workdir = Some(path("/srv"))),
            ("command plus a live section", |s| {
                s.command[1] = "120".into();
                s.resources.pids = Some(10);
            }),
        ];
        for (label, edit) in table {
            let old = base();
            let mut new = base();
            edit(&mut new);
            assert_eq!(classify(&old, &new), ChangeClass::Recreate, "{label}");
            assert_eq!(
                classify(&new, &old),
                ChangeClass::Recreate,
                "{label} (reverse)"
            );
        }
    }
}
