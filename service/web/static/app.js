// The page: one column per agent filling live, the summary streaming below, the caller's
// conversations in the sidebar. It talks only to the service's public API, like any client.
import { copyButton } from "/web/clipboard.js";
import { renderMarkdown } from "/web/markdown.js";

const $ = (id) => document.getElementById(id);
const KEY = "fanout.key";
const RUNNING = "fanout.running";
const CUT_CODES = new Set(["agent_cut", "deadline_exceeded", "cancelled"]);
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
};

class Unauthorized extends Error {}

// "1 attempt", "2 attempts", "1,234 tokens"
function count(n, noun) {
  return `${n.toLocaleString("en-US")} ${noun}${n === 1 ? "" : "s"}`;
}

function money(dollars) {
  if (dollars === 0) return "$0";
  if (dollars < 0.000001) return "<$0.000001";
  return `$${dollars >= 0.01 ? dollars.toFixed(4) : dollars.toPrecision(2)}`;
}

// What something used, each part where known: "1,234 tokens · 2.3 s · $0.0012".
function figures({ tokens, seconds, dollars }) {
  const parts = [];
  if (tokens != null) parts.push(count(tokens, "token"));
  if (seconds != null) parts.push(`${seconds.toFixed(1)} s`);
  if (dollars != null) parts.push(money(dollars));
  return parts.join(" · ");
}

function tokensOf(usage) {
  return usage ? usage.prompt_tokens + usage.completion_tokens : undefined;
}

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

// --- sign-in --------------------------------------------------------------------------------

// Until the server accepts the caller, only the sign-in card: no "Sign out", no empty picker.
function signedIn(accepted) {
  document.body.classList.toggle("signed-out", !accepted);
  $("sign-out").hidden = !(accepted && state.key);
}

function showSignIn(message) {
  signedIn(false);
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
  state.conversation = id;
  showInAddress(id);
  const thread = $("thread");
  thread.replaceChildren();
  const turns = conversation.messages.map((message) => [message, storedTurn(message)]);
  thread.append(...turns.map(([, turn]) => turn.root));
  await loadConversations();
  $("question").focus();
  const newest = new Map();
  for (const { message_id: messageId, version } of conversation.messages) {
    newest.set(messageId, Math.max(version, newest.get(messageId) ?? 0));
  }
  // One at a time: each replay holds one of the caller's stream slots while it reads.
  for (const [message, turn] of turns) {
    if (!ENDED_EARLY.has(message.status) || newest.get(message.message_id) !== message.version) continue;
    if (state.opening !== opening) return; // opened again, or another one, meanwhile
    await replayTurn(message, turn);
  }
}

// The turn as it was seen live, from its stored events; the record's drawing stays if they
// cannot be read.
async function replayTurn(message, shown) {
  const response = await api(`/api/messages/${encodeURIComponent(message.message_id)}/events`);
  if (!response.ok) return;
  const turn = new Turn(message.question);
  await readEvents(response, (id, type, data) => turn.event(type, data));
  if (turn.ended() && shown.root.isConnected) shown.root.replaceWith(turn.root);
}

