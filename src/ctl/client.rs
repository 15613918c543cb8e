//! A blocking client for the control socket: hyper on a current-thread tokio runtime of its
//! own per request, so `superctl` and tests call it like a function.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::http::{self, encode_segment};
use crate::api;

/// The body of every request the client sends.
type RequestBody = http_body_util::Full<hyper::body::Bytes>;

/// The largest response the client accepts.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// The longest line of an event stream the client accepts.
const MAX_EVENT_LINE: usize = 256 * 1024;

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// superd could not be connected to.
    #[error(
        "cannot reach superd at {}: {source} (is superd running? set --socket or SUPERD_SOCKET)",
        socket.display()
    )]
    Unreachable {
        /// The socket tried.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The connection failed or timed out after it was made.
    #[error("talking to superd at {}: {source}", socket.display())]
    Io {
        /// The socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No such workload (404); carries superd's message.
    #[error("{0}")]
    NotFound(String),
    /// superd answered with an error status.
    #[error("superd answered {status}: {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// superd's message.
        message: String,
    },
    /// The reply was not what the API promises.
    #[error("invalid reply from superd: {0}")]
    Protocol(String),
}

/// Talks to one superd over its control socket, one connection per request.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client for the socket at `socket`, with a 10 s deadline per request.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Sets the deadline for connecting, sending and receiving one request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The socket this client connects to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Status of all workloads, or of the one named (`NotFound` if there is none).
    pub fn status(&self, name: Option<&str>) -> Result<api::StatusResponse, ClientError> {
        let path = match name {
            Some(n) => format!("/v1/status/{}", encode_segment(n)),
            None => "/v1/status".to_owned(),
        };
        self.call("GET", &path)
    }

    /// Records of a workload's log (see `ctl::logs` for the query).
    pub fn logs(
        &self,
        name: &str,
        tail: Option<usize>,
        since: Option<&str>,
        after: Option<&str>,
    ) -> Result<api::LogsResponse, ClientError> {
        let mut q = Vec::new();
        if let Some(t) = tail {
            q.push(format!("tail={t}"));
        }
        if let Some(s) = since {
            q.push(format!("since={}", encode_segment(s)));
        }
        if let Some(a) = after {
            q.push(format!("after={}", encode_segment(a)));
        }
        let mut path = format!("/v1/workloads/{}/logs", encode_segment(name));
        if !q.is_empty() {
            path.push('?');
            path.push_str(&q.join("&"));
        }
        self.call("GET", &path)
    }

    /// Restarts a workload now (`NotFound` if there is none).
    pub fn restart(&self, name: &str) -> Result<api::Ack, ClientError> {
        self.call(
            "POST",
            &format!("/v1/workloads/{}/restart", encode_segment(name)),
        )
    }

    /// Stops a workload and keeps it stopped until [`Client::start`].
    pub fn stop(&self, name: &str) -> Result<api::Ack, ClientError> {
        self.call(
            "POST",
            &format!("/v1/workloads/{}/stop", encode_segment(name)),
        )
    }

    /// Starts a workload [`Client::stop`] stopped.
    pub fn start(&self, name: &str) -> Result<api::Ack, ClientError> {
        self.call(
            "POST",
            &format!("/v1/workloads/{}/start", encode_segment(name)),
        )
    }

    /// What every workload uses now.
    pub fn stats(&self) -> Result<api::StatsResponse, ClientError> {
        self.call("GET", "/v1/stats")
    }

    /// What every workload runs, for `superctl plan`.
    pub fn specs(&self) -> Result<api::SpecsResponse, ClientError> {
        self.call("GET", "/v1/specs")
    }

    /// Asks superd (as PID 1) to stop every workload and power off, reboot or halt.
    pub fn power(&self, action: api::PowerAction) -> Result<api::Ack, ClientError> {
        self.call("POST", &format!("/v1/{}", action.as_str()))
    }

    /// Asks superd to re-execute itself in place (workloads keep running).
    pub fn reexec(&self) -> Result<api::Ack, ClientError> {
        self.call("POST", "/v1/reexec")
    }

    /// Which superd answers.
    pub fn daemon(&self) -> Result<api::DaemonInfo, ClientError> {
        self.call("GET", "/v1/daemon")
    }

    /// Every named volume.
    pub fn volumes(&self) -> Result<api::VolumesResponse, ClientError> {
        self.call("GET", "/v1/volumes")
    }

    /// Removes a volume and its data (refused while a manifest mounts it).
    pub fn volume_rm(&self, name: &str) -> Result<api::Ack, ClientError> {
        self.call("DELETE", &format!("/v1/volumes/{}", encode_segment(name)))
    }

    /// Every named image in superd's store.
    pub fn images(&self) -> Result<api::ImagesResponse, ClientError> {
        self.call("GET", "/v1/images")
    }

    /// One image.
    pub fn image(&self, reference: &str) -> Result<api::ImageRow, ClientError> {
        self.call("GET", &format!("/v1/images/{}", encode_segment(reference)))
    }

    /// Pulls an image from its registry (a tag is resolved again); `platform`
    /// (`os/arch[/variant]`) picks an index's entry other than the daemon machine's.
    pub fn image_pull(
        &self,
        reference: &str,
        platform: Option<&str>,
    ) -> Result<api::ImportResponse, ClientError> {
        let p = platform
            .map(|p| format!("&platform={}", encode_segment(p)))
            .unwrap_or_default();
        self.call(
            "POST",
            &format!("/v1/images/pull?ref={}{p}", encode_segment(reference)),
        )
    }

    /// How the running (or last) pull of `reference` goes, layer by layer.
    pub fn image_pull_progress(&self, reference: &str) -> Result<api::PullProgress, ClientError> {
        self.call(
            "GET",
            &format!("/v1/images/pull?ref={}", encode_segment(reference)),
        )
    }

    /// Garbage-collects the store now (or says what it would remove).
    pub fn image_prune(&self, dry_run: bool) -> Result<crate::images::gc::GcReport, ClientError> {
        let q = if dry_run { "?dry_run=1" } else { "" };
        self.call("POST", &format!("/v1/images/prune{q}"))
    }

    /// Drops a name from the store (refused while a workload uses it).
    pub fn image_rm(&self, reference: &str) -> Result<api::Ack, ClientError> {
        self.call(
            "DELETE",
            &format!("/v1/images/{}", encode_segment(reference)),
        )
    }

    /// Imports the archive superd reads from `archive` (a file or a pipe, passed to it with
    /// SCM_RIGHTS). Waits as long as the client's timeout allows.
    pub fn image_import(
        &self,
        archive: std::os::fd::BorrowedFd<'_>,
        name: Option<&str>,
    ) -> Result<api::ImportResponse, ClientError> {
        let path = match name {
            Some(n) => format!("/v1/images/import?name={}", encode_segment(n)),
            None => "/v1/images/import".to_string(),
        };
        self.call_fd("POST", &path, Some(archive))
    }

    /// Sends one request and decodes a 200 body as `T`; other statuses become errors.
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
    ) -> Result<T, ClientError> {
        self.call_fd(method, path, None)
    }

    /// [`Client::call`], passing `fd` along with the request.
    fn call_fd<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<T, ClientError> {
        let resp = self.roundtrip(method, path, fd)?;
        match resp.status {
            200 => serde_json::from_slice(&resp.body)
                .map_err(|e| ClientError::Protocol(format!("{method} {path}: {e}"))),
            404 => Err(ClientError::NotFound(error_message(&resp.body))),
            status => Err(ClientError::Server {
                status,
                message: error_message(&resp.body),
            }),
        }
    }

    /// One HTTP exchange (hyper, on a runtime of its own) within the deadline.
    fn roundtrip(
        &self,
        method: &str,
        path: &str,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<http::ParsedResponse, ClientError> {
        let io_err = |source| ClientError::Io {
            socket: self.socket.clone(),
            source,
        };
        let fd = fd
            .map(|f| f.try_clone_to_owned())
            .transpose()
            .map_err(io_err)?;
        let rt = self.runtime()?;
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + self.timeout;
            let stream = self.connect(deadline).await?;
            let exchange = self.exchange(stream, method, path, fd);
            match tokio::time::timeout_at(deadline, exchange).await {
                Ok(r) => r,
                Err(_) => Err(io_err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no reply in time",
                ))),
            }
        })
    }

    async fn exchange(
        &self,
        stream: tokio::net::UnixStream,
        method: &str,
        path: &str,
        fd: Option<std::os::fd::OwnedFd>,
    ) -> Result<http::ParsedResponse, ClientError> {
        use http_body_util::BodyExt;
        use std::os::fd::AsFd;
        let io_err = |source| ClientError::Io {
            socket: self.socket.clone(),
            source,
        };
        // A second handle: a server that refuses us (busy, forbidden) answers and closes
        // before reading the request, and hyper then reports our failed write, not its answer.
        let raw = stream
            .as_fd()
            .try_clone_to_owned()
            .map(UnixStream::from)
            .map_err(io_err)?;
        let mut io = super::fdio::FdStream::new(stream, Default::default(), usize::MAX);
        if let Some(fd) = fd {
            io = io.with_fds(vec![fd]);
        }
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| io_err(io::Error::other(e)))?;
        let driver = tokio::spawn(conn);
        let request = ::http::Request::builder()
            .method(method)
            .uri(path)
            .header(::http::header::HOST, "localhost")
            .header(
                ::http::header::USER_AGENT,
                concat!("superctl/", env!("CARGO_PKG_VERSION")),
            )
            .header(::http::header::ACCEPT, "application/json")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| ClientError::Protocol(format!("{method} {path}: {e}")))?;
        let answer = match sender.send_request(request).await {
            Ok(resp) => resp,
            Err(e) => {
                driver.abort();
                return refusal(&raw).ok_or_else(|| io_err(io::Error::other(e)));
            }
        };
        let status = answer.status().as_u16();
        let body = http_body_util::Limited::new(answer.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await;
        driver.abort();
        match body {
            Ok(b) => Ok(http::ParsedResponse {
                status,
                body: b.to_bytes().to_vec(),
            }),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(ClientError::Protocol(format!(
                    "response larger than {MAX_RESPONSE_BYTES} bytes"
                )))
            }
            Err(e) => Err(io_err(io::Error::other(e))),
        }
    }

    /// `GET /v1/events?query`: calls `each` for every event until it returns false, the
    /// stream ends (superd stopped, or `follow=false`) or fails. Only connecting and the
    /// answer's head are bounded by the timeout.
    pub fn events(
        &self,
        query: &str,
        mut each: impl FnMut(api::Event) -> bool,
    ) -> Result<(), ClientError> {
        use http_body_util::BodyExt;
        let io_err = |source| ClientError::Io {
            socket: self.socket.clone(),
            source,
        };
        let rt = self.runtime()?;
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + self.timeout;
            let (mut sender, driver) = self.open(deadline, Vec::new()).await?;
            let path = format!("/v1/events?{query}");
            let request = ::http::Request::get(&path)
                .header(::http::header::HOST, "localhost")
                .body(RequestBody::default())
                .map_err(|e| ClientError::Protocol(format!("GET {path}: {e}")))?;
            let answer = tokio::time::timeout_at(deadline, sender.send_request(request))
                .await
                .map_err(|_| io_err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time")))?
                .map_err(|e| io_err(io::Error::other(e)))?;
            let status = answer.status().as_u16();
            let mut body = answer.into_body();
            if status != 200 {
                let bytes = http_body_util::Limited::new(body, 64 * 1024)
                    .collect()
                    .await
                    .map(|b| b.to_bytes().to_vec())
                    .unwrap_or_default();
                driver.abort();
                let message = error_message(&bytes);
                return Err(ClientError::Server { status, message });
            }
            let mut pending: Vec<u8> = Vec::new();
            let result = loop {
                let frame = match body.frame().await {
                    None => break Ok(()),
                    Some(Err(e)) => break Err(io_err(io::Error::other(e))),
                    Some(Ok(f)) => f,
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                pending.extend_from_slice(&data);
                let mut stop = false;
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    match serde_json::from_slice::<api::Event>(&line) {
                        Ok(e) => {
                            if !each(e) {
                                stop = true;
                                break;
                            }
                        }
                        Err(e) => return Err(ClientError::Protocol(format!("an event: {e}"))),
                    }
                }
                if stop {
                    break Ok(());
                }
                if pending.len() > MAX_EVENT_LINE {
                    break Err(ClientError::Protocol(format!(
                        "an event longer than {MAX_EVENT_LINE} bytes"
                    )));
                }
            };
            driver.abort();
            result
        })
    }

    /// `POST /v1/workloads/{name}/exec`: passes `fds` with the request and waits for the
    /// command to end; returns how it ended. Only connecting and the answer's head are bounded
    /// by the timeout.
    pub fn exec(
        &self,
        name: &str,
        req: &crate::runtime::exec::ExecRequest,
        fds: Vec<std::os::fd::OwnedFd>,
    ) -> Result<api::ExecEvent, ClientError> {
        use http_body_util::BodyExt;
        let io_err = |source| ClientError::Io {
            socket: self.socket.clone(),
            source,
        };
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let rt = self.runtime()?;
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + self.timeout;
            let (mut sender, driver) = self.open(deadline, fds).await?;
            let path = format!("/v1/workloads/{}/exec", encode_segment(name));
            let request = ::http::Request::post(&path)
                .header(::http::header::HOST, "localhost")
                .header(::http::header::CONTENT_TYPE, "application/json")
                .body(RequestBody::new(hyper::body::Bytes::from(body)))
                .map_err(|e| ClientError::Protocol(format!("POST {path}: {e}")))?;
            let answer = tokio::time::timeout_at(deadline, sender.send_request(request))
                .await
                .map_err(|_| io_err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time")))?
                .map_err(|e| io_err(io::Error::other(e)))?;
            let status = answer.status().as_u16();
            let bytes = http_body_util::Limited::new(answer.into_body(), 64 * 1024)
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .map_err(|e| io_err(io::Error::other(e)));
            driver.abort();
            let bytes = bytes?;
            if status != 200 {
                let message = error_message(&bytes);
                return Err(if status == 404 {
                    ClientError::NotFound(message)
                } else {
                    ClientError::Server { status, message }
                });
            }
            let last = bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .filter_map(|l| serde_json::from_slice::<api::ExecEvent>(l).ok())
                .next_back()
                .unwrap_or_default();
            if last.exit_code.is_none() && last.signal.is_none() {
                return Err(ClientError::Protocol(
                    "superd did not say how the command ended".into(),
                ));
            }
            Ok(last)
        })
    }

    /// The current-thread runtime one request runs on.
    fn runtime(&self) -> Result<tokio::runtime::Runtime, ClientError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ClientError::Io {
                socket: self.socket.clone(),
                source,
            })
    }

    /// Connects and shakes hands (passing `fds` with the first bytes): a sender and the task
    /// driving the connection (abort it when done).
    async fn open(
        &self,
        deadline: tokio::time::Instant,
        fds: Vec<std::os::fd::OwnedFd>,
    ) -> Result<
        (
            hyper::client::conn::http1::SendRequest<RequestBody>,
            tokio::task::JoinHandle<Result<(), hyper::Error>>,
        ),
        ClientError,
    > {
        let stream = self.connect(deadline).await?;
        let io = super::fdio::FdStream::new(stream, Default::default(), usize::MAX).with_fds(fds);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| ClientError::Io {
                    socket: self.socket.clone(),
                    source: io::Error::other(e),
                })?;
        Ok((sender, tokio::spawn(conn)))
    }

    /// connect(2) within the deadline: a wedged daemon with a full accept backlog answers
    /// EAGAIN, which is reported as not accepting connections.
    async fn connect(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<tokio::net::UnixStream, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            socket: self.socket.clone(),
            source,
        };
        let busy = || {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "superd is not accepting connections",
            )
        };
        match tokio::time::timeout_at(deadline, tokio::net::UnixStream::connect(&self.socket)).await
        {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EAGAIN) => Err(unreachable(busy())),
            Ok(Err(e)) => Err(unreachable(e)),
            Err(_) => Err(unreachable(busy())),
        }
    }
}

