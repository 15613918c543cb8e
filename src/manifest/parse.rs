//! `parse`: manifest text → a validated [`Spec`], or every error of the file at once.

use super::check::{key_segment, Checker};
use super::error::{FieldError, ManifestError};
use super::raw::{
    RawManifest, RawMount, RawNetwork, RawResources, RawRestart, RawRootfs, RawStop, Table, Val,
};
use super::spec::{
    AbsPath, ImageRef, Mount, Name, Network, NetworkMode, PortMapping, Pull, Resources, Restart,
    RestartPolicy, Rootfs, Spec, Stop, Writable, DEFAULT_PIDS, MIN_MEMORY,
};
use super::{limits, security, values};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use toml::de::DeTable;
use toml::Spanned;

/// Parses and validates manifest `text`; the workload name is the stem of `file`, which is
/// also used (as given) in error messages.
pub fn parse(file: &Path, text: &str) -> Result<Spec, ManifestError> {
    let mut ck = Checker::new(text);
    let name = match name_from_file(file) {
        Ok(name) => Some(name),
        Err(msg) => {
            ck.push(|| FieldError::new("name", msg));
            None
        }
    };
    let spec = read_raw(&mut ck).and_then(|raw| build(&mut ck, name, raw));
    match spec {
        Some(spec) if ck.count() == 0 => Ok(spec),
        _ => {
            if ck.count() == 0 {
                // `build` only returns None after recording an error; never report "ok" anyway.
                ck.errors.push(FieldError::at_start(
                    "",
                    "manifest rejected for an unknown reason",
                ));
            }
            Err(ManifestError::with_more(file, ck.errors, ck.suppressed))
        }
    }
}

/// The workload name a manifest file gives: its stem, which must be a valid [`Name`].
pub(crate) fn name_from_file(file: &Path) -> Result<Name, String> {
    let shown = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| format!("the file name `{shown}` does not give a workload name"))?;
    Name::new(stem).map_err(|e| {
        format!(
            "the file name `{shown}` does not give a valid workload name: {e}; \
             rename the file (the name is the file name without `.toml`)"
        )
    })
}

/// Most TOML tokens (keys, values, punctuation, line breaks) a manifest may have. The TOML
/// parser holds every token and parse event of a document at once, about 100 bytes per token
/// with the tree it builds, so a 1 MiB file of `a = 1, ` would cost superd 45 MiB; this bound
/// keeps a file near 3 MiB. Real manifests are far below it: 5 000 environment variables
/// take 30 000 tokens.
pub const MAX_TOKENS: usize = 32_768;

/// The span of the first token beyond [`MAX_TOKENS`], if any. The lexer allocates nothing.
fn too_many_tokens(text: &str) -> Option<std::ops::Range<usize>> {
    toml_parser::Source::new(text)
        .lex()
        .nth(MAX_TOKENS)
        .map(|t| t.span().start()..t.span().end())
}

/// Syntax and structure (unknown keys, a value where a table belongs, …): the first such error
/// only. (The parser could recover and go on, but what follows a syntax error is mostly noise.)
fn read_raw(ck: &mut Checker<'_>) -> Option<RawManifest> {
    if let Some(span) = too_many_tokens(ck.text) {
        let msg = format!(
            "the manifest is too complex: more than {MAX_TOKENS} TOML tokens (keys, values, \
             punctuation, line breaks); is it a manifest?"
        );
        ck.error(span, "", msg);
        return None;
    }
    let doc = match DeTable::parse(ck.text) {
        Ok(doc) => doc,
        Err(err) => {
            ck.toml_error(&err, None);
            return None;
        }
    };
    match RawManifest::deserialize(toml::de::Deserializer::from(doc)) {
        Ok(raw) => Some(raw),
        Err(err) => {
            // Parse again to name the field, rather than keep a copy of a document that may
            // be a megabyte of entries: this costs time only on the error path.
            let lookup = DeTable::parse(ck.text).ok();
            ck.toml_error(&err, lookup.as_ref().map(|d| d.get_ref()));
            None
        }
    }
}

