// Module resolution hooks for plugins' unit tests (see register.mjs).
const FAKE_HOST = new URL("./fake-host.mjs", import.meta.url).href;
const FAKE_STDIO = new URL("./fake-stdio.mjs", import.meta.url).href;
const SDK = new URL("../index.js", import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith("wafka:")) return { url: FAKE_HOST, shortCircuit: true };
  if (specifier.startsWith("wasi:cli/std")) return { url: FAKE_STDIO, shortCircuit: true };
  if (specifier === "wafka") return { url: SDK, shortCircuit: true };
  // The fake itself, as the package exports it: tests work without `npm install` too.
  if (specifier === "wafka/testing") return { url: FAKE_HOST, shortCircuit: true };
  return next(specifier, context);
}
