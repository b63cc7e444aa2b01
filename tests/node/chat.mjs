// The official openai package, pointed at the service: prints one JSON line of what it saw.
// node chat.mjs BASE_URL
import OpenAI from "openai";

const client = new OpenAI({ baseURL: `${process.argv[2]}/v1`, apiKey: "unused", maxRetries: 0 });
const messages = [{ role: "user", content: "Why is the sky blue?" }];

const models = await client.models.list();
const whole = await client.chat.completions.create({ model: "default", messages });
const stream = await client.chat.completions.create({
  model: "default",
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let usage = null;
for await (const chunk of stream) {
  streamed += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
let notFound = null;
try {
  await client.chat.completions.create({ model: "nope", messages });
} catch (error) {
  notFound = { name: error.constructor.name, status: error.status, code: error.code };
}
console.log(
  JSON.stringify({
    models: models.data.map((model) => model.id),
    whole: whole.choices[0].message.content,
    usage: whole.usage,
    streamed,
    streamUsage: usage,
    notFound,
  }),
);
