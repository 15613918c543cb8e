//! The supervisor's answers to control requests (status, restart, stop/start holds, stats,
//! specs, exec, power, re-exec), read from its state in the same task.

use super::{now, workload, Supervisor};
use crate::api::{self, Ack, Request, Response, State, StatusResponse, WorkloadStatus};
use crate::manifest;
use crate::pid1::power::PowerMsg;
use crate::reconcile::lifecycle::Happened;
use crate::reconcile::{AfterStop, Phase};

impl Supervisor {
    pub(super) fn on_request(&mut self, req: Request) -> Response {
        match req {
            Request::Status { name: None } => Response::Status(StatusResponse {
                workloads: self.statuses(),
            }),
            Request::Status { name: Some(n) } => {
                match self.statuses().into_iter().find(|s| s.name == n) {
                    Some(s) => Response::Status(StatusResponse { workloads: vec![s] }),
                    None => Response::NotFound(format!("no workload named {n}")),
                }
            }
            Request::Power { action } => match &self.power {
                // Only the first request is taken: acknowledging a reboot while a poweroff
                // is under way would promise what will not happen.
                Some((tx, latch)) => match latch.claim(action) {
                    Err(first) => Response::Error(format!(
                        "a {} is already under way; {} not taken",
                        first.as_str(),
                        action.as_str()
                    )),
                    Ok(()) => match tx.try_send(PowerMsg::Request(action)) {
                        Ok(()) => Response::Ack(Ack {
                            message: format!(
                                "{}: stopping every workload, then {}",
                                action.as_str(),
                                action.as_str()
                            ),
                        }),
                        Err(e) => Response::Error(format!(
                            "{} not taken: the shutdown path is unavailable ({e})",
                            action.as_str()
                        )),
                    },
                },
                None => Response::Error(format!(
                    "superd is not the init (PID 1) of this machine; use the host's {} \
                     (or stop superd with SIGTERM)",
                    action.as_str()
                )),
            },
            Request::Stats => Response::Stats(api::StatsResponse {
                monotonic_ns: u64::try_from(now().saturating_duration_since(self.epoch).as_nanos())
                    .unwrap_or(u64::MAX),
                workloads: self
                    .workloads
                    .iter()
                    .map(|(name, w)| api::WorkloadStats {
                        name: name.clone(),
                        state: w.state(),
                        restarts: w.restarts,
                        health: w.health_status().map(|h| h.as_str().to_string()),
                        cgroup: w.instance.as_ref().and_then(|i| i.stats()),
                    })
                    .collect(),
            }),
            Request::Exec { name, req, fds } => {
                let Some(w) = self.workloads.get(&name) else {
                    return Response::NotFound(format!("no workload named {name}"));
                };
                let (Phase::Running { .. }, Some(inst)) = (w.phase, &w.instance) else {
                    return Response::Error(format!(
                        "{name} is not running (it is {}): nothing to exec in",
                        w.state().as_str()
                    ));
                };
                let Some(fds) = fds.take() else {
                    return Response::Error("the exec's descriptors were already used".into());
                };
                match inst.exec(&name, &req, fds) {
                    Ok(run) => {
                        tracing::info!(workload = %name, pid = run.pid, "exec {:?}", req.argv);
                        Response::Exec(api::Passed::new(run))
                    }
                    Err(e) => Response::Error(format!("exec in {name}: {e}")),
                }
            }
            Request::Reexec => match &self.reexec {
                None => Response::Error("this superd cannot re-execute itself".into()),
                Some(_) if self.shutting_down => {
                    Response::Error("superd is stopping every workload; not re-executing".into())
                }
                Some(exe) => {
                    // Not at once: the answer must be written to superctl first.
                    self.reexec_at = Some(now() + std::time::Duration::from_millis(100));
                    Response::Ack(Ack {
                        message: format!(
                            "re-executing {} (PID {}) once no workload is starting or stopping; \
                             every workload keeps running",
                            exe.display(),
                            std::process::id()
                        ),
                    })
                }
            },
            Request::Daemon => Response::Daemon(api::DaemonInfo {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_unix_ms: self
                    .started_wall
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                workloads: self.workloads.len(),
                adopted: self.adopted,
            }),
            Request::Watchdog => {
                let critical = self.critical_workloads();
                match crate::reconcile::watchdog::verdict(&critical, &mut self.critical_bad, now())
                {
                    Ok(()) => Response::Ack(Ack {
                        message: format!("{} critical workloads run healthy", critical.len()),
                    }),
                    Err(why) => Response::Error(why),
                }
            }
            Request::Stop { name } => self.hold(&name),
            Request::Start { name } => self.release(&name),
            Request::Specs => Response::Specs(api::SpecsResponse {
                workloads: self
                    .workloads
                    .iter()
                    .map(|(name, w)| {
                        let spec = serde_json::to_value(&*w.spec).unwrap_or_default();
                        (
                            name.clone(),
                            api::RunningSpec {
                                state: w.state(),
                                spec,
                            },
                        )
                    })
                    .collect(),
            }),
            Request::Restart { name } => {
                if self.overrides.held().contains(&name) {
                    return Response::Error(format!(
                        "{name} was stopped by `superctl stop`; `superctl start {name}` starts it"
                    ));
                }
                let Some(w) = self.workloads.get_mut(&name) else {
                    return Response::NotFound(format!("no workload named {name}"));
                };
                w.failures = 0;
                if matches!(w.phase, Phase::Starting | Phase::Running { .. }) {
                    self.stop(&name, AfterStop::Start);
                } else {
                    w.advance(Happened::RestartRequested);
                }
                Response::Ack(Ack {
                    message: format!("restarting {name}"),
                })
            }
        }
    }

