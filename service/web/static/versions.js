// A conversation's messages as a tree of versions: each message follows its parent (the turn
// before it), and the messages that follow the same turn are versions of one place in the
// conversation (an edit, a regenerate). The page shows one path through the tree, from the
// first turn down: at each place the version chosen, by default the one on the server's
// current branch, else the newest.
//
//     const tree = new VersionTree(conversation.messages);
//     tree.path();                 // the keys shown, first turn first
//     tree.choose(tree.sibling(key, -1));  // step to the version before
//
// Keys are strings (`version:message_id`); a message's parent is named the same way.

const ROOT = "";

export function keyOf(messageId, version) {
  return `${version}:${messageId}`;
}

export class VersionTree {
  constructor(messages = []) {
    this.messages = new Map(); // key -> message (as the history API gives it)
    this.children = new Map(); // parent key -> [child keys], oldest first
    this.parents = new Map(); // key -> parent key
    this.chosen = new Map(); // parent key -> the child shown
    for (const message of messages) this.add(message);
  }

  // A message, stored or just sent; the newest at a place is chosen when it is on the
  // current branch (`current`) or when nothing there was chosen before.
  add(message, { choose = message.current !== false } = {}) {
    const key = keyOf(message.message_id, message.version);
    let parent = message.parent ? keyOf(message.parent.message_id, message.parent.version) : ROOT;
    if (parent !== ROOT && !this.messages.has(parent)) parent = ROOT; // not in this conversation
    if (!this.messages.has(key)) {
      if (!this.children.has(parent)) this.children.set(parent, []);
      this.children.get(parent).push(key);
    }
    this.messages.set(key, message);
    this.parents.set(key, parent);
    if (choose || !this.chosen.has(parent)) this.chosen.set(parent, key);
    return key;
  }

  message(key) {
    return this.messages.get(key);
  }

  parent(key) {
    return this.parents.get(key) ?? ROOT;
  }

  // The keys shown, from the first turn to the last.
  path() {
    const keys = [];
    let at = ROOT;
    while (this.chosen.has(at)) {
      at = this.chosen.get(at);
      keys.push(at);
    }
    return keys;
  }

  // The last key shown: what a new question follows (null in an empty conversation).
  last() {
    return this.path().at(-1) ?? null;
  }

  // Where `key` stands among the versions of its place: { index (1-based), count }.
  place(key) {
    const versions = this.children.get(this.parent(key)) ?? [key];
    return { index: versions.indexOf(key) + 1, count: versions.length };
  }

  // The version `step` places before (-1) or after (+1) `key`, or null at either end.
  sibling(key, step) {
    const versions = this.children.get(this.parent(key)) ?? [];
    return versions[versions.indexOf(key) + step] ?? null;
  }

  // Show `key` (and, below it, the versions chosen there before, else the newest).
  choose(key) {
    this.chosen.set(this.parent(key), key);
  }
}
