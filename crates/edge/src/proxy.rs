//! Forwarding one request: pick the upstream, rewrite the headers, stream the bodies.
//!
//! Upstreams are spoken to in HTTP/1.1 (over TLS for edge backends that ask for it) on the
//! serving thread's pooled keep-alive connections ([`upstream`](crate::upstream)); clients may
//! use HTTP/2 or HTTP/1.1. Bodies are streamed in both directions, never buffered whole.
//!
//! The request path avoids work that does not depend on the request: a connection's peer
//! address is turned into header values once per connection ([`Peer`]), and each thread keeps
//! its own reference to the routing in force, refreshed only when a reload changed it.

use crate::config::{Config, IpRange, Mode, UpstreamTimeouts};
use crate::debug_routing;
use crate::metrics::Metrics;
use crate::router::{Backend, Decision, Endpoint, RequestFacts, Table};
use crate::upstream::{Pool, Pooled, SendError, UpstreamBody};
use crate::upstream_http1::Http1Error;
use crate::upstream_tls::UpstreamTlsStore;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

/// The body of every response edge sends: an upstream's, streamed, or one edge wrote itself.
#[derive(Debug)]
pub enum Body {
    /// Streamed from the upstream connection, which goes back to the pool at the end.
    Upstream(Pooled),
    /// Edge's own text (errors, metrics); `None` once sent.
    Local(Option<Bytes>),
}

