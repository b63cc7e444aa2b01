// Evaluations, for admins: the caller's list with each one's progress, a form to start one on
// a data set the server ships, and one opened: its progress live (its event stream, read with
// the caller's key) and its report drawn from its JSON, the table and score against cost (an
// SVG built with DOM calls: the page's CSP allows no inline style, and an iframe of
// report.html would need the key in its address). Text is only ever text.
import { count, money } from "/web/turn.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const STOPPED = new Set(["interrupted", "cancelled", "failed"]);
// The plot's size (its viewBox: it scales to the width it is given) and its margin.
const PLOT = { width: 520, height: 300, pad: 48 };

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

const fixed = (n) => n.toFixed(2);
const signed = (n) => `${n > 0 ? "+" : n < 0 ? "−" : ""}${Math.abs(n).toFixed(2)}`;
const dollars = (n) => (n == null ? "?" : money(n));
const seconds = (n) => (n == null ? "–" : `${n.toFixed(2)} s`);

// "12 of 40 results · $0.0012 spent"
function progressText({ done, total, spent_usd: spent }) {
  return `${done} of ${count(total, "result")} · ${money(spent)} spent`;
}

// The report's table: a row per contestant.
function reportTable(report) {
  const table = element("table", "report-table");
  table.append(element("caption", "", `${count(report.questions, "question")}, scored ${report.scorer}`));
  const head = element("tr");
  for (const name of ["Contestant", "Score", "95% interval", "Latency", "First token", "Tokens", "Cost", "Per right answer"]) {
    const cell = element("th", "", name);
    cell.scope = "col";
    head.append(cell);
  }
  table.append(element("thead"), element("tbody"));
  table.tHead.append(head);
  for (const row of report.rows) {
    const line = element("tr");
    line.dataset.contestant = row.contestant;
    const name = element("th", "", row.contestant);
    name.scope = "row";
    line.append(
      name,
      ...[
        fixed(row.score),
        `[${fixed(row.low)}, ${fixed(row.high)}]`,
        seconds(row.mean_latency_s),
        seconds(row.mean_first_token_s),
        row.tokens.toLocaleString("en-US"),
        dollars(row.cost_usd),
        dollars(row.cost_per_correct_usd),
      ].map((text) => element("td", "", text)),
    );
    table.tBodies[0].append(line);
  }
  return table;
}

// What the report concludes: each ensemble against its best member, the judge's win rates.
function verdicts(report) {
  const list = element("ul", "report-verdicts");
  for (const gain of report.gains ?? []) {
    const verdict = gain.low > 0 ? "better" : gain.high < 0 ? "worse" : "not distinguishable on these questions";
    list.append(
      element(
        "li",
        "",
        `${gain.ensemble} against its best member, ${gain.best_member}: ${signed(gain.difference)} ` +
          `[${signed(gain.low)}, ${signed(gain.high)}] (${verdict}), ${dollars(gain.extra_cost_usd)} more`,
      ),
    );
  }
  for (const rate of report.judge?.win_rates ?? []) {
    list.append(
      element(
        "li",
        "",
        `Judged by ${report.judge.member}: ${rate.ensemble} against ${rate.member} wins ${fixed(rate.rate)} ` +
          `[${fixed(rate.low)}, ${fixed(rate.high)}] of ${count(rate.questions, "question")} ` +
          `(${rate.wins} won, ${rate.losses} lost, ${rate.ties} even), ${dollars(rate.cost_usd)}`,
      ),
    );
  }
  if (report.stopped_by_budget) list.append(element("li", "", `Stopped by its budget after ${money(report.spent_usd)}`));
  return list;
}

