// One turn on the page: the question, the members' columns step by step (a debate's rounds,
// a council's reviews, each a row of columns), what the strategy decided (the reviews'
// rankings and their aggregate, a vote's tally, the answer chosen), the final answer as it
// streams, and what it all used. Drawn live from a run's events or from a stored message.
import { copyButton } from "/web/clipboard.js";
import { compareView } from "/web/compare.js";
import { renderMarkdown } from "/web/markdown.js";

const $ = (id) => document.getElementById(id);
const CUT_CODES = new Set(["agent_cut", "deadline_exceeded", "cancelled"]);
// A step's name, as its row's heading says it.
const PHASES = { answer: "Answers", revise: "Revised answers", layer: "Layer", review: "Reviews", select: "Selection" };
// A judging step's rows (a council's reviews, a selector's choice) are not answers: the
// compare view and a member's latest answer skip them.
const JUDGING_PHASES = new Set(["review", "select"]);
// Past this many columns a step's agents are a strip of compact tiles, each expanding on a
// click (sixteen full columns would bury the answer).
const MANY_AGENTS = 6;

// "1 attempt", "2 attempts", "1,234 tokens"
export function count(n, noun) {
  return `${n.toLocaleString("en-US")} ${noun}${n === 1 ? "" : "s"}`;
}

// "$0.1234" from a cent, else two significant digits: "$0.0020".
export function money(dollars) {
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

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, onClick, { className = "ghost small", title } = {}) {
  const node = element("button", className, label);
  node.type = "button";
  if (title) {
    node.title = title;
    node.setAttribute("aria-label", title);
  }
  node.addEventListener("click", onClick);
  return node;
}

// "Stopped: <why>", or the server's words alone when they already say it stopped.
function stoppedText(error) {
  const why = error.message ?? error.code;
  return /^stopped\b/i.test(why) ? why[0].toUpperCase() + why.slice(1) : `Stopped: ${why}`;
}

function stepKey(phase, round) {
  return `${phase ?? "answer"}:${round ?? 0}`;
}

// A box whose text scrolls takes the focus, so that the keyboard scrolls it too.
function keyboardScrolls(box) {
  if (box.scrollHeight > box.clientHeight) box.tabIndex = 0;
  else box.removeAttribute("tabindex");
}

// A tile of a strip: a button opens it to the row's width and its whole answer.
function expandable(column, name) {
  const grow = button("+", () => {
    const open = column.classList.toggle("expanded");
    grow.textContent = open ? "−" : "+";
    grow.setAttribute("aria-expanded", String(open));
    keyboardScrolls(column.querySelector(".agent-text"));
  }, { title: `Show all of ${name}'s answer`, className: "ghost small grow" });
  grow.setAttribute("aria-expanded", "false");
  column.querySelector("header").append(grow);
}

export class Turn {
  // `actions`: what the turn's buttons ask of the page ({ edit(turn, text), regenerate(turn),
  // step(turn, -1 | 1) }); a turn drawn for nothing else has none.
  constructor(question, actions = {}) {
    this.root = $("turn-template").content.firstElementChild.cloneNode(true);
    this.question = question;
    this.actions = actions;
    this.root.querySelector(".question").textContent = question;
    this.stepsElement = this.root.querySelector(".steps");
    this.verdict = this.root.querySelector(".verdict");
    this.steps = new Map(); // step key -> { root, grid, columns: Map(name -> element) }
    this.plain = true; // no round.started: the first answers only, drawn without a heading
    this.summary = "";
    this.summaryElement = this.root.querySelector(".summary-text");
    this.summarySection = this.root.querySelector(".summary");
    this.summarySection
      .querySelector("header")
      .append(copyButton("Copy the final answer", () => this.summaryElement.source ?? this.summary));
    this.footer = this.root.querySelector(".footer");
    // Each column's text as it streams, and the columns waiting to be drawn.
    this.texts = new Map();
    this.pendingColumns = new Set();
    this.frame = null;
    // What each member used ({tokens, seconds, dollars}), as it becomes known.
    this.used = new Map();
    // Each member's latest answer (for the compare view), and what the strategy chose.
    this.answers = new Map();
    this.chosen = null;
    this.reviews = null;
    this.root.dataset.state = "running";
    this.root.setAttribute("aria-busy", "true");
    this.addTools();
  }

