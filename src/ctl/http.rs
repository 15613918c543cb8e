//! The control API's requests and answers as the handlers see them, and their mapping to
//! [`api`] types: [`route`] (request side) and [`to_http`] (response side). hyper carries
//! them on the wire (see `server` and `client`); what is left here is pure: the whole answers
//! written outside an HTTP exchange (a refusal before a request), and the parser the client
//! reads such a refusal with.

use std::fmt::Write as _;

use crate::api;

/// The most headers a request or response may carry.
const MAX_HEADERS: usize = 32;

/// A complete request as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target without its query string, still percent-encoded.
    pub path: String,
    /// The query string (after `?`, without it), still percent-encoded.
    pub query: String,
    /// The body (exactly `Content-Length` bytes; empty when absent).
    pub body: Vec<u8>,
}

/// A complete response as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedResponse {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head plus the declared body exceed the size limit.
    #[error("request exceeds the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Malformed message.
    #[error("malformed HTTP message: {0}")]
    Malformed(String),
}

/// Parses a response from the bytes received so far.
///
/// `eof` says the peer closed the connection: a response without `Content-Length` then ends
/// there. Returns `Ok(None)` when more bytes are needed.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<ParsedResponse>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if eof => {
            return Err(HttpError::Malformed(
                "connection closed mid-response".into(),
            ))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    let status = resp
        .code
        .ok_or_else(|| HttpError::Malformed("no status code".into()))?;
    let rest = buf.get(head_len..).unwrap_or_default();
    let body = match body_length(resp.headers)? {
        Some(len) => match rest.get(..len) {
            Some(body) => body,
            None if eof => {
                return Err(HttpError::Malformed(format!(
                    "connection closed after {} of {len} body bytes",
                    rest.len()
                )))
            }
            None => return Ok(None),
        },
        None if eof => rest,
        None => return Ok(None),
    };
    Ok(Some(ParsedResponse {
        status,
        body: body.to_vec(),
    }))
}

/// The declared body length; chunked transfer coding is refused.
fn body_length(headers: &[httparse::Header<'_>]) -> Result<Option<usize>, HttpError> {
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Malformed(
                "Transfer-Encoding is not supported; send Content-Length".into(),
            ));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or_else(|| HttpError::Malformed("invalid Content-Length".into()))?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::Malformed("conflicting Content-Length".into()));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// A response the server is about to send. Always JSON, always `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The value of an `Allow` header (sent with 405).
    pub allow: Option<&'static str>,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with a JSON body serialized from `value`.
    pub fn json<T: serde::Serialize>(status: u16, value: &T) -> Self {
        // Serializing our own plain structs cannot fail; fall back to an error body regardless.
        let body = serde_json::to_vec(value)
            .unwrap_or_else(|_| br#"{"error":"failed to serialize the response"}"#.to_vec());
        Self {
            status,
            allow: None,
            body,
        }
    }

    /// A response with an [`api::ErrorBody`].
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(
            status,
            &api::ErrorBody {
                error: message.into(),
            },
        )
    }

    /// The bytes on the wire: status line, headers, body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.body.len()
        );
        if let Some(allow) = self.allow {
            let _ = write!(head, "Allow: {allow}\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// The reason phrase for the status codes the server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes a percent-encoded path segment; `None` if malformed or not UTF-8.
pub fn decode_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Maps a method and path to a request, or to the 404/405 to send.
pub fn route(method: &str, path: &str) -> Result<api::Request, HttpResponse> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let name = |s: &str| {
        decode_segment(s)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| HttpResponse::error(404, format!("invalid workload name in {path}")))
    };
    let power = |action| api::Request::Power { action };
    let (request, allowed) = match segments.as_slice() {
        ["v1", "status"] => (api::Request::Status { name: None }, "GET"),
        ["v1", "status", n] => (
            api::Request::Status {
                name: Some(name(n)?),
            },
            "GET",
        ),
        ["v1", "workloads", n, "restart"] => (api::Request::Restart { name: name(n)? }, "POST"),
        ["v1", "workloads", n, "stop"] => (api::Request::Stop { name: name(n)? }, "POST"),
        ["v1", "workloads", n, "start"] => (api::Request::Start { name: name(n)? }, "POST"),
        ["v1", "specs"] => (api::Request::Specs, "GET"),
        ["v1", "stats"] => (api::Request::Stats, "GET"),
        ["v1", "poweroff"] => (power(api::PowerAction::Poweroff), "POST"),
        ["v1", "reboot"] => (power(api::PowerAction::Reboot), "POST"),
        ["v1", "halt"] => (power(api::PowerAction::Halt), "POST"),
        ["v1", "reexec"] => (api::Request::Reexec, "POST"),
        ["v1", "daemon"] => (api::Request::Daemon, "GET"),
        _ => {
            return Err(HttpResponse::error(
                404,
                format!("no such endpoint: {path}"),
            ))
        }
    };
    if method != allowed {
        let mut resp = HttpResponse::error(
            405,
            format!("{method} not allowed on {path}; use {allowed}"),
        );
        resp.allow = Some(allowed);
        return Err(resp);
    }
    Ok(request)
}

