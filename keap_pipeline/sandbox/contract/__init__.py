"""The Keap v2 contract derived from the official spec: its committed file, and loading it."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from keap_pipeline.sandbox.errors import ContractError

CONTRACT_PATH = Path(__file__).with_name("keap-v2-contract.json")


@lru_cache(maxsize=1)
def load_contract(path: Path = CONTRACT_PATH) -> dict[str, Any]:
    """The committed contract (parsed once per process).

    Args:
        path: the contract file; default the one inside the package.

    Returns:
        The contract document (see derive.derive for its layout).

    Raises:
        ContractError: the file is missing or not JSON.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ContractError(f"cannot load the Keap contract {path}: {err}") from err
