//! `/v1/images…`: the image store through the daemon, its only writer.
//!
//! | request                              | answer                                        |
//! |--------------------------------------|-----------------------------------------------|
//! | `GET /v1/images`                     | every named image, with the workloads using it |
//! | `GET /v1/images/{ref}`               | one image (`inspect`)                         |
//! | `DELETE /v1/images/{ref}`            | drop a name; refused while a workload uses it |
//! | `POST /v1/images/pull?ref=R[&platform=P]` | pull from a registry (re-resolves a tag) |
//! | `GET /v1/images/pull?ref=R`          | that pull's progress, layer by layer          |
//! | `POST /v1/images/prune[?dry_run=1]`  | garbage-collect now (see [`crate::images::gc`]) |
//! | `POST /v1/images/import?name=N` + fd | import the archive read from the fd the client passed with `SCM_RIGHTS` (its file or its stdin), so nothing is copied through the socket |
//!
//! Reading is allowed to `--socket-group` members; import and removal need root.

use super::access::Access;
use super::http::{self, HttpRequest, HttpResponse};
use super::server::ApiTx;
use crate::api::{self, ImageRow, ImagesResponse, ImportResponse};
use crate::images::reference::ImageName;
use crate::images::store::{Store, StoreError};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long an import may wait for its next byte before it is abandoned.
pub const IMPORT_IDLE: Duration = Duration::from_secs(60);
/// The longest an import may take.
pub const IMPORT_TIMEOUT: Duration = Duration::from_secs(3600);

/// One import at a time: the others wait their turn.
static IMPORTS: Semaphore = Semaphore::const_new(1);

/// True for the long requests (served with [`IMPORT_TIMEOUT`]).
pub fn is_import(req: &HttpRequest) -> bool {
    req.method == "POST" && (req.path == "/v1/images/import" || req.path == "/v1/images/pull")
}

/// Answers `/v1/images…`; `None` for any other path.
pub async fn request(
    req: &HttpRequest,
    fd: Option<OwnedFd>,
    limits: &super::server::ServerLimits,
    access: Access,
    tx: &ApiTx,
) -> Option<HttpResponse> {
    let store = limits.images.as_ref();
    let rest = req.path.strip_prefix("/v1/images")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let Some(store) = store.cloned() else {
        return Some(HttpResponse::error(404, "this superd has no image store"));
    };
    let seg = rest.trim_start_matches('/');
    let write = req.method != "GET";
    if write && access != Access::Admin {
        return Some(HttpResponse::error(
            403,
            "permission denied: changing the image store needs root",
        ));
    }
    Some(match (req.method.as_str(), seg) {
        ("GET", "") => list(store, tx).await,
        ("POST", "import") => {
            let r = import(store, fd, &req.query, tx).await;
            record(limits, "import", &r);
            r
        }
        ("POST", "pull") => {
            let r = pull(limits, &req.query, tx).await;
            record(limits, "pull", &r);
            r
        }
        ("GET", "pull") => pull_progress(limits, &req.query),
        ("POST", "prune") => prune(store, &req.query, tx).await,
        ("GET", r) if !r.is_empty() && !r.contains('/') => inspect(store, r, tx).await,
        ("DELETE", r)
            if !r.is_empty() && !r.contains('/') && !matches!(r, "import" | "pull" | "prune") =>
        {
            remove(store, r, tx).await
        }
        _ => HttpResponse::error(
            404,
            format!("no such endpoint: {} {}", req.method, req.path),
        ),
    })
}

fn decode_ref(seg: &str) -> Result<ImageName, HttpResponse> {
    let r = http::decode_segment(seg)
        .ok_or_else(|| HttpResponse::error(400, "invalid image reference encoding"))?;
    ImageName::parse(&r).map_err(|e| HttpResponse::error(400, e))
}

/// Workload → image reference, from the supervisor (every manifest, also the last good spec
/// of a broken one).
async fn image_users(tx: &ApiTx) -> Vec<(String, String)> {
    super::server::workload_statuses(tx)
        .await
        .into_iter()
        .filter_map(|w| w.image.map(|i| (w.name, i)))
        .collect()
}

