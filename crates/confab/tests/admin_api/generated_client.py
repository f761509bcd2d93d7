"""Drives the administration API with a client generated from its OpenAPI document by
openapi-python-client: proof that the document describes the API as served.

Usage: generated_client.py BASE_URL CA_FILE ADMIN_TOKEN VIEWER_TOKEN (the generated package
on PYTHONPATH)."""

import ssl
import sys

from confab_administration_api_client import AuthenticatedClient
from confab_administration_api_client.api.administrators import me
from confab_administration_api_client.api.users import (
    add_user,
    change_user,
    get_user,
    list_users,
    remove_user,
)
from confab_administration_api_client.models import NewUser, Problem, Switch, UserChange, UserView

base, ca, admin_token, viewer_token = sys.argv[1:5]
tls = ssl.create_default_context(cafile=ca)
admin = AuthenticatedClient(base_url=base, token=admin_token, verify_ssl=tls)
viewer = AuthenticatedClient(base_url=base, token=viewer_token, verify_ssl=tls)


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")


who = me.sync(client=admin)
check(who is not None and who.name == "gen-root", f"me: {who}")

r = add_user.sync_detailed(client=admin, body=NewUser(address="gina@example.com", password="gina-pw"))
check(r.status_code == 201 and isinstance(r.parsed, UserView), f"add: {r.status_code} {r.content!r}")
check(r.parsed.address == "gina@example.com", f"added: {r.parsed}")
version = r.headers["etag"]

r = add_user.sync_detailed(client=viewer, body=NewUser(address="hal@example.com", password="x"))
check(r.status_code == 403 and isinstance(r.parsed, Problem), f"viewer add: {r.status_code}")
check("may not add" in r.parsed.detail, r.parsed.detail)

u = get_user.sync(client=viewer, address="gina@example.com")
check(isinstance(u, UserView) and u.federation == Switch.DEFAULT, f"get: {u}")

r = change_user.sync_detailed(client=admin, address="gina@example.com",
                              body=UserChange(federation=Switch.OFF), if_match=version)
check(r.status_code == 200 and r.parsed.federation == Switch.OFF, f"change: {r.status_code} {r.content!r}")
r = change_user.sync_detailed(client=admin, address="gina@example.com",
                              body=UserChange(remote_access=Switch.ON), if_match=version)
check(r.status_code == 412 and isinstance(r.parsed, Problem), f"stale change: {r.status_code}")

seen, after = [], None
while True:
    page = list_users.sync(client=viewer, limit=2, after=after) if after else list_users.sync(client=viewer, limit=2)
    seen += [u.address for u in page.items]
    if not page.next_:
        break
    after = page.next_
check("gina@example.com" in seen and seen == sorted(seen), f"pages: {seen}")

r = remove_user.sync_detailed(client=admin, address="gina@example.com")
check(r.status_code == 204, f"remove: {r.status_code}")
check(isinstance(get_user.sync(client=admin, address="gina@example.com"), Problem), "gone")
print(f"generated client: ok ({len(seen)} users listed)")
