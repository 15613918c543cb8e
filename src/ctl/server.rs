//! The control socket server: binds the Unix socket safely and answers HTTP requests by asking
//! the supervisor over a channel.
//!
//! Every connection is bounded in number ([`ServerLimits::max_connections`]), size
//! ([`ServerLimits::max_request_bytes`]) and time ([`ServerLimits::request_timeout`]), and the
//! peer's credentials are checked before a byte of the request is read, so a slow or hostile
//! local client cannot exhaust superd (CVE-2020-15257, CVE-2022-31030).

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::access::{self, Access, Admission, Gate};
use super::fdio::{self, FdSlot, FdStream};
use super::http::{route, to_http, HttpError, HttpRequest, HttpResponse};
use crate::api;

/// How the server hands decoded requests to the supervisor; it answers on the oneshot.
pub type ApiTx = mpsc::Sender<(api::Request, oneshot::Sender<api::Response>)>;

/// Bounds on what one client may cost the daemon.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Largest request (head plus body) accepted; larger ones get 413.
    pub max_request_bytes: usize,
    /// Deadline for reading the request, getting the supervisor's answer and writing the reply.
    pub request_timeout: Duration,
    /// Connections served at once per pool (root and superd's euid have one, group members
    /// share the other); further ones get an immediate 503 (root: its oldest idle one does).
    pub max_connections: usize,
    /// Besides root and superd's own euid, members of this group (primary or supplementary)
    /// may connect, for read-only requests.
    pub allowed_group: Option<u32>,
    /// The workload log directory, for `GET /v1/workloads/{name}/logs`.
    pub log_dir: Option<PathBuf>,
    /// The state directory, for `/v1/volumes…`.
    pub state_dir: Option<PathBuf>,
    /// The image store, for `/v1/images…`.
    pub images: Option<Arc<crate::images::store::Store>>,
    /// The puller, for `POST /v1/images/pull`.
    #[cfg(feature = "registry")]
    pub puller: Option<Arc<crate::images::pull::Puller>>,
    /// The supervisor's event stream, for `GET /v1/events`.
    pub events: Option<Arc<crate::supervisor::events::EventHub>>,
    /// When superd started, for `/metrics`.
    pub started: std::time::SystemTime,
}

impl ServerLimits {
    /// superd's own figures for `/metrics`.
    pub fn own_figures(&self) -> super::metrics::Own {
        super::metrics::Own {
            rss_bytes: super::metrics::own_rss(),
            start_time: self
                .started
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
            events: self.events.as_ref().map_or(0, |e| e.recorded()),
        }
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(5),
            max_connections: 32,
            allowed_group: None,
            log_dir: None,
            images: None,
            state_dir: None,
            #[cfg(feature = "registry")]
            puller: None,
            events: None,
            started: std::time::SystemTime::now(),
        }
    }
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The socket's directory could not be created or inspected.
    #[error("preparing control socket directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The socket's directory could be tampered with by others.
    #[error("control socket directory {path} is unsafe: {why}; refusing to use it")]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A live superd already answers on the socket.
    #[error("another superd is listening on {}", path.display())]
    AlreadyListening {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is in the way.
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The existing socket could not be checked or removed.
    #[error("replacing stale control socket {}: {source}", path.display())]
    Stale {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// bind(2), chmod or chown on the socket failed.
    #[error("binding control socket {}: {source}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The listener could not be registered with tokio.
    #[error("registering control socket with the async runtime: {0}")]
    Listen(#[source] io::Error),
}

/// Binds the control socket at `path` (a path socket, never abstract).
///
/// Creates the parent directory (last component only) with mode 0700, or 0711 when `group` is
/// set; refuses an existing parent that is group/world-writable or owned by someone other than
/// root or us. Replaces a stale socket, refuses to replace a live one or a non-socket. The socket
/// ends up 0600, or 0660 owned by `group`. The returned listener is non-blocking, ready for
/// [`serve`].
pub fn bind(path: &Path, group: Option<u32>) -> Result<StdUnixListener, CtlError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    prepare_dir(parent, group)?;
    remove_stale(path)?;
    let bind_err = |source| CtlError::Bind {
        path: path.to_owned(),
        source,
    };
    let listener = StdUnixListener::bind(path).map_err(bind_err)?;
    // Until the chmod below the socket has umask-derived permissions; a peer that connects in
    // that window is still subject to the SO_PEERCRED check in `serve`.
    let finish = || -> io::Result<()> {
        if let Some(gid) = group {
            std::os::unix::fs::chown(path, None, Some(gid))?;
        }
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        listener.set_nonblocking(true)
    };
    if let Err(e) = finish() {
        let _ = std::fs::remove_file(path);
        return Err(bind_err(e));
    }
    Ok(listener)
}

/// Creates `dir` if missing (0700/0711) or checks an existing one is not writable by others.
fn prepare_dir(dir: &Path, group: Option<u32>) -> Result<(), CtlError> {
    let dir_err = |source| CtlError::Dir {
        path: dir.to_owned(),
        source,
    };
    let mode = if group.is_some() { 0o711 } else { 0o700 };
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        // Created by us: force the mode past the umask (0711 must stay traversable).
        Ok(()) => {
            return std::fs::set_permissions(dir, PermissionsExt::from_mode(mode)).map_err(dir_err)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(dir_err(e)),
    }
    let meta = std::fs::metadata(dir).map_err(dir_err)?;
    let unsafe_dir = |why: String| CtlError::UnsafeDir {
        path: dir.to_owned(),
        why,
    };
    if !meta.is_dir() {
        return Err(unsafe_dir("not a directory".into()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "mode {:04o} is group- or world-writable",
            meta.mode() & 0o7777
        )));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(unsafe_dir(format!(
            "owned by uid {}, not root or superd (uid {euid})",
            meta.uid()
        )));
    }
    Ok(())
}

