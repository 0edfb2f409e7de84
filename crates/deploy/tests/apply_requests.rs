//! The requests wikikube sends, checked with kube's tower-test mock service (no server at all).

use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};

use wikikube_deploy::apply::{self, Mode};

fn configmap() -> wikikube_render::Object {
    wikikube_render::Object::ConfigMap(k8s_openapi::api::core::v1::ConfigMap {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("farm-httpd-sites".into()),
            namespace: Some("mediawiki".into()),
            ..Default::default()
        },
        data: Some([("a.conf".to_string(), "x".to_string())].into()),
        ..Default::default()
    })
}

/// Sends one apply through a mock and returns the request it made.
async fn captured(mode: Mode) -> (http::request::Parts, Value) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("a request");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let answer = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "farm-httpd-sites", "namespace": "mediawiki"}});
        send.send_response(Response::new(Body::from(
            serde_json::to_vec(&answer).unwrap(),
        )));
        (parts, body)
    });
    apply::apply(&client, "mediawiki", &configmap(), mode)
        .await
        .unwrap();
    server.await.unwrap()
}

#[tokio::test]
async fn dry_run_is_a_forced_server_side_apply_with_dry_run_all() {
    let (parts, body) = captured(Mode::DryRun).await;
    assert_eq!(parts.method, http::Method::PATCH);
    assert_eq!(
        parts.uri.path(),
        "/api/v1/namespaces/mediawiki/configmaps/farm-httpd-sites"
    );
    let query = parts.uri.query().unwrap();
    assert!(query.contains("fieldManager=wikikube"), "{query}");
    assert!(query.contains("force=true"), "{query}");
    assert!(query.contains("dryRun=All"), "{query}");
    assert_eq!(
        parts.headers["content-type"],
        "application/apply-patch+yaml"
    );
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["kind"], "ConfigMap");
    assert_eq!(body["data"]["a.conf"], "x");
}

#[tokio::test]
async fn apply_is_forced_under_the_wikikube_field_manager_without_dry_run() {
    let (parts, _) = captured(Mode::Apply).await;
    let query = parts.uri.query().unwrap();
    assert!(query.contains("fieldManager=wikikube"), "{query}");
    assert!(query.contains("force=true"), "{query}");
    assert!(!query.contains("dryRun"), "{query}");
    assert_eq!(
        parts.headers["content-type"],
        "application/apply-patch+yaml"
    );
}

#[tokio::test]
async fn deployments_go_to_the_apps_group_and_namespaces_are_cluster_scoped() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let server = tokio::spawn(async move {
        let mut paths = Vec::new();
        for _ in 0..2 {
            let (request, send) = handle.next_request().await.unwrap();
            paths.push(request.uri().path().to_string());
            let answer = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}});
            send.send_response(Response::new(Body::from(
                serde_json::to_vec(&answer).unwrap(),
            )));
        }
        paths
    });
    let reference = |kind: wikikube_render::ObjectKind, name: &str| apply::ObjectRef {
        kind,
        name: name.into(),
    };
    let body =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mw-web-main"}});
    apply::apply_value(
        &client,
        "mediawiki",
        &reference(wikikube_render::ObjectKind::Deployment, "mw-web-main"),
        &body,
        Mode::Apply,
    )
    .await
    .unwrap();
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mediawiki"}});
    apply::apply_value(
        &client,
        "mediawiki",
        &reference(wikikube_render::ObjectKind::Namespace, "mediawiki"),
        &body,
        Mode::Apply,
    )
    .await
    .unwrap();
    assert_eq!(
        server.await.unwrap(),
        [
            "/apis/apps/v1/namespaces/mediawiki/deployments/mw-web-main",
            "/api/v1/namespaces/mediawiki"
        ]
    );
}