fn build(ck: &mut Checker<'_>, name: Option<Name>, raw: RawManifest) -> Option<Spec> {
    if let (Some(given), Some(name)) = (&raw.name, &name) {
        if let Some(s) = ck.string(given, "name") {
            if s != name.as_str() {
                let msg = format!(
                    "name `{s}` does not match the file name: the workload is called `{name}` \
                     after its file; remove `name` or set it to \"{name}\""
                );
                ck.error(given.span(), "name", msg);
            }
        }
    }
    let has_image = raw.rootfs.as_ref().is_some_and(|r| r.image.is_some());
    let command = match &raw.command {
        Some(v) => parse_argv(ck, v, "command"),
        None if has_image => Some(Vec::new()),
        None => {
            let msg =
                "missing: every manifest needs `command = [\"/path/to/program\", \"arg\", …]` \
                       (only an image may leave it out)";
            ck.push(|| FieldError::at_start("command", msg));
            None
        }
    };
    let args = raw.args.as_ref().and_then(|v| {
        if !has_image {
            let msg = "`args` replaces an image's Cmd: without [rootfs] image, put the \
                       arguments in `command`";
            ck.error(v.span(), "args", msg);
            return None;
        }
        parse_argv(ck, v, "args")
    });
    let env = raw.env.as_ref().map(|e| env(ck, e)).unwrap_or_default();
    let workdir = raw.workdir.as_ref().and_then(|v| ck.path(v, "workdir"));
    let user = raw.user.as_ref().and_then(|v| {
        ck.parsed(
            v,
            "user",
            "a string such as \"1000:1000\"",
            values::parse_user,
        )
    });
    let hostname = raw.hostname.as_ref().and_then(|v| {
        ck.parsed(v, "hostname", "a hostname string", |s| {
            values::check_hostname(s).map(|()| s.to_string())
        })
    });
    let init = raw.init.as_ref().and_then(|v| ck.boolean(v, "init"));
    let rootfs = raw.rootfs.as_ref().and_then(|r| rootfs(ck, r));
    let mounts = mounts(ck, raw.mounts.as_deref().unwrap_or_default());
    let (volumes, tmpfs_mounts) =
        super::storage::storage(ck, raw.volumes.as_deref(), raw.tmpfs.as_deref(), &mounts);
    let resources = raw.resources.as_ref().map(|r| resources(ck, r));
    let restart = raw.restart.as_ref().map(|r| restart(ck, r));
    let stop = raw.stop.as_ref().map(|s| stop(ck, s));
    let watchdog = raw.watchdog.as_ref().map(|w| {
        let critical = w
            .critical
            .as_ref()
            .and_then(|v| ck.boolean(v, "watchdog.critical"));
        let grace = w
            .grace
            .as_ref()
            .and_then(|v| ck.duration(v, "watchdog.grace"));
        let d = crate::manifest::WatchdogSpec::default();
        crate::manifest::WatchdogSpec {
            critical: critical.unwrap_or(d.critical),
            grace: grace.unwrap_or(d.grace),
        }
    });
    let bake = raw
        .rollout
        .as_ref()
        .and_then(|r| r.bake.as_ref())
        .and_then(|v| ck.duration(v, "rollout.bake"));
    let network = raw.network.as_ref().map(|n| network(ck, n, name.as_ref()));
    let rlimits = limits::rlimits(ck, raw.resources.as_deref());
    let tmpfs = limits::tmpfs(ck, raw.tmpfs.as_deref());
    let logs = limits::logs(ck, raw.logs.as_deref());
    let security = raw.security.as_ref().map(|s| security::security(ck, s));
    let health = raw
        .health
        .as_ref()
        .and_then(|h| super::health::health(ck, h.span(), h.get_ref()));
    let start_order = super::health::start_order(
        ck,
        raw.after.as_ref(),
        raw.start_order.as_deref(),
        name.as_ref(),
    );

    let mut spec = Spec::with_defaults(name?, command?);
    spec.args = args;
    spec.env = env;
    spec.workdir = workdir;
    spec.user = user;
    spec.hostname = hostname.unwrap_or(spec.hostname);
    spec.init = init.unwrap_or(spec.init);
    spec.rootfs = rootfs.unwrap_or(spec.rootfs);
    spec.mounts = mounts;
    spec.volumes = volumes;
    spec.tmpfs_mounts = tmpfs_mounts;
    spec.resources = resources.unwrap_or(spec.resources);
    spec.restart = restart.unwrap_or_default();
    spec.stop = stop.unwrap_or_default();
    spec.rollout.bake = bake;
    spec.watchdog = watchdog.unwrap_or_default();
    spec.network = network.unwrap_or_default();
    spec.rlimits = rlimits;
    spec.tmpfs = tmpfs;
    spec.logs = logs;
    spec.security = security.unwrap_or(spec.security);
    spec.health = health;
    spec.start_order = start_order;
    Some(spec)
}