impl Body {
    /// A body of these bytes.
    pub fn local(bytes: impl Into<Bytes>) -> Body {
        Body::Local(Some(bytes.into()))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Http1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Http1Error>>> {
        match self.get_mut() {
            Body::Upstream(p) => Pin::new(p).poll_frame(cx),
            Body::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Upstream(p) => p.is_end_stream(),
            Body::Local(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Upstream(p) => p.size_hint(),
            Body::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// Where requests go under the current config.
#[derive(Debug)]
pub enum Routing {
    /// Pod mode: everything to one upstream.
    Pod {
        /// httpd's `HOST:PORT`.
        upstream: Arc<str>,
        /// How long it may take.
        timeouts: UpstreamTimeouts,
        /// Paths served but not written to the access log (`pod.unlogged_paths`).
        unlogged_paths: Box<[Box<str>]>,
    },
    /// Edge mode: by the routing table.
    Edge(Table),
}

impl Routing {
    /// Whether a request for `path` is left out of the access log.
    fn is_unlogged(&self, path: &str) -> bool {
        match self {
            Routing::Pod { unlogged_paths, .. } => unlogged_paths.iter().any(|p| **p == *path),
            Routing::Edge(_) => false,
        }
    }

    /// The routing of a validated config; edge endpoints are reused from `previous` when
    /// unchanged so that health state survives reloads.
    pub fn from_config(config: &Config, previous: Option<&Routing>) -> Routing {
        match (config.mode(), &config.pod, &config.edge) {
            (Some(Mode::Pod), Some(pod), _) => Routing::Pod {
                upstream: Arc::from(pod.upstream.as_str()),
                timeouts: pod.timeouts,
                unlogged_paths: pod
                    .unlogged_paths
                    .iter()
                    .map(|p| p.as_str().into())
                    .collect(),
            },
            (_, _, Some(edge)) => {
                let previous = match previous {
                    Some(Routing::Edge(t)) => Some(t),
                    _ => None,
                };
                Routing::Edge(Table::build(edge, previous))
            }
            // validate() rejects this; an empty edge table answers 404 to everything.
            _ => Routing::Edge(Table::build(
                &crate::config::Edge {
                    backends: Default::default(),
                    debug: Default::default(),
                    routes: vec![],
                },
                None,
            )),
        }
    }
}

/// Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection and must not be forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of these: one pass over the (few) headers is cheaper than nine
    // hashed removals.
    let any = headers
        .keys()
        .any(|k| k == header::TRANSFER_ENCODING || HOP_BY_HOP.iter().any(|h| k.as_str() == *h));
    if !any {
        return;
    }
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
    // hyper frames bodies itself; a stale Transfer-Encoding would contradict it.
    headers.remove(header::TRANSFER_ENCODING);
}

static X_CLIENT_IP: HeaderName = HeaderName::from_static("x-client-ip");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// A client connection's peer, with what its requests' forwarding headers need worked out
/// once per connection rather than per request.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer's address.
    pub addr: SocketAddr,
    ip: HeaderValue,
    trusted: bool,
}

impl Peer {
    /// The peer at `addr`; its `X-Client-IP` is believed when it is inside one of `trusted`.
    pub fn new(addr: SocketAddr, trusted: &[IpRange]) -> Peer {
        // An IP address's text is always a valid header value.
        let ip = HeaderValue::try_from(addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("0.0.0.0"));
        Peer {
            addr,
            ip,
            trusted: trusted.iter().any(|r| r.contains(addr.ip())),
        }
    }
}

/// Adds the forwarding headers: `X-Client-IP` (the peer, replacing any value the client sent,
/// since a client could otherwise claim any address; kept when the peer is a trusted proxy of
/// ours that set it), `X-Forwarded-For` (the peer appended to what came in) and
/// `X-Forwarded-Proto: https`.
pub fn add_forwarding_headers(headers: &mut HeaderMap, peer: &Peer) {
    let keep = peer.trusted
        && headers
            .get(&X_CLIENT_IP)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().parse::<std::net::IpAddr>().is_ok());
    if !keep {
        headers.insert(X_CLIENT_IP.clone(), peer.ip.clone());
    }
    let xff = if headers.contains_key(&X_FORWARDED_FOR) {
        let mut joined = String::new();
        for v in headers.get_all(&X_FORWARDED_FOR) {
            if let Ok(v) = v.to_str() {
                joined.push_str(v);
                joined.push_str(", ");
            }
        }
        joined.push_str(peer.ip.to_str().unwrap_or_default());
        // A malformed prior value degrades to the peer alone.
        HeaderValue::try_from(joined).unwrap_or_else(|_| peer.ip.clone())
    } else {
        peer.ip.clone()
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
}

/// HTTP/2 clients may split `Cookie` into several fields; HTTP/1.1 wants one (RFC 9113 8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let mut all = headers.get_all(header::COOKIE).iter();
    if all.next().is_none() || all.next().is_none() {
        return;
    }
    let joined = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    if let Ok(v) = HeaderValue::try_from(joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// The request's host as routes match it: from `:authority` (HTTP/2) or `Host`.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    let authority = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(header::HOST)?.to_str().ok()?,
    };
    crate::host::normalize(authority)
}

/// Why the request could name two hosts, if it can: more than one Host header (RFC 9112 3.2
/// asks for a 400), or over HTTP/2 a Host header naming another host than `:authority` (RFC
/// 9113 8.3.1: malformed). The edge routes on one host and the upstream serves the Host it is
/// sent; such a request is refused rather than routed by one name and served by another.
fn ambiguous_host<B>(req: &Request<B>) -> Option<&'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Some("more than one Host header\n");
    }
    match (req.uri().authority(), first) {
        (Some(authority), Some(host))
            if req.version() == Version::HTTP_2
                && host.to_str().ok().and_then(crate::host::normalize)
                    != crate::host::normalize(authority.as_str()) =>
        {
            Some("the Host header names another host than :authority\n")
        }
        _ => None,
    }
}

/// The request as it goes upstream: HTTP/1.1, origin-form, with Host, without hop-by-hop
/// headers, with the forwarding headers.
fn upstream_request(req: Request<Incoming>, peer: &Peer) -> Request<UpstreamBody> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(authority) = parts.uri.authority() {
        // HTTP/2 carries the host in :authority, and HTTP/1.1's absolute form in the target,
        // which outranks a Host header (RFC 9112 3.2.2): the upstream gets the host the edge
        // routed on, as the Host header HTTP/1.1 needs.
        if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
            parts.headers.insert(header::HOST, v);
        }
        let mut origin = hyper::http::uri::Parts::default();
        origin.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")),
        );
        parts.uri = Uri::from_parts(origin).unwrap_or_else(|_| Uri::from_static("/"));
    }
    add_forwarding_headers(&mut parts.headers, peer);
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

