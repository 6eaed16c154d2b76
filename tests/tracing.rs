//! One borrow sent to a follower with a client `traceparent` is one trace across nodes:
//! an OTLP/HTTP receiver on loopback (decoding the real protobuf) gets spans from the
//! follower (the client's span as parent of its `POST /licenses` span, then the method's,
//! `propose` and `forward`) and from the leader (`forwarded_write`, parented on the
//! follower's `forward` span, then `proposal` and `commit_wait`), all under the client's
//! trace id; and every node exports `apply` spans.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use common::Cluster;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"t-one","version":"26.05","edition":"Steady","modules":"fc","count":4}
]"#;

/// A span as received: which node sent it and its ids (hex).
#[derive(Debug, Clone)]
struct Received {
    node: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

type Spans = Arc<Mutex<Vec<Received>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn receive(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    let mut received = spans.lock().expect("lock");
    for resource_spans in request.resource_spans {
        let node = resource_spans
            .resource
            .iter()
            .flat_map(|resource| resource.attributes.iter())
            .find(|kv| kv.key == "service.instance.id")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(id) => Some(id.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(Received {
                    node: node.clone(),
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                });
            }
        }
    }
    // An empty ExportTraceServiceResponse.
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_borrow_sent_to_a_follower_is_one_trace_on_both_nodes() {
    let spans: Spans = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut cluster = Cluster::unstarted(3, POOL, &[]);
    for i in 0..3 {
        cluster.set_env(i, "OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
        cluster.set_env(i, "OTEL_BSP_SCHEDULE_DELAY", "100");
    }
    cluster.start_all().await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let (leader_id, follower_id) = ((leader + 1).to_string(), (follower + 1).to_string());

    let trace_id = format!("{:032x}", rand::random::<u128>());
    let client_span = format!("{:016x}", rand::random::<u128>() as u64 | 1);
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/licenses", cluster.api_url(follower)))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "BorrowLicenseV1",
            "params": {"feature": "MVTec_HALCON", "uuid": "t-one", "hostId": "MAC:0A0000000001",
                       "validFrom": common::at(3_600), "validUntil": common::at(7_200)}}),
        )
        .send()
        .await
        .expect("the follower answers")
        .json()
        .await
        .expect("JSON");
    assert!(answer["result"]["borrowId"].is_string(), "{answer}");

    // Both nodes export within their batch delay; wait for the spans of this trace.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ours = loop {
        let ours: Vec<Received> = spans
            .lock()
            .expect("lock")
            .iter()
            .filter(|span| span.trace_id == trace_id)
            .cloned()
            .collect();
        let has = |node: &str, name: &str| ours.iter().any(|s| s.node == node && s.name == name);
        let complete = has(&follower_id, "POST /licenses")
            && has(&follower_id, "forward")
            && has(&leader_id, "forwarded_write")
            && has(&leader_id, "commit_wait");
        if complete || Instant::now() > deadline {
            break ours;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_name: HashMap<(&str, &str), &Received> = ours
        .iter()
        .map(|span| ((span.node.as_str(), span.name.as_str()), span))
        .collect();
    let get = |node: &str, name: &str| {
        *by_name.get(&(node, name)).unwrap_or_else(|| {
            panic!("no span {name} from node {node} in trace {trace_id}; received: {ours:#?}")
        })
    };
    let rpc = get(&follower_id, "POST /licenses");
    assert_eq!(
        rpc.parent_span_id, client_span,
        "the client's span is the parent"
    );
    let call = get(&follower_id, "BorrowLicenseV1");
    assert_eq!(call.parent_span_id, rpc.span_id);
    let propose = get(&follower_id, "propose");
    assert_eq!(propose.parent_span_id, call.span_id);
    let forward = get(&follower_id, "forward");
    assert_eq!(forward.parent_span_id, propose.span_id);
    let on_leader = get(&leader_id, "forwarded_write");
    assert_eq!(
        on_leader.parent_span_id, forward.span_id,
        "the leader continues the follower's forward span"
    );
    let proposal = get(&leader_id, "proposal");
    assert_eq!(proposal.parent_span_id, on_leader.span_id);
    let commit_wait = get(&leader_id, "commit_wait");
    assert_eq!(commit_wait.parent_span_id, proposal.span_id);
    // Only the two nodes the borrow passed through take part in its trace.
    assert!(ours
        .iter()
        .all(|span| span.node == leader_id || span.node == follower_id));
    // Applying the log is traced on every node, each batch a trace of its own.
    let deadline = Instant::now() + Duration::from_secs(30);
    let applying: std::collections::BTreeSet<String> = loop {
        let nodes = spans
            .lock()
            .expect("lock")
            .iter()
            .filter(|span| span.name == "apply")
            .map(|span| span.node.clone())
            .collect::<std::collections::BTreeSet<_>>();
        if nodes.len() == 3 || Instant::now() > deadline {
            break nodes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(applying.len(), 3, "apply spans from {applying:?}");
}
