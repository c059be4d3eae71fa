"""OAuth tokens at rest: Fernet-encrypted, written atomically, refreshed under a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from keap_pipeline.keap.errors import TokenStoreError
from keap_pipeline.keap.secret import Secret

log = logging.getLogger(__name__)

KEY_ENV = "KEAP_TOKEN_ENCRYPTION_KEY"


@dataclass(frozen=True)
class TokenSet:
    """An OAuth access/refresh token pair; the tokens are Secrets, so the repr is masked."""

    access_token: Secret
    refresh_token: Secret
    expires_at: datetime | None = None

    def expires_within(self, seconds: float, now: datetime) -> bool:
        """Whether the access token expires within ``seconds`` of ``now``.

        Args:
            seconds: the safety margin.
            now: the current time (aware).

        Returns:
            True if it does; False if it does not or the expiry is unknown.
        """
        if self.expires_at is None:
            return False
        return (self.expires_at - now).total_seconds() <= seconds


class EncryptedTokenStore:
    """One OAuth token pair in a Fernet-encrypted file, replaced atomically on every save.

    The encryption key comes from the environment variable ``key_env`` (read when the store
    is created, never at import) unless given explicitly. A lock file beside the token file
    serialises refreshes between processes.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, key: Secret | str | None = None, key_env: str = KEY_ENV
    ) -> None:
        """Open (not read) the store.

        Args:
            path: the token file; its directory must exist and be writable.
            key: the Fernet key; when None it is read from ``key_env``.
            key_env: the environment variable that holds the key.

        Raises:
            TokenStoreError: the key is missing or is not a valid Fernet key.
        """
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        if key is None:
            raw = os.environ.get(key_env)
            if not raw:
                raise TokenStoreError(
                    f"{key_env} is not set: set it to a Fernet key (generate one with "
                    "`python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'`) to read or write the token store"
                )
            key = Secret(raw)
        try:
            self._fernet = Fernet(Secret(key).reveal().encode())
        except (ValueError, TypeError):
            # `from None`: the underlying decoding error may quote the key
            raise TokenStoreError(
                f"the token encryption key (from {key_env}) is not a valid Fernet key: "
                "it must be 32 url-safe base64-encoded bytes"
            ) from None

    def __repr__(self) -> str:
        return f"EncryptedTokenStore({str(self.path)!r})"

    def load(self) -> TokenSet | None:
        """Read and decrypt the stored pair.

        Returns:
            the tokens, or None if the file does not exist yet.

        Raises:
            TokenStoreError: the file cannot be decrypted (wrong key, tampered) or parsed.
        """
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TokenStoreError(f"cannot read token store {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(self._fernet.decrypt(blob))
            expires = data.get("expires_at")
            return TokenSet(
                access_token=Secret(data["access_token"]),
                refresh_token=Secret(data["refresh_token"]),
                expires_at=datetime.fromisoformat(expires) if expires else None,
            )
        except InvalidToken:
            raise TokenStoreError(
                f"cannot decrypt token store {self.path}: the encryption key is not the one it "
                "was written with, or the file was altered; restore the key or re-authorise"
            ) from None
        except (ValueError, KeyError, TypeError):
            raise TokenStoreError(
                f"token store {self.path} decrypts but does not hold a token pair; re-authorise"
            ) from None

    def save(self, tokens: TokenSet) -> None:
        """Encrypt and atomically replace the stored pair (temp file, fsync, rename, fsync dir).

        A crash at any point leaves either the old file or the new one, never a torn file.

        Args:
            tokens: the pair to store.

        Raises:
            TokenStoreError: the file could not be written.
        """
        payload = {
            "access_token": tokens.access_token.reveal(),
            "refresh_token": tokens.refresh_token.reveal(),
            "expires_at": tokens.expires_at.astimezone(UTC).isoformat() if tokens.expires_at else None,
        }
        blob = self._fernet.encrypt(json.dumps(payload).encode())
        directory = self.path.parent
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(blob)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            # the rename is only durable once the directory entry is on disk
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise TokenStoreError(f"cannot write token store {self.path}: {exc.strerror}") from None
        log.info("saved refreshed OAuth tokens to %s", self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive flock on the lock file beside the token file.

        Raises:
            TokenStoreError: the lock file cannot be opened.
        """
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise TokenStoreError(f"cannot open lock file {self.lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            # closing the descriptor releases the flock
            os.close(fd)