fn local(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(Body::local(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The request handler's state shared by all serving threads: the routing in force, whom to
/// trust, the metrics, the upstream TLS settings. Each thread serves through its own
/// [`ThreadProxy`].
#[derive(Debug, Clone)]
pub struct Proxy {
    routing: Arc<RwLock<Arc<Routing>>>,
    // Bumped by every set_routing; a thread re-reads the routing only when it changed.
    generation: Arc<AtomicU64>,
    trusted: Arc<Vec<IpRange>>,
    metrics: Arc<Metrics>,
    tls: Arc<UpstreamTlsStore>,
}

/// Who answered a request, for the access log.
enum Target<'a> {
    Pod(&'a str),
    Endpoint(Arc<Endpoint>),
    NoEndpoint(Arc<Backend>),
}

impl Target<'_> {
    fn backend(&self) -> &str {
        match self {
            Target::Pod(_) => "upstream",
            Target::Endpoint(e) => &e.backend,
            Target::NoEndpoint(b) => &b.name,
        }
    }

    fn endpoint(&self) -> &str {
        match self {
            Target::Pod(a) => a,
            Target::Endpoint(e) => &e.address,
            Target::NoEndpoint(_) => "-",
        }
    }
}

/// What the access log says about a request besides status, target and time.
struct Access {
    method: hyper::Method,
    path: String,
    version: Version,
    host: Option<String>,
}

impl Proxy {
    /// A proxy with this routing, believing `X-Client-IP` from peers in `trusted`, recording
    /// into `metrics`, taking TLS settings for backends from `tls`.
    pub fn new(
        routing: Routing,
        trusted: Vec<IpRange>,
        metrics: Arc<Metrics>,
        tls: Arc<UpstreamTlsStore>,
    ) -> Self {
        Proxy {
            routing: Arc::new(RwLock::new(Arc::new(routing))),
            generation: Arc::new(AtomicU64::new(0)),
            trusted: Arc::new(trusted),
            metrics,
            tls,
        }
    }

    /// The routing in force.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the routing (a config reload); requests under way keep the old one.
    pub fn set_routing(&self, routing: Routing) {
        *self.routing.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routing);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The TLS settings of the backends, shared with health checks and reloads.
    pub fn upstream_tls(&self) -> &Arc<UpstreamTlsStore> {
        &self.tls
    }

    /// The handler of the calling serving thread, with its own upstream pool. Must be called
    /// inside the thread's `LocalSet`.
    pub fn for_this_thread(&self) -> ThreadProxy {
        let pool = Pool::new(self.tls.clone());
        Pool::spawn_sweeper(&pool);
        let generation = self.generation.load(Ordering::Acquire);
        ThreadProxy {
            cached: RefCell::new((generation, Rc::new(self.routing()))),
            shared: self.clone(),
            pool,
        }
    }

    /// Whether a peer's `X-Client-IP` is believed, and its header values.
    pub fn peer(&self, addr: SocketAddr) -> Peer {
        Peer::new(addr, &self.trusted)
    }
}

/// One serving thread's request handler.
#[derive(Debug)]
pub struct ThreadProxy {
    shared: Proxy,
    pool: Rc<Pool>,
    // The routing this thread last saw, with its generation. An Rc so that a request holds it
    // without touching the Arc's count, which every thread would otherwise write to.
    #[allow(clippy::redundant_allocation)]
    cached: RefCell<(u64, Rc<Arc<Routing>>)>,
}

impl ThreadProxy {
    /// The shared state.
    pub fn shared(&self) -> &Proxy {
        &self.shared
    }

    /// This thread's upstream connections.
    pub fn pool(&self) -> &Rc<Pool> {
        &self.pool
    }

    #[allow(clippy::redundant_allocation)]
    fn routing(&self) -> Rc<Arc<Routing>> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        let mut cached = self.cached.borrow_mut();
        if cached.0 != generation {
            *cached = (generation, Rc::new(self.shared.routing()));
        }
        cached.1.clone()
    }

    /// Answers one request from a client at `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: &Peer) -> Response<Body> {
        let start = Instant::now();
        let routing = self.routing();
        let access = (tracing::enabled!(target: "access", tracing::Level::INFO)
            && !routing.is_unlogged(req.uri().path()))
        .then(|| Access {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            version: req.version(),
            host: request_host(&req),
        });
        let (resp, target) = if let Some(why) = ambiguous_host(&req) {
            (local(StatusCode::BAD_REQUEST, why.into()), None)
        } else {
            match &**routing {
                Routing::Pod {
                    upstream, timeouts, ..
                } => {
                    let mut req = req;
                    join_cookies(req.headers_mut());
                    let result = self
                        .pool
                        .send(upstream, None, timeouts, upstream_request(req, peer))
                        .await
                        .map_err(|e| e.error);
                    (
                        respond(result, upstream, false, None),
                        Some(Target::Pod(upstream)),
                    )
                }
                Routing::Edge(table) => self.route(table, req, peer).await,
            }
        };
        let status = resp.status().as_u16();
        let elapsed = start.elapsed();
        self.shared.metrics.observe(status, elapsed);
        if let Some(a) = access {
            tracing::info!(
                target: "access",
                client = %peer.addr.ip(),
                method = %a.method,
                host = a.host.as_deref().unwrap_or("-"),
                path = %a.path,
                proto = ?a.version,
                status,
                backend = target.as_ref().map_or("-", Target::backend),
                endpoint = target.as_ref().map_or("-", Target::endpoint),
                duration_us = elapsed.as_micros() as u64,
            );
        }
        resp
    }

    async fn route<'a>(
        &self,
        table: &'a Table,
        mut req: Request<Incoming>,
        peer: &Peer,
    ) -> (Response<Body>, Option<Target<'a>>) {
        join_cookies(req.headers_mut());
        let host = request_host(&req);
        let decision = {
            let debug = req
                .headers()
                .get(debug_routing::HEADER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()));
            let facts = RequestFacts {
                host: host.as_deref(),
                path: req.uri().path(),
                debug: debug.as_deref(),
                cookie: req
                    .headers()
                    .get(header::COOKIE)
                    .and_then(|v| v.to_str().ok()),
            };
            table.decide(&facts, |n| rand::random_range(0..n))
        };
        let (backend, debug, set_cookie) = match decision {
            Decision::NoRoute => {
                let text = format!(
                    "no route for host {:?} and path {:?}\n",
                    host.as_deref().unwrap_or(""),
                    req.uri().path()
                );
                return (local(StatusCode::NOT_FOUND, text), None);
            }
            Decision::BadDebugBackend { asked, known } => {
                let asked = match asked {
                    Some(a) => format!("unknown debug backend {a:?}"),
                    None => "X-Wikimedia-Debug has no backend=NAME attribute".into(),
                };
                let text = format!(
                    "{asked}; debug backends: {}\n",
                    if known.is_empty() {
                        "(none)".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
                return (local(StatusCode::BAD_REQUEST, text), None);
            }
            Decision::Forward {
                backend,
                debug,
                set_cookie,
            } => (backend, debug, set_cookie),
        };
        if backend.is_panicking() {
            // Too few endpoints pass their checks: all of them take requests (see
            // config::Backend::panic_threshold_percent).
            self.shared.metrics.panic_requests(&backend.name);
        }
        let Some(mut endpoint) = backend.pick() else {
            let text = format!("backend {:?} has no healthy endpoint\n", backend.name);
            return (
                local(StatusCode::SERVICE_UNAVAILABLE, text),
                Some(Target::NoEndpoint(backend)),
            );
        };
        let mut req = upstream_request(req, peer);
        let mut retried = false;
        let result = loop {
            match self
                .pool
                .send(
                    &endpoint.address,
                    endpoint.tls.as_ref(),
                    &endpoint.timeouts,
                    req,
                )
                .await
            {
                Ok(resp) => break Ok(resp),
                // Nothing reached this endpoint, so the request (body included) is untouched
                // and may go to another one, once: the health check will take it out.
                Err(SendError {
                    error,
                    request: Some(back),
                }) if !retried && error.is_connect() => {
                    let next = backend.others(&endpoint.address).next().cloned();
                    match next {
                        Some(next) => {
                            tracing::warn!(endpoint = %endpoint.address, error = %error, retry = %next.address, "connect failed, retrying");
                            endpoint = next;
                            req = back;
                            retried = true;
                        }
                        None => break Err(error),
                    }
                }
                Err(e) => break Err(e.error),
            }
        };
        let resp = respond(result, &endpoint.address, debug, set_cookie);
        (resp, Some(Target::Endpoint(endpoint)))
    }
}