pub(crate) fn parse_argv(ck: &mut Checker<'_>, v: &Spanned<Val>, key: &str) -> Option<Vec<String>> {
    let Val::Array(items) = v.get_ref() else {
        let found = v.get_ref().type_name();
        let msg = format!(
            "expected an array of strings such as [\"/bin/sh\", \"-c\", \"…\"], found {found}"
        );
        ck.error(v.span(), key, msg);
        return None;
    };
    if items.is_empty() && key == "command" {
        let msg = "must not be empty: give the program and its arguments";
        ck.error(v.span(), key, msg);
        return None;
    }
    let before = ck.count();
    let mut argv = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("{key}[{i}]");
        if let Some(arg) = ck.string(item, &field) {
            if i == 0 && key == "command" && arg.is_empty() {
                ck.error(
                    item.span(),
                    &field,
                    "the program must not be an empty string",
                );
            }
            argv.push(arg.to_string());
        }
    }
    (ck.count() == before).then_some(argv)
}

type RawEnv = BTreeMap<Spanned<String>, Spanned<Val>>;

fn env(ck: &mut Checker<'_>, table: &Spanned<RawEnv>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (key, value) in table.get_ref() {
        let field = format!("env.{}", key_segment(key.get_ref()));
        let k = key.get_ref();
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            let msg = format!(
                "invalid variable name {k:?}: it must be non-empty and contain no '=' or NUL byte"
            );
            ck.error(key.span(), &field, msg);
        }
        if let Some(v) = ck.string(value, &field) {
            env.insert(k.clone(), v.to_string());
        }
    }
    env
}

fn rootfs(ck: &mut Checker<'_>, raw: &RawRootfs) -> Option<Rootfs> {
    let path = raw.path.as_ref().map(|v| ck.path(v, "rootfs.path"));
    let writable = raw.writable.as_ref().map(|v| {
        let options = [("tmpfs", Writable::Tmpfs), ("none", Writable::None)];
        ck.choice(v, "rootfs.writable", &options)
            .map(|w| (v.span(), w))
    });
    let image = raw.image.as_ref().map(|v| {
        ck.parsed(
            v,
            "rootfs.image",
            "an image reference such as \"registry.example:5000/team/web:1.4@sha256:…\"",
            image_ref,
        )
    });
    let pull = raw.pull.as_ref().map(|v| {
        let options = [("missing", Pull::Missing), ("never", Pull::Never)];
        ck.choice(v, "rootfs.pull", &options).map(|p| (v.span(), p))
    });
    // A value that was given but is invalid has been reported; do not judge the combination.
    if matches!(path, Some(None))
        || matches!(writable, Some(None))
        || matches!(image, Some(None))
        || matches!(pull, Some(None))
    {
        return None;
    }
    let (path, writable) = (path.flatten(), writable.flatten());
    let (image, pull) = (image.flatten(), pull.flatten());
    if let (Some(_), Some(_)) = (&image, &path) {
        if let Some(v) = &raw.path {
            let msg = "`path` and `image` are exclusive: an image brings its own root";
            ck.error(v.span(), "rootfs.path", msg);
        }
        return None;
    }
    if let Some(image) = image {
        return Some(Rootfs::Image {
            image,
            writable: writable.map_or(Writable::Tmpfs, |(_, w)| w),
            pull: pull.map_or(Pull::Missing, |(_, p)| p),
        });
    }
    if let Some((span, _)) = pull {
        ck.error(span, "rootfs.pull", "`pull` needs an `image`");
        return None;
    }
    match (path, writable) {
        (Some(path), w) if !path.is_root() => Some(Rootfs::Dir {
            path,
            writable: w.map_or(Writable::Tmpfs, |(_, w)| w),
        }),
        (_, w) => Some(Rootfs::Host {
            writable: w.map_or(Writable::None, |(_, w)| w),
        }),
    }
}

