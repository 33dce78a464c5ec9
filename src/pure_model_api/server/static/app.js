"use strict";
// The chat page. It uses only the service's public API: GET /sessions and /sessions/{id}, POST /chat
// (streaming), POST /reset, DELETE /sessions/{id}, GET /status. It holds no secret: with API keys
// on, it asks for one and keeps it in this browser's localStorage.
//
// Safety: a user's text is shown with textContent. A reply is Markdown rendered by marked, with any
// raw HTML in it escaped to text, then sanitized by DOMPurify; the page's Content-Security-Policy
// allows no inline script besides.

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "pure-model-api-key";
const state = {session: null, controller: null, key: localStorage.getItem(KEY_STORAGE) || "", asking: null};

const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
marked.use({renderer: {html: (token) => escapeHtml(token.text)}});

function renderMarkdown(element, text) {
  element.innerHTML = DOMPurify.sanitize(marked.parse(text));
}

function newSessionId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));  // works outside secure contexts too
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---- the API, with the key when there is one ----
async function api(path, {method = "GET", body, signal, conversation} = {}) {
  const headers = {};
  if (conversation) headers["X-Conversation-ID"] = conversation;  // lets a balancer keep it on one replica
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body)});
  if (response.status === 401) {
    await askForKey(Boolean(state.key));
    return api(path, {method, body, signal, conversation});
  }
  return response;
}

function askForKey(refused) {
  if (!state.asking) {
    state.asking = new Promise((resolve) => {
      $("key-error").hidden = !refused;
      $("key-input").value = "";
      $("key-form").onsubmit = () => {
        state.key = $("key-input").value.trim();
        localStorage.setItem(KEY_STORAGE, state.key);
        state.asking = null;
        resolve();
      };
      $("key-dialog").showModal();
    });
  }
  return state.asking;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return typeof body.error === "string" ? body.error : body.error.message;
  } catch {
    return `the server answered ${response.status}`;
  }
}

// ---- the conversation list ----
async function refreshList() {
  const response = await api("/sessions?limit=100");
  if (!response.ok) return showNotice(await errorOf(response));
  const list = $("conversations");
  list.replaceChildren();
  for (const session of (await response.json()).sessions) {
    const item = document.createElement("li");
    item.textContent = session.title || "(empty conversation)";
    item.title = session.session_id;
    item.dataset.session = session.session_id;
    item.classList.toggle("selected", session.session_id === state.session);
    item.onclick = () => openConversation(session.session_id);
    list.append(item);
  }
}

async function openConversation(sessionId) {
  if (state.controller) return;  // a reply is still arriving
  state.session = sessionId;
  location.hash = sessionId ? encodeURIComponent(sessionId) : "";
  $("messages").replaceChildren();
  showNotice("");
  let messages = [];
  if (sessionId) {
    const response = await api(`/sessions/${encodeURIComponent(sessionId)}`);
    if (response.ok) messages = (await response.json()).messages;
    else if (response.status !== 404) showNotice(await errorOf(response));
  }
  const called = {};  // call_id -> function name, for the results
  for (const message of messages) {
    if (message.role === "function_call") {
      called[message.call_id] = message.name;
      addMessage("tool", `Called ${message.name}(${message.content})`);
    } else if (message.role === "function_call_output") {
      addMessage("tool", `${called[message.call_id] || "A tool"} returned: ${message.content}`);
    } else addMessage(message.role, message.content);
  }
  $("title").textContent = messages.length ? messages[0].content.slice(0, 80) : "New conversation";
  $("reset").disabled = $("delete").disabled = !messages.length;
  for (const item of $("conversations").children) item.classList.toggle("selected", item.dataset.session === sessionId);
}

function addMessage(role, text) {
  const bubble = document.createElement("div");
  bubble.className = `message ${role}`;
  if (role === "assistant") renderMarkdown(bubble, text);
  else bubble.textContent = text;
  $("messages").append(bubble);
  bubble.scrollIntoView({block: "end"});
  return bubble;
}

function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

// ---- sending, streaming and stopping ----
async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) yield {event, data: JSON.parse(data)};
    }
  }
}

async function send(text) {
  if (!state.session) state.session = newSessionId();
  location.hash = encodeURIComponent(state.session);
  addMessage("user", text);
  const bubble = addMessage("assistant", "");
  bubble.classList.add("streaming");
  setBusy(new AbortController());
  let reply = "";
  try {
    const response = await api("/chat", {method: "POST", signal: state.controller.signal, conversation: state.session,
                                         body: {message: text, session_id: state.session, stream: true}});
    if (!response.ok) throw new Error(await errorOf(response));
    for await (const {event, data} of serverSentEvents(response)) {
      if (event === "delta") reply += data.delta;
      else if (event === "done") reply = data.response;
      else if (event === "error") throw new Error(data.error);
      renderMarkdown(bubble, reply);
      bubble.scrollIntoView({block: "end"});
    }
    $("reset").disabled = $("delete").disabled = false;
  } catch (error) {
    bubble.classList.add("stopped");
    if (error.name === "AbortError") showNotice("Stopped. That reply was not saved.");
    else showNotice(error.message);
  } finally {
    bubble.classList.remove("streaming");
    setBusy(null);
    await refreshList();
  }
}

function setBusy(controller) {
  state.controller = controller;
  $("send").hidden = Boolean(controller);
  $("stop").hidden = !controller;
}

// ---- wiring ----
function start() {
  $("composer").onsubmit = (event) => {
    event.preventDefault();
    const text = $("input").value;
    if (!text.trim() || state.controller) return;
    $("input").value = "";
    showNotice("");
    send(text);
  };
  $("input").onkeydown = (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  };
  $("stop").onclick = () => state.controller && state.controller.abort();
  $("new-chat").onclick = () => openConversation(null);
  $("reset").onclick = async () => {
    const response = await api("/reset", {method: "POST", body: {session_id: state.session}});
    if (!response.ok) return showNotice(await errorOf(response));
    await openConversation(state.session);
    await refreshList();
  };
  $("delete").onclick = async () => {
    const response = await api(`/sessions/${encodeURIComponent(state.session)}`, {method: "DELETE"});
    if (!response.ok && response.status !== 404) return showNotice(await errorOf(response));
    await openConversation(null);
    await refreshList();
  };
  loadStatus();
  refreshList().then(() => openConversation(decodeURIComponent(location.hash.slice(1)) || null));
}

async function loadStatus() {
  const response = await api("/status");
  if (!response.ok) return;
  const status = await response.json();
  $("status").textContent = `${status.model_name} · ${status.engine} engine · ${status.device}`;
}

start();
