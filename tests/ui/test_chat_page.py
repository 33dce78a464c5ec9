"""The built-in chat page in a real browser, on the demo model: replies stream in pieces, the
conversation outlives a reload and a server restart, Stop stores nothing, model and user text never
become live HTML, and API keys are asked for once."""

import httpx
import pytest
from browser_fixtures import chromium_browser, chromium_page  # noqa: F401 - the `browser` and `page` fixtures
from helpers import ServerProcess

HOSTILE = '<img src=x onerror="alert(1)"> <script>window.pwned = 1; alert(2)</script>'


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    db = tmp_path_factory.mktemp("ui") / "conversations.sqlite3"
    with ServerProcess(db=db, engine="auto") as server:  # llama.cpp for the demo model: the quickest here
        yield server


def watch_reply(page) -> None:
    """Record every text the newest reply shows, as it changes."""
    page.evaluate("""() => {
        window.replyTexts = [];
        new MutationObserver(() => {
            const replies = document.querySelectorAll('.message.assistant');
            const text = replies.length ? replies[replies.length - 1].textContent : '';
            if (text && text !== window.replyTexts[window.replyTexts.length - 1]) window.replyTexts.push(text);
        }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
    }""")


def send(page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def wait_for_reply(page) -> str:
    page.wait_for_selector("#send", state="visible")
    return page.locator(".message.assistant").last.inner_text()


def session_of(page) -> str:
    return page.evaluate("() => decodeURIComponent(location.hash.slice(1))")


def test_a_reply_streams_in_pieces_and_outlives_a_reload_and_a_restart(tmp_path, page):
    db = tmp_path / "kept.sqlite3"
    with ServerProcess(db=db, engine="auto") as server:
        page.goto(server.url)
        page.wait_for_selector("#status:has-text('demo')")
        assert "llama.cpp" in page.inner_text("#status") and "cpu" in page.inner_text("#status")
        watch_reply(page)
        send(page, "Tell me the capital of France.")
        reply = wait_for_reply(page)
        pieces = [" ".join(text.split()) for text in page.evaluate("() => window.replyTexts")]
        assert len(pieces) >= 3 and pieces[-1] == " ".join(reply.split()) and reply.strip()
        session = session_of(page)
        stored = httpx.get(f"{server.url}/sessions/{session}").json()["messages"]
        assert [m["role"] for m in stored] == ["user", "assistant"]

        page.reload()
        page.wait_for_selector("#conversations li:has-text('Tell me the capital of France')")
        page.wait_for_selector(".message.assistant")
        assert page.locator(".message.user").inner_text() == "Tell me the capital of France."
        assert page.locator(".message.assistant").inner_text() == reply

    with ServerProcess(db=db, engine="auto") as restarted:  # another process, another port: only the server remembers
        page.goto(restarted.url)
        page.click("#conversations li:has-text('Tell me the capital of France')")
        page.wait_for_selector(".message.assistant")
        assert page.locator(".message.assistant").inner_text() == reply


def test_stop_during_a_long_reply_stores_no_round(ui_server, page):
    page.goto(ui_server.url)
    for _ in range(3):  # a sampled reply may, rarely, end before there is time to stop it: try again
        page.click("#new-chat")
        send(page, "Write a very long story about a dragon and a lighthouse keeper, in many chapters.")
        page.wait_for_function("() => document.querySelector('.message.assistant')?.textContent.length > 20"
                               " || document.getElementById('stop').hidden")
        if page.locator("#stop").is_visible():
            break
    session = session_of(page)
    page.click("#stop")
    page.wait_for_selector("#notice:has-text('not saved')")
    assert page.locator(".message.assistant.stopped").count() == 1
    for _ in range(100):  # the server notices the closed connection within a few tokens
        if httpx.get(ui_server.url + "/status").json()["running_requests"] == 0:
            break
        page.wait_for_timeout(100)
    assert httpx.get(f"{ui_server.url}/sessions/{session}").status_code == 404  # nothing was stored


def test_html_in_a_message_or_a_reply_shows_as_text_and_runs_nothing(ui_server, page):
    reply = f"Here it is: {HOSTILE}\n\n- first\n- second\n\n```\nprint('code')\n```\n\n[click](javascript:alert(3))"
    conversation = httpx.post(ui_server.url + "/v1/conversations", json={"items": [
        {"type": "message", "role": "user", "content": f"Show me {HOSTILE}"},
        {"type": "message", "role": "assistant", "content": reply}]}).json()["id"]
    page.goto(f"{ui_server.url}/#{conversation}")
    page.wait_for_selector(".message.assistant li")
    messages = page.locator("#messages")
    assert messages.locator("img, script").count() == 0
    assert HOSTILE in page.locator(".message.user").inner_text()
    assert "<img src=x" in page.locator(".message.assistant").inner_text()
    assert messages.locator(".message.assistant li").count() == 2  # Markdown still renders
    assert messages.locator(".message.assistant pre code").inner_text().strip() == "print('code')"
    page.click(".message.assistant a")
    page.click("#new-chat")
    send(page, HOSTILE)
    wait_for_reply(page)
    assert page.locator(".message.user").inner_text() == HOSTILE
    assert page.evaluate("() => window.pwned") is None and page.dialogs == []


def test_with_api_keys_the_page_asks_refuses_a_wrong_key_and_works_with_the_right_one(tmp_path, page):
    with ServerProcess("--api-key", "right-key", db=tmp_path / "c.sqlite3", engine="auto") as server:
        page.goto(server.url)  # the page itself needs no key
        page.wait_for_selector("#key-dialog[open]")
        assert page.locator("#key-error").is_hidden()
        page.fill("#key-input", "wrong-key")
        page.click("#key-form button")
        page.wait_for_selector("#key-error:has-text('refused')")
        page.fill("#key-input", "right-key")
        page.click("#key-form button")
        page.wait_for_selector("#status:has-text('demo')")
        send(page, "Tell me the capital of France.")
        assert wait_for_reply(page).strip()
        page.reload()  # kept in this browser: not asked again
        page.wait_for_selector("#conversations li")
        assert page.locator("#key-dialog[open]").count() == 0
        assert httpx.get(server.url + "/sessions").status_code == 401  # the API still needs the key


def test_an_agents_tool_calls_and_results_show_readably(ui_server, page):
    """A conversation an agent had through the Responses API: the page shows each call with its
    arguments and each result with the function it came from, as text."""
    tools = [{"type": "function", "name": "get_weather", "description": "Get the weather in a city",
              "parameters": {"type": "object", "additionalProperties": False, "required": ["city"],
                             "properties": {"city": {"type": "string", "maxLength": 20}}}}]
    api = f"{ui_server.url}/v1"
    conversation = httpx.post(f"{api}/conversations", json={}).json()["id"]
    first = httpx.post(f"{api}/responses", timeout=120, json={
        "model": "demo", "conversation": conversation, "input": "What is the weather like in Paris?",
        "tools": tools, "tool_choice": "required", "temperature": 0, "max_output_tokens": 40}).json()
    call = first["output"][0]
    result = [{"type": "function_call_output", "call_id": call["call_id"], "output": f"Sunny {HOSTILE}"}]
    httpx.post(f"{api}/responses", timeout=120, json={
        "model": "demo", "conversation": conversation, "input": result, "temperature": 0,
        "max_output_tokens": 20}).raise_for_status()
    page.goto(f"{ui_server.url}/#{conversation}")
    page.wait_for_selector(".message.tool")
    shown = page.locator(".message.tool").all_inner_texts()
    assert shown == [f"Called get_weather({call['arguments']})", f"get_weather returned: Sunny {HOSTILE}"]
    assert page.locator(".message.assistant").count() == 1
    assert page.evaluate("() => window.pwned") is None