/// Manifest digest → the workloads whose image resolves to it.
fn users_by_digest(
    store: &Store,
    users: &[(String, String)],
) -> BTreeMap<crate::images::digest::Digest, Vec<String>> {
    let mut out: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for (w, r) in users {
        if let Ok(Ok(res)) = ImageName::parse(r).map(|n| store.resolve(&n)) {
            out.entry(res.manifest).or_default().push(w.clone());
        }
    }
    out
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HttpResponse> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HttpResponse::error(500, format!("image store task: {e}")))
}

async fn list(store: Arc<Store>, tx: &ApiTx) -> HttpResponse {
    let users = image_users(tx).await;
    let rows = blocking(move || {
        let by = users_by_digest(&store, &users);
        store
            .list()
            .into_iter()
            .map(|info| ImageRow {
                used_by: by.get(&info.digest).cloned().unwrap_or_default(),
                info,
            })
            .collect::<Vec<_>>()
    })
    .await;
    match rows {
        Ok(images) => HttpResponse::json(200, &ImagesResponse { images }),
        Err(r) => r,
    }
}

async fn inspect(store: Arc<Store>, seg: &str, tx: &ApiTx) -> HttpResponse {
    let name = match decode_ref(seg) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let users = image_users(tx).await;
    let row = blocking(move || {
        let res = store.resolve(&name)?;
        let by = users_by_digest(&store, &users);
        let info = store
            .list()
            .into_iter()
            .find(|i| i.digest == res.manifest)
            .ok_or_else(|| StoreError::Missing(name.to_string()))?;
        Ok::<_, StoreError>(ImageRow {
            used_by: by.get(&info.digest).cloned().unwrap_or_default(),
            info,
        })
    })
    .await;
    match row {
        Ok(Ok(row)) => HttpResponse::json(200, &row),
        Ok(Err(e)) => store_error(e),
        Err(r) => r,
    }
}

async fn remove(store: Arc<Store>, seg: &str, tx: &ApiTx) -> HttpResponse {
    let name = match decode_ref(seg) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let users = image_users(tx).await;
    let store_for_gc = Arc::clone(&store);
    let res = blocking(move || {
        let target = store.resolve(&name).ok().map(|r| r.manifest);
        if let Some(d) = &target {
            let by = users_by_digest(&store, &users);
            if let Some(ws) = by.get(d) {
                return Err(HttpResponse::error(
                    409,
                    format!(
                        "image {name} is in use by {}: change or remove those manifests first",
                        ws.join(", ")
                    ),
                ));
            }
        }
        match store.remove_ref(&name.name) {
            Ok(true) => Ok(format!("removed {}", name.name)),
            Ok(false) => Err(HttpResponse::error(
                404,
                format!("no image named {}", name.name),
            )),
            Err(e) => Err(store_error(e)),
        }
    })
    .await;
    match res {
        Ok(Ok(message)) => {
            // What the name kept alive goes now (GC runs on events, not on a timer).
            if let Err(r) = collect_now(store_for_gc, tx, false).await {
                return r;
            }
            HttpResponse::json(200, &api::Ack { message })
        }
        Ok(Err(r)) | Err(r) => r,
    }
}

/// Runs (or, with `dry_run`, plans) a garbage collection against the manifests loaded now.
pub async fn collect_now(
    store: Arc<Store>,
    tx: &ApiTx,
    dry_run: bool,
) -> Result<crate::images::gc::GcReport, HttpResponse> {
    let refs: Vec<String> = image_users(tx).await.into_iter().map(|(_, r)| r).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let res = blocking(move || {
        if dry_run {
            Ok(crate::images::gc::plan(&store, &refs, now))
        } else {
            crate::images::gc::collect(&store, &refs, now)
        }
    })
    .await?;
    res.map_err(store_error)
}

