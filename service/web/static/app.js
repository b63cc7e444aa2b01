// The page: one column per agent filling live, the summary streaming below, the caller's
// conversations in the sidebar. It talks only to the service's public API, like any client.
import { Turn, storedTurn } from "/web/turn.js";
import { VersionTree, keyOf } from "/web/versions.js";
import { Evaluations } from "/web/evals.js";

const $ = (id) => document.getElementById(id);
const KEY = "fanout.key";
const RUNNING = "fanout.running";
// A stored turn that ended early is drawn again from its events (the record keeps no column
// for an agent still answering when it stopped, nor the words that said why).
const ENDED_EARLY = new Set(["cancelled", "failed", "interrupted"]);
// What the page says of a run it stopped itself (without storage, by hanging up): the words
// the server uses for a run its user stopped.
const STOPPED = { code: "cancelled", message: "stopped by the user before it finished" };

const state = {
  key: sessionStorage.getItem(KEY),
  storage: true, // false when the server keeps nothing (DATABASE_URL=none)
  conversation: null,
  run: null, // { messageId, controller }
  opening: null, // the conversation being opened (a token: the newest one wins)
  tree: new VersionTree(), // the open conversation's messages and the versions shown
  turns: new Map(), // message key -> its Turn, drawn once (a live one keeps what it saw)
};

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = new Headers(options.headers ?? {});
  if (state.key) headers.set("Authorization", `Bearer ${state.key}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    const refused = state.key !== null;
    sessionStorage.removeItem(KEY);
    state.key = null;
    showSignIn(refused ? "The server did not accept this key or token." : undefined);
    throw new Unauthorized();
  }
  return response;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error?.message ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// --- evaluations (admins only) ------------------------------------------------------------------

// While they are shown, the conversation and the question box step aside.
const evaluations = new Evaluations({
  api,
  readEvents,
  errorText,
  onShow(shown) {
    $("thread").hidden = shown;
    $("ask").hidden = shown;
    $("open-evaluations").setAttribute("aria-expanded", String(shown));
    if (!shown) $("question").focus();
  },
});

// --- sign-in --------------------------------------------------------------------------------

// Until the server accepts the caller, only the sign-in card: no "Sign out", no empty picker.
function signedIn(accepted) {
  document.body.classList.toggle("signed-out", !accepted);
  $("sign-out").hidden = !(accepted && state.key);
}

function showSignIn(message) {
  signedIn(false);
  evaluations.reset();
  $("sign-in").hidden = false;
  $("ask").hidden = true;
  $("sign-in-error").hidden = !message;
  $("sign-in-error").textContent = message ?? "";
  $("key").focus();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.key = $("key").value.trim();
  sessionStorage.setItem(KEY, state.key);
  $("key").value = "";
  $("sign-in").hidden = true;
  $("ask").hidden = false;
  await start();
});

$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  state.key = null;
  $("conversations").replaceChildren();
  state.tree = new VersionTree();
  state.turns = new Map();
  $("thread").replaceChildren();
  showSignIn();
});

// --- ensembles and conversations ----------------------------------------------------------------

async function loadEnsembles() {
  const response = await api("/v1/models");
  if (!response.ok) throw new Error(await errorText(response));
  const { data } = await response.json();
  const select = $("ensemble");
  const chosen = select.value;
  select.replaceChildren(
    ...data.map((model) => {
      const option = document.createElement("option");
      option.value = option.textContent = model.id;
      return option;
    }),
  );
  if (data.some((model) => model.id === chosen)) select.value = chosen;
}

async function loadConversations() {
  const response = await api("/api/conversations?limit=50");
  if (response.status === 404) {
    state.storage = false; // nothing is kept: no sidebar, no resume
    $("sidebar").hidden = true;
    $("toggle-sidebar").hidden = true;
    setSidebar(false);
    return;
  }
  if (!response.ok) return;
  const { conversations } = await response.json();
  const list = $("conversations");
  list.replaceChildren(
    ...conversations.map((conversation) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = `#${encodeURIComponent(conversation.id)}`;
      link.textContent = conversation.title;
      link.title = conversation.title;
      link.dataset.conversation = conversation.id;
      if (conversation.id === state.conversation) link.setAttribute("aria-current", "true");
      link.addEventListener("click", (event) => {
        event.preventDefault();
        if (PHONE.matches) setSidebar(false); // on a phone the list covers the thread
        openConversation(conversation.id);
      });
      const remove = document.createElement("button");
      remove.className = "ghost";
      remove.textContent = "×";
      remove.title = `Delete "${conversation.title}"`;
      remove.setAttribute("aria-label", `Delete conversation ${conversation.title}`);
      remove.addEventListener("click", () => deleteConversation(conversation.id));
      item.append(link, remove);
      return item;
    }),
  );
  $("no-conversations").hidden = conversations.length > 0;
}

