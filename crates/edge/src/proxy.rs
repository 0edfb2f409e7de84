//! Forwarding one request: pick the upstream, rewrite the headers, stream the bodies.
//!
//! Upstreams are spoken to in HTTP/1.1 over pooled keep-alive connections (what httpd and the
//! backends' Services speak); clients may use HTTP/2 or HTTP/1.1. Bodies are streamed in both
//! directions, never buffered whole.

use crate::config::{Config, IpRange, Mode};
use crate::debug_routing;
use crate::metrics::{Metrics, StatusLabels};
use crate::router::{Decision, RequestFacts, Table};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The body type of everything edge sends, in both directions.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Where requests go under the current config.
#[derive(Debug)]
pub enum Routing {
    /// Pod mode: everything to one upstream.
    Pod {
        /// httpd's `HOST:PORT`.
        upstream: String,
    },
    /// Edge mode: by the routing table.
    Edge(Table),
}

impl Routing {
    /// The routing of a validated config; edge endpoints are reused from `previous` when
    /// unchanged so that health state survives reloads.
    pub fn from_config(config: &Config, previous: Option<&Routing>) -> Routing {
        match (config.mode(), &config.pod, &config.edge) {
            (Some(Mode::Pod), Some(pod), _) => Routing::Pod {
                upstream: pod.upstream.clone(),
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

/// Adds the forwarding headers: `X-Client-IP` (the peer, replacing any value the client sent,
/// since a client could otherwise claim any address; kept when `trusted` says the peer is a
/// proxy of ours that set it), `X-Forwarded-For` (the peer appended to what came in) and
/// `X-Forwarded-Proto: https`.
pub fn add_forwarding_headers(headers: &mut HeaderMap, peer: SocketAddr, trusted: bool) {
    let ip = peer.ip().to_string();
    let xff = {
        let prior: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if prior.is_empty() {
            ip.clone()
        } else {
            format!("{}, {ip}", prior.join(", "))
        }
    };
    // An IP's text is always a valid header value; a malformed prior XFF degrades to the peer.
    let keep = trusted
        && headers
            .get(&X_CLIENT_IP)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().parse::<std::net::IpAddr>().is_ok());
    if !keep {
        if let Ok(v) = HeaderValue::from_str(&ip) {
            headers.insert(X_CLIENT_IP.clone(), v);
        }
    }
    let xff = HeaderValue::from_str(&xff).or_else(|_| HeaderValue::from_str(&ip));
    if let Ok(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
}

/// HTTP/2 clients may split `Cookie` into several fields; HTTP/1.1 wants one (RFC 9113 8.2.3).
fn join_cookies(headers: &mut HeaderMap) -> Option<String> {
    let all: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if all.is_empty() {
        return None;
    }
    let joined = all.join("; ");
    if all.len() > 1 {
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(header::COOKIE, v);
        }
    }
    Some(joined)
}

fn local(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The request handler of one serving thread. Its [`sibling`](Proxy::sibling)s share the
/// routing and metrics but each has its own upstream connection pool, so a thread never
/// waits on another's connections.
#[derive(Debug)]
pub struct Proxy {
    routing: Arc<RwLock<Arc<Routing>>>,
    trusted: Arc<Vec<IpRange>>,
    client: Client<HttpConnector, Body>,
    metrics: Arc<Metrics>,
}

/// What the access log says about a request besides status and time.
struct Target {
    backend: String,
    endpoint: String,
}

impl Proxy {
    /// A proxy with this routing, believing `X-Client-IP` from peers in `trusted`, recording
    /// into `metrics`.
    pub fn new(routing: Routing, trusted: Vec<IpRange>, metrics: Arc<Metrics>) -> Self {
        Proxy {
            routing: Arc::new(RwLock::new(Arc::new(routing))),
            trusted: Arc::new(trusted),
            client: Self::client(),
            metrics,
        }
    }

    /// A proxy sharing this one's routing and metrics, with its own connection pool.
    pub fn sibling(&self) -> Self {
        Proxy {
            routing: self.routing.clone(),
            trusted: self.trusted.clone(),
            client: Self::client(),
            metrics: self.metrics.clone(),
        }
    }

    fn client() -> Client<HttpConnector, Body> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        Client::builder(TokioExecutor::new())
            // Idle upstream connections are kept a while: a new TCP connection per request to
            // httpd would cost more than the request itself for static files.
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector)
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
    }

    /// Answers one request from a client at `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let start = Instant::now();
        let method = req.method().clone();
        let version = req.version();
        let path = req.uri().path().to_owned();
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        let host = authority.as_deref().and_then(crate::host::normalize);
        let (resp, target) = self
            .route_and_forward(req, peer, host.as_deref(), authority)
            .await;
        let status = resp.status().as_u16();
        let elapsed = start.elapsed();
        self.metrics
            .requests
            .get_or_create(&StatusLabels { status })
            .inc();
        self.metrics.latency.observe(elapsed.as_secs_f64());
        tracing::info!(
            target: "access",
            client = %peer.ip(),
            method = %method,
            host = host.as_deref().unwrap_or("-"),
            path = %path,
            proto = ?version,
            status,
            backend = target.as_ref().map_or("-", |t| t.backend.as_str()),
            endpoint = target.as_ref().map_or("-", |t| t.endpoint.as_str()),
            duration_us = elapsed.as_micros() as u64,
        );
        resp
    }

    async fn route_and_forward(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        host: Option<&str>,
        authority: Option<String>,
    ) -> (Response<Body>, Option<Target>) {
        let cookie = join_cookies(req.headers_mut());
        let routing = self.routing();
        let (endpoint, backend, debug, set_cookie) = match &*routing {
            Routing::Pod { upstream } => (upstream.clone(), None, false, None),
            Routing::Edge(table) => {
                let debug_value = req
                    .headers()
                    .get(debug_routing::HEADER)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let facts = RequestFacts {
                    host,
                    path: req.uri().path(),
                    debug: debug_value.as_deref(),
                    cookie: cookie.as_deref(),
                };
                match table.decide(&facts, |n| rand::random_range(0..n)) {
                    Decision::NoRoute => {
                        let text = format!(
                            "no route for host {:?} and path {:?}\n",
                            host.unwrap_or(""),
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
                    } => match backend.pick() {
                        Some(ep) => (ep.address.clone(), Some(backend), debug, set_cookie),
                        None => {
                            let text =
                                format!("backend {:?} has no healthy endpoint\n", backend.name);
                            let t = Target {
                                backend: backend.name.clone(),
                                endpoint: "-".into(),
                            };
                            return (local(StatusCode::SERVICE_UNAVAILABLE, text), Some(t));
                        }
                    },
                }
            }
        };

        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if !parts.headers.contains_key(header::HOST) {
            // HTTP/2 carries the host in :authority; HTTP/1.1 upstreams need a Host header.
            if let Some(v) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
                parts.headers.insert(header::HOST, v);
            }
        }
        let trusted = self.trusted.iter().any(|r| r.contains(peer.ip()));
        add_forwarding_headers(&mut parts.headers, peer, trusted);
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        parts.version = Version::HTTP_11;
        let empty_body = body.is_end_stream();
        // Kept to retry on another endpoint when connecting fails: only safe while the body is
        // empty, since a streamed body is consumed by the first attempt.
        let retry_template = (empty_body && backend.is_some())
            .then(|| (parts.method.clone(), parts.headers.clone()));

        let first = self
            .send(&endpoint, &path_and_query, parts, body.boxed())
            .await;
        let mut used = endpoint;
        let result = match (first, retry_template, &backend) {
            (Err(e), Some((method, headers)), Some(b)) if e.is_connect() => {
                let next = b.others(&used).next().map(|ep| ep.address.clone());
                match next {
                    Some(addr) => {
                        tracing::warn!(endpoint = %used, error = %e, retry = %addr, "connect failed, retrying");
                        let mut req = Request::new(());
                        *req.method_mut() = method;
                        *req.headers_mut() = headers;
                        let (p, ()) = req.into_parts();
                        used = addr;
                        let empty = Empty::<Bytes>::new().map_err(|n| match n {}).boxed();
                        self.send(&used, &path_and_query, p, empty).await
                    }
                    None => Err(e),
                }
            }
            (r, _, _) => r,
        };
        let target = Target {
            backend: backend
                .as_ref()
                .map_or("upstream".into(), |b| b.name.clone()),
            endpoint: used.clone(),
        };
        match result {
            Ok(resp) => {
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                if debug {
                    rparts.headers.insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static(debug_routing::UNCACHEABLE),
                    );
                }
                if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
                    rparts.headers.append(header::SET_COOKIE, c);
                }
                (Response::from_parts(rparts, rbody.boxed()), Some(target))
            }
            Err(e) => {
                tracing::warn!(endpoint = %used, error = %e, "upstream request failed");
                let text = format!("upstream {used} failed\n");
                (local(StatusCode::BAD_GATEWAY, text), Some(target))
            }
        }
    }

    async fn send(
        &self,
        endpoint: &str,
        path_and_query: &str,
        mut parts: hyper::http::request::Parts,
        body: Body,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        parts.version = Version::HTTP_11;
        parts.uri = format!("http://{endpoint}{path_and_query}")
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/"));
        self.client.request(Request::from_parts(parts, body)).await
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
        add_forwarding_headers(&mut h, "10.0.0.9:4000".parse().unwrap(), trusted);
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
