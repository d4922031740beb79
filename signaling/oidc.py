"""OpenID Connect, the relying party's side: discovery, the authorization code flow with
PKCE, and the checks on the ID token. No aiohttp here (signaling/sso_api.py serves it).

Authlib does the OAuth 2.0 parts (the authorization URL with its S256 code challenge,
the code exchange with the client's credentials) and its ``CodeIDToken`` the OpenID
Connect claim rules (``nonce``, ``azp``, ``at_hash``); joserfc, Authlib's own JOSE
library, checks the signature against the provider's published keys (JWKS). Only
asymmetric algorithms are taken: a token signed with ``none`` or with the client secret
(``HS256``) is refused.
"""

from __future__ import annotations

import secrets
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.deprecate import AuthlibDeprecationWarning

# Authlib 1.9 says at import that it would rather drive httpx2 than httpx (a nudge, not a
# change: its httpx client works as before), and forces that warning on ("always"), so it
# would land as a stray non-JSON line on the server's log. It is said once here instead.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCOPE = "openid email"
# Asymmetric JWS algorithms only (RFC 7518, RFC 8037).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
METADATA_TTL = 3600.0  # the provider's discovery document and keys are fetched again after
CLOCK_LEEWAY = 60  # seconds of clock difference allowed on exp/iat
HTTP_TIMEOUT = 10.0


class OidcError(Exception):
    """The sign-in cannot finish; ``code`` is the protocol error code, ``status`` HTTP's."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Metadata(BaseModel):
    """The parts of the provider's discovery document PulseRoom uses."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    token_endpoint_auth_methods_supported: list[str] = ["client_secret_basic"]


class Identity(BaseModel):
    """Who signed in, from the checked ID token (and the user info endpoint)."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    subject: str = Field(min_length=1, max_length=255)
    email: str | None
    email_verified: bool


@dataclass(frozen=True, slots=True)
class Flow:
    """One sign-in's secrets, kept by the browser (signed) between start and callback."""

    state: str
    nonce: str
    verifier: str  # PKCE code verifier

    @classmethod
    def new(cls) -> Flow:
        """Fresh random values (256 bits each; a verifier of 43 characters)."""
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(32))


