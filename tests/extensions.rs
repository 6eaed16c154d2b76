//! Extensions on a real single node: `ReturnLicenseV1` (only by the borrower's
//! `returnToken` or the admin token) and `requestId` idempotency on `BorrowLicenseV1`,
//! including across a restart.

mod common;

use common::{at, error_code_of, Server};
use serde_json::{json, Value};

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"one","version":"26.05","edition":"Steady","modules":"fc","count":1}
]"#;

fn borrow_params(from: i64, until: i64) -> Value {
    json!({"feature": "MVTec_HALCON", "uuid": "one", "hostId": "MAC:0A0B0C0D0E0F",
           "validFrom": at(from), "validUntil": at(until)})
}

fn with_request_id(mut params: Value, id: &str) -> Value {
    params["requestId"] = json!(id);
    params
}

async fn listed(server: &Server) -> Vec<String> {
    let list = server.result("ListLicensesV1", json!([])).await;
    list[0]["borrowedIntervals"]
        .as_array()
        .map(|intervals| {
            intervals
                .iter()
                .map(|i| i["borrowId"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_returned_borrow_frees_its_seat_and_returning_again_changes_nothing() {
    let server = Server::start(POOL).await;
    let first = server
        .result("BorrowLicenseV1", borrow_params(3_600, 7_200))
        .await;
    let id = first["borrowId"].as_str().expect("borrow id").to_string();
    let token = first["returnToken"]
        .as_str()
        .expect("return token")
        .to_string();
    let taken = server
        .call("BorrowLicenseV1", borrow_params(3_600, 7_200))
        .await;
    assert_eq!(error_code_of(&taken), 32, "{taken}");

    let returned = server
        .result(
            "ReturnLicenseV1",
            json!({"borrowId": id, "returnToken": token}),
        )
        .await;
    assert_eq!(returned["borrowId"], json!(id));
    // An upcoming borrow becomes empty.
    assert_eq!(returned["validUntil"], returned["validFrom"], "{returned}");
    assert!(returned["returnedAt"].is_string(), "{returned}");
    assert!(listed(&server).await.is_empty());

    let again = server
        .result(
            "ReturnLicenseV1",
            json!({"borrowId": id, "returnToken": token}),
        )
        .await;
    assert_eq!(again, returned);
    // The record stays retrievable, and the seat is free.
    server
        .result("GetBorrowedLicenseV1", json!({"borrowId": id}))
        .await;
    server
        .result("BorrowLicenseV1", borrow_params(3_600, 7_200))
        .await;
}

/// Sends `ReturnLicenseV1` with `Authorization: Bearer <bearer>`.
async fn return_as(server: &Server, bearer: &str, params: Value) -> Value {
    reqwest::Client::new()
        .post(server.endpoint())
        .bearer_auth(bearer)
        .json(&json!({"jsonrpc": "2.0", "method": "ReturnLicenseV1", "params": params, "id": 1}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn a_borrow_id_alone_returns_nothing_only_its_token_or_the_admin_token_does() {
    let server = Server::start_with(POOL, &["--admin-token", "admin-secret"]).await;
    let mine = server
        .result("BorrowLicenseV1", borrow_params(3_600, 7_200))
        .await;
    let theirs = server
        .result("BorrowLicenseV1", borrow_params(10_000, 20_000))
        .await;
    let (mine_id, theirs_id) = (&mine["borrowId"], &theirs["borrowId"]);
    let mine_token = mine["returnToken"].as_str().expect("return token");
    let theirs_token = theirs["returnToken"].as_str().expect("return token");
    assert_ne!(mine_token, theirs_token);

    // The token is handed out once: never listed, never served again.
    let list = server.result("ListLicensesV1", json!([])).await;
    let get = server
        .result("GetBorrowedLicenseV1", json!({"borrowId": mine_id}))
        .await;
    for answer in [&list, &get] {
        let text = answer.to_string();
        assert!(!text.contains("returnToken"), "{text}");
        assert!(!text.contains(mine_token), "{text}");
    }

    // Someone who only read the listing: no token, a wrong token, another borrow's
    // token, a wrong admin token. Every one refused with 37, nothing returned.
    let attempts = [
        json!({"borrowId": mine_id}),
        json!({"borrowId": mine_id, "returnToken": "x".repeat(43)}),
        json!({"borrowId": mine_id, "returnToken": theirs_token}),
        json!({"borrowId": mine_id, "returnToken": null}),
    ];
    for params in attempts {
        let refused = server.call("ReturnLicenseV1", params.clone()).await;
        assert_eq!(error_code_of(&refused), 37, "{params}: {refused}");
        assert_eq!(refused["error"]["message"], "Return not authorized");
    }
    let wrong_admin = return_as(&server, "not-the-token", json!({"borrowId": mine_id})).await;
    assert_eq!(error_code_of(&wrong_admin), 37, "{wrong_admin}");
    assert_eq!(
        listed(&server).await.len(),
        2,
        "a refused return freed a seat"
    );
    let taken = server
        .call("BorrowLicenseV1", borrow_params(3_600, 7_200))
        .await;
    assert_eq!(error_code_of(&taken), 32, "{taken}");

    // The borrower's own token returns it; the administrator returns any borrow.
    server
        .result(
            "ReturnLicenseV1",
            json!({"borrowId": mine_id, "returnToken": mine_token}),
        )
        .await;
    let by_admin = return_as(&server, "admin-secret", json!({"borrowId": theirs_id})).await;
    assert!(by_admin["result"]["returnedAt"].is_string(), "{by_admin}");
    assert!(listed(&server).await.is_empty());
}

#[tokio::test]
async fn a_retried_borrow_gets_the_same_return_token() {
    let server = Server::start(POOL).await;
    let params = with_request_id(borrow_params(3_600, 7_200), "retry-me");
    let first = server.result("BorrowLicenseV1", params.clone()).await;
    let again = server.result("BorrowLicenseV1", params).await;
    assert!(first["returnToken"].is_string(), "{first}");
    assert_eq!(first["returnToken"], again["returnToken"]);
}

#[tokio::test]
async fn returning_an_unknown_or_malformed_borrow_id_is_a_clear_error() {
    let server = Server::start_with(POOL, &["--admin-token", "admin-secret"]).await;
    let unknown_id = json!({"borrowId": "00000000-0000-4000-8000-000000000000"});
    // Without proof, the answer is the refusal (it says nothing about the id).
    let refused = server.call("ReturnLicenseV1", unknown_id.clone()).await;
    assert_eq!(error_code_of(&refused), 37, "{refused}");
    let unknown = return_as(&server, "admin-secret", unknown_id).await;
    assert_eq!(error_code_of(&unknown), 34, "{unknown}");
    let malformed = server
        .call("ReturnLicenseV1", json!({"borrowId": "nope"}))
        .await;
    assert_eq!(error_code_of(&malformed), 34, "{malformed}");
    let missing = server.call("ReturnLicenseV1", json!({})).await;
    assert_eq!(error_code_of(&missing), -32602, "{missing}");
}

#[tokio::test]
async fn a_retried_request_id_answers_the_first_borrow_even_after_a_restart() {
    let mut server = Server::start(POOL).await;
    let params = with_request_id(borrow_params(3_600, 7_200), "client-7/attempt");
    let first = server.result("BorrowLicenseV1", params.clone()).await;
    let again = server.result("BorrowLicenseV1", params.clone()).await;
    assert_eq!(first, again);
    assert_eq!(listed(&server).await.len(), 1);

    server.kill9().await;
    server.restart().await;
    let after_restart = server.result("BorrowLicenseV1", params.clone()).await;
    assert_eq!(first, after_restart);
    assert_eq!(listed(&server).await.len(), 1);

    // A refusal is remembered as well.
    let other = with_request_id(borrow_params(3_600, 7_200), "client-8");
    let refused = server.call("BorrowLicenseV1", other.clone()).await;
    assert_eq!(error_code_of(&refused), 32, "{refused}");
    assert_eq!(server.call("BorrowLicenseV1", other).await, refused);
}

#[tokio::test]
async fn a_request_id_reused_for_another_request_or_malformed_is_invalid_params() {
    let server = Server::start(POOL).await;
    server
        .result(
            "BorrowLicenseV1",
            with_request_id(borrow_params(3_600, 7_200), "k"),
        )
        .await;
    let reused = server
        .call(
            "BorrowLicenseV1",
            with_request_id(borrow_params(10_000, 20_000), "k"),
        )
        .await;
    assert_eq!(error_code_of(&reused), -32602, "{reused}");
    for bad in [json!(""), json!(7), json!("x".repeat(129)), json!("a\nb")] {
        let mut params = borrow_params(30_000, 40_000);
        params["requestId"] = bad.clone();
        let answer = server.call("BorrowLicenseV1", params).await;
        assert_eq!(error_code_of(&answer), -32602, "{bad}: {answer}");
    }
    assert_eq!(listed(&server).await.len(), 1);
}