fn image_ref(s: &str) -> Result<ImageRef, String> {
    let n = crate::images::reference::ImageName::parse(s)?;
    Ok(ImageRef {
        written: s.to_string(),
        name: n.name,
        digest: n.digest.map(|d| d.to_string()),
    })
}

fn mounts(ck: &mut Checker<'_>, raw: &[Spanned<Table<RawMount>>]) -> Vec<Mount> {
    let mut mounts = Vec::new();
    let mut targets: BTreeMap<AbsPath, usize> = BTreeMap::new();
    for (i, m) in raw.iter().enumerate() {
        let field = |key: &str| format!("mounts[{i}].{key}");
        let mut required = |v: &Option<Spanned<Val>>, key: &str, what: &str| {
            if v.is_none() {
                let msg = format!("missing: every [[mounts]] entry needs `{key}` ({what})");
                ck.error(m.span(), &field(key), msg);
            }
        };
        required(&m.get_ref().source, "source", "the host path");
        required(
            &m.get_ref().target,
            "target",
            "the path inside the container",
        );
        let m = m.get_ref();
        let source = m.source.as_ref().and_then(|v| ck.path(v, &field("source")));
        let target = m.target.as_ref().and_then(|v| {
            let t = ck.path(v, &field("target"))?;
            if t.is_root() {
                let msg = "cannot mount over the container's root `/`; choose a directory \
                           below it, or use [rootfs] path to change the root";
                ck.error(v.span(), &field("target"), msg);
                return None;
            }
            if let Some(first) = targets.get(&t) {
                let msg = format!("`{t}` is already the target of mounts[{first}]");
                ck.error(v.span(), &field("target"), msg);
                return None;
            }
            targets.insert(t.clone(), i);
            Some(t)
        });
        let readonly = match &m.readonly {
            Some(v) => ck.boolean(v, &field("readonly")),
            None => Some(false),
        };
        if let (Some(source), Some(target), Some(readonly)) = (source, target, readonly) {
            mounts.push(Mount {
                source,
                target,
                readonly,
            });
        }
    }
    mounts
}

fn resources(ck: &mut Checker<'_>, raw: &RawResources) -> Resources {
    let memory = raw.memory.as_ref().and_then(|v| {
        let bytes = match v.get_ref() {
            Val::Int(_) => {
                let max = i128::from(values::MAX_MEMORY);
                ck.integer(v, "resources.memory", 1, max)
                    .and_then(|n| u64::try_from(n).ok())
            }
            _ => ck.parsed(
                v,
                "resources.memory",
                "bytes (an integer) or a size string such as \"64M\"",
                values::parse_size,
            ),
        }?;
        if bytes < MIN_MEMORY {
            let msg = format!(
                "{bytes} bytes is below the minimum of 6M: not even the init shim and a shell \
                 fit, and the workload would loop on OOM kills (an integer is bytes; write \
                 \"64M\" for 64 MiB)"
            );
            ck.error(v.span(), "resources.memory", msg);
            return None;
        }
        Some(bytes)
    });
    let cpu_millis = raw.cpus.as_ref().and_then(|v| {
        let cpus = match v.get_ref() {
            Val::Float(f) => *f,
            // Integers beyond 2^53 lose precision here, but they are out of range anyway.
            Val::Int(n) => *n as f64,
            other => {
                let msg = format!(
                    "expected a number of CPUs such as 0.5 or 2, found {}",
                    other.type_name()
                );
                ck.error(v.span(), "resources.cpus", msg);
                return None;
            }
        };
        values::cpus_to_millis(cpus)
            .map_err(|msg| ck.error(v.span(), "resources.cpus", msg))
            .ok()
    });
    let pids = match &raw.pids {
        None => Some(DEFAULT_PIDS),
        Some(v) => match v.get_ref() {
            Val::Str(s) if s == "unlimited" => None,
            Val::Int(_) => ck
                .integer(v, "resources.pids", 1, i64::MAX.into())
                .and_then(|n| u64::try_from(n).ok()),
            _ => {
                let msg = "expected a number of tasks (an integer from 1) or \"unlimited\"";
                ck.error(v.span(), "resources.pids", msg);
                None
            }
        },
    };
    Resources {
        memory,
        cpu_millis,
        pids,
    }
}