async function openConversation(id) {
  // The last one asked for wins: an earlier open still loading draws nothing.
  const opening = (state.opening = {});
  const response = await api(`/api/conversations/${encodeURIComponent(id)}`);
  if (state.opening !== opening) return;
  if (!response.ok) {
    if (conversationInAddress() === id) showInAddress(null, { replace: true }); // gone
    return;
  }
  const conversation = await response.json();
  if (state.opening !== opening) return;
  evaluations.hide();
  state.conversation = id;
  showInAddress(id);
  state.tree = new VersionTree(conversation.messages);
  state.turns = new Map();
  drawThread();
  // A follow-up goes to the ensemble the conversation last used, while it is served.
  const last = state.tree.message(state.tree.last() ?? "");
  if ([...$("ensemble").options].some((option) => option.value === last?.ensemble)) {
    $("ensemble").value = last.ensemble;
  }
  await loadConversations();
  $("question").focus();
  const newest = new Map();
  for (const { message_id: messageId, version } of conversation.messages) {
    newest.set(messageId, Math.max(version, newest.get(messageId) ?? 0));
  }
  // One at a time: each replay holds one of the caller's stream slots while it reads. Only
  // a message's newest version has its events at hand (the route follows the newest).
  for (const key of state.tree.path()) {
    const message = state.tree.message(key);
    if (newest.get(message.message_id) !== message.version || !toReplay(message)) continue;
    if (state.opening !== opening) return; // opened again, or another one, meanwhile
    await replayTurn(key, message);
  }
}

// Drawn again from its events: a turn that ended early, and a deliberation (its record keeps
// the answers of each step, not the tally, the rankings or the answer chosen).
function toReplay(message) {
  if (ENDED_EARLY.has(message.status)) return true;
  if (message.status !== "completed") return false;
  if (message.agents.some((a) => a.phase !== "answer" || a.round !== 0)) return true;
  const members = new Set(message.agents.map((a) => a.agent));
  return Object.keys(message.usage ?? {}).every((caller) => members.has(caller)); // no summarizer: a vote
}

// The turn as it was seen live, from its stored events; the record's drawing stays if they
// cannot be read.
async function replayTurn(key, message) {
  const response = await api(`/api/messages/${encodeURIComponent(message.message_id)}/events`);
  if (!response.ok) return;
  const turn = new Turn(message.question, turnActions());
  await readEvents(response, (id, type, data) => turn.event(type, data));
  if (!turn.ended()) return;
  const shown = state.turns.get(key);
  state.turns.set(key, turn);
  turn.setVersions(state.tree.place(key));
  if (shown?.root.isConnected) shown.root.replaceWith(turn.root);
}

// --- versions: the path shown, edit, regenerate, step ----------------------------------------

// What a turn's buttons do; none without storage (nothing is kept to make a version of).
function turnActions() {
  if (!state.storage) return {};
  return { edit: editTurn, regenerate: regenerateTurn, step: stepVersion };
}

function keyOfTurn(turn) {
  for (const [key, shown] of state.turns) if (shown === turn) return key;
  return null;
}

function turnFor(key) {
  if (!state.turns.has(key)) state.turns.set(key, storedTurn(state.tree.message(key), turnActions()));
  return state.turns.get(key);
}

// The thread: the path of versions chosen, each turn with its `< 2/3 >`.
function drawThread() {
  const turns = state.tree.path().map((key) => {
    const turn = turnFor(key);
    turn.setVersions(state.tree.place(key));
    return turn.root;
  });
  $("thread").replaceChildren(...turns);
}

function stepVersion(turn, step) {
  const key = keyOfTurn(turn);
  const other = key && state.tree.sibling(key, step);
  if (!other || state.run) return;
  state.tree.choose(other);
  drawThread();
  // The focus stays on the arrow pressed, or, at an end, on the other one.
  const shown = turnFor(other);
  const [previous, next] = shown.root.querySelectorAll(".versions button");
  const pressed = step < 0 ? previous : next;
  (pressed.disabled ? (step < 0 ? next : previous) : pressed).focus();
  announce(`Version ${state.tree.place(other).index} of ${state.tree.place(other).count}`);
}

// An edit is the next version of the message, in its place: the turns after it leave the
// thread (they stay with the version before, a step away).
function editTurn(turn, text) {
  const key = keyOfTurn(turn);
  if (!key || state.run) return;
  const message = state.tree.message(key);
  send({ question: text, messageId: message.message_id, after: state.tree.parent(key) });
}

function regenerateTurn(turn) {
  const key = keyOfTurn(turn);
  if (!key || state.run) return;
  const message = state.tree.message(key);
  // The text of the version shown (the id's newest may be another edit).
  send({ question: message.question, messageId: message.message_id, after: state.tree.parent(key), regenerate: true });
}

