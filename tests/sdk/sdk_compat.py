#!/usr/bin/env python3
"""Compatibility check: drive Tessera with the official Baseten Python SDK.

Every call goes through ``baseten.client.ManagementClient`` (PyPI ``baseten``,
pinned in requirements.txt next to this file), so every response must parse
into the SDK's own pydantic models. On top of that, each raw response body is
checked for the rules the SDK's lax parsing would let slip (timestamps are
RFC 3339 UTC with ``Z``; ``default`` is a JSON boolean).

Environment:
  TESSERA_URL        base URL, e.g. http://127.0.0.1:8000
  TESSERA_API_KEY    an org-admin PERSONAL API key (prefix.secret)
  TESSERA_SDK_KEYS   set to 1 to also run the API-key / users section

Usage:
  python3 -m venv .venv && .venv/bin/pip install -r tests/sdk/requirements.txt
  TESSERA_URL=... TESSERA_API_KEY=... .venv/bin/python tests/sdk/sdk_compat.py

Prints ``sdk_compat: N passed, 0 failed`` and exits 0 on success. On the first
failure it prints the failing check, the error and the last HTTP response
(status and body), then ``sdk_compat: N passed, 1 failed`` and exits 1.
Secret values and API keys are never printed.
"""

from __future__ import annotations

import json
import os
import re
import secrets as pyrandom
import sys
from dataclasses import dataclass
from typing import Any, Callable

try:
    import httpx
    from baseten.client import ManagementClient
    from baseten.client import managementapi as m
except ImportError as exc:  # pragma: no cover - environment problem
    print(f"sdk_compat: cannot import the Baseten SDK ({exc}); "
          "pip install -r tests/sdk/requirements.txt")
    print("sdk_compat: 0 passed, 1 failed")
    sys.exit(1)

SECRET_NAME = "sdk_token"           # stored spelling
SECRET_ALIAS_UPSERT = "sdk-token"   # same canonical name
SECRET_ALIAS_DELETE = "sdk.token"   # same canonical name
TEAM_SECRET_NAME = "sdk_team_token"
TEAM_SECRET_ALIAS = "sdk.team-token"
TEAM_SECRET_ALIAS_DELETE = "sdk-team-token"

# RFC 3339, UTC, explicit Z (design.md: "clients reject naive times").
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
API_KEY_RE = re.compile(r"^([^.\s]+)\.([^.\s]+)$")


def canonical(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name)


class CheckFailed(Exception):
    pass


@dataclass
class Seen:
    method: str
    path: str
    status: int
    content_type: str
    body: str


