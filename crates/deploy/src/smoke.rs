//! Smoke checks: HTTP requests to every canary pod, through the API server's pod proxy
//! (`/api/v1/namespaces/NS/pods/https:POD:PORT/proxy/PATH`). The proxy reaches pods from wherever
//! the kubeconfig reaches the API server, so the checks need no Ingress, port-forward or network
//! route into the cluster, and they hit the canary alone, never main behind a shared Service.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::Client;

use crate::config::SmokeCheck;
use crate::Error;

/// The container port the pod proxy talks to: the tls container's `https` port.
pub fn https_port(deployment: &serde_json::Value) -> u16 {
    let containers = deployment
        .pointer("/spec/template/spec/containers")
        .and_then(|containers| containers.as_array());
    containers
        .into_iter()
        .flatten()
        .flat_map(|container| container["ports"].as_array().into_iter().flatten())
        .find(|port| port["name"] == "https")
        .and_then(|port| port["containerPort"].as_u64())
        .and_then(|port| u16::try_from(port).ok())
        .unwrap_or(443)
}

/// Runs every check against every serving pod ([`serving`]) of one canary Deployment; the first failure is the
/// error, naming the check, the pod and what was wrong.
pub async fn run(
    client: &Client,
    namespace: &str,
    deployment: &str,
    selector: &str,
    port: u16,
    checks: &[SmokeCheck],
) -> Result<usize, Error> {
    if checks.is_empty() {
        return Ok(0);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|source| Error::kube(format!("list pods of {deployment}"), source))?;
    let names: Vec<String> = list
        .items
        .iter()
        .filter(|pod| serving(pod))
        .filter_map(|pod| pod.metadata.name.clone())
        .collect();
    if names.is_empty() {
        return Err(Error::Smoke {
            deployment: deployment.into(),
            check: "pods".into(),
            message: format!("no pod matches {selector}"),
        });
    }
    let mut passed = 0;
    for check in checks {
        for pod in &names {
            check_pod(client, namespace, pod, port, check)
                .await
                .map_err(|message| Error::Smoke {
                    deployment: deployment.into(),
                    check: check.name.clone(),
                    message: format!("pod {pod}: {message}"),
                })?;
            passed += 1;
        }
    }
    Ok(passed)
}

/// Whether a pod takes requests: running, Ready, and not being deleted. The selector also
/// lists pods that never will (evicted or failed ones stay listed until garbage collection,
/// pending ones have no container yet, unready ones are out of their Service): a smoke check
/// sent to one of those would fail the gate for nothing.
pub fn serving(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    pod.metadata.deletion_timestamp.is_none()
        && status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

async fn check_pod(
    client: &Client,
    namespace: &str,
    pod: &str,
    port: u16,
    check: &SmokeCheck,
) -> Result<(), String> {
    let path = check.path.trim_start_matches('/');
    let uri = format!("/api/v1/namespaces/{namespace}/pods/https:{pod}:{port}/proxy/{path}");
    let mut request = http::Request::get(uri);
    if let Some(host) = &check.host {
        request = request.header(http::header::HOST, host);
    }
    let request = request
        .body(kube::client::Body::empty())
        .map_err(|error| format!("bad request: {error}"))?;
    let response = client
        .send(request)
        .await
        .map_err(|error| format!("request failed: {error}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect_bytes()
        .await
        .map_err(|error| format!("reading the answer failed: {error}"))?;
    if status != check.expect_status {
        return Err(format!(
            "GET {} answered {status}, expected {}",
            check.path, check.expect_status
        ));
    }
    if let Some(needle) = &check.contains {
        if !String::from_utf8_lossy(&body).contains(needle.as_str()) {
            return Err(format!("GET {} answer lacks {needle:?}", check.path));
        }
    }
    Ok(())
}