fn restart(ck: &mut Checker<'_>, raw: &RawRestart) -> Restart {
    let d = Restart::default();
    let policies = [
        ("always", RestartPolicy::Always),
        ("on-failure", RestartPolicy::OnFailure),
        ("never", RestartPolicy::Never),
    ];
    let policy = raw
        .policy
        .as_ref()
        .and_then(|v| ck.choice(v, "restart.policy", &policies));
    let initial = raw
        .initial_delay
        .as_ref()
        .and_then(|v| ck.duration(v, "restart.initial_delay"));
    let max = raw
        .max_delay
        .as_ref()
        .and_then(|v| ck.duration(v, "restart.max_delay"));
    let reset_after = raw
        .reset_after
        .as_ref()
        .and_then(|v| ck.duration(v, "restart.reset_after"));
    let max_retries = raw.max_retries.as_ref().and_then(|v| {
        ck.integer(v, "restart.max_retries", 0, u32::MAX.into())
            .and_then(|n| u32::try_from(n).ok())
    });
    let (initial_delay, max_delay) = (
        initial.unwrap_or(d.initial_delay),
        max.unwrap_or(d.max_delay),
    );
    if initial_delay > max_delay {
        let show = |d| humantime::format_duration(d).to_string();
        let (i, m) = (show(initial_delay), show(max_delay));
        match (&raw.max_delay, &raw.initial_delay) {
            (Some(v), _) if max.is_some() => {
                let default = if raw.initial_delay.is_none() {
                    "the default "
                } else {
                    ""
                };
                let msg = format!("max_delay ({m}) is shorter than {default}initial_delay ({i})");
                ck.error(v.span(), "restart.max_delay", msg);
            }
            (None, Some(v)) => {
                let msg = format!(
                    "initial_delay ({i}) is longer than the default max_delay ({m}); \
                     raise max_delay too"
                );
                ck.error(v.span(), "restart.initial_delay", msg);
            }
            _ => {}
        }
    }
    Restart {
        policy: policy.unwrap_or(d.policy),
        initial_delay,
        max_delay,
        reset_after: reset_after.unwrap_or(d.reset_after),
        max_retries: max_retries.unwrap_or(d.max_retries),
    }
}

fn stop(ck: &mut Checker<'_>, raw: &RawStop) -> Stop {
    let d = Stop::default();
    let signal = raw.signal.as_ref().and_then(|v| {
        ck.parsed(
            v,
            "stop.signal",
            "a signal name such as \"SIGTERM\"",
            values::parse_signal,
        )
    });
    let timeout = raw.timeout.as_ref().and_then(|v| {
        let t = ck.duration(v, "stop.timeout")?;
        if t > Stop::MAX_TIMEOUT {
            ck.error(
                v.span(),
                "stop.timeout",
                format!(
                    "{} is too long: at most {} (superd's own stop must fit the service \
                     manager's timeout)",
                    humantime::format_duration(t),
                    humantime::format_duration(Stop::MAX_TIMEOUT)
                ),
            );
            return None;
        }
        Some(t)
    });
    Stop {
        signal: signal.or(d.signal),
        timeout: timeout.unwrap_or(d.timeout),
    }
}

/// `[network]`. Invalid values are reported by their own checks; only valid ones (and a valid
/// mode) are judged for the "bridge mode only" rule.
fn network(ck: &mut Checker<'_>, raw: &RawNetwork, own_name: Option<&Name>) -> Network {
    let modes = [
        ("bridge", NetworkMode::Bridge),
        ("none", NetworkMode::None),
        ("host", NetworkMode::Host),
    ];
    let mode = raw
        .mode
        .as_ref()
        .map(|v| ck.choice(v, "network.mode", &modes));
    let address = raw.address.as_ref().map(|v| {
        ck.parsed(
            v,
            "network.address",
            "an IPv4 address string such as \"10.77.0.20\"",
            values::parse_address,
        )
    });
    let ports = raw.ports.as_ref().map(|v| ports(ck, v));
    let aliases = raw.aliases.as_ref().map(|v| aliases(ck, v, own_name));

    let mode = match mode {
        None => NetworkMode::Bridge,
        Some(Some(mode)) => mode,
        // Reported; do not judge the other fields against a mode we do not know.
        Some(None) => return Network::default(),
    };
    if mode != NetworkMode::Bridge {
        let shown = modes
            .iter()
            .find(|(_, m)| *m == mode)
            .map_or("?", |(name, _)| *name);
        let set = [
            ("address", &raw.address, matches!(address, Some(Some(_)))),
            (
                "ports",
                &raw.ports,
                matches!(&ports, Some(Some(p)) if !p.is_empty()),
            ),
            (
                "aliases",
                &raw.aliases,
                matches!(&aliases, Some(Some(a)) if !a.is_empty()),
            ),
        ];
        for (key, leaf, is_set) in set {
            if let (Some(v), true) = (leaf, is_set) {
                let msg = format!("only valid with mode = \"bridge\" (mode is \"{shown}\")");
                ck.error(v.span(), &format!("network.{key}"), msg);
            }
        }
    }
    Network {
        mode,
        address: address.flatten(),
        ports: ports.flatten().unwrap_or_default(),
        aliases: aliases.flatten().unwrap_or_default(),
    }
}

