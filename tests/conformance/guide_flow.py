"""Conformance check of the agentcron simulator against the official `anthropic` SDK.

Runs the Scalekit guide's flow ("Claude Managed Agents" with a Virtual MCP Server) exactly as the guide writes the
Anthropic calls, twice (the second run updates the vault credential), and asserts that the tool
uses, the agent's text and the idle status arrive. The Scalekit part uses plain HTTP on the REST
paths of Scalekit's AgentKit API (the official Scalekit SDK speaks gRPC).

Environment: ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY, SCALEKIT_ENV_URL, SCALEKIT_CLIENT_ID,
SCALEKIT_CLIENT_SECRET, and optionally SIM_USER. Prints "CONFORMANCE OK" and exits 0 on success.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta

import anthropic

ENV_URL = os.environ["SCALEKIT_ENV_URL"].rstrip("/")
USER = os.environ.get("SIM_USER", "alice@example.com")
PROMPT = "Triage my inbox: handle the most recent unread email."


def http(method, path, body=None, token=None, form=False):
    headers = {}
    data = None
    if form:
        data = urllib.parse.urlencode(body).encode()
        headers["content-type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(ENV_URL + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def check(condition, message):
    if not condition:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)


def scalekit_token():
    status, body = http("POST", "/oauth/token", {
        "grant_type": "client_credentials",
        "client_id": os.environ["SCALEKIT_CLIENT_ID"],
        "client_secret": os.environ["SCALEKIT_CLIENT_SECRET"],
    }, form=True)
    check(status == 200 and body.get("access_token"), f"token endpoint: {status} {body}")
    status, body = http("POST", "/oauth/token", {"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}, form=True)
    check(status == 401, f"bad client credentials must be 401, got {status}")
    return http("POST", "/oauth/token", {
        "grant_type": "client_credentials",
        "client_id": os.environ["SCALEKIT_CLIENT_ID"],
        "client_secret": os.environ["SCALEKIT_CLIENT_SECRET"],
    }, form=True)[1]["access_token"]


def build_mcp_config(sk):
    status, body = http("GET", "/api/v1/mcp/configs")
    check(status == 401 and body.get("code") == 16, f"unauthenticated call: {status} {body}")
    status, body = http("POST", "/api/v1/mcp/configs", {
        "name": "email-calendar-demo",
        "connection_tool_mappings": [
            {"connection_name": "gmail", "tools": ["gmail_fetch_mails"]},
            {"connection_name": "googlecalendar", "tools": [
                "googlecalendar_list_calendars", "googlecalendar_list_events",
                "googlecalendar_get_event_by_id", "googlecalendar_create_event",
                "googlecalendar_update_event"]},
        ],
    }, token=sk)
    check(status in (200, 201), f"create_config: {status} {body}")
    return body["config"]["id"], body["config"]["mcp_server_url"]


def check_connections_and_mint(sk, mcp_id):
    status, body = http("POST", f"/api/v1/mcp/configs/{mcp_id}/connected_accounts", {"identifier": USER}, token=sk)
    check(status == 200, f"list_mcp_connected_accounts: {status} {body}")
    inactive = [a["connection_name"] for a in body["connected_accounts"] if a.get("connected_account_status") != "ACTIVE"]
    check(not inactive, f"inactive connections: {inactive}")
    status, body = http("GET", "/api/v1/mcp/configs?" + urllib.parse.urlencode({"filter.id": mcp_id}), token=sk)
    check(status == 200 and body["configs"][0]["id"] == mcp_id, f"list_configs: {status} {body}")
    mcp_server_url = body["configs"][0]["mcp_server_url"]
    expiry = f"{int(timedelta(hours=1).total_seconds())}s"
    status, body = http("POST", f"/api/v1/mcp/configs/{mcp_id}/tokens", {"identifier": USER, "expiry": expiry}, token=sk)
    check(status == 200 and body.get("token"), f"create_session_token: {status} {body}")
    return mcp_server_url, body["token"]


def create_agent(anthropic_client, mcp_server_url):
    # The guide's builder.py, verbatim.
    return anthropic_client.beta.agents.create(
        name="Email Meeting Manager",
        model="claude-haiku-4-5-20251001",
        system=(
            "You are an email and calendar assistant. When invoked, you will:\n"
            "1. Fetch the single most recent unread email from Gmail.\n"
            "2. Summarize it in 2-3 sentences.\n"
            "3. Create a Google Calendar event titled 'Action Required: <email subject>' "
            "with your summary as the description."
        ),
        mcp_servers=[{"type": "url", "name": "email-calendar-mcp", "url": mcp_server_url}],
        tools=[
            {"type": "agent_toolset_20260401", "default_config": {"enabled": True}},
            {
                "type": "mcp_toolset",
                "mcp_server_name": "email-calendar-mcp",
                "default_config": {"enabled": True, "permission_policy": {"type": "always_allow"}},
            },
        ],
    )


def run_session(anthropic_client, agent_id, environment_id, vault_id, run):
    session = anthropic_client.beta.sessions.create(
        agent=agent_id,
        environment_id=environment_id,
        vault_ids=[vault_id],
        metadata={"user": USER, "run_id": f"conformance:{USER}:{run}"},
    )
    texts, tools, last = [], [], None
    with anthropic_client.beta.sessions.events.stream(session_id=session.id) as stream:
        anthropic_client.beta.sessions.events.send(
            session_id=session.id,
            events=[{"type": "user.message", "content": [{"type": "text", "text": PROMPT}]}],
        )
        for event in stream:
            last = event.type
            if event.type == "agent.message":
                for block in event.content:
                    if block.type == "text":
                        print(block.text, end="", flush=True)
                        texts.append(block.text)
            elif event.type == "agent.mcp_tool_use":
                print(f"\n→ {event.name}", flush=True)
                tools.append(event.name)
            elif event.type in ("session.status_idle", "session.status_terminated"):
                break
    print()
    check(last == "session.status_idle", f"run {run}: stream ended with {last}")
    check(tools == ["gmail_fetch_mails", "googlecalendar_create_event"], f"run {run}: tool uses {tools}")
    text = "".join(texts)
    check("Action Required:" in text and "created the calendar event" in text, f"run {run}: agent text {text!r}")
    check(anthropic_client.beta.sessions.retrieve(session.id).status == "idle", "session status is idle")
    history = anthropic_client.beta.sessions.events.list(session.id)
    types = [event.type for event in history]
    check(types[0] == "user.message" and types[-1] == "session.status_idle", f"events.list history: {types}")
    return session.id


def main():
    sk = scalekit_token()
    mcp_id, _ = build_mcp_config(sk)
    anthropic_client = anthropic.Anthropic()
    try:
        anthropic.Anthropic(api_key="wrong").beta.agents.list()
        check(False, "a wrong API key must be rejected")
    except anthropic.AuthenticationError as error:
        check(error.status_code == 401 and error.request_id, f"auth error: {error}")

    mcp_server_url, token = check_connections_and_mint(sk, mcp_id)
    agent = create_agent(anthropic_client, mcp_server_url)
    environment = anthropic_client.beta.environments.create(
        name="agentcron-conformance", config={"type": "cloud", "networking": {"type": "unrestricted"}})
    vault = anthropic_client.beta.vaults.create(display_name="email-calendar-vault")
    credential = anthropic_client.beta.vaults.credentials.create(
        vault.id,
        display_name="email-calendar-credential",
        auth={"type": "static_bearer", "mcp_server_url": mcp_server_url, "token": token},
    )
    check(credential.auth.type == "static_bearer" and not hasattr(credential.auth, "token"), "credential secret not echoed")
    run_session(anthropic_client, agent.id, environment.id, vault.id, 1)

    # Second run: a fresh token goes into the same credential, as the guide does.
    _, token = check_connections_and_mint(sk, mcp_id)
    anthropic_client.beta.vaults.credentials.update(credential.id, vault_id=vault.id, auth={"type": "static_bearer", "token": token})
    run_session(anthropic_client, agent.id, environment.id, vault.id, 2)

    try:
        anthropic_client.beta.agents.retrieve("agent_does_not_exist")
        check(False, "an unknown agent must be 404")
    except anthropic.NotFoundError as error:
        check(error.body["error"]["type"] == "not_found_error", f"404 body: {error.body}")

    status, calendar = http("GET", f"/_sim/users/{urllib.parse.quote(USER)}/calendar")
    check(status == 200 and len(calendar["events"]) == 2, f"calendar: {calendar}")
    check(all(e["summary"].startswith("Action Required: ") for e in calendar["events"]), "event titles")
    status, audit = http("GET", "/_sim/audit")
    check(audit["violations"] == [], f"audit violations: {audit['violations']}")
    print("CONFORMANCE OK")


if __name__ == "__main__":
    main()
