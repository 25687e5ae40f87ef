// The official JS SDKs against a running gateway: node smoke.mjs <base url> <lr_live_ key>
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { GoogleGenAI } from "@google/genai";

const [base, key] = process.argv.slice(2);
const out = {};

const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0 });
const chat = await openai.chat.completions.create({
  model: "openai/gpt-4.1-mini",
  messages: [{ role: "user", content: "hi" }],
});
out.openai = chat.choices[0].message.content;
let streamed = "";
const stream = await openai.chat.completions.create({
  model: "anthropic/claude-sonnet-4.6",
  messages: [{ role: "user", content: "hi" }],
  stream: true,
});
for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
out.openai_stream_from_anthropic = streamed;

const response = await openai.responses.create({ model: "google/gemini-2.5-flash", input: "hi" });
out.openai_responses_from_gemini = response.output_text;
let responded = "";
const events = await openai.responses.create({ model: "anthropic/claude-sonnet-4.6", input: "hi", stream: true });
for await (const event of events) {
  if (event.type === "response.output_text.delta") responded += event.delta;
  if (event.type === "response.completed") out.openai_responses_stream_completed = event.response.status;
}
out.openai_responses_stream_from_anthropic = responded;

const anthropic = new Anthropic({ baseURL: base, apiKey: key, maxRetries: 0 });
const message = await anthropic.messages.create({
  model: "claude-sonnet-4.6",
  max_tokens: 64,
  messages: [{ role: "user", content: "hi" }],
});
out.anthropic = message.content[0].text;

const genai = new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: base } });
const gen = await genai.models.generateContent({ model: "gemini-2.5-flash", contents: "hi" });
out.gemini = gen.text;

console.log(JSON.stringify(out));
