// Fixes up the export names of a component built by componentize-qjs for the `plugin` world.
//
// componentize-qjs keeps a component-level export named `init` of its own (the QuickJS
// runtime's pre-initialization entry, `init(shim, script, entry-path, disable-gc)`), so a world
// that exports its own `init` cannot be built directly: its symbols clash ("one or more
// duplicate items detected when collecting into set or map"). build.mjs therefore builds
// against a copy of the world whose `init` is named `wafka-init`; this module then edits the
// component's top-level export sections in the binary:
//
//   * drops the runtime's `init` export (only needed while the component is pre-initialized,
//     and it is not part of the world),
//   * renames `wafka-init` to `init`,
//   * renumbers the component function indices that the dropped export shifted.
//
// Nothing inside the component changes. Only the layout componentize-qjs produces is accepted:
// after the dropped export, only alias, export and custom sections may follow.

const PREAMBLE = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
const SECTION = { custom: 0, alias: 6, canon: 8, import: 10, export: 11 };
const SORT_FUNC = 0x01;

class Reader {
  constructor(bytes, pos = 0, end = bytes.length) {
    this.bytes = bytes;
    this.pos = pos;
    this.end = end;
  }
  done() {
    return this.pos >= this.end;
  }
  byte() {
    if (this.pos >= this.end) throw new Error("unexpected end of section");
    return this.bytes[this.pos++];
  }
  u32() {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 35) throw new Error("malformed LEB128");
    }
  }
  s33() {
    // Only skipped, never interpreted.
    for (let i = 0; i < 5; i++) if ((this.byte() & 0x80) === 0) return;
    throw new Error("malformed LEB128");
  }
  string() {
    const len = this.u32();
    const start = this.pos;
    this.pos += len;
    if (this.pos > this.end) throw new Error("string past the end of the section");
    return new TextDecoder().decode(this.bytes.subarray(start, this.pos));
  }
}

function u32Bytes(value) {
  const out = [];
  do {
    let b = value & 0x7f;
    value = Math.floor(value / 128);
    if (value !== 0) b |= 0x80;
    out.push(b);
  } while (value !== 0);
  return out;
}

function stringBytes(text) {
  const utf8 = new TextEncoder().encode(text);
  return [...u32Bytes(utf8.length), ...utf8];
}

/** An `importname'`/`exportname'`: its text (for matching) and its raw bytes. */
function readName(r) {
  const start = r.pos;
  const tag = r.byte();
  if (tag !== 0x00 && tag !== 0x01) throw new Error(`unknown name encoding 0x${tag.toString(16)}`);
  const name = r.string();
  if (tag === 0x01) r.string(); // version suffix
  return { tag, name, raw: r.bytes.subarray(start, r.pos) };
}

/** Reads a sort; returns the component sort byte (0x00 for core sorts). */
function readSort(r) {
  const sort = r.byte();
  if (sort === 0x00) r.byte();
  return sort;
}

function skipExternDesc(r) {
  const kind = r.byte();
  switch (kind) {
    case 0x00: // core module
      r.byte();
      r.u32();
      return;
    case 0x01: // func
    case 0x04: // component
    case 0x05: // instance
      r.u32();
      return;
    case 0x02: // value
      if (r.byte() === 0x00) r.u32();
      else r.s33();
      return;
    case 0x03: // type
      if (r.byte() === 0x00) r.u32();
      return;
    default:
      throw new Error(`unknown externdesc 0x${kind.toString(16)}`);
  }
}

function readExport(r) {
  const start = r.pos;
  const name = readName(r);
  const sort = readSort(r);
  const idxStart = r.pos;
  const idx = r.u32();
  const idxEnd = r.pos;
  if (r.byte() === 0x01) skipExternDesc(r);
  return {
    name,
    sort,
    idx,
    head: r.bytes.subarray(name.raw.length + start, idxStart), // the sort bytes
    tail: r.bytes.subarray(idxEnd, r.pos), // the optional type ascription
  };
}

function encodeExport(e, name, idx) {
  const nameBytes = [e.name.tag, ...stringBytes(name)];
  if (e.name.tag === 0x01) throw new Error("cannot rename a versioned export");
  return [...nameBytes, ...e.head, ...u32Bytes(idx), ...e.tail];
}

/**
 * Returns a copy of `component` whose top-level export `from` is named `to`, with the existing
 * top-level export named `to` (the runtime's) removed.
 *
 * @param {Uint8Array} component
 * @param {string} from
 * @param {string} to
 */
export function renameExport(component, from, to) {
  const bytes = component;
  if (!PREAMBLE.every((b, i) => bytes[i] === b)) {
    throw new Error("not a WebAssembly component (bad preamble)");
  }
  const r = new Reader(bytes, PREAMBLE.length);
  const out = [Uint8Array.from(PREAMBLE)];
  let funcs = 0; // the size of the component function index space so far
  let removed = null; // the function index the dropped export had created
  let renamed = false;

  while (!r.done()) {
    const sectionStart = r.pos;
    const id = r.byte();
    const size = r.u32();
    const start = r.pos;
    const end = start + size;
    const sectionBytes = bytes.subarray(sectionStart, end);
    const s = new Reader(bytes, start, end);
    if (removed !== null && id !== SECTION.alias && id !== SECTION.export && id !== SECTION.custom) {
      throw new Error(`unexpected section ${id} after the runtime's \`${to}\` export`);
    }
    if (id === SECTION.alias) {
      for (let n = s.u32(); n > 0; n--) {
        const sort = readSort(s);
        const target = s.byte();
        if (target === 0x00 || target === 0x01) {
          s.u32();
          s.string();
        } else if (target === 0x02) {
          s.u32();
          s.u32();
        } else throw new Error(`unknown alias target 0x${target.toString(16)}`);
        if (sort === SORT_FUNC) funcs++;
      }
      out.push(sectionBytes);
    } else if (id === SECTION.import) {
      for (let n = s.u32(); n > 0; n--) {
        readName(s);
        const kind = bytes[s.pos];
        skipExternDesc(s);
        if (kind === 0x01) funcs++;
      }
      out.push(sectionBytes);
    } else if (id === SECTION.canon) {
      throw new Error("unexpected top-level canon section");
    } else if (id === SECTION.export) {
      const entries = [];
      for (let n = s.u32(); n > 0; n--) entries.push(readExport(s));
      const kept = [];
      for (const e of entries) {
        const created = e.sort === SORT_FUNC ? funcs++ : null;
        if (e.name.name === to && e.sort === SORT_FUNC) {
          if (removed !== null) throw new Error(`two \`${to}\` exports`);
          removed = created;
          continue;
        }
        let idx = e.idx;
        if (e.sort === SORT_FUNC && removed !== null && idx > removed) idx--;
        else if (e.sort === SORT_FUNC && removed !== null && idx === removed) {
          throw new Error(`export \`${e.name.name}\` refers to the dropped \`${to}\``);
        }
        const name = e.name.name === from ? to : e.name.name;
        if (e.name.name === from) renamed = true;
        kept.push(encodeExport(e, name, idx));
      }
      if (kept.length > 0) {
        const body = [...u32Bytes(kept.length), ...kept.flat()];
        out.push(Uint8Array.from([id, ...u32Bytes(body.length), ...body]));
      }
    } else {
      out.push(sectionBytes);
    }
    r.pos = end;
  }
  if (!renamed) throw new Error(`the component has no export \`${from}\``);
  const length = out.reduce((n, part) => n + part.length, 0);
  const result = new Uint8Array(length);
  let at = 0;
  for (const part of out) {
    result.set(part, at);
    at += part.length;
  }
  return result;
}
