"""python -m keap_pipeline.sandbox.contract --spec PATH --out PATH: write the derived contract."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from keap_pipeline.sandbox.contract import CONTRACT_PATH
from keap_pipeline.sandbox.contract.derive import derive, dumps, load_spec
from keap_pipeline.sandbox.errors import ContractError

log = logging.getLogger("keap_pipeline.sandbox.contract")


def main(argv: list[str] | None = None) -> int:
    """Derive the contract from the spec and write it.

    Args:
        argv: command-line arguments (default sys.argv[1:]).

    Returns:
        The exit status: 0 written, 2 the spec could not be used.
    """
    parser = argparse.ArgumentParser(prog="python -m keap_pipeline.sandbox.contract", description=__doc__)
    parser.add_argument("--spec", type=Path, required=True, help="keap-rest-v2.openapi.yml")
    parser.add_argument("--out", type=Path, default=CONTRACT_PATH, help=f"default {CONTRACT_PATH}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        spec, sha = load_spec(args.spec)
        contract = derive(spec, sha, args.spec.name)
    except ContractError as err:
        log.error("%s", err)
        return 2
    args.out.write_text(dumps(contract), encoding="utf-8")
    log.info(
        "wrote %s: %d operations, %d schemas",
        args.out,
        len(contract["operations"]),
        len(contract["components"]["schemas"]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