async fn prune(store: Arc<Store>, query: &str, tx: &ApiTx) -> HttpResponse {
    let dry_run = match query {
        "" => false,
        "dry_run=1" | "dry_run=true" => true,
        q => return HttpResponse::error(400, format!("unknown parameter `{q}`")),
    };
    match collect_now(store, tx, dry_run).await {
        Ok(report) => HttpResponse::json(200, &report),
        Err(r) => r,
    }
}

async fn import(store: Arc<Store>, fd: Option<OwnedFd>, query: &str, tx: &ApiTx) -> HttpResponse {
    let Some(fd) = fd else {
        return HttpResponse::error(
            400,
            "an import sends the archive's file descriptor with the request (SCM_RIGHTS)",
        );
    };
    let mut name = None;
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("name", v)) => match http::decode_segment(v) {
                Some(v) => name = Some(v),
                None => return HttpResponse::error(400, "invalid name encoding"),
            },
            _ => return HttpResponse::error(400, format!("unknown parameter `{kv}`")),
        }
    }
    let Ok(_turn) = IMPORTS.acquire().await else {
        return HttpResponse::error(503, "superd is shutting down");
    };
    let before = store.refs();
    let res = blocking(move || {
        let input = IdleReader {
            fd,
            idle: IMPORT_IDLE,
        };
        crate::images::import::import_stream(&store, input, name.as_deref())
    })
    .await;
    match res {
        Ok(Ok(images)) => {
            let moved: Vec<String> = images
                .iter()
                .flat_map(|i| {
                    i.names
                        .iter()
                        .filter(|n| before.get(*n).is_some_and(|r| r.digest != i.digest))
                })
                .cloned()
                .collect();
            let restarted = restart_tag_users(tx, &moved).await;
            HttpResponse::json(200, &ImportResponse { images, restarted })
        }
        Ok(Err(e)) => store_error(e),
        Err(r) => r,
    }
}

/// An `image` event for an import or pull that ended with `resp`: what it named, or why it
/// failed.
fn record(limits: &super::server::ServerLimits, what: &str, resp: &HttpResponse) {
    let Some(hub) = &limits.events else {
        return;
    };
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    let text = if resp.status == 200 {
        let images: Vec<String> = body["images"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| {
                        let names: Vec<&str> = i["names"]
                            .as_array()
                            .map(|n| n.iter().filter_map(|x| x.as_str()).collect())
                            .unwrap_or_default();
                        format!(
                            "{} as {}",
                            names.join(", "),
                            i["digest"].as_str().unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        format!("{what}: {}", images.join("; "))
    } else {
        format!(
            "{what} failed ({}): {}",
            resp.status,
            body["error"].as_str().unwrap_or("no reason given")
        )
    };
    hub.emit(api::EventKind::Image, None, |e| e.message = Some(text));
}

/// Restarts, at once, the workloads that name one of the tags `moved` (canonical names an
/// explicit import or pull just pointed elsewhere): a tag's image changes when the operator
/// says so, never later at some crash's restart. Returns the workloads restarted.
async fn restart_tag_users(tx: &ApiTx, moved: &[String]) -> Vec<String> {
    let mut restarted = Vec::new();
    if moved.is_empty() {
        return restarted;
    }
    for (workload, r) in image_users(tx).await {
        let same_tag =
            ImageName::parse(&r).is_ok_and(|n| n.digest.is_none() && moved.contains(&n.name));
        if !same_tag {
            continue;
        }
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let req = api::Request::Restart {
            name: workload.clone(),
        };
        if tx.send((req, reply_tx)).await.is_ok()
            && matches!(reply_rx.await, Ok(api::Response::Ack(_)))
        {
            restarted.push(workload);
        }
    }
    restarted
}

#[cfg(feature = "registry")]
async fn pull(limits: &super::server::ServerLimits, query: &str, tx: &ApiTx) -> HttpResponse {
    let Some(puller) = limits.puller.clone() else {
        return HttpResponse::error(501, "this superd does not pull images");
    };
    let store = limits.images.clone();
    let (reference, platform) = match pull_query(query) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let name = match ImageName::parse(&reference) {
        Ok(n) => n,
        Err(e) => return HttpResponse::error(400, e),
    };
    let before = store
        .as_ref()
        .and_then(|s| s.refs().get(&name.name).map(|r| r.digest.clone()));
    let img = match puller.pull(&reference, platform.as_ref()).await {
        Ok(img) => img,
        Err(crate::images::pull::PullError::Store(e)) => return store_error(e),
        Err(e) => return HttpResponse::error(502, crate::report::chain(&e)),
    };
    // The explicit pull moved a tag: the workloads that name the image by that tag are
    // restarted onto it now (never later, silently, at some crash's restart).
    let moved = if before.as_ref().is_some_and(|b| *b != img.digest) {
        vec![name.name.clone()]
    } else {
        Vec::new()
    };
    let restarted = restart_tag_users(tx, &moved).await;
    HttpResponse::json(
        200,
        &ImportResponse {
            images: vec![img],
            restarted,
        },
    )
}

/// `?ref=R[&platform=OS/ARCH[/VARIANT]]` of a pull request.
#[cfg(feature = "registry")]
fn pull_query(
    query: &str,
) -> Result<(String, Option<crate::images::image::Platform>), HttpResponse> {
    let (mut reference, mut platform) = (None, None);
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("ref", v)) => reference = http::decode_segment(v),
            Some(("platform", v)) => {
                let v = http::decode_segment(v).unwrap_or_default();
                platform = Some(v.parse().map_err(|e: String| HttpResponse::error(400, e))?);
            }
            _ => {
                return Err(HttpResponse::error(
                    400,
                    format!("unknown parameter `{kv}`"),
                ))
            }
        }
    }
    let reference = reference.ok_or_else(|| HttpResponse::error(400, "missing ?ref=IMAGE"))?;
    Ok((reference, platform))
}