/// superd's `{"error": …}` of an answer that is not a success, or its text.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<api::ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_owned())
}

/// The whole answer a refusing server left in the socket before it closed, if any.
fn refusal(raw: &UnixStream) -> Option<http::ParsedResponse> {
    let _ = raw.set_nonblocking(false);
    let _ = raw.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match (&*raw).read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 64 * 1024 {
                    return None;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    http::parse_response(&buf, true).ok().flatten()
}

/// End-to-end tests: the real server on a tempdir socket, a fake supervisor, this client.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::server::{bind, serve, ApiTx, ServerLimits};
    use std::io::Write;
    use std::sync::Arc;
    use tokio::sync::{mpsc, oneshot};

    fn workload(name: &str) -> api::WorkloadStatus {
        api::WorkloadStatus {
            health: None,
            waiting_for: Vec::new(),
            invalid_manifest: false,
            name: name.into(),
            state: api::State::Running,
            pid: Some(42),
            init_pid: None,
            restarts: 0,
            last_exit: None,
            error: None,
            memory_bytes: Some(1 << 20),
            spec_hash: None,
            next_restart_at: None,
            notice: None,
            started_at: None,
            uptime_seconds: Some(5),
            manifest: None,
            address: None,
            ports: Vec::new(),
            image: None,
            image_digest: None,
            volumes: Vec::new(),
        }
    }

    /// Answers like a supervisor that runs `web` and `db`; restarting `db` fails.
    fn fake_supervisor() -> ApiTx {
        let (tx, mut rx) = mpsc::channel::<(api::Request, oneshot::Sender<api::Response>)>(4);
        tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let known = |n: &str| n == "web" || n == "db";
                let resp = match req {
                    api::Request::Status { name: None } => {
                        api::Response::Status(api::StatusResponse {
                            workloads: vec![workload("db"), workload("web")],
                        })
                    }
                    api::Request::Status { name: Some(n) } if known(&n) => {
                        api::Response::Status(api::StatusResponse {
                            workloads: vec![workload(&n)],
                        })
                    }
                    api::Request::Restart { name } if name == "web" => {
                        api::Response::Ack(api::Ack {
                            message: "restarting web".into(),
                        })
                    }
                    api::Request::Restart { name } if name == "db" => {
                        api::Response::Error("cannot restart db: boom".into())
                    }
                    api::Request::Power { action } => api::Response::Ack(api::Ack {
                        message: action.as_str().to_string(),
                    }),
                    api::Request::Status { name: Some(n) }
                    | api::Request::Restart { name: n }
                    | api::Request::Stop { name: n }
                    | api::Request::Start { name: n } => {
                        api::Response::NotFound(format!("no workload named {n}"))
                    }
                    api::Request::Specs => api::Response::Specs(api::SpecsResponse {
                        workloads: Default::default(),
                    }),
                    api::Request::Stats => api::Response::Stats(api::StatsResponse {
                        monotonic_ns: 0,
                        workloads: Vec::new(),
                    }),
                    api::Request::Exec { name, .. } => {
                        api::Response::Error(format!("{name} is not running"))
                    }
                    api::Request::Reexec | api::Request::Daemon | api::Request::Watchdog => {
                        api::Response::Error("not in this test".into())
                    }
                };
                let _ = reply.send(resp);
            }
        });
        tx
    }

    struct Server {
        _dir: tempfile::TempDir,
        sock: PathBuf,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn start(limits: ServerLimits, tx: ApiTx) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("run").join("superd.sock");
        let listener = bind(&sock, None).expect("bind");
        let task = tokio::spawn(async move {
            serve(listener, limits, tx).await.expect("serve");
        });
        Server {
            _dir: dir,
            sock,
            task,
        }
    }

    /// Runs blocking client code off the runtime's threads.
    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.expect("blocking task")
    }

    /// Writes `request` (errors ignored), reads until EOF or error, returns what came back.
    fn raw_exchange(sock: &Path, request: &[u8]) -> String {
        let mut s = UnixStream::connect(sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = s.write_all(request);
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut chunk) {
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn status_restart_and_not_found() {
        let srv = start(ServerLimits::default(), fake_supervisor());
        let client = Client::new(&srv.sock);
        let (all, one, missing, ack, unknown, failed) = blocking(move || {
            (
                client.status(None),
                client.status(Some("web")),
                client.status(Some("nope")),
                client.restart("web"),
                client.restart("nope"),
                client.restart("db"),
            )
        })
        .await;
        let names: Vec<_> = all
            .expect("status")
            .workloads
            .into_iter()
            .map(|w| w.name)
            .collect();
        assert_eq!(names, ["db", "web"]);
        assert_eq!(one.expect("status web").workloads, vec![workload("web")]);
        assert!(matches!(missing, Err(ClientError::NotFound(m)) if m == "no workload named nope"));
        assert_eq!(ack.expect("restart").message, "restarting web");
        assert!(matches!(unknown, Err(ClientError::NotFound(_))));
        assert!(
            matches!(&failed, Err(ClientError::Server { status: 500, message }) if message == "cannot restart db: boom"),
            "{failed:?}"
        );
    }

    #[tokio::test]
    async fn silent_client_is_cut_off_after_the_timeout() {
        let limits = ServerLimits {
            request_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        };
        let srv = start(limits, fake_supervisor());
        let sock = srv.sock.clone();
        let (silent, partial) = blocking(move || {
            (
                raw_exchange(&sock, b""),
                raw_exchange(&sock, b"GET /v1/sta"),
            )
        })
        .await;
        // raw_exchange only returns once the server has closed the connection.
        assert!(silent.starts_with("HTTP/1.1 408 "), "{silent}");
        assert!(partial.starts_with("HTTP/1.1 408 "), "{partial}");
    }

    #[tokio::test]
    async fn oversize_bad_and_unknown_requests_get_errors() {
        let limits = ServerLimits {
            max_request_bytes: 1024,
            ..ServerLimits::default()
        };
        let srv = start(limits, fake_supervisor());
        let sock = srv.sock.clone();
        let (big, bad, unknown, method) = blocking(move || {
            let big = format!(
                "GET /v1/status HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
                "a".repeat(4000)
            );
            (
                raw_exchange(&sock, big.as_bytes()),
                raw_exchange(&sock, b"BLAH\r\n\r\n"),
                raw_exchange(&sock, b"GET /v1/nothing HTTP/1.1\r\n\r\n"),
                raw_exchange(&sock, b"DELETE /v1/status HTTP/1.1\r\n\r\n"),
            )
        })
        .await;
        assert!(big.starts_with("HTTP/1.1 413 "), "{big}");
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        assert!(unknown.starts_with("HTTP/1.1 404 "), "{unknown}");
        assert!(method.starts_with("HTTP/1.1 405 "), "{method}");
        assert!(method.to_lowercase().contains("allow: get\r\n"), "{method}");
    }

    #[tokio::test]
    async fn an_idle_connection_makes_room_for_an_admin() {
        let limits = ServerLimits {
            max_connections: 1,
            request_timeout: Duration::from_secs(3),
            ..ServerLimits::default()
        };
        let srv = start(limits, fake_supervisor());
        let sock = srv.sock.clone();
        let (status, hog_got) = blocking(move || {
            // Holds the only slot by sending nothing; the test runs as root or as superd's
            // own user, an admin, whose next connection evicts it.
            let mut hog = UnixStream::connect(&sock).expect("connect");
            std::thread::sleep(Duration::from_millis(100));
            let status = Client::new(&sock).status(None);
            let mut got = String::new();
            let _ = std::io::Read::read_to_string(&mut hog, &mut got);
            (status, got)
        })
        .await;
        assert!(status.is_ok(), "{status:?}");
        assert!(hog_got.starts_with("HTTP/1.1 503 "), "{hog_got}");
        assert!(hog_got.contains("made room"), "{hog_got}");
    }

    #[tokio::test]
    async fn closed_supervisor_channel_is_503() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let srv = start(ServerLimits::default(), tx);
        let client = Client::new(&srv.sock);
        let r = blocking(move || client.status(None)).await;
        assert!(
            matches!(r, Err(ClientError::Server { status: 503, .. })),
            "{r:?}"
        );
    }

    #[test]
    fn missing_socket_is_unreachable_with_a_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Client::new(dir.path().join("nope.sock"))
            .status(None)
            .expect_err("nothing listens");
        assert!(matches!(err, ClientError::Unreachable { .. }));
        let msg = err.to_string();
        assert!(msg.starts_with("cannot reach superd at "), "{msg}");
        assert!(
            msg.contains("(is superd running? set --socket or SUPERD_SOCKET)"),
            "{msg}"
        );
    }

    /// Every route the README's API table lists is one the server knows, with that method.
    #[tokio::test]
    async fn the_readme_route_table_matches_the_server() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let table = readme
            .split("### Control API")
            .nth(1)
            .expect("a Control API section");
        let rows: Vec<(String, String)> = table
            .lines()
            .skip_while(|l| !l.starts_with("| Method"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                Some((
                    cells.get(1)?.to_string(),
                    cells.get(2)?.trim_matches('`').to_string(),
                ))
            })
            .collect();
        assert!(rows.len() >= 20, "{rows:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::images::store::Store::open(
            &dir.path().join("images"),
            crate::images::layer::sandbox::Unpacker::new("/proc/self/exe", None),
        )
        .expect("a store");
        let limits = ServerLimits {
            images: Some(Arc::new(store)),
            state_dir: Some(dir.path().to_path_buf()),
            log_dir: Some(dir.path().to_path_buf()),
            events: Some(Arc::new(crate::supervisor::events::EventHub::new())),
            ..ServerLimits::default()
        };
        let srv = start(limits, fake_supervisor());
        let sock = srv.sock.clone();
        let answers = blocking(move || {
            rows.iter()
                .map(|(method, path)| {
                    let path = path.replace("{name}", "web").replace("{ref}", "x");
                    let req = format!(
                        "{method} {path}?follow=false HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                    );
                    (format!("{method} {path}"), raw_exchange(&sock, req.as_bytes()))
                })
                .collect::<Vec<_>>()
        })
        .await;
        for (route, answer) in answers {
            let status = answer.get(9..12).unwrap_or_default();
            assert!(
                status != "405" && !answer.contains("no such endpoint"),
                "{route}: {answer}"
            );
        }
    }

    #[tokio::test]
    async fn curl_can_talk_to_the_socket() {
        let srv = start(ServerLimits::default(), fake_supervisor());
        let sock = srv.sock.clone();
        let out = blocking(move || {
            let curl = |args: &[&str]| {
                std::process::Command::new("curl")
                    .args(["-sS", "--max-time", "10", "--unix-socket"])
                    .arg(&sock)
                    .args(args)
                    .output()
            };
            Some((
                curl(&["http://localhost/v1/status"]).ok()?,
                curl(&["-X", "POST", "http://localhost/v1/workloads/web/restart"]).ok()?,
            ))
        })
        .await;
        let Some((status, restart)) = out else {
            crate::testing::report_skip("curl_can_talk_to_the_socket", "curl is not installed");
            return;
        };
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        let parsed: api::StatusResponse = serde_json::from_slice(&status.stdout).expect("json");
        assert_eq!(parsed.workloads.len(), 2);
        let ack: api::Ack = serde_json::from_slice(&restart.stdout).expect("json");
        assert_eq!(ack.message, "restarting web");
    }
}