    /// A removed workload's override goes with it (not at shutdown: it is kept for the next
    /// superd).
    pub(super) fn forget_override(&mut self, name: &str) {
        if self.shutting_down {
            return;
        }
        if let Err(e) = self.overrides.release(name) {
            tracing::error!(workload = %name, "dropping its stop override: {e}");
        }
    }

    /// `superctl stop`: hold the workload stopped (the planner stops it).
    fn hold(&mut self, name: &str) -> Response {
        if !self.desired.contains_key(name) && !self.workloads.contains_key(name) {
            return Response::NotFound(format!("no workload named {name}"));
        }
        if let Err(e) = self.overrides.hold(name) {
            return Response::Error(format!(
                "{name} not stopped: recording the override failed: {e}"
            ));
        }
        tracing::info!(workload = %name, "held stopped by superctl stop");
        Response::Ack(Ack {
            message: format!("stopping {name} (it stays stopped until `superctl start {name}`)"),
        })
    }

    /// `superctl start`: release a held workload (the planner starts it).
    fn release(&mut self, name: &str) -> Response {
        if !self.desired.contains_key(name) && !self.workloads.contains_key(name) {
            return Response::NotFound(format!("no workload named {name}"));
        }
        match self.overrides.release(name) {
            Ok(true) => {
                if let Some(w) = self.workloads.get_mut(name) {
                    w.failures = 0;
                }
                tracing::info!(workload = %name, "released by superctl start");
                Response::Ack(Ack {
                    message: format!("starting {name}"),
                })
            }
            Ok(false) => Response::Ack(Ack {
                message: format!("{name} was not stopped by `superctl stop`; nothing to do"),
            }),
            Err(e) => Response::Error(format!(
                "{name} not started: recording the override failed: {e}"
            )),
        }
    }

    pub(super) fn statuses(&self) -> Vec<WorkloadStatus> {
        let mut names: Vec<&String> = self.desired.keys().chain(self.workloads.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let entry = self.desired.get(name);
                let file = entry.map(|e| e.file.display().to_string());
                let merr = entry
                    .and_then(|e| e.spec.as_ref().err())
                    .or_else(|| self.net.rejection(name))
                    .map(|e| manifest::bound_text(e.to_string(), api::MAX_ERROR_CHARS));
                let waiting = self.waiting.get(name).cloned().unwrap_or_default();
                match self.workloads.get(name) {
                    Some(w) => w.status(name, file, merr, waiting),
                    None => WorkloadStatus {
                        invalid_manifest: merr.is_some(),
                        name: name.clone(),
                        state: if merr.is_some() {
                            State::Failed
                        } else if self.overrides.held().contains(name) {
                            State::Stopped
                        } else if !waiting.is_empty() {
                            State::Waiting
                        } else {
                            State::Starting
                        },
                        pid: None,
                        init_pid: None,
                        restarts: 0,
                        last_exit: None,
                        error: merr,
                        memory_bytes: None,
                        spec_hash: entry.and_then(|e| e.spec.as_ref().ok().map(|s| s.hash())),
                        next_restart_at: None,
                        notice: None,
                        started_at: None,
                        uptime_seconds: None,
                        manifest: file,
                        address: self.net.address(name).map(|a| a.to_string()),
                        ports: entry
                            .and_then(|e| e.spec.as_ref().ok())
                            .map(|s| s.network.ports.iter().map(|p| p.to_string()).collect())
                            .unwrap_or_default(),
                        image: entry
                            .and_then(|e| e.spec.as_ref().ok())
                            .and_then(|s| workload::image_of(s)),
                        image_digest: None,
                        volumes: entry
                            .and_then(|e| e.spec.as_ref().ok())
                            .map(|s| s.volumes.iter().map(|v| v.name.clone()).collect())
                            .unwrap_or_default(),
                        health: None,
                        waiting_for: waiting,
                    },
                }
            })
            .collect()
    }

    /// The `[watchdog] critical` workloads (by their running spec, else the manifest's), and
    /// whether each runs healthy. One held by `superctl stop` is the operator's decision and
    /// does not count.
    fn critical_workloads(&self) -> Vec<crate::reconcile::watchdog::Critical> {
        let mut out = Vec::new();
        let names: std::collections::BTreeSet<&String> =
            self.desired.keys().chain(self.workloads.keys()).collect();
        for name in names {
            if self.overrides.held().contains(name) {
                continue;
            }
            let w = self.workloads.get(name);
            let spec = w.map(|w| w.spec.clone()).or_else(|| {
                self.desired
                    .get(name)
                    .and_then(|e| e.spec.as_ref().ok().cloned())
            });
            let Some(spec) = spec.filter(|s| s.watchdog.critical) else {
                continue;
            };
            let healthy = w.is_some_and(|w| {
                matches!(w.phase, Phase::Running { .. })
                    && (spec.health.is_none()
                        || w.health_status()
                            == Some(crate::reconcile::health::HealthStatus::Healthy))
            });
            out.push(crate::reconcile::watchdog::Critical {
                name: name.clone(),
                healthy,
                grace: spec.watchdog.grace,
            });
        }
        out
    }
}
