"""A sandbox's changes kept in a file across restarts (SandboxConfig.state_file): loaded at start, saved at stop.

The generated dataset follows from the seed and the counts, so only what the API changed (the
overlays, the next ids, the clock) is saved, with the dataset it belongs to. A file saved for
other data is not loaded (it would change records that are not the ones it saw); the sandbox
says so and starts from the generated data, and its stop replaces the file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from keap_pipeline.sandbox.config import SandboxConfig
from keap_pipeline.sandbox.errors import SandboxStartError
from keap_pipeline.sandbox.state import SandboxState

log = logging.getLogger("keap_pipeline.sandbox")

FORMAT = 1
# what decides the generated data: a saved state fits a sandbox with the same values
DATASET_FIELDS = ("seed", "contacts", "tags", "products", "orders", "subscriptions", "companies")


def dataset_of(config: SandboxConfig) -> dict[str, int | None]:
    """The settings that decide a sandbox's generated data.

    Args:
        config: a sandbox configuration.

    Returns:
        seed and counts, by name (None: scaled from contacts).
    """
    return {name: getattr(config, name) for name in DATASET_FIELDS}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("not loading the saved sandbox state %s (%s): starting from the generated data", path,
                    getattr(err, "strerror", None) or "not JSON")
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        log.warning("not loading the saved sandbox state %s (not format %d): starting from the generated data",
                    path, FORMAT)
        return None
    return data


def saved_dataset(path: Path) -> dict[str, int | None] | None:
    """The dataset a saved state belongs to, to start a sandbox that can load it (as `make ui` does).

    Args:
        path: the state file.

    Returns:
        SandboxConfig keyword arguments (seed and counts), or None when there is no readable file.
    """
    data = _read(path)
    dataset = data.get("dataset") if data else None
    if not isinstance(dataset, dict) or set(dataset) != set(DATASET_FIELDS):
        return None
    return {name: dataset[name] for name in DATASET_FIELDS}


def load(state: SandboxState, path: Path) -> int:
    """Restore the changes saved in a file into a freshly started sandbox, when they fit its data.

    Args:
        state: the new sandbox's state.
        path: the state file (absent: nothing to do).

    Returns:
        How many changed records were restored.
    """
    data = _read(path)
    if data is None:
        return 0
    wanted = dataset_of(state.config)
    if data.get("dataset") != wanted:
        log.warning(
            "not loading the saved sandbox state %s: it was saved by a sandbox with other data (%s), this one "
            "has %s; starting from the generated data (the file is replaced when this sandbox stops)",
            path, data.get("dataset"), wanted,
        )
        return 0
    try:
        restored = state.restore(data["state"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        log.warning("not loading the saved sandbox state %s (%s): starting from the generated data", path, err)
        return 0
    log.info("Keap sandbox: %d changed record(s) restored from %s", restored, path)
    return restored


def writable(path: Path) -> None:
    """Check at start that the state file can be written at stop (its folder made, a file written there).

    Raises:
        SandboxStartError: it cannot: said now, not after the changes were made and lost at stop.
    """
    probe = path.with_name(f"{path.name}.{os.getpid()}.probe")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as err:
        raise SandboxStartError(
            f"--state-file {path}: cannot write there ({err.strerror}); the changes would be lost at stop"
        ) from None


def save(state: SandboxState, path: Path) -> None:
    """Write the sandbox's changes to the file, atomically (a reader never sees half of it).

    Args:
        state: the stopping sandbox's state.
        path: the state file; its folder is created if needed.
    """
    snapshot = state.snapshot()
    data = {"format": FORMAT, "dataset": dataset_of(state.config), "state": snapshot}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)
    changed = sum(len(entries) for entries in snapshot["overlays"].values())
    log.info("Keap sandbox: %d changed record(s) saved to %s", changed, path)