  // --- the turn's buttons: versions, edit, regenerate, compare --------------------------------

  addTools() {
    const head = this.root.querySelector(".turn-tools");
    const { edit, regenerate, step } = this.actions;
    if (step) {
      this.pager = element("span", "versions");
      this.pager.hidden = true;
      this.previous = button("‹", () => step(this, -1), { title: "Previous version" });
      this.next = button("›", () => step(this, 1), { title: "Next version" });
      this.place = element("span", "versions-place");
      this.pager.append(this.previous, this.place, this.next);
      head.append(this.pager);
    }
    if (edit) head.append(button("Edit", () => this.startEdit(), { title: "Edit this question" }));
    const after = this.root.querySelector(".turn-actions");
    if (regenerate) {
      after.append(
        button("Regenerate", () => regenerate(this), { title: "Regenerate: ask this question again" }),
      );
    }
    this.compareButton = button("Compare", () => this.toggleCompare(), {
      title: "Compare the final answer with each member's own",
    });
    this.compareButton.setAttribute("aria-expanded", "false");
    after.append(this.compareButton);
  }

  // `< 2/3 >`: where this turn stands among the versions of its place.
  setVersions({ index, count: total }) {
    if (!this.pager) return;
    this.pager.hidden = total < 2;
    this.place.textContent = `${index}/${total}`;
    this.place.setAttribute("aria-label", `version ${index} of ${total}`);
    this.previous.disabled = index <= 1;
    this.next.disabled = index >= total;
  }