class Compat:
    def __init__(self, url: str, api_key: str) -> None:
        self.url = url
        self.api_key = api_key
        self.passed = 0
        self.last: Seen | None = None
        # Strings that must never be printed (secret values, API keys).
        self.sensitive: set[str] = {api_key}
        self.clients: list[ManagementClient] = []
        self.created_keys: list[str] = []  # prefixes, for cleanup
        self.client = self.make_client(api_key)

    # ----------------------------------------------------------------- plumbing
    def make_client(self, api_key: str, headers: dict[str, str] | None = None) -> ManagementClient:
        client = ManagementClient(api_key=api_key, headers=headers, base_url_override=self.url)
        client.http_client.event_hooks["response"].append(self._record)
        self.clients.append(client)
        return client

    def _record(self, response: httpx.Response) -> None:
        response.read()
        self.last = Seen(
            method=response.request.method,
            path=response.request.url.raw_path.decode("ascii", "replace"),
            status=response.status_code,
            content_type=response.headers.get("content-type", ""),
            body=response.text,
        )

    def redact(self, text: str) -> str:
        for s in sorted(self.sensitive, key=len, reverse=True):
            if s:
                text = text.replace(s, "[redacted]")
        return text

    def emit(self, text: str) -> None:
        print(self.redact(text), flush=True)

    def check(self, name: str, fn: Callable[[], Any]) -> Any:
        self.last = None
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
            self.emit(f"FAIL {name}")
            self.emit(f"  error: {type(exc).__name__}: {exc}")
            if self.last is not None:
                body = self.last.body
                if len(body) > 4000:
                    body = body[:4000] + "...[truncated]"
                self.emit(f"  last response: {self.last.method} {self.last.path} -> "
                          f"{self.last.status} ({self.last.content_type or 'no content-type'})")
                self.emit(f"  body: {body}")
            raise CheckFailed(name) from exc
        self.passed += 1
        print(f"ok {self.passed:2d} {name}", flush=True)
        return result

    def raw(self) -> Any:
        assert self.last is not None, "no response recorded"
        return json.loads(self.last.body)

    def strict(self, model: Any, cls: type) -> Any:
        """The SDK already parsed ``model``; check its class and the raw body."""
        assert isinstance(model, cls), f"expected {cls.__name__}, got {type(model).__name__}"
        assert self.last is not None and self.last.status == 200, "expected HTTP 200"
        assert self.last.content_type.split(";")[0].strip() == "application/json", \
            f"content-type {self.last.content_type!r}"
        raw = self.raw()
        _walk_strict(raw, "$")
        return model

    def expect_status(self, status: int, fn: Callable[[], Any]) -> m.ResponseError:
        try:
            fn()
        except m.ResponseError as err:
            assert err.status_code == status, f"expected HTTP {status}, got {err.status_code}"
            body = json.loads(err.body)
            assert isinstance(body, dict) and isinstance(body.get("code"), str) \
                and isinstance(body.get("message"), str), "error body is not {code, message}"
            return err
        raise AssertionError(f"expected HTTP {status}, call succeeded")

    def close(self) -> None:
        for c in self.clients:
            c.close()

    # -------------------------------------------------------------------- checks
    def run(self, with_keys: bool) -> None:
        api = self.client.api

        self.check("GET /v1/organizations/me -> OrganizationInfo", lambda: self._org(api))
        me = self.check("GET /v1/users/me -> UserInfo", lambda: self._me(api))
        self.check("Authorization: Api-Key scheme accepted", lambda: self._api_key_scheme(me))
        self.check("unknown API key -> 401", lambda: self.expect_status(
            401, lambda: self.make_client("nope0000.notakey").api.get_users_me()))

        default = self.check("GET /v1/teams -> Teams, exactly one default", lambda: self._teams(api))
        self.check("GET /v1/teams?name=<default> -> exactly the default team",
                   lambda: self._teams_by_name(api, default))
        self.check("GET /v1/teams?name=<unknown> -> empty list",
                   lambda: self._teams_unknown_name(api))
        self.check("GET /v1/teams/{id} -> Team", lambda: self._team_by_id(api, default))
        self.check("GET /v1/teams/{unknown} -> 404", lambda: self.expect_status(
            404, lambda: api.get_teams_team_id(team_id="no-such-team-" + pyrandom.token_hex(4))))

        self._cleanup_secrets(api, default)

        v1, v2 = pyrandom.token_urlsafe(24), pyrandom.token_urlsafe(24)
        self.sensitive.update({v1, v2})
        first = self.check(f"POST /v1/secrets {SECRET_NAME} -> Secret",
                           lambda: self._upsert(api, SECRET_NAME, v1, SECRET_NAME, default))
        self.check(f"POST /v1/secrets {SECRET_ALIAS_UPSERT} -> same id, created_at, name",
                   lambda: self._upsert_alias(api, first, v2, default))
        self.check("GET /v1/secrets -> exactly one sdk_token in the default team",
                   lambda: self._list_has_one(api.get_secrets, first, default))

        v3, v4 = pyrandom.token_urlsafe(24), "multi\nline\nvalue " + pyrandom.token_urlsafe(12)
        self.sensitive.update({v3, v4})
        tfirst = self.check(f"POST /v1/teams/{{id}}/secrets {TEAM_SECRET_NAME} -> Secret",
                            lambda: self._team_upsert(api, default, TEAM_SECRET_NAME, v3, None))
        self.check(f"POST /v1/teams/{{id}}/secrets {TEAM_SECRET_ALIAS} -> same secret",
                   lambda: self._team_upsert(api, default, TEAM_SECRET_ALIAS, v4, tfirst))
        self.check("GET /v1/teams/{id}/secrets -> exactly one sdk_team_token",
                   lambda: self._list_has_one(lambda: api.get_teams_secrets(team_id=default.id),
                                              tfirst, default, whole_team=True))
        self.check("GET /v1/secrets also lists the team secret",
                   lambda: self._list_has_one(api.get_secrets, tfirst, default))
        self.check(f"DELETE /v1/teams/{{id}}/secrets/{TEAM_SECRET_ALIAS_DELETE} -> tombstone",
                   lambda: self._delete(lambda: api.delete_teams_secrets(
                       team_id=default.id, secret_name=TEAM_SECRET_ALIAS_DELETE), TEAM_SECRET_NAME))
        self.check("GET /v1/teams/{id}/secrets no longer lists it",
                   lambda: self._list_lacks(lambda: api.get_teams_secrets(team_id=default.id),
                                            TEAM_SECRET_NAME))
        self.check("DELETE /v1/teams/{id}/secrets/<deleted> -> 404", lambda: self.expect_status(
            404, lambda: api.delete_teams_secrets(team_id=default.id,
                                                  secret_name=TEAM_SECRET_NAME)))

        self.check(f"DELETE /v1/secrets/{SECRET_ALIAS_DELETE} -> tombstone {SECRET_NAME}",
                   lambda: self._delete(lambda: api.delete_secrets(
                       secret_name=SECRET_ALIAS_DELETE), SECRET_NAME))
        self.check("GET /v1/secrets no longer lists it",
                   lambda: self._list_lacks(api.get_secrets, SECRET_NAME))
        self.check(f"DELETE /v1/secrets/{SECRET_ALIAS_DELETE} again -> 404 (SDK ResponseError)",
                   lambda: self.expect_status(
                       404, lambda: api.delete_secrets(secret_name=SECRET_ALIAS_DELETE)))

        if not with_keys:
            print("sdk_compat: API-key/users section skipped (set TESSERA_SDK_KEYS=1)", flush=True)
            return

        self.check("GET /v1/api_keys -> APIKeys",
                   lambda: self.strict(api.get_api_keys(), m.APIKeys))
        tag = pyrandom.token_hex(4)
        pname, tname = f"sdk-compat-personal-{tag}", f"sdk-compat-team-{tag}"
        pkey = self.check("POST /v1/api_keys PERSONAL -> APIKey prefix.secret",
                          lambda: self._create_key(lambda: api.post_api_keys(
                              request=m.CreateAPIKeyRequest(name=pname, type="PERSONAL"))))
        self.check("new PERSONAL key authenticates as the same user",
                   lambda: self._key_is_me(pkey, me))
        tkey = self.check("POST /v1/teams/{id}/api_keys WORKSPACE_MANAGE_ALL -> APIKey",
                          lambda: self._create_key(lambda: api.post_teams_api_keys(
                              team_id=default.id,
                              request=m.CreateAPIKeyRequest(name=tname,
                                                            type="WORKSPACE_MANAGE_ALL"))))
        self.check("new team key can list secrets",
                   lambda: self.strict(self.make_client(tkey).api.get_secrets(), m.Secrets))
        ppre, tpre = API_KEY_RE.match(pkey).group(1), API_KEY_RE.match(tkey).group(1)
        self.check("GET /v1/api_keys lists both new keys",
                   lambda: self._keys_listed(api, me, default, (ppre, pname), (tpre, tname)))
        self.check("GET /v1/api_keys?type=PERSONAL filters by type",
                   lambda: self._keys_filtered(api, ppre, tpre))
        self.check("DELETE /v1/api_keys/{personal prefix} -> tombstone",
                   lambda: self._delete_key(api, ppre))
        self.check("DELETE /v1/api_keys/{team prefix} -> tombstone",
                   lambda: self._delete_key(api, tpre))
        self.check("GET /v1/api_keys no longer lists them",
                   lambda: self._keys_gone(api, ppre, tpre))
        self.check("revoked key -> 401", lambda: self.expect_status(
            401, lambda: self.make_client(pkey).api.get_users_me()))
        self.check("DELETE /v1/api_keys/{deleted prefix} -> 404", lambda: self.expect_status(
            404, lambda: api.delete_api_keys(api_key_prefix=ppre)))

        self.check("GET /v1/users -> UsersResponse", lambda: self._users(api, me))
        if me.email:
            self.check("GET /v1/users?email=<mine> -> exactly me",
                       lambda: self._users_by_email(api, me))
        self.check("GET /v1/users/{id} -> UserInfo", lambda: self._user_by_id(api, me))

    # ------------------------------------------------------------ check bodies
    def _org(self, api: m.ApiClient) -> m.OrganizationInfo:
        org = self.strict(api.get_organizations_me(), m.OrganizationInfo)
        assert org.org_id, "org_id is empty"
        return org

    def _me(self, api: m.ApiClient) -> m.UserInfo:
        me = self.strict(api.get_users_me(), m.UserInfo)
        assert me.user_id, "user_id is empty"
        return me

    def _api_key_scheme(self, me: m.UserInfo) -> None:
        # api_key="" stops the SDK from adding its own Bearer header.
        c = self.make_client("", headers={"Authorization": f"Api-Key {self.api_key}"})
        other = self.strict(c.api.get_users_me(), m.UserInfo)
        assert other.user_id == me.user_id, "Api-Key scheme resolved to another user"

    def _teams(self, api: m.ApiClient) -> m.Team:
        teams = self.strict(api.get_teams(), m.Teams)
        for t in teams.teams:
            assert isinstance(t, m.Team)
        for t in self.raw()["teams"]:
            assert isinstance(t.get("default"), bool), "team.default is not a JSON boolean"
        defaults = [t for t in teams.teams if t.default]
        assert len(defaults) == 1, f"{len(defaults)} teams have default == true"
        return defaults[0]

    def _teams_by_name(self, api: m.ApiClient, default: m.Team) -> None:
        teams = self.strict(api.get_teams(params=m.GetTeamsParams(name=default.name)), m.Teams)
        assert [t.id for t in teams.teams] == [default.id], \
            f"name filter returned {len(teams.teams)} teams, not exactly the default team"
        assert teams.teams[0] == default, "filtered team differs from the listed one"

    def _teams_unknown_name(self, api: m.ApiClient) -> None:
        name = "sdk compat no such team " + pyrandom.token_hex(4)
        teams = self.strict(api.get_teams(params=m.GetTeamsParams(name=name)), m.Teams)
        assert teams.teams == [], f"unknown name returned {len(teams.teams)} teams"

    def _team_by_id(self, api: m.ApiClient, default: m.Team) -> None:
        team = self.strict(api.get_teams_team_id(team_id=default.id), m.Team)
        assert isinstance(self.raw().get("default"), bool), "default is not a JSON boolean"
        assert team == default, "GET /v1/teams/{id} differs from the listed team"

    def _cleanup_secrets(self, api: m.ApiClient, default: m.Team) -> None:
        """Best effort, not a check: remove leftovers of an interrupted run."""
        for fn in (lambda: api.delete_secrets(secret_name=SECRET_NAME),
                   lambda: api.delete_teams_secrets(team_id=default.id,
                                                    secret_name=TEAM_SECRET_NAME)):
            try:
                fn()
            except m.ResponseError:
                pass

    def _check_secret(self, s: m.Secret, name: str, default: m.Team) -> None:
        assert s.id, "secret id is empty"
        assert s.name == name, f"name is {s.name!r}, expected {name!r}"
        assert s.team_name == default.name, \
            f"team_name is {s.team_name!r}, expected {default.name!r}"

    def _upsert(self, api: m.ApiClient, name: str, value: str, want: str,
                default: m.Team) -> m.Secret:
        s = self.strict(api.post_secrets(request=m.UpsertSecretRequest(name=name, value=value)),
                        m.Secret)
        self._check_secret(s, want, default)
        return s

    def _upsert_alias(self, api: m.ApiClient, first: m.Secret, value: str,
                      default: m.Team) -> None:
        s = self._upsert(api, SECRET_ALIAS_UPSERT, value, SECRET_NAME, default)
        assert s.id == first.id, "alias upsert returned a different id"
        assert s.created_at == first.created_at, "alias upsert changed created_at"

    def _team_upsert(self, api: m.ApiClient, default: m.Team, name: str, value: str,
                     first: m.Secret | None) -> m.Secret:
        s = self.strict(api.post_teams_secrets(
            team_id=default.id, request=m.UpsertSecretRequest(name=name, value=value)), m.Secret)
        self._check_secret(s, TEAM_SECRET_NAME, default)
        if first is not None:
            assert s.id == first.id, "alias upsert returned a different id"
            assert s.created_at == first.created_at, "alias upsert changed created_at"
        return s

    def _list_has_one(self, fetch: Callable[[], m.Secrets], want: m.Secret, default: m.Team,
                      whole_team: bool = False) -> None:
        lst = self.strict(fetch(), m.Secrets)
        for s in lst.secrets:
            assert isinstance(s, m.Secret)
        if whole_team:
            others = [s for s in lst.secrets if s.team_name != default.name]
            assert not others, "team-scoped list holds secrets of another team"
        same = [s for s in lst.secrets
                if s.team_name == default.name and canonical(s.name) == canonical(want.name)]
        assert len(same) == 1, f"{len(same)} entries with canonical name {canonical(want.name)!r}"
        got = same[0]
        assert (got.id, got.name, got.created_at) == (want.id, want.name, want.created_at), \
            "listed secret differs from the upsert response"

    def _list_lacks(self, fetch: Callable[[], m.Secrets], name: str) -> None:
        lst = self.strict(fetch(), m.Secrets)
        left = [s for s in lst.secrets if canonical(s.name) == canonical(name)]
        assert not left, f"{name!r} still listed after delete"

    def _delete(self, fn: Callable[[], m.SecretTombstone], want: str) -> None:
        t = self.strict(fn(), m.SecretTombstone)
        assert t.name == want, f"tombstone name is {t.name!r}, expected the stored {want!r}"

    def _create_key(self, fn: Callable[[], m.APIKey]) -> str:
        k = self.strict(fn(), m.APIKey)
        self.sensitive.add(k.api_key)
        match = API_KEY_RE.match(k.api_key)
        assert match, "api_key is not of the form prefix.secret"
        self.created_keys.append(match.group(1))
        return k.api_key

    def _key_is_me(self, key: str, me: m.UserInfo) -> None:
        other = self.strict(self.make_client(key).api.get_users_me(), m.UserInfo)
        assert other.user_id == me.user_id, "new personal key resolved to another user"

    def _keys_listed(self, api: m.ApiClient, me: m.UserInfo, default: m.Team,
                     personal: tuple[str, str], team: tuple[str, str]) -> None:
        keys = self.strict(api.get_api_keys(), m.APIKeys)
        by_prefix = {k.prefix: k for k in keys.keys}
        for k in keys.keys:
            assert isinstance(k, m.APIKeyInfo)
        assert personal[0] in by_prefix, "new personal key not listed"
        assert team[0] in by_prefix, "new team key not listed"
        p, t = by_prefix[personal[0]], by_prefix[team[0]]
        assert (p.type, p.name) == ("PERSONAL", personal[1]), f"personal key listed as {p.type}"
        assert (t.type, t.name) == ("WORKSPACE_MANAGE_ALL", team[1]), f"team key listed as {t.type}"
        if p.owner is not None:
            assert p.owner.user_id == me.user_id, "personal key owner is another user"
        assert t.owner is None, "team key has an owner (owner is only for personal keys)"
        if t.team_name is not None:
            assert t.team_name == default.name, f"team key team_name is {t.team_name!r}"

    def _keys_filtered(self, api: m.ApiClient, ppre: str, tpre: str) -> None:
        keys = self.strict(api.get_api_keys(params=m.GetApiKeysParams(type="PERSONAL")), m.APIKeys)
        kinds = {k.type for k in keys.keys}
        assert kinds <= {"PERSONAL"}, f"type filter returned {sorted(kinds)}"
        prefixes = {k.prefix for k in keys.keys}
        assert ppre in prefixes and tpre not in prefixes, "type filter is wrong"

    def _delete_key(self, api: m.ApiClient, prefix: str) -> None:
        t = self.strict(api.delete_api_keys(api_key_prefix=prefix), m.APIKeyTombstone)
        assert t.prefix == prefix, "tombstone prefix differs"
        self.created_keys.remove(prefix)

    def _keys_gone(self, api: m.ApiClient, *prefixes: str) -> None:
        keys = self.strict(api.get_api_keys(), m.APIKeys)
        left = {k.prefix for k in keys.keys} & set(prefixes)
        assert not left, f"{len(left)} deleted key(s) still listed"

    def _users(self, api: m.ApiClient, me: m.UserInfo) -> None:
        users = self.strict(api.get_users(), m.UsersResponse)
        assert isinstance(users.pagination, m.PaginationResponse)
        for u in users.items:
            assert isinstance(u, m.UserInfo)
        if not users.pagination.has_more:
            assert me.user_id in {u.user_id for u in users.items}, "caller not in the users list"
            assert users.pagination.cursor is None, "cursor set although has_more is false"

    def _users_by_email(self, api: m.ApiClient, me: m.UserInfo) -> None:
        users = self.strict(api.get_users(params=m.GetUsersParams(email=me.email)),
                            m.UsersResponse)
        assert [u.user_id for u in users.items] == [me.user_id], \
            f"email filter returned {len(users.items)} users, not exactly the caller"

    def _user_by_id(self, api: m.ApiClient, me: m.UserInfo) -> None:
        u = self.strict(api.get_users_user_id(user_id=me.user_id), m.UserInfo)
        assert u.user_id == me.user_id, "returned another user"

    def cleanup(self) -> None:
        """Best effort after a failure: remove what this run created."""
        api = self.client.api
        for prefix in list(self.created_keys):
            try:
                api.delete_api_keys(api_key_prefix=prefix)
            except Exception:  # noqa: BLE001
                pass
        for fn in (lambda: api.delete_secrets(secret_name=SECRET_NAME),
                   lambda: api.delete_secrets(secret_name=TEAM_SECRET_NAME)):
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass


def _walk_strict(node: Any, path: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("created_at", "last_used_at") and v is not None:
                assert isinstance(v, str) and TS_RE.match(v), \
                    f"{path}.{k} = {v!r} is not RFC 3339 UTC with Z"
            _walk_strict(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk_strict(v, f"{path}[{i}]")


def main() -> int:
    url = os.environ.get("TESSERA_URL", "").strip()
    key = os.environ.get("TESSERA_API_KEY", "").strip()
    if not url or not key:
        print("sdk_compat: TESSERA_URL and TESSERA_API_KEY must be set")
        print("sdk_compat: 0 passed, 1 failed")
        return 1
    with_keys = os.environ.get("TESSERA_SDK_KEYS", "") == "1"
    compat = Compat(url, key)
    try:
        compat.run(with_keys)
    except CheckFailed:
        compat.cleanup()
        print(f"sdk_compat: {compat.passed} passed, 1 failed", flush=True)
        return 1
    finally:
        compat.close()
    print(f"sdk_compat: {compat.passed} passed, 0 failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
