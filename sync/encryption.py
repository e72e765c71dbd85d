"""Encrypt secrets at rest with the keys of SYNC_SECRET_KEYS: the first encrypts, any decrypts."""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from sync.exceptions import SecretUnreadable

# Ciphertexts are decrypted once per process: a records request then pays a dictionary
# lookup, not an HMAC and an AES pass. The plaintext lives only in this process's memory.
DECRYPTED_CACHE_SIZE = 4096


def encrypt(plain: str) -> str:
    """Return the text encrypted under the first key of SYNC_SECRET_KEYS."""
    return _fernet(_keys()).encrypt(plain.encode()).decode()


def decrypt(token: str, what: str) -> str:
    """Return the plaintext of a token; SecretUnreadable naming `what` if no key opens it."""
    try:
        return _decrypt(token, _keys())
    except InvalidToken:
        raise SecretUnreadable(
            f"{what} cannot be decrypted with any key of SYNC_SECRET_KEYS: the key that "
            "encrypted it is missing from the list, or the stored value was altered"
        ) from None


def reencrypt(token: str, what: str) -> str:
    """Return the token encrypted anew under the first key (for key rotation)."""
    try:
        return _fernet(_keys()).rotate(token.encode()).decode()
    except InvalidToken:
        decrypt(token, what)  # raises the error that names it
        raise


def _keys() -> tuple[str, ...]:
    keys = tuple(settings.SYNC_SECRET_KEYS)
    if not keys:
        raise ImproperlyConfigured(
            "SYNC_SECRET_KEYS is not set: dbsync encrypts database URLs with it (comma-separated "
            "Fernet keys, the first encrypts). `make run` generates one in .run/; elsewhere make "
            "one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        )
    return keys


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


@lru_cache(maxsize=DECRYPTED_CACHE_SIZE)
def _decrypt(token: str, keys: tuple[str, ...]) -> str:
    # Keyed by the keys too: a token stays readable only while a key that opens it is listed.
    return _fernet(keys).decrypt(token.encode()).decode()