// Score (0 to 1) against cost, a point per contestant whose cost is known.
function plot(report) {
  const { width, height, pad } = PLOT;
  const priced = report.rows.filter((row) => row.cost_usd != null);
  const top = Math.max(0, ...priced.map((row) => row.cost_usd)) || 1;
  const x = (cost) => pad + ((width - 2 * pad) * cost) / top;
  const y = (score) => height - pad - (height - 2 * pad) * score;
  const figure = element("figure", "report-plot");
  const caption = element("figcaption", "", "Score against cost");
  caption.id = `plot-${crypto.randomUUID()}`;
  const drawing = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": caption.id });
  drawing.append(
    svg("line", { class: "axis", x1: pad, y1: y(0), x2: width - pad, y2: y(0) }),
    svg("line", { class: "axis", x1: pad, y1: y(0), x2: pad, y2: y(1) }),
    svg("text", { x: pad - 6, y: y(0) + 4, "text-anchor": "end" }, "0"),
    svg("text", { x: pad - 6, y: y(1) + 4, "text-anchor": "end" }, "1"),
    svg("text", { x: width - pad, y: y(0) + 18, "text-anchor": "end" }, money(top)),
    svg("text", { x: width / 2, y: height - 8, "text-anchor": "middle" }, "cost (US dollars)"),
    svg("text", { x: 14, y: height / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${height / 2})` }, "score"),
  );
  // Contestants at the same place share one label (members of one model often do).
  const together = new Map();
  for (const row of priced) {
    const place = `${row.cost_usd}:${row.score}`;
    together.set(place, [...(together.get(place) ?? []), row.contestant]);
  }
  for (const row of priced) {
    const names = together.get(`${row.cost_usd}:${row.score}`);
    const point = svg("g", { class: "point" });
    point.dataset.contestant = row.contestant;
    const cx = x(row.cost_usd);
    const cy = y(row.score);
    point.append(
      svg("circle", { cx: cx.toFixed(1), cy: cy.toFixed(1), r: 5 }),
      svg("title", {}, `${row.contestant}: ${fixed(row.score)} for ${money(row.cost_usd)}`),
    );
    // Names on the right half are written to the left of their point, to stay inside.
    if (names[0] === row.contestant) {
      const left = cx > width / 2;
      const at = { x: (left ? cx - 8 : cx + 8).toFixed(1), y: (cy + 4).toFixed(1), "text-anchor": left ? "end" : "start" };
      point.append(svg("text", at, names.join(", ")));
    }
    drawing.append(point);
  }
  figure.append(drawing, caption);
  return figure;
}

export class Evaluations {
  // `api(path, options)`, `readEvents(response, onEvent)` and `errorText(response)`: the
  // page's own; `onShow(shown)`: told when the view opens or closes.
  constructor({ api, readEvents, errorText, onShow }) {
    Object.assign(this, { api, readEvents, errorText, onShow });
    this.open = null; // { id, controller } of the evaluation shown
    this.rows = new Map(); // evaluation id -> its row in the list
    $("open-evaluations").addEventListener("click", () => this.show());
    $("close-evaluations").addEventListener("click", () => this.hide());
    $("evaluation-start").addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
  }

  // An admin sees the entry; anyone else (a 403), or a server that keeps nothing (a 404), not.
  async offer() {
    const response = await this.api("/admin/evals?limit=1");
    $("open-evaluations").hidden = !response.ok;
  }

  reset() {
    this.hide();
    $("open-evaluations").hidden = true;
  }

  async show() {
    $("evaluations").hidden = false;
    this.onShow(true);
    $("evaluations-title").focus();
    await this.list();
  }

  hide() {
    if ($("evaluations").hidden) return;
    this.close();
    $("evaluations").hidden = true;
    this.onShow(false);
  }

  close() {
    this.open?.controller.abort();
    this.open = null;
    $("evaluation").hidden = true;
    $("evaluation").replaceChildren();
  }

  async list() {
    const response = await this.api("/admin/evals?limit=50");
    if (!response.ok) return;
    const { evaluations } = await response.json();
    this.rows = new Map();
    $("evaluation-list").tBodies[0].replaceChildren(
      ...evaluations.map((evaluation) => {
        const row = element("tr");
        row.dataset.evaluation = evaluation.id;
        const name = element("th");
        name.scope = "row";
        const opener = element("button", "ghost small", `${evaluation.dataset} (${evaluation.scorer})`);
        opener.type = "button";
        opener.setAttribute("aria-label", `Open the evaluation on ${evaluation.dataset} started ${new Date(evaluation.created_at).toLocaleString()}`);
        opener.addEventListener("click", () => this.openEvaluation(evaluation.id));
        name.append(opener);
        row.append(
          name,
          element("td", "evaluation-status", evaluation.status),
          element("td", "evaluation-progress", progressText(evaluation)),
          element("td", "", new Date(evaluation.created_at).toLocaleString()),
        );
        this.rows.set(evaluation.id, row);
        return row;
      }),
    );
    $("evaluation-list").hidden = evaluations.length === 0;
    $("no-evaluations").hidden = evaluations.length > 0;
  }

  async start() {
    $("evaluation-error").hidden = true;
    const body = { dataset: $("evaluation-dataset").value.trim(), scorer: $("evaluation-scorer").value };
    const limit = $("evaluation-limit").value;
    if (limit) body.limit = Number(limit);
    const response = await this.api("/admin/evals", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      $("evaluation-error").textContent = await this.errorText(response);
      $("evaluation-error").hidden = false;
      return;
    }
    const started = await response.json();
    await this.list();
    await this.openEvaluation(started.id);
  }

  // One evaluation: what it was asked, its state, and its report; followed while it runs.
  async openEvaluation(id) {
    this.close();
    const controller = new AbortController();
    const open = (this.open = { id, controller });
    const response = await this.api(`/admin/evals/${encodeURIComponent(id)}`);
    if (this.open !== open || !response.ok) return;
    this.draw(await response.json());
    $("evaluation").hidden = false;
    $("evaluation-title").focus();
    if ($("evaluation").dataset.status === "running") await this.follow(open);
  }

  draw(evaluation) {
    const box = $("evaluation");
    box.dataset.status = evaluation.status;
    const title = element("h3", "", `${evaluation.dataset}, scored ${evaluation.scorer}`);
    title.id = "evaluation-title";
    title.tabIndex = -1;
    const asked = [
      evaluation.ensembles.length ? evaluation.ensembles.join(", ") : "the default ensemble",
      "and each member alone",
      evaluation.judge ? `, judged by ${evaluation.judge}` : "",
    ].join(" ");
    const status = element("p", "evaluation-state");
    const bar = element("progress");
    bar.setAttribute("aria-label", "Results so far");
    const tools = element("div", "evaluation-tools");
    box.replaceChildren(title, element("p", "muted", `${count(evaluation.questions, "question")}: ${asked}`), status, bar, tools);
    this.update(evaluation);
    if (evaluation.status === "running") {
      tools.append(this.action("Cancel", "cancel", evaluation.id));
    } else if (STOPPED.has(evaluation.status)) {
      tools.append(this.action("Resume", "resume", evaluation.id));
    }
    if (evaluation.report) {
      box.append(reportTable(evaluation.report), verdicts(evaluation.report), plot(evaluation.report));
    } else {
      box.append(element("p", "muted", evaluation.status === "running" ? "Its report comes when it ends." : "It has no report."));
    }
  }

  action(label, verb, id) {
    const node = element("button", "ghost", label);
    node.type = "button";
    node.addEventListener("click", async () => {
      node.disabled = true;
      const response = await this.api(`/admin/evals/${encodeURIComponent(id)}/${verb}`, { method: "POST" });
      if (!response.ok) {
        node.disabled = false;
        $("evaluation-error").textContent = await this.errorText(response);
        $("evaluation-error").hidden = false;
        return;
      }
      await this.list();
      await this.openEvaluation(id);
    });
    return node;
  }

  // Its state, in the view and in its row of the list.
  update(state) {
    const box = $("evaluation");
    const error = state.error ? ` (${state.error.code})` : "";
    const phase = state.status === "running" && state.phase === "judging" ? ", judging" : "";
    box.querySelector(".evaluation-state").textContent = `${state.status}${phase}${error}: ${progressText(state)}`;
    const bar = box.querySelector("progress");
    bar.max = Math.max(1, state.total);
    bar.value = state.done;
    const row = this.rows.get(state.evaluation_id ?? state.id);
    if (row) {
      row.querySelector(".evaluation-status").textContent = state.status;
      row.querySelector(".evaluation-progress").textContent = progressText(state);
    }
  }

  // Its progress events until `eval.ended` (a stream ends at the server's request deadline:
  // it is read again from the last event), then the evaluation again, with its report.
  async follow(open) {
    let lastEventId = null;
    let ended = false;
    try {
      while (!ended && this.open === open) {
        const headers = lastEventId ? { "Last-Event-ID": lastEventId } : {};
        const response = await this.api(`/admin/evals/${encodeURIComponent(open.id)}/events`, {
          headers,
          signal: open.controller.signal,
        });
        if (!response.ok) return;
        await this.readEvents(response, (id, type, data) => {
          lastEventId = id ?? lastEventId;
          if (this.open === open) this.update(data);
          if (type === "eval.ended") ended = true;
        });
      }
    } catch (error) {
      if (error.name === "AbortError") return;
      throw error;
    }
    if (this.open !== open) return;
    const response = await this.api(`/admin/evals/${encodeURIComponent(open.id)}`);
    if (this.open !== open || !response.ok) return;
    this.draw(await response.json());
  }
}
