// A small Markdown renderer that builds DOM nodes, never HTML from text: model output may hold
// HTML or scripts, and none of it can run here, because nothing is parsed as markup.
// Blocks: fenced code (coloured by code.js, with a copy button), headings, lists, quotes,
// tables, paragraphs.
// Inline: code, bold, italic, links (http, https and mailto only).
import { copyButton } from "/web/clipboard.js";
import { highlight } from "/web/code.js";

const SAFE_LINK = /^(https?:|mailto:)/i;
// A table's second line: `| --- | :---: |` (the outer pipes optional).
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

// The text drawn is kept on the container (`container.source`), for a copy button.
export function renderMarkdown(text, container) {
  container.source = text ?? "";
  container.replaceChildren(...blocks(text ?? ""));
}

function isTableStart(lines, i) {
  return lines[i].includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1]) && lines[i + 1].includes("-");
}

// The cells of a table row: split on `|` (not on `\|`), the outer pipes dropped.
function cells(line) {
  const row = line.trim().replace(/^\|/, "").replace(/(?<!\\)\|$/, "");
  return row.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

function table(lines, i) {
  const head = cells(lines[i]);
  const align = cells(lines[i + 1]).map((rule) =>
    rule.startsWith(":") && rule.endsWith(":") ? "center" : rule.endsWith(":") ? "right" : rule.startsWith(":") ? "left" : "",
  );
  const element = document.createElement("table");
  const row = (values, tag) => {
    const tr = document.createElement("tr");
    head.forEach((_, column) => {
      const cell = document.createElement(tag);
      if (align[column]) cell.style.textAlign = align[column];
      cell.append(...inline(values[column] ?? ""));
      tr.append(cell);
    });
    return tr;
  };
  const thead = document.createElement("thead");
  thead.append(row(head, "th"));
  const tbody = document.createElement("tbody");
  let next = i + 2;
  while (next < lines.length && lines[next].trim() && lines[next].includes("|")) {
    tbody.append(row(cells(lines[next]), "td"));
    next += 1;
  }
  element.append(thead, tbody);
  // Wide tables scroll sideways in their own box, not the page.
  const box = document.createElement("div");
  box.className = "table";
  box.append(element);
  return [box, next];
}

function codeBlock(code, language) {
  const pre = document.createElement("pre");
  const element = document.createElement("code");
  element.textContent = code;
  highlight(element, code, language);
  pre.append(element);
  pre.tabIndex = 0; // a wide block scrolls sideways: with the keyboard too
  const bar = document.createElement("div");
  bar.className = "code-bar";
  const name = document.createElement("span");
  name.textContent = language;
  bar.append(name, copyButton(language ? `Copy the ${language} code` : "Copy the code", () => code));
  const block = document.createElement("div");
  block.className = "code";
  block.append(bar, pre);
  return block;
}

function blocks(text) {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  const nodes = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+#.-]*)/);
    if (fence) {
      const code = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) code.push(lines[i++]);
      i += 1;
      nodes.push(codeBlock(code.join("\n"), fence[2]));
      continue;
    }
    if (isTableStart(lines, i)) {
      const [element, next] = table(lines, i);
      nodes.push(element);
      i = next;
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      const element = document.createElement(`h${Math.min(heading[1].length + 2, 6)}`);
      element.append(...inline(heading[2]));
      nodes.push(element);
      i += 1;
      continue;
    }
    const listItem = /^\s*([-*+]|\d+[.)])\s+/;
    if (listItem.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const list = document.createElement(ordered ? "ol" : "ul");
      while (i < lines.length && listItem.test(lines[i])) {
        const item = document.createElement("li");
        item.append(...inline(lines[i].replace(listItem, "")));
        list.append(item);
        i += 1;
      }
      nodes.push(list);
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quote = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quote.push(lines[i++].replace(/^\s*>\s?/, ""));
      const element = document.createElement("blockquote");
      element.append(...blocks(quote.join("\n")));
      nodes.push(element);
      continue;
    }
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const paragraph = [];
    while (
      i < lines.length &&
      lines[i].trim() &&
      !/^(#{1,6}\s|\s*([-*+]|\d+[.)])\s|\s*```|\s*~~~|\s*>)/.test(lines[i]) &&
      !isTableStart(lines, i)
    ) {
      paragraph.push(lines[i++]);
    }
    const element = document.createElement("p");
    paragraph.forEach((part, index) => {
      if (index) element.append(document.createElement("br"));
      element.append(...inline(part));
    });
    nodes.push(element);
  }
  return nodes;
}

const INLINE = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*)|(\[[^\]]+\]\([^)\s]+\))/;

function inline(text) {
  const nodes = [];
  let rest = text;
  while (rest) {
    const match = rest.match(INLINE);
    if (!match) {
      nodes.push(document.createTextNode(rest));
      break;
    }
    if (match.index) nodes.push(document.createTextNode(rest.slice(0, match.index)));
    const token = match[0];
    if (match[1]) {
      const code = document.createElement("code");
      code.textContent = token.slice(1, -1);
      nodes.push(code);
    } else if (match[2]) {
      const strong = document.createElement("strong");
      strong.append(...inline(token.slice(2, -2)));
      nodes.push(strong);
    } else if (match[3]) {
      const em = document.createElement("em");
      em.append(...inline(token.slice(1, -1)));
      nodes.push(em);
    } else {
      const [, label, href] = token.match(/^\[([^\]]+)\]\(([^)\s]+)\)$/);
      if (SAFE_LINK.test(href)) {
        const link = document.createElement("a");
        link.href = href;
        link.rel = "noopener noreferrer nofollow";
        link.target = "_blank";
        link.textContent = label;
        nodes.push(link);
      } else {
        nodes.push(document.createTextNode(token));
      }
    }
    rest = rest.slice(match.index + token.length);
  }
  return nodes;
}
