"""MVTec's Python client of the Borrow API, unmodified but for BASE_URL, run against a server.

Usage: python3 tests/mvtec_client.py http://127.0.0.1:22022/licenses
(or set LICENSED_URL). Exits non-zero when anything differs from what the Borrow API promises.

The functions call_api, list_licenses, borrow_license and get_borrowed_license are the
Borrow API document's, letter for letter; only BASE_URL comes from the command line.
"""

import os
import sys

import requests
import json

BASE_URL = (
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("LICENSED_URL", "https://localhost:22022/licenses")
)
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json"
}

def call_api(method: str, params: dict | list = None, request_id: int = 1) -> dict:
    """
    Make a JSON-RPC call to the Borrow API.
    Args:
    method: The API method to call
    params: Parameters to pass to the method
    request_id: Unique request identifier
    Returns:
    The JSON response as a dictionary
    """
    payload = {
    "jsonrpc": "2.0",
    "method": method,
    "params": params if params is not None else [],
    "id": request_id
    }
    response = requests.post(BASE_URL, headers=HEADERS, json=payload)
    response.raise_for_status()
    return response.json()

def list_licenses() -> list:
    """Retrieve all licenses from the server."""
    response = call_api("ListLicensesV1")
    if "error" in response:
        raise Exception(f"API Error: {response['error']['message']}")
    return response["result"]

from datetime import datetime, timedelta
def borrow_license(
    feature: str,
    uuid: str,
    host_id: str,
    valid_from: datetime,
    valid_until: datetime,
    user_info: str = None
) -> str:
    """
    Borrow a license for offline usage.
    Args:
    feature: License feature type (MVTec_HDevelop or MVTec_HALCON)
    uuid: Unique identifier of the license
    host_id: Host ID of the target machine
    valid_from: Start of the borrow period
    valid_until: End of the borrow period
    user_info: Optional user information
    Returns:
    The license string
    """
    params = {
    "feature": feature,
    "uuid": uuid,
    "hostId": host_id,
    "validFrom": valid_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "validUntil": valid_until.strftime("%Y-%m-%dT%H:%M:%SZ")
    }
    if user_info:
        params["userInfo"] = user_info
    response = call_api("BorrowLicenseV1", params)
    if "error" in response:
        error = response["error"]
        raise Exception(f"API Error {error['code']}: {error['message']}")
    return response["result"]["license"]

def get_borrowed_license(borrow_id: str) -> str:
    """
    Retrieve a previously borrowed license.
    Args:
    borrow_id: The unique identifier of the borrowed license
    Returns:
    The license string
    """
    params = {"borrowId": borrow_id}
    response = call_api("GetBorrowedLicenseV1", params)
    if "error" in response:
        error = response["error"]
        raise Exception(f"API Error {error['code']}: {error['message']}")
    return response["result"]["license"]


# ---- driver: the document's usage examples, with checks --------------------------------------


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def expect_api_error(action, expected: str) -> None:
    """Runs `action`, which must raise the client's exception with text `expected`."""
    try:
        action()
    except Exception as error:  # the client's functions raise plain Exception
        if str(error) != expected:
            fail(f"expected {expected!r}, got {str(error)!r}")
        return
    fail(f"expected {expected!r}, but the call succeeded")


def main() -> None:
    print(f"Borrow API at {BASE_URL}")

    # The document's "List All Licenses" usage.
    licenses = list_licenses()
    for license in licenses:
        print(f"License: {license['feature']} - {license['uuid']}")
        print(f"  Edition: {license['edition']}, Version: {license['version']}")
        if license.get('borrowedIntervals'):
            print(f"  Borrowed intervals: {len(license['borrowedIntervals'])}")
    example = [l for l in licenses
            if l["feature"] == "MVTec_HDevelop" and l["uuid"] == "118cf2e7b3d20001"]
    if len(example) != 1:
        fail(f"the example license is not listed once: {licenses}")
    if example[0].get("borrowedIntervals"):
        fail(f"a fresh server lists borrows: {example[0]}")

    # The document's "Borrow a License" usage.
    now = datetime.utcnow()
    license_data = borrow_license(
        feature="MVTec_HDevelop",
        uuid="118cf2e7b3d20001",
        host_id="MAC:2C549188C9E3",
        valid_from=now,
        valid_until=now + timedelta(hours=12),
        user_info="Jane Doe"
    )
    print(f"Borrowed license: {license_data[:50]}...")
    if not isinstance(license_data, str) or not license_data:
        fail(f"the license is not a non-empty string: {license_data!r}")

    # borrow_license returns only the license string: find the borrowId in the listing.
    valid_from = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    valid_until = (now + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    example = [l for l in list_licenses() if l["uuid"] == "118cf2e7b3d20001"][0]
    intervals = example.get("borrowedIntervals") or []
    matching = [i for i in intervals
                if i["hostId"] == "MAC:2C549188C9E3"
                and i["validFrom"] == valid_from
                and i["validUntil"] == valid_until
                and i.get("userInfo") == "Jane Doe"]
    if len(matching) != 1:
        fail(f"the borrow ({valid_from} to {valid_until}) is not listed once: {intervals}")
    borrow_id = matching[0]["borrowId"]

    # The document's "Get a Borrowed License" usage, with the borrowId we found.
    retrieved = get_borrowed_license(borrow_id)
    print(f"Retrieved license: {retrieved[:50]}...")
    if retrieved != license_data:
        fail("GetBorrowedLicenseV1 returned a different license string")

    # The errors come through the client as "API Error <code>: <message>".
    expect_api_error(
        lambda: borrow_license("MVTec_HDevelop", "118cf2e7b3d20001", "MAC:0A1B2C3D4E5F",
                               now, now + timedelta(hours=12)),
        "API Error 32: License not available for borrowing in the requested time interval")
    expect_api_error(
        lambda: borrow_license("MVTec_HDevelop", "no-such-license", "MAC:2C549188C9E3",
                               now, now + timedelta(hours=1)),
        "API Error 34: No matching license found")
    expect_api_error(
        lambda: borrow_license("MVTec_HDevelop", "118cf2e7b3d20001", "MAC:2C549188C9E3",
                               now + timedelta(hours=2), now + timedelta(hours=1)),
        "API Error 35: Invalid borrow interval")
    expect_api_error(
        lambda: borrow_license("MVTec_HDevelop", "118cf2e7b3d20001", "2C549188C9E3",
                               now, now + timedelta(hours=1)),
        "API Error 36: Invalid host id")
    expect_api_error(
        lambda: get_borrowed_license("934c1302-1320-42c3-a3ef-6340ff8cd2f3"),
        "API Error 34: No matching license found")
    print("OK")


if __name__ == "__main__":
    main()
