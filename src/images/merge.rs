//! PURE: a manifest over an image's config → how the workload runs (IMAGES.md §4.6;
//! Kubernetes and Docker semantics).
//!
//! | field       | rule                                                                  |
//! |-------------|-----------------------------------------------------------------------|
//! | argv        | `command` replaces Entrypoint and Cmd; else `args` replaces Cmd only; |
//! |             | else Entrypoint ++ Cmd; nothing at all is an error                    |
//! | env         | the image's Env is the base; `[env]` replaces or appends by key       |
//! | workdir     | `workdir` > WorkingDir > `/`                                          |
//! | user        | `user` > User > root (names resolve in the image's /etc/passwd)       |
//! | stop signal | `[stop] signal` > StopSignal > SIGTERM                                |
//!
//! ExposedPorts and Volumes are never acted on.

use super::image::RunConfig;
use crate::manifest::{values_parse_user, Signal, Spec, User};

/// The effective process of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    /// argv (never empty).
    pub argv: Vec<String>,
    /// Environment, in order, keys unique.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub workdir: String,
    /// User and group.
    pub user: User,
    /// The stop signal when the manifest gives none (the image's).
    pub stop_signal: Option<Signal>,
}

/// Merges `spec` over `image` (`None`: not an image workload).
pub fn run_plan(spec: &Spec, image: Option<&RunConfig>) -> Result<RunPlan, String> {
    let empty = RunConfig::default();
    let img = image.unwrap_or(&empty);
    let argv = if !spec.command.is_empty() {
        spec.command.clone()
    } else if let Some(args) = &spec.args {
        img.entrypoint.iter().chain(args).cloned().collect()
    } else {
        img.entrypoint.iter().chain(&img.cmd).cloned().collect()
    };
    if argv.is_empty() || argv[0].is_empty() {
        return Err("the image has no Entrypoint or Cmd: set `command` in the manifest".into());
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for kv in &img.env {
        if let Some((k, v)) = kv.split_once('=') {
            if k.is_empty() || k.contains('\0') || v.contains('\0') {
                continue;
            }
            match env.iter_mut().find(|e| e.0 == k) {
                Some(e) => e.1 = v.to_string(),
                None => env.push((k.to_string(), v.to_string())),
            }
        }
    }
    for (k, v) in &spec.env {
        match env.iter_mut().find(|e| &e.0 == k) {
            Some(e) => e.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    let workdir = match (&spec.workdir, img.workdir.as_str()) {
        (Some(w), _) => w.to_string(),
        (None, "") => "/".to_string(),
        (None, w) if w.starts_with('/') && !w.contains('\0') => w.to_string(),
        (None, w) => {
            return Err(format!(
                "the image's WorkingDir `{}` is not an absolute path: set `workdir`",
                w.escape_debug()
            ))
        }
    };
    let user = match (&spec.user, img.user.as_str()) {
        (Some(u), _) => u.clone(),
        (None, "") => User::root(),
        (None, u) => values_parse_user(u)
            .map_err(|e| format!("the image's User `{}`: {e}", u.escape_debug()))?,
    };
    let stop_signal = match img.stop_signal.as_str() {
        "" => None,
        s => Some(
            Signal::parse(s)
                .or_else(|| s.parse().ok().and_then(Signal::from_number))
                .ok_or_else(|| {
                    format!("the image's StopSignal `{}` is unknown", s.escape_debug())
                })?,
        ),
    };
    Ok(RunPlan {
        argv,
        env,
        workdir,
        user,
        stop_signal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{AbsPath, IdOrName, Name};

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["echo hi".into()],
            env: vec!["PATH=/bin".into(), "GREETING=image".into(), "junk".into()],
            workdir: "/opt".into(),
            user: "65534:65534".into(),
            stop_signal: "SIGINT".into(),
            ..RunConfig::default()
        }
    }

    fn spec() -> Spec {
        Spec::with_defaults(Name::new("web").unwrap(), Vec::new())
    }

    #[test]
    fn the_image_runs_as_configured() {
        let p = run_plan(&spec(), Some(&image())).unwrap();
        assert_eq!(p.argv, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(
            p.env,
            [
                ("PATH".into(), "/bin".into()),
                ("GREETING".into(), "image".into())
            ]
        );
        assert_eq!(p.workdir, "/opt");
        assert_eq!(p.user.user, IdOrName::Id(65534));
        assert_eq!(p.stop_signal.map(|s| s.number), Some(2));
    }

    #[test]
    fn command_replaces_both_and_args_only_cmd() {
        let mut s = spec();
        s.args = Some(vec!["echo args".into()]);
        assert_eq!(
            run_plan(&s, Some(&image())).unwrap().argv,
            ["/bin/sh", "-c", "echo args"]
        );
        s.command = vec!["/bin/true".into()];
        assert_eq!(run_plan(&s, Some(&image())).unwrap().argv, ["/bin/true"]);
        let none = RunConfig::default();
        let e = run_plan(&spec(), Some(&none)).unwrap_err();
        assert!(e.contains("set `command`"), "{e}");
    }

    #[test]
    fn the_manifest_wins_field_by_field() {
        let mut s = spec();
        s.env.insert("GREETING".into(), "manifest".into());
        s.env.insert("EXTRA".into(), "1".into());
        s.workdir = Some(AbsPath::new("/srv").unwrap());
        s.user = Some(User::root());
        s.stop.signal = Signal::parse("QUIT");
        let p = run_plan(&s, Some(&image())).unwrap();
        assert_eq!(
            p.env,
            [
                ("PATH".into(), "/bin".into()),
                ("GREETING".into(), "manifest".into()),
                ("EXTRA".into(), "1".into())
            ]
        );
        assert_eq!(p.workdir, "/srv");
        assert_eq!(p.user, User::root());
        // The manifest's own signal is applied by the supervisor; the image's stays known.
        assert_eq!(p.stop_signal.map(|s| s.number), Some(2));
    }

    #[test]
    fn bad_image_fields_are_errors() {
        let mut i = image();
        i.workdir = "opt".into();
        assert!(run_plan(&spec(), Some(&i))
            .unwrap_err()
            .contains("WorkingDir"));
        let mut i = image();
        i.stop_signal = "SIGNOPE".into();
        assert!(run_plan(&spec(), Some(&i))
            .unwrap_err()
            .contains("StopSignal"));
        let mut i = image();
        i.stop_signal = "9".into();
        assert_eq!(
            run_plan(&spec(), Some(&i))
                .unwrap()
                .stop_signal
                .map(|s| s.number),
            Some(9)
        );
    }
}
