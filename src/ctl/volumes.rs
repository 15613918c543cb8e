//! `/v1/volumes…`: `GET /v1/volumes` lists the named volumes with the workloads whose
//! manifests mount them; `DELETE /v1/volumes/{name}` removes one and its data, refused while
//! a manifest mounts it. Removal needs root.

use super::access::Access;
use super::http::{self, HttpRequest, HttpResponse};
use super::server::ApiTx;
use crate::api;
use std::path::PathBuf;

/// Workload → the volumes it mounts, from the supervisor.
async fn users(tx: &ApiTx) -> Vec<(String, Vec<String>)> {
    super::server::workload_statuses(tx)
        .await
        .into_iter()
        .map(|w| (w.name, w.volumes))
        .collect()
}

/// Answers `/v1/volumes…`; `None` for any other path.
pub async fn request(
    req: &HttpRequest,
    state: Option<&PathBuf>,
    access: Access,
    tx: &ApiTx,
) -> Option<HttpResponse> {
    let rest = req.path.strip_prefix("/v1/volumes")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let Some(state) = state.cloned() else {
        return Some(HttpResponse::error(404, "this superd keeps no volumes"));
    };
    let seg = rest.trim_start_matches('/');
    let users = users(tx).await;
    let using = |name: &str| -> Vec<String> {
        users
            .iter()
            .filter(|(_, vs)| vs.iter().any(|v| v == name))
            .map(|(w, _)| w.clone())
            .collect()
    };
    Some(match (req.method.as_str(), seg) {
        ("GET", "") => {
            let mut volumes =
                match tokio::task::spawn_blocking(move || crate::runtime::volumes::list(&state))
                    .await
                {
                    Ok(v) => v,
                    Err(e) => return Some(HttpResponse::error(500, e.to_string())),
                };
            for v in &mut volumes {
                v.used_by = using(&v.name);
            }
            HttpResponse::json(200, &api::VolumesResponse { volumes })
        }
        ("DELETE", n) if !n.is_empty() && !n.contains('/') => {
            if access != Access::Admin {
                return Some(HttpResponse::error(
                    403,
                    "permission denied: volume rm needs root",
                ));
            }
            let Some(name) = http::decode_segment(n) else {
                return Some(HttpResponse::error(400, "invalid volume name encoding"));
            };
            let users = using(&name);
            if !users.is_empty() {
                return Some(HttpResponse::error(
                    409,
                    format!(
                        "volume {name} is in use by {}: change or remove those manifests first",
                        users.join(", ")
                    ),
                ));
            }
            let n2 = name.clone();
            match tokio::task::spawn_blocking(move || crate::runtime::volumes::remove(&state, &n2))
                .await
            {
                Ok(Ok(true)) => HttpResponse::json(
                    200,
                    &api::Ack {
                        message: format!("removed volume {name}"),
                    },
                ),
                Ok(Ok(false)) => HttpResponse::error(404, format!("no volume named {name}")),
                Ok(Err(e)) => HttpResponse::error(500, format!("removing volume {name}: {e}")),
                Err(e) => HttpResponse::error(500, e.to_string()),
            }
        }
        _ => HttpResponse::error(
            404,
            format!("no such endpoint: {} {}", req.method, req.path),
        ),
    })
}
