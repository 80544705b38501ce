"""Checks Haven's FHIR R4 REST API as an independent client, from the specification.

Written against https://hl7.org/fhir/R4/http.html with the `requests` library, not with
any of Haven's code: what a third-party FHIR client expects of a server. Run by
`crates/server/tests/fhir_client.rs` with

    HAVEN_FHIR_BASE   the server's base URL, ending in /fhir
    HAVEN_TOKEN       a bearer token of a clinician on the patient's care team
    HAVEN_PATIENT     the patient's id

Each check prints its name; the first failure raises, and the exit status is non-zero.
"""

import os
import sys

import requests

BASE = os.environ["HAVEN_FHIR_BASE"]
PATIENT = os.environ["HAVEN_PATIENT"]
SESSION = requests.Session()
SESSION.headers["Authorization"] = "Bearer " + os.environ["HAVEN_TOKEN"]
SESSION.headers["Accept"] = "application/fhir+json"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def fhir(response):
    """The JSON body, checked to be FHIR JSON (§3.1.0.1.8 content types)."""
    check(
        response.headers.get("Content-Type", "").startswith("application/fhir+json"),
        f"content type {response.headers.get('Content-Type')!r}",
    )
    return response.json()


def outcome(response, status):
    """An error is an OperationOutcome with at least one issue (§3.1.0.4)."""
    check(response.status_code == status, f"status {response.status_code}, want {status}: {response.text}")
    body = fhir(response)
    check(body["resourceType"] == "OperationOutcome", f"not an OperationOutcome: {body}")
    check(len(body["issue"]) >= 1 and body["issue"][0]["severity"] in ("error", "fatal"), "an error issue")
    return body["issue"][0]


def observation(value, when, code="8867-4"):
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


def search_all(url, params):
    """Follows `next` links (§3.1.1.5.6 paging) and returns every matched resource."""
    found = []
    seen_urls = set()
    response = SESSION.get(url, params=params)
    while True:
        check(response.status_code == 200, f"search: {response.status_code} {response.text}")
        bundle = fhir(response)
        check(bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", "a searchset Bundle")
        found += [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]
        nexts = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not nexts:
            return found, bundle.get("total")
        check(nexts[0] not in seen_urls, "paging does not loop")
        seen_urls.add(nexts[0])
        response = SESSION.get(nexts[0])


def capability_statement():
    response = requests.get(f"{BASE}/metadata", headers={"Accept": "application/fhir+json"})
    check(response.status_code == 200, "metadata needs no credentials")
    body = fhir(response)
    check(body["resourceType"] == "CapabilityStatement", "a CapabilityStatement")
    check(body["fhirVersion"].startswith("4.0"), "FHIR R4")
    types = {r["type"]: r for r in body["rest"][0]["resource"]}
    check("Observation" in types, "Observation is served")
    codes = {i["code"] for i in types["Observation"]["interaction"]}
    check({"read", "vread", "update", "delete", "history-instance", "create", "search-type"} <= codes, f"interactions {codes}")
    check(types["Observation"]["versioning"] in ("versioned", "versioned-update"), "versioned")


def create_read_update_and_conflicts():
    created = SESSION.post(f"{BASE}/Observation", json=observation(72, "2024-03-15T10:30:00Z"), headers=FHIR_JSON)
    check(created.status_code == 201, f"create: {created.status_code} {created.text}")
    body = fhir(created)
    rid = body["id"]
    # §3.1.0.8: Location is [base]/[type]/[id]/_history/[vid]; ETag is W/"[vid]".
    check(created.headers["Location"].endswith(f"Observation/{rid}/_history/1"), created.headers["Location"])
    check(created.headers["ETag"] == 'W/"1"', created.headers["ETag"])
    check(body["meta"]["versionId"] == "1" and "lastUpdated" in body["meta"], "meta set by the server")

    read = SESSION.get(f"{BASE}/Observation/{rid}")
    check(read.status_code == 200 and fhir(read) == body, "read returns what was created")
    check(read.headers["ETag"] == 'W/"1"', "read carries the ETag")

    body["valueQuantity"]["value"] = 80
    updated = SESSION.put(f"{BASE}/Observation/{rid}", json=body, headers={**FHIR_JSON, "If-Match": 'W/"1"'})
    check(updated.status_code == 200, f"update: {updated.status_code} {updated.text}")
    check(updated.headers["ETag"] == 'W/"2"', "the version moved on")

    # §3.1.0.5.1 managing contention: a stale If-Match is 412 and changes nothing.
    body["valueQuantity"]["value"] = 99
    stale = SESSION.put(f"{BASE}/Observation/{rid}", json=body, headers={**FHIR_JSON, "If-Match": 'W/"1"'})
    outcome(stale, 412)
    check(fhir(SESSION.get(f"{BASE}/Observation/{rid}"))["valueQuantity"]["value"] == 80, "the stale update changed nothing")

    # An update whose id differs from the URL is refused (§3.1.0.6).
    wrong = dict(body, id="another-id")
    outcome(SESSION.put(f"{BASE}/Observation/{rid}", json=wrong, headers=FHIR_JSON), 400)

    # A transaction naming one resource twice conflicts (409) and applies nothing.
    current = fhir(SESSION.get(f"{BASE}/Observation/{rid}"))
    twice = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": current, "request": {"method": "PUT", "url": f"Observation/{rid}"}},
            {"resource": current, "request": {"method": "PUT", "url": f"Observation/{rid}"}},
        ],
    }
    outcome(SESSION.post(BASE, json=twice, headers=FHIR_JSON), 409)
    check(fhir(SESSION.get(f"{BASE}/Observation/{rid}"))["meta"]["versionId"] == "2", "the conflicting transaction changed nothing")

    # vread and history (§3.1.0.3, §3.1.0.10).
    first = SESSION.get(f"{BASE}/Observation/{rid}/_history/1")
    check(first.status_code == 200 and fhir(first)["valueQuantity"]["value"] == 72, "vread of version 1")
    history = fhir(SESSION.get(f"{BASE}/Observation/{rid}/_history"))
    check(history["type"] == "history", "a history Bundle")
    versions = [e["resource"]["meta"]["versionId"] for e in history["entry"]]
    check(versions == ["2", "1"], f"newest first: {versions}")

    # Delete (§3.1.0.7): then read is 410 Gone, and the history shows the deletion.
    check(SESSION.delete(f"{BASE}/Observation/{rid}").status_code in (200, 204), "delete")
    outcome(SESSION.get(f"{BASE}/Observation/{rid}"), 410)
    history = fhir(SESSION.get(f"{BASE}/Observation/{rid}/_history"))
    check(history["entry"][0]["request"]["method"] == "DELETE", "the deletion is in the history")
    check(SESSION.get(f"{BASE}/Observation/{rid}/_history/2").status_code == 200, "older versions stay readable")


