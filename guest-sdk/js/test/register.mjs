// Lets the SDK and the examples run under Node for the tests: the WIT imports resolve to a
// fake host (fake-host.mjs) and the bare specifier "wafka" to the SDK, as build.mjs bundles it.
import { register } from "node:module";

register("./hooks.mjs", import.meta.url);
