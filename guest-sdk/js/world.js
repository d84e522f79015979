// Wires a plugin module's `init`, `handle` and `finish` to the world's exports (the
// `plugin-lifecycle` world). build.mjs generates the
// component's entry module, which does no more than:
//
//     import * as plugin from "./my-plugin.js";
//     import { exportsFor } from "wafka/world.js";
//     const world = exportsFor(plugin);
//     export const wafkaInit = world.init; // renamed to `init` after the build (build.mjs)
//     export const handle = world.handle;
//     export const finish = world.finish;

import { Config, errorMessage } from "./index.js";

export const NOT_INITIALIZED = "plugin is not initialized (init was not called or failed)";

/**
 * The `init` and `handle` exports for a plugin module with `handle(event)` and, optionally,
 * `init(config)`. A value thrown by either becomes the export's error string (`errorMessage`);
 * the component model wants a string there, anything else would trap.
 */
export function exportsFor(plugin) {
  const initFn = plugin.init;
  const handleFn = plugin.handle;
  const finishFn = plugin.finish;
  if (typeof handleFn !== "function") {
    throw new TypeError("the plugin module exports no function handle(event)");
  }
  if (initFn !== undefined && typeof initFn !== "function") {
    throw new TypeError("the plugin module's init is not a function");
  }
  if (finishFn !== undefined && typeof finishFn !== "function") {
    throw new TypeError("the plugin module's finish is not a function");
  }
  // The host calls the exports one at a time and never re-enters them.
  let ready = false;
  return {
    init(pairs) {
      // A failing init leaves no plugin behind.
      ready = false;
      if (initFn !== undefined) {
        try {
          initFn(new Config(pairs));
        } catch (e) {
          throw errorMessage(e);
        }
      }
      ready = true;
    },
    handle(event) {
      if (!ready) throw NOT_INITIALIZED;
      try {
        handleFn(event);
      } catch (e) {
        throw errorMessage(e);
      }
    },
    /** Once after the last event; nothing unless the plugin module exports `finish()`. */
    finish() {
      if (!ready || finishFn === undefined) return;
      try {
        finishFn();
      } catch (e) {
        throw errorMessage(e);
      }
    },
  };
}