/// The client's response from the upstream's (or a 502), with hop-by-hop headers removed and
/// the debug and pinning-cookie headers added.
fn respond(
    result: Result<Response<Pooled>, crate::upstream::UpstreamError>,
    address: &str,
    debug: bool,
    set_cookie: Option<String>,
) -> Response<Body> {
    match result {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            if debug {
                parts.headers.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(debug_routing::UNCACHEABLE),
                );
            }
            if let Some(c) = set_cookie.and_then(|c| HeaderValue::try_from(c).ok()) {
                parts.headers.append(header::SET_COOKIE, c);
            }
            Response::from_parts(parts, Body::Upstream(body))
        }
        Err(crate::upstream::UpstreamError::HeaderTimeout { after, .. }) => {
            tracing::warn!(endpoint = %address, timeout_ms = after.as_millis() as u64, "upstream did not answer in time");
            local(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "upstream {address} did not answer within {} ms\n",
                    after.as_millis()
                ),
            )
        }
        Err(e) => {
            tracing::warn!(endpoint = %address, error = %e, "upstream request failed");
            local(
                StatusCode::BAD_GATEWAY,
                format!("upstream {address} failed\n"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(client_ip: Option<&str>, trusted: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ip) = client_ip {
            h.insert(&X_CLIENT_IP, HeaderValue::from_str(ip).unwrap());
        }
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.1"));
        let ranges = if trusted {
            vec![IpRange::parse("10.0.0.0/8").unwrap()]
        } else {
            vec![]
        };
        add_forwarding_headers(
            &mut h,
            &Peer::new("10.0.0.9:4000".parse().unwrap(), &ranges),
        );
        h
    }

    #[test]
    fn client_ip_is_believed_only_from_trusted_peers() {
        assert_eq!(
            forwarded(Some("198.51.100.7"), true)[&X_CLIENT_IP],
            "198.51.100.7"
        );
        assert_eq!(
            forwarded(Some("198.51.100.7"), false)[&X_CLIENT_IP],
            "10.0.0.9"
        );
        assert_eq!(forwarded(None, true)[&X_CLIENT_IP], "10.0.0.9");
        assert_eq!(forwarded(Some("not an ip"), true)[&X_CLIENT_IP], "10.0.0.9");
        assert_eq!(
            forwarded(None, false)[&X_FORWARDED_FOR],
            "192.0.2.1, 10.0.0.9"
        );
        assert_eq!(forwarded(None, false)[&X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn ip_ranges() {
        let r = IpRange::parse("10.64.0.0/12").unwrap();
        assert!(r.contains("10.64.3.1".parse().unwrap()));
        assert!(r.contains("10.79.255.255".parse().unwrap()));
        assert!(!r.contains("10.80.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.64.0.1".parse().unwrap()));
        assert!(!r.contains("2001:db8::1".parse().unwrap()));
        let one = IpRange::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(IpRange::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::5".parse().unwrap()));
        assert!(IpRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert_eq!(IpRange::parse("10.0.0.0/33"), None);
        assert_eq!(IpRange::parse("ten"), None);
    }
}
