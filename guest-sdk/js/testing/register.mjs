// Lets a plugin (and the SDK) run under Node for its unit tests: the WIT imports resolve to a
// fake host (fake-host.mjs, imported as "wafka/testing") and the bare specifier "wafka" to the
// SDK, as build.mjs bundles it. Use it as `node --import wafka/testing/register.mjs --test`.
import { register } from "node:module";

register("./hooks.mjs", import.meta.url);
