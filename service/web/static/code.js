// Code blocks in colour: highlight.js (vendored as its package ships it, in
// vendor/highlight.js with its licence; served from this origin) reads the code, and its
// token tree is walked into DOM nodes, spans with its class names around text nodes. No
// HTML is made or parsed. A language's grammar is loaded the first time a block of it shows.
//
//     highlight(codeElement, "print('hi')", "py");  // coloured now, or once python.js loads
import hljs from "/web/highlight-core.js";

// The grammars served (vendor/highlight.js/languages), and the other names a fence uses.
const GRAMMARS = new Set([
  "bash", "c", "cpp", "csharp", "css", "diff", "go", "java", "javascript", "json", "kotlin",
  "markdown", "php", "python", "ruby", "rust", "shell", "sql", "swift", "typescript", "xml", "yaml",
]);
const ALIASES = {
  js: "javascript", jsx: "javascript", mjs: "javascript", node: "javascript", ts: "typescript",
  tsx: "typescript", py: "python", python3: "python", sh: "bash", zsh: "bash", console: "shell",
  html: "xml", svg: "xml", yml: "yaml", "c++": "cpp", cc: "cpp", h: "c", hpp: "cpp", cs: "csharp",
  "c#": "csharp", rs: "rust", golang: "go", rb: "ruby", kt: "kotlin", md: "markdown",
  patch: "diff", postgres: "sql", postgresql: "sql",
};
const loading = new Map(); // grammar -> the promise of its registration

export function grammarOf(language) {
  const name = (language ?? "").toLowerCase();
  const grammar = ALIASES[name] ?? name;
  return GRAMMARS.has(grammar) ? grammar : null;
}

function load(grammar) {
  if (!loading.has(grammar)) {
    const loaded = import(`/web/highlight-${grammar}.js`).then((module) => {
      hljs.registerLanguage(grammar, module.default);
    });
    loading.set(grammar, loaded);
  }
  return loading.get(grammar);
}

// highlight.js's class names for a scope: "title.function" is "hljs-title function_".
function classes(scope) {
  if (scope.startsWith("language:")) return scope.replace("language:", "language-");
  const [first, ...rest] = scope.split(".");
  return [`hljs-${first}`, ...rest.map((part, i) => `${part}${"_".repeat(i + 1)}`)].join(" ");
}

// What highlight.js's HTML renderer is given (text, a scope opened, closed), as DOM nodes.
class NodeBuilder {
  constructor(root) {
    this.open = [root];
  }

  addText(text) {
    this.open.at(-1).append(document.createTextNode(text));
  }

  openNode(node) {
    if (!node.scope) {
      this.open.push(this.open.at(-1)); // the tree's root, or a scope-less group
      return;
    }
    const span = document.createElement("span");
    span.className = classes(node.scope);
    this.open.at(-1).append(span);
    this.open.push(span);
  }

  closeNode() {
    this.open.pop();
  }
}

function paint(element, code, grammar) {
  const result = hljs.highlight(code, { language: grammar, ignoreIllegals: true });
  if (typeof result._emitter?.walk !== "function") return; // another highlight.js: plain text
  const nodes = document.createDocumentFragment();
  result._emitter.walk(new NodeBuilder(nodes));
  if (nodes.textContent !== code || element.textContent !== code) return; // never other text
  element.replaceChildren(nodes);
  element.classList.add("hljs");
}

// Colours `element`, a <code> whose text is `code`, if its language has a grammar here.
export function highlight(element, code, language) {
  const grammar = grammarOf(language);
  if (!grammar) return;
  if (hljs.getLanguage(grammar)) {
    paint(element, code, grammar);
    return;
  }
  load(grammar).then(
    () => paint(element, code, grammar),
    () => {}, // not loaded: the block stays as plain text
  );
}
