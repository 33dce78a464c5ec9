"""The chat page's files: served from the package without a key, with a strict CSP, and gone with
--no-ui; and the list of sessions carries each conversation's first words as its title."""

from conftest import make_client, wait_healthy


def test_the_page_and_its_files_are_served_without_a_key(tiny_models, tmp_path):
    with make_client(tiny_models["llama"], tmp_path, api_key=["k"]) as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for asset in ("/ui/app.js", "/ui/style.css", "/ui/vendor/marked.umd.js", "/ui/vendor/purify.min.js"):
            assert client.get(asset).status_code == 200, asset
        assert 'src="/ui/app.js"' in page.text and "http" not in page.text.split("<body>")[0]  # nothing from outside
        assert client.get("/sessions").status_code == 401  # the API itself still needs the key
        assert "/" not in client.get("/openapi.json", headers={"Authorization": "Bearer k"}).json()["paths"]


def test_no_ui_turns_the_page_off(tiny_models, tmp_path):
    with make_client(tiny_models["llama"], tmp_path, no_ui=True) as client:
        assert client.get("/").status_code == 404 and client.get("/ui/app.js").status_code == 404


def test_sessions_carry_their_first_words_as_a_title(tiny_models, tmp_path):
    with make_client(tiny_models["llama"], tmp_path) as client:
        wait_healthy(client)
        long = "one two three four five six seven eight nine ten"
        client.post("/chat", json={"message": long, "max_tokens": 2, "session_id": "a"})
        client.post("/chat", json={"message": "second turn", "max_tokens": 2, "session_id": "a"})
        client.post("/chat", json={"message": "short one", "max_tokens": 2, "session_id": "b"})
        client.post("/v1/conversations", json={})
        titles = {s["session_id"]: s["title"] for s in client.get("/sessions").json()["sessions"]}
        assert titles["a"] == "one two three four five six seven eight ..." and titles["b"] == "short one"
        assert sorted(titles.values())[0] == ""  # a conversation without messages yet