function announce(text) {
  $("status").textContent = text;
}

async function deleteConversation(id) {
  if (!confirm("Delete this conversation?")) return;
  const response = await api(`/api/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (response.ok && state.conversation === id) newConversation();
  await loadConversations();
}

function newConversation() {
  evaluations.hide();
  state.conversation = null;
  state.tree = new VersionTree();
  state.turns = new Map();
  showInAddress(null);
  $("thread").replaceChildren();
  $("question").focus();
}
$("new-conversation").addEventListener("click", newConversation);

// The open conversation is the address's fragment (`/#<id>`): a reload, a bookmark or Back
// shows it again.
function conversationInAddress() {
  return decodeURIComponent(location.hash.slice(1)) || null;
}

function showInAddress(id, { replace = false } = {}) {
  const hash = id ? `#${encodeURIComponent(id)}` : "";
  if (location.hash === hash) return;
  const address = hash || location.pathname + location.search;
  if (replace) history.replaceState(null, "", address);
  else history.pushState(null, "", address);
}

window.addEventListener("hashchange", () => {
  const id = conversationInAddress();
  if (id === state.conversation) return;
  if (id) openConversation(id);
  else newConversation();
});

// On a phone the sidebar starts closed: open, it would take the top of the screen.
const PHONE = window.matchMedia("(max-width: 700px)");

function setSidebar(open) {
  document.querySelector(".layout").classList.toggle("sidebar-closed", !open);
  $("toggle-sidebar").setAttribute("aria-expanded", String(open));
}
setSidebar(!PHONE.matches);

$("toggle-sidebar").addEventListener("click", () => {
  setSidebar(document.querySelector(".layout").classList.contains("sidebar-closed"));
});

// --- asking, following, stopping -----------------------------------------------------------------

async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields = { data: [] };
      for (const line of block.split("\n")) {
        const colon = line.indexOf(":");
        if (colon <= 0) continue; // a comment (keep-alive) or a blank line
        const name = line.slice(0, colon);
        const value = line.slice(colon + 1).replace(/^ /, "");
        if (name === "data") fields.data.push(value);
        else fields[name] = value;
      }
      if (fields.event) onEvent(fields.id, fields.event, JSON.parse(fields.data.join("\n")));
    }
  }
}

function busy(running) {
  $("send").disabled = running;
  $("stop").disabled = !running;
  document.body.classList.toggle("running", running);
}

async function follow(response, turn, messageId) {
  state.run = { ...state.run, messageId };
  busy(true);
  announce("The agents are answering");
  try {
    await readEvents(response, (id, type, data) => {
      if (state.storage) sessionStorage.setItem(RUNNING, JSON.stringify({ messageId, lastEventId: id }));
      if (data.conversation_id && !state.conversation) {
        state.conversation = data.conversation_id;
        showInAddress(state.conversation, { replace: true });
      }
      if (type === "summary.started") announce("The final answer is coming in");
      turn.event(type, data);
    });
  } catch (error) {
    if (error.name !== "AbortError") throw error;
    if (!turn.ended()) turn.fail({ error: STOPPED });
  } finally {
    busy(false);
    state.run = null;
  }
  announce(turn.root.dataset.state === "done" ? "The answer is complete" : turn.footer.textContent);
  if (turn.ended()) sessionStorage.removeItem(RUNNING);
  await loadConversations();
}

