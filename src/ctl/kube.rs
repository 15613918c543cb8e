//! `superctl export --kubernetes`: a workload's spec as Kubernetes objects (a Pod or a
//! Deployment, a Service for its ports, a PersistentVolumeClaim per named volume), and a
//! report of everything that does not map, so that nothing is dropped silently. Pure: a spec
//! in, JSON values (superctl writes them as YAML) and report lines out.

use crate::manifest::{
    IdOrName, NetworkMode, OnUnhealthy, Probe, Protocol, RestartPolicy, Rootfs, Seccomp, Spec,
    Writable, DEFAULT_PIDS,
};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The workload object to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bare Pod (one instance, as superd runs it).
    Pod,
    /// A Deployment of one replica.
    Deployment,
}

/// What one spec becomes.
#[derive(Debug, Clone, Default)]
pub struct Export {
    /// The objects, in apply order.
    pub objects: Vec<Value>,
    /// What did not map (or mapped only approximately), one line each.
    pub report: Vec<String>,
}

/// Whole seconds, rounded up, at least `min`.
fn secs(d: Duration, min: u64) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(min)
}

/// A Kubernetes quantity of bytes: `64Mi` when it divides evenly, else bytes.
fn bytes(b: u64) -> String {
    for (unit, shift) in [("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if b.is_multiple_of(1 << shift) {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

/// Kubernetes object names: DNS labels, which superd's workload names already are.
fn labels(name: &str) -> Value {
    json!({ "app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "superd-export" })
}

/// The objects and report for `spec`.
pub fn export(spec: &Spec, kind: Kind) -> Export {
    let mut out = Export::default();
    let name = spec.name.as_str();
    let note = |out: &mut Export, field: &str, what: String| {
        out.report.push(format!("{name}: {field}: {what}"));
    };
    let mut container = Map::new();
    container.insert("name".into(), json!(name));
    let image = match &spec.rootfs {
        Rootfs::Image { image, .. } => image.written.clone(),
        Rootfs::Host { .. } => {
            note(
                &mut out,
                "rootfs",
                "the host's root filesystem has no Kubernetes equivalent: the container names \
                 the placeholder image example.invalid/NAME:host-root; build an image of what \
                 it runs"
                    .into(),
            );
            format!("example.invalid/{name}:host-root")
        }
        Rootfs::Dir { path, .. } => {
            note(
                &mut out,
                "rootfs.path",
                format!(
                    "a directory rootfs ({path}) has no Kubernetes equivalent: the container \
                     names the placeholder image example.invalid/{name}:dir; build an image \
                     of that directory"
                ),
            );
            format!("example.invalid/{name}:dir")
        }
    };
    let read_only_root = match &spec.rootfs {
        Rootfs::Image { writable, .. } | Rootfs::Dir { writable, .. } => {
            *writable == Writable::None
        }
        Rootfs::Host { writable } => *writable == Writable::None,
    };
    container.insert("image".into(), json!(image));
    if !spec.command.is_empty() {
        container.insert("command".into(), json!(spec.command));
    }
    if let Some(args) = &spec.args {
        container.insert("args".into(), json!(args));
    }
    if !spec.env.is_empty() {
        let env: Vec<Value> = spec
            .env
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        container.insert("env".into(), json!(env));
    }
    if let Some(w) = &spec.workdir {
        container.insert("workingDir".into(), json!(w.as_str()));
    }

    // Resources: limits (superd enforces limits, never requests).
    let mut limits = Map::new();
    if let Some(m) = spec.resources.memory {
        limits.insert("memory".into(), json!(bytes(m)));
    }
    if let Some(c) = spec.resources.cpu_millis {
        limits.insert("cpu".into(), json!(format!("{c}m")));
    }
    if !limits.is_empty() {
        container.insert("resources".into(), json!({ "limits": limits }));
    }
    if spec.resources.pids.is_some_and(|p| p != DEFAULT_PIDS) {
        note(
            &mut out,
            "resources.pids",
            "Kubernetes has no per-container task limit (the kubelet's podPidsLimit is per \
             node)"
                .into(),
        );
    }

    // Security: what superd applies to every workload.
    let mut sc = Map::new();
    sc.insert("allowPrivilegeEscalation".into(), json!(false));
    sc.insert("readOnlyRootFilesystem".into(), json!(read_only_root));
    let root = match &spec.user {
        None => true,
        Some(u) => matches!(&u.user, IdOrName::Id(0)),
    };
    if !root {
        // superd gives a non-root workload no capabilities.
        sc.insert("capabilities".into(), json!({ "drop": ["ALL"] }));
    }
    match &spec.user {
        Some(u) => {
            match &u.user {
                IdOrName::Id(id) => {
                    sc.insert("runAsUser".into(), json!(id));
                }
                IdOrName::Name(n) => note(
                    &mut out,
                    "user",
                    format!(
                        "the user name {n:?} is looked up in the rootfs by superd; Kubernetes \
                         takes numeric ids only (runAsUser)"
                    ),
                ),
            }
            match &u.group {
                Some(IdOrName::Id(g)) => {
                    sc.insert("runAsGroup".into(), json!(g));
                }
                Some(IdOrName::Name(n)) => note(
                    &mut out,
                    "user",
                    format!("the group name {n:?} needs a numeric id (runAsGroup)"),
                ),
                None => {}
            }
        }
        None if matches!(spec.rootfs, Rootfs::Image { .. }) => {}
        None => {
            sc.insert("runAsUser".into(), json!(0));
        }
    }
    match &spec.security.seccomp {
        Seccomp::Default => {
            sc.insert("seccompProfile".into(), json!({ "type": "RuntimeDefault" }));
        }
        Seccomp::Unconfined => {
            sc.insert("seccompProfile".into(), json!({ "type": "Unconfined" }));
        }
        Seccomp::Profile(p) => {
            sc.insert(
                "seccompProfile".into(),
                json!({ "type": "Localhost", "localhostProfile": format!("{name}.json") }),
            );
            note(
                &mut out,
                "security.seccomp",
                format!(
                    "copy the profile {p} to each node's kubelet seccomp directory as \
                     {name}.json"
                ),
            );
        }
    }
    container.insert("securityContext".into(), Value::Object(sc));
    if !spec.security.devices.is_empty() {
        note(
            &mut out,
            "security.devices",
            "device access needs a device plugin or a privileged container in Kubernetes; \
             none is granted here"
                .into(),
        );
    }

    // Ports: the host port as a hostPort, and a Service by the workload's name.
    let ports: Vec<Value> = spec
        .network
        .ports
        .iter()
        .map(|p| {
            let mut v = json!({
                "containerPort": p.container_port,
                "protocol": match p.protocol { Protocol::Tcp => "TCP", Protocol::Udp => "UDP" },
            });
            if let Some(obj) = v.as_object_mut() {
                obj.insert("hostPort".into(), json!(p.host_port));
                if let Some(ip) = p.host_ip {
                    obj.insert("hostIP".into(), json!(ip.to_string()));
                }
            }
            v
        })
        .collect();
    if !ports.is_empty() {
        container.insert("ports".into(), json!(ports));
    }

    // Health: liveness when an unhealthy verdict restarts, readiness always.
    if let Some(h) = &spec.health {
        let handler = match &h.probe {
            Probe::Http { port, path, .. } => json!({ "httpGet": { "path": path, "port": port } }),
            Probe::Tcp { port } => json!({ "tcpSocket": { "port": port } }),
            Probe::Exec { argv } => json!({ "exec": { "command": argv } }),
        };
        let mut probe = handler.as_object().cloned().unwrap_or_default();
        probe.insert("periodSeconds".into(), json!(secs(h.interval, 1)));
        probe.insert("timeoutSeconds".into(), json!(secs(h.timeout, 1)));
        probe.insert("failureThreshold".into(), json!(h.retries.max(1)));
        if !h.start_period.is_zero() {
            probe.insert("initialDelaySeconds".into(), json!(secs(h.start_period, 0)));
        }
        container.insert("readinessProbe".into(), Value::Object(probe.clone()));
        match h.on_unhealthy {
            OnUnhealthy::Restart => {
                container.insert("livenessProbe".into(), Value::Object(probe));
            }
            OnUnhealthy::Stop => note(
                &mut out,
                "health.on_unhealthy",
                "\"stop\" has no Kubernetes equivalent: only a readiness probe is written \
                 (a liveness probe would restart it)"
                    .into(),
            ),
            OnUnhealthy::None => {}
        }
        if h.start_interval != crate::manifest::HealthCheck::START_INTERVAL {
            note(
                &mut out,
                "health.start_interval",
                "Kubernetes probes at one period throughout".into(),
            );
        }
    }

    // Mounts and volumes.
    let mut volumes: Vec<Value> = Vec::new();
    let mut mounts: Vec<Value> = Vec::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        let vname = format!("host-{i}");
        volumes.push(json!({ "name": vname, "hostPath": { "path": m.source.as_str() } }));
        mounts
            .push(json!({ "name": vname, "mountPath": m.target.as_str(), "readOnly": m.readonly }));
    }
    for v in &spec.volumes {
        let claim = format!("{}-{}", name, v.name);
        volumes.push(json!({ "name": format!("vol-{}", v.name), "persistentVolumeClaim": { "claimName": claim } }));
        mounts.push(json!({ "name": format!("vol-{}", v.name), "mountPath": v.target.as_str(), "readOnly": v.readonly }));
        out.objects.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": { "name": claim, "labels": labels(name) },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": { "requests": { "storage": "1Gi" } },
            },
        }));
        note(
            &mut out,
            "volumes",
            format!(
                "the volume {:?} became the claim {claim} of 1Gi: size it, and copy its data \
                 (superd seeds a new volume from the image; a claim starts empty)",
                v.name
            ),
        );
    }
    for (i, t) in spec.tmpfs_mounts.iter().enumerate() {
        let vname = format!("tmpfs-{i}");
        volumes.push(json!({ "name": vname, "emptyDir": { "medium": "Memory", "sizeLimit": bytes(t.size) } }));
        mounts.push(json!({ "name": vname, "mountPath": t.target.as_str() }));
    }
    // superd's own /tmp and /run tmpfs: needed with a read-only root.
    for (vname, path, size) in [
        ("tmp", "/tmp", spec.tmpfs.tmp),
        ("run", "/run", spec.tmpfs.run),
    ] {
        volumes.push(
            json!({ "name": vname, "emptyDir": { "medium": "Memory", "sizeLimit": bytes(size) } }),
        );
        mounts.push(json!({ "name": vname, "mountPath": path }));
    }
    container.insert("volumeMounts".into(), json!(mounts));

    // The pod.
    let mut pod = Map::new();
    pod.insert("containers".into(), json!([Value::Object(container)]));
    pod.insert("volumes".into(), json!(volumes));
    pod.insert(
        "terminationGracePeriodSeconds".into(),
        json!(secs(spec.stop.timeout, 0)),
    );
    if spec.hostname != name {
        pod.insert("hostname".into(), json!(spec.hostname));
    }
    if spec.init {
        // The pause container as PID 1 reaps orphans, as superd's init does.
        pod.insert("shareProcessNamespace".into(), json!(true));
    }
    match spec.network.mode {
        NetworkMode::Host => {
            pod.insert("hostNetwork".into(), json!(true));
        }
        NetworkMode::None => note(
            &mut out,
            "network.mode",
            "\"none\" (only loopback) has no pod setting: it gets the cluster network; add a \
             NetworkPolicy that denies all traffic"
                .into(),
        ),
        NetworkMode::Bridge => {}
    }
    if let Some(addr) = spec.network.address {
        note(
            &mut out,
            "network.address",
            format!("the static address {addr} does not map: pods get addresses from the cluster"),
        );
    }
    if let Some(sig) = spec.stop.signal.filter(|s| s.number != libc::SIGTERM) {
        note(
            &mut out,
            "stop.signal",
            format!(
                "Kubernetes stops with SIGTERM (or the image's STOPSIGNAL); {} needs a preStop \
                 hook or an image whose STOPSIGNAL is {}",
                sig.name, sig.name
            ),
        );
    }
    let restart = match spec.restart.policy {
        RestartPolicy::Always => "Always",
        RestartPolicy::OnFailure => "OnFailure",
        RestartPolicy::Never => "Never",
    };
    let d = crate::manifest::Restart::default();
    if spec.restart.initial_delay != d.initial_delay
        || spec.restart.max_delay != d.max_delay
        || spec.restart.reset_after != d.reset_after
        || spec.restart.max_retries != 0
    {
        note(
            &mut out,
            "restart",
            "the backoff and max_retries do not map: the kubelet's backoff is fixed (10 s \
             doubling to 5 min) and never gives up"
                .into(),
        );
    }
    if !spec.start_order.after.is_empty() {
        let names: Vec<String> = spec
            .start_order
            .after
            .iter()
            .map(|d| d.name.to_string())
            .collect();
        note(
            &mut out,
            "after",
            format!(
                "Kubernetes starts pods in no order: waiting for {} needs an init container \
                 that polls it",
                names.join(", ")
            ),
        );
    }
    if !spec.network.aliases.is_empty() {
        note(
            &mut out,
            "network.aliases",
            "each alias needs a Service of its own (only the workload's name is written)".into(),
        );
    }
    if spec.logs.max_size.is_some() || spec.logs.max_files.is_some() {
        note(
            &mut out,
            "logs",
            "log rotation is the kubelet's (containerLogMaxSize, containerLogMaxFiles)".into(),
        );
    }
    if spec.rlimits != crate::manifest::default_rlimits() {
        note(
            &mut out,
            "resources (rlimits)",
            "Kubernetes sets no rlimits per container: they come from the container runtime".into(),
        );
    }
    let meta = json!({ "name": name, "labels": labels(name) });
    match kind {
        Kind::Pod => {
            pod.insert("restartPolicy".into(), json!(restart));
            if spec.rollout.bake.is_some() {
                note(
                    &mut out,
                    "rollout.bake",
                    "a bare Pod has no rollout: export with --deployment for minReadySeconds \
                     (Kubernetes does not roll back by itself)"
                        .into(),
                );
            }
            out.objects.push(json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": pod,
            }));
        }
        Kind::Deployment => {
            pod.insert("restartPolicy".into(), json!("Always"));
            if spec.restart.policy != RestartPolicy::Always {
                note(
                    &mut out,
                    "restart.policy",
                    format!("a Deployment's pods always restart; {restart} needs a Pod or a Job"),
                );
            }
            let mut dspec = json!({
                "replicas": 1,
                // One instance at a time, as superd stops the old before it starts the new.
                "strategy": { "type": "Recreate" },
                "selector": { "matchLabels": { "app.kubernetes.io/name": name } },
                "template": { "metadata": { "labels": labels(name) }, "spec": pod },
            });
            if let (Some(b), Some(obj)) = (spec.rollout.bake, dspec.as_object_mut()) {
                obj.insert("minReadySeconds".into(), json!(secs(b, 0)));
                note(
                    &mut out,
                    "rollout.bake",
                    "became minReadySeconds; Kubernetes does not roll back a failed rollout \
                     by itself (kubectl rollout undo)"
                        .into(),
                );
            }
            out.objects.push(json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta,
                "spec": dspec,
            }));
        }
    }
    if !spec.network.ports.is_empty() && spec.network.mode == NetworkMode::Bridge {
        let sports: Vec<Value> = spec
            .network
            .ports
            .iter()
            .map(|p| {
                json!({
                    "name": format!("{}-{}", p.protocol.as_str(), p.container_port),
                    "port": p.container_port,
                    "targetPort": p.container_port,
                    "protocol": match p.protocol { Protocol::Tcp => "TCP", Protocol::Udp => "UDP" },
                })
            })
            .collect();
        out.objects.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": name, "labels": labels(name) },
            "spec": {
                "selector": { "app.kubernetes.io/name": name },
                "ports": sports,
            },
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(text: &str) -> Spec {
        crate::manifest::parse(Path::new("web.toml"), text).expect("a valid manifest")
    }

    #[test]
    fn a_web_server_maps_with_its_probe_limits_ports_and_security() {
        let s = spec(
            "command = [\"/usr/sbin/nginx\", \"-g\", \"daemon off;\"]\n\
             user = \"101:101\"\n\
             [rootfs]\nimage = \"nginx:1.27\"\n\
             [resources]\nmemory = \"64M\"\ncpus = 0.5\n\
             [network]\nports = [\"8080:80\"]\n\
             [health]\nhttp = \"http://localhost:80/\"\ninterval = \"10s\"\n\
             [stop]\nsignal = \"SIGQUIT\"\ntimeout = \"20s\"\n\
",
        );
        let e = export(&s, Kind::Deployment);
        let d = &e.objects[0];
        assert_eq!(d["kind"], "Deployment");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "nginx:1.27");
        assert_eq!(c["resources"]["limits"]["memory"], "64Mi");
        assert_eq!(c["resources"]["limits"]["cpu"], "500m");
        assert_eq!(c["ports"][0]["containerPort"], 80);
        assert_eq!(c["ports"][0]["hostPort"], 8080);
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], 80);
        assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(c["securityContext"]["runAsUser"], 101);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(
            c["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            20
        );
        assert_eq!(e.objects[1]["kind"], "Service");
        // The stop signal does not map: said, not dropped.
        assert!(
            e.report
                .iter()
                .any(|l| l.contains("stop.signal") && l.contains("SIGQUIT")),
            "{:?}",
            e.report
        );
    }

    #[test]
    fn what_does_not_map_is_reported() {
        let s = spec(
            "command = [\"/bin/sleep\", \"1000\"]\nafter = [\"db\"]\n\
             [restart]\npolicy = \"on-failure\"\nmax_retries = 3\n\
             [network]\nmode = \"none\"\n",
        );
        let e = export(&s, Kind::Pod);
        assert_eq!(e.objects[0]["spec"]["restartPolicy"], "OnFailure");
        for field in ["rootfs", "after", "restart", "network.mode"] {
            assert!(
                e.report
                    .iter()
                    .any(|l| l.starts_with(&format!("web: {field}:"))),
                "{field} not reported: {:?}",
                e.report
            );
        }
    }
}