/// Removes a socket at `path` that nobody answers on; errors for a live one or a non-socket.
fn remove_stale(path: &Path) -> Result<(), CtlError> {
    let stale_err = |source| CtlError::Stale {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(stale_err(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(CtlError::NotASocket {
            path: path.to_owned(),
        });
    }
    match StdUnixStream::connect(path) {
        Ok(_) => Err(CtlError::AlreadyListening {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale control socket");
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(stale_err(e)),
                _ => Ok(()),
            }
        }
        Err(e) => Err(stale_err(e)),
    }
}

/// Serves the control API on `listener` until the task is dropped or aborted.
///
/// Each request is sent on `tx` with a oneshot for the supervisor's [`api::Response`]. Only
/// returns early if the listener cannot be registered with tokio; accept errors are logged and
/// retried.
pub async fn serve(
    listener: StdUnixListener,
    limits: ServerLimits,
    tx: ApiTx,
) -> Result<(), CtlError> {
    listener.set_nonblocking(true).map_err(CtlError::Listen)?;
    let listener = UnixListener::from_std(listener).map_err(CtlError::Listen)?;
    let gate = Gate::new(limits.max_connections);
    let limits = Arc::new(limits);
    let own_euid = nix::unistd::geteuid().as_raw();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Who it is decides the pool (and a refusal costs no task): root always gets in.
        let peer = access::peer_of(&stream);
        let access = match &peer {
            Ok(p) => access::authorize(p, own_euid, limits.allowed_group),
            Err(_) => Access::Denied,
        };
        if access == Access::Denied {
            match &peer {
                Ok(p) => tracing::warn!(
                    uid = p.uid,
                    gid = p.gid,
                    pid = p.pid,
                    "control connection refused"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot read control peer credentials"),
            }
            let _ = stream.try_write(&HttpResponse::error(403, "permission denied").to_bytes());
            continue;
        }
        let uid = peer.map(|p| p.uid).unwrap_or(u32::MAX);
        let Some(admission) = gate.admit(access, uid).await else {
            // Never await for an over-limit client: one non-blocking write into the fresh
            // socket buffer, then close.
            let busy = HttpResponse::error(503, "superd is busy: too many control connections");
            let _ = stream.try_write(&busy.to_bytes());
            continue;
        };
        let (limits, tx) = (Arc::clone(&limits), tx.clone());
        tokio::spawn(async move {
            handle_connection(stream, &limits, &tx, access, &admission).await;
            drop(admission);
        });
    }
}

/// The body of every answer: whole, or streamed (events, logs -f).
pub type Body = http_body_util::combinators::UnsyncBoxBody<hyper::body::Bytes, io::Error>;

/// A whole JSON answer as hyper sends it.
pub(super) fn to_hyper(resp: HttpResponse) -> hyper::Response<Body> {
    use http_body_util::BodyExt;
    let mut builder = hyper::Response::builder()
        .status(resp.status)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(allow) = resp.allow {
        builder = builder.header(hyper::header::ALLOW, allow);
    }
    let body = http_body_util::Full::new(hyper::body::Bytes::from(resp.body))
        .map_err(|never| match never {})
        .boxed_unsync();
    builder.body(body).unwrap_or_else(|e| {
        tracing::error!("building a control response: {e}");
        hyper::Response::new(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
    })
}

/// A 200 answer streaming `lines` as newline-delimited JSON (events, an exec's progress).
pub(super) fn ndjson(
    lines: impl futures_util::Stream<Item = hyper::body::Bytes> + Send + 'static,
) -> hyper::Response<Body> {
    use futures_util::StreamExt;
    use http_body_util::BodyExt;
    let body = BodyExt::boxed_unsync(http_body_util::StreamBody::new(
        lines.map(|b| Ok::<_, io::Error>(hyper::body::Frame::data(b))),
    ));
    hyper::Response::builder()
        .status(200)
        .header(hyper::header::CONTENT_TYPE, "application/x-ndjson")
        .body(body)
        .unwrap_or_else(|_| to_hyper(HttpResponse::error(500, "building a stream")))
}

/// Writes a whole answer straight to the socket, outside any HTTP exchange (a refusal before
/// a request, a request that never came or was too large): one non-blocking write, then the
/// connection closes.
fn refuse(raw: &StdUnixStream, resp: &HttpResponse) {
    use std::io::Write as _;
    let _ = (&*raw).write(&resp.to_bytes());
}

/// Serves one admitted connection with hyper: one request and one response (no keep-alive),
/// the request head and body within [`ServerLimits::max_request_bytes`] and
/// [`ServerLimits::request_timeout`], the answer within its own deadline (an image import
/// has a deadline of its own, [`super::images::IMPORT_TIMEOUT`]).
async fn handle_connection(
    stream: UnixStream,
    limits: &Arc<ServerLimits>,
    tx: &ApiTx,
    access: Access,
    admission: &Admission,
) {
    use std::os::fd::AsFd;
    // A second handle on the socket for answers sent outside an HTTP exchange.
    let raw = match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => StdUnixStream::from(fd),
        Err(e) => {
            tracing::warn!(error = %e, "duplicating a control connection");
            return;
        }
    };
    let slot = FdSlot::default();
    let io = FdStream::new(stream, Arc::clone(&slot), limits.max_request_bytes);
    let read = io.read_counter();
    let head_in = Arc::new(tokio::sync::Notify::new());
    let finish_by = Arc::new(std::sync::Mutex::new(None::<tokio::time::Instant>));
    let service = {
        let (limits, tx, read) = (Arc::clone(limits), tx.clone(), Arc::clone(&read));
        let (head_in, finish_by) = (Arc::clone(&head_in), Arc::clone(&finish_by));
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            head_in.notify_one();
            let (limits, tx, read, slot) = (
                Arc::clone(&limits),
                tx.clone(),
                Arc::clone(&read),
                Arc::clone(&slot),
            );
            let finish_by = Arc::clone(&finish_by);
            async move {
                let resp = answer(req, &limits, &tx, access, &slot, &read, &finish_by).await;
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(limits.max_request_bytes.saturating_add(1).max(8192))
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    let read_by = tokio::time::sleep(limits.request_timeout);
    tokio::pin!(read_by);
    // Until the head is in, a slow client gets 408 and an idle one may be evicted; then the
    // answer must be written by the handler's deadline plus the request timeout.
    loop {
        tokio::select! {
            r = &mut conn => {
                if r.is_err() && read.load(std::sync::atomic::Ordering::Relaxed) > limits.max_request_bytes {
                    refuse(&raw, &HttpResponse::error(413, HttpError::TooLarge { limit: limits.max_request_bytes }.to_string()));
                } else if let Err(e) = r {
                    tracing::debug!(error = %e, "control connection");
                }
                return;
            }
            () = &mut read_by => {
                let by = *finish_by.lock().unwrap_or_else(|p| p.into_inner());
                match by {
                    None => refuse(&raw, &HttpResponse::error(408, "request not received in time")),
                    Some(t) if t > tokio::time::Instant::now() => {
                        read_by.as_mut().reset(t);
                        continue;
                    }
                    Some(_) => tracing::debug!("control answer not written in time"),
                }
                return;
            }
            () = admission.evicted.notified(), if finish_by.lock().unwrap_or_else(|p| p.into_inner()).is_none() => {
                refuse(&raw, &HttpResponse::error(503, "superd is busy: this idle connection made room for a new one"));
                return;
            }
            () = head_in.notified() => admission.request_read(),
        }
    }
}

/// Answers one request: its body read within the size limit, then the routes answered beside
/// the supervisor (logs, volumes, images), then the supervisor's.
async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    limits: &ServerLimits,
    tx: &ApiTx,
    access: Access,
    slot: &FdSlot,
    read: &std::sync::atomic::AtomicUsize,
    finish_by: &std::sync::Mutex<Option<tokio::time::Instant>>,
) -> hyper::Response<Body> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let mut req = HttpRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        body: Vec::new(),
    };
    if req.path == "/metrics" {
        if req.method != "GET" {
            let mut resp = HttpResponse::error(
                405,
                format!("{} not allowed on /metrics; use GET", req.method),
            );
            resp.allow = Some("GET");
            return to_hyper(resp);
        }
        return match tokio::time::timeout(
            limits.request_timeout,
            super::metrics::collect(tx, limits.own_figures()),
        )
        .await
        {
            Ok(Ok(text)) => {
                use http_body_util::BodyExt;
                let body = http_body_util::Full::new(hyper::body::Bytes::from(text))
                    .map_err(|never| match never {})
                    .boxed_unsync();
                hyper::Response::builder()
                    .status(200)
                    .header(hyper::header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)
                    .body(body)
                    .unwrap_or_else(|_| to_hyper(HttpResponse::error(500, "building /metrics")))
            }
            Ok(Err(e)) => to_hyper(HttpResponse::error(503, e)),
            Err(_) => to_hyper(HttpResponse::error(503, "superd did not answer in time")),
        };
    }
    if req.path == "/v1/events" {
        // A stream: it ends when the client goes away.
        *finish_by.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400));
        return super::events::answer(&req, limits.events.as_ref());
    }
    let deadline = if super::images::is_import(&req) {
        super::images::IMPORT_TIMEOUT
    } else {
        limits.request_timeout
    };
    *finish_by.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(tokio::time::Instant::now() + deadline + limits.request_timeout);
    let body = http_body_util::Limited::new(body, limits.max_request_bytes);
    match tokio::time::timeout(limits.request_timeout, body.collect()).await {
        Ok(Ok(b)) => req.body = b.to_bytes().to_vec(),
        Ok(Err(_))
            if read.load(std::sync::atomic::Ordering::Relaxed) > limits.max_request_bytes =>
        {
            let e = HttpError::TooLarge {
                limit: limits.max_request_bytes,
            };
            return to_hyper(HttpResponse::error(413, e.to_string()));
        }
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            let e = HttpError::TooLarge {
                limit: limits.max_request_bytes,
            };
            return to_hyper(HttpResponse::error(413, e.to_string()));
        }
        Ok(Err(e)) => {
            return to_hyper(HttpResponse::error(
                400,
                format!("reading the request body: {e}"),
            ))
        }
        Err(_) => {
            return to_hyper(HttpResponse::error(
                408,
                "request body not received in time",
            ))
        }
    }
    if let Some(name) = super::exec::target(&req.path) {
        // A stream: it ends with the command.
        *finish_by.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400));
        return super::exec::answer(&req, name, fdio::take_all(slot), tx, access).await;
    }
    let handle = async {
        if let Some(r) = logs_request(&req, limits.log_dir.as_deref()).await {
            return r;
        }
        if let Some(r) = super::volumes::request(&req, limits.state_dir.as_ref(), access, tx).await
        {
            return r;
        }
        if let Some(r) = super::images::request(&req, fdio::take(slot), limits, access, tx).await {
            return r;
        }
        dispatch(&req, tx, access, limits.allowed_group).await
    };
    to_hyper(match tokio::time::timeout(deadline, handle).await {
        Ok(r) => r,
        Err(_) => HttpResponse::error(503, "superd did not answer in time"),
    })
}