async function deleteConversation(id) {
  if (!confirm("Delete this conversation?")) return;
  const response = await api(`/api/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (response.ok && state.conversation === id) newConversation();
  await loadConversations();
}

function newConversation() {
  state.conversation = null;
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

// --- a turn on the page ---------------------------------------------------------------------

class Turn {
  constructor(question) {
    this.root = $("turn-template").content.firstElementChild.cloneNode(true);
    this.root.querySelector(".question").textContent = question;
    this.agents = new Map();
    this.summary = "";
    this.summaryElement = this.root.querySelector(".summary-text");
    this.root
      .querySelector(".summary header")
      .append(copyButton("Copy the summary", () => this.summaryElement.source ?? this.summary));
    this.footer = this.root.querySelector(".footer");
    this.pending = false;
    // Each agent's text as it streams, and the agents waiting to be drawn.
    this.agentTexts = new Map();
    this.agentsPending = new Set();
    // What each member used ({tokens, seconds, dollars}), as it becomes known.
    this.used = new Map();
  }

  showAgent(name) {
    // Drawn at most once a frame, as the summary is.
    if (this.agentsPending.has(name)) return;
    this.agentsPending.add(name);
    requestAnimationFrame(() => {
      this.agentsPending.delete(name);
      const root = this.agent(name);
      if (root.dataset.state === "answering") {
        renderMarkdown(this.agentTexts.get(name) ?? "", root.querySelector(".agent-text"));
      }
    });
  }

  agent(name) {
    if (!this.agents.has(name)) {
      const root = $("agent-template").content.firstElementChild.cloneNode(true);
      root.dataset.agent = name;
      root.querySelector(".agent-name").textContent = name;
      const text = root.querySelector(".agent-text");
      root.querySelector("header").append(copyButton(`Copy ${name}'s answer`, () => text.source ?? ""));
      this.root.querySelector(".agents").append(root);
      this.agents.set(name, root);
    }
    return this.agents.get(name);
  }

  // Tokens, seconds and dollars under an agent's column; `prompt` and `completion` in its title.
  setUsed(name, values) {
    const used = { ...this.used.get(name), ...values };
    this.used.set(name, used);
    const line = this.agent(name).querySelector(".agent-figures");
    line.textContent = figures(used);
    if (used.prompt != null) line.title = `${used.prompt} prompt + ${used.completion} completion tokens`;
  }

  setAgent(name, stateName, label, text, meta) {
    const root = this.agent(name);
    root.dataset.state = stateName;
    root.querySelector(".agent-state").textContent = label;
    if (text !== undefined) renderMarkdown(text, root.querySelector(".agent-text"));
    if (meta !== undefined) root.querySelector(".agent-meta").textContent = meta;
  }

  // One line of how the members deliberated (rounds, reviews, a tally, a choice).
  note(text) {
    const item = document.createElement("li");
    item.textContent = text;
    this.root.querySelector(".deliberation").append(item);
  }

  showSummary() {
    // Rendered at most once a frame: a summary arrives a token at a time.
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      renderMarkdown(this.summary, this.summaryElement);
    });
  }

  event(type, data) {
    switch (type) {
      case "agent.started":
        this.setAgent(data.source, "answering", "answering…");
        break;
      case "agent.retrying":
        this.setAgent(
          data.source,
          "retrying",
          `retrying (attempt ${data.attempt})`,
          undefined,
          `${data.model}: ${data.error.message}`,
        );
        break;
      case "agent.delta": {
        const root = this.agent(data.source);
        const text = (this.agentTexts.get(data.source) ?? "") + data.message;
        this.agentTexts.set(data.source, text);
        if (root.dataset.state !== "answering") this.setAgent(data.source, "answering", "answering…");
        this.showAgent(data.source);
        break;
      }
      case "agent.restarted":
        this.agentTexts.set(data.source, "");
        this.setAgent(data.source, "answering", `starting over on ${data.model}`, "");
        break;
      case "agent.completed":
        this.setAgent(
          data.source,
          "answered",
          "answered",
          data.message,
          `${data.model} · ${count(data.attempts, "attempt")}`,
        );
        // The answering call's price, when known; `done` brings the member's every call.
        if (data.cost_usd != null) this.setUsed(data.source, { dollars: data.cost_usd });
        break;
      case "agent.failed": {
        const cut = CUT_CODES.has(data.error.code);
        this.setAgent(data.source, cut ? "cut" : "failed", cut ? "cut" : "failed", "", data.error.message);
        break;
      }
      case "round.started":
        // A later step: each agent's column starts over with its new answer.
        if (data.round > 0) for (const name of data.agents) this.agentTexts.set(name, "");
        this.note(`${data.phase}, round ${data.round}: ${data.agents.join(", ")}`);
        break;
      case "round.completed":
        if (data.missing.length) this.note(`no answer from ${data.missing.join(", ")}`);
        break;
      case "council.review":
        this.note(
          data.ranking
            ? `${data.source} ranks ${data.ranking.join(" > ")}`
            : `${data.source}: ${data.error?.message ?? "no ranking"}`,
        );
        break;
      case "council.ranking":
        this.note(
          `ranking: ${data.ranking.map((r) => `${r.agent} (${r.average_rank})`).join(", ")}`,
        );
        break;
      case "vote.tally":
        this.note(
          `votes (${data.method}): ${data.groups.map((g) => `${g.agents.join(", ")}: ${g.votes}`).join("; ")}`,
        );
        break;
      case "answer.chosen":
        this.note(`chose ${data.source}'s answer: ${data.reason}`);
        break;
      case "summary.started":
        this.root.querySelector(".summary-title").textContent =
          `Summary by ${data.source} (${count(data.agents.length, "answer")})`;
        break;
      case "summary.delta":
        this.summary += data.message;
        this.showSummary();
        break;
      case "summary.restarted":
        this.summary = "";
        this.showSummary();
        break;
      case "done":
        this.finish(data);
        break;
      case "error":
        this.fail(data);
        break;
    }
  }

  // `done` (or a stored turn's record): what each member used, and the turn's whole. A
  // stored turn has no dollars (the record keeps tokens), and its agents' figures already.
  finish(data) {
    renderMarkdown(this.summary, this.summaryElement);
    const usage = data.usage ?? {};
    const members = data.cost?.members ?? {};
    for (const [name, ms] of Object.entries(data.timings?.agents_ms ?? {})) {
      const used = usage[name];
      this.setUsed(name, {
        seconds: ms / 1000,
        tokens: tokensOf(used),
        prompt: used?.prompt_tokens,
        completion: used?.completion_tokens,
        dollars: members[name] ?? this.used.get(name)?.dollars,
      });
    }
    // The summarizer: the one caller with no column.
    const summarizer = Object.keys(usage).find((name) => !this.agents.has(name));
    if (summarizer) {
      this.root.querySelector(".summary-figures").textContent = figures({
        tokens: tokensOf(usage[summarizer]),
        dollars: members[summarizer] ?? undefined,
      });
    }
    const total = {
      tokens: Object.values(usage).reduce((sum, u) => sum + tokensOf(u), 0),
      seconds: data.timings?.total_ms != null ? data.timings.total_ms / 1000 : undefined,
      dollars: data.cost?.total_usd ?? undefined,
    };
    const first = data.timings?.first_token_ms;
    const began = first != null ? ` (the answer began at ${(first / 1000).toFixed(1)} s)` : "";
    this.footer.textContent = `This turn: ${figures(total)}${began}`;
    this.root.dataset.state = "done";
  }

  ended() {
    return this.root.dataset.state === "done" || this.root.dataset.state === "error";
  }

  fail(data) {
    renderMarkdown(this.summary, this.summaryElement);
    this.footer.textContent = stoppedText(data.error);
    this.footer.classList.add("error");
    for (const root of this.agents.values()) {
      if (root.dataset.state === "answering" || root.dataset.state === "retrying") {
        root.dataset.state = "cut";
        root.querySelector(".agent-state").textContent = "cut";
      }
    }
    this.root.dataset.state = "error";
  }
}

