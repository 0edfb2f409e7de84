//! Active health checks: an HTTP GET per endpoint at an interval; `fall` failures in a row take
//! the endpoint out, `rise` successes in a row bring it back.
//!
//! Each check task holds only a weak reference to its endpoint and ends once no routing table
//! uses the endpoint any more, so a config reload needs no bookkeeping of tasks.

use crate::config::{HealthCheck, UpstreamTls};
use crate::metrics::{EndpointLabels, Metrics};
use crate::router::{Endpoint, Table};
use crate::upstream_tls::UpstreamTlsStore;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Starts the checks of every endpoint of `table` that has none running yet. Checks of TLS
/// backends go over TLS with the settings in `tls`, as requests do.
pub fn spawn_checks(table: &Table, metrics: &Arc<Metrics>, tls: &Arc<UpstreamTlsStore>) {
    for ep in table.endpoints() {
        let labels = EndpointLabels {
            backend: ep.backend.clone(),
            address: ep.address.clone(),
        };
        metrics
            .endpoint_healthy
            .get_or_create(&labels)
            .set(i64::from(ep.is_healthy()));
        if ep.health.is_some() && ep.claim_checker() {
            tokio::spawn(run(
                Arc::downgrade(ep),
                metrics.clone(),
                labels,
                tls.clone(),
            ));
        }
    }
}

/// Starts the check of one endpoint that no routing table holds (pod mode's upstream, whose
/// health `/healthz` reports); it runs while `endpoint` is alive.
pub fn spawn_one(endpoint: &Arc<Endpoint>, metrics: &Arc<Metrics>, tls: &Arc<UpstreamTlsStore>) {
    if endpoint.health.is_some() && endpoint.claim_checker() {
        let labels = EndpointLabels {
            backend: endpoint.backend.clone(),
            address: endpoint.address.clone(),
        };
        tokio::spawn(run(
            Arc::downgrade(endpoint),
            metrics.clone(),
            labels,
            tls.clone(),
        ));
    }
}

async fn run(
    endpoint: Weak<Endpoint>,
    metrics: Arc<Metrics>,
    labels: EndpointLabels,
    tls: Arc<UpstreamTlsStore>,
) {
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        let Some(ep) = endpoint.upgrade() else {
            metrics.endpoint_healthy.remove(&labels);
            return;
        };
        let Some(hc) = ep.health.clone() else { return };
        let address = ep.address.clone();
        let settings = ep.tls.clone();
        drop(ep);
        let result = check(&address, &hc, settings.as_ref(), &tls).await;
        let Some(ep) = endpoint.upgrade() else {
            metrics.endpoint_healthy.remove(&labels);
            return;
        };
        match result {
            Ok(()) => {
                successes += 1;
                failures = 0;
                if !ep.is_healthy() && successes >= hc.rise {
                    tracing::info!(backend = %ep.backend, address = %address, "endpoint healthy again");
                    ep.set_healthy(true);
                }
            }
            Err(why) => {
                failures += 1;
                successes = 0;
                if ep.is_healthy() && failures >= hc.fall {
                    tracing::warn!(backend = %ep.backend, address = %address, reason = %why, "endpoint taken out");
                    ep.set_healthy(false);
                }
            }
        }
        metrics
            .endpoint_healthy
            .get_or_create(&labels)
            .set(i64::from(ep.is_healthy()));
        drop(ep);
        tokio::time::sleep(Duration::from_millis(hc.interval_ms)).await;
    }
}

/// One check: connect (over TLS when `settings` say so), GET the path, expect 2xx or 3xx
/// within the timeout.
async fn check(
    address: &str,
    hc: &HealthCheck,
    settings: Option<&UpstreamTls>,
    tls: &UpstreamTlsStore,
) -> Result<(), String> {
    let attempt = async {
        let stream = crate::upstream::connect(address, settings, tls)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(async move { conn.await.map(drop) });
        let req = Request::get(hc.path.as_str())
            .header(hyper::header::HOST, hc.host.as_deref().unwrap_or(address))
            .header(hyper::header::USER_AGENT, "wikikube-edge-health")
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        conn.abort();
        let status = resp.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    tokio::time::timeout(Duration::from_millis(hc.timeout_ms), attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", hc.timeout_ms)))
}