/// `GET /v1/workloads/{name}/logs`, answered from the log files (read-only: group members
/// may ask); `None` for any other request.
async fn logs_request(req: &HttpRequest, dir: Option<&Path>) -> Option<HttpResponse> {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let ["v1", "workloads", name, "logs"] = segments.as_slice() else {
        return None;
    };
    if req.method != "GET" {
        let mut resp = HttpResponse::error(
            405,
            format!("{} not allowed on {}; use GET", req.method, req.path),
        );
        resp.allow = Some("GET");
        return Some(resp);
    }
    // The name becomes a file name: only a valid workload name (no `/`, no `..`).
    let Some(name) =
        super::http::decode_segment(name).filter(|n| crate::manifest::Name::new(n).is_ok())
    else {
        return Some(HttpResponse::error(404, "invalid workload name"));
    };
    let q = match super::logs::parse_query(&req.query) {
        Ok(q) => q,
        Err(e) => return Some(HttpResponse::error(400, e)),
    };
    let Some(dir) = dir.map(Path::to_path_buf) else {
        return Some(HttpResponse::error(404, "this superd keeps no logs"));
    };
    let n = name.clone();
    let read = tokio::task::spawn_blocking(move || super::logs::read_logs(&dir, &n, &q)).await;
    Some(match read {
        Ok(Some(logs)) => HttpResponse::json(200, &logs),
        Ok(None) => HttpResponse::error(404, format!("no log for workload {name}")),
        Err(e) => HttpResponse::error(500, format!("reading the log: {e}")),
    })
}

