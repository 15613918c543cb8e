//! `GET /v1/events`: the supervisor's event stream as newline-delimited JSON, the ring's
//! events since `since` first, then live ones until the client goes away (`follow=false`:
//! only the ring's). Query: `since=RFC3339`, `name=N` and `kind=K` (repeatable),
//! `follow=true|false`. Read-only: members of `--socket-group` may ask.

use super::http::{decode_segment, HttpRequest, HttpResponse};
use super::server::Body;
use crate::api::{Event, EventKind};
use crate::supervisor::events::{EventHub, Filter};
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// The parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// What to send.
    pub filter: Filter,
    /// Keep sending live events.
    pub follow: bool,
}

/// Parses the query string.
pub fn parse_query(q: &str) -> Result<EventQuery, String> {
    let mut out = EventQuery {
        filter: Filter::default(),
        follow: true,
    };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode_segment(v).ok_or_else(|| format!("bad value for {k}"))?;
        match k {
            "since" => {
                let t = humantime::parse_rfc3339_weak(&v)
                    .map_err(|_| format!("since: `{v}` is not an RFC 3339 time"))?;
                out.filter.since = Some(t);
            }
            "name" => out.filter.names.push(v),
            "kind" => out.filter.kinds.push(kind(&v)?),
            "follow" => {
                out.follow = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("follow: `{v}` is not true or false")),
                }
            }
            other => return Err(format!("unknown parameter `{other}`")),
        }
    }
    Ok(out)
}

/// An event kind by its word.
pub fn kind(word: &str) -> Result<EventKind, String> {
    use EventKind::*;
    [State, Exit, Health, Manifest, Image]
        .into_iter()
        .find(|k| k.as_str() == word)
        .ok_or_else(|| {
            format!("unknown event kind `{word}`: expected state, exit, health, manifest or image")
        })
}

fn line(e: &Event) -> hyper::body::Bytes {
    let mut bytes = serde_json::to_vec(e).unwrap_or_default();
    bytes.push(b'\n');
    hyper::body::Bytes::from(bytes)
}

/// The answer to `GET /v1/events`.
pub fn answer(req: &HttpRequest, hub: Option<&Arc<EventHub>>) -> hyper::Response<Body> {
    let whole = |resp: HttpResponse| super::server::to_hyper(resp);
    if req.method != "GET" {
        let mut resp = HttpResponse::error(
            405,
            format!("{} not allowed on /v1/events; use GET", req.method),
        );
        resp.allow = Some("GET");
        return whole(resp);
    }
    let q = match parse_query(&req.query) {
        Ok(q) => q,
        Err(e) => return whole(HttpResponse::error(400, e)),
    };
    let Some(hub) = hub else {
        return whole(HttpResponse::error(404, "this superd keeps no events"));
    };
    let (replay, live) = hub.subscribe(&q.filter);
    let replayed = futures_util::stream::iter(replay.into_iter().map(|e| line(&e)));
    let filter = q.filter.clone();
    let live = futures_util::stream::unfold(live, move |mut rx| {
        let filter = filter.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(e) if filter.matches(&e) => return Some((line(&e), rx)),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        let lost = Event {
                            seq: 0,
                            time: humantime::format_rfc3339_millis(std::time::SystemTime::now())
                                .to_string(),
                            kind: EventKind::Lost,
                            workload: None,
                            state: None,
                            exit: None,
                            health: None,
                            message: Some(format!(
                                "{n} events were dropped: this client read too slowly"
                            )),
                        };
                        return Some((line(&lost), rx));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    if q.follow {
        super::server::ndjson(replayed.chain(live))
    } else {
        super::server::ndjson(replayed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q =
            parse_query("since=2026-12-01T10%3A00%3A00Z&name=web&name=db&kind=exit&follow=false")
                .expect("valid");
        assert_eq!(q.filter.names, ["web", "db"]);
        assert_eq!(q.filter.kinds, [EventKind::Exit]);
        assert!(!q.follow && q.filter.since.is_some());
        assert!(parse_query("").expect("valid").follow);
        for bad in ["since=yesterday", "kind=boom", "follow=maybe", "colour=red"] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
    }
}
