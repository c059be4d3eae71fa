"""The committed contract is exactly what the deriving script makes of Keap's spec, and is self-contained."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keap_pipeline.sandbox.contract import CONTRACT_PATH, load_contract
from keap_pipeline.sandbox.contract.__main__ import main
from keap_pipeline.sandbox.contract.derive import OPERATIONS, dumps

# ../shared beside the repository on the machines that have it; KEAP_SPEC_PATH elsewhere.
SPEC = Path(os.environ.get("KEAP_SPEC_PATH", Path(__file__).resolve().parents[3] / "shared/keap/keap-rest-v2.openapi.yml"))


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_committed_contract_is_a_fresh_derivation_or_at_least_self_contained(tmp_path: Path) -> None:
    committed = CONTRACT_PATH.read_text(encoding="utf-8")
    contract = json.loads(committed)
    if SPEC.is_file():
        fresh = tmp_path / "fresh.json"
        assert main(["--spec", str(SPEC), "--out", str(fresh)]) == 0  # the committed deriving script
        assert fresh.read_text(encoding="utf-8") == committed, (
            "keap-v2-contract.json is stale: python -m keap_pipeline.sandbox.contract --spec " + str(SPEC)
        )
    else:  # CI machines without ../shared: the committed file must still stand on its own
        assert dumps(contract) == committed
    schemas = contract["components"]["schemas"]
    assert {(op["path"], op["method"]) for op in contract["operations"].values()} == set(OPERATIONS)
    for ref in _refs(contract):
        assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas, ref
    assert contract["source"]["openapi"].startswith("3.1")


def test_contract_has_what_the_sandbox_relies_on() -> None:
    contract = load_contract()
    ops = contract["operations"]
    params = {p["name"]: p for p in ops["listContacts"]["parameters"]}
    assert params["page_size"]["schema"]["maximum"] == 1000
    assert params["fields"]["explode"] is False
    assert "start_update_time" in params["filter"]["description"]
    error = contract["components"]["schemas"]["Error"]["properties"]
    assert set(error) == {"code", "message", "status", "details"} and error["code"]["type"] == "integer"
    assert "204" in ops["deleteContact"]["responses"]


def test_deriving_from_a_missing_or_foreign_file_fails_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    assert main(["--spec", str(tmp_path / "absent.yml"), "--out", str(out)]) == 2
    (tmp_path / "not-openapi.yml").write_text("swagger: '2.0'\n")
    assert main(["--spec", str(tmp_path / "not-openapi.yml"), "--out", str(out)]) == 2
    assert not out.exists()
