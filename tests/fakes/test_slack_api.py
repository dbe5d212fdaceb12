"""The fake Slack Web API answers the real slack_sdk WebClient and slack_bolt App like Slack."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from slack_bolt import Ack, App, BoltRequest, BoltResponse, Respond, Say
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import (
    ALICE,
    BOB,
    BOT_ID,
    BOT_USER_ID,
    GENERAL,
    MAX_TEXT_CHARS,
    OPS,
    FakeSlack,
    app_mention_event,
    block_actions_body,
    event_body,
    message_im_event,
    signed_headers,
    slash_command_body,
    url_verification_body,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
APPROVE_BLOCKS: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*burst-42* wants 6 → 10 replicas"}},
    {
        "type": "actions",
        "block_id": "decision",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "value": "burst-42",
                "text": {"type": "plain_text", "text": "Approve"},
            },
        ],
    },
]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    return WebClient(token=slack.bot_token, base_url=slack.api_url)


def api_error(call: Callable[[], object]) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        call()
    return caught.value


# -- Web API ---------------------------------------------------------------------------------


def test_auth_test_names_the_bot_and_sends_granted_scopes(client: WebClient) -> None:
    response = client.auth_test()

    assert response["user_id"] == BOT_USER_ID
    assert response["bot_id"] == BOT_ID
    assert "chat:write" in response.headers["X-OAuth-Scopes"].split(",")


def test_post_message_is_stored_and_echoed_like_slack(slack: FakeSlack, client: WebClient) -> None:
    response = client.chat_postMessage(channel="#ops", text="fallback", blocks=APPROVE_BLOCKS)

    assert response["channel"] == OPS
    assert response["message"]["bot_id"] == BOT_ID
    assert response["message"]["blocks"] == APPROVE_BLOCKS
    [stored] = slack.channel_messages(OPS)
    assert (stored.ts, stored.text, stored.user) == (response["ts"], "fallback", BOT_USER_ID)
    [call] = slack.calls_to("chat.postMessage")
    assert call.params["channel"] == "#ops"
    assert call.headers["Content-Type"].startswith("application/json")
    assert call.token == slack.bot_token


def test_thread_reply_hangs_off_its_parent(slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=OPS, text="plan for burst-42")
    reply = client.chat_postMessage(channel=OPS, text="approved by alice", thread_ts=parent["ts"])

    assert reply["message"]["thread_ts"] == parent["ts"]
    root, answer = slack.thread(OPS, parent["ts"])
    assert answer.text == "approved by alice"
    assert root.to_json()["reply_count"] == 1
    assert root.to_json()["latest_reply"] == reply["ts"]


def test_update_replaces_text_keeps_blocks_and_history(slack: FakeSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel=OPS, text="pending", blocks=APPROVE_BLOCKS)

    updated = client.chat_update(channel=OPS, ts=posted["ts"], text="approved")

    assert updated["text"] == "approved"
    message = slack.message(OPS, posted["ts"])
    assert message is not None
    assert message.text == "approved"
    assert message.blocks == APPROVE_BLOCKS  # omitted blocks are retained
    assert [e["text"] for e in message.edits] == ["pending"]
    assert updated["message"]["edited"]["user"] == BOT_USER_ID

    client.chat_update(channel=OPS, ts=posted["ts"], text="done", blocks=[])
    assert slack.message(OPS, posted["ts"]).blocks is None  # type: ignore[union-attr]


def test_update_refuses_unknown_and_foreign_messages(slack: FakeSlack, client: WebClient) -> None:
    human = slack.add_message(OPS, "my own words", user=ALICE)

    missing = api_error(lambda: client.chat_update(channel=OPS, ts="1.000001", text="x"))
    foreign = api_error(lambda: client.chat_update(channel=OPS, ts=human.ts, text="x"))

    assert missing.response["error"] == "message_not_found"
    assert foreign.response["error"] == "cant_update_message"
    assert slack.message(OPS, human.ts).text == "my own words"  # type: ignore[union-attr]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channel": "C0NOWHERE", "text": "hi"}, "channel_not_found"),
        ({"channel": OPS}, "no_text"),
        ({"channel": OPS, "text": "x" * (MAX_TEXT_CHARS + 1)}, "msg_too_long"),
        ({"channel": OPS, "text": "t", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
    ],
)
def test_post_message_refusals(
    slack: FakeSlack, client: WebClient, kwargs: dict[str, Any], error: str
) -> None:
    refused = api_error(lambda: client.chat_postMessage(**kwargs))

    assert refused.response.status_code == 200
    assert refused.response["error"] == error
    assert slack.channel_messages(OPS) == []


def test_text_of_exactly_the_limit_is_accepted(slack: FakeSlack, client: WebClient) -> None:
    client.chat_postMessage(channel=OPS, text="x" * MAX_TEXT_CHARS)

    assert len(slack.channel_messages(OPS)[0].text) == MAX_TEXT_CHARS


def test_bad_or_missing_token(slack: FakeSlack) -> None:
    bad = WebClient(token="xoxb-revoked", base_url=slack.api_url)
    none = WebClient(base_url=slack.api_url)

    assert api_error(bad.auth_test).response["error"] == "invalid_auth"
    assert (
        api_error(lambda: none.chat_postMessage(channel=OPS, text="hi")).response["error"]
        == "not_authed"
    )


def test_form_encoded_arguments_and_token_parameter(slack: FakeSlack) -> None:
    anonymous = WebClient(base_url=slack.api_url)

    response = anonymous.api_call(
        "chat.postMessage",
        params={"token": slack.bot_token, "channel": GENERAL, "blocks": json.dumps(APPROVE_BLOCKS)},
    )

    assert response["message"]["blocks"] == APPROVE_BLOCKS
    [call] = slack.calls_to("chat.postMessage")
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "token" not in call.params


def test_posting_to_a_user_id_opens_the_dm(slack: FakeSlack, client: WebClient) -> None:
    response = client.chat_postMessage(channel=BOB, text="your change is live")

    assert response["channel"].startswith("D")
    assert slack.channels[response["channel"]].im_user == BOB
    info = client.conversations_info(channel=response["channel"])
    assert info["channel"]["is_im"] is True


def test_lookups_and_missing_scope(slack: FakeSlack, client: WebClient) -> None:
    assert client.conversations_info(channel=OPS)["channel"]["name"] == "ops"
    assert client.users_info(user=ALICE)["user"]["is_admin"] is True
    assert api_error(lambda: client.users_info(user="U0NOBODY")).response["error"] == (
        "user_not_found"
    )
    slack.add_user_token("xoxp-alice", ALICE, scopes=["channels:read"])
    alice = WebClient(token="xoxp-alice", base_url=slack.api_url)

    refused = api_error(lambda: alice.chat_postMessage(channel=OPS, text="hi"))

    assert refused.response["error"] == "missing_scope"
    assert refused.response["needed"] == "chat:write"


def test_ephemeral_is_kept_out_of_history(slack: FakeSlack, client: WebClient) -> None:
    stranger = slack.add_user("carol")
    slack.add_channel("secret", is_private=True, members=[BOT_USER_ID, ALICE])

    response = client.chat_postEphemeral(channel="secret", user=ALICE, text="only you")
    refused = api_error(
        lambda: client.chat_postEphemeral(channel="secret", user=stranger.id, text="no")
    )

    [note] = slack.ephemerals
    assert (note.user, note.ts, note.text) == (ALICE, response["message_ts"], "only you")
    assert slack.channel_messages("secret") == []
    assert refused.response["error"] == "user_not_in_channel"


def test_views_open_returns_the_view_once_per_trigger(slack: FakeSlack, client: WebClient) -> None:
    view = {
        "type": "modal",
        "callback_id": "reason",
        "title": {"type": "plain_text", "text": "Why?"},
        "blocks": [],
    }

    opened = client.views_open(trigger_id="123.456.abc", view=view)
    again = api_error(lambda: client.views_open(trigger_id="123.456.abc", view=view))
    garbled = api_error(lambda: client.views_open(trigger_id="not-a-trigger", view=view))

    assert opened["view"]["id"].startswith("V")
    assert slack.views[0]["callback_id"] == "reason"
    assert again.response["error"] == "exchanged_trigger_id"
    assert garbled.response["error"] == "invalid_trigger_id"


def test_files_upload_v2_runs_the_three_steps(slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=OPS, text="plan")

    response = client.files_upload_v2(
        channel=OPS,
        content='resource "aws_instance" {}\n',
        filename="plan.tf",
        title="terraform plan",
        initial_comment="the plan",
        thread_ts=parent["ts"],
    )

    [stored] = slack.files.values()
    assert stored.content == b'resource "aws_instance" {}\n'
    assert (stored.title, stored.channels) == ("terraform plan", [OPS])
    assert response["file"]["id"] == stored.id
    shared = slack.channel_messages(OPS)[-1]
    assert (shared.text, shared.thread_ts) == ("the plan", parent["ts"])
    assert shared.files[0]["name"] == "plan.tf"
    methods = [c.method for c in slack.calls]
    assert methods[1:] == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    request = urllib.request.Request(
        stored.to_json(base_url=slack.url, team_id=slack.team_id)["url_private"],
        headers={"Authorization": f"Bearer {slack.bot_token}"},
    )
    with urllib.request.urlopen(request) as download:
        assert download.read() == stored.content


def test_complete_upload_refuses_unknown_files_and_channels(client: WebClient) -> None:
    unknown = api_error(lambda: client.files_completeUploadExternal(files=[{"id": "F0NOPE"}]))
    ticket = client.files_getUploadURLExternal(filename="a.txt", length=1)
    urllib.request.urlopen(urllib.request.Request(ticket["upload_url"], data=b"a")).close()
    nowhere = api_error(
        lambda: client.files_completeUploadExternal(
            files=[{"id": ticket["file_id"]}], channel_id="C0NOWHERE"
        )
    )

    assert unknown.response["error"] == "file_not_found"
    assert nowhere.response["error"] == "invalid_channel"


def test_async_client_over_aiohttp(slack: FakeSlack) -> None:
    async def converse() -> tuple[str, int]:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        posted = await client.chat_postMessage(channel=OPS, text="async hello")
        slack.rate_limit("auth.test", retry_after=2)
        try:
            await client.auth_test()
        except SlackApiError as limited:
            return str(posted["ts"]), int(limited.response.status_code)
        raise AssertionError("auth.test was not rate limited")

    ts, status = asyncio.run(converse())

    assert slack.message(OPS, ts) is not None
    assert status == 429


# -- rate limits and injected errors --------------------------------------------------------


def test_429_with_retry_after_raises_then_clears(slack: FakeSlack, client: WebClient) -> None:
    slack.rate_limit("chat.postMessage", retry_after=7)

    limited = api_error(lambda: client.chat_postMessage(channel=OPS, text="hi"))
    client.chat_postMessage(channel=OPS, text="hi again")

    assert limited.response.status_code == 429
    assert limited.response.headers["Retry-After"] == "7"
    assert limited.response["error"] == "ratelimited"
    assert [m.text for m in slack.channel_messages(OPS)] == ["hi again"]


def test_rate_limit_retry_handler_waits_and_succeeds(slack: FakeSlack) -> None:
    # The handler sleeps Retry-After plus up to a second of jitter; really wait it out.
    client = WebClient(
        token=slack.bot_token,
        base_url=slack.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)

    started = time.monotonic()
    response = client.chat_postMessage(channel=OPS, text="eventually")
    waited = time.monotonic() - started

    assert response["ok"] is True
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]
    assert 1.0 <= waited < 3.0
    assert [m.text for m in slack.channel_messages(OPS)] == ["eventually"]


def test_injected_error_answers_the_next_call_only(slack: FakeSlack, client: WebClient) -> None:
    slack.fail_next("chat.update", "edit_window_closed")
    posted = client.chat_postMessage(channel=OPS, text="v1")

    refused = api_error(lambda: client.chat_update(channel=OPS, ts=posted["ts"], text="v2"))
    client.chat_update(channel=OPS, ts=posted["ts"], text="v2")

    assert refused.response["error"] == "edit_window_closed"
    assert slack.channel_messages(OPS)[0].text == "v2"


# -- signed requests from Slack ------------------------------------------------------------


def test_signatures_pass_the_sdk_verifier() -> None:
    body = slash_command_body("/approve", "burst-42")
    verifier = SignatureVerifier(SECRET)

    assert verifier.is_valid_request(body, signed_headers(body, SECRET))
    assert not verifier.is_valid_request(body, signed_headers(body, "another-secret"))
    stale = signed_headers(body, SECRET, timestamp=int(time.time()) - 6 * 60)
    assert not verifier.is_valid_request(body, stale)
    assert not verifier.is_valid_request(body + "x", signed_headers(body, SECRET))


def bolt_app(slack: FakeSlack) -> App:
    client = WebClient(token=slack.bot_token, base_url=slack.api_url)
    return App(client=client, signing_secret=SECRET, process_before_response=True)


def dispatch(app: App, body: str, *, secret: str = SECRET) -> BoltResponse:
    headers: dict[str, str | Sequence[str]] = {**signed_headers(body, secret)}
    return app.dispatch(BoltRequest(body=body, headers=headers))


def test_bolt_answers_a_slash_command_through_the_fake(slack: FakeSlack) -> None:
    app = bolt_app(slack)

    @app.command("/approve")
    def approve(ack: Ack, command: dict[str, str], say: Say) -> None:
        ack()
        say(f"<@{command['user_id']}> approved {command['text']}")

    body = slash_command_body("/approve", "burst-42", user_id=ALICE)
    assert dispatch(app, body).status == 200
    assert dispatch(app, body, secret="wrong").status == 401

    assert [m.text for m in slack.channel_messages(OPS)] == [f"<@{ALICE}> approved burst-42"]
    assert [c.method for c in slack.calls] == ["auth.test", "chat.postMessage"]


def test_bolt_handles_events_and_url_verification(slack: FakeSlack) -> None:
    app = bolt_app(slack)

    @app.event("app_mention")
    def mentioned(event: dict[str, str], say: Say) -> None:
        say(text="on it", thread_ts=event["ts"])

    @app.event("message")
    def direct(event: dict[str, str], say: Say) -> None:
        say(f"you said {event['text']}")

    challenge = dispatch(app, url_verification_body("abc123"))
    mention = app_mention_event(f"<@{BOT_USER_ID}> status", channel=GENERAL)
    dispatch(app, event_body(mention))
    im = slack.open_im(ALICE)
    dispatch(app, event_body(message_im_event("hello", channel=im.id)))

    assert json.loads(challenge.body) == {"challenge": "abc123"}
    [reply] = slack.channel_messages(GENERAL)
    assert (reply.text, reply.thread_ts) == ("on it", mention["ts"])
    assert [m.text for m in slack.channel_messages(im.id)] == ["you said hello"]


def test_bolt_block_action_updates_the_card_and_responds(slack: FakeSlack) -> None:
    app = bolt_app(slack)
    card = WebClient(token=slack.bot_token, base_url=slack.api_url).chat_postMessage(
        channel=OPS, text="burst-42 needs approval", blocks=APPROVE_BLOCKS
    )

    @app.action("approve")
    def approve(ack: Ack, body: dict[str, Any], action: dict[str, str], respond: Respond) -> None:
        ack()
        app.client.chat_update(
            channel=body["channel"]["id"], ts=body["message"]["ts"], text=f"{action['value']} ok"
        )
        respond(text="noted", response_type="ephemeral", replace_original=False)

    response_url = slack.new_response_url()
    body = block_actions_body(
        "approve",
        "burst-42",
        block_id="decision",
        message=card["message"],
        response_url=response_url,
    )
    assert dispatch(app, body).status == 200

    assert slack.message(OPS, card["ts"]).text == "burst-42 ok"  # type: ignore[union-attr]
    [posted] = slack.responses
    assert posted.url == response_url
    assert posted.body["text"] == "noted"
