//! Health probes run by superd itself from inside a workload's network namespace, so the image
//! needs no curl: the socket is made on a short-lived thread that joined the namespace
//! (through the instance's pidfd), then driven by tokio on superd's side. A TCP probe passes
//! when the connect does; an HTTP probe (hyper) when the answer is 2xx or 3xx.

use crate::api::MAX_PROBE_OUTPUT;
use crate::manifest::Probe;
use http_body_util::BodyExt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// Runs `probe` against the loopback of the network namespace of the process behind `netns`
/// (`None`: superd's own, for `network.mode = "host"`), giving up after `timeout`. Returns
/// whether it passed and what it said (at most [`MAX_PROBE_OUTPUT`] bytes).
pub async fn run(probe: &Probe, netns: Option<OwnedFd>, timeout: Duration) -> (bool, String) {
    match tokio::time::timeout(timeout, attempt(probe, netns)).await {
        Ok(Ok(said)) => (true, bound(said)),
        Ok(Err(why)) => (false, bound(why)),
        Err(_) => (
            false,
            format!(
                "no answer within {} (health.timeout)",
                humantime::format_duration(timeout)
            ),
        ),
    }
}

/// Waits for an exec probe (`running`, whose stdout and stderr go to `output`): exit 0 passes.
/// After `timeout` the command is sent SIGTERM (through its helper) and the helper SIGKILL a
/// second later.
pub async fn run_exec(
    running: super::exec::Running,
    output: OwnedFd,
    timeout: Duration,
) -> (bool, String) {
    use tokio::io::AsyncReadExt;
    let super::exec::Running { pidfd, exit, .. } = running;
    let work = async {
        let mut said = Vec::new();
        if let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(output) {
            let mut buf = [0u8; 1024];
            while said.len() < MAX_PROBE_OUTPUT {
                match rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => said.extend_from_slice(&buf[..n]),
                }
            }
        }
        (exit.await, said)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((Ok(status), said)) => {
            let text = String::from_utf8_lossy(&said).trim().to_string();
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            let verdict = match code {
                Some(0) => format!(
                    "exit 0{}",
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {text}")
                    }
                ),
                Some(c) => format!(
                    "exit {c}{}",
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {text}")
                    }
                ),
                None => format!("killed by signal {}", libc::WTERMSIG(status)),
            };
            (code == Some(0), bound(verdict))
        }
        Ok((Err(_), _)) => (false, "the probe's exit status was lost".into()),
        Err(_) => {
            super::pidfd_signal(&pidfd, libc::SIGTERM);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                super::pidfd_signal(&pidfd, libc::SIGKILL);
            });
            (
                false,
                format!(
                    "no answer within {} (health.timeout)",
                    humantime::format_duration(timeout)
                ),
            )
        }
    }
}

fn bound(mut s: String) -> String {
    if s.len() > MAX_PROBE_OUTPUT {
        let mut end = MAX_PROBE_OUTPUT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

async fn attempt(probe: &Probe, netns: Option<OwnedFd>) -> Result<String, String> {
    let (port, v6) = match probe {
        Probe::Tcp { port } => (*port, false),
        Probe::Http { port, host, .. } => (*port, host.starts_with('[')),
        Probe::Exec { .. } => return Err("an exec probe runs through `run_exec`".into()),
    };
    let addr = if v6 {
        SocketAddr::from((Ipv6Addr::LOCALHOST, port))
    } else {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    };
    let socket = socket_in(netns, v6).await?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket);
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    match probe {
        Probe::Tcp { .. } | Probe::Exec { .. } => Ok(format!("connected to {addr}")),
        Probe::Http { path, host, .. } => http_get(stream, host, path).await,
    }
}

/// A non-blocking TCP socket made in the network namespace of `netns` (a pidfd), or in ours.
///
/// The namespace is joined on a thread of its own that ends right after it made the socket
/// (a socket stays in the namespace it was made in); tokio's pools are never moved.
async fn socket_in(netns: Option<OwnedFd>, v6: bool) -> Result<std::net::TcpStream, String> {
    let fd = match netns {
        None => make_socket(v6)?,
        Some(ns) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("superd-probe".into())
                .spawn(move || {
                    let made = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| format!("joining the workload's network namespace: {e}"))
                        .and_then(|()| make_socket(v6));
                    let _ = tx.send(made);
                })
                .map_err(|e| format!("starting the probe thread: {e}"))?;
            rx.await
                .map_err(|_| "the probe thread ended without a socket".to_string())??
        }
    };
    Ok(std::net::TcpStream::from(fd))
}

fn make_socket(v6: bool) -> Result<OwnedFd, String> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("creating the probe socket: {e}"))
}

async fn http_get(stream: tokio::net::TcpStream, host: &str, path: &str) -> Result<String, String> {
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "superd-health")
        .header(http::header::CONNECTION, "close")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let answer = sender.send_request(request).await;
    let result = match answer {
        Err(e) => Err(format!("GET {path}: {e}")),
        Ok(response) => {
            let status = response.status();
            let mut body = response.into_body();
            let mut text = Vec::new();
            // Only the start of the body is kept; the rest is never read.
            while text.len() < MAX_PROBE_OUTPUT {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            text.extend_from_slice(data);
                        }
                    }
                    Some(Err(_)) | None => break,
                }
            }
            text.truncate(MAX_PROBE_OUTPUT);
            let text = String::from_utf8_lossy(&text);
            let said = format!("HTTP {status}: {}", text.trim())
                .trim_end_matches(": ")
                .to_string();
            if status.is_success() || status.is_redirection() {
                Ok(said)
            } else {
                Err(said)
            }
        }
    };
    driver.abort();
    result
}