  startEdit() {
    const question = this.root.querySelector(".question");
    if (this.root.querySelector(".edit")) return;
    const form = element("form", "edit");
    const label = element("label", "visually-hidden", "Edit the question");
    const area = element("textarea");
    area.id = `edit-${crypto.randomUUID()}`;
    label.htmlFor = area.id;
    area.value = this.question;
    area.rows = Math.min(8, this.question.split("\n").length + 1);
    const send = element("button", "", "Send the edit");
    send.type = "submit";
    const cancel = button("Cancel", () => close(), { className: "ghost" });
    const bar = element("div", "actions");
    bar.append(send, cancel);
    form.append(label, area, bar);
    const close = () => {
      form.remove();
      question.hidden = false;
      this.root.querySelector(".turn-tools").hidden = false;
      this.root.querySelector(".turn-tools button")?.focus();
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = area.value.trim();
      if (!text) return;
      if (text === this.question) return close();
      form.remove();
      question.hidden = false;
      this.root.querySelector(".turn-tools").hidden = false;
      this.actions.edit(this, text);
    });
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation(); // Escape here leaves the edit; it stops no run
        close();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    question.hidden = true;
    this.root.querySelector(".turn-tools").hidden = true;
    question.after(form);
    area.focus();
  }

  toggleCompare() {
    const box = this.root.querySelector(".compare");
    const open = box.hidden;
    if (open) {
      const members = [...this.answers.entries()]
        .filter(([, text]) => text)
        .map(([name, text]) => ({ name, text }));
      box.replaceChildren(...compareView(this.summaryElement.source ?? this.summary, members, this.chosen));
    }
    box.hidden = !open;
    this.compareButton.setAttribute("aria-expanded", String(open));
  }

  // --- the steps and their columns -----------------------------------------------------------

  step(phase, round, agents) {
    const key = stepKey(phase, round);
    if (!this.steps.has(key)) {
      const plain = key === "answer:0" && this.plain;
      const root = element(plain ? "div" : "details", "step");
      root.dataset.phase = phase ?? "answer";
      root.dataset.round = String(round ?? 0);
      let heading = null;
      if (!plain) {
        root.open = true;
        const summary = element("summary");
        heading = element("span", "step-title", `${PHASES[phase] ?? phase}${round ? `, round ${round}` : ""}`);
        const status = element("span", "step-status muted");
        summary.append(heading, status);
        root.append(summary);
      }
      const grid = element("div", "agents");
      grid.setAttribute("role", "group");
      grid.setAttribute("aria-label", heading ? heading.textContent : "The members' answers");
      if ((agents?.length ?? 0) > MANY_AGENTS) grid.classList.add("many");
      root.append(grid);
      this.stepsElement.append(root);
      this.steps.set(key, { root, grid, columns: new Map(), phase: phase ?? "answer" });
    }
    return this.steps.get(key);
  }

  // The column of `name` in the step an event names (its phase and round).
  column(name, data = {}) {
    const step = this.step(data.phase, data.round);
    if (!step.columns.has(name)) {
      const root = $("agent-template").content.firstElementChild.cloneNode(true);
      root.dataset.agent = name;
      root.querySelector(".agent-name").textContent = name;
      const text = root.querySelector(".agent-text");
      text.tabIndex = 0; // it scrolls while it fills; once done, only if it still does
      const header = root.querySelector("header");
      header.append(copyButton(`Copy ${name}'s answer`, () => text.source ?? ""));
      step.grid.append(root);
      step.columns.set(name, root);
      // The compare view lists the members in the columns' order, not their answers'.
      if (!JUDGING_PHASES.has(step.phase) && !this.answers.has(name)) this.answers.set(name, "");
      if (step.grid.classList.contains("many")) expandable(root, name);
      else if (step.columns.size > MANY_AGENTS) {
        step.grid.classList.add("many");
        for (const [other, column] of step.columns) expandable(column, other);
      }
    }
    return step.columns.get(name);
  }

  // The column a member's figures go under: its latest.
  latestColumn(name) {
    let found = null;
    for (const step of this.steps.values()) found = step.columns.get(name) ?? found;
    return found;
  }

  // Tokens, seconds and dollars under an agent's column; `prompt` and `completion` in its title.
  setUsed(name, values, column = this.latestColumn(name)) {
    if (!column) return;
    const used = { ...this.used.get(name), ...values };
    this.used.set(name, used);
    const line = column.querySelector(".agent-figures");
    line.textContent = figures(used);
    if (used.prompt != null) line.title = `${used.prompt} prompt + ${used.completion} completion tokens`;
  }

  setAgent(name, data, stateName, label, text, meta) {
    const root = this.column(name, data);
    root.dataset.state = stateName;
    root.querySelector(".agent-state").textContent = label;
    if (text !== undefined) renderMarkdown(text, root.querySelector(".agent-text"));
    if (meta !== undefined) {
      const line = root.querySelector(".agent-meta");
      line.textContent = meta;
      line.title = meta;
    }
    return root;
  }

  // Columns and the summary are drawn at most once a frame, all together: text arrives a few
  // tokens at a time, for sixteen agents at once.
  schedule(column) {
    if (column) this.pendingColumns.add(column);
    if (this.frame !== null) return;
    this.frame = requestAnimationFrame(() => this.draw());
  }

  draw() {
    this.frame = null;
    const drawn = [];
    for (const column of this.pendingColumns) {
      if (column.dataset.state !== "answering") continue;
      const box = column.querySelector(".agent-text");
      renderMarkdown(this.texts.get(column) ?? "", box);
      drawn.push(box);
    }
    this.pendingColumns.clear();
    if (this.summaryPending) {
      this.summaryPending = false;
      renderMarkdown(this.summary, this.summaryElement);
    }
    // Each growing answer shows its newest line, unless its reader scrolled up: every
    // position is read first, then every box scrolled (one layout, not one per box).
    const ends = drawn.map((box) => [box, box.scrollHeight - box.clientHeight, box.dataset.follow !== "no"]);
    for (const [box, end, follow] of ends) if (follow) box.scrollTop = end;
  }

  showSummary() {
    this.summaryPending = true;
    this.schedule();
  }

  // --- what the strategy decided -------------------------------------------------------------

  verdictPart(name, title) {
    let part = this.verdict.querySelector(`[data-part="${name}"]`);
    if (!part) {
      part = element("section", "verdict-part");
      part.dataset.part = name;
      part.append(element("h4", "", title));
      this.verdict.append(part);
    }
    return part;
  }

  review(data) {
    const part = this.verdictPart("reviews", "How each member ranked the others");
    let list = part.querySelector("ul");
    if (!list) part.append((list = element("ul", "reviews")));
    const item = element("li");
    item.append(element("strong", "", data.source), document.createTextNode(": "));
    if (data.ranking) {
      data.ranking.forEach((agent, index) => {
        if (index) item.append(document.createTextNode(" › "));
        item.append(element("span", "agent-chip", agent));
      });
    } else {
      item.append(element("span", "muted", data.error?.message ?? "no ranking could be read"));
    }
    list.append(item);
  }

  ranking(data) {
    const part = this.verdictPart("ranking", "Aggregate ranking (mean place; 1 is best)");
    const worst = Math.max(1, ...data.ranking.map((r) => r.average_rank));
    const list = element("ol", "bars");
    for (const rank of data.ranking) {
      const item = element("li");
      item.dataset.agent = rank.agent;
      const bar = element("span", "bar");
      // The best place draws the longest bar.
      bar.style.width = `${Math.round((100 * (worst + 1 - rank.average_rank)) / worst)}%`;
      item.append(
        element("span", "bar-name", rank.agent),
        element("span", "bar-track"),
        element("span", "bar-value", `${rank.average_rank} (${count(rank.reviews, "review")})`),
      );
      item.querySelector(".bar-track").append(bar);
      list.append(item);
    }
    part.querySelector("ol")?.remove();
    part.append(list);
  }

  tally(data) {
    const part = this.verdictPart("tally", `Votes (${data.method === "exact" ? "the same answer" : "the most alike answers"})`);
    const most = Math.max(1, ...data.groups.map((g) => g.votes));
    const list = element("ol", "bars");
    for (const group of data.groups) {
      const item = element("li");
      item.dataset.agents = group.agents.join(",");
      const bar = element("span", "bar");
      bar.style.width = `${Math.round((100 * group.votes) / most)}%`;
      const track = element("span", "bar-track");
      track.append(bar);
      item.append(
        element("span", "bar-name", group.agents.join(", ")),
        track,
        element("span", "bar-value", count(group.votes, "vote")),
      );
      list.append(item);
    }
    part.querySelector("ol")?.remove();
    part.append(list);
  }

  choose(data) {
    this.chosen = data.source;
    const part = this.verdictPart("chosen", "The answer chosen");
    part.querySelector("p")?.remove();
    const line = element("p");
    line.append(element("strong", "", data.source), document.createTextNode(`: ${data.reason}`));
    part.append(line);
    for (const item of this.verdict.querySelectorAll("[data-agents], [data-agent]")) {
      const names = (item.dataset.agents ?? item.dataset.agent).split(",");
      item.classList.toggle("chosen", names.includes(data.source));
    }
  }

  // --- the events ----------------------------------------------------------------------------

  event(type, data) {
    switch (type) {
      case "agent.started":
        this.setAgent(data.source, data, "answering", "answering…");
        break;
      case "agent.retrying":
        this.setAgent(
          data.source,
          data,
          "retrying",
          `retrying (attempt ${data.attempt})`,
          undefined,
          `${data.model}: ${data.error.message}`,
        );
        break;
      case "agent.delta": {
        const root = this.column(data.source, data);
        this.texts.set(root, (this.texts.get(root) ?? "") + data.message);
        if (root.dataset.state !== "answering") this.setAgent(data.source, data, "answering", "answering…");
        this.schedule(root);
        break;
      }
      case "agent.restarted": {
        const root = this.setAgent(data.source, data, "answering", `starting over on ${data.model}`, "");
        this.texts.set(root, "");
        break;
      }
      case "agent.completed": {
        const root = this.setAgent(
          data.source,
          data,
          "answered",
          "answered",
          data.message,
          `${data.model} · ${count(data.attempts, "attempt")}`,
        );
        this.pendingColumns.delete(root);
        if (!JUDGING_PHASES.has(data.phase)) this.answers.set(data.source, data.message);
        // The answering call's price, when known; `done` brings the member's every call.
        if (data.cost_usd != null) this.setUsed(data.source, { dollars: data.cost_usd }, root);
        break;
      }
      case "agent.failed": {
        const cut = CUT_CODES.has(data.error.code);
        const root = this.setAgent(data.source, data, cut ? "cut" : "failed", cut ? "cut" : "failed", "", data.error.message);
        this.pendingColumns.delete(root);
        break;
      }
      case "round.started": {
        this.plain = false;
        const step = this.step(data.phase, data.round, data.agents);
        step.root.querySelector(".step-status").textContent = `${count(data.agents.length, "member")} asked`;
        break;
      }
      case "round.completed": {
        const step = this.step(data.phase, data.round);
        const missing = data.missing.length ? `; no answer from ${data.missing.join(", ")}` : "";
        step.root.querySelector(".step-status").textContent = `${data.answered.length} answered${missing}`;
        break;
      }
      case "council.review":
        this.review(data);
        break;
      case "council.ranking":
        this.ranking(data);
        break;
      case "vote.tally":
        this.tally(data);
        break;
      case "answer.chosen":
        this.choose(data);
        break;
      case "summary.started":
        this.inFinal = new Set(data.agents);
        this.summarySection.hidden = false;
        this.root.querySelector(".summary-title").textContent = this.chosen
          ? `The answer chosen: ${this.chosen}'s`
          : `Summary by ${data.source} (${count(data.agents.length, "answer")})`;
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
  // stored turn has its agents' figures already (each answer's own), and `done`'s `cost`.
  finish(data) {
    if (this.summary || !this.summarySection.hidden) {
      this.summarySection.hidden = false;
      renderMarkdown(this.summary, this.summaryElement);
    }
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
    const summarizer = Object.keys(usage).find((name) => !this.latestColumn(name));
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
    const wasted = this.wasted(data.timings?.agents_ms ?? {});
    // The dollars paid for calls whose output went nowhere, apart from the whole they are in.
    const wastedUsd = data.cost?.wasted_usd;
    this.footer.replaceChildren(`This turn: ${figures(total)}`);
    if (wastedUsd > 0) {
      this.footer.append(" · ", element("span", "wasted-cost", `of which ${money(wastedUsd)} wasted on cut or lost calls`));
    }
    this.footer.append(`${began}${wasted ? `; not used: ${wasted}` : ""}`);
    this.end("done");
  }

  // What went into no final answer: the members that failed or were cut (the time they
  // took; a failed call reports no tokens), and answers the final one was not made from.
  wasted(agentsMs) {
    const parts = [];
    for (const name of this.answers.keys()) {
      const column = this.latestColumn(name);
      const state = column?.dataset.state;
      const ms = agentsMs[name];
      if (state === "failed" || state === "cut") {
        parts.push(`${name} (${state}${ms != null ? `, ${(ms / 1000).toFixed(1)} s` : ""})`);
      } else if (state === "answered" && this.inFinal && !this.inFinal.has(name)) {
        parts.push(`${name} (answered too late, ${figures(this.used.get(name) ?? {})})`);
      }
    }
    return parts.join(", ");
  }

  ended() {
    return this.root.dataset.state === "done" || this.root.dataset.state === "error";
  }

  fail(data) {
    if (this.summary) {
      this.summarySection.hidden = false;
      renderMarkdown(this.summary, this.summaryElement);
    }
    this.footer.textContent = stoppedText(data.error);
    this.footer.classList.add("error");
    for (const step of this.steps.values()) {
      for (const root of step.columns.values()) {
        if (root.dataset.state === "answering" || root.dataset.state === "retrying") {
          root.dataset.state = "cut";
          root.querySelector(".agent-state").textContent = "cut";
        }
      }
    }
    this.end("error");
  }

  // The run is over: its steps fold to their headings (the final answer is what is read
  // now; each row opens again on a click), and the columns shrink to their text.
  end(stateName) {
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
    this.pendingColumns.clear();
    if (stateName === "done" && !this.summarySection.hidden) {
      for (const step of this.steps.values()) if (step.root.tagName === "DETAILS") step.root.open = false;
    }
    this.root.dataset.state = stateName;
    this.root.removeAttribute("aria-busy");
    // Each answer read from its start again (a growing one showed its newest lines), and
    // focusable if it still scrolls: every box measured first, then every box changed (one
    // layout for sixteen, not sixteen).
    const boxes = [...this.root.querySelectorAll(".agent-text")];
    const scrolls = this.root.isConnected ? boxes.map((box) => box.scrollHeight > box.clientHeight) : [];
    boxes.forEach((box, i) => {
      box.scrollTop = 0;
      if (scrolls[i]) box.tabIndex = 0;
      else if (this.root.isConnected) box.removeAttribute("tabindex");
    });
    const answered = [...this.answers.values()].some((text) => text);
    this.compareButton.hidden = !answered || this.summarySection.hidden;
  }
}

// A stored message drawn from its record: each step's answers (a council's reviews as their
// own row), the final answer, the tokens, times and dollars kept. What only the events said
// (a tally, a ranking) comes back when the page replays them.
export function storedTurn(message, actions) {
  const turn = new Turn(message.question, actions);
  const members = new Set(message.agents.map((a) => a.agent));
  if (message.agents.some((a) => a.phase !== "answer" || a.round !== 0)) turn.plain = false;
  for (const answer of message.agents) {
    const cut = answer.outcome === "cut";
    const completed = answer.outcome === "completed";
    const data = { phase: answer.phase, round: answer.round };
    const root = turn.setAgent(
      answer.agent,
      data,
      completed ? "answered" : cut ? "cut" : "failed",
      completed ? "answered" : answer.outcome,
      answer.text ?? "",
      completed ? `${answer.model} · ${count(answer.attempts, "attempt")}` : (answer.error?.code ?? ""),
    );
    if (completed && !JUDGING_PHASES.has(answer.phase)) turn.answers.set(answer.agent, answer.text ?? "");
    turn.used.delete(answer.agent); // each step's own figures, under its own column
    turn.setUsed(
      answer.agent,
      {
        seconds: answer.latency_ms != null ? answer.latency_ms / 1000 : undefined,
        tokens: tokensOf(answer.usage),
        prompt: answer.usage?.prompt_tokens,
        completion: answer.usage?.completion_tokens,
        dollars: answer.cost_usd ?? undefined,
      },
      root,
    );
  }
  // As live: under a member's latest column, what all its calls cost (`done`'s `members`).
  for (const [name, dollars] of Object.entries(message.cost?.members ?? {})) {
    if (dollars != null && members.has(name)) turn.setUsed(name, { dollars });
  }
  turn.summary = message.summary ?? "";
  // The summarizer: the caller with tokens and no answer.
  const summarizer = Object.keys(message.usage ?? {}).find((caller) => !members.has(caller));
  if (summarizer) {
    const answers = new Set(message.agents.filter((a) => a.outcome === "completed" && a.phase === "answer").map((a) => a.agent));
    turn.root.querySelector(".summary-title").textContent = `Summary by ${summarizer} (${count(answers.size, "answer")})`;
  }
  if (message.status === "completed") {
    // The record's timings of each agent are its answers' (above); not those of `done`.
    turn.finish({ usage: message.usage, cost: message.cost, timings: { ...message.timings, agents_ms: {} } });
  } else if (message.status !== "running") {
    turn.fail({ error: { message: message.status } });
  }
  return turn;
}