/// The items of an array leaf; a wrong type is reported with `expected`.
fn array<'v>(
    ck: &mut Checker<'_>,
    v: &'v Spanned<Val>,
    field: &str,
    expected: &str,
) -> Option<&'v [Spanned<Val>]> {
    match v.get_ref() {
        Val::Array(items) => Some(items),
        other => {
            let msg = format!("expected {expected}, found {}", other.type_name());
            ck.error(v.span(), field, msg);
            None
        }
    }
}

/// What a mapping occupies on the host, for messages: `8080/tcp` or `127.0.0.1:8080/tcp`.
fn published(p: &PortMapping) -> String {
    let port = format!("{}/{}", p.host_port, p.protocol.as_str());
    match p.host_ip {
        Some(ip) => format!("{ip}:{port}"),
        None => port,
    }
}

/// `[network] ports`; `None` when anything in it was reported.
fn ports(ck: &mut Checker<'_>, v: &Spanned<Val>) -> Option<Vec<PortMapping>> {
    let expected = format!(
        "an array of port mapping strings ({}) such as [\"8080:80\"]",
        values::PORT_FORM
    );
    let items = array(ck, v, "network.ports", &expected)?;
    let before = ck.count();
    let mut ports: Vec<(usize, PortMapping)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("network.ports[{i}]");
        let expected = format!("a port mapping string ({})", values::PORT_FORM);
        let Some(p) = ck.parsed(item, &field, &expected, values::parse_port_mapping) else {
            continue;
        };
        let clash = ports.iter().find(|(_, q)| {
            q.protocol == p.protocol
                && q.host_port == p.host_port
                && (q.host_ip == p.host_ip || q.host_ip.is_none() || p.host_ip.is_none())
        });
        if let Some((j, q)) = clash {
            let every = if q.host_ip.is_none() && p.host_ip.is_some() {
                ", which publishes it on every host address"
            } else if p.host_ip.is_none() && q.host_ip.is_some() {
                ", which publishes it on one of them"
            } else {
                ""
            };
            let msg = format!(
                "publishes {} again (already in network.ports[{j}]{every})",
                published(&p)
            );
            ck.error(item.span(), &field, msg);
            continue;
        }
        ports.push((i, p));
    }
    (ck.count() == before).then(|| ports.into_iter().map(|(_, p)| p).collect())
}

/// `[network] aliases`; `None` when anything in it was reported.
fn aliases(ck: &mut Checker<'_>, v: &Spanned<Val>, own_name: Option<&Name>) -> Option<Vec<Name>> {
    let items = array(
        ck,
        v,
        "network.aliases",
        "an array of workload names such as [\"api\"]",
    )?;
    let before = ck.count();
    let mut aliases: Vec<(usize, Name)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("network.aliases[{i}]");
        let Some(alias) = ck.parsed(item, &field, "a workload name string", |s| {
            Name::new(s).map_err(|e| format!("invalid alias: {e}"))
        }) else {
            continue;
        };
        if own_name == Some(&alias) {
            let msg =
                format!("`{alias}` is the workload's own name, which resolves already; remove it");
            ck.error(item.span(), &field, msg);
        } else if let Some((j, _)) = aliases.iter().find(|(_, a)| *a == alias) {
            let msg = format!("`{alias}` is listed twice (already network.aliases[{j}])");
            ck.error(item.span(), &field, msg);
        } else {
            aliases.push((i, alias));
        }
    }
    (ck.count() == before).then(|| aliases.into_iter().map(|(_, a)| a).collect())
}
