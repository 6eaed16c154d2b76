//! An acknowledged borrow survives `kill -9`: after a restart on the same data dir the
//! license string, the listing and the capacity it takes are all still there.

mod common;

use std::collections::BTreeMap;

use common::borrow_api::{
    assert_error, borrow, get_license, interval, intervals, now, params, z, DAY, HOUR,
};
use common::{Server, SAMPLE_POOL};
use serde_json::{json, Value};

const SEED_UUID: &str = "118cf2e7b3d20001";
const SEED_MAC: &str = "MAC:2C549188C9E3";
const OTHER_MAC: &str = "MAC:0A1B2C3D4E5F";

async fn refused_with(server: &Server, params: Value, code: i64) {
    let response = server.call("BorrowLicenseV1", params.clone()).await;
    assert_eq!(
        response["error"]["code"],
        json!(code),
        "{params} -> {response}"
    );
    assert_error(&response, code);
}

#[tokio::test]
async fn a_borrow_survives_kill_9_with_its_license_string_listing_and_capacity() {
    let mut server = Server::start(SAMPLE_POOL).await;
    let t = now();
    let mut p = params(
        SEED_UUID,
        SEED_MAC,
        Some(&z(t, HOUR)),
        Some(&z(t, 13 * HOUR)),
    );
    p["userInfo"] = json!("Jane Doe");
    let (license, borrow_id) = borrow(&server, p).await;
    let (default_license, default_id) =
        borrow(&server, params("halcon-3", OTHER_MAC, None, None)).await;
    let listed = interval(&server, SEED_UUID, &borrow_id).await;
    let listed_default = interval(&server, "halcon-3", &default_id).await;
    let (_, key_before) = server.get("/public-key").await;

    server.kill9().await;
    assert!(!server.is_running());
    server.restart().await;

    assert_eq!(get_license(&server, &borrow_id).await, license);
    assert_eq!(get_license(&server, &default_id).await, default_license);
    assert_eq!(interval(&server, SEED_UUID, &borrow_id).await, listed);
    assert_eq!(
        interval(&server, "halcon-3", &default_id).await,
        listed_default
    );
    assert_eq!(
        listed,
        json!({"validFrom": z(t, HOUR), "validUntil": z(t, 13 * HOUR), "hostId": SEED_MAC,
               "userInfo": "Jane Doe", "borrowId": borrow_id})
    );
    // The same key signs and verifies after the restart.
    assert_eq!(server.get("/public-key").await.1, key_before);
    // The slot is still taken, by any host; the free time around it is not.
    refused_with(
        &server,
        params(
            SEED_UUID,
            OTHER_MAC,
            Some(&z(t, HOUR)),
            Some(&z(t, 13 * HOUR)),
        ),
        32,
    )
    .await;
    refused_with(
        &server,
        params(
            SEED_UUID,
            SEED_MAC,
            Some(&z(t, 12 * HOUR)),
            Some(&z(t, DAY)),
        ),
        32,
    )
    .await;
    let (later_license, later_id) = borrow(
        &server,
        params(
            SEED_UUID,
            OTHER_MAC,
            Some(&z(t, 13 * HOUR)),
            Some(&z(t, DAY)),
        ),
    )
    .await;

    // A second crash keeps what came before and after the first one.
    server.kill9().await;
    server.restart().await;
    assert_eq!(get_license(&server, &borrow_id).await, license);
    assert_eq!(get_license(&server, &later_id).await, later_license);
    let ids: Vec<Value> = intervals(&server, SEED_UUID)
        .await
        .iter()
        .map(|i| i["borrowId"].clone())
        .collect();
    assert_eq!(ids, vec![json!(borrow_id), json!(later_id)]);
    refused_with(
        &server,
        params(
            SEED_UUID,
            OTHER_MAC,
            Some(&z(t, 2 * HOUR)),
            Some(&z(t, 3 * HOUR)),
        ),
        32,
    )
    .await;
    let response = server
        .call(
            "GetBorrowedLicenseV1",
            json!({"borrowId": "934c1302-1320-42c3-a3ef-6340ff8cd2f3"}),
        )
        .await;
    assert_error(&response, 34);
}

#[tokio::test]
async fn a_full_license_stays_full_after_kill_9() {
    let mut server = Server::start(SAMPLE_POOL).await;
    let t = now();
    let slot = |host: &str| params("halcon-3", host, Some(&z(t, HOUR)), Some(&z(t, 2 * HOUR)));
    let mut issued = Vec::new();
    for host in [SEED_MAC, OTHER_MAC, "CM:3-1234567890"] {
        issued.push(borrow(&server, slot(host)).await);
    }
    server.kill9().await;
    server.restart().await;
    refused_with(&server, slot("MAC:111111111111"), 32).await;
    for (license, id) in &issued {
        assert_eq!(&get_license(&server, id).await, license);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_borrow_of_a_burst_survives_kill_9() {
    let mut server = Server::start(SAMPLE_POOL).await;
    let t = now();
    // Below the 64 current and upcoming borrows per seat (192 for this license).
    let total = 180;
    // Distinct hourly intervals on the count-3 license: every borrow fits.
    let requests: Vec<Value> = (0..total)
        .map(|i| {
            let from = HOUR + i * HOUR;
            let host = format!("MAC:{:012X}", i + 1);
            json!({"jsonrpc": "2.0", "method": "BorrowLicenseV1", "id": i,
                   "params": params("halcon-3", &host, Some(&z(t, from)), Some(&z(t, from + HOUR)))})
        })
        .collect();
    let answers = futures::future::join_all(requests.iter().map(|r| server.post(r))).await;
    // Kill the moment the last acknowledgement is in.
    server.kill9().await;

    let mut acknowledged = BTreeMap::new();
    for (request, answer) in requests.iter().zip(&answers) {
        let result = answer
            .get("result")
            .unwrap_or_else(|| panic!("borrow {} refused: {answer}", request["id"]));
        let borrow_id = result["borrowId"].as_str().expect("borrowId").to_string();
        let license = result["license"].as_str().expect("license").to_string();
        acknowledged.insert(borrow_id, (license, request["params"].clone()));
    }
    assert_eq!(acknowledged.len(), total as usize, "borrowIds are unique");

    server.restart().await;
    for (borrow_id, (license, _)) in &acknowledged {
        assert_eq!(
            &get_license(&server, borrow_id).await,
            license,
            "borrow {borrow_id}"
        );
    }
    let listed = intervals(&server, "halcon-3").await;
    assert_eq!(listed.len(), total as usize);
    for interval in &listed {
        let borrow_id = interval["borrowId"].as_str().expect("borrowId");
        let (_, sent) = &acknowledged[borrow_id];
        assert_eq!(interval["validFrom"], sent["validFrom"]);
        assert_eq!(interval["validUntil"], sent["validUntil"]);
        assert_eq!(interval["hostId"], sent["hostId"]);
    }
    let froms: Vec<&str> = listed
        .iter()
        .map(|i| i["validFrom"].as_str().unwrap_or(""))
        .collect();
    let mut sorted = froms.clone();
    sorted.sort();
    assert_eq!(froms, sorted, "listed by validFrom");
}
