// The final answer side by side with one member's own, a member picked by its button; each
// member's button says how much of its wording the final answer kept.
//
//     box.replaceChildren(...compareView(finalText, [{ name: "alpha", text: "..." }], "alpha"));
import { renderMarkdown } from "/web/markdown.js";

// Words of four letters or more, lowercased: "the", "and" say nothing of who was followed.
function words(text) {
  return new Set((text.toLowerCase().match(/[\p{L}\p{N}]{4,}/gu) ?? []));
}

// The share of a member's words that the final answer uses too (0 to 100).
export function kept(member, final) {
  const own = words(member);
  if (!own.size) return 0;
  const shared = words(final);
  let found = 0;
  for (const word of own) if (shared.has(word)) found += 1;
  return Math.round((100 * found) / own.size);
}

function pane(title, text) {
  const section = document.createElement("section");
  section.className = "compare-pane";
  const heading = document.createElement("h4");
  heading.textContent = title;
  const body = document.createElement("div");
  body.className = "markdown";
  renderMarkdown(text, body);
  section.append(heading, body);
  return [section, heading, body];
}

export function compareView(final, members, chosen) {
  const picker = document.createElement("div");
  picker.className = "compare-members";
  picker.setAttribute("role", "group");
  picker.setAttribute("aria-label", "Compare with");
  const [finalPane] = pane("Final answer", final);
  const [memberPane, memberTitle, memberBody] = pane("", "");
  const panes = document.createElement("div");
  panes.className = "compare-panes";
  panes.append(finalPane, memberPane);
  const buttons = members.map(({ name, text }) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "ghost small";
    button.dataset.agent = name;
    const share = kept(text, final);
    button.textContent = `${name} · ${share}%`;
    button.title = `${name}: ${share}% of its words are in the final answer`;
    button.addEventListener("click", () => show(name, text));
    return button;
  });
  picker.append(...buttons);
  const show = (name, text) => {
    memberTitle.textContent = name === chosen ? `${name}'s answer (the one chosen)` : `${name}'s answer`;
    renderMarkdown(text, memberBody);
    for (const button of buttons) button.setAttribute("aria-pressed", String(button.dataset.agent === name));
  };
  const first = members.find((m) => m.name === chosen) ?? members[0];
  if (first) show(first.name, first.text);
  return [picker, panes];
}