/// Maps the supervisor's answer to HTTP.
pub fn to_http(resp: api::Response) -> HttpResponse {
    match resp {
        api::Response::Status(s) => HttpResponse::json(200, &s),
        api::Response::Ack(a) => HttpResponse::json(200, &a),
        api::Response::Specs(s) => HttpResponse::json(200, &s),
        api::Response::Stats(s) => HttpResponse::json(200, &s),
        api::Response::Daemon(d) => HttpResponse::json(200, &d),
        api::Response::Exec(_) => HttpResponse::error(500, "an exec answer to another request"),
        api::Response::NotFound(m) => HttpResponse::error(404, m),
        api::Response::Error(m) => HttpResponse::error(500, m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: Result<api::Request, HttpResponse>) -> u16 {
        r.err().map_or(200, |e| e.status)
    }

    #[test]
    fn routes_known_paths() {
        assert_eq!(
            route("GET", "/v1/status"),
            Ok(api::Request::Status { name: None })
        );
        assert_eq!(
            route("GET", "/v1/status/web%2D1"),
            Ok(api::Request::Status {
                name: Some("web-1".into())
            })
        );
        assert_eq!(
            route("POST", "/v1/workloads/db/restart"),
            Ok(api::Request::Restart { name: "db".into() })
        );
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        let err = route("POST", "/v1/status").expect_err("405");
        assert_eq!((err.status, err.allow), (405, Some("GET")));
        assert_eq!(status(route("GET", "/v1/workloads/db/restart")), 405);
    }

    #[test]
    fn unknown_paths_are_404() {
        for p in [
            "/",
            "/v1",
            "/v2/status",
            "/v1/status/",
            "/v1/status/a/b",
            "/v1/workloads//restart",
            "/v1/status/%ff",
            "v1/statusx",
        ] {
            assert_eq!(status(route("GET", p)), 404, "{p}");
        }
    }

    #[test]
    fn supervisor_answers_map_to_status_codes() {
        let ok = to_http(api::Response::Ack(api::Ack {
            message: "done".into(),
        }));
        assert_eq!(
            (ok.status, ok.body.as_slice()),
            (200, &br#"{"message":"done"}"#[..])
        );
        let s = to_http(api::Response::Status(api::StatusResponse {
            workloads: vec![],
        }));
        assert_eq!(
            (s.status, s.body.as_slice()),
            (200, &br#"{"workloads":[]}"#[..])
        );
        let nf = to_http(api::Response::NotFound("no workload named x".into()));
        assert_eq!(nf.status, 404);
        assert_eq!(nf.body, br#"{"error":"no workload named x"}"#);
        assert_eq!(to_http(api::Response::Error("boom".into())).status, 500);
    }

    #[test]
    fn response_round_trips() {
        let mut resp = HttpResponse::error(405, "no");
        resp.allow = Some("GET");
        let bytes = resp.to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("Allow: GET\r\n"));
        assert!(text.contains("Content-Type: application/json\r\n"));
        let parsed = parse_response(&bytes, false).expect("valid").expect("done");
        assert_eq!(parsed.status, 405);
        assert_eq!(parsed.body, br#"{"error":"no"}"#);
        // Truncated: more needed, or an error once the peer has closed.
        let cut = &bytes[..bytes.len() - 2];
        assert_eq!(parse_response(cut, false), Ok(None));
        assert!(parse_response(cut, true).is_err());
    }

    #[test]
    fn response_without_length_ends_at_eof() {
        let raw = b"HTTP/1.1 200 OK\r\n\r\n{}";
        assert_eq!(parse_response(raw, false), Ok(None));
        let parsed = parse_response(raw, true).expect("valid").expect("done");
        assert_eq!(parsed.body, b"{}");
    }

    #[test]
    fn segments_round_trip() {
        for s in ["web", "a b/c%d", "ünï", ""] {
            assert_eq!(decode_segment(&encode_segment(s)).as_deref(), Some(s));
        }
        assert_eq!(encode_segment("a/b"), "a%2Fb");
        assert_eq!(decode_segment("%zz"), None);
        assert_eq!(decode_segment("%4"), None);
    }
}