// "Stopped: <why>", or the server's words alone when they already say it stopped.
function stoppedText(error) {
  const why = error.message ?? error.code;
  return /^stopped\b/i.test(why) ? why[0].toUpperCase() + why.slice(1) : `Stopped: ${why}`;
}

// A judging step's rows (a council's reviews, a selector's choice) are not answers: a
// column shows each agent's latest answer (its first, a debate's revision, a layer's).
const JUDGING_PHASES = new Set(["review", "select"]);

function storedTurn(message) {
  const turn = new Turn(message.question);
  for (const answer of message.agents.filter((a) => !JUDGING_PHASES.has(a.phase))) {
    const cut = answer.outcome === "cut";
    const completed = answer.outcome === "completed";
    turn.setAgent(
      answer.agent,
      completed ? "answered" : cut ? "cut" : "failed",
      completed ? "answered" : answer.outcome,
      answer.text ?? "",
      completed ? `${answer.model} · ${count(answer.attempts, "attempt")}` : (answer.error?.code ?? ""),
    );
    turn.setUsed(answer.agent, {
      seconds: answer.latency_ms != null ? answer.latency_ms / 1000 : undefined,
      tokens: tokensOf(answer.usage),
      prompt: answer.usage?.prompt_tokens,
      completion: answer.usage?.completion_tokens,
    });
  }
  turn.summary = message.summary ?? "";
  if (message.status === "completed") {
    // The record's timings of each agent are its answers' (above); not those of `done`.
    turn.finish({ usage: message.usage, timings: { ...message.timings, agents_ms: {} } });
  } else if (message.status !== "running") {
    turn.fail({ error: { message: message.status } });
  }
  return turn;
}

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
}

async function follow(response, turn, messageId) {
  state.run = { ...state.run, messageId };
  busy(true);
  try {
    await readEvents(response, (id, type, data) => {
      if (state.storage) sessionStorage.setItem(RUNNING, JSON.stringify({ messageId, lastEventId: id }));
      if (data.conversation_id && !state.conversation) {
        state.conversation = data.conversation_id;
        showInAddress(state.conversation, { replace: true });
      }
      turn.event(type, data);
    });
  } catch (error) {
    if (error.name !== "AbortError") throw error;
    if (!turn.ended()) turn.fail({ error: STOPPED });
  } finally {
    busy(false);
    state.run = null;
  }
  if (turn.ended()) sessionStorage.removeItem(RUNNING);
  await loadConversations();
}

$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || state.run) return;
  $("ask-error").hidden = true;
  const messageId = crypto.randomUUID();
  const body = { message: question, message_id: messageId, ensemble: $("ensemble").value };
  if (state.conversation) body.conversation_id = state.conversation;
  // With storage, a reload or a dropped connection does not lose the run: it goes on, and
  // the page picks it up again; Stop cancels it explicitly.
  if (state.storage) body.on_disconnect = "continue";
  const controller = new AbortController();
  state.run = { messageId, controller };
  const turn = new Turn(question);
  $("thread").append(turn.root);
  // The new turn in view: below the earlier answers it would start under the fold.
  turn.root.scrollIntoView({ block: "start" });
  $("question").value = "";
  try {
    const response = await api("/api/process", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      turn.root.remove();
      $("question").value = question;
      $("ask-error").textContent = await errorText(response);
      $("ask-error").hidden = false;
      state.run = null;
      return;
    }
    state.conversation = response.headers.get("X-Conversation-Id") ?? state.conversation;
    if (state.conversation) showInAddress(state.conversation, { replace: true });
    await follow(response, turn, messageId);
  } catch (error) {
    state.run = null;
    busy(false);
    if (error instanceof Unauthorized) {
      turn.root.remove();
      $("question").value = question;
    } else if (error.name === "AbortError") {
      if (!turn.ended()) turn.fail({ error: STOPPED });
    } else {
      $("ask-error").textContent = String(error);
      $("ask-error").hidden = false;
    }
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
  const thread = $("thread");
  thread.lastElementChild?.remove();
  const turn = new Turn(message.question);
  thread.append(turn.root);
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
