// UTF-8 `TextEncoder` and `TextDecoder` for engines without them (the QuickJS runtime of
// componentize-qjs). Malformed input decodes to U+FFFD (or throws with `fatal: true`).

export class Utf8Encoder {
  get encoding() {
    return "utf-8";
  }

  /** @param {string} text */
  encode(text = "") {
    text = String(text);
    const out = new Uint8Array(text.length * 3);
    let n = 0;
    for (let i = 0; i < text.length; i++) {
      let c = text.charCodeAt(i);
      if (c < 0x80) {
        out[n++] = c;
        continue;
      }
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
        const d = text.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
        }
      }
      if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // a lone surrogate
      if (c < 0x800) {
        out[n++] = 0xc0 | (c >> 6);
      } else if (c < 0x10000) {
        out[n++] = 0xe0 | (c >> 12);
        out[n++] = 0x80 | ((c >> 6) & 0x3f);
      } else {
        out[n++] = 0xf0 | (c >> 18);
        out[n++] = 0x80 | ((c >> 12) & 0x3f);
        out[n++] = 0x80 | ((c >> 6) & 0x3f);
      }
      out[n++] = 0x80 | (c & 0x3f);
    }
    return out.slice(0, n);
  }
}

export class Utf8Decoder {
  constructor(label = "utf-8", { fatal = false, ignoreBOM = false } = {}) {
    if (!/^\s*(utf-?8|unicode-1-1-utf-8)\s*$/i.test(label)) {
      throw new RangeError(`TextDecoder: only utf-8 is supported, not ${label}`);
    }
    this.fatal = fatal;
    this.ignoreBOM = ignoreBOM;
  }

  get encoding() {
    return "utf-8";
  }

  /** @param {ArrayBuffer | ArrayBufferView} [input] */
  decode(input = new Uint8Array(0)) {
    const b = ArrayBuffer.isView(input)
      ? new Uint8Array(input.buffer, input.byteOffset, input.byteLength)
      : new Uint8Array(input);
    let i = 0;
    if (!this.ignoreBOM && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) i = 3;
    const parts = [];
    let units = [];
    const bad = () => {
      if (this.fatal) throw new TypeError("TextDecoder: invalid UTF-8");
      units.push(0xfffd);
    };
    while (i < b.length) {
      const c = b[i];
      if (c < 0x80) {
        units.push(c);
        i++;
      } else {
        // The WHATWG decoder: the bounds of the first continuation byte rule out overlong
        // forms, surrogates and code points past U+10FFFF.
        let need;
        let cp;
        let lower = 0x80;
        let upper = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) [need, cp] = [1, c & 0x1f];
        else if (c >= 0xe0 && c <= 0xef) {
          [need, cp] = [2, c & 0x0f];
          if (c === 0xe0) lower = 0xa0;
          if (c === 0xed) upper = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
          [need, cp] = [3, c & 0x07];
          if (c === 0xf0) lower = 0x90;
          if (c === 0xf4) upper = 0x8f;
        } else {
          bad();
          i++;
          continue;
        }
        let j = 1;
        for (; j <= need; j++) {
          const d = b[i + j];
          if (d === undefined || d < lower || d > upper) break;
          [lower, upper] = [0x80, 0xbf];
          cp = (cp << 6) | (d & 0x3f);
        }
        if (j <= need) {
          // One replacement for the lead and the continuation bytes before the bad one,
          // which is read again.
          bad();
          i += j;
          continue;
        }
        i += need + 1;
        if (cp >= 0x10000) {
          cp -= 0x10000;
          units.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
        } else units.push(cp);
      }
      if (units.length >= 8192) {
        parts.push(String.fromCharCode.apply(null, units));
        units = [];
      }
    }
    parts.push(String.fromCharCode.apply(null, units));
    return parts.join("");
  }
}