// Ask a question: a new one after the turn `after` (its key; null: the first), or, with the
// `messageId` of a turn, an edit or a regenerate of it in its place.
async function send({ question, messageId, after = null, regenerate = false }) {
  if (!question || state.run) return;
  $("ask-error").hidden = true;
  const newTurn = messageId === undefined;
  messageId ??= crypto.randomUUID();
  const body = { message: question, message_id: messageId, ensemble: $("ensemble").value };
  if (regenerate) body.regenerate = true;
  if (state.conversation) body.conversation_id = state.conversation;
  // A new question follows the turn shown last, whichever version it is (by default the
  // server would put it after the conversation's newest message).
  if (newTurn && after && state.conversation) {
    const { message_id: parentId, version } = state.tree.message(after);
    body.parent = { message_id: parentId, version };
  }
  // With storage, a reload or a dropped connection does not lose the run: it goes on, and
  // the page picks it up again; Stop cancels it explicitly.
  if (state.storage) body.on_disconnect = "continue";
  const controller = new AbortController();
  state.run = { messageId, controller };
  const turn = new Turn(question, turnActions());
  // The thread down to the turn it follows, then the new one.
  if (state.storage) {
    const shown = state.tree.path();
    const kept = after ? shown.slice(0, shown.indexOf(after) + 1) : [];
    $("thread").replaceChildren(...kept.map((key) => turnFor(key).root), turn.root);
  } else {
    $("thread").append(turn.root); // nothing kept: no versions, the thread as it was seen
  }
  // The new turn in view: below the earlier answers it would start under the fold.
  turn.root.scrollIntoView({ block: "start" });
  const restore = () => {
    state.run = null;
    busy(false);
    if (state.storage) drawThread();
    else turn.root.remove();
  };
  try {
    const response = await api("/api/process", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      restore();
      $("ask-error").textContent = await errorText(response);
      $("ask-error").hidden = false;
      return false;
    }
    state.conversation = response.headers.get("X-Conversation-Id") ?? state.conversation;
    if (state.conversation) showInAddress(state.conversation, { replace: true });
    const version = Number(response.headers.get("X-Message-Version"));
    if (state.storage && version) {
      const parent = after ? state.tree.message(after) : null;
      const key = state.tree.add({
        message_id: messageId,
        version,
        parent: parent && { message_id: parent.message_id, version: parent.version },
        question,
        status: "running",
        agents: [],
        current: true,
      });
      state.turns.set(key, turn);
      for (const shownKey of state.tree.path()) state.turns.get(shownKey)?.setVersions(state.tree.place(shownKey));
    }
    await follow(response, turn, messageId);
    const key = keyOfTurn(turn);
    if (key) state.tree.message(key).status = turn.root.dataset.state === "done" ? "completed" : "cancelled";
    return true;
  } catch (error) {
    state.run = null;
    busy(false);
    if (error instanceof Unauthorized) {
      restore();
      return false;
    } else if (error.name === "AbortError") {
      if (!turn.ended()) turn.fail({ error: STOPPED });
    } else {
      $("ask-error").textContent = String(error);
      $("ask-error").hidden = false;
    }
    return true;
  }
}

$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || state.run) return;
  $("question").value = "";
  const sent = await send({ question, after: state.tree.last() });
  if (sent === false) $("question").value = question;
});

// Escape stops the run, from anywhere on the page (an open edit takes it first).
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && state.run && !$("stop").disabled) {
    event.preventDefault();
    $("stop").click();
  }
});

// Enter sends, Shift+Enter starts a new line (as in every chat); not while an input method
// is composing a character.
$("question").addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
  event.preventDefault();
  $("ask").requestSubmit();
});

$("stop").addEventListener("click", async () => {
  if (!state.run) return;
  const { messageId, controller } = state.run;
  $("stop").disabled = true;
  if (state.storage) {
    // The run goes on without its client (so a reload can resume it): cancel it outright,
    // then let its stream end with `cancelled`, the way every client sees it.
    const response = await api(`/api/messages/${encodeURIComponent(messageId)}/cancel`, {
      method: "POST",
    });
    if (response.ok) {
      setTimeout(() => controller.abort(), 5000);
      return;
    }
  }
  // Without storage a hang-up cancels the run: every upstream call is closed.
  controller.abort();
});

// True if a run was going on in this tab: it is followed again.
async function resume() {
  const running = JSON.parse(sessionStorage.getItem(RUNNING) ?? "null");
  if (!running || !state.storage) return false;
  const stored = await api(`/api/messages/${encodeURIComponent(running.messageId)}`);
  if (!stored.ok) {
    sessionStorage.removeItem(RUNNING);
    return false;
  }
  const message = await stored.json();
  state.conversation = message.conversation_id;
  await openConversation(message.conversation_id);
  // The turn of the running message is redrawn from its events, from the first.
  const key = keyOf(message.message_id, message.version);
  const turn = new Turn(message.question, turnActions());
  const shown = state.turns.get(key);
  state.turns.set(key, turn);
  if (shown?.root.isConnected) shown.root.replaceWith(turn.root);
  else $("thread").append(turn.root);
  turn.setVersions(state.tree.place(key));
  const controller = new AbortController();
  state.run = { messageId: running.messageId, controller };
  const response = await api(`/api/messages/${encodeURIComponent(running.messageId)}/events`, {
    signal: controller.signal,
  });
  if (response.ok) await follow(response, turn, running.messageId);
  return true;
}

async function start() {
  try {
    await loadEnsembles();
    $("sign-in").hidden = true;
    $("ask").hidden = false;
    signedIn(true);
    await loadConversations();
    if (state.storage) await evaluations.offer();
    const resumed = await resume();
    const inAddress = conversationInAddress();
    if (!resumed && inAddress && state.storage) await openConversation(inAddress);
  } catch (error) {
    if (!(error instanceof Unauthorized)) {
      $("ask-error").textContent = String(error);
      $("ask-error").hidden = false;
    }
  }
}

start();
