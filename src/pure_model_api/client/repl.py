"""`python api_client_example.py [--url URL] [--session ID]`: chat with the server from a terminal.

Any line is sent as a message and the reply printed as it streams; `reset` clears the
conversation, `status` prints the server status, `quit` (or Ctrl-D / Ctrl-C) exits. A server that
is down or answers an error gives a one-line message and the client keeps going."""

from __future__ import annotations

import argparse
import json
import os
import sys

import httpx

from pure_model_api.client.sse import sse_events

HELP = "Type a message and press Enter. Commands: reset, status, quit."


class ChatClient:
    def __init__(self, url: str, session_id: str | None, api_key: str | None, stream: bool = True,
                 generation: dict | None = None, out=sys.stdout):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if session_id:  # a load balancer in front keeps the conversation on one replica (its KV cache)
            headers["X-Conversation-ID"] = session_id
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=httpx.Timeout(10.0, read=600.0))
        self.session_id = session_id
        self.stream = stream
        self.generation = generation or {}  # temperature, max_tokens: the server's defaults otherwise
        self.out = out

    def _session(self) -> dict:
        return {"session_id": self.session_id} if self.session_id else {}

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def handle(self, line: str) -> bool:
        """Act on one input line; False means quit."""
        command = line.strip()
        if not command:
            return True
        if command.lower() in ("quit", "exit"):
            return False
        try:
            if command.lower() == "reset":
                self._check(self.http.post("/reset", json=self._session()))
                self.say("Conversation reset.")
            elif command.lower() == "status":
                status = self._check(self.http.get("/status", params=self._session()))
                self.say(json.dumps(status, indent=2))
            else:
                self.chat(line)
        except httpx.TransportError as error:
            self.say(f"error: cannot reach the server at {self.http.base_url} ({type(error).__name__})")
        except ServerError as error:
            self.say(f"error: {error}")
        return True

    def chat(self, message: str) -> None:
        body = {"message": message, **self.generation, **self._session()}
        if not self.stream:
            reply = self._check(self.http.post("/chat", json=body))
            self.say(f"Assistant: {reply['response']}")
            return
        with self.http.stream("POST", "/chat", json={**body, "stream": True}) as response:
            if response.status_code != 200:
                response.read()
                self._check(response)
            self.out.write("Assistant: ")
            for event, data in sse_events(response):
                if event == "delta":
                    self.out.write(data["delta"])
                    self.out.flush()
                elif event == "error":
                    self.say("")
                    raise ServerError(data.get("error", "the server failed mid-reply"))
            self.say("")

    @staticmethod
    def _check(response: httpx.Response) -> dict:
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.status_code >= 400:
            message = payload.get("error") if isinstance(payload, dict) else None
            raise ServerError(f"{response.status_code}: {message or response.reason_phrase}")
        return payload


class ServerError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Interactive client for the Pure Model API service.")
    parser.add_argument("--url", default=os.environ.get("PURE_API_URL", "http://127.0.0.1:5000"))
    parser.add_argument("--session", default=None, help="conversation id (default: the shared default one)")
    parser.add_argument("--api-key", default=os.environ.get("PURE_API_KEY"), help="bearer key, if the server wants one")
    parser.add_argument("--no-stream", action="store_true", help="print replies whole instead of as they stream")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature (0 = greedy)")
    parser.add_argument("--max-tokens", type=int, default=None, help="longest reply, in tokens")
    args = parser.parse_args(argv)
    generation = {k: v for k, v in (("temperature", args.temperature), ("max_tokens", args.max_tokens))
                  if v is not None}
    client = ChatClient(args.url, args.session, args.api_key, stream=not args.no_stream, generation=generation)
    client.say(f"Connected to {args.url}. {HELP}")
    while True:
        try:
            line = input("You: ")
        except (EOFError, KeyboardInterrupt):
            client.say("")
            break
        try:
            if not client.handle(line):
                break
        except KeyboardInterrupt:
            client.say("\n(interrupted)")
    client.say("Goodbye.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