@dataclass
class OidcClient:
    """One provider and this server's registration with it (PULSEROOM_OIDC_*)."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    _metadata: Metadata | None = field(default=None, init=False, repr=False)
    _keys: KeySet | None = field(default=None, init=False, repr=False)
    _fetched_at: float = field(default=0.0, init=False, repr=False)

    async def metadata(self) -> Metadata:
        """The discovery document (cached an hour); its issuer must be the one configured."""
        if self._metadata is None or time.monotonic() - self._fetched_at > METADATA_TTL:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                found = Metadata.model_validate(await _get_json(url))
            except ValidationError as exc:
                raise _unavailable(f"its discovery document is incomplete: {exc}") from None
            if found.issuer != self.issuer:
                raise _unavailable(f"its discovery document names issuer {found.issuer!r}")
            self._metadata, self._keys, self._fetched_at = found, None, time.monotonic()
        return self._metadata

    async def authorization_url(self, flow: Flow) -> str:
        """Where to send the browser: the provider's sign-in, for this flow."""
        metadata = await self.metadata()
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                metadata.authorization_endpoint,
                state=flow.state,
                code_verifier=flow.verifier,
                nonce=flow.nonce,
            )
        return str(url)

    async def finish(self, flow: Flow, code: str) -> Identity:
        """Exchange the code (with the PKCE verifier), check the ID token, read who it is."""
        metadata = await self.metadata()
        async with self._client(metadata) as client:
            try:
                token: dict[str, Any] = await client.fetch_token(
                    metadata.token_endpoint, code=code, code_verifier=flow.verifier
                )
            except OAuthError as exc:  # invalid_grant: a used, expired or foreign code
                raise OidcError(
                    400, "sso_failed", f"the provider refused the sign-in: {exc.error}"
                ) from None
            except httpx.HTTPError as exc:
                raise _unavailable(f"its token endpoint failed: {exc}") from None
            id_token = token.get("id_token")
            if not isinstance(id_token, str):
                raise OidcError(502, "sso_failed", "the provider sent no ID token")
            claims = await self._checked(id_token, flow.nonce, str(token.get("access_token", "")))
            if not {"email", "email_verified"} <= claims.keys() and metadata.userinfo_endpoint:
                claims = {**claims, **await self._userinfo(client, metadata, claims["sub"])}
        verified = claims.get("email_verified")
        email = claims.get("email")
        try:
            return Identity(
                issuer=self.issuer,
                subject=claims["sub"],
                email=email if isinstance(email, str) else None,
                # A few providers send the JSON string "true".
                email_verified=verified is True or verified == "true",
            )
        except ValidationError as exc:  # a subject over 255 characters
            raise OidcError(
                400, "sso_failed", f"the provider's subject is unusable: {exc}"
            ) from None

    async def _checked(self, id_token: str, nonce: str, access_token: str) -> dict[str, Any]:
        """The ID token's claims: signed by the provider's key, for this client, not
        expired, with this flow's nonce (OpenID Connect Core 1.0, 3.1.3.7)."""
        try:
            decoded = jwt.decode(id_token, await self._key_set(), algorithms=list(ALGORITHMS))
        except InvalidKeyIdError:  # a key not known yet: the provider rotated its keys
            try:
                keys = await self._key_set(refresh=True)
                decoded = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
            except (JoseError, ValueError) as exc:
                raise _bad_token(exc) from None
        except (JoseError, ValueError) as exc:  # bad signature, algorithm, or not a JWT
            raise _bad_token(exc) from None
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            options={
                "iss": {"essential": True, "value": self.issuer},
                "aud": {"essential": True, "value": self.client_id},
                "sub": {"essential": True},
                "nonce": {"essential": True, "value": nonce},
            },
            params={"nonce": nonce, "client_id": self.client_id, "access_token": access_token},
        )
        try:
            claims.validate(leeway=CLOCK_LEEWAY)
        except JoseError as exc:
            raise _bad_token(exc) from None
        if not isinstance(claims.get("sub"), str):
            raise _bad_token(ValueError("sub is not a string"))
        return dict(claims)

    async def _key_set(self, refresh: bool = False) -> KeySet:
        metadata = await self.metadata()
        if self._keys is None or refresh:
            try:
                self._keys = KeySet.import_key_set(await _get_json(metadata.jwks_uri))
            except (ValueError, JoseError, TypeError) as exc:
                raise _unavailable(f"its keys (JWKS) cannot be read: {exc}") from None
        return self._keys

    async def _userinfo(
        self, client: AsyncOAuth2Client, metadata: Metadata, subject: str
    ) -> dict[str, Any]:
        """The user info endpoint's claims, for the ID token's subject only (5.3.2)."""
        assert metadata.userinfo_endpoint is not None
        try:
            response = await client.get(metadata.userinfo_endpoint)
            response.raise_for_status()
            info = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _unavailable(f"its user info endpoint failed: {exc}") from None
        if not isinstance(info, dict) or info.get("sub") != subject:
            raise OidcError(502, "sso_failed", "the provider's user info is for someone else")
        return {k: info[k] for k in ("email", "email_verified") if k in info}

    def _client(self, metadata: Metadata | None = None) -> AsyncOAuth2Client:
        # HTTP Basic unless the provider takes the secret only in the form (RFC 6749, 2.3.1).
        method = "client_secret_basic"
        offered = metadata.token_endpoint_auth_methods_supported if metadata else []
        if metadata and method not in offered and "client_secret_post" in offered:
            method = "client_secret_post"
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method=method,
            scope=SCOPE,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT,
        )


async def _get_json(url: str) -> Any:
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            response = await client.get(url, headers={"accept": "application/json"})
            response.raise_for_status()
            return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise _unavailable(f"{url} failed: {exc}") from None


def _unavailable(why: str) -> OidcError:
    return OidcError(502, "sso_unavailable", f"the sign-in provider cannot be used: {why}")


def _bad_token(exc: Exception) -> OidcError:
    return OidcError(400, "sso_failed", f"the provider's ID token was refused: {exc}")