def search_with_prefixes_and_paging():
    dates = ["2023-06-01", "2023-12-31T23:59:59Z", "2024-01-01T00:00:00Z", "2024-02-15", "2024-07-04", "2025-01-10"]
    ids = []
    for i, when in enumerate(dates):
        created = SESSION.post(f"{BASE}/Observation", json=observation(60 + i, when, code="9279-1"), headers=FHIR_JSON)
        check(created.status_code == 201, created.text)
        ids.append(fhir(created)["id"])
    url = f"{BASE}/Observation"
    base = {"patient": f"Patient/{PATIENT}", "code": "http://loinc.org|9279-1"}

    def ids_for(**extra):
        found, _ = search_all(url, {**base, **extra})
        return sorted(r["id"] for r in found)

    # §3.1.1.5.8 date search: the precision of the value defines the range.
    check(ids_for(date="2024") == sorted(ids[2:5]), "date=2024")
    check(ids_for(date="ge2024-01-01") == sorted(ids[2:]), "ge2024-01-01")
    check(ids_for(date="lt2024") == sorted(ids[:2]), "lt2024")
    check(ids_for(date="gt2024-02-15") == sorted(ids[4:]), "gt2024-02-15 (the whole day is excluded)")
    check(ids_for(date="le2024-02-15") == sorted(ids[:4]), "le2024-02-15")
    both = ids_for(**{"date": ["ge2023-12-31", "lt2024-03"]})
    check(both == sorted(ids[1:4]), f"two date parameters are ANDed: {both}")
    check(ids_for(date="eq2023-06") == [ids[0]], "eq2023-06")

    # Sorting and paging: every match exactly once, in order.
    found, total = search_all(url, {**base, "_sort": "-date", "_count": "2"})
    check([r["id"] for r in found] == list(reversed(ids)), "_sort=-date across pages")
    check(total == len(ids), f"total {total}")
    found, _ = search_all(url, {**base, "_count": "4"})
    check(sorted(r["id"] for r in found) == sorted(ids), "paging without a sort")

    # Unknown parameters are refused rather than silently ignored.
    outcome(SESSION.get(url, params={**base, "flavour": "mint"}), 400)


def transactions_roll_back_completely():
    url = f"{BASE}/Observation"
    params = {"patient": PATIENT, "code": "http://loinc.org|2708-6"}
    before, _ = search_all(url, params)

    good = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1d6b3c4a-5f2e-4f7a-9a51-000000000001", "resource": observation(97, "2024-04-01", code="2708-6"), "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:1d6b3c4a-5f2e-4f7a-9a51-000000000002", "resource": observation(98, "2024-04-02", code="2708-6"), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    response = SESSION.post(BASE, json=good, headers=FHIR_JSON)
    check(response.status_code == 200, f"transaction: {response.status_code} {response.text}")
    answer = fhir(response)
    check(answer["type"] == "transaction-response", "a transaction-response")
    check(all(e["response"]["status"].startswith("201") for e in answer["entry"]), "both created")
    after_good, _ = search_all(url, params)
    check(len(after_good) == len(before) + 2, "both stored")

    # One bad entry among good ones: nothing is stored (§3.1.0.11.2).
    bad = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": good["entry"] + [
            {"resource": dict(observation(99, "2024-04-03", code="2708-6"), status="done"), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    issue = outcome(SESSION.post(BASE, json=bad, headers=FHIR_JSON), 400)
    check("Bundle.entry[2]" in issue.get("expression", [""])[0], f"the failing entry is named: {issue}")
    after_bad, _ = search_all(url, params)
    check(len(after_bad) == len(after_good), "a failed transaction stores nothing")

    # A stale If-Match in the last entry: the same.
    target = after_good[0]
    stale = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": observation(50, "2024-04-05", code="2708-6"), "request": {"method": "POST", "url": "Observation"}},
            {"resource": target, "request": {"method": "PUT", "url": f"Observation/{target['id']}", "ifMatch": 'W/"9"'}},
        ],
    }
    outcome(SESSION.post(BASE, json=stale, headers=FHIR_JSON), 412)
    after_stale, _ = search_all(url, params)
    check(len(after_stale) == len(after_good), "a transaction with a stale entry stores nothing")


CHECKS = [
    capability_statement,
    create_read_update_and_conflicts,
    search_with_prefixes_and_paging,
    transactions_roll_back_completely,
]

if __name__ == "__main__":
    for check_fn in CHECKS:
        print(check_fn.__name__, flush=True)
        check_fn()
    print(f"{len(CHECKS)} checks passed")
    sys.exit(0)