/// `GET /v1/images/pull?ref=R`: how the last or running pull of R goes, layer by layer.
#[cfg(feature = "registry")]
fn pull_progress(limits: &super::server::ServerLimits, query: &str) -> HttpResponse {
    let Some(puller) = limits.puller.as_ref() else {
        return HttpResponse::error(501, "this superd does not pull images");
    };
    let reference = match pull_query(query) {
        Ok((r, _)) => r,
        Err(resp) => return resp,
    };
    match puller.progress(&reference) {
        Some(p) => HttpResponse::json(200, &p),
        None => HttpResponse::error(404, format!("no pull of {reference} since superd started")),
    }
}

#[cfg(not(feature = "registry"))]
fn pull_progress(_limits: &super::server::ServerLimits, _query: &str) -> HttpResponse {
    HttpResponse::error(501, "this build of superd cannot pull from a registry")
}

#[cfg(not(feature = "registry"))]
async fn pull(_limits: &super::server::ServerLimits, _query: &str, _tx: &ApiTx) -> HttpResponse {
    HttpResponse::error(501, "this build of superd cannot pull from a registry")
}

fn store_error(e: StoreError) -> HttpResponse {
    let status = match &e {
        StoreError::Missing(_) => 404,
        StoreError::Invalid(_) => 422,
        StoreError::DiskFull(_) => 507,
        StoreError::ReadOnly(..) => 409,
        StoreError::Locked(..) | StoreError::Io { .. } => 500,
    };
    HttpResponse::error(status, crate::report::chain(&e))
}

/// Reads a client's fd, giving up when no byte arrives for `idle` (a pipe nobody writes).
struct IdleReader {
    fd: OwnedFd,
    idle: Duration,
}

impl Read for IdleReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let ms = u16::try_from(self.idle.as_millis()).unwrap_or(u16::MAX);
        loop {
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no data for {} s", self.idle.as_secs()),
                    ))
                }
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        nix::unistd::read(&self.fd, buf).map_err(io::Error::from)
    }
}
