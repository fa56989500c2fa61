"""A new person's and an admin's first minutes on the real platform (``sqlite_platform``).

One name is one person everywhere: the hub's REST API, invitations, sign-up and login all
lowercase it, and refuse a name no Unix account can carry with a 400 that says what is wrong
and what is allowed. Admins see everyone and the sign-ups waiting for them on the People page;
viewers land on a page of what they can open; the platform API answers every error in one
shape; a GPU profile on a host without GPUs is refused saying so.
"""

from __future__ import annotations

import html
import re

import pytest
import requests
from himalia_testing import STRONG, Platform

API = "/services/himalia"


def text(r: requests.Response) -> str:
    return html.unescape(r.text)


def name_limit(platform: Platform) -> int:
    """The longest hub name: Unix account names have at most 32 characters with the prefix."""
    return 32 - len(platform.user_prefix)


def rule(platform: Platform) -> str:
    return (f"at most {name_limit(platform)} characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit")


def admin_session(platform: Platform) -> requests.Session:
    assert platform.admin_password, "the first start prints the one-time admin password"
    return platform.login("admin", platform.admin_password)


def hub_url(platform: Platform) -> str:
    return f"http://127.0.0.1:{platform.runtime()['hub_port']}"


# -- one name, one person -------------------------------------------------------------------------
def test_a_capitalised_name_is_one_lowercase_user_everywhere(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("bob")
    capitalised = name.capitalize()

    created = platform.api("POST", f"/users/{capitalised}")
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name
    assert platform.api("GET", f"/users/{capitalised}").json()["name"] == name
    assert platform.api("POST", f"/users/{name.upper()}").status_code == 409

    # The invitation for "BOB..." is bob's; so is a login typed with capitals.
    r = platform.api("POST", "/invitations", json={"username": name.upper(), "role": "scientist"})
    assert r.status_code == 201 and r.json()["username"] == name
    assert platform.accept_invitation(r.json()["url"], STRONG).status_code == 200
    session = platform.login(capitalised, STRONG)
    assert session.get(f"{platform.url}/hub/api/user", timeout=30).json()["name"] == name
    # ... and signing up as "Bob..." cannot take bob's account.
    assert "is reserved" in text(platform.signup(capitalised, "strangers-Password-1"))

    bulk = unique_name("cy")
    r = platform.api("POST", "/users", json={"usernames": [bulk.upper()]})
    assert r.status_code == 201, r.text
    assert [u["name"] for u in r.json()] == [bulk]


def test_a_name_one_character_too_long_is_refused_at_creation_saying_why(sqlite_platform):
    platform = sqlite_platform
    limit = name_limit(platform)
    longest, too_long = "l" * limit, "l" * (limit + 1)
    says = f"Invalid user name '{too_long}': has {limit + 1} characters, too many. " \
           f"Allowed: {rule(platform)}."

    r = platform.api("POST", f"/users/{too_long}")
    assert (r.status_code, r.json()["message"]) == (400, says)
    r = platform.api("POST", "/invitations", json={"username": too_long})
    assert (r.status_code, r.json()["message"]) == (400, says)
    r = platform.signup(too_long, STRONG)
    assert r.status_code == 400 and says in text(r)
    assert platform.api("GET", f"/users/{too_long}").status_code == 404
    assert platform.api("POST", f"/users/{longest}").status_code == 201


def test_add_users_reports_each_bad_name_and_creates_nobody(sqlite_platform, unique_name):
    platform = sqlite_platform
    good = unique_name("ok")
    names = [good, "Ann Lee", "ann.lee", "x" * 30]

    r = platform.api("POST", "/users", json={"usernames": names})

    assert r.status_code == 400
    message = r.json()["message"]
    assert message.startswith("No user was created: 3 of 4 names are invalid: ")
    for bad, why in [("Ann Lee", "' ' is not allowed"), ("ann.lee", "'.' is not allowed"),
                     ("x" * 30, "has 30 characters, too many")]:
        assert f"'{bad}' ({why})" in message
    assert message.endswith(f"Allowed: {rule(platform)}.")
    assert platform.api("GET", f"/users/{good}").status_code == 404


def test_renaming_to_an_invalid_name_says_what_is_allowed(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("rn")
    assert platform.api("POST", f"/users/{name}").status_code == 201

    r = platform.api("PATCH", f"/users/{name}", json={"name": "New Name"})

    assert r.status_code == 400
    assert r.json()["message"].startswith("Invalid user name 'New Name': ' ' is not allowed.")


def test_the_sign_up_page_shows_the_name_rule(sqlite_platform):
    page = requests.get(f"{sqlite_platform.url}/hub/signup", timeout=30)

    assert page.status_code == 200
    hint = re.search(r'id="himalia-username-rule"[^>]*>(.*?)</small>', text(page), re.S).group(1)
    assert " ".join(hint.split()) == (f"{rule(sqlite_platform).capitalize()}; "
                                      "capitals become lowercase.")


# -- locked logins ---------------------------------------------------------------------------------
def test_the_login_form_says_the_account_is_locked_and_for_how_long(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("lk")
    platform.create_user(name)
    # Through the hub's own port with the proxy's header: a source of its own.
    session = requests.Session()
    session.headers["X-Forwarded-For"] = "10.9.0.1"
    for i in range(5):
        platform.try_login(name, f"wrong-{i}", base=hub_url(platform), session=session)

    r = platform.try_login(name, STRONG, base=hub_url(platform), session=session)

    assert r.status_code == 429 and not r.logged_in
    error = re.search(r'<p class="login_error">(.*?)</p>', text(r), re.S)
    assert error, "the login form is shown again, with the reason"
    assert error.group(1) == ("Too many failed logins for this name from your address; "
                              "try again in 5 minutes.")
    assert 'id="login_submit"' in r.text


# -- what admins see -------------------------------------------------------------------------------
def test_admins_see_the_pending_sign_ups_on_every_page_and_the_people_page(sqlite_platform,
                                                                           unique_name):
    platform = sqlite_platform
    stranger = unique_name("su")
    platform.signup(stranger, STRONG)
    admin = admin_session(platform)

    home = text(admin.get(f"{platform.url}/hub/home", timeout=30))
    badge = re.search(r'id="himalia-pending-signups"[^>]*>(\d+)<', home)
    assert 'id="himalia-people-link"' in home and badge and int(badge.group(1)) >= 1
    assert 'id="himalia-admin-people"' in text(admin.get(f"{platform.url}/hub/admin", timeout=30))

    people = text(admin.get(f"{platform.url}/hub/people", timeout=30))
    row = re.search(rf'<tr data-name="{stranger}">(.*?)</tr>', people, re.S).group(1)
    assert f'href="/hub/authorize#{stranger}">waiting for approval</a>' in row
    admin_row = re.search(r'<tr data-name="admin">(.*?)</tr>', people, re.S).group(1)
    assert re.search(r'himalia-person-role">admin<', admin_row)
    assert re.search(r'himalia-person-password">set<', admin_row)


def test_people_page_refuses_a_bad_name_keeping_what_was_typed(sqlite_platform):
    platform = sqlite_platform
    admin = admin_session(platform)

    _, r = platform.submit_form("/hub/people", {"username": "Ann Lee", "role": "viewer"},
                                session=admin)

    assert r.status_code == 400
    page = text(r)
    assert "Invalid user name 'Ann Lee': ' ' is not allowed." in page
    assert 'value="Ann Lee"' in page and '<option value="viewer" selected>' in page
    assert 'id="himalia-invitation-link"' not in page


def test_only_admins_have_the_people_page(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("np")
    session = platform.login(name, platform.create_user(name))

    home = text(session.get(f"{platform.url}/hub/home", timeout=30))
    assert 'id="himalia-people-link"' not in home
    assert session.get(f"{platform.url}/hub/people", timeout=30).status_code == 403
    _, r = platform.submit_form("/hub/people", {"username": unique_name("x")}, session=session)
    assert r.status_code == 403


def test_hub_pages_carry_himalias_name(sqlite_platform):
    page = text(requests.get(f"{sqlite_platform.url}/hub/login", timeout=30))

    assert re.search(r"<title>\s*himalia\s*</title>", page)
    assert 'id="himalia-brand"' in page


# -- viewers ---------------------------------------------------------------------------------------
def test_a_viewer_lands_on_a_page_of_what_they_can_open(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("vw")
    session = platform.login(name, platform.create_user(name, role="viewer"))

    home = session.get(f"{platform.url}/hub/home", timeout=30)

    page = text(home)
    assert home.status_code == 200
    assert 'id="himalia-viewer-home"' in page
    assert 'id="start"' not in page and "Start My Server" not in page
    links = dict(re.findall(r'id="(himalia-[a-z-]+-link)" href="([^"]+)"', page))
    assert links == {"himalia-dashboards-link": "/services/dashboards/",
                     "himalia-whoami-link": f"{API}/api/v1/whoami",
                     "himalia-api-docs-link": f"{API}/docs"}
    whoami = session.get(platform.url + links["himalia-whoami-link"],
                         headers={"Accept": "text/html"}, timeout=30)
    assert whoami.json()["roles"] == ["viewer"]
    docs = session.get(platform.url + links["himalia-api-docs-link"], timeout=30)
    assert docs.status_code == 200 and "SwaggerUIBundle" in docs.text


def test_a_labeler_lands_on_the_labeling_page_link(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("lb")
    session = platform.login(name, platform.create_user(name, role="labeler"))
    page = text(session.get(f"{platform.url}/hub/home", timeout=30))
    assert 'id="himalia-viewer-home"' in page and "Start My Server" not in page
    links = dict(re.findall(r'id="(himalia-[a-z-]+-link)" href="([^"]+)"', page))
    assert links == {"himalia-labeling-link": f"{API}/label/"}
    labeling = session.get(platform.url + links["himalia-labeling-link"],
                           headers={"Accept": "text/html"}, timeout=30)
    assert labeling.status_code == 200 and "himalia-label-config" in labeling.text


def test_a_scientist_still_starts_a_server_from_home(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("sc")
    session = platform.login(name, platform.create_user(name))

    page = text(session.get(f"{platform.url}/hub/home", timeout=30))

    assert 'id="start"' in page and 'id="himalia-viewer-home"' not in page


# -- the platform API and spawning -----------------------------------------------------------------
def test_every_platform_api_error_has_one_shape(sqlite_platform):
    platform = sqlite_platform
    headers = {"Authorization": f"token {platform.admin_token}"}

    missing = requests.get(f"{platform.url}{API}/no/such/route", headers=headers, timeout=30)
    wrong = requests.delete(f"{platform.url}{API}/api/v1/whoami", headers=headers, timeout=30)
    anonymous = requests.get(f"{platform.url}{API}/api/v1/whoami", timeout=30)

    for r, status in [(missing, 404), (wrong, 405), (anonymous, 401)]:
        assert r.status_code == status
        assert set(r.json()) == {"status", "message"} and r.json()["status"] == status
    assert "No such route" in missing.json()["message"]
    assert wrong.json()["message"] == f"DELETE is not allowed on {API}/api/v1/whoami; use GET."


def test_a_gpu_profile_on_a_host_without_gpus_is_refused_saying_why(sqlite_platform, unique_name):
    from himalia.hub.spawners import detect_nvidia_gpus

    if detect_nvidia_gpus():
        pytest.skip("this host has NVIDIA GPUs")
    platform = sqlite_platform
    name = unique_name("gp")
    session = platform.login(name, platform.create_user(name))

    form = text(session.get(f"{platform.url}/hub/spawn/{name}", timeout=30))
    gpu = re.search(r'<input[^>]*id="himalia-profile-gpu"[^>]*>', form).group(0)
    assert "disabled" in gpu
    reason = re.search(r'id="himalia-profile-gpu-unavailable">([^<]*)<', form)
    assert reason and "GPU" in reason.group(1)

    r = session.post(f"{platform.url}/hub/api/users/{name}/server", json={"profile": "gpu"},
                     timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("Profile 'gpu' is not available here:")
    assert "Available profiles: cpu, dask" in r.json()["message"]
    assert not platform.api("GET", f"/users/{name}").json()["servers"]
