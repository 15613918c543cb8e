//! `POST /v1/workloads/{name}/exec`: the body is an [`ExecRequest`]; the descriptors come
//! with the request (`SCM_RIGHTS`): stdin, stdout and stderr (pipes the client made), or with
//! `tty` only the client's console socket. The answer streams [`ExecEvent`] lines: the PID,
//! then the exit. A client that goes away before the end hangs the command up (SIGHUP). Root
//! only.

use super::access::Access;
use super::http::{HttpRequest, HttpResponse};
use super::server::{to_hyper, ApiTx, Body};
use crate::api::{self, ExecEvent, ExecFds, Passed};
use crate::runtime::exec::{ExecRequest, Running};
use futures_util::StreamExt;
use std::os::fd::OwnedFd;

/// The workload named by an exec path, if `path` is one.
pub fn target(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1/workloads/")?;
    let name = rest.strip_suffix("/exec")?;
    super::http::decode_segment(name).filter(|n| !n.is_empty() && !n.contains('/'))
}

fn line(e: &ExecEvent) -> hyper::body::Bytes {
    let mut b = serde_json::to_vec(e).unwrap_or_default();
    b.push(b'\n');
    hyper::body::Bytes::from(b)
}

/// Hangs the command up if the answer is dropped before the command ended.
struct Guard {
    run: Option<Running>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(run) = &self.run {
            crate::runtime::pidfd_signal(&run.pidfd, libc::SIGHUP);
        }
    }
}

fn end(status: i32) -> ExecEvent {
    if libc::WIFEXITED(status) {
        ExecEvent {
            exit_code: Some(libc::WEXITSTATUS(status)),
            ..ExecEvent::default()
        }
    } else {
        let sig = libc::WTERMSIG(status);
        ExecEvent {
            signal: Some(
                crate::manifest::Signal::from_number(sig)
                    .map(|s| s.name.to_string())
                    .unwrap_or_else(|| format!("SIG{sig}")),
            ),
            ..ExecEvent::default()
        }
    }
}

/// The answer.
pub async fn answer(
    req: &HttpRequest,
    name: String,
    mut fds: Vec<OwnedFd>,
    tx: &ApiTx,
    access: Access,
) -> hyper::Response<Body> {
    if req.method != "POST" {
        let mut resp = HttpResponse::error(
            405,
            format!("{} not allowed on {}; use POST", req.method, req.path),
        );
        resp.allow = Some("POST");
        return to_hyper(resp);
    }
    if access != Access::Admin {
        return to_hyper(HttpResponse::error(
            403,
            "permission denied: exec needs root",
        ));
    }
    let exec: ExecRequest = match serde_json::from_slice(&req.body) {
        Ok(e) => e,
        Err(e) => return to_hyper(HttpResponse::error(400, format!("the exec request: {e}"))),
    };
    let fds = if exec.tty {
        if fds.len() != 1 {
            return to_hyper(HttpResponse::error(
                400,
                "a tty exec passes exactly one descriptor: the console socket",
            ));
        }
        let null = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
        };
        match (null(), null(), null()) {
            (Ok(a), Ok(b), Ok(c)) => ExecFds {
                stdio: [a, b, c],
                console: fds.pop(),
            },
            _ => return to_hyper(HttpResponse::error(500, "opening /dev/null")),
        }
    } else {
        if fds.len() != 3 {
            return to_hyper(HttpResponse::error(
                400,
                "an exec passes three descriptors: stdin, stdout and stderr",
            ));
        }
        let err = fds.pop();
        let out = fds.pop();
        let input = fds.pop();
        match (input, out, err) {
            (Some(i), Some(o), Some(e)) => ExecFds {
                stdio: [i, o, e],
                console: None,
            },
            _ => return to_hyper(HttpResponse::error(400, "missing descriptors")),
        }
    };
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    let request = api::Request::Exec {
        name,
        req: exec,
        fds: Passed::new(fds),
    };
    if tx.send((request, reply_tx)).await.is_err() {
        return to_hyper(HttpResponse::error(503, "superd is shutting down"));
    }
    let run = match reply_rx.await {
        Ok(api::Response::Exec(run)) => run.take(),
        Ok(other) => return to_hyper(super::http::to_http(other)),
        Err(_) => return to_hyper(HttpResponse::error(503, "superd is shutting down")),
    };
    let Some(mut run) = run else {
        return to_hyper(HttpResponse::error(500, "the exec was taken"));
    };
    let started = line(&ExecEvent {
        pid: Some(run.pid),
        ..ExecEvent::default()
    });
    let exit = std::mem::replace(&mut run.exit, tokio::sync::oneshot::channel().1);
    let guard = Guard { run: Some(run) };
    let ended = futures_util::stream::once(async move {
        let mut guard = guard;
        let status = exit.await;
        guard.run = None; // ended: nothing to hang up
        match status {
            Ok(s) => line(&end(s)),
            Err(_) => line(&ExecEvent::default()),
        }
    });
    super::server::ndjson(futures_util::stream::once(async move { started }).chain(ended))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_ends() {
        assert_eq!(target("/v1/workloads/web/exec").as_deref(), Some("web"));
        assert_eq!(target("/v1/workloads//exec"), None);
        assert_eq!(target("/v1/workloads/web/logs"), None);
        assert_eq!(end(3 << 8).exit_code, Some(3));
        assert_eq!(end(libc::SIGKILL).signal.as_deref(), Some("SIGKILL"));
    }
}
