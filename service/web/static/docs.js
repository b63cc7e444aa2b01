// The API reference at /docs: /openapi.json drawn as a page. Every piece of text from the
// document is set as text, never parsed as HTML.

const el = (tag, text, className) => {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
};

const refName = (ref) => ref.split("/").pop();

// A short type for a schema: "string", "array of Message", "Message | null", ...
function typeOf(schema) {
  if (!schema) return "any";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.contentSchema) return `JSON ${typeOf(schema.contentSchema)}`;
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(" | ");
  const union = schema.anyOf ?? schema.oneOf;
  if (union) return union.map(typeOf).join(" | ");
  if (schema.type === "array") return `array of ${typeOf(schema.items)}`;
  if (schema.type === "object" && schema.additionalProperties) {
    return `map of ${typeOf(schema.additionalProperties)}`;
  }
  const limits = [];
  if (schema.minLength !== undefined) limits.push(`min length ${schema.minLength}`);
  if (schema.maxLength !== undefined) limits.push(`max length ${schema.maxLength}`);
  if (schema.minimum !== undefined) limits.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) limits.push(`≤ ${schema.maximum}`);
  if (schema.minItems !== undefined) limits.push(`at least ${schema.minItems}`);
  const type = [schema.type ?? "any", schema.format].filter(Boolean).join(", ");
  return limits.length ? `${type} (${limits.join(", ")})` : type;
}

// A type, with the names of other schemas as links to them.
function typeNode(schema) {
  const text = typeOf(schema);
  const span = el("span", null, "type");
  for (const part of text.split(/(\b[A-Z][A-Za-z]+\b)/)) {
    if (knownSchemas.has(part)) {
      const link = el("a", part);
      link.href = `#schema-${part}`;
      span.append(link);
    } else {
      span.append(part);
    }
  }
  return span;
}

let knownSchemas = new Set();

function fields(schema) {
  const properties = schema.properties ?? {};
  const required = new Set(schema.required ?? []);
  const table = el("table", null, "fields");
  const head = table.createTHead().insertRow();
  for (const title of ["field", "type", "", "what it is"]) head.append(el("th", title));
  const rows = table.createTBody();
  for (const [name, property] of Object.entries(properties)) {
    const row = rows.insertRow();
    row.append(el("td", name, "name"));
    const type = el("td");
    type.append(typeNode(property));
    row.append(type);
    row.append(el("td", required.has(name) ? "required" : "", "muted"));
    const described = [property.description, property.default !== undefined ? `default ${JSON.stringify(property.default)}` : null];
    row.append(el("td", described.filter(Boolean).join("; ")));
  }
  return table;
}

function schemaBlock(schema) {
  const block = el("div", null, "schema");
  if (schema.description) block.append(el("p", schema.description));
  if (schema.properties) block.append(fields(schema));
  else {
    const line = el("p");
    line.append(typeNode(schema));
    block.append(line);
  }
  return block;
}

function parameters(list) {
  const table = el("table", null, "fields");
  const head = table.createTHead().insertRow();
  for (const title of ["parameter", "in", "type", "what it is"]) head.append(el("th", title));
  const rows = table.createTBody();
  for (const parameter of list) {
    const row = rows.insertRow();
    row.append(el("td", parameter.name + (parameter.required ? " *" : ""), "name"));
    row.append(el("td", parameter.in));
    const type = el("td");
    type.append(typeNode(parameter.schema));
    row.append(type);
    row.append(el("td", parameter.description ?? ""));
  }
  return table;
}

function content(media) {
  const list = el("div");
  for (const [type, { schema }] of Object.entries(media ?? {})) {
    list.append(el("p", type, "media"));
    list.append(schemaBlock(schema ?? {}));
  }
  return list;
}

function operation(path, method, spec) {
  const section = el("section", null, "operation card");
  section.id = spec.operationId;
  const title = el("h3");
  title.append(el("span", method.toUpperCase(), `method ${method}`), " ", el("code", path));
  section.append(title, el("p", spec.summary));
  if (spec.description) section.append(el("p", spec.description, "muted"));
  section.append(
    el("p", spec.security?.length ? "Needs a key or token (Bearer, or X-API-Key)." : "Open: no key needed.", "muted"),
  );
  if (spec.parameters?.length) section.append(el("h4", "Parameters"), parameters(spec.parameters));
  if (spec.requestBody) section.append(el("h4", "Body"), content(spec.requestBody.content));
  section.append(el("h4", "Responses"));
  for (const [status, response] of Object.entries(spec.responses)) {
    const block = el("details", null, "response");
    if (status.startsWith("2")) block.open = true;
    block.append(el("summary", `${status} · ${response.description}`));
    if (response.headers) {
      const headers = el("ul");
      for (const [name, header] of Object.entries(response.headers)) {
        headers.append(el("li", `${name}: ${header.description}`));
      }
      block.append(headers);
    }
    if (response.content) block.append(content(response.content));
    section.append(block);
  }
  return section;
}

async function main() {
  const response = await fetch("/openapi.json");
  const documentJson = await response.json();
  knownSchemas = new Set(Object.keys(documentJson.components?.schemas ?? {}));
  document.title = `${documentJson.info.title} API ${documentJson.info.version}`;
  document.getElementById("title").textContent = document.title;
  document.getElementById("intro").textContent = documentJson.info.description;
  const reference = document.getElementById("reference");
  const toc = document.getElementById("toc");
  const byTag = new Map();
  for (const [path, methods] of Object.entries(documentJson.paths)) {
    for (const [method, spec] of Object.entries(methods)) {
      const tag = spec.tags?.[0] ?? "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([path, method, spec]);
    }
  }
  for (const [tag, operations] of byTag) {
    reference.append(el("h2", tag));
    const item = el("li", tag, "tag");
    const list = el("ul");
    for (const [path, method, spec] of operations) {
      reference.append(operation(path, method, spec));
      const entry = el("li");
      const link = el("a", `${method.toUpperCase()} ${path}`);
      link.href = `#${spec.operationId}`;
      entry.append(link);
      list.append(entry);
    }
    item.append(list);
    toc.append(item);
  }
  reference.append(el("h2", "Schemas"));
  for (const [name, schema] of Object.entries(documentJson.components.schemas)) {
    const section = el("section", null, "card");
    section.id = `schema-${name}`;
    section.append(el("h3", name));
    section.append(schemaBlock(schema));
    if (schema.oneOf || schema.anyOf) {
      const kinds = el("ul");
      for (const kind of schema.oneOf ?? schema.anyOf) {
        const entry = el("li");
        entry.append(typeNode(kind));
        kinds.append(entry);
      }
      section.append(kinds);
    }
    reference.append(section);
  }
  document.getElementById("loading").remove();
}

main().catch((error) => {
  document.getElementById("loading").textContent = `Could not load /openapi.json: ${error}`;
});