/// Every workload's status, straight from the supervisor (empty when it is gone), for the
/// routes answered beside it (images, volumes) that need to know who uses what.
pub(super) async fn workload_statuses(tx: &ApiTx) -> Vec<crate::api::WorkloadStatus> {
    let (reply_tx, reply_rx) = oneshot::channel();
    if tx
        .send((crate::api::Request::Status { name: None }, reply_tx))
        .await
        .is_err()
    {
        return Vec::new();
    }
    match reply_rx.await {
        Ok(crate::api::Response::Status(s)) => s.workloads,
        _ => Vec::new(),
    }
}

/// Routes a request, checks that the peer may make it, asks the supervisor and turns its
/// answer into HTTP.
async fn dispatch(
    req: &HttpRequest,
    tx: &ApiTx,
    access: Access,
    group: Option<u32>,
) -> HttpResponse {
    let request = match route(&req.method, &req.path) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if access != Access::Admin && !request.is_read_only() {
        let group = group
            .map(|g| format!(" (members of group {g} may only read)"))
            .unwrap_or_default();
        return HttpResponse::error(
            403,
            format!("permission denied: {} needs root{group}", request.verb()),
        );
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    if tx.send((request, reply_tx)).await.is_err() {
        return HttpResponse::error(503, "superd is shutting down");
    }
    match reply_rx.await {
        Ok(resp) => to_http(resp),
        Err(_) => HttpResponse::error(503, "superd is shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").mode() & 0o7777
    }

    #[test]
    fn bind_creates_private_dir_and_0600_socket() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sock = tmp.path().join("run").join("superd.sock");
        let _l = bind(&sock, None).expect("bind");
        assert_eq!(mode(&tmp.path().join("run")), 0o700);
        assert!(std::fs::symlink_metadata(&sock)
            .expect("stat")
            .file_type()
            .is_socket());
        assert_eq!(mode(&sock), 0o600);
    }

    #[test]
    fn bind_with_group_uses_0711_dir_and_0660_socket() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sock = tmp.path().join("run").join("s.sock");
        let gid = nix::unistd::getegid().as_raw(); // a group we may chown to
        let _l = bind(&sock, Some(gid)).expect("bind");
        assert_eq!(mode(&tmp.path().join("run")), 0o711);
        assert_eq!(mode(&sock), 0o660);
        assert_eq!(std::fs::metadata(&sock).expect("stat").gid(), gid);
    }

    #[test]
    fn bind_refuses_live_listener_and_replaces_stale_socket() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sock = tmp.path().join("s.sock");
        let live = bind(&sock, None).expect("first bind");
        let err = bind(&sock, None).expect_err("second bind must fail");
        assert!(matches!(err, CtlError::AlreadyListening { .. }), "{err}");
        assert!(err.to_string().contains("another superd is listening on"));
        drop(live); // the file stays behind: now a stale socket
        assert!(sock.exists());
        let _again = bind(&sock, None).expect("stale socket is replaced");
        StdUnixStream::connect(&sock).expect("new listener answers");
    }

    #[test]
    fn bind_refuses_non_socket_and_unsafe_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("s.sock");
        std::fs::write(&file, b"keep me").expect("write");
        let err = bind(&file, None).expect_err("not a socket");
        assert!(matches!(err, CtlError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read(&file).expect("read"), b"keep me");

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = bind(&open.join("s.sock"), None).expect_err("world-writable dir");
        assert!(matches!(err, CtlError::UnsafeDir { .. }), "{err}");

        let deep = tmp.path().join("a").join("b").join("s.sock");
        let err = bind(&deep, None).expect_err("only the last component is created");
        assert!(matches!(err, CtlError::Dir { .. }), "{err}");
    }
}
